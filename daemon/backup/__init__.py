"""Backups of a state directory (while the daemon serves), their verification, and restores.

A backup is a directory::

    DEST/registry.db        a consistent snapshot of the registry (rollback-journal mode: one self-contained file)
    DEST/objects/ab/cdef…   every file object that snapshot references, sha256-verified while copied
    DEST/MANIFEST.json      format, times, versions, counts, sizes, and the sha256 of registry.db

:mod:`daemon.backup.backup` makes one (``modeltuid backup``), :mod:`daemon.backup.verify` checks one or a live
state directory (``modeltuid verify``), :mod:`daemon.backup.restore` puts one back (``modeltuid restore``);
:mod:`daemon.backup.common` holds the format's names and the hashed copies they share.
"""
