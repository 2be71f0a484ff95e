"""The registry of problem codes: every ``code`` a Shop service can answer, declared once.

Each :class:`ProblemSpec` names a machine-readable ``code``, the HTTP status
it is answered with, a one-line meaning and the RFC 9457 extension members
its problem document may carry (beside ``type``, ``title``, ``status``,
``detail``, ``code``, ``instance`` and ``request_id``). :data:`MEMBERS`
describes each extension member once, as a JSON schema.

:class:`shopkit.errors.ProblemError` refuses a code (or a status) that is not
registered here, the OpenAPI documents of the services are built from this
registry (the ``Problem`` schema and the codes each error response lists),
and so is the error-code reference of the docs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_MONEY = {"type": "string", "pattern": r"^-?\d+\.\d{2}$", "example": "19.99"}

#: Every extension member a problem document may carry, with its JSON schema.
MEMBERS: dict[str, dict[str, Any]] = {
    "errors": {
        "type": "object",
        "additionalProperties": True,
        "description": "Per-field messages: `{field: [message, ...]}`.",
        "example": {"quantity": ["Must be greater than or equal to 1."]},
    },
    "usernames": {
        "type": "array",
        "items": {"type": "string"},
        "description": "The usernames the refusal is about.",
    },
    "product_ids": {
        "type": "array",
        "items": {"type": "integer"},
        "description": "The products that do not exist (or are archived).",
    },
    "available": {"type": "integer", "description": "Units in stock (one-line requests)."},
    "requested": {"type": "integer", "description": "Units requested (one-line requests)."},
    "products": {
        "type": "array",
        "description": "Every line that is short of stock.",
        "items": {
            "type": "object",
            "properties": {
                "product_id": {"type": "integer"},
                "available": {"type": "integer"},
                "requested": {"type": "integer"},
            },
        },
    },
    "balance": {**_MONEY, "description": "The wallet balance when the debit was refused."},
    "required": {**_MONEY, "description": "The amount the debit needed."},
    "stock": {"type": "integer", "description": "The product's stock now."},
    "max_stock": {"type": "integer", "description": "The most a product's stock may hold."},
    "max_lines": {"type": "integer", "description": "The most products a cart may hold."},
    "sale_id": {
        "type": "string",
        "format": "uuid",
        "description": "The order the answer is about (look it up with `GET /sales/{id}`).",
    },
    "sale_status": {
        "type": "string",
        "enum": [
            "pending",
            "completed",
            "failed",
            "shipped",
            "delivered",
            "cancelling",
            "cancelled",
            "unknown",
        ],
        "description": "That order's status (`unknown`: it may not have been recorded).",
    },
    "reason": {
        "type": "string",
        "enum": ["dependency_unavailable", "database_unavailable"],
        "description": "Why the order's outcome is not known yet.",
    },
    "dependency": {
        "type": "string",
        "nullable": True,
        "description": "The service that could not be reached.",
    },
    "retry_after": {"type": "integer", "description": "Seconds to wait (also `Retry-After`)."},
}


@dataclass(frozen=True)
class ProblemSpec:
    """One problem ``code``: its status, its meaning and the extension members it carries."""

    code: str
    status: int
    title: str
    members: tuple[str, ...] = ()
    #: Other statuses the same code is answered with (rare: see the meaning).
    other_statuses: tuple[int, ...] = ()

    @property
    def statuses(self) -> tuple[int, ...]:
        """Every status this code is answered with, the usual one first."""
        return (self.status, *self.other_statuses)


_SALE = ("sale_id", "sale_status")

_SPECS = (
    # Requests the server cannot read.
    ProblemSpec("bad_request", 400, "The request cannot be read.", ("errors",)),
    ProblemSpec("malformed_json", 400, "The request body is not valid JSON."),
    ProblemSpec("too_deeply_nested", 400, "The JSON body is nested too deeply."),
    ProblemSpec(
        "idempotency_key_required", 400, "This call changes state: send an `Idempotency-Key`."
    ),
    ProblemSpec(
        "invalid_idempotency_key",
        400,
        "`Idempotency-Key` must be 1-200 printable ASCII characters without spaces.",
    ),
    ProblemSpec("uri_too_long", 414, "The request line is too long (answered by gunicorn)."),
    ProblemSpec("headers_too_large", 431, "The request headers are too large (gunicorn)."),
    ProblemSpec("payload_too_large", 413, "The request body is larger than 4 MiB."),
    ProblemSpec("unsupported_media_type", 415, "A request body must be JSON (`application/json`)."),
    ProblemSpec("image_too_large", 413, "The image is larger than 1 MiB."),
    ProblemSpec("unsupported_image", 415, "The body is not a PNG, JPEG, WebP or safe SVG image."),
    ProblemSpec("validation_error", 422, "The request is not valid: see `errors`.", ("errors",)),
    # Identity and access.
    ProblemSpec("unauthorized", 401, "A valid bearer token is required."),
    ProblemSpec("invalid_token", 401, "The bearer or refresh token is not valid."),
    ProblemSpec("token_expired", 401, "The token has expired: refresh it or log in again."),
    ProblemSpec("invalid_credentials", 401, "Wrong username or password."),
    ProblemSpec("invalid_client", 401, "Unknown service client or wrong secret."),
    ProblemSpec("account_inactive", 401, "The account is deactivated."),
    ProblemSpec("forbidden", 403, "This role or caller may not do this."),
    ProblemSpec("forbidden_caller", 403, "This service may not call this internal endpoint."),
    ProblemSpec("not_a_buyer", 403, "Only customers who bought a product may review it."),
    ProblemSpec("faults_disabled", 403, "Fault injection is off in production mode."),
    ProblemSpec(
        "too_many_attempts", 429, "Too many login or registration attempts.", ("retry_after",)
    ),
    ProblemSpec("too_many_requests", 429, "Too many requests."),
    # Something that does not exist.
    ProblemSpec(
        "not_found",
        404,
        "The resource, or a resource the request names, does not exist.",
        ("usernames", "product_ids", *_SALE),
    ),
    ProblemSpec("method_not_allowed", 405, "The path does not accept this method."),
    ProblemSpec("not_acceptable", 406, "The server cannot answer in an accepted media type."),
    # Refusals: the request is well formed, the state does not allow it.
    ProblemSpec("conflict", 409, "The request conflicts with the resource's state."),
    ProblemSpec("already_exists", 409, "An account with this username exists.", ("usernames",)),
    ProblemSpec(
        "duplicate_in_batch", 409, "A batch names the same username twice.", ("usernames",)
    ),
    ProblemSpec("cannot_deactivate_admin", 409, "Admin accounts cannot be deactivated."),
    ProblemSpec(
        "insufficient_funds",
        409,
        "The wallet balance does not cover the amount.",
        ("balance", "required", *_SALE),
    ),
    ProblemSpec("balance_limit", 409, "The balance would go over its limit."),
    ProblemSpec("customer_inactive", 409, "The customer account is deactivated.", _SALE),
    ProblemSpec("customer_not_found", 409, "The customer account does not exist.", _SALE),
    ProblemSpec("already_recorded", 409, "This sale's wallet entry already exists."),
    ProblemSpec("no_matching_debit", 409, "The sale has no debit to refund for this customer."),
    ProblemSpec("amount_mismatch", 409, "A refund must equal the sale's debit."),
    ProblemSpec(
        "insufficient_stock",
        409,
        "Not enough stock for the quantity requested.",
        ("available", "requested", "products", *_SALE),
    ),
    ProblemSpec(
        "stock_limit",
        409,
        "The stock would go over its limit (503 when a compensation must wait for room).",
        ("stock", "max_stock"),
        other_statuses=(503,),
    ),
    ProblemSpec("already_reserved", 409, "The sale already has a reservation."),
    ProblemSpec("reservation_sold", 409, "The sale was paid: only its cancellation returns stock."),
    ProblemSpec("not_refunded", 409, "The sale's stock returns only after its refund."),
    ProblemSpec("reservation_returned", 409, "The reservation was returned by a cancellation."),
    ProblemSpec("reservation_released", 409, "The reservation was already released."),
    ProblemSpec("cart_full", 409, "The cart holds its maximum number of products.", ("max_lines",)),
    ProblemSpec("cart_empty", 409, "The cart is empty."),
    ProblemSpec("sale_in_progress", 409, "This purchase is being processed: retry.", ("sale_id",)),
    ProblemSpec(
        "purchase_pending", 409, "The order of this product is not settled yet: retry shortly."
    ),
    ProblemSpec(
        "cancellation_in_progress", 409, "This cancellation is being processed.", ("sale_id",)
    ),
    ProblemSpec("invalid_transition", 409, "The order cannot move to that status.", _SALE),
    ProblemSpec(
        "refund_refused",
        409,
        "The wallet cannot take the refund back; the order stays completed.",
        (*_SALE, "reason"),
    ),
    ProblemSpec("already_reviewed", 409, "The customer already reviewed this product."),
    ProblemSpec(
        "idempotency_key_in_use", 409, "A request with this `Idempotency-Key` is still running."
    ),
    ProblemSpec(
        "idempotency_key_reused",
        422,
        "This `Idempotency-Key` was used for a different request.",
        ("sale_id",),
    ),
    # The server or a dependency failed.
    ProblemSpec("internal_error", 500, "An unexpected error occurred."),
    ProblemSpec("bad_gateway", 502, "A dependency gave an answer that cannot be used."),
    ProblemSpec(
        "dependency_unavailable", 503, "Another service could not be reached.", ("dependency",)
    ),
    ProblemSpec("dependency_timeout", 504, "Another service did not answer in time."),
    ProblemSpec(
        "database_unavailable", 503, "The database could not be used right now: retry.", _SALE
    ),
    ProblemSpec(
        "batch_conflict", 503, "A batch met a concurrent one; nothing was written: retry it."
    ),
    ProblemSpec("auth_unavailable", 503, "The token signing keys could not be fetched."),
    ProblemSpec(
        "request_expired",
        503,
        "The request waited its whole time budget before it could start; nothing was done.",
    ),
    ProblemSpec("not_ready", 503, "The database is unreachable or its schema is not current."),
    ProblemSpec(
        "sale_pending",
        503,
        "The order is recorded; its outcome is settled by recovery.",
        ("sale_id", "sale_status", "reason", "dependency"),
    ),
    ProblemSpec(
        "injected_fault",
        503,
        "A fault switched on at `/admin/faults` answered (any 5xx status it names).",
        other_statuses=(500, 502, 504),
    ),
    ProblemSpec("http_error", 500, "An HTTP error with no more specific code."),
)

#: Every problem code a service can answer, by code.
PROBLEMS: dict[str, ProblemSpec] = {spec.code: spec for spec in _SPECS}


class UnregisteredProblem(LookupError):
    """A problem code (or status) that :data:`PROBLEMS` does not declare."""


def problem_spec(code: str, status: int | None = None) -> ProblemSpec:
    """The registered spec of ``code``; :class:`UnregisteredProblem` if unknown.

    With ``status``, the code must also be registered for that status
    (``injected_fault`` and ``http_error`` accept any 4xx/5xx status).
    """
    spec = PROBLEMS.get(code)
    if spec is None:
        raise UnregisteredProblem(f"problem code {code!r} is not in shopkit.problems.PROBLEMS")
    if status is not None and status not in spec.statuses and code not in _ANY_STATUS:
        raise UnregisteredProblem(
            f"problem code {code!r} is registered for {spec.statuses}, not {status}"
        )
    return spec


_ANY_STATUS = {"injected_fault", "http_error"}


def codes_for(status: int) -> list[str]:
    """The codes registered for ``status``, in registry order."""
    return [spec.code for spec in _SPECS if status in spec.statuses]
