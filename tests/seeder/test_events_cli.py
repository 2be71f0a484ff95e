"""``python -m seeder events``: dead letters listed, replayed and discarded over a real service.

The notifications service runs as a gunicorn process on a real broker; its
consumer group (in this process) dead-letters two unreadable entries at once,
and the CLI reaches them through ``/admin/events`` only.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from notifications_service.notifications import GROUP
from notifications_service.worker import build_consumer
from seeder.cli import cli
from shopkit.events.catalog import dead_letter_stream, replay_stream, stream_for
from shopkit.events.envelope import FIELD
from tests.support.events import drain, start_with_broker
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME

pytestmark = pytest.mark.processes


@pytest.fixture
def run(live_stack: Any, broker: Any) -> Any:
    """``run(*args)``: the seeder in-process against customers and notifications on the broker."""
    for service in ("customers", "notifications"):
        start_with_broker(live_stack, service, broker.url)
    env = {
        "CUSTOMERS_URL": live_stack.url("customers"),
        "NOTIFICATIONS_URL": live_stack.url("notifications"),
        # The other services are not running: status and lookups skip them, named.
        **{
            f"{name.upper()}_URL": live_stack.url(name)
            for name in ("inventory", "sales", "reviews")
        },
        "ADMIN_USERNAME": ADMIN_USERNAME,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "COLUMNS": "200",
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, prog_name="python -m seeder")

    return invoke


def _dead_letters(valkey: redis.Redis, database_url: str, broker: Any, count: int) -> list[str]:
    """``count`` unreadable entries, dead-lettered by the notifications group; their ids."""
    for n in range(count):
        valkey.xadd(stream_for("order"), {FIELD: f"garbage {n}".encode()})
    consumer = build_consumer(database_url, broker.url)
    consumer.ensure_groups()
    drain(consumer, until=lambda: valkey.xlen(dead_letter_stream(GROUP)) == count)
    return [entry_id.decode() for entry_id, _ in valkey.xrange(dead_letter_stream(GROUP))]


def test_dead_letters_are_listed_replayed_and_discarded(
    run: Any,
    valkey: redis.Redis,
    database_url: str,
    broker: Any,
) -> None:
    first, second = _dead_letters(valkey, database_url, broker, 2)

    listed = run("events", "dead-letters", "list")
    assert listed.exit_code == 0, listed.output
    assert first in listed.output and second in listed.output and "2 dead letters." in listed.output
    assert "not a CloudEvent" in listed.output and "notifications" in listed.output

    replayed = run("events", "dead-letters", "replay", first)
    assert replayed.exit_code == 0, replayed.output
    assert f"Dead letter {first} of notifications/{GROUP} replayed" in replayed.output
    assert valkey.xlen(replay_stream(GROUP)) == 1  # handed back to this group only

    scoped = ("events", "dead-letters", "--service", "notifications", "--group", GROUP)
    discarded = run(*scoped, "discard", second)
    assert discarded.exit_code == 0, discarded.output
    assert valkey.xlen(dead_letter_stream(GROUP)) == 0

    after = run("events", "dead-letters", "--service", "notifications", "list")
    assert after.exit_code == 0 and "0 dead letters." in after.output

    status = run("events", "status", "--service", "notifications")
    assert status.exit_code == 0, status.output
    assert "notifications" in status.output and "events:order" in status.output


def test_an_unknown_dead_letter_is_a_clear_error(
    run: Any,
    valkey: redis.Redis,
    database_url: str,
    broker: Any,
) -> None:
    _dead_letters(valkey, database_url, broker, 1)
    missing = run("events", "dead-letters", "discard", "1-0")
    assert missing.exit_code == 1
    assert "No dead letter 1-0 in any consumer group" in missing.output
    scoped = run("events", "dead-letters", "--service", "notifications", "--group", GROUP,
                 "replay", "1-0")  # fmt: skip
    assert scoped.exit_code == 1 and "no dead letter 1-0" in scoped.output
    assert valkey.xlen(dead_letter_stream(GROUP)) == 1  # nothing changed
