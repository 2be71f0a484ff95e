"""Password hashing with Argon2id (a deliberately slow, memory-hard hash).

The default cost is one of OWASP's equivalent Argon2id settings: 12 MiB and 3
passes (OWASP lists it beside 19 MiB and 2 passes as the same strength). The
smaller block keeps a customers worker's peak memory low while it hashes
(figures in bench/README.md); hashes made with other costs still verify and are
re-hashed at the next successful login.
Accounts created in bulk by ``POST /customers/batch`` are hashed with a
cheaper profile so seeding thousands of demo accounts stays fast; such a hash
is upgraded to the full cost on the account's first successful login.

Every verification costs one full-cost verification, whatever is stored: an
unknown username is checked against a dummy full-cost hash, and a cheap bulk
hash is followed by a dummy full-cost verification. So a wrong password takes
the same time for an unknown user, a normal account and a bulk-created one
(``bench/security_bench.py`` measures the medians), and the timing tells an
attacker nothing about which usernames exist or how they were created.
"""

from __future__ import annotations

import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shopkit.config import Settings

BULK_TIME_COST = 1
BULK_MEMORY_KIB = 256
#: Full-cost hashes or verifications (12 MiB of memory each) running at once in one
#: process. Argon2 releases the GIL, so the cores stay busy when each worker process
#: hashes one at a time, while a burst of logins on a worker's threads can no longer
#: add a block per thread to its memory (bench/README.md).
#: Cheap bulk-import hashes (1 MiB) are not limited.
FULL_COST_SLOTS = 1


class Passwords:
    """Hashes and verifies passwords for one service instance."""

    def __init__(self, settings: Settings) -> None:
        self.hasher = PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
        )
        self.bulk_hasher = PasswordHasher(
            time_cost=BULK_TIME_COST, memory_cost=BULK_MEMORY_KIB, parallelism=1
        )
        self._full_cost = threading.BoundedSemaphore(FULL_COST_SLOTS)
        # Verifying against this when the user does not exist keeps login time
        # the same for unknown and known usernames.
        self._dummy_hash = self.hash("not-a-real-password")

    def hash(self, password: str) -> str:
        """Hash ``password`` with the full cost."""
        with self._full_cost:
            return self.hasher.hash(password)

    def hash_bulk(self, password: str) -> str:
        """Hash ``password`` with the cheaper bulk-import cost (upgraded at first login)."""
        return self.bulk_hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; always spends the time of one full-cost verification."""
        stored = password_hash or self._dummy_hash
        with self._full_cost:
            matches = self._verify(self.hasher, stored, password)
            if self.needs_rehash(stored):  # a cheap (bulk) hash: spend the rest of the cost
                self._verify(self.hasher, self._dummy_hash, password)
        return matches and password_hash is not None

    @staticmethod
    def _verify(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
        try:
            return hasher.verify(password_hash, password)  # the stored hash's own cost applies
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when ``password_hash`` was made with other (e.g. bulk) parameters, or is no hash."""
        try:
            return self.hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True
