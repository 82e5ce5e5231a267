"""Storage: SQLAlchemy 2 Core on SQLite (embedded default) and PostgreSQL (production).

The schema is created and changed only by Alembic (``migrations/``); ``schema.py`` mirrors
it for queries.
"""
