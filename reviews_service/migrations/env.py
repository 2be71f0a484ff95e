"""Alembic environment of the reviews schema."""

from reviews_service.models import Base
from shopkit.migrations import run_env

run_env(Base.metadata)
