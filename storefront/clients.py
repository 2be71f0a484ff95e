"""Typed HTTP client of the services' public APIs, as the storefront uses them.

The storefront owns no data: every page is built from these calls. A
:class:`Transport` carries one call to one service; :class:`HttpTransport`
is the real one (shopkit's :class:`~shopkit.service_client.ServiceClient`:
timeouts, a deadline, the request id passed on) and unit tests give a fake
at exactly this boundary. :class:`ShopApi` turns each operation into one
method that returns the service's JSON or raises :class:`ApiProblem` with
the service's own problem ``detail``.

Reads are retried on transient failures; a write is retried only when it
carries an ``Idempotency-Key`` (the callee then replays instead of acting
twice), so a restock or a moderation is never sent twice by accident.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from json import loads as json_loads
from typing import Any, Protocol

import urllib3

from shopkit.registry import SERVICE_NAMES
from shopkit.request_id import current_request_id
from shopkit.service_client import DependencyUnavailable, ServiceClient, ServiceResponse

#: Every service the storefront calls: the registry's (shopkit.registry), in start order.
SERVICES = SERVICE_NAMES
#: Seconds a quick call (:meth:`Transport.call`'s ``quick``) may take, in one attempt.
QUICK_S = 1.5
JSON = dict[str, Any]


class ApiProblem(Exception):
    """A service refused a call: its status, problem ``code``, ``detail`` and whole body."""

    def __init__(self, service: str, status: int, body: Mapping[str, Any]) -> None:
        self.service = service
        self.status = status
        self.body = dict(body)
        self.code = str(body.get("code") or "")
        detail = body.get("detail") or body.get("title") or f"{service} answered {status}."
        self.detail = str(detail)
        super().__init__(self.detail)

    @property
    def field_errors(self) -> dict[str, Any]:
        """Per-field messages of a 422 (``{}`` otherwise)."""
        errors = self.body.get("errors")
        return errors if isinstance(errors, dict) else {}

    def message(self) -> str:
        """The detail, followed by the per-field messages when there are any."""
        parts = [self.detail]
        for name, text in _field_messages(self.field_errors):
            parts.append(f"{name}: {text}")
        return " ".join(parts)


def _field_messages(errors: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``{field: [messages]}``, nested for lists of objects (``faults.0.latency_ms``), flat."""
    found: list[tuple[str, str]] = []
    for name, messages in errors.items():
        where = f"{prefix}{name}"
        if isinstance(messages, Mapping):
            found.extend(_field_messages(messages, f"{where}."))
        elif isinstance(messages, list):
            found.append((where, "; ".join(str(m) for m in messages)))
        else:
            found.append((where, str(messages)))
    return found


class Transport(Protocol):
    """Carries one call to one service (the boundary unit tests fake)."""

    def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        token: str | None = None,
        idempotency_key: str | None = None,
        quick: bool = False,
    ) -> ServiceResponse:
        """Send the call; raise :class:`DependencyUnavailable` when there is no answer.

        ``quick``: one attempt within :data:`QUICK_S` (a read the page can do without)."""
        ...

    def text(self, service: str, path: str) -> tuple[int, str]:
        """``GET`` a non-JSON document (``/metrics``): status and body text."""
        ...

    def binary(
        self,
        service: str,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> BinaryResponse:
        """Send or fetch bytes (an image), once; raise :class:`DependencyUnavailable`."""
        ...


class HttpTransport:
    """The real transport: one reading and one writing ServiceClient per service."""

    def __init__(
        self,
        urls: Mapping[str, str],
        *,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 5.0,
        retries: int = 2,
    ) -> None:
        self.urls = {name: url.rstrip("/") for name, url in urls.items()}

        def client(name: str, attempts: int) -> ServiceClient:
            return ServiceClient(
                name,
                self.urls[name],
                connect_timeout_s=connect_timeout_s,
                read_timeout_s=read_timeout_s,
                retries=attempts,
                deadline_s=connect_timeout_s + read_timeout_s + 1,
                pool_size=8,
            )

        self._readers = {name: client(name, retries) for name in self.urls}
        self._quick = {
            name: ServiceClient(
                name,
                self.urls[name],
                connect_timeout_s=min(connect_timeout_s, QUICK_S),
                read_timeout_s=QUICK_S,
                retries=0,
                deadline_s=QUICK_S,
                pool_size=4,
            )
            for name in self.urls
        }
        self._writers = {name: client(name, 0) for name in self.urls}
        self._raw = urllib3.PoolManager(num_pools=4, maxsize=4, retries=False)
        self._text_timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)

    def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        token: str | None = None,
        idempotency_key: str | None = None,
        quick: bool = False,
    ) -> ServiceResponse:
        """Send one call through the service's client (see the module documentation)."""
        repeatable = method in ("GET", "PUT", "DELETE") or idempotency_key is not None
        clients = self._quick if quick else self._readers if repeatable else self._writers
        client = clients[service]
        return client.request(
            method,
            path,
            json=json,
            params=dict(params) if params else None,
            idempotency_key=idempotency_key,
            auth=False,
            bearer=token,
        )

    def text(self, service: str, path: str) -> tuple[int, str]:
        """``GET`` ``path`` of ``service`` as text, once (no retries: it is polled anyway)."""
        try:
            response = self._raw.request(
                "GET", self.urls[service] + path, timeout=self._text_timeout, redirect=False
            )
        except urllib3.exceptions.HTTPError as exc:
            raise DependencyUnavailable(service) from exc
        return response.status, response.data.decode(errors="replace")

    def binary(
        self,
        service: str,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> BinaryResponse:
        """One call with a bytes body or answer (an image), never retried, within the timeouts."""
        sent = {**(headers or {}), "X-Request-ID": current_request_id() or ""}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        try:
            response = self._raw.request(
                method,
                self.urls[service] + path,
                body=body,
                headers={name: value for name, value in sent.items() if value},
                timeout=self._text_timeout,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise DependencyUnavailable(service) from exc
        return BinaryResponse(response.status, dict(response.headers), response.data)


@dataclass(frozen=True)
class Page:
    """One page of a collection: ``items`` plus where it is in the whole."""

    items: list[JSON]
    page: int
    page_size: int
    total: int

    @property
    def pages(self) -> int:
        """How many pages there are (at least one)."""
        return max(1, -(-self.total // max(1, self.page_size)))

    @classmethod
    def of(cls, body: JSON) -> Page:
        """Read a ``{items, page, page_size, total}`` body."""
        items = body.get("items") or []
        return cls(
            items=list(items),
            page=int(body.get("page") or 1),
            page_size=int(body.get("page_size") or len(items) or 1),
            total=int(body.get("total") or len(items)),
        )


@dataclass(frozen=True)
class Tokens:
    """What a login or a refresh returns."""

    access_token: str
    refresh_token: str
    expires_in: int


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the unset query parameters (``None`` and empty strings)."""
    return {k: v for k, v in params.items() if v is not None and v != ""}


class ShopApi:
    """Every call the storefront makes, one method each (tokens are the user's own)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def _call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        token: str | None = None,
        expect: Iterable[int] = (200,),
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        quick: bool = False,
    ) -> JSON:
        response = self.transport.call(
            service,
            method,
            path,
            json=json,
            params=_clean(params) if params else None,
            token=token,
            idempotency_key=idempotency_key,
            quick=quick,
        )
        if response.status in tuple(expect):
            return response.body
        raise ApiProblem(service, response.status, response.body)

    # --- customers -------------------------------------------------------------------------

    def register(self, fields: Mapping[str, Any]) -> JSON:
        """``POST /customers``: a new account (201)."""
        return self._call("customers", "POST", "/customers", json=dict(fields), expect=(201,))

    def login(self, username: str, password: str) -> Tokens:
        """``POST /auth/login``."""
        body = self._call(
            "customers", "POST", "/auth/login", json={"username": username, "password": password}
        )
        return _tokens(body)

    def refresh(self, refresh_token: str) -> Tokens:
        """``POST /auth/refresh`` (rotating: the old refresh token is spent)."""
        body = self._call(
            "customers", "POST", "/auth/refresh", json={"refresh_token": refresh_token}
        )
        return _tokens(body)

    def logout(self, refresh_token: str) -> None:
        """``POST /auth/logout``: revoke the refresh token and its whole login (204)."""
        self._call(
            "customers",
            "POST",
            "/auth/logout",
            json={"refresh_token": refresh_token},
            expect=(204,),
        )

    def change_password(self, token: str, username: str, current: str, new: str) -> None:
        """``POST /customers/{username}/password`` (204; 401 ``invalid_credentials``)."""
        body = {"current_password": current, "new_password": new}
        self._call(
            "customers",
            "POST",
            f"/customers/{username}/password",
            token=token,
            json=body,
            expect=(204,),
        )

    def profile(self, token: str, username: str) -> JSON:
        """``GET /customers/{username}``: profile with balance."""
        return self._call("customers", "GET", f"/customers/{username}", token=token)

    def update_profile(self, token: str, username: str, fields: Mapping[str, Any]) -> JSON:
        """``PATCH /customers/{username}``: profile fields only."""
        return self._call(
            "customers", "PATCH", f"/customers/{username}", token=token, json=dict(fields)
        )

    def wallet(self, token: str, username: str, page: int = 1, page_size: int = 20) -> JSON:
        """``GET /customers/{username}/wallet``: balance and ledger page (newest first)."""
        return self._call(
            "customers",
            "GET",
            f"/customers/{username}/wallet",
            token=token,
            params={"page": page, "page_size": page_size},
        )

    def top_up(self, token: str, username: str, amount: str, key: str) -> JSON:
        """``POST /customers/{username}/wallet/charge`` (the form's key: a resubmit replays)."""
        return self._call(
            "customers",
            "POST",
            f"/customers/{username}/wallet/charge",
            token=token,
            json={"amount": amount},
            idempotency_key=key,
            expect=(200, 201),
        )

    def customers(
        self, token: str, q: str | None, active: bool | None, page: int = 1, page_size: int = 20
    ) -> Page:
        """``GET /customers`` (admin): search."""
        params = {"q": q, "page": page, "page_size": page_size}
        if active is not None:
            params["active"] = "true" if active else "false"
        return Page.of(self._call("customers", "GET", "/customers", token=token, params=params))

    def deactivate(self, token: str, username: str) -> None:
        """``DELETE /customers/{username}``: deactivate (204)."""
        self._call("customers", "DELETE", f"/customers/{username}", token=token, expect=(204,))

    def reactivate(self, token: str, username: str) -> JSON:
        """``POST /customers/{username}/reactivation`` (admin): the account may log in again."""
        return self._call("customers", "POST", f"/customers/{username}/reactivation", token=token)

    # --- inventory -------------------------------------------------------------------------

    def products(self, filters: Mapping[str, Any], page: int = 1, page_size: int = 12) -> Page:
        """``GET /products`` with the inventory's own filters, sort and pagination."""
        params = {**filters, "page": page, "page_size": page_size}
        return Page.of(self._call("inventory", "GET", "/products", params=params))

    def products_by_id(self, product_ids: Iterable[int]) -> dict[int, JSON]:
        """``GET /products?ids=``: the listed products among ``product_ids`` by id (at most
        100; archived and unknown ones are left out)."""
        ids = sorted(set(product_ids))[:100]
        if not ids:
            return {}
        params = {"ids": ",".join(str(i) for i in ids), "page_size": 100}
        body = self._call("inventory", "GET", "/products", params=params)
        return {int(p["id"]): p for p in body.get("items") or []}

    def product(self, product_id: int, token: str | None = None) -> JSON:
        """``GET /products/{id}``."""
        return self._call("inventory", "GET", f"/products/{product_id}", token=token)

    def create_product(self, token: str, fields: Mapping[str, Any]) -> JSON:
        """``POST /products`` (admin, 201)."""
        return self._call(
            "inventory", "POST", "/products", token=token, json=dict(fields), expect=(201,)
        )

    def update_product(self, token: str, product_id: int, fields: Mapping[str, Any]) -> JSON:
        """``PATCH /products/{id}`` (admin; ``archived: false`` restores)."""
        return self._call(
            "inventory", "PATCH", f"/products/{product_id}", token=token, json=dict(fields)
        )

    def restock(self, token: str, product_id: int, quantity: int) -> JSON:
        """``POST /products/{id}/restock`` (admin)."""
        return self._call(
            "inventory",
            "POST",
            f"/products/{product_id}/restock",
            token=token,
            json={"quantity": quantity},
        )

    def archive(self, token: str, product_id: int) -> None:
        """``DELETE /products/{id}`` (admin): archive (204)."""
        self._call("inventory", "DELETE", f"/products/{product_id}", token=token, expect=(200, 204))

    # --- sales -----------------------------------------------------------------------------

    def cart(self, token: str) -> JSON:
        """``GET /cart``: lines with availability, and the total."""
        return self._call("sales", "GET", "/cart", token=token)

    def set_cart_item(self, token: str, product_id: int, quantity: int) -> JSON:
        """``PUT /cart/items/{product_id}``: set the line's quantity; returns the cart."""
        return self._call(
            "sales", "PUT", f"/cart/items/{product_id}", token=token, json={"quantity": quantity}
        )

    def remove_cart_item(self, token: str, product_id: int) -> None:
        """``DELETE /cart/items/{product_id}`` (204)."""
        self._call("sales", "DELETE", f"/cart/items/{product_id}", token=token, expect=(204,))

    def checkout(self, token: str, key: str) -> JSON:
        """``POST /cart/checkout``: the whole cart as one order (201 completed, 202 still
        pending: the cart's earlier checkout, which sales answers any checkout with)."""
        return self._call(
            "sales", "POST", "/cart/checkout", token=token, idempotency_key=key, expect=(201, 202)
        )

    def orders_of(
        self,
        token: str,
        username: str,
        status: str | None = None,
        page: int = 1,
        *,
        product: int | None = None,
        page_size: int = 20,
    ) -> Page:
        """``GET /customers/{username}/sales``: newest first (of one status, or holding one
        product)."""
        body = self._call(
            "sales",
            "GET",
            f"/customers/{username}/sales",
            token=token,
            params={"status": status, "product": product, "page": page, "page_size": page_size},
        )
        return Page.of(body)

    def orders(
        self, token: str, status: str | None = None, customer: str | None = None, page: int = 1
    ) -> Page:
        """``GET /sales`` (admin): every order, filtered."""
        params = {"status": status, "customer": customer, "page": page, "page_size": 25}
        return Page.of(self._call("sales", "GET", "/sales", token=token, params=params))

    def order(self, token: str, sale_id: str) -> JSON:
        """``GET /sales/{id}``: lines, history and the saga's steps."""
        return self._call("sales", "GET", f"/sales/{sale_id}", token=token)

    def cancel(self, token: str, sale_id: str, key: str) -> JSON:
        """``POST /sales/{id}/cancellation``: the refund saga."""
        return self._call(
            "sales", "POST", f"/sales/{sale_id}/cancellation", token=token, idempotency_key=key
        )

    def ship(self, token: str, sale_id: str, carrier: str, tracking_number: str) -> JSON:
        """``POST /sales/{id}/shipment`` (admin)."""
        body = _clean({"carrier": carrier, "tracking_number": tracking_number})
        return self._call("sales", "POST", f"/sales/{sale_id}/shipment", token=token, json=body)

    def deliver(self, token: str, sale_id: str) -> JSON:
        """``POST /sales/{id}/delivery`` (admin)."""
        return self._call("sales", "POST", f"/sales/{sale_id}/delivery", token=token, json={})

    # --- reviews ---------------------------------------------------------------------------

    def product_reviews(self, product_id: int, page: int = 1) -> JSON:
        """``GET /products/{id}/reviews``: approved reviews and the summary."""
        return self._call(
            "reviews",
            "GET",
            f"/products/{product_id}/reviews",
            params={"page": page, "page_size": 10},
        )

    def reviews_of(self, token: str | None, username: str, page: int = 1) -> Page:
        """``GET /customers/{username}/reviews`` (the author sees every status)."""
        body = self._call(
            "reviews",
            "GET",
            f"/customers/{username}/reviews",
            token=token,
            params={"page": page, "page_size": 100},
        )
        return Page.of(body)

    def write_review(self, token: str, product_id: int, rating: int, comment: str) -> JSON:
        """``POST /reviews`` (201 pending; 403 when the author did not buy it)."""
        body = {"product_id": product_id, "rating": rating, "comment": comment}
        return self._call("reviews", "POST", "/reviews", token=token, json=body, expect=(201,))

    def edit_review(self, token: str, review_id: int, rating: int, comment: str) -> JSON:
        """``PATCH /reviews/{id}`` (back to pending)."""
        body = {"rating": rating, "comment": comment}
        return self._call("reviews", "PATCH", f"/reviews/{review_id}", token=token, json=body)

    def delete_review(self, token: str, review_id: int) -> None:
        """``DELETE /reviews/{id}`` (204)."""
        self._call("reviews", "DELETE", f"/reviews/{review_id}", token=token, expect=(204,))

    def review_queue(self, token: str, status: str = "pending", page: int = 1) -> Page:
        """``GET /reviews?status=`` (admin): the moderation queue, oldest first."""
        body = self._call(
            "reviews",
            "GET",
            "/reviews",
            token=token,
            params={"status": status, "page": page, "page_size": 25},
        )
        return Page.of(body)

    def moderate(self, token: str, review_id: int, action: str, note: str) -> JSON:
        """``POST /reviews/{id}/moderation`` (admin): approve, flag or reject."""
        body = _clean({"action": action, "note": note})
        return self._call(
            "reviews", "POST", f"/reviews/{review_id}/moderation", token=token, json=body
        )

    # --- notifications ---------------------------------------------------------------------

    def notifications(
        self, token: str, page: int = 1, page_size: int = 20, *, unread: bool = False
    ) -> tuple[Page, int]:
        """``GET /notifications``: a page of the caller's own, newest first, and how many of
        all of them are unread."""
        params = {"page": page, "page_size": page_size, "unread": "true" if unread else None}
        body = self._call("notifications", "GET", "/notifications", token=token, params=params)
        return Page.of(body), int(body.get("unread") or 0)

    def unread_count(self, token: str) -> int:
        """How many of the caller's notifications are unread (``GET /notifications``, quick:
        one attempt within :data:`QUICK_S`, for the menu)."""
        params = {"page": 1, "page_size": 1, "unread": "true"}
        body = self._call(
            "notifications", "GET", "/notifications", token=token, params=params, quick=True
        )
        return int(body.get("unread") or 0)

    def read_notification(self, token: str, notification_id: int) -> JSON:
        """``POST /notifications/{id}/read``: mark one of the caller's own read."""
        return self._call(
            "notifications", "POST", f"/notifications/{notification_id}/read", token=token
        )

    def read_all_notifications(self, token: str) -> int:
        """``POST /notifications/read``: mark all the caller's own read; how many were."""
        body = self._call("notifications", "POST", "/notifications/read", token=token)
        return int(body.get("marked") or 0)

    # --- operations ------------------------------------------------------------------------

    def readiness(self, service: str) -> tuple[int, JSON]:
        """``GET /readyz`` of ``service``: its status and body (503 with the reason)."""
        response = self.transport.call(service, "GET", "/readyz")
        return response.status, response.body

    def metrics(self, service: str) -> str:
        """``GET /metrics`` of ``service`` (Prometheus text)."""
        status, text = self.transport.text(service, "/metrics")
        if status != 200:
            raise ApiProblem(service, status, {"detail": f"/metrics answered {status}."})
        return text

    def _optional(self, token: str, service: str, path: str) -> JSON | None:
        """``GET path`` of ``service``, or ``None`` where the service does not serve it."""
        response = self.transport.call(service, "GET", path, token=token)
        if response.status in (404, 405):
            return None
        if not response.ok:
            raise ApiProblem(service, response.status, response.body)
        return response.body

    def faults(self, token: str, service: str) -> JSON | None:
        """``GET /admin/faults`` of ``service``, or ``None`` where the service has none yet."""
        return self._optional(token, service, "/admin/faults")

    def set_faults(self, token: str, service: str, faults: list[JSON]) -> list[JSON]:
        """``PUT /admin/faults`` of ``service``: replace its fault set; returns the new set."""
        body = self._call(service, "PUT", "/admin/faults", token=token, json={"faults": faults})
        return list(body.get("faults") or [])

    def clear_faults(self, token: str, service: str) -> None:
        """``DELETE /admin/faults`` of ``service``: every fault off."""
        self._call(service, "DELETE", "/admin/faults", token=token, expect=(200, 204))

    def events(self, token: str, service: str) -> JSON | None:
        """``GET /admin/events`` of ``service``, or ``None`` where it has no events."""
        return self._optional(token, service, "/admin/events")

    def dead_letters(self, token: str, service: str, group: str, limit: int = 50) -> JSON:
        """``GET /admin/events/dead-letters?group=`` of ``service``: the oldest ``limit``."""
        params = {"group": group, "limit": limit}
        return self._call(service, "GET", "/admin/events/dead-letters", token=token, params=params)

    def dead_letter_action(
        self, token: str, service: str, group: str, dead_id: str, action: str
    ) -> JSON:
        """``POST /admin/events/dead-letters/{id}/replay`` (or ``/discard``) of ``service``."""
        return self._call(
            service,
            "POST",
            f"/admin/events/dead-letters/{dead_id}/{action}",
            token=token,
            params={"group": group},
        )

    # --- product images --------------------------------------------------------------------

    def product_image(
        self, product_id: int, if_none_match: str | None = None, token: str | None = None
    ) -> BinaryResponse:
        """``GET /products/{id}/image``: the bytes, or 304 for ``If-None-Match``, or a 404."""
        headers = {"If-None-Match": if_none_match} if if_none_match else None
        return self.transport.binary(
            "inventory", "GET", f"/products/{product_id}/image", headers=headers, token=token
        )

    def upload_image(self, token: str, product_id: int, content: bytes, content_type: str) -> JSON:
        """``PUT /products/{id}/image`` (admin): replace the product's image."""
        response = self.transport.binary(
            "inventory",
            "PUT",
            f"/products/{product_id}/image",
            body=content,
            headers={"Content-Type": content_type or "application/octet-stream"},
            token=token,
        )
        body = response.json()
        if response.status != 200:
            raise ApiProblem("inventory", response.status, body)
        return body


def _tokens(body: JSON) -> Tokens:
    return Tokens(
        access_token=str(body["access_token"]),
        refresh_token=str(body.get("refresh_token") or ""),
        expires_in=int(body.get("expires_in") or 900),
    )


@dataclass(frozen=True)
class BinaryResponse:
    """An answer whose body is bytes (an image), with its headers."""

    status: int
    headers: dict[str, str]
    content: bytes

    def header(self, name: str) -> str | None:
        """The header ``name`` (any case), or ``None``."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    def json(self) -> JSON:
        """The body read as a JSON object (``{}`` when it is not one)."""
        try:
            body = json_loads(self.content)
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}
