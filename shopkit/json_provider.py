"""One JSON encoder for every response of a service.

Every body a service writes (views, problem documents, replayed idempotent
answers, ``/openapi.json``) goes through the app's JSON provider, and this
one always writes the same way: compact separators and keys in sorted
order. Sorted, because a replayed idempotent answer is read back from a
``jsonb`` column, which does not keep the order of the first answer's keys:
with sorted keys the replay is byte for byte the first answer.
"""

from __future__ import annotations

import json
from typing import Any

from flask.json.provider import DefaultJSONProvider

SEPARATORS = (",", ":")


def encode(obj: Any) -> str:
    """Plain JSON written as every answer is, for the few written outside Flask."""
    return json.dumps(obj, separators=SEPARATORS, sort_keys=True)


class ShopJSONProvider(DefaultJSONProvider):
    """Compact, key-sorted JSON whatever the caller asks for (``indent`` included)."""

    compact = True
    sort_keys = True

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Serialise ``obj`` compactly with sorted keys."""
        kwargs.pop("indent", None)
        kwargs.update(separators=SEPARATORS, sort_keys=True)
        return super().dumps(obj, **kwargs)
