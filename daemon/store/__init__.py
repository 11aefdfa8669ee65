"""Persistence for the registry: SQLite tables, the engine, migrations and the content-addressed object store.

SQLModel rows never leave this package: :mod:`daemon.store.convert` turns them into protocol DTOs.
"""
