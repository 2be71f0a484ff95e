"""JSON log lines, one object per line, each with the service name, request id and trace id.

The access log is quiet by default: only answers that are server errors (5xx,
a warning) or slow (:data:`SLOW_REQUEST_MS`, info) get a line; the others are
logged at debug level, so ``ACCESS_LOG=all`` (or ``LOG_LEVEL=DEBUG``) shows
every request. ``trace_id`` is the OpenTelemetry
trace the line belongs to (``null`` while tracing is off), so a log line leads
to its trace in Jaeger.

Request bodies and ``Authorization`` headers are never logged, so tokens and
passwords cannot leak into the logs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request

from shopkit.deadline import ARRIVAL_ENVIRON
from shopkit.request_id import current_request_id
from shopkit.telemetry import current_trace_id

_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts, level, service, request_id, trace_id, logger, msg``."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` (and any ``extra=`` fields) as a JSON line."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "request_id": getattr(record, "request_id", None) or current_request_id(),
            "trace_id": getattr(record, "trace_id", None) or current_trace_id(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_base_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Stamp each record with the request and trace ids current when it was made."""
    record = _base_factory(*args, **kwargs)
    if not hasattr(record, "request_id"):
        record.request_id = current_request_id()
    if not hasattr(record, "trace_id"):
        record.trace_id = current_trace_id()
    return record


def configure_logging(service: str, level: str = "INFO", *, access_log: str = "quiet") -> None:
    """Send every log record of the process to stdout as JSON lines.

    ``access_log="all"`` logs every request (see :func:`init_access_log`).
    """
    logging.setLogRecordFactory(_record_with_request_id)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_shop_handler", False):
            root.removeHandler(existing)
    handler._shop_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    access_level = logging.DEBUG if access_log == "all" else logging.NOTSET
    logging.getLogger("shop.access").setLevel(access_level)
    # Libraries that narrate every step at INFO.
    for name in ("pgserver", "alembic.runtime.plugins", "alembic.autogenerate"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # gunicorn's own error log goes through the same JSON handler.
    for name in ("gunicorn.error", "werkzeug"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True


#: A request slower than this gets an access line even in the quiet default.
SLOW_REQUEST_MS = 1000.0


def init_access_log(app: Flask) -> None:
    """Log one JSON line per request: method, path, status and duration (no bodies).

    5xx answers are warnings, requests slower than :data:`SLOW_REQUEST_MS` are
    info, the rest debug (shown only with ``ACCESS_LOG=all`` or ``LOG_LEVEL=DEBUG``).
    """
    access = logging.getLogger("shop.access")

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()
        arrived = request.environ.get(ARRIVAL_ENVIRON)
        g.request_queued_ms = (time.monotonic() - arrived) * 1000 if arrived else None

    @app.after_request
    def _log(response: Response) -> Response:
        started = g.get("request_started")
        duration_ms = (time.perf_counter() - started) * 1000 if started else None
        queued_ms = g.get("request_queued_ms")
        if request.path in ("/healthz", "/metrics"):
            return response
        level = logging.DEBUG
        if response.status_code >= 500:
            level = logging.WARNING
        elif duration_ms is not None and duration_ms + (queued_ms or 0) >= SLOW_REQUEST_MS:
            level = logging.INFO
        if access.isEnabledFor(level):
            access.log(
                level,
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round(duration_ms, 2) if duration_ms is not None else None,
                    "queued_ms": round(queued_ms, 2) if queued_ms is not None else None,
                },
            )
        return response
