"""The gunicorn master imports the service's code before forking its workers, not its app."""

from __future__ import annotations

import subprocess
import sys

from shopkit.config import PROJECT_ROOT

#: ``on_starting`` as gunicorn's arbiter calls it, in a fresh interpreter.
SCRIPT = """
import sys, types
from shopkit import gunicorn_conf
server = types.SimpleNamespace(app=types.SimpleNamespace(app_uri="{uri}"))
gunicorn_conf.on_starting(server)
print("loaded" if "{module}.routes" in sys.modules else "not loaded")
"""


def master_loads(uri: str, module: str) -> subprocess.CompletedProcess[str]:
    """Run the master's ``on_starting`` for ``uri``; the script prints whether ``module`` is in."""
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(uri=uri, module=module)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_master_imports_the_services_code_for_its_workers_to_inherit() -> None:
    done = master_loads("reviews_service:create_app()", "reviews_service")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded"


def test_a_package_that_fails_to_import_is_left_for_the_workers_to_report() -> None:
    # No such package: the master carries on, and each worker would fail to boot with the error.
    done = master_loads("reviews_service_gone:create_app()", "reviews_service_gone")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "not loaded"
