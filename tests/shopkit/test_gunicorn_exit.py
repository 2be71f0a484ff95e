"""A gunicorn worker that finished serving leaves without the interpreter's slow teardown;
one that fails keeps gunicorn's exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shopkit.config import PROJECT_ROOT
from tests.support.database import scratch_env

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
    booted: bool, code: int, torn_down: bool, tmp_path: Path
) -> None:
    # A worker's directories are its master's (one that skips teardown removes nothing).
    env = {**os.environ, **scratch_env(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(booted=booted, code=code)],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == code % 256, done.stderr
    assert done.stdout.startswith("serving")
    assert ("torn down" in done.stdout) is torn_down, done.stdout
