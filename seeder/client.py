"""A small typed HTTP client for the seeder, with human error messages.

Every call has a connect and read timeout. A connection that cannot be made
(or an answer that does not come in time) raises :class:`ServiceUnreachable`,
naming the service and its URL; an unexpected status raises :class:`ApiError`
with the problem's ``code`` and ``detail``. Each thread gets its own
``requests.Session`` (connection pools are per thread), so one
:class:`ServiceApi` can be shared by a pool of simulated shoppers.

With tracing on (the standard ``OTEL_*`` variables, see :mod:`shopkit.telemetry`)
every call is a client span carrying ``traceparent``, and each shopper action
decorated with :func:`shopper_action` is a trace of its own.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import requests
from opentelemetry.context import Context
from requests.adapters import HTTPAdapter

from seeder import EXIT_FAILURE, EXIT_UNREACHABLE
from seeder.config import Config
from shopkit.telemetry import init_tracing, tracer

P = ParamSpec("P")
R = TypeVar("R")

#: Items per page when reading a collection: the services' largest page size.
PAGE_SIZE = 100


class SeederError(Exception):
    """A failure the command line reports as one clear message and an exit code."""

    exit_code = EXIT_FAILURE


class ServiceUnreachable(SeederError):
    """A service did not accept the connection or did not answer in time."""

    exit_code = EXIT_UNREACHABLE

    def __init__(self, service: str, url: str, reason: str) -> None:
        self.service = service
        self.url = url
        self.reason = reason
        super().__init__(f"The {service} service at {url} is unreachable: {reason}.")


class ServiceNotReady(ServiceUnreachable):
    """A service answered ``/readyz`` with something other than 200."""

    def __init__(self, service: str, url: str, reason: str) -> None:
        super().__init__(service, url, reason)
        self.args = (f"The {service} service at {url} is not ready: {reason}.",)


class LoginFailed(SeederError):
    """The customers service refused a username and password."""


class ApiError(SeederError):
    """A service answered with a status the seeder did not expect."""

    def __init__(self, service: str, method: str, path: str, status: int, body: Any) -> None:
        self.service = service
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        detail = ""
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("title") or "")
            if body.get("errors"):
                detail += f" {body['errors']}"
        elif body:
            detail = str(body)[:300]
        code = f" {self.code}" if self.code else ""
        super().__init__(
            f"{service}: {method} {path} answered {status}{code}: {detail}".rstrip(": ")
        )

    @property
    def code(self) -> str | None:
        """The problem's machine-readable ``code``, if any."""
        return self.body.get("code") if isinstance(self.body, dict) else None


@dataclass(frozen=True)
class Reply:
    """One answer: status, decoded JSON body (``None`` if none), headers and time taken."""

    status: int
    body: Any
    headers: Mapping[str, str]
    elapsed_s: float

    @property
    def code(self) -> str | None:
        """The problem ``code`` of an error answer, if any."""
        return self.body.get("code") if isinstance(self.body, dict) else None

    @property
    def ok(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status < 300


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host"):
        if marker in text:
            return marker.lower()
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__


class ServiceApi:
    """Calls to one service: ``name`` (for messages) at ``base_url``."""

    def __init__(self, name: str, base_url: str, config: Config, pool_size: int = 16) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = (config.connect_timeout_s, config.read_timeout_s)
        self.pool_size = pool_size
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # local services: no proxy look-ups per call
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self.pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = "shop-seeder"
            self._local.session = session
        return session

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        expect: Iterable[int] | None = (200,),
        timeout: tuple[float, float] | None = None,
    ) -> Reply:
        """Send one request; raise :class:`ApiError` unless the status is in ``expect``.

        ``expect=None`` accepts any status. ``data`` is a body of bytes (an image)
        instead of ``json``. Connection failures and timeouts raise
        :class:`ServiceUnreachable`.
        """
        sent = {"X-Request-ID": f"seeder-{uuid.uuid4().hex[:16]}", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        started = time.perf_counter()
        try:
            response = self._session().request(
                method,
                self.base_url + path,
                json=json,
                data=data,
                params=params,
                headers=sent,
                timeout=timeout or self.timeout,
            )
        except requests.RequestException as exc:
            raise ServiceUnreachable(self.name, self.base_url, _describe(exc)) from None
        elapsed = time.perf_counter() - started
        body: Any = None
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = response.text
        reply = Reply(response.status_code, body, response.headers, elapsed)
        if expect is not None and reply.status not in set(expect):
            raise ApiError(self.name, method, path, reply.status, body)
        return reply

    def get(self, path: str, **kwargs: Any) -> Reply:
        """``GET path``."""
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Reply:
        """``POST path``."""
        return self.call("POST", path, **kwargs)

    def pages(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paginated collection, page after page."""
        return paged(
            lambda query: self.get(path, params=query, token=token).body, params, page_size
        )

    def ready(self) -> None:
        """Raise :class:`ServiceUnreachable` unless ``/readyz`` answers 200."""
        reply = self.call("GET", "/readyz", expect=None, timeout=(2.0, 5.0))
        if reply.status != 200:
            reason = f"/readyz answered {reply.status}"
            if isinstance(reply.body, dict) and reply.body.get("detail"):
                reason += f" ({reply.body['detail']})"
            raise ServiceNotReady(self.name, self.base_url, reason)


def paged(
    fetch: Callable[[dict[str, Any]], Any],
    params: Mapping[str, Any] | None = None,
    page_size: int = PAGE_SIZE,
) -> Iterator[dict[str, Any]]:
    """Every item of a collection paged by number (``items``, ``total``), page after page, as
    long as the caller reads; ``fetch(query)`` returns one page's body."""
    page = 1
    while True:
        body = fetch({**(params or {}), "page": page, "page_size": page_size})
        items = body.get("items", [])
        yield from items
        if not items or page * page_size >= int(body.get("total", 0)):
            return
        page += 1


def keyset(
    fetch: Callable[[dict[str, Any]], Any], params: Mapping[str, Any], limit: int
) -> Iterator[dict[str, Any]]:
    """Every item of a collection paged by key (``items``, then ``after=<next_after>`` until
    it is empty), as the services' ``/admin/events`` lists are; ``fetch(query)`` returns
    one page's body."""
    query = {**params, "limit": limit}
    while True:
        body = fetch(query)
        yield from body["items"]
        if not body.get("next_after"):
            return
        query["after"] = body["next_after"]


def shopper_action(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the decorated function as a trace of its own: a root span ``name``, its calls beneath."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def traced(*args: P.args, **kwargs: P.kwargs) -> R:
            with tracer("shop.seeder").start_as_current_span(name, context=Context()):
                return function(*args, **kwargs)

        return traced

    return decorate


class Services:
    """The services of one configuration."""

    def __init__(self, config: Config, pool_size: int = 16) -> None:
        init_tracing("seeder", clients=("requests",))  # once per process; off unless OTEL_* say
        self.config = config
        self.customers = ServiceApi("customers", config.customers_url, config, pool_size)
        self.inventory = ServiceApi("inventory", config.inventory_url, config, pool_size)
        self.sales = ServiceApi("sales", config.sales_url, config, pool_size)
        self.reviews = ServiceApi("reviews", config.reviews_url, config, pool_size)
        self.notifications = ServiceApi(
            "notifications", config.notifications_url, config, pool_size
        )

    def api(self, service: str) -> ServiceApi:
        """The client of ``service`` by name."""
        return getattr(self, service)  # type: ignore[no-any-return]

    def check_ready(self, services: Iterable[str], wait_s: float = 0.0) -> None:
        """Make sure ``services`` answer ``/readyz``; poll up to ``wait_s`` seconds first."""
        deadline = time.monotonic() + wait_s
        for service in services:
            while True:
                try:
                    self.api(service).ready()
                    break
                except ServiceUnreachable:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.5)


class Login:
    """An access token for one account, renewed by logging in again before it expires."""

    def __init__(self, customers: ServiceApi, username: str, password: str) -> None:
        self.customers = customers
        self.username = username
        self.password = password
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        """A valid access token (logs in on first use and when 80% of its life has passed)."""
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                reply = self.customers.post(
                    "/auth/login",
                    json={"username": self.username, "password": self.password},
                    expect=None,
                )
                if reply.status == 401:
                    raise LoginFailed(
                        f"Logging in as {self.username!r} at {self.customers.base_url} failed: "
                        "wrong username or password."
                    )
                if reply.status != 200:
                    raise ApiError("customers", "POST", "/auth/login", reply.status, reply.body)
                self._token = str(reply.body["access_token"])
                lifetime = float(reply.body.get("expires_in") or 900)
                self._renew_at = time.monotonic() + lifetime * 0.8
            return self._token

    def forget(self) -> None:
        """Drop the token (after a 401), so the next :meth:`token` logs in again."""
        with self._lock:
            self._token = None

    def get(self, api: ServiceApi, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """``GET path`` of ``api`` as this account: the body (:class:`ApiError` unless 200)."""
        reply = self.call(api, "GET", path, params=params)
        if reply.status != 200:
            raise ApiError(api.name, "GET", path, reply.status, reply.body)
        return reply.body

    def keyset(
        self, api: ServiceApi, path: str, params: Mapping[str, Any], limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Every item of ``api``'s key-paged ``path`` (:func:`keyset`), as this account."""
        return list(keyset(lambda query: self.get(api, path, query), params, limit))

    def call(self, api: ServiceApi, method: str, path: str, **kwargs: Any) -> Reply:
        """Call ``api`` as this account; after a 401, log in again and retry once.

        Returns the final reply whatever its status (the caller judges it), so
        a second 401 reaches the caller instead of being lost.
        """
        reply = api.call(method, path, token=self.token(), expect=None, **kwargs)
        if reply.status == 401:
            self.forget()
            reply = api.call(method, path, token=self.token(), expect=None, **kwargs)
        return reply


def admin_login(services: Services) -> Login:
    """The admin's login (``ADMIN_USERNAME``/``ADMIN_PASSWORD``), checked once now."""
    config = services.config
    login = Login(services.customers, config.admin_username, config.admin_password)
    try:
        login.token()
    except LoginFailed:
        raise SeederError(
            f"The admin login failed at {config.customers_url}: check ADMIN_USERNAME and "
            "ADMIN_PASSWORD (or --admin-username / --admin-password)."
        ) from None
    return login
