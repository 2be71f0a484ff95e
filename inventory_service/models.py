"""Tables of the ``inventory`` schema: products with their stock and image, and stock
reservations (a header per sale and its lines).

Stock only ever changes through conditional ``UPDATE`` statements (see
:mod:`inventory_service.stock`), backed by ``CHECK (stock >= 0)`` and an upper
bound, so no race can oversell or overflow.

Each product also carries its rating (``rating_count`` approved reviews whose
ratings sum to ``rating_sum``), kept from the reviews service's events by
:mod:`inventory_service.ratings` with one row per review in :class:`ReviewRating`;
the ordering of ``sort=rating`` is :data:`RATING_AVERAGE_SQL`, with an index of its own.

Text search (``q``) is PostgreSQL full-text search, built in and indexed:
``search_vector``, a stored generated column holding
``to_tsvector('simple', name || ' ' || description)`` (see
:data:`SEARCH_VECTOR_SQL`), has a GIN index and is matched against
``inventory.search_query(q)``, an
``IMMUTABLE`` SQL function that turns ``q`` into a prefix query (every word of
``q`` must begin a word of the name or description, in any order, ignoring
case: ``"wire spea"`` finds "Wireless speaker"). ``pg_trgm`` (substring
search) was the first choice, but the embedded PostgreSQL ships without it,
and a trigram index built without the extension made batch creation far
slower than the rate the service must sustain (bench/README.md). The vector
is stored rather than only indexed so that a plan which filters candidate
rows by category or price first stays cheap (no ``to_tsvector`` per row).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ColumnElement,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shopkit.db import make_metadata
from shopkit.events.consumer import inbox_table
from shopkit.events.outbox import outbox_table
from shopkit.idempotency import IdempotencyKeyMixin

SCHEMA = "inventory"

CATEGORIES = ("food", "clothes", "accessories", "electronics")
RESERVATION_STATUSES = ("reserved", "released", "returned")
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp", "image/svg+xml")
#: Largest product image (1 MiB).
IMAGE_MAX_BYTES = 1024 * 1024

#: Largest stock a product may hold (well inside PostgreSQL's ``integer``).
MAX_STOCK = 2_000_000_000
NAME_MAX = 200
DESCRIPTION_MAX = 5000

#: What ``q`` searches: the words of name and description (``search_vector``).
SEARCH_VECTOR_SQL = "to_tsvector('simple'::regconfig, (name::text || ' '::text) || description)"
#: A product's average rating, ``NULL`` while it has no approved review (``sort=rating``).
RATING_AVERAGE_SQL = "(rating_sum::numeric / NULLIF(rating_count, 0))"
MIN_RATING, MAX_RATING = 1, 5


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base of the inventory schema."""

    metadata = make_metadata(SCHEMA)
    # Every model maps one table (SQLAlchemy types it as any FromClause).
    __table__: ClassVar[Table]


class Product(Base):
    """A product of the catalogue with its stock; deleting archives it (history is kept)."""

    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint(f"stock <= {MAX_STOCK}", name="stock_limit"),
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint(_in("category", CATEGORIES), name="category_known"),
        CheckConstraint("char_length(btrim(name)) > 0", name="name_not_blank"),
        CheckConstraint(
            f"char_length(description) <= {DESCRIPTION_MAX}", name="description_length"
        ),
        Index("ix_products_category_price", "category", "price"),
        Index("ix_products_price", "price"),
        Index("ix_products_created_at_id", "created_at", "id"),
        Index("ix_products_name_id", "name", "id"),
        Index("ix_products_search_vector", "search_vector", postgresql_using="gin"),
        CheckConstraint(
            f"rating_sum BETWEEN {MIN_RATING} * rating_count AND {MAX_RATING} * rating_count",
            name="rating_sum_in_range",
        ),
        # sort=rating: highest average first, unrated last, then more reviews, then id.
        Index(
            "ix_products_rating",
            text(f"{RATING_AVERAGE_SQL} DESC NULLS LAST"),
            text("rating_count DESC"),
            "id",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    category: Mapped[str] = mapped_column(String(20))
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    description: Mapped[str] = mapped_column(Text, server_default="")
    stock: Mapped[int] = mapped_column(Integer, server_default="0")
    archived: Mapped[bool] = mapped_column(Boolean, server_default="false")
    #: Approved reviews and the sum of their ratings (:mod:`inventory_service.ratings`).
    rating_count: Mapped[int] = mapped_column(Integer, server_default="0")
    rating_sum: Mapped[int] = mapped_column(Integer, server_default="0")
    #: Generated by PostgreSQL; never loaded unless asked for.
    search_vector: Mapped[str] = mapped_column(
        TSVECTOR, Computed(SEARCH_VECTOR_SQL, persisted=True), deferred=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    @property
    def rating(self) -> dict[str, Any]:
        """``{"average": "4.50" or None, "count": n}`` (see :func:`rating_of`)."""
        return rating_of(self.rating_sum, self.rating_count)


def rating_of(rating_sum: int, rating_count: int) -> dict[str, Any]:
    """A product's rating as its JSON shows it: the average of its approved reviews'
    ratings rounded half up to two places (``None`` without any), and their count."""
    average = None
    if rating_count:
        exact = Decimal(rating_sum) / Decimal(rating_count)
        average = str(exact.quantize(Decimal("0.01"), ROUND_HALF_UP))
    return {"average": average, "count": rating_count}


class Reservation(Base):
    """Stock taken for one sale: the header of its lines (:class:`ReservationLine`).

    One row per sale (the sale id is the key), kept forever: ``reserved``, then
    possibly ``released`` (the sale failed) or ``returned`` (the paid order was
    cancelled and refunded), so every stock movement made for sales can be audited.
    """

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint(_in("status", RESERVATION_STATUSES), name="status_known"),
        CheckConstraint(
            "(status = 'released') = (released_at IS NOT NULL)", name="released_at_when_released"
        ),
        CheckConstraint(
            "(status = 'returned') = (returned_at IS NOT NULL)", name="returned_at_when_returned"
        ),
        Index("ix_reservations_status_created_at", "status", "created_at"),
    )

    sale_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), server_default="reserved")
    reserved_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    returned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Its lines by product id (loaded on first use, or with ``selectinload`` for lists).
    lines: Mapped[list[ReservationLine]] = relationship(
        order_by="ReservationLine.product_id", viewonly=True
    )


class ReservationLine(Base):
    """One product of a reservation, with the price and name it had when it was reserved."""

    __tablename__ = "reservation_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price > 0", name="unit_price_positive"),
        Index("ix_reservation_lines_product_id_sale_id", "product_id", "sale_id"),
    )

    sale_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(Reservation.sale_id), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey(Product.id), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    name: Mapped[str] = mapped_column(String(NAME_MAX))


class IdempotencyKey(IdempotencyKeyMixin, Base):
    """Idempotency keys of state-changing calls to the inventory service."""


class ProductImage(Base):
    """A product's one image (PNG, JPEG, WebP or SVG, checked by content; see
    :mod:`inventory_service.images`), replaced whole by each upload."""

    __tablename__ = "product_images"
    __table_args__ = (
        CheckConstraint(_in("media_type", IMAGE_MEDIA_TYPES), name="media_type_known"),
        CheckConstraint(f"octet_length(content) <= {IMAGE_MAX_BYTES}", name="size_limit"),
    )

    product_id: Mapped[int] = mapped_column(ForeignKey(Product.id), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(40))
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    #: SHA-256 of ``content`` in hex: the image's ETag.
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ReviewRating(Base):
    """The last known state of one review, from the reviews service's events.

    ``counted`` says whether the review is approved (its rating in its product's
    ``rating_count`` and ``rating_sum``); ``sequence`` is the review's event that
    set it, so an older event arriving late never overwrites a newer state.
    """

    __tablename__ = "review_ratings"
    __table_args__ = (
        CheckConstraint(f"rating BETWEEN {MIN_RATING} AND {MAX_RATING}", name="rating_range"),
        Index("ix_review_ratings_product_id", "product_id", postgresql_where=text("counted")),
    )

    review_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    product_id: Mapped[int] = mapped_column(BigInteger)
    rating: Mapped[int] = mapped_column(Integer)
    counted: Mapped[bool] = mapped_column(Boolean)
    sequence: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


def rating_average(columns: Any) -> ColumnElement[Any]:
    """:data:`RATING_AVERAGE_SQL` over ``columns`` (the model, or a CTE's ``c``)."""
    average: ColumnElement[Any] = columns.rating_sum.cast(Numeric) / func.nullif(
        columns.rating_count, 0
    )
    return average


#: The inventory outbox: stock changed, product created and archived, written in the
#: transaction of the change (:mod:`inventory_service.events`).
OUTBOX = outbox_table(Base.metadata)
#: The review events the ``inventory`` group applied (:mod:`inventory_service.ratings`).
INBOX = inbox_table(Base.metadata)
