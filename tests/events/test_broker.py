"""The embedded broker: AOF on, durable across kill -9, and it dies with its parent."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import psutil

from shopkit.config import PROJECT_ROOT
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
