"""Alembic migrations of the customers schema."""
