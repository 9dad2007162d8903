"""Idle auto-stop: stop the stack when nobody has used it for a while.

Activity is an ensure call, a lease, or an established connection to one of
the stack's public ports from anything but the stack itself and this sidecar
(mcp-server-browser keeps two CDP connections to Chromium for good once used,
websocat holds one to Xvnc per viewer, and the sidecar's own probes come and
go: none of those is a user). Never stop while a user connection is open;
keep a minimum time up after a start so the stack does not flap.

`IdlePolicy.decide` is pure (the facts in, among them when the stack was last
used, a decision out, with the new last use); `IdleMonitor` gathers the facts,
keeps the last use and acts on the decision.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from browser_stack.errors import SupervisorUnavailable
from browser_stack.observer import NullObserver, Observer
from browser_stack.stack import PORT_GATES, PROGRAMS, Gate, Program, gate_alone
from browser_stack.states import ALIVE_STATES

if TYPE_CHECKING:
    from browser_stack.core_types import ProcessInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdleFacts:
    """What the monitor saw at one moment."""

    now: float
    stack_up: bool
    # Seconds since the most recent start among the running programs.
    youngest_uptime_s: float
    # Open user connections per public port name ("cdp", "mcp", "vnc", "vnc_ws").
    connections: Mapping[str, int]
    last_ensure: float
    lease_until: float
    # The last moment the monitor knew the stack in use (connection, ensure, lease).
    last_activity: float


@dataclass(frozen=True)
class Decision:
    stop: bool
    idle_for_s: float
    stops_in_s: float | None
    # The last use as of these facts: the next IdleFacts.last_activity.
    last_activity: float
    held_by: list[str] = field(default_factory=list)
    reason: str = ""


@dataclass(frozen=True)
class IdlePolicy:
    timeout_s: float
    min_uptime_s: float
    # Where the timeout came from (config.py): the variable, or a mode's default.
    source: str = ""

    @property
    def enabled(self) -> bool:
        return self.timeout_s > 0

    def decide(self, facts: IdleFacts) -> Decision:
        held_by = [
            f"{name}: {count} connection{'s' if count != 1 else ''}"
            for name, count in sorted(facts.connections.items())
            if count
        ]
        last = max(facts.last_activity, facts.last_ensure, min(facts.lease_until, facts.now))
        if held_by:
            # A connection open is activity for as long as it stays open.
            last = facts.now
        if facts.lease_until > facts.now:
            held_by.append(f"lease: {facts.lease_until - facts.now:.0f} s left")
        idle_for = max(0.0, facts.now - last)
        if not self.enabled or not facts.stack_up or held_by:
            return Decision(False, idle_for, None, last, held_by)
        until_timeout = self.timeout_s - idle_for
        until_min_uptime = self.min_uptime_s - facts.youngest_uptime_s
        stops_in = max(0.0, until_timeout, until_min_uptime)
        if stops_in > 0:
            if until_min_uptime > 0 and until_min_uptime >= until_timeout:
                held_by.append(f"minimum uptime: {until_min_uptime:.0f} s left")
            return Decision(False, idle_for, stops_in, last, held_by)
        return Decision(True, idle_for, 0.0, last, [], reason=f"no activity for {idle_for:.0f} s")


def user_connections(
    ports: Mapping[str, int], own_pids: set[int], connections: Iterable[Any] | None = None
) -> dict[str, int]:
    """Established connections to `ports` whose client is not one of `own_pids`.

    Both ends of a loopback connection appear in the kernel's table: the
    client's end tells who connects. A client on another host has no local
    end and always counts.
    """
    # psutil (here and below) only when the monitor runs: idle stop is off by default.
    import psutil

    table = list(connections) if connections is not None else psutil.net_connections("tcp")
    # (local ip, local port, remote ip, remote port, pid) of each established one.
    established: list[tuple[str, int, str, int, int | None]] = [
        (c.laddr[0], c.laddr[1], c.raddr[0], c.raddr[1], c.pid)
        for c in table
        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.raddr
    ]
    owner = {(lip, lport): pid for lip, lport, _rip, _rport, pid in established}
    by_port = {port: name for name, port in ports.items()}
    counts: Counter[str] = Counter()
    for _lip, lport, rip, rport, _pid in established:
        name = by_port.get(lport)
        if name is None:
            continue  # not the server end of one of our ports
        client = owner.get((rip, rport), -1)
        if client in own_pids:
            continue
        counts[name] += 1
    return {name: counts.get(name, 0) for name in ports}


def stack_pids(main_pids: Iterable[int]) -> set[int]:
    from browser_stack.memory import process_tree

    pids = {os.getpid()}
    for pid in main_pids:
        pids.update(p.pid for p in process_tree(pid))
    return pids


def check_interval(timeout_s: float) -> float:
    """How often the monitor looks: a tenth of the timeout, between 0.2 and 5 s."""
    return min(5.0, max(0.2, timeout_s / 10))


ConnectionCounter = Callable[[Mapping[str, int], list[int]], Awaitable[dict[str, int]]]


async def count_user_connections(ports: Mapping[str, int], main_pids: list[int]) -> dict[str, int]:
    """User connections to `ports`, the stack's own processes (the trees of
    `main_pids`) and this sidecar left out."""
    return await asyncio.to_thread(lambda: user_connections(ports, stack_pids(main_pids)))


@dataclass(frozen=True)
class Part:
    """What stops together when its activity ends: the whole stack, or (with
    BROWSER_STACK_START=needed) the programs one gate alone needs."""

    name: str
    programs: frozenset[Program]
    # The ports whose connections are its activity, and the gates whose ensure calls are.
    ports: frozenset[str]
    gates: frozenset[Gate]


WHOLE = Part("stack", frozenset(PROGRAMS), frozenset(PORT_GATES), frozenset(Gate))


def gate_parts() -> list[Part]:
    """MCP: mcp-server-browser; VNC: websocat and openbox. What CDP needs
    (Xvnc, Chromium) stops only with the whole stack."""
    parts = []
    for gate in (Gate.MCP, Gate.VNC):
        ports = frozenset(name for name, g in PORT_GATES.items() if g == gate)
        parts.append(Part(str(gate), gate_alone(gate), ports, frozenset({gate})))
    return parts


class ProcessReads(Protocol):
    async def refresh(self) -> Mapping[Program, ProcessInfo]:
        """supervisord's state of the five, read after this call."""


class Stoppable(Protocol):
    """What the idle monitor reads and does to the stack (the controller)."""

    @property
    def reader(self) -> ProcessReads: ...

    # When an ensure for each gate last came or went.
    @property
    def last_use(self) -> Mapping[Gate, float]: ...

    @property
    def starting(self) -> bool: ...

    def in_control(self) -> bool: ...

    async def stop(self, reason: str, programs: frozenset[Program]) -> object: ...


class IdleMonitor:
    """Checks the facts every `interval_s` and stops what is idle: the whole
    stack, and with `per_gate`, the programs of a gate nobody uses while
    others are in use."""

    def __init__(
        self,
        controller: Stoppable,
        policy: IdlePolicy,
        ports: Mapping[str, int],
        *,
        per_gate: bool = False,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float | None = None,
        connections: ConnectionCounter = count_user_connections,
        extra_connections: Callable[[], Mapping[str, int]] | None = None,
        observer: Observer | None = None,
    ) -> None:
        self._controller = controller
        self.policy = policy
        self._ports = dict(ports)
        self._parts = [WHOLE, *(gate_parts() if per_gate else [])]
        self._clock = clock
        self._interval_s = interval_s or check_interval(policy.timeout_s)
        self._connections = connections
        self._extra_connections = extra_connections
        self._observer: Observer = observer or NullObserver()
        self.lease_until = 0.0
        # A restarted sidecar starts the count anew.
        self._last_activity = dict.fromkeys((p.name for p in self._parts), clock())
        self.decisions: dict[str, Decision] = {}
        self.stops: list[str] = []

    def lease(self, ttl_s: float) -> float:
        """Hold the stack up for `ttl_s` from now; returns seconds held."""
        self.lease_until = max(self.lease_until, self._clock() + ttl_s)
        return self.lease_until - self._clock()

    async def facts(self) -> dict[str, IdleFacts]:
        """Each part's facts, gathered in one look."""
        infos = await self._controller.reader.refresh()
        alive = {p: i for p, i in infos.items() if i.state in ALIVE_STATES}
        connections: dict[str, int] = dict.fromkeys(self._ports, 0)
        if alive:
            connections = await self._connections(self._ports, [i.pid for i in alive.values()])
        if self._extra_connections is not None:
            for name, count in self._extra_connections().items():
                connections[name] = connections.get(name, 0) + count
        now = self._clock()
        out = {}
        for part in self._parts:
            mine = [i for p, i in alive.items() if p in part.programs]
            out[part.name] = IdleFacts(
                now=now,
                stack_up=bool(mine),
                youngest_uptime_s=float(min((i.uptime_s for i in mine), default=0)),
                connections={n: c for n, c in connections.items() if n in part.ports},
                last_ensure=max(self._controller.last_use[g] for g in part.gates),
                lease_until=self.lease_until,
                last_activity=self._last_activity[part.name],
            )
        return out

    async def _decide(self) -> dict[str, Decision]:
        decisions = {}
        for name, facts in (await self.facts()).items():
            decisions[name] = self.policy.decide(facts)
            self._last_activity[name] = decisions[name].last_activity
        return decisions

    async def check(self) -> dict[str, Decision]:
        decisions = await self._decide()
        if any(d.stop for d in decisions.values()):
            # Look again just before acting: a client may have connected since.
            decisions = await self._decide()
        self.decisions = decisions
        # Mid-start, or another sidecar controls the stack: stop nothing.
        if self._controller.starting or not self._controller.in_control():
            return decisions
        for part in self._parts:
            decision = decisions[part.name]
            if decision.stop:
                log.info(
                    "idle stop of %s: %s (timeout %g s)",
                    part.name,
                    decision.reason,
                    self.policy.timeout_s,
                    extra={"event": "idle_stop", "reason": decision.reason, "part": part.name},
                )
                self.stops.append(f"{part.name}: {decision.reason}")
                reason = "idle" if part is WHOLE else f"idle-{part.name}"
                await self._controller.stop(reason=reason, programs=part.programs)
                if part is WHOLE:
                    break
        return decisions

    async def run(self) -> None:
        """Check every interval for the app's lifetime; a failed check is logged
        and counted, and the next one runs as usual."""
        while True:
            try:
                await self.check()
            except SupervisorUnavailable as exc:  # supervisord away: try again later
                log.warning("idle check: %s", exc.message)
                self._observer.idle_check_failed(exc.code)
            except Exception as exc:
                log.exception("idle check failed; idle stop goes on with the next check")
                self._observer.idle_check_failed(type(exc).__name__)
            await asyncio.sleep(self._interval_s)

    def describe(self) -> dict[str, Any]:
        whole = self.decisions.get(WHOLE.name)
        out: dict[str, Any] = {
            "enabled": self.policy.enabled,
            "timeout_s": self.policy.timeout_s,
            "timeout_source": self.policy.source,
            "min_uptime_s": self.policy.min_uptime_s,
            **_describe(whole),
            "idle_stops": len(self.stops),
        }
        if len(self._parts) > 1:
            out["parts"] = {
                part.name: {
                    "programs": sorted(part.programs),
                    **_describe(self.decisions.get(part.name)),
                }
                for part in self._parts[1:]
            }
        # What holds each program up: its own part, then the whole stack.
        held: dict[str, list[str]] = {
            str(p): list(whole.held_by) if whole else [] for p in PROGRAMS
        }
        for part in self._parts[1:]:
            decision = self.decisions.get(part.name)
            for program in part.programs:
                held[str(program)] = list(decision.held_by) if decision else []
        out["programs"] = held
        return out


def _describe(decision: Decision | None) -> dict[str, Any]:
    return {
        "idle_for_s": round(decision.idle_for_s, 1) if decision else 0.0,
        "stops_in_s": (
            round(decision.stops_in_s, 1) if decision and decision.stops_in_s is not None else None
        ),
        "held_by": decision.held_by if decision else [],
    }
