"""Group commit for the saga: concurrent purchases in one process share their remote steps.

Under load many purchases are in flight in one sales process at once. Instead
of each paying its own request to inventory and to customers (a request, a
transaction and a commit on each side), their reservations go to inventory as
one ``POST /internal/reservations/batch`` and their debits to customers as one
``POST /internal/wallet-debits/batch``; each batch is one transaction on the
callee with one answer per sale (see :func:`shopkit.idempotency.run_idempotent_batch`).

A :class:`Coalescer` gathers the calls of one step. The first caller that finds
no batch forming leads one: it waits at most ``window_s`` for the purchases the
process *expects* at this step (announced, not yet arrived), never when none is
expected, and at most until ``max_size`` calls joined. So a lone sale goes at
once. Up to ``max_flights`` batches of one step are in the air at a time;
meanwhile the next one fills up (the classic group commit). Records are never
announced (a purchase records as soon as it starts); a save is announced by the
reservation or debit batch that decided the sale's next move.

Sales' own writes are batched the same way, on the sales database: the new
orders of concurrent purchases are recorded by one statement and one commit
(``record``, :func:`sales_service.saga_store.record_sales`), and their outcomes written
by one more (``save``, :func:`sales_service.saga_store.save_leased`). A sale recorded
in a batch is owned by its lease (``lease_until``), not a row lock, while it is
driven: recovery and replays leave a leased sale alone, and the save writes a
sale only if it is still pending under that lease. Each sale keeps its own
idempotency keys (``{sale_id}:reserve``, ``{sale_id}:debit``) and its own
outcome, logged by its own request thread. A remote batch of one is sent to the
single endpoint. A whole batch that gets no answer is, for each of its sales, a
step that got no answer (the sale stays pending for recovery, which drives it
alone through the single endpoints). Batching is off with ``SALES_BATCH_MAX=1``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar

from sales_service.clients import CustomersClient, InventoryClient, SaleClients
from sales_service.metrics import SALES_BATCH_SIZE
from sales_service.models import Sale
from sales_service.saga_run import SagaRun
from sales_service.saga_store import Recording, record_sales, save_leased
from shopkit.db import Database
from shopkit.service_client import ServiceResponse

Item = TypeVar("Item")
Answer = TypeVar("Answer")


@dataclass
class _Slot(Generic[Item, Answer]):
    item: Item
    taken: bool = False  # by a batch (under the coalescer's lock)
    done: threading.Event = field(default_factory=threading.Event)
    answered: bool = False
    answer: Answer | None = None
    error: BaseException | None = None


class Coalescer(Generic[Item, Answer]):
    """Gathers concurrent calls of one saga step into batches (see the module docstring).

    ``send`` takes the gathered items and returns one answer per item, in order;
    an exception it raises is raised to every caller of the batch.
    """

    def __init__(
        self,
        step: str,
        send: Callable[[Sequence[Item]], list[Answer]],
        *,
        window_s: float,
        max_size: int,
        max_flights: int = 1,
    ) -> None:
        self.step = step
        self.send = send
        self.window_s = window_s
        self.max_size = max(1, max_size)
        self.max_flights = max(1, max_flights)
        lock = threading.Lock()
        #: Signalled when a call arrives or is withdrawn (the forming batch's leader waits).
        self._arrived = threading.Condition(lock)
        #: Signalled when a batch was formed or came back (callers waiting for their turn).
        self._turn = threading.Condition(lock)
        self._queue: list[_Slot[Item, Answer]] = []
        self._flights = 0
        self._leading = False
        self._expected = 0
        #: Batches sent and the calls in them.
        self.batches = 0
        self.calls = 0

    def announce(self, count: int = 1) -> None:
        """Say that ``count`` calls are on their way: a leader may wait for them."""
        with self._arrived:
            self._expected += count

    def withdraw(self, count: int = 1) -> None:
        """Take back an announcement whose call will not come (the sale ended earlier)."""
        with self._arrived:
            self._expected = max(0, self._expected - count)
            self._arrived.notify()

    def call(self, item: Item, *, announced: bool) -> Answer:
        """Make one call as part of a batch; returns this call's own answer.

        The caller either waits for a batch to take its call, or (when no batch is
        forming and a flight is free) forms and sends the next batch itself.
        """
        slot: _Slot[Item, Answer] = _Slot(item)
        with self._arrived:
            if announced:
                self._expected = max(0, self._expected - 1)
            self._queue.append(slot)
            self._arrived.notify()
        while True:
            with self._turn:
                while not slot.taken and (self._leading or self._flights >= self.max_flights):
                    self._turn.wait()
                if slot.taken:
                    break
                batch = self._lead()  # holds this call (or, past max_size, earlier ones)
            self._fly(batch)
        slot.done.wait()
        if slot.error is not None:
            raise slot.error
        assert slot.answered
        return slot.answer  # type: ignore[return-value]  # Answer may include None

    def _lead(self) -> list[_Slot[Item, Answer]]:
        """Form the next batch (the lock is held): wait for expected calls, within the window."""
        self._leading = True
        try:
            ends = time.monotonic() + self.window_s
            while len(self._queue) < self.max_size and self._expected > 0:
                remaining = ends - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.wait(remaining)
            batch, self._queue = self._queue[: self.max_size], self._queue[self.max_size :]
            for slot in batch:
                slot.taken = True
            self._flights += 1
            return batch
        finally:
            self._leading = False
            self._turn.notify_all()

    def _fly(self, batch: list[_Slot[Item, Answer]]) -> None:
        """Send one batch (no lock held) and hand each caller its answer."""
        try:
            answers = self.send([slot.item for slot in batch])
            for slot, answer in zip(batch, answers, strict=True):
                slot.answer, slot.answered = answer, True
        except BaseException as exc:  # every caller of the batch sees what went wrong
            for slot in batch:
                slot.error = exc
        finally:
            SALES_BATCH_SIZE.labels(step=self.step).observe(len(batch))
            with self._turn:
                self._flights -= 1
                self.batches += 1
                self.calls += len(batch)
                self._turn.notify_all()
            for slot in batch:
                slot.done.set()


#: A reservation to make: ``(sale_id, lines)``.
Reservation = tuple[uuid.UUID, Sequence[tuple[int, int]]]
#: A debit to make: ``(sale_id, customer_id, amount)``.
Debit = tuple[uuid.UUID, int, Decimal]


def _per_item(answer: ServiceResponse, count: int) -> list[ServiceResponse]:
    """The per-sale answers of a batch call; a batch refused as a whole is each sale's answer
    (an answer the saga cannot interpret: the sale stays pending for recovery)."""
    results = answer.body.get("results") if answer.status == 200 else None
    if not isinstance(results, list) or len(results) != count:
        return [answer] * count
    return [
        ServiceResponse(
            int(result.get("status", 500)),
            result.get("body") if isinstance(result.get("body"), dict) else {},
            replayed=bool(result.get("replayed")),
        )
        for result in results
    ]


class Batcher:
    """The coalescers of one sales process: records, reservations, debits and saves."""

    def __init__(
        self,
        clients: SaleClients,
        database: Database,
        *,
        window_s: float,
        max_size: int,
        max_flights: int = 1,
    ) -> None:
        self.clients = clients
        self.database = database
        self.enabled = max_size > 1
        knobs: dict[str, Any] = {
            "window_s": window_s,
            "max_size": max_size,
            "max_flights": max_flights,
        }
        self.record: Coalescer[Recording, Sale | None] = Coalescer("record", self._record, **knobs)
        self.reserve: Coalescer[Reservation, ServiceResponse] = Coalescer(
            "reserve", self._reserve, **knobs
        )
        self.debit: Coalescer[Debit, ServiceResponse] = Coalescer("debit", self._debit, **knobs)
        self.save: Coalescer[SagaRun, bool] = Coalescer("save", self._save, **knobs)

    def _record(self, orders: Sequence[Recording]) -> list[Sale | None]:
        with self.database.session() as session:
            return record_sales(session, orders)

    def _save(self, runs: Sequence[SagaRun]) -> list[bool]:
        with self.database.session() as session:
            return save_leased(session, runs)

    def _reserve(self, items: Sequence[Reservation]) -> list[ServiceResponse]:
        inventory = self.clients.inventory
        try:
            if len(items) == 1:
                answers = [inventory.reserve(*items[0])]
            else:
                answers = _per_item(inventory.reserve_batch(items), len(items))
                answers = self._single_retries(answers, items, inventory.reserve)
        except BaseException:
            self.save.announce(len(items))  # each one's attempt is saved next
            raise
        # Every sale whose stock was taken goes on to its debit, every other one to its
        # save: announce them all before any of them learns its answer, so the next
        # batch's leader waits for the others.
        taken = sum(1 for answer in answers if answer.status == 201)
        self.debit.announce(taken)
        self.save.announce(len(items) - taken)
        return answers

    def _debit(self, items: Sequence[Debit]) -> list[ServiceResponse]:
        customers = self.clients.customers
        try:
            if len(items) == 1:
                return [customers.debit(*items[0])]
            answers = _per_item(customers.debit_batch(items), len(items))
            return self._single_retries(answers, items, customers.debit)
        finally:
            self.save.announce(len(items))  # each one's outcome is known (or not) next

    @staticmethod
    def _single_retries(
        answers: list[ServiceResponse], items: Sequence[Any], single: Callable[..., ServiceResponse]
    ) -> list[ServiceResponse]:
        """A sale whose key was busy in the batch (a retry of it still running) is asked again
        alone, under the same key: the single call waits and retries as any call does."""
        return [
            single(*item) if answer.code == "idempotency_key_in_use" else answer
            for answer, item in zip(answers, items, strict=True)
        ]

    def for_sale(self) -> BatchedSale:
        """Clients for one purchase, its steps going through the batches."""
        return BatchedSale(self)


class _BatchedInventory(InventoryClient):
    def __init__(self, sale: BatchedSale) -> None:
        super().__init__(sale.batcher.clients.inventory.client)
        self.sale = sale

    def reserve(self, sale_id: uuid.UUID, lines: Sequence[tuple[int, int]]) -> ServiceResponse:
        """Reserve through the batch of reservations."""
        sale = self.sale
        announced, sale.reserve_expected = sale.reserve_expected, False
        try:
            answer = sale.batcher.reserve.call((sale_id, lines), announced=announced)
        except BaseException:
            sale.save_expected = True  # announced by the batch (Batcher._reserve)
            raise
        sale.debit_expected = answer.status == 201
        sale.save_expected = not sale.debit_expected
        return answer


class _BatchedCustomers(CustomersClient):
    def __init__(self, sale: BatchedSale) -> None:
        super().__init__(sale.batcher.clients.customers.client)
        self.sale = sale

    def debit(self, sale_id: uuid.UUID, customer_id: int, amount: Decimal) -> ServiceResponse:
        """Debit through the batch of debits."""
        sale = self.sale
        announced, sale.debit_expected = sale.debit_expected, False
        try:
            return sale.batcher.debit.call((sale_id, customer_id, amount), announced=announced)
        finally:
            sale.save_expected = True  # announced by the batch (Batcher._debit)


class BatchedSale(SaleClients):
    """The clients one purchase drives its saga with (a :class:`SaleClients`), and its
    store (the leased :class:`~sales_service.saga_store.SaleStore`): :meth:`record`,
    :meth:`take` and :meth:`save` in batches.

    Made when the purchase starts, which announces its reservation; :meth:`close`
    withdraws whatever the sale announced and did not send (it failed earlier, or it
    was a replay driven under its row lock and saved alone).
    """

    def __init__(self, batcher: Batcher) -> None:
        self.batcher = batcher
        self.reserve_expected = True
        self.debit_expected = False
        self.save_expected = False
        batcher.reserve.announce()
        super().__init__(inventory=_BatchedInventory(self), customers=_BatchedCustomers(self))

    def record(self, order: Recording) -> Sale | None:
        """Record the order in the batch of records (see :func:`saga_store.record_sales`)."""
        return self.batcher.record.call(order, announced=False)

    def take(self, sale: Sale) -> Sale:
        """The sale this purchase just recorded: owned by its lease, nothing is locked."""
        return sale

    def save(self, run: SagaRun) -> bool:
        """Write the drive's outcome in the batch of saves (see :func:`saga_store.save_leased`)."""
        announced, self.save_expected = self.save_expected, False
        return self.batcher.save.call(run, announced=announced)

    def close(self) -> None:
        """Withdraw the announcements this sale did not use."""
        for expected, coalescer in (
            ("reserve_expected", self.batcher.reserve),
            ("debit_expected", self.batcher.debit),
            ("save_expected", self.batcher.save),
        ):
            if getattr(self, expected):
                coalescer.withdraw()
                setattr(self, expected, False)
