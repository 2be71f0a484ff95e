"""The client's address behind the gateway: ``X-Forwarded-For`` believed only from trusted proxies.

The gateway replaces any ``X-Forwarded-For`` a client sends with the address
it sees (``deploy/gateway/http.conf``). A service believes that header only
when the connection itself comes from a trusted proxy (``TRUSTED_PROXIES``:
comma-separated addresses or networks, e.g. the cluster's pod network); from
anyone else, the header is ignored and the peer address is the client. Per
client limits (the login throttling) key on :func:`client_address`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from flask import current_app, request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(raw: str) -> tuple[Network, ...]:
    """Parse ``TRUSTED_PROXIES`` (``"10.0.0.0/8, 127.0.0.1"``); a bad entry is a clear error."""
    networks = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ValueError(f"TRUSTED_PROXIES: {entry!r} is not an address or network") from exc
    return tuple(networks)


def is_trusted(address: str, networks: Sequence[Network]) -> bool:
    """True when ``address`` is in one of ``networks`` (a malformed address never is)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(
    remote_addr: str | None, forwarded_for: str | None, networks: Sequence[Network]
) -> str:
    """The peer, unless it is a trusted proxy: then the nearest forwarded hop that is not one.

    Hops are read right to left (the nearest first), so addresses a client
    prepends itself are never reached while a trusted proxy's own entry is there.
    """
    peer = remote_addr or ""
    if not forwarded_for or not is_trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, networks):
            return hop
    return hops[0] if hops else peer


def current_client_address() -> str:
    """:func:`client_address` of the request being served, with the service's settings."""
    settings = current_app.config["SHOP_SETTINGS"]
    return client_address(
        request.remote_addr,
        request.headers.get("X-Forwarded-For"),
        trusted_networks(settings.trusted_proxies),
    )
