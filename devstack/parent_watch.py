"""Notice that ``make``, which started the launcher, is being stopped (Linux ``/proc``)."""

from __future__ import annotations

import os
import signal

#: Signals that mean "stop" when the process that started the launcher is handling one.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _blocked_signals(pid: int) -> int | None:
    """The signal mask of process ``pid`` (Linux ``/proc``), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("SigBlk:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        return None
    return None


def _process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as comm:
            return comm.read().strip()
    except OSError:
        return ""


class ParentWatch:
    """Notices when ``make``, which started the launcher, is being stopped by a signal.

    SIGINT sent to ``make`` alone (not to its process group, as a script or a
    supervisor may do) is not passed on: GNU make blocks it while it waits for
    its children to end, so ``make run`` would wait for ever with every service
    still up. The launcher watches its parent instead: once ``make`` blocks a
    stop signal it did not block at the start, or ``make`` is gone (the
    launcher was orphaned), the launcher stops everything, and make then
    exits. Any other parent (a shell, a test) is left alone.
    """

    def __init__(self) -> None:
        self.parent = os.getppid()
        name = _process_name(self.parent)
        self.watching = name in ("make", "gmake")
        self.blocked_at_start = _blocked_signals(self.parent) if self.watching else None

    def stopping(self) -> bool:
        """Whether make is handling a stop signal or has gone away."""
        if not self.watching:
            return False
        if os.getppid() != self.parent:
            return True
        blocked = _blocked_signals(self.parent)
        if blocked is None or self.blocked_at_start is None:
            return False
        newly = blocked & ~self.blocked_at_start
        return any(newly & (1 << (sig - 1)) for sig in _STOP_SIGNALS)
