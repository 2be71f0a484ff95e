"""The seeded products' pictures: drawn from category and name, the same bytes for the same seed,
accepted by the inventory, and uploaded by ``populate``."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from typing import Any
from xml.etree import ElementTree

import pytest
import requests

from inventory_service.images import media_type_of
from seeder.data import ProductFactory
from seeder.pictures import product_svg
from shopkit.config import PROJECT_ROOT
from tests.support.seeder import Run, ShopReader

DIGESTS_OF_SEED = """
import hashlib, sys
from seeder.data import ProductFactory
from seeder.pictures import product_svg
for p in ProductFactory(int(sys.argv[1])).first(int(sys.argv[2])):
    print(hashlib.sha256(product_svg(p.category, p.name)).hexdigest())
"""


def digests_in_a_new_process(seed: int, count: int, hash_seed: str) -> list[str]:
    """The pictures' SHA-256 digests, drawn by another interpreter (another ``hash()`` seed)."""
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(PROJECT_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", DIGESTS_OF_SEED, str(seed), str(count)],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    return out.stdout.split()


def test_the_same_seed_draws_the_same_bytes_in_any_process() -> None:
    products = ProductFactory(11).first(40)
    here = [hashlib.sha256(product_svg(p.category, p.name)).hexdigest() for p in products]
    assert digests_in_a_new_process(11, 40, "1") == here
    assert digests_in_a_new_process(11, 40, "2") == here
    assert len(set(here)) == len({(p.category, p.name) for p in products})  # one per product
    other_seed = ProductFactory(12).first(40)
    assert [product_svg(p.category, p.name) for p in other_seed] != [
        product_svg(p.category, p.name) for p in products
    ]


def test_a_picture_is_drawn_from_the_category_and_the_name() -> None:
    name = 'Copper & Ash 27" <Tote> Bag'
    svg = ElementTree.fromstring(product_svg("accessories", name))
    assert svg.get("aria-label") == name  # escaped in the document, whole once read
    (label,) = svg.iter("{http://www.w3.org/2000/svg}text")
    assert label.text == name
    motifs = {c: product_svg(c, "Same Name") for c in ("food", "clothes", "accessories",
                                                       "electronics")}  # fmt: skip
    assert len(set(motifs.values())) == 4
    assert product_svg("food", "Same Name") == motifs["food"]
    assert product_svg("food", "Other Name") != motifs["food"]


@pytest.mark.parametrize("seed", [1, 42])
def test_every_seeded_picture_is_an_svg_the_inventory_accepts(seed: int) -> None:
    for product in ProductFactory(seed).first(200):
        picture = product_svg(product.category, product.name)
        assert media_type_of(picture) == "image/svg+xml", product.name
        assert len(picture) < 4096


def catalogue(stack: Any) -> list[dict[str, Any]]:
    """Every product of the running inventory, with its id."""
    listed = requests.get(stack.url("inventory") + "/products", params={"page_size": 100},
                          timeout=30)  # fmt: skip
    assert listed.status_code == 200, listed.text
    return list(listed.json()["items"])


@pytest.mark.processes
def test_populate_uploads_each_new_products_picture_once(
    run_seeder: Run, shop_reader: ShopReader, seeder_stack: Any
) -> None:
    result = run_seeder("populate", "--customers", "2", "--products", "6", "--seed", "5")
    assert result.exit_code == 0, result.output
    assert "product pictures" in result.output
    products = catalogue(seeder_stack)
    assert len(products) == 6 == len(shop_reader.products())
    for product in products:
        served = requests.get(
            seeder_stack.url("inventory") + f"/products/{product['id']}/image", timeout=30
        )
        assert served.status_code == 200, product
        assert served.headers["Content-Type"].split(";")[0] == "image/svg+xml"
        assert served.content == product_svg(product["category"], product["name"])
    again = run_seeder("populate", "--customers", "2", "--products", "6", "--seed", "5")
    assert again.exit_code == 0 and "already exist" in again.output
    skipped = run_seeder("populate", "--customers", "0", "--products", "8", "--seed", "5",
                         "--no-images")  # fmt: skip
    assert skipped.exit_code == 0, skipped.output
    newest = max(int(p["id"]) for p in catalogue(seeder_stack))
    missing = requests.get(seeder_stack.url("inventory") + f"/products/{newest}/image", timeout=30)
    assert missing.status_code == 404
