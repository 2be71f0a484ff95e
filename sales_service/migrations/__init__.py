"""Alembic migrations of the sales schema."""
