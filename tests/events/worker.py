"""A relay or consumer in a process of its own, ended by a crash point of the faults engine.

``python -m tests.events.worker relay|consume`` with ``DATABASE_URL``,
``EVENTS_URL`` and ``SHOP_FAULTS_DIR`` set: the fault set of service ``test``
in that directory arms the crash (``{"kind": "crash", "after_step": <point>}``),
the same switch a running service's ``/admin/faults`` flips. The crash points
(:data:`shopkit.faults.EVENT_CRASH_POINTS`) are the worst moments for each:

- ``publish`` (relay): the events are in the stream, the rows not yet marked;
- ``apply`` (consumer): the handler ran, its transaction is not committed;
- ``commit`` (consumer): the effects and inbox rows are committed, nothing acknowledged.

An injected crash is ``os._exit``: no ``finally``, no atexit, no flush, no commit.
"""

from __future__ import annotations

import os
import sys
import threading

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from shopkit import faults
from shopkit.events.consumer import Consumer, ConsumerSettings
from shopkit.events.relay import Relay, broker_client
from tests.events import tables

#: The service name whose fault set the worker reads.
SERVICE = "test"


def main() -> None:
    role = sys.argv[1]
    faults.install(SERVICE)
    engine = create_engine(os.environ["DATABASE_URL"])
    broker = broker_client(os.environ["EVENTS_URL"])
    if role == "relay":
        Relay(engine, tables.outbox, broker, service=SERVICE).publish_once()
        raise SystemExit("the relay did not crash")
    group = os.environ.get("SHOP_TEST_GROUP", "crashy")
    consumer = Consumer(
        broker,
        sessionmaker(engine),
        tables.inbox,
        group=group,
        streams=os.environ["SHOP_TEST_STREAMS"].split(","),
        handler=tables.record_effect(group),
        name="doomed",
        settings=ConsumerSettings(block_ms=200),
    )
    consumer.run(threading.Event())  # runs until the crash point ends the process


if __name__ == "__main__":
    main()
