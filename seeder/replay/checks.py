"""The result checks: is an order, a cart or a sale's ledger what the shopper asked for?"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from seeder.replay.plan import Line


class Unverifiable(Exception):
    """A check could not read what it needed (an outage): neither passed nor failed."""


def quantities_of(record: dict[str, Any]) -> dict[int, int]:
    """``{product_id: quantity}`` of a cart or an order."""
    return {int(item["product_id"]): int(item["quantity"]) for item in record.get("items") or []}


def basket_difference(record: dict[str, Any], wanted: dict[int, int], what: str) -> str | None:
    """How a cart's or an order's lines differ from the basket ``wanted`` (or None)."""
    items = record.get("items") or []
    if len(items) != len(wanted) or quantities_of(record) != wanted:
        return f"the {what} has lines {quantities_of(record)}, expected {wanted}"
    return None


def lines_problem(record: dict[str, Any], what: str) -> str | None:
    """Why a cart's or an order's lines do not add up (or None)."""
    items = record.get("items") or []
    for item in items:
        price, quantity = Decimal(str(item.get("unit_price"))), int(item["quantity"])
        if Decimal(str(item.get("line_total"))) != price * quantity:
            return (
                f"{what} line of product {item['product_id']}: "
                f"{item.get('line_total')} != {quantity} x {price}"
            )
    total = Decimal(str(record.get("total")))
    lines_sum = sum((Decimal(str(item["line_total"])) for item in items), Decimal(0))
    if total != lines_sum:
        return f"{what} total {total} != the sum of its lines {lines_sum}"
    return None


def cart_problem(cart: dict[str, Any]) -> str | None:
    """Why the cart's lines are not priced right, line by line and in total (or None)."""
    return lines_problem(cart, "cart")


def order_problem(sale: dict[str, Any]) -> str | None:
    """Why a completed order's answer is not right in itself (or None).

    Its status is ``completed``, it has lines, each line's total is ``unit_price *
    quantity`` and the order's total is the sum of its lines; a one-line order
    also carries that line's product and quantity at the top level.
    """
    if sale.get("status") != "completed":
        return f"status {sale.get('status')!r} in a 201 answer"
    items = sale.get("items") or []
    if not items:
        return "a completed order without lines"
    problem = lines_problem(sale, "order")
    if problem is not None:
        return problem
    if len(items) == 1 and (sale.get("product_id"), sale.get("quantity")) != (
        items[0]["product_id"],
        items[0]["quantity"],
    ):
        return "a one-line order without its product and quantity at the top level"
    return None


def money_problem(
    entries: list[dict[str, Any]], total: Decimal | None, *, refunded: bool = False
) -> str | None:
    """Why an order's own ledger entries are wrong (or None).

    ``entries`` are every wallet movement naming the order. An order that was
    paid (``total`` given) has exactly one debit of ``-total``, and, if
    ``refunded``, exactly one refund of ``+total``; a refused one (``total``
    None) has none at all. This is how a double charge shows, whoever else
    moves the same wallet meanwhile.
    """
    if total is None:
        amounts = ", ".join(str(e.get("amount")) for e in entries)
        return f"a refused order moved money: {amounts}" if entries else None
    kinds = {"sale_debit": [-total], "refund_credit": [total] if refunded else []}
    others = sorted({str(e.get("kind")) for e in entries} - set(kinds))
    if others:
        return f"ledger entries of kinds {others} name the order"
    for kind, wanted in kinds.items():
        found = [Decimal(str(e["amount"])) for e in entries if e.get("kind") == kind]
        if found == wanted:
            continue
        what = "charged" if kind == "sale_debit" else "refunded"
        listed = ", ".join(f"{amount:.2f}" for amount in found) or "nothing"
        expected = f"once {wanted[0]:.2f}" if wanted else "nothing"
        return f"{what} {len(found)} times for the order ({listed}), expected {expected}"
    return None


def basket_of(lines: list[Line]) -> dict[int, int]:
    """``{product_id: quantity}`` of the lines the shopper put in the cart."""
    return {line.product.id: line.quantity for line in lines}
