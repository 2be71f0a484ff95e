"""Temporary directories that belong to this process and go when it exits.

A service process that is given no directory for its live faults
(``SHOP_FAULTS_DIR``) or its pooled metrics (``PROMETHEUS_MULTIPROC_DIR``)
makes one. Left behind, they pile up in ``/tmp``: a test suite starts hundreds
of processes. The standard library's ``TemporaryDirectory`` is removed when the
object is collected, which a module-level directory never is before exit, and
its finaliser would also run in a process forked from this one (a gunicorn
worker), removing the directory its master still uses.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


def own_directory(variable: str, prefix: str) -> str:
    """The directory the environment ``variable`` names; if it names none, a new temporary
    one, set in ``variable`` for this process and its children, and removed when this process
    exits normally (not when a process forked from it does; a killed process leaves it)."""
    given = os.environ.get(variable)
    if given:
        return given
    path = tempfile.mkdtemp(prefix=prefix)
    os.environ[variable] = path
    atexit.register(_remove_if_mine, path, os.getpid())
    return path


def _remove_if_mine(path: str, creator: int) -> None:
    if os.getpid() == creator:
        shutil.rmtree(path, ignore_errors=True)
