"""Request and response schemas of the customers service (the source of its OpenAPI document)."""

from __future__ import annotations

from decimal import Decimal

from marshmallow import Schema, fields, validate

from customers_service.models import GENDERS, LEDGER_KINDS, MARITAL_STATUSES
from shopkit.batch import BatchSchemaMixin, idempotency_key_field, items_field
from shopkit.fields import (
    MAX_ID,
    SALE_TOTAL_DIGITS,
    FullMatch,
    Money,
    PositiveMoney,
    SignedMoney,
    StrictInteger,
    TrimmedString,
)
from shopkit.pagination import PageArgsSchema, PageMetaSchema, page_schema

USERNAME = FullMatch(r"^[A-Za-z0-9_.\-]{3,32}$", error="3 to 32 letters, digits, '_', '.' or '-'.")
MAX_CHARGE = Decimal("100000.00")


class RegisterSchema(Schema):
    """Registration of a new customer."""

    username = fields.String(required=True, validate=USERNAME, metadata={"example": "ada_l"})
    password = fields.String(
        required=True, load_only=True, validate=validate.Length(min=8, max=128)
    )
    full_name = TrimmedString(required=True, validate=validate.Length(max=200))
    email = fields.Email(required=True, validate=validate.Length(max=254))
    age = StrictInteger(required=True, validate=validate.Range(min=18, max=120))
    address = TrimmedString(required=True, validate=validate.Length(max=500))
    gender = fields.String(required=True, validate=validate.OneOf(GENDERS))
    marital_status = fields.String(required=True, validate=validate.OneOf(MARITAL_STATUSES))


class ProfilePatchSchema(Schema):
    """Profile fields a customer may change (never balance, role or username)."""

    full_name = TrimmedString(validate=validate.Length(max=200))
    email = fields.Email(validate=validate.Length(max=254))
    age = StrictInteger(validate=validate.Range(min=18, max=120))
    address = TrimmedString(validate=validate.Length(max=500))
    gender = fields.String(validate=validate.OneOf(GENDERS))
    marital_status = fields.String(validate=validate.OneOf(MARITAL_STATUSES))


class ProfileSchema(Schema):
    """A customer's profile with wallet balance (never the password or its hash)."""

    id = fields.Integer()
    username = fields.String()
    full_name = fields.String()
    email = fields.String()
    age = fields.Integer()
    address = fields.String()
    gender = fields.String()
    marital_status = fields.String()
    balance = Money()
    is_active = fields.Boolean(metadata={"description": "False once the account is deactivated."})
    deactivated_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


CustomerPageSchema = page_schema(ProfileSchema, "CustomerPage")


class CustomerSearchArgsSchema(PageArgsSchema):
    """Query of ``GET /customers``."""

    q = fields.String(
        validate=validate.Length(min=1, max=100),
        metadata={"description": "Matches username, full name or email (case-insensitive)."},
    )
    active = fields.Boolean(metadata={"description": "Only active (true) or deactivated (false)."})


class BatchRegisterSchema(Schema):
    """Bulk creation of up to 1000 customers (all or none)."""

    customers = fields.List(
        fields.Nested(RegisterSchema), required=True, validate=validate.Length(min=1, max=1000)
    )


class BatchResultSchema(Schema):
    """Result of a bulk creation."""

    created = fields.Integer()
    items = fields.List(fields.Nested(ProfileSchema))


class LoginSchema(Schema):
    """Credentials for ``POST /auth/login``."""

    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(
        required=True, load_only=True, validate=validate.Length(min=1, max=128)
    )


class RefreshSchema(Schema):
    """Body of ``POST /auth/refresh``."""

    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=4096))


class PasswordChangeSchema(Schema):
    """Body of ``POST /customers/{username}/password``."""

    current_password = fields.String(
        required=True, load_only=True, validate=validate.Length(min=1, max=128)
    )
    new_password = fields.String(
        required=True, load_only=True, validate=validate.Length(min=8, max=128)
    )


class DeactivatedAccountsSchema(Schema):
    """The ids of every deactivated account (services refuse their tokens)."""

    customer_ids = fields.List(fields.Integer())


class ServiceTokenRequestSchema(Schema):
    """Client-credentials grant for another Shop service."""

    client_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    client_secret = fields.String(
        required=True, load_only=True, validate=validate.Length(min=1, max=512)
    )


class TokenSchema(Schema):
    """Tokens issued by the customers service."""

    access_token = fields.String(required=True)
    refresh_token = fields.String()
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "Seconds."})


class JwksSchema(Schema):
    """A JSON Web Key Set."""

    keys = fields.List(fields.Dict())


class AmountSchema(Schema):
    """A top-up amount."""

    amount = PositiveMoney(
        required=True,
        validate=validate.Range(max=MAX_CHARGE, error="At most {max} per top-up."),
        metadata={
            "description": f"Greater than zero, at most {MAX_CHARGE} per top-up.",
            # What the server accepts, said so a generated client never sends more.
            "pattern": r"^(?!0+(\.0{1,2})?$)([0-9]{1,5}(\.[0-9]{1,2})?|100000(\.00?)?)$",
        },
    )


class DeductSchema(Schema):
    """An admin deduction with its reason."""

    amount = PositiveMoney(required=True)
    reason = TrimmedString(required=True, validate=validate.Length(max=500))


class LedgerEntrySchema(Schema):
    """One wallet movement; ``amount`` is negative for money leaving the wallet."""

    id = fields.Integer()
    kind = fields.String(metadata={"enum": list(LEDGER_KINDS)})
    amount = SignedMoney(metadata={"description": "Negative for money leaving the wallet."})
    balance_after = Money()
    sale_id = fields.UUID(allow_none=True)
    reason = fields.String(allow_none=True)
    created_at = fields.DateTime()


class WalletSchema(PageMetaSchema):
    """A wallet: balance and a page of its ledger entries, newest first."""

    username = fields.String()
    balance = Money()
    items = fields.List(fields.Nested(LedgerEntrySchema))


class WalletChangeSchema(Schema):
    """Result of a wallet change: the new balance and the ledger entry written."""

    username = fields.String()
    balance = Money()
    entry = fields.Nested(LedgerEntrySchema)


class SaleMoneySchema(Schema):
    """A sale's debit or refund, between services."""

    customer_id = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_ID))
    # A total no wallet can hold is still a well-formed request: it is refused as
    # insufficient_funds (409), which the saga settles, not as a malformed body.
    amount = PositiveMoney(required=True, digits=SALE_TOTAL_DIGITS)
    sale_id = fields.UUID(required=True)


class SaleDebitBatchItemSchema(Schema):
    """One sale's debit in a batch: its key and the body of its single call."""

    idempotency_key = idempotency_key_field()
    request = fields.Nested(SaleMoneySchema, required=True)


class SaleDebitBatchSchema(BatchSchemaMixin, Schema):
    """Debits of several sales (``POST /internal/wallet-debits/batch``)."""

    items = items_field(SaleDebitBatchItemSchema)


class SaleMoneyResultSchema(Schema):
    """The ledger entry a sale's debit or refund wrote."""

    entry_id = fields.Integer()
    customer_id = fields.Integer()
    sale_id = fields.UUID()
    amount = Money(digits=SALE_TOTAL_DIGITS)
    balance = Money()
    kind = fields.String()


class SalePaymentsSchema(Schema):
    """A sale's debit and refund in the wallet ledger (null when there is none)."""

    sale_id = fields.UUID()
    customer_id = fields.Integer(allow_none=True)
    debited = Money(allow_none=True, digits=SALE_TOTAL_DIGITS)
    refunded = Money(allow_none=True, digits=SALE_TOTAL_DIGITS)


class LedgerQuerySchema(PageArgsSchema):
    """Query of ``GET /ledger`` (admin audit)."""

    kind = fields.String(validate=validate.OneOf(LEDGER_KINDS))
    sale_id = fields.UUID()
    customer_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    sales_only = fields.Boolean(metadata={"description": "Only entries tied to a sale."})


class AuditLedgerEntrySchema(LedgerEntrySchema):
    """A ledger entry with the wallet it belongs to."""

    customer_id = fields.Integer()


LedgerPageSchema = page_schema(AuditLedgerEntrySchema, "LedgerPage")


class WalletMismatchSchema(Schema):
    """A wallet whose balance differs from its ledger."""

    username = fields.String()
    balance = Money()
    ledger_sum = Money()


class ConsistencySchema(Schema):
    """Result of checking every wallet against its ledger."""

    wallets_checked = fields.Integer()
    ledger_entries = fields.Integer()
    total_balance = Money()
    mismatches = fields.List(fields.Nested(WalletMismatchSchema))
    ok = fields.Boolean()


class BatchChargeItemSchema(Schema):
    """One top-up of a bulk charge."""

    username = fields.String(required=True, validate=USERNAME)
    amount = PositiveMoney(
        required=True,
        validate=validate.Range(max=MAX_CHARGE, error="At most {max} per top-up."),
    )


class BatchChargeSchema(Schema):
    """Up to 1000 top-ups in one transaction."""

    charges = fields.List(
        fields.Nested(BatchChargeItemSchema),
        required=True,
        validate=validate.Length(min=1, max=1000),
    )


class BatchChargeResultSchema(Schema):
    """Result of a bulk charge."""

    charged = fields.Integer()
    total = Money()
