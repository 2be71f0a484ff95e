"""Alembic environment of the inventory schema."""

from inventory_service.models import Base
from shopkit.migrations import run_env

run_env(Base.metadata)
