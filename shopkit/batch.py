"""Batched internal calls: many idempotent calls of one kind in one request and one transaction.

A batch endpoint (``POST /internal/reservations/batch``, ``POST
/internal/wallet-debits/batch``) takes ``{"items": [{"idempotency_key", "request"}]}``:
each ``request`` is exactly the body its single endpoint takes, and each key is
the key it would carry there. The answer is 200 ``{"results": [{"idempotency_key",
"status", "body", "replayed"}]}``, one per item in the request's order, each the
status and body the single endpoint would have answered. Since an item's key is
stored under the single endpoint's fingerprint, a sale done in a batch replays
the same through its single endpoint (recovery) and through another batch.

The items run in an order the service chooses (the rows they lock, ascending),
in one transaction (see :func:`shopkit.idempotency.run_idempotent_batch`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flask import Response, request
from flask import json as flask_json
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from shopkit.auth import require_principal
from shopkit.db import get_session
from shopkit.errors import ProblemError
from shopkit.idempotency import (
    KEY_PATTERN,
    BatchItem,
    IdempotencyKeyMixin,
    IdempotentResult,
    request_fingerprint,
    run_idempotent_batch,
)
from shopkit.metrics import IDEMPOTENT_REPLAYS, BusinessMetric, count_outcome

#: Most items one batch may hold.
MAX_BATCH_ITEMS = 100


def idempotency_key_field() -> fields.String:
    """A batch item's ``idempotency_key`` (the rules of the ``Idempotency-Key`` header)."""
    return fields.String(
        required=True,
        validate=validate.Regexp(KEY_PATTERN, error="1 to 200 printable ASCII characters."),
        metadata={"description": "The key this item's single call would carry."},
    )


def items_field(item_schema: type[Schema]) -> fields.List:
    """A batch's ``items``: 1 to :data:`MAX_BATCH_ITEMS` of ``item_schema``."""
    return fields.List(
        fields.Nested(item_schema),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH_ITEMS),
        metadata={"description": f"1 to {MAX_BATCH_ITEMS} calls, each with its own key."},
    )


class BatchSchemaMixin:
    """A batch's ``items`` name each idempotency key once and each sale once."""

    @validates_schema
    def _distinct(self, data: dict[str, Any], **_kwargs: Any) -> None:
        items = data.get("items", [])
        keys = [item["idempotency_key"] for item in items]
        if len(set(keys)) != len(keys):
            raise ValidationError("Each idempotency_key may appear once in a batch.", "items")
        sales = [item["request"]["sale_id"] for item in items]
        if len(set(sales)) != len(sales):
            raise ValidationError("Each sale may appear once in a batch.", "items")


class BatchAnswerSchema(Schema):
    """One item's answer: what its single endpoint would have answered."""

    idempotency_key = fields.String()
    status = fields.Integer()
    body = fields.Dict(metadata={"description": "The answer's body (a problem for a refusal)."})
    replayed = fields.Boolean(metadata={"description": "Replayed from the idempotency store."})


class BatchAnswersSchema(Schema):
    """A batch's answers, in the order of its items."""

    results = fields.List(fields.Nested(BatchAnswerSchema))


def respond_batch(
    model: type[IdempotencyKeyMixin],
    items: Sequence[dict[str, Any]],
    *,
    single_path: str,
    order: Callable[[dict[str, Any]], Any],
    operation: Callable[[dict[str, Any]], Callable[[], tuple[int, dict[str, Any]]]],
    outcomes: BusinessMetric | None = None,
    lock: Callable[[list[dict[str, Any]]], None] | None = None,
    applied: Callable[[list[dict[str, Any]]], None] | None = None,
) -> Response:
    """Run a validated batch: each item's ``operation(request)`` once per its key, all in one
    transaction, in the order ``order(request)`` sorts them; the answers in request order.

    ``lock(requests)``, if given, runs first in that transaction: it takes every
    row the items will lock, in one global order, so that two concurrent batches
    queue instead of deadlocking when sorting the items cannot order their rows.
    ``applied(requests)``, if given, runs last in it, before the commit, with the
    requests whose effect this transaction holds (answered 2xx, not replayed), in
    the order they ran: a batch writes their events there with one statement.

    ``single_path`` is the single endpoint's path, whose fingerprint each item's key
    is stored under. ``outcomes`` counts each item's answer as that endpoint's
    ``counts_outcomes`` would (replays not counted).
    """
    raw = request.get_json(silent=True)
    if not isinstance(raw, dict) or len(raw.get("items") or []) != len(items):
        raise ProblemError(400, "bad_request", "The batch could not be read.")
    principal = require_principal()
    schema = str(model.__table__.schema)  # type: ignore[attr-defined]
    ranked = sorted(range(len(items)), key=lambda i: order(items[i]["request"]))
    requests = [items[i]["request"] for i in ranked]
    answers = run_idempotent_batch(
        get_session(),
        model,
        scope=schema,
        caller=f"{principal.role}:{principal.subject}",
        before=None if lock is None else lambda: lock(requests),
        after=None if applied is None else lambda answers: applied(_took_effect(requests, answers)),
        items=[
            BatchItem(
                key=items[i]["idempotency_key"],
                fingerprint=request_fingerprint("POST", single_path, raw["items"][i]["request"]),
                operation=operation(items[i]["request"]),
            )
            for i in ranked
        ],
    )
    results: list[IdempotentResult] = [answers[0]] * len(items)
    for answer, position in zip(answers, ranked, strict=True):
        results[position] = answer
        if answer.replayed:
            IDEMPOTENT_REPLAYS.labels(endpoint=f"POST {single_path}").inc()
        elif outcomes is not None:
            count_outcome(outcomes, "ok" if answer.status < 400 else answer.body.get("code"))
    # Written by hand (as the single endpoints' hot answers are): a schema would walk
    # every item's body again.
    results_body = {
        "results": [
            {
                "idempotency_key": item["idempotency_key"],
                "status": result.status,
                "body": result.body,
                "replayed": result.replayed,
            }
            for item, result in zip(items, results, strict=True)
        ]
    }
    return Response(flask_json.dumps(results_body), status=200, mimetype="application/json")


def _took_effect(
    requests: Sequence[dict[str, Any]], answers: Sequence[IdempotentResult]
) -> list[dict[str, Any]]:
    """The requests whose answer is a fresh success: their effect is in the transaction."""
    return [
        wanted
        for wanted, answer in zip(requests, answers, strict=True)
        if not answer.replayed and answer.status < 400
    ]
