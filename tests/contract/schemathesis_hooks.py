"""Schemathesis hooks for the contract test (loaded by ``st run`` through ``SCHEMATHESIS_HOOKS``).

* An auth provider that sends each generated request as one of the real
  identities the test arranged (``SHOP_FUZZ_IDENTITIES``: a JSON object of
  name to bearer token, ``""`` for anonymous): the identity is picked from a
  hash of the request, so the same seed sends the same requests as the same
  callers. The admin never sends ``PUT /admin/faults``: a fault it switched
  on would inject the very 5xx answers the test looks for.
* A check that every problem document's ``code`` is in the registry
  (:data:`shopkit.problems.PROBLEMS`) and carries only the extension members
  the registry declares for it.
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any

import schemathesis

from shopkit.problems import PROBLEMS

#: Members every problem document may carry (RFC 9457 and the Shop's own).
STANDARD_MEMBERS = {"type", "title", "status", "detail", "code", "instance", "request_id"}
#: Operations an identity must not send.
SKIPPED = {("admin", "PUT /admin/faults")}


def _identities() -> dict[str, str]:
    return json.loads(os.environ["SHOP_FUZZ_IDENTITIES"])  # type: ignore[no-any-return]


@schemathesis.auth(refresh_interval=None, retry_on=[])
class Identities:
    """Sends each request as one of the arranged identities."""

    def get(self, case: Any, context: Any) -> dict[str, str]:
        """Every identity's token (arranged by the test before the run)."""
        return _identities()

    def set(self, case: Any, data: dict[str, str], context: Any) -> None:
        """Pick the identity of this request from a hash of the request."""
        label = case.operation.label
        names = sorted(name for name in data if (name, label) not in SKIPPED)
        fingerprint = repr((label, case.path_parameters, case.query, case.body))
        name = names[zlib.crc32(fingerprint.encode()) % len(names)]
        if data[name]:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data[name]}"}


@schemathesis.check
def registered_problem(ctx: Any, response: Any, case: Any) -> bool | None:
    """A problem document names a registered code and only its declared members."""
    if not response.headers.get("content-type", [""])[0].startswith("application/problem+json"):
        return None
    body = json.loads(response.content)
    spec = PROBLEMS.get(body.get("code"))
    if spec is None:
        raise AssertionError(f"unregistered problem code {body.get('code')!r}")
    undeclared = set(body) - STANDARD_MEMBERS - set(spec.members)
    if undeclared:
        raise AssertionError(f"{spec.code} carries undeclared members {sorted(undeclared)}")
    if body.get("status") not in spec.statuses and spec.code not in {
        "injected_fault",
        "http_error",
    }:
        raise AssertionError(f"{spec.code} answered with status {body.get('status')}")
    return True
