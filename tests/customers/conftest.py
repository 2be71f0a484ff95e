"""Fixtures of the customers tests: the bearer headers of an admin and of the sales service."""

from __future__ import annotations

import pytest

from tests.support.identity import Identity, bearer


@pytest.fixture
def sales(identity: Identity) -> dict[str, str]:
    """The sales service's bearer header (a service token)."""
    return bearer(identity.service_token("sales"))


@pytest.fixture
def admin(identity: Identity) -> dict[str, str]:
    """The bootstrap admin's bearer header."""
    return bearer(identity.admin_token())
