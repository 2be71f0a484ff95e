"""X-Forwarded-For is believed only from trusted proxies (the gateway), nearest hop first."""

from __future__ import annotations

import pytest
from flask import Flask

from shopkit.config import Settings
from shopkit.proxy import client_address, current_client_address, trusted_networks

GATEWAY = trusted_networks("10.0.0.0/8, 127.0.0.1")


def test_the_header_counts_only_from_a_trusted_peer() -> None:
    assert client_address("203.0.113.7", "198.51.100.1", GATEWAY) == "203.0.113.7"
    assert client_address("10.1.2.3", "198.51.100.1", GATEWAY) == "198.51.100.1"
    assert client_address("127.0.0.1", None, GATEWAY) == "127.0.0.1"
    assert client_address("10.1.2.3", "198.51.100.1", ()) == "10.1.2.3"  # default: nobody


def test_a_client_cannot_push_a_spoofed_hop_past_the_gateway() -> None:
    # The client sent "1.2.3.4"; a proxy that appends (not ours, which replaces) added the real one.
    assert client_address("10.1.2.3", "1.2.3.4, 198.51.100.1", GATEWAY) == "198.51.100.1"
    # Every hop trusted: the farthest one.
    assert client_address("10.1.2.3", "10.9.9.9, 127.0.0.1", GATEWAY) == "10.9.9.9"
    assert client_address("10.1.2.3", "garbage", GATEWAY) == "garbage"  # never trusted


def test_bad_trusted_proxies_are_refused() -> None:
    assert trusted_networks(" , ") == ()
    with pytest.raises(ValueError, match="TRUSTED_PROXIES: 'gateway' is not"):
        trusted_networks("10.0.0.0/8,gateway")


def test_current_request_uses_the_service_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "127.0.0.0/8")
    app = Flask(__name__)
    app.config["SHOP_SETTINGS"] = Settings.from_env("customers", database_url="unused")
    behind = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "192.0.2.8"}
    with app.test_request_context(environ_base=behind):
        assert current_client_address() == "192.0.2.8"
    direct = {"REMOTE_ADDR": "192.0.2.99", "HTTP_X_FORWARDED_FOR": "192.0.2.8"}
    with app.test_request_context(environ_base=direct):
        assert current_client_address() == "192.0.2.99"
