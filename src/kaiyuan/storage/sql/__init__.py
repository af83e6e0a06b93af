"""Metadata in SQL through SQLAlchemy Core: SQLite by default, PostgreSQL by setting."""
