"""Types the core and its adapters share, so that neither imports the other for them.

What a probe answers, what supervisord says of a process and the protocol the
controller drives it through, who holds a port, what watches a program for the
model, and the callables the core is handed (hooks, lookups, the claim).
Imports nothing of the project but its data (states.py, stack.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from browser_stack.stack import Program
from browser_stack.states import ProcessState


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str = ""
    data: Mapping[str, str] = field(default_factory=dict)


Probe = Callable[[], Awaitable[ProbeResult]]


@dataclass(frozen=True)
class ProcessInfo:
    """One program as supervisord describes it (getProcessInfo's fields)."""

    name: str
    state: ProcessState
    pid: int = 0
    start: int = 0
    now: int = 0
    spawnerr: str = ""
    exitstatus: int = 0
    description: str = ""

    @property
    def uptime_s(self) -> int:
        if self.state not in (ProcessState.RUNNING, ProcessState.STARTING) or not self.start:
            return 0
        return max(0, self.now - self.start)


class Supervisor(Protocol):
    """What the controller needs from supervisord; fakes implement the same."""

    async def process_info(self) -> dict[Program, ProcessInfo]:
        """The five programs' info; a program supervisord does not know is absent."""

    async def start(self, program: Program) -> bool:
        """Spawn without waiting; False if it was already started."""

    async def stop(self, program: Program) -> bool:
        """Stop and wait for it; False if it was not running."""

    async def resume(self, program: Program) -> None:
        """SIGCONT: a stopped (SIGSTOP) process cannot act on the TERM of a stop."""

    async def stderr_tail(self, program: Program) -> str:
        """Its last stderr; "" when supervisord cannot say (the tail is a detail
        of an error, never an error itself)."""

    async def exit_cause(self, program: Program) -> str:
        """How its last process ended, as supervisord logged it ("terminated by
        SIGKILL; not expected"), or "" when that cannot be read."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class PortHolder:
    """Who listens on a port: the answer to "why did Chromium not come up on 9222?"."""

    port: int
    pid: int | None
    name: str

    def describe(self) -> str:
        if self.pid is None:
            return f"port {self.port} is already in use (holder not visible)"
        return f"port {self.port} is already held by pid {self.pid} ({self.name})"


# Called by a watcher, once, when what it follows is gone: (why, the process exited).
Gone = Callable[[str, bool], None]


class Watch(Protocol):
    """What keeps the readiness model told of exits (events.EventWatch)."""

    def follow(self, program: Program, pid: int, result: ProbeResult, gone: Gone) -> None:
        """Watch what can show `program` (its process `pid`, and what its probe
        found) going away; call `gone` once when it does. Following the same
        process again changes nothing."""

    def forget(self, program: Program) -> None:
        """Stop watching `program` (it is being stopped on purpose)."""


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
