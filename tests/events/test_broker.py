"""The embedded broker: AOF on, durable across kill -9, and it dies with its parent."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import psutil

from shopkit.config import PROJECT_ROOT
from tests.support.broker_acl import assert_storefront_only_reads_orders
from tests.support.database import broker as embedded_broker


def test_append_only_file_keeps_streams_across_a_kill(tmp_path) -> None:
    running = embedded_broker.start(tmp_path / "valkey", durable=True)
    try:
        client = running.client()
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.xadd("events:order", {"event": "one"})
        client.close()
        running.kill()
        running = embedded_broker.restart(running)
        client = running.client()
        assert [fields for _, fields in client.xrange("events:order")] == [{b"event": b"one"}]
        client.close()
    finally:
        running.stop()
    assert (tmp_path / "valkey").exists(), "a durable broker keeps its data directory"


def test_throwaway_broker_deletes_its_data() -> None:
    with embedded_broker.throwaway_broker() as running:
        data_dir = running.data_dir
        assert running.client().ping()
    assert not running.alive()
    assert not data_dir.exists()


def test_the_server_dies_with_the_process_that_started_it(tmp_path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from devstack import broker
        running = broker.start(Path({str(tmp_path / "v")!r}), durable=False)
        print(running.process.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        server_pid = int(parent.stdout.readline())  # type: ignore[union-attr]
        assert psutil.pid_exists(server_pid)
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        else:
            psutil.Process(server_pid).kill()
            raise AssertionError("valkey-server outlived its parent")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_events_url_wins_over_the_embedded_broker(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EVENTS_URL", "redis://valkey.example:6379/0")
    with embedded_broker.events_url(tmp_path / "unused") as url:
        assert url == "redis://valkey.example:6379/0"
    assert not (tmp_path / "unused").exists()


def test_the_storefront_user_only_reads_the_order_stream() -> None:
    with embedded_broker.throwaway_broker() as running:
        assert_storefront_only_reads_orders(running.storefront_url, running.url)


def test_the_storefront_user_and_its_password_survive_a_restart(tmp_path) -> None:
    """The password is made once per data directory (owner-only file), never written in
    plain to the ACL file or the command line, and the user is there again after a kill."""
    data_dir = tmp_path / "valkey"
    running = embedded_broker.start(data_dir, durable=True)
    try:
        password = running.storefront_password
        assert len(password) >= 32
        secret_file = data_dir / embedded_broker.STOREFRONT_PASSWORD_FILE
        assert secret_file.stat().st_mode & 0o777 == 0o600
        assert password not in (data_dir / embedded_broker.ACL_FILE).read_text()
        assert not any(password in part for part in running.process.args)  # type: ignore[union-attr]
        running.kill()
        running = embedded_broker.restart(running)
        assert running.storefront_password == password
        assert_storefront_only_reads_orders(running.storefront_url, running.url)
    finally:
        running.stop()


def test_the_launcher_gives_the_storefront_its_own_broker_user() -> None:
    from devstack.launcher import SHARED, _frontend_envs, _service_envs

    with embedded_broker.throwaway_broker() as running:
        shared = {"EVENTS_URL": running.url, "SMTP_URL": "smtp://127.0.0.1:2525"}
        envs = _service_envs(["sales"], shared, "postgresql://db/shop", own_roles=False)
        envs.update(_frontend_envs(shared, running))
        assert envs["sales"]["EVENTS_URL"] == envs[SHARED]["EVENTS_URL"] == running.url
        assert envs["storefront"]["EVENTS_URL"] == running.storefront_url
        assert envs["storefront"]["SMTP_URL"] == shared["SMTP_URL"]
        assert_storefront_only_reads_orders(envs["storefront"]["EVENTS_URL"], running.url)
    assert _frontend_envs(shared, None) == {}  # an EVENTS_URL of one's own: the same for all
