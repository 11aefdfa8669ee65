"""The model registry: versions, aliases, tags and the content-addressed objects they are made of.

:class:`daemon.registry.service.Registry` is its one entry point; the modules beside it are its storage
(objects, the stat cache, pending uploads) and its queries (hand-written SQL for the hot paths, ORM
queries and the row → DTO conversions). The shared database itself (engine, schema, rows) is
:mod:`daemon.store`.
"""
