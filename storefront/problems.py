"""What a service's refusal means to the person who clicked: its ``detail`` plus what to do.

A 503 says one of two different things (docs/errors.rst, "Failure behaviour"):

* ``sale_pending``: the order, or its cancellation, **was recorded**; it stays
  ``pending`` (``sale_status``) or ``cancelling`` and recovery settles it.
  A cancellation that cannot reach a dependency answers this, with
  ``sale_status: cancelling``: the refund and the restock follow by themselves.
* ``dependency_unavailable``, ``database_unavailable``, ``auth_unavailable``
  or a live fault (``injected_fault``): **nothing was done**; try again. The
  one exception is ``database_unavailable`` naming a ``sale_id`` with
  ``sale_status: unknown``: the database failed while committing the order,
  which may then exist.

The pages show the service's own ``detail`` first and one of these hints after it.
"""

from __future__ import annotations

from collections.abc import Mapping

from storefront.clients import ApiProblem

#: 503 codes after which nothing was recorded (retrying is safe).
NOTHING_DONE = frozenset(
    {"dependency_unavailable", "database_unavailable", "auth_unavailable", "injected_fault"}
)
#: The code of a 503 after which the order (or its cancellation) is recorded.
RECORDED = "sale_pending"

_NOTHING_DONE_HINTS = {
    "order": "Nothing was ordered: please try again in a moment.",
    "cancel": "Nothing was cancelled (the order is as it was): please try again in a moment.",
}
_IN_PROGRESS = "It is being processed right now: look at the order again in a moment."


def recorded(exc: ApiProblem) -> bool:
    """True when the refusal still left the order (or its cancellation) recorded."""
    return exc.code == RECORDED


def hint(exc: ApiProblem, action: str | None = None) -> str | None:
    """What to do after ``exc``, for an ``action`` of ``"order"``, ``"cancel"`` or anything else."""
    if exc.code == RECORDED:
        if exc.body.get("sale_status") == "cancelling" or action == "cancel":
            return (
                "The cancellation is recorded: the order stays cancelling until the refund "
                "and the restock go through, automatically and shortly. Look at the order "
                "again in a moment; do not cancel it again."
            )
        return "The order is recorded and will be settled shortly; see your orders."
    if exc.code == "database_unavailable" and exc.body.get("sale_status") == "unknown":
        return "The order may have been recorded: look at your orders before trying again."
    if exc.code in NOTHING_DONE:
        return _NOTHING_DONE_HINTS.get(
            action or "", "Nothing was changed: please try again in a moment."
        )
    if exc.code in ("sale_in_progress", "cancellation_in_progress"):
        return _IN_PROGRESS
    return None


def describe(
    exc: ApiProblem, action: str | None = None, extra: Mapping[str, str] | None = None
) -> str:
    """The problem's message followed by its hint (``extra`` maps codes to a page's own hints)."""
    found = (extra or {}).get(exc.code) or hint(exc, action)
    return f"{exc.message()} {found}" if found else exc.message()


def is_unavailable(exc: ApiProblem) -> bool:
    """A 503 whose code says what happened (shown with its hint, not as a failure of ours)."""
    return exc.status == 503 and (exc.code == RECORDED or exc.code in NOTHING_DONE)
