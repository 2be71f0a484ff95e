"""Alembic environment of the customers schema."""

from customers_service.models import Base
from shopkit.migrations import run_env

run_env(Base.metadata)
