"""Types the core and its adapters share, so that neither imports the other for them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from browser_stack.ports import PortHolder

# Run before a program is spawned (xlock's stale-lock check for Xvnc).
Hook = Callable[[], Awaitable[None]]
# Who listens on a port, if anything does.
PortLookup = Callable[[int], Awaitable[PortHolder | None]]
# Seconds a process has waited for a CPU since it started (None: unknown).
CpuWait = Callable[[int], float | None]
