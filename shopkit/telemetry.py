"""OpenTelemetry tracing, configured only by the standard ``OTEL_*`` environment variables.

Tracing is off unless one of them asks for it: ``OTEL_EXPORTER_OTLP_ENDPOINT``
(or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) names a collector, or
``OTEL_TRACES_EXPORTER`` names an exporter other than ``none``. Off means the
SDK is not even imported: no provider, no instrumentation, no export attempt;
the spans the code asks for are the API's no-op spans.

On, each process gets one tracer provider (``service.name`` from
``OTEL_SERVICE_NAME``, else the service's own name; sampler from
``OTEL_TRACES_SAMPLER``/``_ARG``, by default :data:`DEFAULT_RATIO` of the
traces, parent-based; batching from ``OTEL_BSP_*``) exporting
OTLP over HTTP/protobuf (``OTEL_EXPORTER_OTLP_PROTOCOL``; ``grpc`` is not
installed) or to the console, and the Flask app, SQLAlchemy engine and the
urllib3 (services) or requests (seeder) client are instrumented. W3C
``traceparent`` (``OTEL_PROPAGATORS``, default ``tracecontext,baggage``)
carries the trace between services.

A request that is not sampled costs almost nothing: the decision is taken
before the instrumentation runs (:mod:`shopkit.sampling`), and such a request
runs with the instrumentation suppressed (no server, SQL or HTTP client
spans, attributes or metric records that nobody would see); only the W3C
``traceparent`` is still sent on, so the services it calls follow the same
decision (:func:`_propagate_when_suppressed`). Should the instrumentation
still meet a span that does not record, the rest of that request is
suppressed the same way (:func:`shopkit.sampling.before_when_sampled`).
Its SQL does not even reach the SQL instrumentation: the statement hooks sit
on a traced copy of the engine, which only sessions opened under a recording
span use (:func:`engine_for_current_span`); and :class:`SampledTracer` makes
no hand-made span beneath it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from sqlalchemy import Engine, event

log = logging.getLogger(__name__)
_P = ParamSpec("_P")
_R = TypeVar("_R")

#: The ``Idempotent-Replayed`` header a callee sets on a replayed answer (shopkit.idempotency).
REPLAYED_HEADER = "Idempotent-Replayed"
#: Span attribute: the callee answered from its idempotency store instead of acting.
REPLAYED_ATTRIBUTE = "shop.idempotent_replayed"
#: Paths never traced (probes, scrapes, API docs) unless OTEL_PYTHON_FLASK_EXCLUDED_URLS says.
EXCLUDED_URLS = "/healthz,/readyz,/metrics,/docs,/openapi.json"
SUPPORTED_PROTOCOLS = ("http/protobuf",)
#: Share of the traces kept when ``OTEL_TRACES_SAMPLER`` is unset (a request that starts
#: a trace; a request inside one follows its caller's decision).
DEFAULT_RATIO = 0.1

_lock = threading.Lock()
_enabled: bool | None = None
#: Each engine whose SQL is traced -> its copy that carries the statement hooks.
_traced_engines: dict[Engine, Engine] = {}
#: The SQL instrumentation's pool events and its hooks for them (removed: see _trace_sql).
_POOL_HOOKS = {
    "connect": "_pool_connect",
    "close": "_pool_close",
    "checkin": "_pool_checkin",
    "checkout": "_pool_checkout",
}


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` variables in ``environ`` (default: the process's) turn tracing on."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporter_names(env)
    if exporters is not None:
        return bool(exporters)
    return any(
        env.get(name, "").strip()
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _exporter_names(env: Mapping[str, str]) -> list[str] | None:
    """``OTEL_TRACES_EXPORTER`` as a list (``none`` → empty), or ``None`` when unset."""
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not raw:
        return None
    return [name for name in (part.strip() for part in raw.split(",")) if name and name != "none"]


def tracing_enabled() -> bool:
    """Whether :func:`init_tracing` turned tracing on in this process."""
    return bool(_enabled)


def init_tracing(service: str, *, clients: Iterable[str] = ("urllib3",)) -> bool:
    """Set up this process's tracer provider once, from ``OTEL_*``; returns whether tracing is on.

    ``clients`` names the HTTP client libraries to instrument (``urllib3`` for
    the services' :mod:`shopkit.service_client`, ``requests`` for the seeder).
    Later calls (several apps in one process, as in tests) change nothing.
    """
    global _enabled  # noqa: PLW0603 (one provider per process, set once)
    with _lock:
        if _enabled is not None:
            return _enabled
        _enabled = tracing_requested() and _install_provider(service)
        if _enabled:
            _instrument_clients(clients)
        return _enabled


def _install_provider(service: str) -> bool:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    exporters = [_exporter(name) for name in (_exporter_names(os.environ) or ["otlp"])]
    exporters = [exporter for exporter in exporters if exporter is not None]
    if not exporters:
        return False
    resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = Resource.create({SERVICE_NAME: service})
    from shopkit.sampling import PresetIdGenerator  # noqa: PLC0415

    provider = TracerProvider(
        resource=resource, sampler=_default_sampler(), id_generator=PresetIdGenerator()
    )
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info(
        "tracing on: %s as %s",
        ", ".join(type(e).__name__ for e in exporters),
        resource.attributes.get(SERVICE_NAME),
    )
    return True


def _default_sampler() -> Any:
    """``ParentBased(TraceIdRatioBased(DEFAULT_RATIO))`` unless ``OTEL_TRACES_SAMPLER`` names one.

    ``None`` lets the SDK read ``OTEL_TRACES_SAMPLER`` (and ``_ARG``) itself.
    """
    if os.environ.get("OTEL_TRACES_SAMPLER", "").strip():
        return None
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: PLC0415

    return ParentBased(TraceIdRatioBased(DEFAULT_RATIO))


def _exporter(name: str) -> Any:
    """The span exporter called ``name`` in ``OTEL_TRACES_EXPORTER`` (``None``: unsupported)."""
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

        return ConsoleSpanExporter()
    if name != "otlp":
        log.error("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console, none)", name)
        return None
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol not in SUPPORTED_PROTOCOLS:
        log.error("OTLP protocol %r is not supported here; use http/protobuf", protocol)
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    return OTLPSpanExporter()  # endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*


def _instrument_clients(clients: Iterable[str]) -> None:
    for client in clients:
        if client == "urllib3":
            from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor  # noqa: PLC0415

            URLLib3Instrumentor().instrument(response_hook=_mark_replayed_urllib3)
            _propagate_when_suppressed()
        elif client == "requests":
            from opentelemetry.instrumentation.requests import (  # noqa: PLC0415
                RequestsInstrumentor,
            )

            RequestsInstrumentor().instrument(response_hook=_mark_replayed_requests)
        else:
            raise ValueError(f"no instrumentation for HTTP client {client!r}")


def _propagate_when_suppressed() -> None:
    """Send ``traceparent`` on urllib3 calls made while the instrumentation is suppressed.

    Inside a request that is not sampled (:mod:`shopkit.sampling`) the urllib3
    instrumentation makes no span and so injects nothing; the callee would then
    start a trace of its own and sample it by ratio. This wrapper, outside the
    instrumentation's, injects the current (unsampled) context instead.
    """
    import urllib3.connectionpool  # noqa: PLC0415
    import wrapt  # noqa: PLC0415
    from opentelemetry import propagate  # noqa: PLC0415
    from opentelemetry.instrumentation.utils import (  # noqa: PLC0415
        is_http_instrumentation_enabled,
    )

    def urlopen(wrapped: Any, _instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        if (
            not is_http_instrumentation_enabled()
            and "headers" in kwargs
            and trace.get_current_span().get_span_context().is_valid
        ):
            kwargs["headers"] = headers = dict(kwargs["headers"] or {})
            propagate.inject(headers)
        return wrapped(*args, **kwargs)

    wrapt.wrap_function_wrapper(urllib3.connectionpool.HTTPConnectionPool, "urlopen", urlopen)


def _mark_replayed_urllib3(span: Any, _pool: Any, response: Any) -> None:
    if response is not None and response.headers.get(REPLAYED_HEADER) == "true":
        span.set_attribute(REPLAYED_ATTRIBUTE, True)


def _mark_replayed_requests(span: Any, _request: Any, response: Any) -> None:
    if response is not None and response.headers.get(REPLAYED_HEADER) == "true":
        span.set_attribute(REPLAYED_ATTRIBUTE, True)


def instrument_app(app: Any) -> None:
    """Trace ``app``'s requests (when tracing is on; else nothing). Its database's SQL is
    traced by :class:`shopkit.db.Database` itself (:func:`trace_sql`).

    Each server span is marked ``shop.idempotent_replayed`` when the answer was
    a replay from the idempotency store.
    """
    if not tracing_enabled():
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor  # noqa: PLC0415

    from shopkit.sampling import (  # noqa: PLC0415
        before_when_sampled,
        decide_first,
        teardown_when_sampled,
    )

    excluded = os.environ.get("OTEL_PYTHON_FLASK_EXCLUDED_URLS") or EXCLUDED_URLS
    bare = app.wsgi_app
    before = list(app.before_request_funcs.get(None, []))
    teardown = list(app.teardown_request_funcs.get(None, []))
    # No sqlcommenter context: nothing reads it (SQL spans carry no comments) and it costs
    # a context attach per request.
    FlaskInstrumentor().instrument_app(app, excluded_urls=excluded, enable_commenter=False)
    # The instrumentation's own hooks (the server span's start and end) are the only ones
    # added per request: they also carry the sampling decision (shopkit.sampling).
    app.before_request_funcs[None] = [
        hook if hook in before else before_when_sampled(hook)
        for hook in app.before_request_funcs[None]
    ]
    app.teardown_request_funcs[None] = [
        hook if hook in teardown else teardown_when_sampled(hook)
        for hook in app.teardown_request_funcs[None]
    ]
    app.wsgi_app = decide_first(_mark_replayed(app.wsgi_app), bare)
    _untraced_paths(app, tuple(p.strip() for p in excluded.split(",") if p.strip()))


def _mark_replayed(instrumented: Any) -> Any:
    """Mark the server span of an answer replayed from the idempotency store.

    Done where the answer's headers are sent, which only traced requests pass
    through (a request hook would run for the untraced ones too). The server span
    is still current there: Flask sends the headers before its teardown hooks.
    """

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
        def marking_start_response(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            if (REPLAYED_HEADER, "true") in headers:
                trace.get_current_span().set_attribute(REPLAYED_ATTRIBUTE, True)
            return start_response(status, headers, *rest)

        return instrumented(environ, marking_start_response)

    return wsgi_app


def _trace_sql(engine: Engine) -> None:
    """A span per SQL statement run under a recording span on ``engine``'s traced copy.

    The statement hooks (the SQLAlchemy instrumentation's :class:`EngineTracer`)
    go on a copy of the engine (``engine.execution_options()``: the same pool,
    events of its own), not on the engine itself. SQLAlchemy dispatches an
    engine's statement events on every statement, and the hooks would only find
    the instrumentation suppressed in a request that is not sampled: about a
    dozen calls per statement, the largest part of what such a request cost.
    :func:`engine_for_current_span` hands the copy to the sessions opened under a
    recording span (:meth:`shopkit.db.Database.sessions`); the others run on the
    bare engine, which has no statement event at all.

    ``SQLAlchemyInstrumentor().instrument(engine=...)`` would also wrap
    ``Engine.connect`` process-wide (a ``connect`` span for every session, a
    sixth of a sale's spans), import ``sqlalchemy.ext.asyncio`` (greenlet) and
    refuse SQLAlchemy 2.1 by its declared range; :class:`EngineTracer` alone
    hooks the engine's statement events, which is all the trace needs
    (tests/observability checks the SQL spans beneath each request).
    """
    from opentelemetry.instrumentation.sqlalchemy import __version__  # noqa: PLC0415
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer  # noqa: PLC0415
    from opentelemetry.metrics import get_meter  # noqa: PLC0415

    if engine in _traced_engines:
        return
    traced = engine.execution_options()
    name = "opentelemetry.instrumentation.sqlalchemy"
    in_use = get_meter(name, __version__).create_up_down_counter("db.client.connections.usage")
    hooks = EngineTracer(
        trace.get_tracer(name, __version__), traced, in_use, enable_commenter=False
    )
    # Its pool hooks count connections in use for an OpenTelemetry meter, which Shop does not
    # set up (its metrics are Prometheus'), and they sit on the pool that both engines share.
    for pool_event, hook in _POOL_HOOKS.items():
        event.remove(traced, pool_event, getattr(hooks, hook))
    _traced_engines[engine] = traced


def trace_sql(engine: Engine) -> None:
    """Trace ``engine``'s SQL beneath recording spans (when tracing is on; else nothing).

    Every :class:`shopkit.db.Database` calls it for its engine: the sessions it opens
    under a recording span (a request's, a consumer's batch) then get the traced copy.
    """
    if tracing_enabled():
        _trace_sql(engine)


def engine_for_current_span(engine: Engine) -> Engine:
    """``engine``'s traced copy while the current span records, else ``engine`` itself.

    A session keeps the engine it was opened with, so one unit of work never
    mixes the two (they share the pool, not a connection).
    """
    if not _traced_engines:  # tracing off, or no SQL traced in this process
        return engine
    traced = _traced_engines.get(engine)
    if traced is None or not trace.get_current_span().is_recording():
        return engine
    return traced


def _untraced_paths(app: Any, prefixes: tuple[str, ...]) -> None:
    """No spans at all (not even root SQL spans) while serving an excluded path such as /readyz."""
    inner = app.wsgi_app

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").startswith(prefixes):
            with untraced():
                return inner(environ, start_response)
        return inner(environ, start_response)

    app.wsgi_app = wsgi_app


@contextmanager
def untraced() -> Iterator[None]:
    """Make no spans inside: housekeeping (probes, idle polls) would litter the traces."""
    if not tracing_enabled():
        yield
        return
    from opentelemetry.instrumentation.utils import (  # noqa: PLC0415
        is_instrumentation_enabled,
        suppress_instrumentation,
    )

    if not is_instrumentation_enabled():  # suppressed already (a request not sampled)
        yield
        return
    with suppress_instrumentation():
        yield


def in_callers_trace(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """``function``, to run in another thread as part of the caller's trace.

    A new thread starts with an empty OpenTelemetry context, so the calls it makes
    would each start a trace of their own, sampled or not whatever the caller's
    request was. This carries the caller's context over (its span, its sampling
    decision, a suppression), and nothing else: not the caller's deadline.
    """
    if not tracing_enabled():
        return function
    from opentelemetry import context as otel_context  # noqa: PLC0415

    captured = otel_context.get_current()

    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        token = otel_context.attach(captured)
        try:
            return function(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return run


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or ``None`` outside a (sampled) trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class SampledTracer:
    """A tracer for hand-made spans that makes none beneath a span that does not record.

    Under a parent that is not sampled, the SDK would still ask the sampler,
    draw a span id and build a non-recording span for each child, and the
    child could not record either: a parent-based sampler drops it, and a
    ratio sampler decides from the trace id, as it did for the parent. So the
    parent itself is handed back: ending it or setting its attributes does
    nothing, and calls made beneath it still carry its ``traceparent``.
    With no parent (a root span) or a recording one, the SDK decides as usual.
    """

    def __init__(self, name: str) -> None:
        self._tracer = trace.get_tracer(name)

    def start_span(self, name: str, context: Context | None = None, **kwargs: Any) -> trace.Span:
        """A new span, or the current one if it is valid and does not record."""
        parent = trace.get_current_span(context)
        if parent.get_span_context().is_valid and not parent.is_recording():
            return parent
        return self._tracer.start_span(name, context, **kwargs)

    @contextmanager
    def start_as_current_span(
        self, name: str, context: Context | None = None, **kwargs: Any
    ) -> Iterator[trace.Span]:
        """:meth:`start_span`, made current for the block and ended after it."""
        span = self.start_span(name, context, **kwargs)
        with trace.use_span(span, end_on_exit=True):
            yield span


def tracer(name: str) -> SampledTracer:
    """A tracer for hand-made spans: no-op while tracing is off; see :class:`SampledTracer`."""
    return SampledTracer(name)
