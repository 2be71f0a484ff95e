"""HTTP routes of the customers service: parse, call a business operation, respond."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from flask import current_app
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint
from sqlalchemy.orm import Session

from customers_service import accounts, throttle, tokens, wallet
from customers_service.keys import KeyStore, public_jwks
from customers_service.metrics import LOGINS, WALLET_DEBITS
from customers_service.models import Customer, IdempotencyKey, LedgerEntry
from customers_service.passwords import Passwords
from customers_service.schemas import (
    AmountSchema,
    BatchChargeResultSchema,
    BatchChargeSchema,
    BatchRegisterSchema,
    BatchResultSchema,
    ConsistencySchema,
    CustomerPageSchema,
    CustomerSearchArgsSchema,
    DeactivatedAccountsSchema,
    DeductSchema,
    JwksSchema,
    LedgerPageSchema,
    LedgerQuerySchema,
    LoginSchema,
    PasswordChangeSchema,
    ProfilePatchSchema,
    ProfileSchema,
    RefreshSchema,
    RegisterSchema,
    SaleDebitBatchSchema,
    SaleMoneyResultSchema,
    SaleMoneySchema,
    SalePaymentsSchema,
    ServiceTokenRequestSchema,
    TokenSchema,
    WalletChangeSchema,
    WalletSchema,
)
from shopkit.auth import (
    ROLE_ADMIN,
    ROLE_CUSTOMER,
    Principal,
    TokenVerifier,
    ensure_self_or_admin,
    require_principal,
    requires,
    requires_caller,
)
from shopkit.batch import BatchAnswersSchema, respond_batch
from shopkit.config import Settings
from shopkit.db import get_session
from shopkit.errors import Unauthorized
from shopkit.idempotency import idempotency_key_doc, respond_idempotently
from shopkit.metrics import counts_outcomes
from shopkit.openapi import LOCATION_HEADER
from shopkit.pagination import PageArgsSchema
from shopkit.proxy import current_client_address

auth_blp = Blueprint(
    "auth", __name__, description="Log in, refresh, service tokens and public keys."
)
customers_blp = Blueprint("customers", __name__, description="Customer accounts and wallets.")
internal_blp = Blueprint(
    "internal",
    __name__,
    url_prefix="/internal",
    description="Wallet debits and refunds for sales; a sale's payments for inventory and "
    "sales; deactivated accounts for every service (each operation names its callers).",
)
THROTTLED = "`too_many_attempts`: too many failures for this account or address; see Retry-After."

T = TypeVar("T")

# Schemas used to build bodies by hand: made once, as marshmallow schemas are reusable.
_WALLET_CHANGE = WalletChangeSchema()
_BATCH_CHARGE_RESULT = BatchChargeResultSchema()
_SALE_MONEY_RESULT = SaleMoneyResultSchema()


def _settings() -> Settings:
    return current_app.config["SHOP_SETTINGS"]  # type: ignore[no-any-return]


def _passwords() -> Passwords:
    return current_app.extensions["customers_passwords"]  # type: ignore[no-any-return]


def _keys() -> KeyStore:
    return current_app.extensions["customers_keys"]  # type: ignore[no-any-return]


def _verifier() -> TokenVerifier:
    return current_app.extensions["shop_auth"]  # type: ignore[no-any-return]


def _client_address() -> str:
    return current_client_address() or "unknown"


def _throttled(kind: str, subject: str, attempt: Callable[[], T]) -> T:
    """Run a credential check under the account's and the client address's throttling."""
    checks = throttle.credential_checks(_settings(), kind, subject, _client_address())
    return throttle.guarded(get_session(), checks, attempt)


def _account_for(principal: Principal, username: str, *, for_update: bool = False) -> Customer:
    """The account ``username`` if the caller may act on it (self or admin)."""
    ensure_self_or_admin(principal, username)
    customer = accounts.get_by_username(get_session(), username, for_update=for_update)
    if not principal.is_admin and not customer.is_active:
        raise Unauthorized("The account is deactivated.", code="account_inactive")
    return customer


# --- auth -------------------------------------------------------------------------------------


@auth_blp.route("/auth/login", methods=["POST"])
@auth_blp.arguments(LoginSchema())
@auth_blp.response(200, TokenSchema)
@auth_blp.alt_response(401, description="Wrong username or password, or account deactivated.")
@auth_blp.alt_response(429, description=THROTTLED)
@counts_outcomes(LOGINS)
def login(credentials: dict[str, str]) -> ResponseReturnValue:
    """Exchange username and password for an access token (15 min) and a refresh token (7 days).

    Throttled per account and per client address (429 with ``Retry-After``).
    """
    session = get_session()
    username = credentials["username"]
    return _throttled(
        "login",
        username,
        lambda: tokens.issue_tokens(
            session,
            accounts.authenticate(session, _passwords(), username, credentials["password"]),
            _keys(),
            _settings(),
        ),
    )


@auth_blp.route("/auth/refresh", methods=["POST"])
@auth_blp.arguments(RefreshSchema())
@auth_blp.response(200, TokenSchema)
@auth_blp.alt_response(401, description="Refresh token invalid, expired or already used.")
def refresh(body: dict[str, str]) -> ResponseReturnValue:
    """Exchange a refresh token for a new token pair (the old refresh token stops working)."""
    session = get_session()
    issued = tokens.refresh_tokens(
        session, body["refresh_token"], _verifier(), _keys(), _settings()
    )
    return issued


@auth_blp.route("/auth/service-token", methods=["POST"])
@auth_blp.arguments(ServiceTokenRequestSchema())
@auth_blp.response(200, TokenSchema)
@auth_blp.alt_response(401, description="Unknown client or wrong secret.")
@auth_blp.alt_response(429, description=THROTTLED)
def service_token(body: dict[str, str]) -> ResponseReturnValue:
    """Client-credentials grant: a ``service`` token naming the Shop service that asked.

    Each service presents its own secret. Throttled per client and per address.
    """
    client_id = body["client_id"]
    issued = _throttled(
        "service-token",
        client_id,
        lambda: tokens.service_token(client_id, body["client_secret"], _keys(), _settings()),
    )
    return issued


@auth_blp.route("/auth/logout", methods=["POST"])
@auth_blp.arguments(RefreshSchema())
@auth_blp.response(204)
@auth_blp.alt_response(401, description="Refresh token invalid or expired.")
def logout(body: dict[str, str]) -> ResponseReturnValue:
    """Log out: revoke the refresh token and every token rotated from the same login."""
    session = get_session()
    tokens.logout(session, body["refresh_token"], _verifier())
    return "", 204


@auth_blp.route("/.well-known/jwks.json", methods=["GET"])
@auth_blp.response(200, JwksSchema)
def jwks() -> ResponseReturnValue:
    """The public keys that verify Shop tokens (JWKS)."""
    return public_jwks(get_session())


# --- customers --------------------------------------------------------------------------------


@customers_blp.route("/customers", methods=["POST"])
@customers_blp.arguments(RegisterSchema())
@customers_blp.response(201, ProfileSchema, headers=LOCATION_HEADER)
@customers_blp.alt_response(409, description="Username already taken (`already_exists`).")
@customers_blp.alt_response(429, description="`too_many_attempts`: too many registrations here.")
def register(data: dict[str, Any]) -> tuple[Customer, int, dict[str, str]]:
    """Register a new customer (balance starts at 0.00); throttled per client address.

    Emails need not be unique: the answer never says whether an email is in use.
    """
    session = get_session()
    throttle.count_attempt(session, throttle.registration_check(_settings(), _client_address()))
    customer = accounts.register(session, _passwords(), data)
    return customer, 201, {"Location": f"/customers/{customer.username}"}


@customers_blp.route("/customers", methods=["GET"])
@customers_blp.response(200, CustomerPageSchema)
@requires(ROLE_ADMIN)
@customers_blp.arguments(CustomerSearchArgsSchema(), location="query")
def list_customers(args: dict[str, Any]) -> ResponseReturnValue:
    """List and search accounts (admin)."""
    return accounts.search(
        get_session(), args.get("q"), args.get("active"), args["page"], args["page_size"]
    )


@customers_blp.route("/customers/batch", methods=["POST"])
@customers_blp.response(201, BatchResultSchema)
@requires(ROLE_ADMIN)
@customers_blp.arguments(BatchRegisterSchema())
@customers_blp.alt_response(
    409, description="Some usernames or emails exist or repeat: nothing was created."
)
def register_batch(data: dict[str, Any]) -> ResponseReturnValue:
    """Create up to 1000 customers in one transaction, all or none (admin, for the seeder)."""
    session = get_session()
    created = accounts.register_batch(session, _passwords(), data["customers"])
    return {"created": len(created), "items": created}


@customers_blp.route("/customers/<string:username>", methods=["GET"])
@customers_blp.response(200, ProfileSchema)
@requires(ROLE_CUSTOMER, ROLE_ADMIN)
def get_customer(username: str) -> Customer:
    """A profile with its balance (the customer themself, or an admin)."""
    return _account_for(require_principal(), username)


@customers_blp.route("/customers/<string:username>", methods=["PATCH"])
@customers_blp.response(200, ProfileSchema)
@requires(ROLE_CUSTOMER, ROLE_ADMIN)
@customers_blp.arguments(ProfilePatchSchema())
def patch_customer(changes: dict[str, Any], username: str) -> Customer:
    """Change profile fields; balance, role and username cannot be changed."""
    customer = _account_for(require_principal(), username, for_update=True)
    session = get_session()
    accounts.update_profile(session, customer, changes)
    return customer


@customers_blp.route("/customers/<string:username>", methods=["DELETE"])
@customers_blp.response(204)
@requires(ROLE_CUSTOMER, ROLE_ADMIN)
def delete_customer(username: str) -> ResponseReturnValue:
    """Deactivate an account: it can no longer log in, its history is kept."""
    customer = _account_for(require_principal(), username, for_update=True)
    session = get_session()
    accounts.deactivate(session, customer)
    return "", 204


@customers_blp.route("/customers/<string:username>/password", methods=["POST"])
@customers_blp.response(204)
@customers_blp.alt_response(
    401, description="`invalid_credentials`: the current password is wrong."
)
@customers_blp.alt_response(429, description=THROTTLED)
@requires(ROLE_CUSTOMER)
@customers_blp.arguments(PasswordChangeSchema())
def change_password(data: dict[str, str], username: str) -> ResponseReturnValue:
    """Change one's own password; every refresh token of the account is revoked."""
    principal = require_principal()
    customer = _account_for(principal, username, for_update=True)
    session = get_session()
    _throttled(
        "login",
        username,
        lambda: accounts.change_password(
            session, _passwords(), customer, data["current_password"], data["new_password"]
        ),
    )
    return "", 204


@customers_blp.route("/customers/<string:username>/reactivation", methods=["POST"])
@customers_blp.response(200, ProfileSchema)
@requires(ROLE_ADMIN)
def reactivate_customer(username: str) -> Customer:
    """Let a deactivated account log in again (admin)."""
    session = get_session()
    customer = accounts.get_by_username(session, username, for_update=True)
    accounts.reactivate(session, customer)
    return customer


# --- wallet -----------------------------------------------------------------------------------


@customers_blp.route("/customers/<string:username>/wallet", methods=["GET"])
@customers_blp.response(200, WalletSchema)
@requires(ROLE_CUSTOMER, ROLE_ADMIN)
@customers_blp.arguments(PageArgsSchema(), location="query")
def get_wallet(args: dict[str, int], username: str) -> ResponseReturnValue:
    """Balance and ledger entries, newest first."""
    customer = _account_for(require_principal(), username)
    return wallet.ledger_page(get_session(), customer, args["page"], args["page_size"])


def _wallet_change(customer: Customer, entry: LedgerEntry) -> dict[str, Any]:
    change: dict[str, Any] = _WALLET_CHANGE.dump(
        {"username": customer.username, "balance": entry.balance_after, "entry": entry}
    )
    return change


@customers_blp.route("/customers/<string:username>/wallet/charge", methods=["POST"])
@customers_blp.response(200, WalletChangeSchema)
@customers_blp.doc(parameters=[idempotency_key_doc()])
@requires(ROLE_CUSTOMER, ROLE_ADMIN)
@customers_blp.arguments(AmountSchema())
def charge_wallet(data: dict[str, Any], username: str) -> ResponseReturnValue:
    """Add money to a wallet. An optional ``Idempotency-Key`` makes retries safe."""
    principal = require_principal()
    customer = _account_for(principal, username)
    session = get_session()

    def operation() -> tuple[int, dict[str, Any]]:
        entry = wallet.charge(session, customer, data["amount"], principal.subject)
        return 200, _wallet_change(customer, entry)

    return respond_idempotently(IdempotencyKey, operation, key_required=False)


@customers_blp.route("/customers/<string:username>/wallet/deduct", methods=["POST"])
@customers_blp.response(200, WalletChangeSchema)
@customers_blp.doc(parameters=[idempotency_key_doc()])
@customers_blp.alt_response(409, description="`insufficient_funds`.")
@requires(ROLE_ADMIN)
@customers_blp.arguments(DeductSchema())
def deduct_wallet(data: dict[str, Any], username: str) -> ResponseReturnValue:
    """Remove money from a wallet with a reason (admin); never below zero."""
    principal = require_principal()
    session = get_session()
    customer = accounts.get_by_username(session, username)

    def operation() -> tuple[int, dict[str, Any]]:
        entry = wallet.deduct(session, customer, data["amount"], data["reason"], principal.subject)
        return 200, _wallet_change(customer, entry)

    return respond_idempotently(IdempotencyKey, operation, key_required=False)


@customers_blp.route("/wallets/charges/batch", methods=["POST"])
@customers_blp.response(200, BatchChargeResultSchema)
@customers_blp.doc(parameters=[idempotency_key_doc()])
@customers_blp.alt_response(404, description="Unknown usernames: nothing was charged.")
@requires(ROLE_ADMIN)
@customers_blp.arguments(BatchChargeSchema())
def charge_batch(data: dict[str, Any]) -> ResponseReturnValue:
    """Top up up to 1000 wallets in one transaction, all or none (admin, for the seeder)."""
    principal = require_principal()
    session = get_session()

    def operation() -> tuple[int, dict[str, Any]]:
        entries = wallet.charge_batch(session, data["charges"], principal.subject)
        total = sum((e.amount for e in entries), Decimal(0))
        return 200, _BATCH_CHARGE_RESULT.dump({"charged": len(entries), "total": total})

    return respond_idempotently(IdempotencyKey, operation, key_required=False)


@customers_blp.route("/ledger", methods=["GET"])
@customers_blp.response(200, LedgerPageSchema)
@requires(ROLE_ADMIN)
@customers_blp.arguments(LedgerQuerySchema(), location="query")
def list_ledger(args: dict[str, Any]) -> ResponseReturnValue:
    """Ledger entries across all wallets, oldest first (admin audit)."""
    return wallet.ledger_entries(get_session(), args)


@customers_blp.route("/wallets/consistency", methods=["GET"])
@customers_blp.response(200, ConsistencySchema)
@requires(ROLE_ADMIN)
def wallets_consistency() -> ResponseReturnValue:
    """Check that every balance equals its ledger sum and is not negative (admin audit)."""
    return wallet.consistency(get_session())


# --- internal (service tokens) -----------------------------------------------------------------


def _sale_money(entry: LedgerEntry) -> dict[str, Any]:
    money: dict[str, Any] = _SALE_MONEY_RESULT.dump(
        {
            "entry_id": entry.id,
            "customer_id": entry.customer_id,
            "sale_id": entry.sale_id,
            "amount": abs(entry.amount),
            "balance": entry.balance_after,
            "kind": entry.kind,
        }
    )
    return money


def _sale_money_call(
    move: Callable[[Session, int, Decimal, uuid.UUID, str], LedgerEntry], data: dict[str, Any]
) -> ResponseReturnValue:
    """Run a sale's debit or refund under the caller's required ``Idempotency-Key``."""
    principal = require_principal()
    session = get_session()

    def operation() -> tuple[int, dict[str, Any]]:
        entry = move(
            session, data["customer_id"], data["amount"], data["sale_id"], principal.subject
        )
        return 201, _sale_money(entry)

    return respond_idempotently(
        IdempotencyKey,
        operation,
        key_required=True,
        location=lambda body: f"/internal/sale-payments/{body['sale_id']}",
    )


@internal_blp.route("/wallet-debits", methods=["POST"])
@internal_blp.response(201, SaleMoneyResultSchema, headers=LOCATION_HEADER)
@internal_blp.doc(parameters=[idempotency_key_doc(required=True)])
@internal_blp.alt_response(
    409,
    description="`insufficient_funds`, `customer_inactive`, `already_recorded`, "
    "`idempotency_key_in_use`.",
)
@requires_caller("sales")
@internal_blp.arguments(SaleMoneySchema())
@counts_outcomes(WALLET_DEBITS)
def wallet_debit(data: dict[str, Any]) -> ResponseReturnValue:
    """Debit a sale's total from a wallet, exactly once per ``Idempotency-Key`` and sale."""
    return _sale_money_call(wallet.debit_for_sale, data)


@internal_blp.route("/wallet-debits/batch", methods=["POST"])
@internal_blp.response(200, BatchAnswersSchema)
@requires_caller("sales")
@internal_blp.arguments(SaleDebitBatchSchema())
def wallet_debit_batch(data: dict[str, Any]) -> ResponseReturnValue:
    """Debit up to 100 sales in one transaction; each answers as ``POST /internal/wallet-debits``
    would, under its own key (a refusal never fails its neighbours)."""
    principal = require_principal()
    session = get_session()

    def operation(money: dict[str, Any]) -> Callable[[], tuple[int, dict[str, Any]]]:
        def debit_one() -> tuple[int, dict[str, Any]]:
            entry = wallet.debit_for_sale(
                session, money["customer_id"], money["amount"], money["sale_id"], principal.subject
            )
            return 201, _sale_money(entry)

        return debit_one

    return respond_batch(
        IdempotencyKey,
        data["items"],
        single_path="/internal/wallet-debits",
        order=lambda money: money["customer_id"],  # wallets locked in ascending id order
        operation=operation,
        outcomes=WALLET_DEBITS,
    )


@internal_blp.route("/wallet-credits", methods=["POST"])
@internal_blp.response(201, SaleMoneyResultSchema, headers=LOCATION_HEADER)
@internal_blp.doc(parameters=[idempotency_key_doc(required=True)])
@internal_blp.alt_response(
    409, description="`no_matching_debit`, `amount_mismatch`, `already_recorded`."
)
@requires_caller("sales")
@internal_blp.arguments(SaleMoneySchema())
def wallet_credit(data: dict[str, Any]) -> ResponseReturnValue:
    """Refund a sale's debit to the wallet, exactly once."""
    return _sale_money_call(wallet.credit_refund, data)


@internal_blp.route("/sale-payments/<uuid:sale_id>", methods=["GET"])
@internal_blp.response(200, SalePaymentsSchema)
@requires_caller("inventory", "sales", admins=True)
def sale_payments(sale_id: uuid.UUID) -> ResponseReturnValue:
    """What a sale was debited and refunded (nulls for an unknown sale, never 404)."""
    return wallet.sale_payments(get_session(), sale_id)


@internal_blp.route("/deactivated-accounts", methods=["GET"])
@internal_blp.response(200, DeactivatedAccountsSchema)
@requires_caller("inventory", "sales", "reviews", "notifications", admins=True)
def deactivated_accounts() -> ResponseReturnValue:
    """Ids of every deactivated account: services refuse their tokens within seconds."""
    return {"customer_ids": accounts.deactivated_ids(get_session())}
