"""The checkout's idempotency key, and what a checkout's answer means for the next one.

The key is stable for the cart's contents: it is derived from a random nonce
held in the session, the username and the cart's lines, so every rendering of
the same cart (a reload, a second tab, the page shown again after a failure)
carries the same key, and checking out twice replays the first order instead
of placing a second one. The nonce changes only when a checkout is settled
(paid, or refused for good): the next checkout of the same contents is then a
new order. While an order is recorded but not settled, sales answers any
checkout of that cart with it (docs/saga.rst, "One checkout per cart at a
time"), so no path through the pages can charge twice.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from flask import session

from storefront.clients import ApiProblem

_NONCE = "checkout_nonce"
#: Problem codes after which the order exists and is still being completed.
IN_PROGRESS_CODES = frozenset({"sale_pending", "sale_in_progress"})
#: Refusals that only say the first request with this key is still running.
_STILL_RUNNING = IN_PROGRESS_CODES | {"idempotency_key_in_use"}
#: What to do when sales gave no answer at all: the order may or may not exist.
NO_ANSWER = (
    "The sales service did not answer in time, so we cannot tell whether your order was "
    "placed: look at your orders before checking "
    "out again. Checking out this cart again never orders it twice."
)


def _nonce() -> str:
    nonce = session.get(_NONCE)
    if not isinstance(nonce, str):
        nonce = secrets.token_hex(16)
        session[_NONCE] = nonce
    return nonce


def key_for(username: str, cart: Mapping[str, Any]) -> str:
    """The checkout key of this cart as it is now (the same for the same contents)."""
    lines = sorted(
        (int(item["product_id"]), int(item["quantity"])) for item in cart.get("items") or []
    )
    material = f"{_nonce()}|{username}|{lines}".encode()
    return "checkout-" + hashlib.sha256(material).hexdigest()[:40]


def rotate() -> None:
    """The last checkout is settled: the next one is a new order, with a new key."""
    session[_NONCE] = secrets.token_hex(16)


def recorded_sale(exc: ApiProblem) -> str | None:
    """The order a refusal says is recorded and still being completed, if any."""
    sale_id = exc.body.get("sale_id")
    if exc.code in IN_PROGRESS_CODES and sale_id:
        return str(sale_id)
    return None


def settled(exc: ApiProblem) -> bool:
    """True when a refused checkout is final (a 4xx other than ``sale_in_progress`` or a key
    still in flight): trying again after fixing the cause (a top-up, fewer units) must not
    replay the refusal, while a checkout still running keeps its key."""
    return 400 <= exc.status < 500 and exc.code not in _STILL_RUNNING
