"""Account operations: register, bulk create, look up, search, update, deactivate, log in.

Emails are contact data, not identities: several accounts may share one, so a
registration never reveals whether an email is in use (only a taken username
is 409 ``already_exists``).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from customers_service import events
from customers_service.models import Customer
from customers_service.passwords import Passwords
from customers_service.tokens import revoke_refresh_tokens
from shopkit.config import Settings
from shopkit.db import advisory_xact_lock, transaction
from shopkit.errors import Conflict, NotFound, Unauthorized
from shopkit.pagination import paginate

PROFILE_FIELDS = ("full_name", "email", "age", "address", "gender", "marital_status")


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    if "username" in data:
        data["username"] = data["username"].lower()
    if "email" in data:
        data["email"] = data["email"].lower()
    return data


def _taken_usernames(session: Session, usernames: list[str]) -> list[str]:
    rows = session.scalars(select(Customer.username).where(Customer.username.in_(usernames)))
    return sorted(set(rows))


def _duplicate_conflict(usernames: list[str]) -> Conflict:
    return Conflict(
        "already_exists", "An account with this username already exists.", usernames=usernames
    )


def register(session: Session, passwords: Passwords, data: dict[str, Any]) -> Customer:
    """Create a customer (role ``customer``, balance 0); 409 if the username is taken.

    Its ``shop.customer.registered.v1`` event is written in the same transaction.
    """
    with transaction(session):
        data = _normalise(data)
        password = data.pop("password")
        customer = Customer(**data, password_hash=passwords.hash(password), role="customer")
        session.add(customer)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            raise _duplicate_conflict([data["username"]]) from None
        events.emit_customer_events(session, events.REGISTERED, [customer])
        return customer


def register_batch(
    session: Session, passwords: Passwords, items: list[dict[str, Any]]
) -> list[Customer]:
    """Create many customers in one transaction: all or none (409 naming the clashes).

    Their registered events are written with one ``emit_many``, in that transaction.
    """
    with transaction(session):
        rows = [_normalise(item) for item in items]
        usernames = [r["username"] for r in rows]
        dup_usernames = sorted(u for u, n in Counter(usernames).items() if n > 1)
        if dup_usernames:
            raise Conflict(
                "duplicate_in_batch",
                "The batch names the same username more than once.",
                usernames=dup_usernames,
            )
        taken = _taken_usernames(session, usernames)
        if taken:
            raise _duplicate_conflict(taken)
        # argon2 releases the GIL, so both cores hash at once.
        with ThreadPoolExecutor(max_workers=2) as pool:
            hashes = list(pool.map(passwords.hash_bulk, (r.pop("password") for r in rows)))
        values = [
            {**r, "password_hash": h, "role": "customer"} for r, h in zip(rows, hashes, strict=True)
        ]
        try:
            # ORM bulk INSERT (executemany with RETURNING, batched by SQLAlchemy): far
            # cheaper to compile than one VALUES clause with thousands of parameters.
            created = session.scalars(
                insert(Customer).returning(Customer, sort_by_parameter_order=True), values
            ).all()
        except IntegrityError:  # lost a race with a concurrent registration
            session.rollback()
            raise _duplicate_conflict(_taken_usernames(session, usernames)) from None
        events.emit_customer_events(session, events.REGISTERED, created)
        return list(created)


def get_by_username(session: Session, username: str, *, for_update: bool = False) -> Customer:
    """The account named ``username`` (active or not), or 404."""
    statement = select(Customer).where(Customer.username == username.lower())
    if for_update:
        statement = statement.with_for_update()
    customer = session.execute(statement).scalar_one_or_none()
    if customer is None:
        raise NotFound(f"No customer named {username!r}.")
    return customer


def search(
    session: Session, q: str | None, active: bool | None, page: int, page_size: int
) -> dict[str, Any]:
    """A page of accounts, optionally matching ``q`` in username, name or email."""
    statement = select(Customer).order_by(Customer.id)
    if q:
        pattern = (
            "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        statement = statement.where(
            or_(
                Customer.username.like(pattern),
                func.lower(Customer.full_name).like(pattern),
                func.lower(Customer.email).like(pattern),
            )
        )
    if active is not None:
        statement = statement.where(Customer.is_active.is_(active))
    return paginate(session, statement, page, page_size)


def update_profile(session: Session, customer: Customer, changes: dict[str, Any]) -> Customer:
    """Change profile fields (never balance, role or username).

    ``customer`` should be loaded ``for_update``, so concurrent changes queue. A change
    of the name or the email writes ``shop.customer.updated.v1`` in the same transaction.
    """
    with transaction(session):
        before = [getattr(customer, name) for name in events.CONTACT_FIELDS]
        for name, value in _normalise(changes).items():
            if name in PROFILE_FIELDS:
                setattr(customer, name, value)
        session.flush()
        if [getattr(customer, name) for name in events.CONTACT_FIELDS] != before:
            events.emit_customer_events(session, events.UPDATED, [customer])
        return customer


def deactivate(session: Session, customer: Customer) -> None:
    """Deactivate an account: it can no longer log in; its history is kept. Idempotent.

    ``customer`` should be loaded ``for_update``, so concurrent changes queue.
    """
    with transaction(session):
        if customer.role == "admin":
            raise Conflict("cannot_deactivate_admin", "Admin accounts cannot be deactivated here.")
        if customer.is_active:
            customer.is_active = False
            customer.deactivated_at = datetime.now(UTC)
            events.emit_customer_events(session, events.DEACTIVATED, [customer])
        revoke_refresh_tokens(session, customer.id)


def reactivate(session: Session, customer: Customer) -> None:
    """Let a deactivated account log in again (admin); idempotent."""
    with transaction(session):
        if not customer.is_active:
            events.emit_customer_events(session, events.REACTIVATED, [customer])
        customer.is_active = True
        customer.deactivated_at = None


def deactivated_ids(session: Session) -> list[int]:
    """The ids of every deactivated account (other services refuse their tokens)."""
    return list(
        session.scalars(
            select(Customer.id).where(Customer.is_active.is_(False)).order_by(Customer.id)
        )
    )


def change_password(
    session: Session, passwords: Passwords, customer: Customer, current: str, new: str
) -> None:
    """Replace the password after checking the current one (401 if wrong).

    Every refresh token of the account is revoked: other sessions must log in again.
    """
    if not passwords.verify(customer.password_hash, current):
        raise Unauthorized("The current password is wrong.", code="invalid_credentials")
    customer.password_hash = passwords.hash(new)
    revoke_refresh_tokens(session, customer.id)


def authenticate(session: Session, passwords: Passwords, username: str, password: str) -> Customer:
    """The active account for these credentials (upgrading an old hash), or 401."""
    customer = session.execute(
        select(Customer).where(Customer.username == username.lower())
    ).scalar_one_or_none()
    stored = customer.password_hash if customer is not None else None
    if not passwords.verify(stored, password) or customer is None or not customer.is_active:
        raise Unauthorized("Wrong username or password.", code="invalid_credentials")
    if passwords.needs_rehash(customer.password_hash):
        customer.password_hash = passwords.hash(password)
    return customer


def ensure_admin(session: Session, passwords: Passwords, settings: Settings) -> None:
    """Create the bootstrap admin from ``ADMIN_USERNAME``/``ADMIN_PASSWORD`` if missing."""
    with transaction(session):
        advisory_xact_lock(session, "customers", "bootstrap-admin")
        username = settings.admin_username.lower()
        exists = session.execute(select(Customer.id).where(Customer.username == username)).first()
        if exists is None:
            session.add(
                Customer(
                    username=username,
                    password_hash=passwords.hash(settings.admin_password),
                    full_name="Shop Administrator",
                    email=f"{username}@shop.invalid",
                    age=30,
                    address="Shop HQ",
                    gender="prefer_not_to_say",
                    marital_status="single",
                    role="admin",
                )
            )
