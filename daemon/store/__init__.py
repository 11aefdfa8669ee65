"""The shared SQLite database: the engine and its pragmas, raw transactions, the schema's migrations, the
SQLModel tables, and the deployments' rows.

Features keep their own queries beside them (:mod:`daemon.registry`, :mod:`daemon.monitor.store`, …);
SQLModel rows never reach a handler or a client: each feature turns them into protocol DTOs first.
"""
