"""A request that is not sampled skips the tracing instrumentation altogether.

The Flask instrumentation does its per-request work (the request's attributes,
collected twice, a span, metric attributes) before the sampler has said
whether anything will be recorded, and the SQL and HTTP client hooks beneath
it work for spans that record nothing. So the decision is taken first, by a
WSGI wrapper outside the instrumentation, with the tracer provider's own
sampler:

* a request whose caller did not sample it (``traceparent`` with the sampled
  flag off) is not sampled, as the parent-based samplers decide;
* a request that starts a trace gets its trace id here, and the sampler is
  asked about that id. If it says no, nothing is traced; if yes, the id is
  handed to the tracer (:class:`PresetIdGenerator`) so the server span gets
  it, and the sampler, asked again by the instrumentation, says yes again
  (the ratio samplers decide from the trace id alone).

A request that is not sampled runs under a context that holds its (non
recording) span context, so log lines carry its trace id and calls to other
services carry ``traceparent`` with the flag off (:mod:`shopkit.telemetry`
injects it while the instrumentation is suppressed), and the instrumentation
is suppressed for the whole request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from flask import g, request
from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.instrumentation.wsgi import wsgi_getter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

#: Set in the WSGI environ of a request that is not sampled.
UNSAMPLED_ENVIRON = "shop.trace_unsampled"

_preset_trace_id: ContextVar[int | None] = ContextVar("preset_trace_id", default=None)


class PresetIdGenerator(RandomIdGenerator):
    """Random ids, except a trace id chosen (and sampled) before the request's span exists."""

    def generate_trace_id(self) -> int:
        """The preset trace id of the current request, if any, else a random one."""
        preset = _preset_trace_id.get()
        return preset if preset is not None else super().generate_trace_id()


def _unsampled_context(environ: dict[str, Any], provider: TracerProvider) -> Any:
    """The context to serve an unsampled request under, or ``None`` to let tracing decide.

    When the request starts a trace that the sampler keeps, its trace id is
    preset in :data:`_preset_trace_id` (the caller resets it).
    """
    extracted = propagate.extract(environ, getter=wsgi_getter)
    parent = trace.get_current_span(extracted).get_span_context()
    if parent.is_valid:
        return None if parent.trace_flags.sampled else extracted
    generator: IdGenerator = provider.id_generator
    trace_id = generator.generate_trace_id()
    decision = provider.sampler.should_sample(None, trace_id, environ.get("REQUEST_METHOD", ""))
    if decision.decision.is_sampled():
        _preset_trace_id.set(trace_id)
        return None
    unsampled = trace.SpanContext(
        trace_id,
        generator.generate_span_id(),
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(unsampled), extracted)


def decide_first(instrumented: Callable[..., Any], bare: Callable[..., Any]) -> Any:
    """A WSGI app that serves unsampled requests with ``bare`` (the app before instrumentation),
    and the others with ``instrumented``."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider) or not isinstance(
        provider.id_generator, PresetIdGenerator
    ):
        return instrumented

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
        preset = _preset_trace_id.set(None)
        try:
            unsampled = _unsampled_context(environ, provider)
            if unsampled is None:
                return instrumented(environ, start_response)
            environ[UNSAMPLED_ENVIRON] = True
            token = context.attach(unsampled)
            try:
                with suppress_instrumentation():
                    return bare(environ, start_response)
            finally:
                context.detach(token)
        finally:
            _preset_trace_id.reset(preset)

    return wsgi_app


def before_when_sampled(hook: Callable[[], Any]) -> Callable[[], Any]:
    """The instrumentation's ``before_request`` hook, skipped when the request is not sampled.

    Should the server span it starts still not record (a sampler that decides
    otherwise the second time), the rest of the request is suppressed all the
    same: a span that does not record has children that do not either, and
    making them would only cost CPU.
    """

    @functools.wraps(hook)
    def wrapped() -> Any:
        if request.environ.get(UNSAMPLED_ENVIRON):
            return None
        answer = hook()
        span = trace.get_current_span()
        if span.get_span_context().is_valid and not span.is_recording():
            suppressed = suppress_instrumentation()
            suppressed.__enter__()
            g.shop_unsampled = suppressed
        return answer

    return wrapped


def teardown_when_sampled(hook: Callable[[BaseException | None], Any]) -> Callable[..., Any]:
    """The instrumentation's ``teardown_request`` hook, skipped when the request is not sampled
    (after leaving what :func:`before_when_sampled` suppressed, in the reverse order)."""

    @functools.wraps(hook)
    def wrapped(exc: BaseException | None) -> Any:
        if request.environ.get(UNSAMPLED_ENVIRON):
            return None
        suppressed = g.pop("shop_unsampled", None)
        if suppressed is not None:
            suppressed.__exit__(None, None, None)
        return hook(exc)

    return wrapped
