"""Events: a transactional outbox, a relay to Valkey streams, and exactly-once consumers.

- :mod:`shopkit.events.catalog`: every event type (``shop.<aggregate>.<event>.v1``)
  with its JSON Schema, and the stream each aggregate's events go to;
- :mod:`shopkit.events.envelope`: the CloudEvents 1.0 structured-JSON envelope;
- :mod:`shopkit.events.outbox`: the outbox table and :func:`~shopkit.events.outbox.emit`,
  which writes an event in the caller's transaction;
- :mod:`shopkit.events.relay`: publishes committed outbox rows, in order per aggregate;
- :mod:`shopkit.events.consumer`: consumer groups whose handlers apply each event once;
- :mod:`shopkit.events.deadletters`: list, replay and discard the events a group gave up on;
- :mod:`shopkit.events.metrics` and :mod:`shopkit.events.asyncapi`: what operators and
  other teams see.

The guarantees and their reasons are in ``docs/events.rst``.
"""
