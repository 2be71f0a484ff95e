"""Realistic, reproducible demo data: customers, their top-ups, and a catalogue.

Everything is a pure function of the seed. Customers and products come from
two separate seeded streams (a ``Faker(use_weighting=False)`` instance and a
``random.Random`` each), generated in order, so the first *n* customers of a
seed are the same whatever the total asked for: populating 200 customers and
later 300 with the same seed adds exactly 100.

Passwords are never stored anywhere: :func:`derive_password` computes a
customer's password again from the seed and the username
(HMAC-SHA256 keyed by the seed, first 24 hex digits), which is how ``replay``
logs the shoppers in.

Every product's description ends with an item number derived from the seed
and the product's position (:func:`product_sku`). Products have no natural
unique key in the inventory service; the item number is what lets
``populate`` recognise a catalogue it created before.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from faker import Faker
from faker.providers.address.en_US import Provider as UsAddresses

CATEGORIES = ("food", "clothes", "accessories", "electronics")
CATEGORY_WEIGHTS = (0.3, 0.3, 0.2, 0.2)
GENDERS = ("female", "male", "non_binary", "prefer_not_to_say")
GENDER_WEIGHTS = (0.485, 0.475, 0.025, 0.015)
MARITAL_STATUSES = ("single", "married", "divorced", "widowed")
#: Marital status weights by age band (upper bound exclusive).
MARITAL_BY_AGE = (
    (25, (0.9, 0.09, 0.01, 0.0)),
    (40, (0.45, 0.45, 0.09, 0.01)),
    (65, (0.18, 0.6, 0.17, 0.05)),
    (200, (0.07, 0.55, 0.13, 0.25)),
)
#: First top-ups people actually make: round amounts, small ones most often.
TOP_UPS = (20, 25, 50, 75, 100, 150, 200, 250, 300, 500, 750, 1000, 2000)
TOP_UP_WEIGHTS = (8, 6, 16, 6, 18, 8, 12, 6, 5, 7, 3, 3, 1)
#: Share of new customers who top up their wallet when they sign up.
TOP_UP_SHARE = 0.92

_NOT_USERNAME = re.compile(r"[^a-z]")
#: US address pieces from Faker's ``en_US`` data, combined with the seeded ``random.Random``
#: (Faker's own ``address()`` templating is slower, bench/README.md, and makes military addresses).
STATES = tuple(UsAddresses.states_abbr)
STATE_ZIPS = {state: UsAddresses.states_postcode[state] for state in STATES}
STREET_SUFFIXES = tuple(UsAddresses.street_suffixes)
CITY_PREFIXES = tuple(UsAddresses.city_prefixes)
CITY_SUFFIXES = tuple(UsAddresses.city_suffixes)
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")


def stream_seed(seed: int, stream: str) -> int:
    """A 64-bit seed for one named stream of ``seed`` (stable across Python runs)."""
    digest = hashlib.sha256(f"shop-seeder:{stream}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def seeded(seed: int) -> random.Random:
    """A ``random.Random`` for reproducible demo data (never for secrets)."""
    return random.Random(seed)  # noqa: S311 (reproducibility is the point)


def derive_password(seed: int, username: str) -> str:
    """The password of seeded customer ``username``: HMAC-SHA256(seed, username), 24 hex digits."""
    key = f"shop-seeder-password:{seed}".encode()
    return hmac.new(key, username.lower().encode(), hashlib.sha256).hexdigest()[:24]


def product_sku(seed: int, index: int) -> str:
    """The item number of the seed's product number ``index``: ``S`` and 11 hex digits."""
    key = f"shop-seeder-sku:{seed}".encode()
    return "S" + hmac.new(key, str(index).encode(), hashlib.sha256).hexdigest()[:11].upper()


def money(value: float | Decimal) -> str:
    """``value`` as a two-decimal money string."""
    return f"{Decimal(str(value)).quantize(Decimal('0.01')):.2f}"


# --- customers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerSpec:
    """One seeded customer, with its derived password and first top-up (``None``: none)."""

    index: int
    username: str
    password: str
    full_name: str
    email: str
    age: int
    address: str
    gender: str
    marital_status: str
    top_up: str | None

    def payload(self) -> dict[str, Any]:
        """The body of this customer in ``POST /customers/batch``."""
        return {
            "username": self.username,
            "password": self.password,
            "full_name": self.full_name,
            "email": self.email,
            "age": self.age,
            "address": self.address,
            "gender": self.gender,
            "marital_status": self.marital_status,
        }


def _ascii(value: str) -> str:
    return _NOT_USERNAME.sub("", value.lower())


class CustomerFactory:
    """The seed's customers, in order (customer *i* never depends on how many are made)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.fake = Faker(use_weighting=False)
        self.fake.seed_instance(stream_seed(seed, "customers"))
        self.rng = seeded(stream_seed(seed, "customers-rng"))
        self._made: list[CustomerSpec] = []
        self._usernames: set[str] = set()

    def _first_name(self, gender: str) -> str:
        if gender == "female":
            return str(self.fake.first_name_female())
        if gender == "male":
            return str(self.fake.first_name_male())
        if gender == "non_binary":
            return str(self.fake.first_name_nonbinary())
        return str(self.fake.first_name())

    def _username(self, first: str, last: str, number: int) -> str:
        first_a, last_a = _ascii(first)[:10] or "user", _ascii(last)[:12] or "shopper"
        pattern = self.rng.randrange(5)
        if pattern == 0:
            name = f"{first_a}.{last_a}{number}"
        elif pattern == 1:
            name = f"{first_a}_{last_a}{number}"
        elif pattern == 2:
            name = f"{first_a[0]}{last_a}{number}"
        elif pattern == 3:
            name = f"{first_a}{last_a[0]}{number}"
        else:
            name = f"{last_a}.{first_a}{number}"
        if name in self._usernames:  # cannot happen with the index in it, but stay unique
            name = f"{name}_{self.rng.randrange(10**6)}"
        self._usernames.add(name)
        return name

    def _address(self) -> str:
        """A US street address: number, street, maybe a unit, city, state and a ZIP in it."""
        rng, fake = self.rng, self.fake
        street_name = fake.last_name() if rng.random() < 0.5 else fake.first_name()
        number = int(10 ** rng.uniform(1.0, 4.9))  # mostly 2-4 digits, as house numbers are
        street = f"{number} {street_name} {rng.choice(STREET_SUFFIXES)}"
        if rng.random() < 0.25:
            street += f" {rng.choice(('Apt.', 'Suite'))} {rng.randint(100, 999)}"
        pattern = rng.randrange(4)
        if pattern == 0:
            city = f"{rng.choice(CITY_PREFIXES)} {fake.first_name()}{rng.choice(CITY_SUFFIXES)}"
        elif pattern == 1:
            city = f"{rng.choice(CITY_PREFIXES)} {fake.first_name()}"
        elif pattern == 2:
            city = f"{fake.first_name()}{rng.choice(CITY_SUFFIXES)}"
        else:
            city = f"{fake.last_name()}{rng.choice(CITY_SUFFIXES)}"
        state = rng.choice(STATES)
        low, high = STATE_ZIPS[state]
        return f"{street}, {city}, {state} {rng.randint(low, high):05d}"

    def _make(self, index: int) -> CustomerSpec:
        rng, fake = self.rng, self.fake
        gender = rng.choices(GENDERS, GENDER_WEIGHTS)[0]
        first, last = self._first_name(gender), str(fake.last_name())
        age = int(min(94, max(18, round(rng.gauss(41, 14)))))
        marital = next(
            rng.choices(MARITAL_STATUSES, weights)[0]
            for limit, weights in MARITAL_BY_AGE
            if age < limit
        )
        username = self._username(first, last, index + 1)
        local = f"{_ascii(first)}.{_ascii(last)}{index + 1}"
        address = self._address()
        top_up = None
        if rng.random() < TOP_UP_SHARE:
            top_up = money(rng.choices(TOP_UPS, TOP_UP_WEIGHTS)[0])
        return CustomerSpec(
            index=index,
            username=username,
            password=derive_password(self.seed, username),
            full_name=f"{first} {last}",
            email=f"{local}@{rng.choice(EMAIL_DOMAINS)}",
            age=age,
            address=address,
            gender=gender,
            marital_status=marital,
            top_up=top_up,
        )

    def get(self, index: int) -> CustomerSpec:
        """Customer number ``index`` (generating those before it as needed)."""
        while len(self._made) <= index:
            self._made.append(self._make(len(self._made)))
        return self._made[index]

    def first(self, count: int) -> list[CustomerSpec]:
        """The first ``count`` customers."""
        if count > 0:
            self.get(count - 1)
        return self._made[:count]


def customers(seed: int, count: int) -> list[CustomerSpec]:
    """The seed's first ``count`` customers."""
    return CustomerFactory(seed).first(count)


# --- products ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductSpec:
    """One seeded product; ``sku`` (also at the end of the description) identifies it."""

    index: int
    sku: str
    name: str
    category: str
    price: str
    description: str
    stock: int

    def payload(self) -> dict[str, Any]:
        """The body of this product in ``POST /products/batch``."""
        return {
            "name": self.name,
            "category": self.category,
            "price": self.price,
            "description": self.description,
            "stock": self.stock,
        }


# (item, sizes, low price, high price, extra sentence)
FOOD = (
    ("Espresso Beans", ("250 g", "500 g", "1 kg"), 6, 28, "Roasted in small batches"),
    ("Ground Coffee", ("250 g", "500 g"), 5, 16, "Medium roast with notes of cocoa"),
    ("Extra Virgin Olive Oil", ("500 ml", "750 ml", "1 l"), 7, 24, "Cold-pressed"),
    ("Dark Chocolate 70%", ("100 g", "200 g"), 2, 7, "Made with single-estate cacao"),
    ("Basmati Rice", ("1 kg", "2 kg", "5 kg"), 3, 15, "Aged for a fuller aroma"),
    ("Wildflower Honey", ("250 g", "500 g"), 5, 16, "Raw and unfiltered"),
    ("Green Tea", ("20 bags", "50 bags", "100 g loose"), 3, 14, "Steep at 80 °C"),
    ("Penne Pasta", ("500 g", "1 kg"), 1.5, 5, "Bronze-die cut durum wheat"),
    ("Maple Syrup", ("250 ml", "500 ml"), 7, 20, "Grade A amber"),
    ("Almond Butter", ("250 g", "500 g"), 5, 13, "Nothing added but almonds"),
    ("Sea Salt Crackers", ("150 g", "300 g"), 2, 5, "Baked, never fried"),
    ("Granola", ("400 g", "750 g"), 3.5, 9, "Oats, nuts and a touch of honey"),
    ("Strawberry Jam", ("300 g", "450 g"), 2.5, 7, "60% fruit"),
    ("Rolled Oats", ("500 g", "1 kg"), 1.5, 5, "Whole grain"),
    ("Dried Mango", ("150 g", "300 g"), 3, 9, "No added sugar"),
    ("Sparkling Water", ("6 x 500 ml", "12 x 330 ml"), 3, 9, "Naturally carbonated"),
    ("Tomato Passata", ("500 g", "700 g"), 1.5, 4, "Sun-ripened tomatoes"),
    ("Mixed Nuts", ("200 g", "500 g"), 4, 14, "Lightly salted"),
    ("Jasmine Rice", ("1 kg", "5 kg"), 3, 16, "Fragrant long grain"),
    ("Peanut Butter", ("340 g", "1 kg"), 2.5, 9, "Crunchy"),
)
FOOD_STYLES = ("Organic", "Artisan", "Premium", "Classic", "Fair-trade", "Farmhouse", "Everyday")
FOOD_BRANDS = ("Hartley's", "Green Valley", "Mill & Co.", "Casa Verde", "Northfield", "Sunbeam")

# (garment, low price, high price)
CLOTHES = (
    ("T-Shirt", 8, 35),
    ("Hoodie", 25, 80),
    ("Jeans", 30, 120),
    ("Chinos", 25, 90),
    ("Sweater", 25, 140),
    ("Rain Jacket", 45, 220),
    ("Parka", 90, 350),
    ("Dress", 25, 150),
    ("Skirt", 20, 90),
    ("Polo Shirt", 15, 60),
    ("Oxford Shirt", 25, 85),
    ("Leggings", 15, 60),
    ("Running Shorts", 15, 45),
    ("Pyjama Set", 20, 70),
    ("Blazer", 60, 260),
    ("Cardigan", 25, 110),
    ("Puffer Vest", 40, 150),
)
CLOTHES_MATERIALS = (
    ("Cotton", 1.0),
    ("Organic Cotton", 1.15),
    ("Merino Wool", 1.5),
    ("Linen", 1.25),
    ("Fleece", 0.9),
    ("Recycled Polyester", 0.95),
    ("Cashmere-blend", 1.9),
    ("Corduroy", 1.1),
)
COLOURS = (
    "Navy",
    "Charcoal",
    "Olive",
    "Black",
    "White",
    "Heather Grey",
    "Burgundy",
    "Sand",
    "Forest Green",
    "Sky Blue",
    "Rust",
    "Cream",
)
FITS = ("Slim-fit", "Relaxed-fit", "Regular-fit")
CLOTHES_BRANDS = ("Northwind", "Harbor & Pine", "Atelier Nord", "Fieldstone", "Loom Studio")
CARE = ("Machine wash at 30 °C", "Hand wash cold", "Dry clean only", "Machine wash at 40 °C")

# (item, materials, low price, high price)
ACCESSORIES = (
    ("Wallet", ("Leather", "Vegan Leather", "Canvas"), 15, 90),
    ("Card Holder", ("Leather", "Vegan Leather"), 10, 45),
    ("Tote Bag", ("Canvas", "Leather", "Recycled Nylon"), 12, 140),
    ("Belt", ("Leather", "Woven Elastic"), 18, 75),
    ("Sunglasses", ("Acetate", "Metal-frame"), 15, 180),
    ("Scarf", ("Wool", "Silk", "Cotton"), 15, 90),
    ("Beanie", ("Merino", "Cotton-knit"), 10, 35),
    ("Baseball Cap", ("Cotton", "Wool-blend"), 12, 35),
    ("Watch", ("Stainless Steel", "Leather-strap"), 45, 350),
    ("Backpack", ("Waxed Canvas", "Recycled Nylon", "Leather"), 35, 160),
    ("Umbrella", ("Windproof", "Compact"), 12, 45),
    ("Earrings", ("Sterling Silver", "Gold-plated"), 20, 120),
    ("Keyring", ("Brass", "Leather"), 5, 15),
    ("Travel Pouch", ("Canvas", "Recycled Nylon"), 10, 30),
    ("Water Bottle", ("Stainless Steel", "Glass"), 12, 40),
)
ACCESSORY_BRANDS = ("Maison Lark", "Copper & Ash", "Tidewell", "Oakhurst", "Juniper Row")

# (item, low price, high price, features)
ELECTRONICS = (
    (
        "Wireless Earbuds",
        25,
        250,
        ("Active noise cancellation", "Up to 30 hours with the case", "IPX4 sweat resistance"),
    ),
    (
        "Bluetooth Speaker",
        25,
        300,
        ("360° sound", "Up to 20 hours of playback", "Waterproof (IP67)"),
    ),
    (
        "Noise-cancelling Headphones",
        60,
        450,
        ("Adaptive noise cancellation", "40 hours of battery life", "Multipoint Bluetooth 5.3"),
    ),
    ("USB-C Charger 65 W", 20, 70, ("GaN technology", "Charges a laptop and a phone at once")),
    (
        "Power Bank 20000 mAh",
        20,
        80,
        ("Two USB-C ports", "Charges a phone up to four times", "LED charge indicator"),
    ),
    (
        "Mechanical Keyboard",
        50,
        220,
        ("Hot-swappable switches", "Per-key RGB lighting", "USB-C and Bluetooth"),
    ),
    ("Wireless Mouse", 12, 90, ("Silent clicks", "Up to 12 months on one battery")),
    (
        '27" 4K Monitor',
        220,
        700,
        ("IPS panel with 99% sRGB", "USB-C with 65 W power delivery", "Height-adjustable stand"),
    ),
    (
        "Smartwatch",
        80,
        450,
        ("Heart-rate and SpO2 sensors", "Built-in GPS", "Up to 7 days of battery life"),
    ),
    ("Fitness Tracker", 30, 150, ("Sleep tracking", "Water resistant to 50 m")),
    ("Action Camera", 90, 450, ("4K at 60 fps", "Image stabilisation", "Waterproof to 10 m")),
    (
        "E-reader",
        90,
        280,
        ('6.8" glare-free display', "Weeks of battery life", "Adjustable warm light"),
    ),
    ('Tablet 10"', 150, 900, ("128 GB storage", "All-day battery", "Stylus support")),
    ('Laptop 14"', 450, 2200, ("16 GB RAM", "512 GB SSD", "Backlit keyboard", "Up to 15 hours")),
    ("Smartphone", 180, 1300, ("Triple camera", "128 GB storage", "5G", "Fast charging")),
    ("Webcam 1080p", 25, 120, ("Auto-focus", "Dual microphones", "Privacy shutter")),
    ("Portable SSD 1 TB", 60, 180, ("Up to 1050 MB/s", "USB-C", "Drop resistant to 2 m")),
    ("Wi-Fi 6 Router", 40, 300, ("Dual band", "Covers up to 200 m²", "WPA3 security")),
    ("Smart Plug", 10, 35, ("Works with voice assistants", "Energy monitoring")),
)
ELECTRONICS_BRANDS = ("Voltix", "Nexora", "Auralink", "Quantis", "Lumatek", "Brightwave", "Kestrel")
MODEL_NAMES = ("Pro", "Air", "Max", "Lite", "Plus", "Go", "S", "X")
WARRANTIES = ("1-year", "2-year", "3-year")


def _price(rng: random.Random, low: float, high: float) -> str:
    """A shop price between ``low`` and ``high``, log-uniform, ending the way prices end."""
    value = low * (high / low) ** rng.random()
    if value < 10:
        cents = rng.choice((0.29, 0.49, 0.79, 0.99))
    elif value < 100:
        cents = rng.choice((0.49, 0.95, 0.99, 0.99))
    else:
        cents = rng.choice((0.0, 0.99, 0.99))
    return money(max(int(value) + cents, 0.29))


class ProductFactory:
    """The seed's catalogue, in order (product *i* never depends on how many are made)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.fake = Faker(use_weighting=False)
        self.fake.seed_instance(stream_seed(seed, "products"))
        self.rng = seeded(stream_seed(seed, "products-rng"))
        self._made: list[ProductSpec] = []

    def _food(self) -> tuple[str, str, str, int]:
        rng = self.rng
        item, sizes, low, high, extra = rng.choice(FOOD)
        size_index = rng.randrange(len(sizes))
        scale = 1 + 0.8 * size_index
        style, brand = rng.choice(FOOD_STYLES), rng.choice(FOOD_BRANDS)
        name = f"{brand} {style} {item}, {sizes[size_index]}"
        description = (
            f"{style} {item.lower()} from {self.fake.country()}. {extra}. "
            f"Best before {rng.choice((6, 9, 12, 18, 24))} months from packing."
        )
        return name, description, _price(rng, low * scale, high * scale), rng.randint(40, 800)

    def _clothes(self) -> tuple[str, str, str, int]:
        rng = self.rng
        garment, low, high = rng.choice(CLOTHES)
        material, factor = rng.choice(CLOTHES_MATERIALS)
        colour, fit, brand = rng.choice(COLOURS), rng.choice(FITS), rng.choice(CLOTHES_BRANDS)
        name = f"{brand} {colour} {material} {garment}"
        description = (
            f"{fit} {garment.lower()} in {material.lower()}, colour {colour.lower()}. "
            f"Sizes XS to XXL. {rng.choice(CARE)}. Made in {self.fake.country()}."
        )
        price = _price(rng, low * factor, high * factor)
        return name, description, price, rng.randint(10, 300)

    def _accessory(self) -> tuple[str, str, str, int]:
        rng = self.rng
        item, materials, low, high = rng.choice(ACCESSORIES)
        material, brand = rng.choice(materials), rng.choice(ACCESSORY_BRANDS)
        colour = rng.choice(COLOURS)
        name = f"{brand} {material} {item}"
        description = (
            f"{material} {item.lower()} in {colour.lower()}, designed in {self.fake.city()}. "
            f"Comes gift-boxed with a {rng.choice(WARRANTIES)} guarantee."
        )
        return name, description, _price(rng, low, high), rng.randint(5, 400)

    def _electronics(self) -> tuple[str, str, str, int]:
        rng = self.rng
        item, low, high, features = rng.choice(ELECTRONICS)
        brand = rng.choice(ELECTRONICS_BRANDS)
        model = f"{rng.choice(MODEL_NAMES)} {rng.randint(2, 9)}"
        if rng.random() < 0.4:
            model = f"{rng.choice('AXZQ')}{rng.randint(1, 9) * 100}"
        chosen = rng.sample(features, k=min(len(features), rng.randint(2, 3)))
        name = f"{brand} {item} {model}"
        description = (
            f"{'. '.join(chosen)}. {rng.choice(WARRANTIES).capitalize()} warranty. "
            f"Ships from {self.fake.country()}."
        )
        return name, description, _price(rng, low, high), rng.randint(2, 150)

    def _make(self, index: int) -> ProductSpec:
        category = self.rng.choices(CATEGORIES, CATEGORY_WEIGHTS)[0]
        maker = {
            "food": self._food,
            "clothes": self._clothes,
            "accessories": self._accessory,
            "electronics": self._electronics,
        }[category]
        name, description, price, stock = maker()
        sku = product_sku(self.seed, index)
        return ProductSpec(
            index=index,
            sku=sku,
            name=name,
            category=category,
            price=price,
            description=f"{description} Item no. {sku}.",
            stock=stock,
        )

    def first(self, count: int) -> list[ProductSpec]:
        """The first ``count`` products."""
        while len(self._made) < count:
            self._made.append(self._make(len(self._made)))
        return self._made[:count]


def products(seed: int, count: int) -> list[ProductSpec]:
    """The seed's first ``count`` products."""
    return ProductFactory(seed).first(count)


# --- reviews ----------------------------------------------------------------------------------

RATINGS = (5, 4, 3, 2, 1)
RATING_WEIGHTS = (0.46, 0.3, 0.11, 0.07, 0.06)
OPENINGS = {
    5: ("Absolutely love it.", "Exceeded my expectations.", "Fantastic quality.", "Perfect."),
    4: ("Really good overall.", "Very happy with this.", "Solid choice.", "Good value."),
    3: ("It's okay.", "Does the job.", "Average, nothing special.", "Mixed feelings."),
    2: ("Disappointed.", "Not what I expected.", "Below average.", "Meh."),
    1: ("Would not recommend.", "Poor quality.", "Very disappointed.", "Waste of money."),
}
DETAILS = {
    "food": ("Tastes great", "Fresh and well packed", "A bit pricey for the size", "Bland"),
    "clothes": (
        "True to size",
        "Runs a little small",
        "Lovely fabric",
        "Colour faded after a wash",
    ),
    "accessories": ("Well made", "Looks even better in person", "Feels a bit flimsy", "Great gift"),
    "electronics": ("Battery lasts ages", "Easy to set up", "Sound is crisp", "Gets warm"),
}
CLOSINGS = {
    5: ("Will buy again!", "Highly recommended.", ""),
    4: ("Would recommend.", "Arrived quickly.", ""),
    3: ("Might try something else next time.", ""),
    2: ("Expected better.", ""),
    1: ("Returning it.", ""),
}


def review_text(rng: random.Random, rating: int, category: str | None) -> str:
    """A short review comment that fits the rating (and the category when known)."""
    details = DETAILS.get(category or "", DETAILS["accessories"])
    parts = [rng.choice(OPENINGS[rating]), rng.choice(details) + ".", rng.choice(CLOSINGS[rating])]
    return " ".join(part for part in parts if part)
