"""A gunicorn worker that finished serving leaves without the interpreter's slow teardown;
one that fails keeps gunicorn's exit status."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shopkit.config import PROJECT_ROOT

#: Gunicorn's ``spawn_worker`` in miniature: ``sys.exit(code)``, then ``worker_exit`` in the
#: ``finally``. An ``atexit`` handler shows whether the interpreter was torn down.
SCRIPT = """
import atexit, sys, types
from shopkit import gunicorn_conf
atexit.register(lambda: print("torn down", flush=True))
worker = types.SimpleNamespace(booted={booted})
try:
    print("serving", flush=True)
    sys.exit({code})
finally:
    gunicorn_conf.worker_exit(None, worker)
"""


@pytest.mark.parametrize(
    ("booted", "code", "torn_down"),
    [
        (True, 0, False),  # drained and done: straight out, status 0
        (True, -1, True),  # crashed after booting: gunicorn's status, usual teardown
        (False, 3, True),  # could not boot (WORKER_BOOT_ERROR): the master must see 3
    ],
)
def test_worker_exit_skips_teardown_only_after_a_clean_stop(
    booted: bool, code: int, torn_down: bool
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(booted=booted, code=code)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == code % 256, done.stderr
    assert done.stdout.startswith("serving")
    assert ("torn down" in done.stdout) is torn_down, done.stdout
