"""Alembic environment of the sales schema."""

from sales_service.models import Base
from shopkit.migrations import run_env

run_env(Base.metadata)
