"""Alembic migrations of the notifications schema."""
