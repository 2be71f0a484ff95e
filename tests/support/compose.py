"""The Compose tests' helpers: the variable interpolation Compose does on its file."""

from __future__ import annotations

import re


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose variable interpolation for the forms the file uses: ``${X:-d}``, ``${X}``, ``$$``."""

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3)
        found = env.get(name)
        return found if found not in (None, "") else (default or "")

    value = re.sub(r"\$\{(\w+)(:-([^}]*))?\}", repl, value.replace("$$", "\x00"))
    return value.replace("\x00", "$")
