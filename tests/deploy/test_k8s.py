"""deploy/k8s: both overlays render with ``kubectl kustomize``, every object validates against
the Kubernetes schemas offline (``kubernetes-validate``), and what the manifests say about
the services (command, port, probes, variables, secrets, image) is derived from the code, so
the manifests cannot drift from it. The network policies are evaluated here as a cluster
would evaluate them: who can open a connection to whom.
"""

from __future__ import annotations

import base64
import importlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from shopkit.config import PRODUCTION, PROJECT_ROOT, SERVICE_PORTS, InsecureConfiguration, Settings
from shopkit.registry import APPS, app, packages
from tests.support.broker_acl import (
    assert_check_needs_the_password,
    assert_storefront_only_reads_orders,
    valkey_with,
)
from tests.support.database import (
    FRONTENDS,
    GATEWAY_DIR,
    SHARED_FILES,
    ServiceProcess,
)
from tests.support.secrets import (
    SHARED_SECRET,
    SHOP_ENV,
    only_these_settings,
    placeholder,
    production_secret_variables,
    settings_variables,
)

K8S = PROJECT_ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "production")
KUBERNETES_VERSION = "1.32.0"
CNPG_SCHEMA = json.loads((Path(__file__).parent / "cnpg_cluster.schema.json").read_text())
#: Who calls whom (the registry's ``calls``): the edges the network policies must allow.
CALLS = {a.name: set(a.calls) for a in APPS}
#: Every app's port: the services' and the front ends' (served one worker each, see below).
APP_PORTS = {a.name: a.port for a in APPS}
#: The variables each app gets from a Secret: what production mode asks of it, found by
#: asking shopkit.config (a service: its database and its own <NAME>_CLIENT_SECRET;
#: customers every service's, which it verifies, and ADMIN_PASSWORD; the storefront its
#: session key and ADMIN_PASSWORD, for the console's seeder). Never the shared fallback.
SECRET_VARIABLES = {name: production_secret_variables(name) for name in APP_PORTS}
#: The broker's password each app gets from shop-secrets, for Kubernetes to put into its
#: EVENTS_URL (the code reads only the URL): the services' default user, the storefront's own.
BROKER_PASSWORDS = {
    name: "STOREFRONT_BROKER_PASSWORD" if name == "storefront" else "BROKER_PASSWORD"
    for name in APP_PORTS
}


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed (make test installs it: devstack/system_tools.sh)"
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def secret_key(variable: str) -> str:
    """The key of ``shop-secrets`` holding ``variable``: ``SALES_CLIENT_SECRET`` → ``sales-client-secret``."""
    return variable.lower().replace("_", "-")


def app_containers(
    docs: list[dict[str, Any]],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each app's containers that run its code: the app and its migration init container."""
    for name, deployment in of_kind(docs, "Deployment").items():
        if name in APP_PORTS:
            pod = deployment["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                yield name, container


def container_env(
    docs: list[dict[str, Any]], container: dict[str, Any], secret: Any
) -> dict[str, str]:
    """The environment a container starts with: its ConfigMaps, then its own ``env``; each
    ``secretKeyRef`` resolved by ``secret(ref)``."""
    configmaps = of_kind(docs, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = expand(entry["value"], env)
        else:
            env[entry["name"]] = secret(entry["valueFrom"]["secretKeyRef"])
    return env


def expand(value: str, env: dict[str, str]) -> str:
    """``value`` as Kubernetes starts the container with it: each ``$(NAME)`` of a variable
    defined before it replaced by its value (others stay as written; ``$$`` is a ``$``)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\((\w+)\)", one, value)


def production_secret(ref: dict[str, str]) -> str:
    """A stand-in for a production secret: a CloudNativePG ``uri`` as the operator writes it
    (a generated password), else an acceptable value of its own."""
    if ref["key"] == "uri":
        cluster = ref["name"].removesuffix("-app")
        role = f"{cluster.removesuffix('-db')}_svc"
        return f"postgresql://{role}:{placeholder(cluster)}@{cluster}-rw.shop:5432/shop"
    return placeholder(f"{ref['name']}-{ref['key']}")


def env_names_read_by_the_code() -> set[str]:
    """Every variable an app process reads: Settings, the service URLs, gunicorn's, the
    front ends' own."""
    names = settings_variables() | {f"{service.upper()}_URL" for service in SERVICE_PORTS}
    names |= set(BROKER_PASSWORDS.values())  # read by Kubernetes, into EVENTS_URL
    sources = [PROJECT_ROOT / "shopkit" / "gunicorn_conf.py"]
    sources += [
        path
        for package in packages(FRONTENDS).values()
        for path in (PROJECT_ROOT / package).glob("*.py")
    ]
    for source in sources:
        names |= set(re.findall(r'os\.environ\.get\("([A-Z_]+)"', source.read_text()))
    return names


# --- render and validate ---------------------------------------------------------------------


def test_every_rendered_object_validates_offline(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    overlay, docs = rendered
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
            "NetworkPolicy", "ConfigMap", "Namespace"} <= kinds  # fmt: skip
    for doc in docs:
        where = f"{overlay}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Cluster":
            errors = list(jsonschema.Draft7Validator(CNPG_SCHEMA).iter_errors(doc))
            assert not errors, (where, [e.message for e in errors])
            continue
        try:  # the schemas ship inside the package: no network is used
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")
        assert doc["metadata"].get("namespace", "") in {"", f"shop-{overlay}", "shop"}
    names = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    assert names == {"shop-dev" if overlay == "dev" else "shop"}


def test_a_bad_manifest_is_refused_by_the_validator() -> None:
    deployment = of_kind(render("dev"), "Deployment")["sales"]
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "5002"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0] = {"containerPortt": 5002}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# --- derived from the code -------------------------------------------------------------------


def test_services_match_the_code(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _overlay, docs = rendered
    deployments = of_kind(docs, "Deployment")
    services = of_kind(docs, "Service")
    known = env_names_read_by_the_code()
    shop_config = next(
        c for n, c in of_kind(docs, "ConfigMap").items() if n.startswith("shop-config")
    )
    assert set(shop_config["data"]) <= known, set(shop_config["data"]) - known
    for name, port in APP_PORTS.items():
        if name in SERVICE_PORTS:
            assert shop_config["data"][f"{name.upper()}_URL"] == f"http://{name}:{port}"
        pod = deployments[name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        # The command make run and the tests run (devstack.processes), bound to every interface.
        local = ServiceProcess(name, port).command()
        expected = [Path(local[0]).name, *local[1:]]
        expected[expected.index("-b") + 1] = f"0.0.0.0:{port}"
        assert container["command"] == expected
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert services[name]["spec"]["ports"] == [
            {"name": "http", "port": port, "targetPort": "http"}
        ]
        env = {e["name"]: e for e in container["env"]}
        assert set(env) <= known, set(env) - known
        secret = {n for n, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})}
        assert secret == SECRET_VARIABLES[name] | {BROKER_PASSWORDS[name]}, name
        assert not any(
            "value" in e and re.search(r"PASSWORD|SECRET", e["name"]) for e in container["env"]
        )
        # The layout make run uses: the shared ConfigMap's, or the container's own.
        layout = {k: shop_config["data"][k] for k in ("WEB_CONCURRENCY", "GUNICORN_THREADS")}
        layout.update({k: e["value"] for k, e in env.items() if "value" in e})
        expected = app(name).layout_env()
        assert {k: layout.get(k, "5") for k in expected} == expected, name
        if not app(
            name
        ).has_database:  # no data, no migrations; one worker, like make run's (registry)
            assert "initContainers" not in pod
            assert env["WEB_CONCURRENCY"]["value"] == "1"
            continue
        # Migrations: once per rollout, before the app, on the same database, under the lock,
        # with the app's own settings: the run builds the app, which checks them in production
        # mode, and customers' creates the bootstrap admin with ADMIN_PASSWORD.
        (migrate,) = pod["initContainers"]
        assert migrate["command"] == ["flask", "--app", app(name).package, "db", "upgrade"]
        assert migrate["envFrom"] == container["envFrom"]
        assert migrate["env"] == container["env"]
        assert migrate["image"] == container["image"]


def test_probe_paths_are_served_by_every_app() -> None:
    import sys

    sys.path.insert(0, str(PROJECT_ROOT / "docs"))
    from export_openapi import build_app  # type: ignore[import-not-found]

    for name, package in packages().items():
        rules = {rule.rule for rule in build_app(name, package).url_map.iter_rules()}
        assert {"/readyz", "/healthz"} <= rules
    for package in packages(FRONTENDS).values():
        app = importlib.import_module(package).create_app()
        assert {"/readyz", "/healthz"} <= {rule.rule for rule in app.url_map.iter_rules()}


def test_secrets_images_and_security(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, docs = rendered
    secrets = {n: s for n, s in of_kind(docs, "Secret").items()}
    clusters = of_kind(docs, "Cluster")
    images = set()
    for name, pod in pod_specs(docs):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
            if container["image"].split(":")[0].endswith(("shop", "shop-seeder")):
                images.add((name, container["image"]))
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    continue
                if ref["name"].startswith("shop-secrets"):
                    assert ref["key"] == secret_key(env["name"]), (name, env)
                if overlay == "dev":
                    assert ref["key"] in secrets[ref["name"]]["data"], ref
                elif ref["name"] != "shop-secrets":  # created by hand: docs/deploying.rst
                    cluster = ref["name"].removesuffix("-app")
                    assert cluster in clusters and ref["key"] == "uri", ref
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]
    # The services run the service image; the storefront and the seeder (its console runs
    # the seeder) the image with the [seeder] extra, as in Compose.
    with_seeder = {"storefront", "seeder"}
    registry = "registry.example.com/shop/"
    for name, image in images:
        if overlay == "dev":
            assert image == compose[name if name in compose else "customers"]["image"], name
        else:
            wanted = "shop-seeder" if name in with_seeder else "shop"
            assert image == f"{registry}{wanted}:0.1.0", name
    assert {name for name, _ in images} >= {"storefront", *SERVICE_PORTS}
    if overlay == "production":
        assert not secrets, "the production overlay must not carry any secret"
        for name, cluster in clusters.items():
            service = name.removesuffix("-db")
            assert service in SERVICE_PORTS
            assert cluster["spec"]["bootstrap"]["initdb"]["owner"] == f"{service}_svc"
            assert cluster["spec"]["instances"] >= 3
            env = of_kind(docs, "Deployment")[service]["spec"]["template"]["spec"]["containers"][0][
                "env"
            ]
            assert {e["name"]: e for e in env}["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
                "name": f"{name}-app",
                "key": "uri",
            }
        assert set(clusters) == {f"{s}-db" for s in SERVICE_PORTS}
        guide = (PROJECT_ROOT / "docs" / "deploying.rst").read_text()
        keys = {
            env["valueFrom"]["secretKeyRef"]["key"]
            for _name, pod in pod_specs(docs)
            for container in [*pod.get("initContainers", []), *pod["containers"]]
            for env in container.get("env", [])
            if env.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "shop-secrets"
        }
        expected = {
            secret_key(variable)
            for variables in SECRET_VARIABLES.values()
            for variable in variables
        } - {"database-url"}
        assert keys == expected | {secret_key(v) for v in BROKER_PASSWORDS.values()}
        documented = set(re.findall(r"--from-literal=([a-z-]+)=", guide))
        assert documented == keys, documented ^ keys  # every key, and none that is not read


def test_no_shared_secret_and_production_mode(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, docs = rendered
    (shop_config,) = (
        c for n, c in of_kind(docs, "ConfigMap").items() if n.startswith("shop-config")
    )
    assert SHARED_SECRET not in shop_config["data"]
    assert (shop_config["data"].get(SHOP_ENV) == PRODUCTION) == (overlay == "production")
    for name, container in app_containers(docs):
        assert container["envFrom"] == [{"configMapRef": {"name": shop_config["metadata"]["name"]}}]
        names = {e["name"] for e in container.get("env", [])}
        assert SHARED_SECRET not in names and SHOP_ENV not in names, name
    for secret in of_kind(docs, "Secret").values():
        assert secret_key(SHARED_SECRET) not in secret.get("data", {})


def test_production_env_passes_production_mode() -> None:
    """Each app container and migration of the production overlay, started with its rendered
    environment (a stand-in value for each secret it references), is in production mode and
    has nothing :meth:`Settings.secret_problems` objects to; a service without any one of the
    secrets production mode asks of it refuses to start."""
    docs = render("production")
    checked = set()
    for name, container in app_containers(docs):
        env = container_env(docs, container, production_secret)
        with only_these_settings(env):
            settings = Settings.from_env(name)  # raises InsecureConfiguration on a problem
        assert settings.is_production and settings.secret_problems() == [], name
        assert settings.database_url == env.get("DATABASE_URL", ""), name
        checked.add(name)
        for variable in production_secret_variables(name) if name in SERVICE_PORTS else ():
            without = {k: v for k, v in env.items() if k != variable}
            with only_these_settings(without), pytest.raises(InsecureConfiguration):
                Settings.from_env(name)
    assert checked == set(APP_PORTS)


def test_dev_secrets_are_refused_in_production_mode() -> None:
    """The dev overlay starts (development mode), but its generated values never pass
    production mode: every service's would be refused."""
    docs = render("dev")
    secrets = of_kind(docs, "Secret")

    def generated(ref: dict[str, str]) -> str:
        return base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()

    for name, container in app_containers(docs):
        env = container_env(docs, container, generated)
        with only_these_settings(env):
            assert not Settings.from_env(name).is_production
        if name in SERVICE_PORTS:
            production = {**env, SHOP_ENV: PRODUCTION}
            with only_these_settings(production), pytest.raises(InsecureConfiguration):
                Settings.from_env(name)
    values = [generated({"name": n, "key": k}) for n, s in secrets.items()
              if n.startswith("shop-secrets") for k in s["data"] if k.endswith("-client-secret")]  # fmt: skip
    assert len(values) == len(set(values)) == len(SERVICE_PORTS)  # one identity per service


def test_every_deployment_has_a_budget_and_an_autoscaler(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _overlay, docs = rendered
    budgets = of_kind(docs, "PodDisruptionBudget")
    scalers = of_kind(docs, "HorizontalPodAutoscaler")
    for name, deployment in of_kind(docs, "Deployment").items():
        if name in packages(FRONTENDS):
            # One process by design (the console's seeder runs live in it, shopkit.registry):
            # never scaled out, and no budget that would block a node drain forever.
            assert deployment["spec"]["replicas"] == 1
            assert name not in scalers and name not in budgets
            continue
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert budgets[name]["spec"]["minAvailable"] < scalers[name]["spec"]["minReplicas"]
        assert scalers[name]["spec"]["scaleTargetRef"]["name"] == name


def test_the_broker_is_a_durable_statefulset_and_every_service_is_pointed_at_it(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _overlay, docs = rendered
    valkey = of_kind(docs, "StatefulSet")["valkey"]
    service = of_kind(docs, "Service")["valkey"]
    assert valkey["spec"]["serviceName"] == "valkey" and service["spec"]["clusterIP"] == "None"
    (claim,) = valkey["spec"]["volumeClaimTemplates"]
    (container,) = valkey["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "valkey/valkey:8.1"
    command = container["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--dir") + 1] == "/data"
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    (shop_config,) = (
        c for n, c in of_kind(docs, "ConfigMap").items() if n.startswith("shop-config")
    )
    assert "EVENTS_URL" not in shop_config["data"]  # each container's own: with a password
    for name, app_container in app_containers(docs):
        env = {e["name"]: e for e in app_container["env"]}
        password = BROKER_PASSWORDS[name]
        user = "storefront" if name == "storefront" else ""
        assert env["EVENTS_URL"]["value"] == f"redis://{user}:$({password})@valkey:6379/0", name
        ref = env[password]["valueFrom"]["secretKeyRef"]
        assert ref["name"].startswith("shop-secrets") and ref["key"] == secret_key(password)
    # The worker runs the notifications' consumer with the service's own settings and database.
    deployments = of_kind(docs, "Deployment")
    worker = deployments["notifications-worker"]["spec"]["template"]["spec"]
    (runner,) = worker["containers"]
    (app_container,) = deployments["notifications"]["spec"]["template"]["spec"]["containers"]
    assert runner["command"] == ["python", "-m", "notifications_service.worker"]
    assert runner["envFrom"] == app_container["envFrom"]
    database = {e["name"]: e for e in app_container["env"]}["DATABASE_URL"]
    assert {e["name"]: e for e in runner["env"]}["DATABASE_URL"] == database
    for variable in ("BROKER_PASSWORD", "EVENTS_URL"):  # the services' broker user
        assert {e["name"]: e for e in runner["env"]}[variable] == {
            e["name"]: e for e in app_container["env"]
        }[variable]
    assert runner["image"] == app_container["image"]


def test_gateway_runs_the_repository_configuration(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _overlay, docs = rendered
    gateway = of_kind(docs, "Deployment")["gateway"]["spec"]["template"]["spec"]
    (container,) = gateway["containers"]
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"][
        "gateway"
    ]
    assert container["image"] == compose["image"]
    assert container["command"] == compose["command"]
    volume = next(v for v in gateway["volumes"] if v["name"] == "config")
    configmap = of_kind(docs, "ConfigMap")[volume["configMap"]["name"]]
    for name in (*SHARED_FILES, "site.conf"):
        assert configmap["data"][name] == (GATEWAY_DIR / name).read_text()


# --- network policies, evaluated ---------------------------------------------------------------


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels", "matchExpressions"}, selector
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _peer_matches(peers: list[dict[str, Any]] | None, labels: dict[str, str]) -> bool:
    if peers is None:
        return True  # no from/to: anyone
    return any("podSelector" in p and _selects(p["podSelector"], labels) for p in peers)


def _port_matches(ports: list[dict[str, Any]] | None, port: int) -> bool:
    return ports is None or any(p["port"] == port for p in ports)


def allowed(
    policies: list[dict[str, Any]], src: dict[str, str], dst: dict[str, str], port: int
) -> bool:
    """Whether a pod labelled ``src`` may connect to a pod labelled ``dst`` on ``port``."""
    for direction, me, other, key in (("Egress", src, dst, "to"), ("Ingress", dst, src, "from")):
        mine = [
            p["spec"]
            for p in policies
            if direction in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], me)
        ]
        if mine and not any(
            _peer_matches(rule.get(key), other) and _port_matches(rule.get("ports"), port)
            for spec in mine
            for rule in spec.get(direction.lower(), [])
        ):
            return False
    return True


def databases_of(pods: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The database pods' labels, by name (dev: ``postgres``; production: ``<service>-db``)."""
    return {n: p for n, p in pods.items() if n == "postgres" or n.endswith("-db")}


def test_network_policies(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, docs = rendered
    policies = list(of_kind(docs, "NetworkPolicy").values())
    pods = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in
            {**of_kind(docs, "Deployment"), **of_kind(docs, "StatefulSet"), **of_kind(docs, "Job")}.items()}  # fmt: skip
    for name, cluster in of_kind(docs, "Cluster").items():
        pods[name] = {"cnpg.io/cluster": name, **cluster["spec"]["inheritedMetadata"]["labels"]}
    outsider = {"app.kubernetes.io/name": "intruder"}

    assert allowed(policies, outsider, pods["gateway"], 8000)
    for target, port in APP_PORTS.items():
        assert not allowed(policies, outsider, pods[target], port), target
        assert allowed(policies, pods["gateway"], pods[target], port)
        for caller in APP_PORTS:
            if caller != target:
                expected = caller in {c for c, callees in CALLS.items() if target in callees}
                assert allowed(policies, pods[caller], pods[target], port) == expected, (
                    caller,
                    target,
                )
        assert not allowed(policies, pods[target], pods["gateway"], 8000)
    # The notifications worker reaches its service's database, like the service.
    worker_databases = {
        n for n, labels in databases_of(pods).items()
        if allowed(policies, pods["notifications-worker"], labels, 5432)
    }  # fmt: skip
    assert worker_databases == ({"postgres"} if overlay == "dev" else {"notifications-db"})
    # The broker admits the services, the notifications worker and the storefront (its live
    # order pages read the order stream) only, on its port.
    for name, labels in pods.items():
        expected = name in SERVICE_PORTS or name in ("notifications-worker", "storefront")
        assert allowed(policies, labels, pods["valkey"], 6379) == expected, name
    assert not allowed(policies, outsider, pods["valkey"], 6379)
    # The worker sends its mails: to the dev overlay's Mailpit only (a relay outside in production).
    if overlay == "dev":
        assert allowed(policies, pods["notifications-worker"], pods["mailpit"], 1025)
        assert not allowed(policies, pods["notifications"], pods["mailpit"], 1025)
    databases = databases_of(pods)
    assert databases
    for service in APP_PORTS:
        reachable = {
            n for n, labels in databases.items() if allowed(policies, pods[service], labels, 5432)
        }
        expected = (
            set()
            if service in packages(FRONTENDS)
            else {"postgres"}
            if overlay == "dev"
            else {f"{service}-db"}
        )
        assert reachable == expected, (service, reachable)
        assert not allowed(policies, pods["gateway"], next(iter(databases.values())), 5432)
    if "seeder" in pods:  # dev: demo data through the gateway only
        assert allowed(policies, pods["seeder"], pods["gateway"], 8000)
        assert not any(allowed(policies, pods["seeder"], pods[s], p) for s, p in APP_PORTS.items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_broker_lets_the_storefront_only_read_orders(overlay: str, tmp_path: Path) -> None:
    """valkey's exact command from the rendered manifest (its variables expanded as the
    kubelet does, from the dev overlay's generated Secret or stand-ins for production's)
    runs the real valkey-server: every service's and the worker's EVENTS_URL can do what
    the services do, the storefront's only read the order stream; the readiness probe is
    ready with the container's password only."""
    docs = render(overlay)
    secrets = of_kind(docs, "Secret")

    def secret(ref: dict[str, str]) -> str:
        if overlay == "production":
            return production_secret(ref)
        return base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()

    (container,) = of_kind(docs, "StatefulSet")["valkey"]["spec"]["template"]["spec"]["containers"]
    env = container_env(docs, container, secret)
    command = [expand(part, env) for part in container["command"]]
    assert command[0] == "valkey-server" and not any("$(" in part for part in command)
    command[command.index("--dir") + 1] = str(tmp_path)  # the volume's mount: a directory here
    urls = {}
    for name, deployment in of_kind(docs, "Deployment").items():
        for app_container in deployment["spec"]["template"]["spec"]["containers"]:
            if "EVENTS_URL" in {e["name"] for e in app_container.get("env", [])}:
                urls[name] = container_env(docs, app_container, secret)["EVENTS_URL"]
    assert set(urls) == {*APP_PORTS, "notifications-worker"}
    services_urls = {url for name, url in urls.items() if name != "storefront"}
    (services_url,) = services_urls  # one user for every service
    assert urlsplit(services_url).password == env["BROKER_PASSWORD"] == env["REDISCLI_AUTH"]
    assert urlsplit(urls["storefront"]).username == "storefront"
    with valkey_with(command[1:], tmp_path, env["BROKER_PASSWORD"]) as port:

        def here(url: str) -> str:
            return url.replace("@valkey:6379/", f"@127.0.0.1:{port}/")

        assert_storefront_only_reads_orders(here(urls["storefront"]), here(services_url))
        probe = container["readinessProbe"]["exec"]["command"]
        assert probe[:2] == ["sh", "-c"]
        assert_check_needs_the_password(probe[2], port, env["REDISCLI_AUTH"])
