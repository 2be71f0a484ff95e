"""Settings from the environment: each variable read once, the field's default otherwise."""

from __future__ import annotations

import pytest

from shopkit.config import Settings


def test_defaults_then_environment_then_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_RETRIES", "LOG_LEVEL", "CUSTOMERS_URL", "SALES_RECOVERY_AFTER"):
        monkeypatch.delenv(name, raising=False)
    default = Settings.from_env("sales")
    assert (default.http_retries, default.log_level) == (2, "INFO")
    assert default.customers_url == "http://127.0.0.1:5000"
    monkeypatch.setenv("HTTP_RETRIES", "5")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("CUSTOMERS_URL", "http://customers:5000/")
    monkeypatch.setenv("SALES_RECOVERY_AFTER", "")  # empty counts as unset
    read = Settings.from_env("sales", http_retries=7)
    assert (read.http_retries, read.log_level) == (7, "DEBUG")
    assert read.customers_url == "http://customers:5000"
    assert read.recovery_after_s == default.recovery_after_s


def test_bad_values_and_unknown_overrides_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "many")
    with pytest.raises(ValueError, match="DB_POOL_SIZE must be an integer, got 'many'"):
        Settings.from_env("sales")
    monkeypatch.delenv("DB_POOL_SIZE")
    monkeypatch.setenv("HTTP_READ_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="HTTP_READ_TIMEOUT must be a number"):
        Settings.from_env("sales")
    monkeypatch.delenv("HTTP_READ_TIMEOUT")
    with pytest.raises(TypeError, match="unknown settings"):
        Settings.from_env("sales", no_such_setting=1)
