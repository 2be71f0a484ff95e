"""The storefront's forms (Flask-WTF: every one carries a CSRF token).

Validation here is only what a browser user needs to hear at once; the
services validate everything again and their problem ``detail``s are shown
as they are. Forms that change money or orders carry a fresh
``Idempotency-Key`` in a hidden field, so submitting the same form twice
(a double click, a reload) replays the first answer instead of acting twice.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired, FileSize
from wtforms import (
    DecimalField,
    EmailField,
    Field,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    AnyOf,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    Regexp,
    StopValidation,
)

#: The blank first choice of a select the user must pick themselves (nothing pre-set).
CHOOSE = SelectChoice("", "Choose…")
GENDERS = [SelectChoice("female"), SelectChoice("male"), SelectChoice("non_binary", "non-binary"),
           SelectChoice("prefer_not_to_say", "prefer not to say")]  # fmt: skip
MARITAL = [SelectChoice(s) for s in ("single", "married", "divorced", "widowed")]
#: The customers service's rules, stated on the forms (it checks them again).
USERNAME_RULE = "3 to 32 letters, digits, '_', '.' or '-'"
USERNAME = r"^[A-Za-z0-9_.\-]{3,32}$"
MIN_AGE = 18
#: The most one top-up may add (the customers service's limit).
MAX_TOP_UP = Decimal("100000.00")
#: An amount as people type it: digits, at most two decimals (no ``1e3``, no sign).
AMOUNT = r"^\d{1,9}(\.\d{1,2})?$"
CATEGORIES = ["food", "clothes", "accessories", "electronics"]
SORTS = [("newest", "Newest"), ("price", "Price: low to high"), ("-price", "Price: high to low"),
         ("name", "Name A-Z"), ("-name", "Name Z-A")]  # fmt: skip
#: The shop's sorts: those, and by rating (inventory keeps each product's from review events).
SHOP_SORTS = [*SORTS, ("rating", "Best rated")]


def new_key() -> str:
    """A fresh idempotency key for one form submission."""
    return uuid.uuid4().hex


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class KeyedForm(FlaskForm):
    """A button whose action must not happen twice: CSRF token plus an idempotency key."""

    key = HiddenField(default=new_key, validators=[InputRequired(), Length(max=64)])


class LoginForm(FlaskForm):
    """Log in."""

    username = StringField("Username", validators=[InputRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[InputRequired(), Length(max=128)])


class ProfileForm(FlaskForm):
    """The profile fields a customer may change."""

    full_name = StringField("Full name", validators=[InputRequired(), Length(max=200)])
    email = EmailField("Email", validators=[InputRequired(), Length(max=254)])
    age = IntegerField(
        f"Age ({MIN_AGE} or older)",
        validators=[InputRequired(), NumberRange(MIN_AGE, 120, f"You must be {MIN_AGE} or older.")],
    )
    address = StringField("Address", validators=[InputRequired(), Length(max=500)])
    gender = SelectField("Gender", choices=[CHOOSE, *GENDERS],
                         validators=[InputRequired("Choose one.")])  # fmt: skip
    marital_status = SelectField("Marital status", choices=[CHOOSE, *MARITAL],
                                 validators=[InputRequired("Choose one.")])  # fmt: skip


class RegisterForm(ProfileForm):
    """A new account: the profile plus a username and password."""

    username = StringField(
        f"Username ({USERNAME_RULE})",
        validators=[InputRequired(), Regexp(USERNAME, message=f"Use {USERNAME_RULE}.")],
    )
    password = PasswordField("Password (8 or more characters)",
                             validators=[InputRequired(), Length(min=8, max=128)])  # fmt: skip


class PasswordForm(FlaskForm):
    """Change one's password."""

    current_password = PasswordField("Current password",
                                     validators=[InputRequired(), Length(max=128)])  # fmt: skip
    new_password = PasswordField("New password (8 or more characters)",
                                 validators=[InputRequired(), Length(min=8, max=128)])  # fmt: skip


def plain_amount(_form: FlaskForm, field: Field) -> None:
    """The amount as typed must be plain digits with at most two decimals (``1e3`` is not)."""
    typed = (field.raw_data or [""])[0] or ""
    if not re.fullmatch(AMOUNT, typed.strip()):
        raise StopValidation("Enter an amount like 25 or 25.50.")


class TopUpForm(KeyedForm):
    """Add money to the wallet: 0.01 to :data:`MAX_TOP_UP` at a time, typed as digits."""

    amount = DecimalField(
        "Amount",
        places=2,
        validators=[
            InputRequired("Enter an amount."),
            plain_amount,
            NumberRange(
                Decimal("0.01"), MAX_TOP_UP, f"Top up from 0.01 to {MAX_TOP_UP:,.2f} at a time."
            ),
        ],
    )


class QuantityForm(FlaskForm):
    """A quantity for the cart (or a restock)."""

    quantity = IntegerField("Quantity", default=1, validators=[InputRequired(), NumberRange(1)])


class ReviewForm(FlaskForm):
    """Write or edit a review."""

    rating = SelectField(
        "Rating", choices=[SelectChoice(str(n), f"{n} ★") for n in range(5, 0, -1)]
    )
    comment = TextAreaField("Comment", validators=[Optional(), Length(max=2000)])


class ModerationForm(FlaskForm):
    """Approve, flag or reject a review, with a note."""

    action = SelectField(choices=[SelectChoice(a) for a in ("approve", "flag", "reject")])
    note = StringField("Note", validators=[Optional(), Length(max=1000)])


class ProductForm(FlaskForm):
    """Create or edit a product."""

    name = StringField("Name", validators=[InputRequired(), Length(max=200)])
    category = SelectField("Category", choices=[SelectChoice(c) for c in CATEGORIES])
    price = DecimalField("Price", places=2, validators=[InputRequired(), NumberRange(min=0.01)])
    description = TextAreaField("Description", validators=[Optional(), Length(max=5000)])
    stock = IntegerField("Initial stock", default=0, validators=[Optional(), NumberRange(0)])


class ShipForm(FlaskForm):
    """Mark an order shipped."""

    carrier = StringField("Carrier", validators=[Optional(), Length(max=100)])
    tracking_number = StringField("Tracking number", validators=[Optional(), Length(max=100)])


class PopulateForm(FlaskForm):
    """``python -m seeder populate`` sizes and seed."""

    customers = IntegerField("Customers", default=200, validators=[InputRequired(),
                             NumberRange(0, 100_000)])  # fmt: skip
    products = IntegerField("Products", default=100, validators=[InputRequired(),
                            NumberRange(0, 100_000)])  # fmt: skip
    seed = IntegerField("Seed", default=42, validators=[InputRequired()])


class ReplayForm(FlaskForm):
    """``python -m seeder replay`` size, pace and seed."""

    purchases = IntegerField("Purchases", default=100, validators=[InputRequired(),
                             NumberRange(1, 100_000)])  # fmt: skip
    concurrency = IntegerField("Concurrency", default=4, validators=[InputRequired(),
                               NumberRange(1, 64)])  # fmt: skip
    rate = DecimalField("Rate (per second, 0: as fast as possible)", default=0, places=1,
                        validators=[InputRequired(), NumberRange(0, 1000)])  # fmt: skip
    seed = IntegerField("Seed", default=42, validators=[InputRequired()])


class FaultForm(FlaskForm):
    """Switch a fault on in one service (its kinds and targets are set per service)."""

    kind = SelectField("Fault")
    target = SelectField("On")
    route = StringField("Route (METHOD /path, or a path prefix)", validators=[Optional(),
                        Length(max=200)], render_kw={"placeholder": "POST /sales"})  # fmt: skip
    latency_ms = IntegerField("Latency (ms)", validators=[Optional(), NumberRange(1, 60_000)])
    hang_s = DecimalField("Hang (s)", places=1, validators=[Optional(), NumberRange(0.1, 120)])
    status = IntegerField("Error status", validators=[Optional(), NumberRange(500, 599)])
    rate = DecimalField("Share of requests hit (0-1)", default=1, places=2,
                        validators=[InputRequired(), NumberRange(0, 1)])  # fmt: skip


class RemoveFaultForm(FlaskForm):
    """Switch one fault off: the fault itself, as the page showed it."""

    fault = HiddenField(validators=[InputRequired(), Length(max=2000)])


#: The largest image the console uploads (the inventory's own limit: 1 MiB).
IMAGE_MAX_BYTES = 1024 * 1024


class ImageForm(FlaskForm):
    """Upload a product's image (the inventory checks its type by its content)."""

    image = FileField(
        "Image (PNG, JPEG, WebP or SVG, at most 1 MiB)",
        validators=[FileRequired("Choose an image file."),
                    FileSize(IMAGE_MAX_BYTES, message="The image is larger than 1 MiB.")],
        render_kw={"accept": "image/png,image/jpeg,image/webp,image/svg+xml"},
    )  # fmt: skip


class ConfirmForm(FlaskForm):
    """The second step of an action that is hard to undo: the admin confirms it."""

    confirm = HiddenField(validators=[InputRequired(), AnyOf(["yes"])])
