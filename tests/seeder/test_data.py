"""The generated data: reproducible, unique, valid for the services, plausible per category."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from customers_service.schemas import RegisterSchema
from inventory_service.schemas import ProductCreateSchema
from seeder import data

#: What a price must fall between, per category (the generators' ranges, with headroom).
PRICE_RANGES = {
    "food": (Decimal("0.29"), Decimal("80")),
    "clothes": (Decimal("5"), Decimal("700")),
    "accessories": (Decimal("4"), Decimal("360")),
    "electronics": (Decimal("9"), Decimal("2300")),
}
STOCK_RANGES = {
    "food": (40, 800),
    "clothes": (10, 300),
    "accessories": (5, 400),
    "electronics": (2, 150),
}


def test_same_seed_same_data_and_prefix_stable() -> None:
    assert data.customers(7, 300) == data.customers(7, 300)
    assert data.products(7, 200) == data.products(7, 200)
    # The first n of a bigger run are the same: populate 200 then 300 adds 100.
    assert data.customers(7, 300)[:120] == data.customers(7, 120)
    assert data.products(7, 200)[:50] == data.products(7, 50)
    assert data.customers(8, 50) != data.customers(7, 50)
    assert data.products(8, 50) != data.products(7, 50)


def test_customers_are_unique_valid_and_plausible() -> None:
    customers = data.customers(3, 3000)
    assert len({c.username for c in customers}) == 3000
    assert len({c.email for c in customers}) == 3000
    schema = RegisterSchema()
    assert all(not schema.validate(c.payload()) for c in customers)
    assert all(18 <= c.age <= 94 for c in customers)
    assert not [c for c in customers if c.age < 25 and c.marital_status == "widowed"]
    genders = Counter(c.gender for c in customers)
    assert set(genders) == set(data.GENDERS)
    assert genders["female"] > genders["non_binary"] and genders["male"] > genders["non_binary"]
    assert {c.marital_status for c in customers} == set(data.MARITAL_STATUSES)
    assert all(c.address.count(",") >= 2 for c in customers)
    top_ups = [Decimal(c.top_up) for c in customers if c.top_up]
    assert 0.85 * len(customers) < len(top_ups) < len(customers)
    assert all(Decimal(20) <= amount <= Decimal(2000) for amount in top_ups)


def test_passwords_are_derived_from_seed_and_username() -> None:
    customer = data.customers(5, 1)[0]
    assert customer.password == data.derive_password(5, customer.username)
    assert len(customer.password) == 24
    assert data.derive_password(6, customer.username) != customer.password
    assert data.derive_password(5, customer.username.upper()) == customer.password


def test_products_fit_their_category() -> None:
    products = data.products(11, 2000)
    schema = ProductCreateSchema()
    assert all(not schema.validate(p.payload()) for p in products)
    assert set(Counter(p.category for p in products)) == set(data.CATEGORIES)
    for product in products:
        low, high = PRICE_RANGES[product.category]
        assert low <= Decimal(product.price) <= high, product
        low_stock, high_stock = STOCK_RANGES[product.category]
        assert low_stock <= product.stock <= high_stock, product
        assert product.description.endswith(f"Item no. {product.sku}.")
    assert len({p.sku for p in products}) == len(products)
    food = [p for p in products if p.category == "food"]
    electronics = [p for p in products if p.category == "electronics"]
    average = lambda items: sum(Decimal(p.price) for p in items) / len(items)  # noqa: E731
    assert average(electronics) > 10 * average(food)
    assert all("," in p.name for p in food)  # "..., 500 g": food comes in sizes


def test_review_text_fits_the_rating() -> None:
    rng = data.seeded(1)
    assert data.review_text(rng, 5, "food").split(".")[0] + "." in data.OPENINGS[5]
    assert data.review_text(rng, 1, None).split(".")[0] + "." in data.OPENINGS[1]
