"""Deployments: backends that run the serving runtime (``process``, ``docker``) and the manager that
supervises them, rolls out alias moves and adopts what is still running after a daemon restart."""
