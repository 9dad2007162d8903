"""Types the core and its adapters share, so that neither imports the other for them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from browser_stack.ports import PortHolder

# Run before a program is spawned (xlock's stale-lock check for Xvnc).
Hook = Callable[[], Awaitable[None]]
# Who listens on a port, if anything does.
PortLookup = Callable[[int], Awaitable[PortHolder | None]]
# Seconds a process has waited for a CPU since it started (None: unknown).
CpuWait = Callable[[int], float | None]


class Control(Protocol):
    """Whether this sidecar may act on the stack (claim.py)."""

    def held(self) -> bool:
        """This sidecar controls the stack (it takes a free claim)."""

    async def check(self) -> None:
        """Raise NotInControl, naming the sidecar that controls it, unless held."""
