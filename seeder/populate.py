"""``populate``: the seed's customers, their first top-ups and the catalogue, through bulk APIs.

Batches of up to 1000 go to ``POST /customers/batch``, ``POST /wallets/charges/batch``
and ``POST /products/batch`` with the admin's token; a small thread pool keeps
two batch requests in flight by default (``--parallel``): one per worker of a
default service (bench/README.md compares it with more). The
next batch of customers is generated while the previous ones are on the way.

Running it again with the same seed creates nothing twice:

* customers: a batch that names existing accounts is refused with 409
  ``already_exists`` and the clashing usernames and emails; those customers are
  counted as existing and the rest of the batch is sent again;
* top-ups: only accounts created by this run are topped up, each batch with an
  ``Idempotency-Key`` derived from the seed, the batch's positions and its
  content, so a retried request never charges twice (an account that already
  existed is never topped up again);
* products: every seeded description ends with the product's item number
  (:func:`seeder.data.product_sku`); a batch whose first and last item numbers
  are found by ``GET /products?q=`` already exists, a batch whose first one
  exists but not its last was partly created by a smaller earlier run, and the
  missing tail is found by a binary search and created.

Each product this run creates gets its picture (:func:`seeder.pictures.product_svg`,
drawn from its category and name) with ``PUT /products/{id}/image``, unless
``images`` is off; a picture replaces the one before, so sending it again is harmless.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

from seeder.client import ApiError, Login, Services
from seeder.data import CustomerFactory, CustomerSpec, ProductFactory, ProductSpec
from seeder.pictures import product_svg

MAX_BATCH = 1000
T = TypeVar("T")
#: ``on_progress(kind, count)``: ``kind`` is ``customers``, ``wallets`` (customers whose wallet
#: is settled: topped up, needing no top-up, or existing before) or ``products``.
ProgressCallback = Callable[[str, int], None]


@dataclass
class PopulateResult:
    """What a populate run did and found."""

    seed: int
    customers_requested: int = 0
    customers_created: int = 0
    customers_existing: int = 0
    customers_email_taken: int = 0
    wallets_topped_up: int = 0
    money_topped_up: Decimal = Decimal("0.00")
    products_requested: int = 0
    products_created: int = 0
    products_existing: int = 0
    images_uploaded: int = 0
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int | Decimal) -> None:
        """Add to counters from any worker thread."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


class Populator:
    """Sends one seed's data to the services (see the module documentation)."""

    def __init__(
        self,
        services: Services,
        admin: Login,
        seed: int,
        *,
        batch_size: int = MAX_BATCH,
        parallel: int = 2,
        images: bool = True,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.services = services
        self.images = images
        self.admin = admin
        self.seed = seed
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.parallel = max(1, parallel)
        self.on_progress = on_progress or (lambda _kind, _count: None)
        self.result = PopulateResult(seed)

    # --- customers ----------------------------------------------------------------------------

    def _post_customers(self, batch: list[CustomerSpec]) -> list[CustomerSpec]:
        """Create ``batch``; return those created now (existing ones are counted and dropped)."""
        pending = batch
        for _ in range(4):
            if not pending:
                return []
            reply = self.admin.call(
                self.services.customers,
                "POST",
                "/customers/batch",
                json={"customers": [c.payload() for c in pending]},
            )
            if reply.status == 201:
                return pending
            if reply.status == 409 and reply.code == "already_exists":
                usernames = {u.lower() for u in reply.body.get("usernames", [])}
                emails = {e.lower() for e in reply.body.get("emails", [])}
                existing = [c for c in pending if c.username in usernames]
                taken = [c for c in pending if c.username not in usernames and c.email in emails]
                self.result.add(customers_existing=len(existing), customers_email_taken=len(taken))
                self.on_progress("customers", len(existing) + len(taken))
                if taken:
                    with self.result._lock:
                        self.result.notes.append(
                            f"{len(taken)} seeded customers skipped: their email belongs to "
                            f"another account (e.g. {taken[0].email})"
                        )
                dropped = {c.username for c in existing} | {c.username for c in taken}
                pending = [c for c in pending if c.username not in dropped]
                continue
            raise ApiError("customers", "POST", "/customers/batch", reply.status, reply.body)
        raise ApiError("customers", "POST", "/customers/batch", 409, "kept clashing; giving up")

    def _top_up(self, created: list[CustomerSpec]) -> None:
        charges = [{"username": c.username, "amount": c.top_up} for c in created if c.top_up]
        if not charges:
            return
        digest = hashlib.sha256(json.dumps(charges, sort_keys=True).encode()).hexdigest()
        key = f"seeder:{self.seed}:top-up:{created[0].index}-{created[-1].index}:{digest[:20]}"
        reply = self.admin.call(
            self.services.customers,
            "POST",
            "/wallets/charges/batch",
            json={"charges": charges},
            headers={"Idempotency-Key": key},
        )
        if reply.status != 200:
            raise ApiError("customers", "POST", "/wallets/charges/batch", reply.status, reply.body)
        self.result.add(
            wallets_topped_up=int(reply.body["charged"]),
            money_topped_up=Decimal(str(reply.body["total"])),
        )

    def _customer_batch(self, batch: list[CustomerSpec]) -> None:
        created = self._post_customers(batch)
        self.result.add(customers_created=len(created))
        self.on_progress("customers", len(created))
        self._top_up(created)
        # Wallets settle a batch at a time: topped up now, needing none, or existing before.
        self.on_progress("wallets", len(batch))

    # --- products -----------------------------------------------------------------------------

    def _exists(self, product: ProductSpec) -> bool:
        reply = self.services.inventory.get("/products", params={"q": product.sku, "page_size": 1})
        return int(reply.body.get("total", 0)) > 0

    def _missing(self, batch: list[ProductSpec]) -> list[ProductSpec]:
        """The products of ``batch`` not in the catalogue yet (see the module documentation)."""
        first, last = self._exists(batch[0]), self._exists(batch[-1])
        if first and last:
            return []
        if not first and not last:
            return batch
        if first:  # an earlier, smaller run created a prefix: find where it stops
            low, high = 0, len(batch) - 1  # batch[low] exists, batch[high] does not
            while high - low > 1:
                middle = (low + high) // 2
                if self._exists(batch[middle]):
                    low = middle
                else:
                    high = middle
            return batch[high:]
        return [product for product in batch if not self._exists(product)]

    def _product_batch(self, batch: list[ProductSpec]) -> None:
        missing = self._missing(batch)
        existing = len(batch) - len(missing)
        self.result.add(products_existing=existing)
        self.on_progress("products", existing)
        if not missing:
            return
        reply = self.admin.call(
            self.services.inventory,
            "POST",
            "/products/batch",
            json={"products": [p.payload() for p in missing]},
        )
        if reply.status != 201:
            raise ApiError("inventory", "POST", "/products/batch", reply.status, reply.body)
        self.result.add(products_created=len(missing))
        self.on_progress("products", len(missing))
        if self.images:
            ids = [int(item["id"]) for item in reply.body["items"]]  # in the order sent
            with ThreadPoolExecutor(self.parallel, thread_name_prefix="pictures") as pool:
                list(pool.map(self._upload_picture, missing, ids))

    def _upload_picture(self, product: ProductSpec, product_id: int) -> None:
        path = f"/products/{product_id}/image"
        reply = self.admin.call(self.services.inventory, "PUT", path,
                                data=product_svg(product.category, product.name),
                                headers={"Content-Type": "image/svg+xml"})  # fmt: skip
        if reply.status != 200:
            raise ApiError("inventory", "PUT", path, reply.status, reply.body)
        self.result.add(images_uploaded=1)

    def _product_batches(self, batches: list[list[ProductSpec]]) -> None:
        for batch in batches:
            self._product_batch(batch)

    # --- the run ------------------------------------------------------------------------------

    def run(self, customers: int, products: int) -> PopulateResult:
        """Create the seed's first ``customers`` customers and ``products`` products."""
        started = time.perf_counter()
        result = self.result
        result.customers_requested, result.products_requested = customers, products
        product_specs = ProductFactory(self.seed).first(products)
        factory = CustomerFactory(self.seed)
        pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="populate")
        try:
            # Product batches go one after the other (they are cheap), so the catalogue gets
            # the same ids in the same order on every fresh database.
            futures: list[Future[None]] = [
                pool.submit(self._product_batches, _chunks(product_specs, self.batch_size))
            ]
            # Generate customers a batch at a time, so the first batch is on its way
            # while the next ones are being made.
            for start in range(0, customers, self.batch_size):
                count = min(self.batch_size, customers - start)
                batch = factory.first(start + count)[start:]
                futures.append(pool.submit(self._customer_batch, batch))
                _raise_first_error(futures)
            for future in futures:
                future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        result.elapsed_s = time.perf_counter() - started
        return result


def _raise_first_error(futures: list[Future[None]]) -> None:
    for future in futures:
        if future.done() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]
