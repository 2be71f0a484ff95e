"""One audited invariant: what it looked at and what broke it (:mod:`seeder.audit`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Check:
    """One invariant: how many things it looked at and what broke it."""

    name: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing violates the invariant."""
        return not self.violations
