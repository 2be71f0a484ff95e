"""What is not sampled costs no span machinery: no SQL hooks, no hand-made child spans.

shopkit.telemetry puts the SQL instrumentation's statement hooks on a copy of
the engine, and shopkit.db's sessions take that copy only under a span that
records; its tracer for hand-made spans makes none beneath a span that does
not record. These tests use a tracer provider of their own (the process's
stays untouched) and a real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text

from shopkit import telemetry
from shopkit.db import Database


@pytest.fixture
def database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A service database whose SQL is traced, as ``instrument_app`` leaves it."""
    monkeypatch.setattr(telemetry, "_traced_engines", {})
    database = Database(database_url, application_name="test-sql-tracing", pool_size=1)
    telemetry._trace_sql(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """The spans finished by the SQL hooks and by the test's tracer."""
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    # The hooks' tracer is a proxy of the global provider's, looked up per span.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    return exported


def _select_one(database: Database) -> int:
    with database.sessions() as session:
        return int(session.execute(text("SELECT 1")).scalar_one())


def test_sql_under_a_recording_span_is_traced(
    database: Database, exporter: InMemorySpanExporter
) -> None:
    with trace.get_tracer("test").start_as_current_span("request") as request:
        assert database.sessions().get_bind() is not database.engine
        assert _select_one(database) == 1
    sql = [s for s in exporter.get_finished_spans() if s.name != "request"]
    assert [s.attributes.get("db.system") for s in sql] == ["postgresql"]
    assert sql[0].parent is not None
    assert sql[0].parent.span_id == request.get_span_context().span_id


@pytest.mark.parametrize("span", ["none", "not sampled"])
def test_other_sql_runs_on_an_engine_without_statement_hooks(
    database: Database, exporter: InMemorySpanExporter, span: str
) -> None:
    current = trace.INVALID_SPAN if span == "none" else _unsampled_span()
    with trace.use_span(current):
        session = database.sessions()
        assert session.get_bind() is database.engine
        assert not database.engine._has_events  # SQLAlchemy dispatches no statement event
        session.close()
        assert _select_one(database) == 1
    assert exporter.get_finished_spans() == ()


def test_a_session_keeps_its_engine_when_the_span_changes(
    database: Database, exporter: InMemorySpanExporter
) -> None:
    session = database.sessions()  # opened outside any span
    try:
        with trace.get_tracer("test").start_as_current_span("request"):
            assert session.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        session.close()
    assert [s.name for s in exporter.get_finished_spans()] == ["request"]


def _unsampled_span() -> trace.Span:
    context = trace.SpanContext(
        trace_id=1, span_id=2, is_remote=False, trace_flags=trace.TraceFlags(0)
    )
    return trace.NonRecordingSpan(context)


def test_no_hand_made_span_beneath_a_span_not_sampled(exporter: InMemorySpanExporter) -> None:
    hand = telemetry.tracer("test.hand")
    parent = _unsampled_span()
    with trace.use_span(parent):
        assert hand.start_span("step") is parent  # its traceparent still goes on
        with hand.start_as_current_span("step") as span:
            assert span is parent
            assert trace.get_current_span() is parent
    assert exporter.get_finished_spans() == ()


def test_hand_made_spans_record_at_the_root_and_beneath_a_recording_span(
    exporter: InMemorySpanExporter,
) -> None:
    hand = telemetry.tracer("test.hand")
    with hand.start_as_current_span("root") as root:
        assert root.is_recording()
        step = hand.start_span("step", attributes={"shop.saga.step": "reserve"})
        assert step.is_recording() and step is not root
        step.end()
    finished = {s.name: s for s in exporter.get_finished_spans()}
    assert set(finished) == {"root", "step"}
    assert finished["step"].parent is not None
    assert finished["step"].parent.span_id == root.get_span_context().span_id
    assert finished["step"].attributes == {"shop.saga.step": "reserve"}


def test_tracing_sql_adds_no_hook_to_the_shared_pool(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SQL instrumentation's pool hooks feed a meter Shop does not set up: they go."""
    monkeypatch.setattr(telemetry, "_traced_engines", {})
    database = Database(database_url, application_name="test-sql-tracing", pool_size=1)
    try:
        dispatch = database.engine.pool.dispatch
        pool_events = ("connect", "close", "checkin", "checkout")
        before = {name: list(getattr(dispatch, name)) for name in pool_events}
        assert before["checkout"]  # shopkit.db's own ping of idle connections
        telemetry._trace_sql(database.engine)
        assert {name: list(getattr(dispatch, name)) for name in pool_events} == before
        traced = telemetry._traced_engines[database.engine]
        assert traced.pool is database.engine.pool
        assert len(traced.dispatch.before_cursor_execute) == 1
    finally:
        database.dispose()
