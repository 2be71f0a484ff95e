"""Alembic environment of the notifications schema."""

from notifications_service.models import Base
from shopkit.migrations import run_env

run_env(Base.metadata)
