"""Alembic migrations of the reviews schema."""
