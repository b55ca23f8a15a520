"""Alembic migrations of the daemon's database (run with ``chestaid-daemon db upgrade``)."""
