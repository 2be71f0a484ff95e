"""The layout's own checks: the registry drives the contracts, and the system tools script."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from shopkit.config import PROJECT_ROOT, SERVICE_PORTS
from shopkit.registry import APPS, FRONTENDS, SERVICES, app

SCRIPT = PROJECT_ROOT / "devstack" / "system_tools.sh"
#: The Debian packages of the tools the script looks for (nginx is also found in /usr/sbin).
PACKAGES = ["kubernetes-client", "chromium", "chromium-driver", "prometheus"]


def importlinter() -> dict[str, list[dict[str, list[str]]]]:
    with (PROJECT_ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["tool"]["importlinter"]  # type: ignore[no-any-return]


def test_the_registry_is_consistent_and_the_runtime_reads_it() -> None:
    assert len({a.name for a in APPS}) == len({a.package for a in APPS}) == len(APPS)
    assert len({a.port for a in APPS}) == len(APPS)
    assert {s.name: s.port for s in SERVICES} == SERVICE_PORTS
    for service in SERVICES:
        assert service.has_database and service.role == f"{service.name}_svc"
        assert (PROJECT_ROOT / service.package / "migrations").is_dir()
        # Each calls only services started before it, so start order follows the list.
        earlier = [s.name for s in SERVICES[: SERVICES.index(service)]]
        assert set(service.calls) <= set(earlier), service
    for frontend in FRONTENDS:
        assert not frontend.has_database and not frontend.role
        assert not (PROJECT_ROOT / frontend.package / "migrations").exists()
    assert app("storefront").workers == 1  # its console runs the seeder in the process


def test_the_import_contracts_cover_every_package_of_the_registry() -> None:
    config = importlinter()
    contracts = {c["name"]: c for c in config["contracts"]}  # type: ignore[index]
    services = {s.package for s in SERVICES}
    packages = {*services, *(f.package for f in FRONTENDS), "shopkit", "devstack", "seeder"}
    assert packages <= set(config["root_packages"])
    independence = [c for c in contracts.values() if c["type"] == "independence"]
    assert any(set(c["modules"]) == services for c in independence)
    shopkit = [c for c in contracts.values() if c.get("source_modules") == ["shopkit"]]
    assert shopkit and set(shopkit[0]["forbidden_modules"]) >= packages - {"shopkit"}
    cycles = [c for c in contracts.values() if c["type"] == "acyclic_siblings"]
    assert cycles and set(cycles[0]["ancestors"]) >= packages


def run_script(tmp_path: Path, *, apt: bool) -> subprocess.CompletedProcess[str]:
    """The script with only a shell (and an ``apt-get``) on ``PATH``: the tools look missing.

    The dry run never calls ``apt-get``: a stand-in that fails shows it was not called.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if apt:
        (bin_dir / "apt-get").write_text("#!/bin/sh\nexit 3\n")
        (bin_dir / "apt-get").chmod(0o755)
    for tool in ("bash", "sh", "id", "env"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return subprocess.run(
        [str(bin_dir / "bash"), str(SCRIPT)],
        env={"PATH": str(bin_dir), "SYSTEM_TOOLS_DRY_RUN": "1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_system_tools_names_what_it_would_install(tmp_path: Path) -> None:
    done = run_script(tmp_path, apt=True)
    assert done.returncode == 0, done.stderr
    assert f"installing {' '.join(PACKAGES)}" in done.stdout
    assert "apt-get install -y --no-install-recommends" in done.stdout


def test_system_tools_fails_clearly_when_it_cannot_install(tmp_path: Path) -> None:
    done = run_script(tmp_path, apt=False)
    assert done.returncode == 1
    assert "there is no apt-get" in done.stderr
    assert " ".join(PACKAGES) in done.stderr


def test_system_tools_does_nothing_when_everything_is_there() -> None:
    if not all(shutil.which(t) for t in ("kubectl", "chromium", "chromedriver", "promtool")):
        pytest.fail("make test installs the system tools first (devstack/system_tools.sh)")
    done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and not done.stdout and not done.stderr


def test_a_service_without_database_url_gets_the_dev_stacks_database(tmp_path: Path) -> None:
    """No configuration at all: the runtime asks the dev stack's entry point, never imports it."""
    from importlib.metadata import entry_points

    from shopkit.config import Settings
    from shopkit.db import DEV_DATABASE_GROUP, resolve_database_url

    offered = [e.value for e in entry_points(group=DEV_DATABASE_GROUP)]
    assert offered == ["devstack.roles:database_url"]
    configured = Settings.from_env("customers", database_url="postgres://u:p@db:5432/shop")
    assert resolve_database_url(configured) == "postgresql+psycopg2://u:p@db:5432/shop"
    url = resolve_database_url(Settings.from_env("customers", database_url="", data_dir=tmp_path))
    try:
        # The embedded server under data_dir, as the service's own role.
        assert url.startswith("postgresql+psycopg2://customers_svc")
        assert (tmp_path / "pg").is_dir()
    finally:
        import pgserver
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        server = pgserver.get_server(tmp_path / "pg")  # the running one, joined
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)


def test_the_role_scripts_create_every_service_role_and_schema() -> None:
    sql = (PROJECT_ROOT / "devstack" / "sql" / "create_roles.sql").read_text()
    init = (PROJECT_ROOT / "devstack" / "sql" / "init-roles.sh").read_text()
    for service in SERVICES:
        assert f"('{service.role}', :'{service.name}_password')" in sql
        assert f"CREATE SCHEMA IF NOT EXISTS {service.schema} AUTHORIZATION {service.role};" in sql
        assert f"-v {service.name}_password=" in init


def test_every_service_has_a_service_identity() -> None:
    """Each one checks tokens against customers' list of deactivated accounts, which it reads
    with its own service token (notifications too, though its data comes by events)."""
    from shopkit.auth import SERVICES as IDENTITIES

    assert tuple(s.name for s in SERVICES) == IDENTITIES
    for service in SERVICES[1:]:
        assert "customers" in service.calls, service.name
