"""modeltuid: the daemon that owns the model registry, artifacts and (later) deployments.

Clients import only :mod:`daemon.protocol`, which runs this file, so it holds nothing but the version.
"""

__version__ = "0.1.0"
