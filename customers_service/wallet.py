"""Wallet operations. Every balance change is a conditional update plus one ledger entry.

The balance moves only through ``UPDATE ... WHERE balance >= :amount`` (or
``<= MAX_BALANCE - :amount`` for credits) in the caller's transaction, backed
by ``CHECK (balance >= 0)``, so no race can overdraw a wallet. The ledger
entry carries the balance after the change; the balance always equals the
sum of the wallet's entries. Each entry writes its wallet event in the same
transaction (:mod:`customers_service.events`).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Executable,
    Insert,
    Numeric,
    bindparam,
    column,
    func,
    insert,
    literal,
    select,
    update,
    values,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from customers_service.events import emit_wallet_events
from customers_service.models import MAX_BALANCE, Customer, LedgerEntry
from shopkit.db import constraint_name
from shopkit.errors import Conflict, NotFound
from shopkit.pagination import paginate

#: The partial unique index that allows one debit and one refund per sale.
ONE_PER_SALE = "uq_ledger_entries_sale_kind"

_customers = Customer.__table__
_ledger = LedgerEntry.__table__


def _credit(session: Session, customer_id: int, amount: Decimal) -> Decimal | None:
    return (
        session.connection()
        .execute(
            update(_customers)
            .where(_customers.c.id == customer_id, _customers.c.balance <= MAX_BALANCE - amount)
            .values(balance=_customers.c.balance + amount)
            .returning(_customers.c.balance)
        )
        .scalar_one_or_none()
    )


def _debit(session: Session, customer_id: int, amount: Decimal) -> Decimal | None:
    return (
        session.connection()
        .execute(
            update(_customers)
            .where(_customers.c.id == customer_id, _customers.c.balance >= amount)
            .values(balance=_customers.c.balance - amount)
            .returning(_customers.c.balance)
        )
        .scalar_one_or_none()
    )


def _already_recorded(kind: str, sale_id: uuid.UUID | None) -> Conflict:
    return Conflict(
        "already_recorded", f"A {kind.replace('_', ' ')} for sale {sale_id} already exists."
    )


def _written(
    session: Session,
    statement: Executable,
    kind: str,
    sale_id: uuid.UUID | None,
    parameters: dict[str, Any] | None = None,
) -> LedgerEntry | None:
    """Run a ledger insert (``RETURNING`` every column); the entry, or ``None`` if no row.
    The entry's wallet event is written with it (:mod:`customers_service.events`).

    A second debit or refund of one sale violates :data:`ONE_PER_SALE`: that
    is 409 ``already_recorded``, and the caller's transaction is spoilt, which
    is fine since every caller rolls back on a refusal.
    """
    try:
        row = session.connection().execute(statement, parameters).first()
    except IntegrityError as exc:
        if constraint_name(exc) == ONE_PER_SALE:
            raise _already_recorded(kind, sale_id) from None
        raise
    if row is None:
        return None
    entry = LedgerEntry(**row._mapping)
    emit_wallet_events(session, [entry])
    return entry


def _record(
    session: Session,
    customer_id: int,
    kind: str,
    amount: Decimal,
    balance_after: Decimal,
    actor: str,
    *,
    sale_id: uuid.UUID | None = None,
    reason: str | None = None,
) -> LedgerEntry:
    entry = _written(
        session,
        insert(_ledger)
        .values(
            customer_id=customer_id,
            kind=kind,
            amount=amount,
            balance_after=balance_after,
            actor=actor,
            sale_id=sale_id,
            reason=reason,
        )
        .returning(*_ledger.c),
        kind,
        sale_id,
    )
    assert entry is not None  # an INSERT ... VALUES always writes its row
    return entry


def _customer(session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"No customer with id {customer_id}.")
    return customer


def charge(session: Session, customer: Customer, amount: Decimal, actor: str) -> LedgerEntry:
    """Add ``amount`` to the wallet (a top-up)."""
    balance = _credit(session, customer.id, amount)
    if balance is None:
        raise Conflict("balance_limit", "This would take the balance over its limit.")
    return _record(session, customer.id, "charge", amount, balance, actor)


def deduct(
    session: Session, customer: Customer, amount: Decimal, reason: str, actor: str
) -> LedgerEntry:
    """Remove ``amount`` from the wallet (admin correction); 409 ``insufficient_funds``."""
    balance = _debit(session, customer.id, amount)
    if balance is None:
        raise Conflict("insufficient_funds", "The wallet balance is lower than the amount.")
    return _record(session, customer.id, "deduct", -amount, balance, actor, reason=reason)


def _debit_for_sale_statement() -> Insert:
    """``debit_for_sale``'s one statement (built once; parameters bound by name)."""
    amount = bindparam("amount", type_=_customers.c.balance.type)
    debited = (
        update(_customers)
        .where(
            _customers.c.id == bindparam("customer_id"),
            _customers.c.is_active,
            _customers.c.balance >= amount,
        )
        .values(balance=_customers.c.balance - amount)
        .returning(_customers.c.id, _customers.c.balance)
        .cte("debited")
    )
    return (
        insert(_ledger)
        .add_cte(debited)
        .from_select(
            ["customer_id", "kind", "amount", "balance_after", "actor", "sale_id"],
            select(
                debited.c.id,
                literal("sale_debit"),
                -amount,
                debited.c.balance,
                bindparam("actor", type_=_ledger.c.actor.type),
                bindparam("sale_id", type_=_ledger.c.sale_id.type),
            ),
        )
        .returning(*_ledger.c)
    )


_DEBIT_FOR_SALE = _debit_for_sale_statement()


def debit_for_sale(
    session: Session, customer_id: int, amount: Decimal, sale_id: uuid.UUID, actor: str
) -> LedgerEntry:
    """Take a sale's total from the wallet, at most once per sale.

    One statement does it: a conditional ``UPDATE`` of an active wallet with
    enough money, and the ledger entry written from what it returned. When it
    writes nothing, the refusal says why: 404 for an unknown customer, 409
    ``already_recorded`` if this sale was already debited (under another
    idempotency key), ``customer_inactive``, or ``insufficient_funds``. A
    debit racing another of the same sale is refused by :data:`ONE_PER_SALE`.
    """
    if amount > MAX_BALANCE:
        # A sale's total may be wider than any balance (and than the ledger's column):
        # no wallet can pay it, so it is refused like any other total too large.
        raise _debit_refusal(session, customer_id, amount, sale_id)
    entry = _written(
        session,
        _DEBIT_FOR_SALE,
        "sale_debit",
        sale_id,
        {"customer_id": customer_id, "amount": amount, "sale_id": sale_id, "actor": actor},
    )
    if entry is not None:
        return entry
    raise _debit_refusal(session, customer_id, amount, sale_id)


def _debit_refusal(
    session: Session, customer_id: int, amount: Decimal, sale_id: uuid.UUID
) -> Conflict | NotFound:
    """Why :func:`debit_for_sale` wrote nothing (checked in the order the saga relies on)."""
    customer = _customer(session, customer_id)
    recorded = session.execute(
        select(LedgerEntry.id).where(
            LedgerEntry.sale_id == sale_id, LedgerEntry.kind == "sale_debit"
        )
    ).first()
    if recorded is not None:
        return _already_recorded("sale_debit", sale_id)
    if not customer.is_active:
        return Conflict("customer_inactive", "The customer account is deactivated.")
    return Conflict(
        "insufficient_funds",
        "The wallet balance is lower than the sale total.",
        balance=str(customer.balance),
        required=str(amount),
    )


def credit_refund(
    session: Session, customer_id: int, amount: Decimal, sale_id: uuid.UUID, actor: str
) -> LedgerEntry:
    """Give back a sale's debit, at most once and never more than was debited."""
    _customer(session, customer_id)
    debit = session.execute(
        select(LedgerEntry).where(LedgerEntry.sale_id == sale_id, LedgerEntry.kind == "sale_debit")
    ).scalar_one_or_none()
    if debit is None or debit.customer_id != customer_id:
        raise Conflict("no_matching_debit", f"Sale {sale_id} has no debit for this customer.")
    if amount != -debit.amount:
        raise Conflict(
            "amount_mismatch", f"The refund must equal the debit of {-debit.amount:.2f}."
        )
    balance = _credit(session, customer_id, amount)
    if balance is None:
        raise Conflict("balance_limit", "This would take the balance over its limit.")
    return _record(session, customer_id, "refund_credit", amount, balance, actor, sale_id=sale_id)


def sale_payments(session: Session, sale_id: uuid.UUID) -> dict[str, Any]:
    """A sale's money in the ledger: its debit and refund as positive amounts, or ``None``.

    An unknown sale is not an error: it simply has neither (and no customer).
    """
    rows = session.execute(
        select(LedgerEntry.kind, LedgerEntry.amount, LedgerEntry.customer_id).where(
            LedgerEntry.sale_id == sale_id
        )
    ).all()
    amounts = {row.kind: abs(row.amount) for row in rows}
    return {
        "sale_id": sale_id,
        "customer_id": rows[0].customer_id if rows else None,
        "debited": amounts.get("sale_debit"),
        "refunded": amounts.get("refund_credit"),
    }


def ledger_page(session: Session, customer: Customer, page: int, page_size: int) -> dict[str, Any]:
    """The wallet: balance plus a page of ledger entries, newest first."""
    statement = (
        select(LedgerEntry)
        .where(LedgerEntry.customer_id == customer.id)
        .order_by(LedgerEntry.id.desc())
    )
    result = paginate(session, statement, page, page_size)
    return {"username": customer.username, "balance": customer.balance, **result}


def ledger_entries(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """A page of ledger entries across wallets (admin audit), oldest first.

    Filters: ``kind``, ``sale_id``, ``customer_id``, ``sales_only`` (entries tied to a sale).
    """
    statement = select(LedgerEntry).order_by(LedgerEntry.id)
    if args.get("kind"):
        statement = statement.where(LedgerEntry.kind == args["kind"])
    if args.get("sale_id"):
        statement = statement.where(LedgerEntry.sale_id == args["sale_id"])
    if args.get("customer_id"):
        statement = statement.where(LedgerEntry.customer_id == args["customer_id"])
    if args.get("sales_only"):
        statement = statement.where(LedgerEntry.sale_id.is_not(None))
    return paginate(session, statement, args["page"], args["page_size"])


def consistency(session: Session) -> dict[str, Any]:
    """Check every wallet: balance equals the sum of its ledger, and is not negative."""
    ledger_sum = (
        select(func.coalesce(func.sum(LedgerEntry.amount), 0))
        .where(LedgerEntry.customer_id == Customer.id)
        .scalar_subquery()
    )
    checked = session.execute(select(func.count()).select_from(Customer)).scalar_one()
    rows = session.execute(
        select(Customer.username, Customer.balance, ledger_sum)
        .where((Customer.balance != ledger_sum) | (Customer.balance < 0))
        .order_by(Customer.id)
        .limit(100)
    ).all()
    total_balance = session.execute(
        select(func.coalesce(func.sum(Customer.balance), 0))
    ).scalar_one()
    entries = session.execute(select(func.count()).select_from(LedgerEntry)).scalar_one()
    return {
        "wallets_checked": checked,
        "ledger_entries": entries,
        "total_balance": total_balance,
        "mismatches": [{"username": u, "balance": b, "ledger_sum": s} for u, b, s in rows],
        "ok": not rows,
    }


def charge_batch(session: Session, charges: list[dict[str, Any]], actor: str) -> list[LedgerEntry]:
    """Top up many wallets in one transaction (admin, for the seeder): all or none.

    One conditional ``UPDATE ... FROM (VALUES ...)`` credits every wallet (the
    same ``balance <= MAX - amount`` guard as a single top-up), then one ledger
    entry per charge is written with the balance it left. Unknown usernames
    are 404 and nothing is charged.
    """
    usernames = {c["username"].lower() for c in charges}
    ids = dict(
        session.execute(
            select(Customer.username, Customer.id).where(Customer.username.in_(usernames))
        ).all()
    )
    missing = sorted(usernames - set(ids))
    if missing:
        raise NotFound("Some customers do not exist.", usernames=missing[:50])
    totals: dict[int, Decimal] = {}
    for item in charges:
        customer_id = ids[item["username"].lower()]
        totals[customer_id] = totals.get(customer_id, Decimal(0)) + item["amount"]
    batch = values(column("id", BigInteger), column("amount", Numeric(12, 2)), name="batch").data(
        list(totals.items())
    )
    balances = dict(
        session.execute(
            update(Customer)
            .where(Customer.id == batch.c.id, Customer.balance <= MAX_BALANCE - batch.c.amount)
            .values(balance=Customer.balance + batch.c.amount)
            .returning(Customer.id, Customer.balance)
            .execution_options(synchronize_session=False)
        ).all()
    )
    if len(balances) != len(totals):
        over = next(u for u, i in ids.items() if i in totals and i not in balances)
        raise Conflict("balance_limit", f"{over}: balance would exceed its limit.")
    running = {cid: balances[cid] - total for cid, total in totals.items()}
    entries = []
    for item in charges:
        customer_id = ids[item["username"].lower()]
        running[customer_id] += item["amount"]
        entries.append(
            LedgerEntry(
                customer_id=customer_id,
                kind="charge",
                amount=item["amount"],
                balance_after=running[customer_id],
                actor=actor,
            )
        )
    session.add_all(entries)
    session.flush()
    emit_wallet_events(session, entries)
    return entries
