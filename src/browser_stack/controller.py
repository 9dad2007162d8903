"""ensure / stop / status for the five programs.

The controller decides; supervisord (through `Supervisor`) and the probes act.
It keeps no state that supervisord and the probes cannot give back: a run in
flight and the coalesced snapshot are all it holds, so a restarted sidecar
picks up wherever the stack is.

Concurrency contract:
- Every ensure that arrives while a start is running joins that start: one
  `startProcess` per program, whatever the number of callers.
- A caller that goes away (timeout, disconnect) does not cancel the start.
- What the callers' gates need is spawned first; the rest of the stack once
  that is ready and the round the callers answer from has ended, so that it
  does not take CPU from them.
- A stop cancels a start in flight; its waiting callers get `StackStopped`
  (409). An ensure that arrives while a stop runs waits for the stop to end,
  then starts the stack again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_fixed

from browser_stack.coalesce import Coalescer
from browser_stack.config import Settings
from browser_stack.errors import (
    BrowserStackError,
    PortInUse,
    ProgramFailed,
    ReadinessTimeout,
    StackStopped,
    SupervisorError,
    SupervisorUnavailable,
)
from browser_stack.observer import NullObserver, Observer
from browser_stack.ports import PortHolder
from browser_stack.probes import Probe, ProbeResult
from browser_stack.stack import (
    GATE_PROGRAMS,
    PROGRAMS,
    SPAWN_AFTER,
    Gate,
    Program,
    dependents_of,
    programs_for,
    stop_layers,
)
from browser_stack.states import ALIVE_STATES, FAILED_STATES, ProcessState
from browser_stack.supervisor import ProcessInfo, Supervisor

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
RETRY_PAUSE_S = 0.2
# A start's callers answer from a round that may reuse a probe that passed
# during the start this recently (and began after the caller arrived).
FRESH_PASS_S = 0.05

Hook = Callable[[], Awaitable[None]]
PortLookup = Callable[[int], Awaitable[PortHolder | None]]
# Seconds a process has waited for a CPU since it started (None: unknown).
CpuWait = Callable[[int], float | None]


@dataclass(frozen=True)
class Snapshot:
    """supervisord's view and every probe, taken in one round."""

    infos: Mapping[Program, ProcessInfo]
    probes: Mapping[Program, ProbeResult]

    def state(self, program: Program) -> ProcessState | None:
        info = self.infos.get(program)
        return info.state if info is not None else None

    def ready(self, program: Program) -> bool:
        # Ours and usable: supervisord keeps it alive and its probe passes. A
        # probe alone could be answered by a foreign process on the port.
        return self.state(program) in ALIVE_STATES and self.probes[program].ok

    @cached_property
    def _unready(self) -> frozenset[Program]:
        return frozenset(p for p in PROGRAMS if not self.ready(p))

    def not_ready(self, programs: Iterable[Program]) -> list[Program]:
        return [p for p in programs if p in self._unready]

    @cached_property
    def statuses(self) -> dict[Program, ProgramStatus]:
        """Each program's status, built once per round and shared, read-only, by
        every answer the round serves."""
        return program_statuses(self)


@dataclass(frozen=True)
class ProgramStatus:
    program: Program
    state: str
    pid: int
    uptime_s: int
    ready: bool
    detail: str
    reason: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state,
            "pid": self.pid,
            "uptime_s": self.uptime_s,
            "ready": self.ready,
            "probe": self.detail,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def program_statuses(
    snapshot: Snapshot, reasons: Mapping[Program, dict[str, str]] | None = None
) -> dict[Program, ProgramStatus]:
    out = {}
    for program in PROGRAMS:
        info = snapshot.infos.get(program)
        out[program] = ProgramStatus(
            program=program,
            state=info.state.name if info is not None else "NOT_CONFIGURED",
            pid=info.pid if info is not None else 0,
            uptime_s=info.uptime_s if info is not None else 0,
            ready=snapshot.ready(program),
            detail=snapshot.probes[program].detail,
            reason=(reasons or {}).get(program),
        )
    return out


@dataclass(frozen=True)
class EnsureResult:
    gates: frozenset[Gate]
    cold: bool
    elapsed_ms: float
    started: list[Program]
    # Shared by every result answered from the same round: read-only.
    programs: dict[Program, ProgramStatus]
    endpoints: dict[str, str]
    joined: bool = False


@dataclass(frozen=True)
class StopResult:
    stopped: list[Program]
    elapsed_ms: float
    cancelled_start: bool


@dataclass
class _Run:
    """One bring-up of the stack, shared by every ensure that joins it."""

    futures: dict[Program, asyncio.Future[None]]
    # Set when a program may be spawned: at once for what the callers' gates
    # need, for the rest once those are ready.
    released: dict[Program, asyncio.Event] = field(default_factory=dict)
    started: list[Program] = field(default_factory=list)
    waiting_on: dict[Program, str] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    finished: asyncio.Future[None] | None = None

    def release(self, programs: Iterable[Program]) -> None:
        for program in programs:
            self.released[program].set()

    def failure(self, programs: Iterable[Program]) -> BaseException | None:
        for program in programs:
            future = self.futures[program]
            if future.done() and not future.cancelled() and future.exception() is not None:
                return future.exception()
        return None


@dataclass
class _Starvation:
    """How long one starting program's process has waited for a CPU since the
    attempt first saw its pid: a busy machine's delay, not a hang."""

    read: CpuWait
    pid: int = 0
    base: float = 0.0

    def observe(self, pid: int) -> None:
        if pid > 0 and pid != self.pid:
            wait = self.read(pid)
            self.pid, self.base = (pid, wait) if wait is not None else (0, 0.0)

    def seconds(self) -> float:
        wait = self.read(self.pid) if self.pid > 0 else None
        return max(0.0, wait - self.base) if wait is not None else 0.0


def _consume(future: asyncio.Future[Any]) -> None:
    # Mark a failure as seen: a run's failure may have no caller left to read it.
    if not future.cancelled():
        future.exception()


class Controller:
    def __init__(
        self,
        supervisor: Supervisor,
        probes: Mapping[Program, Probe],
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        before_start: Mapping[Program, Hook] | None = None,
        port_holder: PortLookup | None = None,
        observer: Observer | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        cpu_wait: CpuWait | None = None,
    ) -> None:
        missing = set(PROGRAMS) - set(probes)
        if missing:
            raise ValueError(f"no probe for {sorted(missing)}")
        self._supervisor = supervisor
        self._probes = probes
        self._settings = settings
        self._clock = clock
        self._before_start = dict(before_start or {})
        self._port_holder = port_holder
        self._cpu_wait = cpu_wait
        self._observer: Observer = observer or NullObserver()
        # The port each program's probe waits on: held by anything else before
        # the spawn, the program cannot come up there.
        ports = settings.program_ports
        self._ports = {
            Program.TIGERVNC: ports["vnc"],
            Program.BROWSER: ports["cdp"],
            Program.MCP_SERVER_BROWSER: ports["mcp"],
            Program.WEBSOCAT: ports["vnc_ws"],
        }
        self._max_attempts = max_attempts
        self._snapshots: Coalescer[Snapshot] = Coalescer(self._take_snapshot, clock)
        # Probes that passed during a start: (began, ended, result) per program.
        self._passed: dict[Program, tuple[float, float, ProbeResult]] = {}
        self._answers: Coalescer[tuple[Snapshot, float]] = Coalescer(
            self._take_answer_snapshot, clock
        )
        self._infos: Coalescer[dict[Program, ProcessInfo]] = Coalescer(
            supervisor.process_info, clock
        )
        self._last_endpoints: tuple[Snapshot, dict[str, str]] | None = None
        self._needed: dict[frozenset[Gate], tuple[frozenset[Program], frozenset[Program]]] = {}
        self._run: _Run | None = None
        self._stopping: asyncio.Task[StopResult] | None = None
        self.start_calls: dict[Program, int] = dict.fromkeys(PROGRAMS, 0)
        # When an ensure last came or went: activity for the idle stop.
        self.last_ensure = 0.0

    # -- reading -------------------------------------------------------------

    async def snapshot(self, since: float | None = None) -> Snapshot:
        """A fresh snapshot: concurrent callers share one round, never an old one.

        Fresh means begun after this call, or with `since` (the controller's
        clock), begun at or after it."""
        return await self._snapshots.get(since)

    async def _take_snapshot(self, reuse: Mapping[Program, ProbeResult] | None = None) -> Snapshot:
        """A round: supervisord's state and every probe, except those in `reuse`
        (only the end of a start passes any; a warm round asks all five)."""
        began = self._clock()
        asked = [p for p in PROGRAMS if p not in reuse] if reuse else PROGRAMS
        infos_task = asyncio.ensure_future(self._supervisor.process_info())
        try:
            results = await asyncio.gather(*(self._probes[p]() for p in asked))
        finally:
            infos = await infos_task
        self._observer.round_done(self._clock() - began)
        probes = dict(zip(asked, results, strict=True))
        if reuse:
            probes = {p: reuse[p] if p in reuse else probes[p] for p in PROGRAMS}
        return Snapshot(infos=infos, probes=probes)

    async def _answer_snapshot(self, since: float) -> Snapshot:
        """The round a start's callers answer from, begun at or after `since`.

        Like snapshot(since), except that a probe which passed during the start
        within FRESH_PASS_S is taken as that program's part of the round instead
        of asking again: right after Chromium's first /json/version answer, a
        second one took 12-24 ms while it still loads the CPU. The round counts
        as begun when the oldest part it reuses began; a caller that arrived
        after that gets a whole new round."""
        snapshot, began = await self._answers.get(since)
        if began >= since:
            return snapshot
        return await self.snapshot(since)

    async def _take_answer_snapshot(self) -> tuple[Snapshot, float]:
        now = self._clock()
        fresh = {p: v for p, v in self._passed.items() if now - v[1] <= FRESH_PASS_S}
        began = min([now, *(v[0] for v in fresh.values())])
        snapshot = await self._take_snapshot({p: v[2] for p, v in fresh.items()})
        return snapshot, began

    async def status(self) -> tuple[Snapshot, dict[Program, ProgramStatus]]:
        snapshot = await self.snapshot()
        failed = [p for p in PROGRAMS if snapshot.state(p) in FAILED_STATES]
        tails = await asyncio.gather(*(self._supervisor.stderr_tail(p) for p in failed))
        reasons = {
            p: {"spawnerr": snapshot.infos[p].spawnerr, "stderr_tail": tail}
            for p, tail in zip(failed, tails, strict=True)
        }
        for program in PROGRAMS:
            if snapshot.state(program) in ALIVE_STATES and not snapshot.probes[program].ok:
                reasons[program] = {"probe": snapshot.probes[program].detail}
        return snapshot, program_statuses(snapshot, reasons)

    async def process_infos(self) -> Mapping[Program, ProcessInfo]:
        """supervisord's view alone (no probes), fresh."""
        return await self._infos.get()

    async def supervisor_reachable(self) -> tuple[bool, str]:
        try:
            await self._infos.get()
        except (SupervisorUnavailable, SupervisorError) as exc:
            # Refused credentials count as unreachable: nothing can be asked.
            return False, exc.message
        return True, ""

    @property
    def starting(self) -> bool:
        return self._run is not None

    def endpoints(self, snapshot: Snapshot) -> dict[str, str]:
        s = self._settings
        host = s.public_host
        return {
            "cdp": f"http://{host}:{s.cdp_port}",
            "cdp_ws": self._public_ws(snapshot.probes[Program.BROWSER].data.get("cdp_ws", "")),
            "mcp": f"http://{host}:{s.mcp_port}/sse",
            "vnc": f"{host}:{s.vnc_port}",
            "vnc_ws": f"ws://{host}:{s.websocket_port}",
        }

    def _shared_endpoints(self, snapshot: Snapshot) -> dict[str, str]:
        # Once per round, like Snapshot.statuses: a round serves many answers.
        last = self._last_endpoints
        if last is None or last[0] is not snapshot:
            last = self._last_endpoints = (snapshot, self.endpoints(snapshot))
        return last[1]

    def _public_ws(self, url: str) -> str:
        # Chromium names the port it was asked on; behind the activation proxy
        # the probe asked the internal port, and clients must use the public one.
        s = self._settings
        if s.activation == "proxy" and url:
            internal = f"127.0.0.1:{s.internal_cdp_port}/"
            return url.replace(internal, f"{s.public_host}:{s.cdp_port}/", 1)
        return url

    # -- ensure --------------------------------------------------------------

    async def ensure(self, gates: frozenset[Gate], timeout_s: float) -> EnsureResult:
        """Start what is not running; return once `gates` are ready.

        Raises ProgramFailed (a program could not start), StackStopped (a stop
        came first), ReadinessTimeout (deadline passed; the start goes on) and
        SupervisorUnavailable.
        """
        began = self.last_ensure = self._clock()
        try:
            result = await self._ensure(gates, timeout_s, began)
        except BrowserStackError as error:
            self._observer.ensure_done(error.code, self._clock() - began)
            raise
        finally:
            self.last_ensure = self._clock()
        self._observer.ensure_done("cold" if result.cold else "warm", self._clock() - began)
        if result.joined:
            self._observer.ensure_joined()
        return result

    async def _ensure(self, gates: frozenset[Gate], timeout_s: float, began: float) -> EnsureResult:
        needed, first = self._needed.get(gates) or self._plan(gates)
        cold = False
        joined = False
        run: _Run | None = None
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    if self._stopping is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.shield(self._stopping)
                        continue
                    if self._run is None:
                        snapshot = await self.snapshot(began)
                        if not snapshot.not_ready(PROGRAMS):
                            return self._result(gates, snapshot, cold, began, run, joined)
                        if self._stopping is not None:
                            continue
                        if self._run is None:
                            self._run = self._begin(snapshot, first)
                        else:
                            joined = True
                        run = self._run
                        if not snapshot.not_ready(needed):
                            # The rest of the stack comes up in the background.
                            return self._result(gates, snapshot, cold, began, run, joined)
                    else:
                        run = self._run
                        joined = True
                        if run.failure(needed) is not None:
                            # That failure is older than this call: let the run
                            # end and try afresh rather than answer with it.
                            if run.finished is not None:
                                await asyncio.wait([run.finished])
                            continue
                    # A caller that joins a run may need what it has not released yet.
                    run.release(first)
                    if any(not run.futures[p].done() for p in needed):
                        cold = True
                    await asyncio.wait([run.futures[p] for p in needed])
                    error = run.failure(needed)
                    if error is not None:
                        raise error
                    # Readiness seen during the run may be stale by now: answer
                    # only from a round that began after this call arrived.
                    snapshot = await self._answer_snapshot(began)
                    if not snapshot.not_ready(needed):
                        return self._result(gates, snapshot, cold, began, run, joined)
                    log.warning(
                        "ready during start but not now: %s",
                        ", ".join(snapshot.not_ready(needed)),
                    )
                    # The run that saw them ready may still be running others.
                    if run.finished is not None and self._run is run:
                        await asyncio.wait([run.finished])
        except TimeoutError:
            raise self._timeout(timeout_s, gates, run) from None

    def _timeout(
        self, timeout_s: float, gates: frozenset[Gate], run: _Run | None
    ) -> ReadinessTimeout:
        pending: dict[str, str] = {}
        pending_gates = set()
        for gate in gates:
            for program in GATE_PROGRAMS[gate]:
                if run is None or not run.futures[program].done():
                    pending_gates.add(gate)
                    why = run.waiting_on.get(program, "waiting") if run else "not checked"
                    pending[str(program)] = why
        if not pending_gates:  # timed out while re-checking or waiting on a stop
            pending_gates = set(gates)
        return ReadinessTimeout(timeout_s, pending_gates, pending)

    def _result(
        self,
        gates: frozenset[Gate],
        snapshot: Snapshot,
        cold: bool,
        began: float,
        run: _Run | None,
        joined: bool,
    ) -> EnsureResult:
        return EnsureResult(
            gates=gates,
            cold=cold,
            elapsed_ms=round((self._clock() - began) * 1000, 2),
            started=list(run.started) if run is not None else [],
            programs=snapshot.statuses,
            endpoints=self._shared_endpoints(snapshot),
            joined=joined,
        )

    def _plan(self, gates: frozenset[Gate]) -> tuple[frozenset[Program], frozenset[Program]]:
        """What `gates` need ready, and what must be spawned for that (their
        spawn dependencies too); cached, there are seven gate sets."""
        needed = programs_for(gates)
        first = set(needed)
        frontier = list(needed)
        while frontier:
            for dependency in SPAWN_AFTER[frontier.pop()]:
                if dependency not in first:
                    first.add(dependency)
                    frontier.append(dependency)
        plan = self._needed[gates] = (needed, frozenset(first))
        return plan

    def _begin(self, snapshot: Snapshot, first: frozenset[Program]) -> _Run:
        loop = asyncio.get_running_loop()
        run = _Run(
            futures={p: loop.create_future() for p in PROGRAMS},
            released={p: asyncio.Event() for p in PROGRAMS},
        )
        for future in run.futures.values():
            future.add_done_callback(_consume)
        for program in PROGRAMS:
            if snapshot.ready(program):
                run.futures[program].set_result(None)
            else:
                run.tasks.append(asyncio.create_task(self._bring_up(run, program, snapshot)))
        # What the caller's gates need goes first; the rest waits until those
        # are ready, so that on a small machine it does not compete with them
        # for CPU (mcp-server-browser's start costs as much as Chromium's).
        run.release(first)
        run.tasks.append(asyncio.create_task(self._release_rest(run, first)))
        run.finished = asyncio.ensure_future(self._finish(run))
        self._observer.start_begun()
        log.info("start begins: %s", ", ".join(p for p in PROGRAMS if not snapshot.ready(p)))
        return run

    async def _release_rest(self, run: _Run, first: frozenset[Program]) -> None:
        await asyncio.wait([run.futures[p] for p in first])
        # The callers waiting for `first` answer from the round that starts now
        # (it began after they arrived); spawning the rest during it would slow
        # it down (supervisord forks them, their starts take the CPU).
        with contextlib.suppress(Exception):
            await self._answers.get(-math.inf)
        run.release(PROGRAMS)

    async def _finish(self, run: _Run) -> None:
        began = self._clock()
        await asyncio.wait(list(run.futures.values()))
        if self._run is run:
            self._run = None
        failed = run.failure(PROGRAMS)
        elapsed = self._clock() - began
        self._observer.start_ended(elapsed, failed is None)
        log.info(
            "start ends in %.0f ms: %s",
            elapsed * 1000,
            f"failed ({failed})" if failed else "all ready",
            extra={"elapsed_ms": round(elapsed * 1000, 1), "ok": failed is None},
        )

    async def _bring_up(self, run: _Run, program: Program, snapshot: Snapshot) -> None:
        future = run.futures[program]
        try:
            if not run.released[program].is_set():
                run.waiting_on[program] = "deferred until the gates asked for are ready"
                await run.released[program].wait()
            for dependency in SPAWN_AFTER[program]:
                run.waiting_on[program] = f"waiting for {dependency}"
                await asyncio.wait([run.futures[dependency]])
                error = run.failure([dependency])
                if error is not None:
                    raise error
            await self._start_with_retries(run, program, snapshot.infos.get(program))
        except asyncio.CancelledError:
            if not future.done():
                future.set_exception(StackStopped("a stop cancelled the start"))
            raise
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            state = exc.fields.get("state", "") if isinstance(exc, BrowserStackError) else ""
            log.warning(
                "start failed program=%s state=%s: %s",
                program,
                state,
                exc,
                extra={"program": str(program), "state": state, "event": "failed"},
            )
        else:
            if not future.done():
                future.set_result(None)
            run.waiting_on.pop(program, None)

    async def _start_with_retries(
        self, run: _Run, program: Program, first_info: ProcessInfo | None
    ) -> None:
        attempt_no = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_fixed(RETRY_PAUSE_S),
            retry=retry_if_exception(lambda exc: isinstance(exc, ProgramFailed) and exc.retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                attempt_no += 1
                info = first_info if attempt_no == 1 else None
                await self._attempt(run, program, info, restart=attempt_no > 1)

    async def _fresh_info(self, program: Program, since: float | None = None) -> ProcessInfo:
        info = (await self._infos.get(since)).get(program)
        if info is None:
            raise ProgramFailed(
                program,
                f"{program} is not configured in supervisord",
                state="NOT_CONFIGURED",
                retryable=False,
            )
        return info

    async def _attempt(
        self, run: _Run, program: Program, info: ProcessInfo | None, *, restart: bool
    ) -> None:
        settings = self._settings
        if info is None:
            info = await self._fresh_info(program)
        state = info.state
        restarted_users: list[Program] = []
        if restart and state in ALIVE_STATES:
            # Alive but never ready (hung Chromium, dead CDP): restart it, and
            # the programs that use it, which would keep a dead connection.
            restarted_users = await self._stop_users(program)
        if restart and state in ALIVE_STATES:
            await self._supervisor.resume(program)
        if state in FAILED_STATES or (restart and state in ALIVE_STATES):
            # BACKOFF would answer ALREADY_STARTED and FATAL needs a fresh start.
            run.waiting_on[program] = f"stopping {state.name}"
            log.info("restarting program=%s state=%s", program, state.name)
            await self._supervisor.stop(program)
            state = ProcessState.STOPPED
        while state == ProcessState.STOPPING:
            run.waiting_on[program] = "waiting for a stop to end"
            await asyncio.sleep(settings.state_interval_s)
            state = (await self._fresh_info(program)).state
        if state not in ALIVE_STATES:
            hook = self._before_start.get(program)
            if hook is not None:
                await hook()
            await self._check_port_free(program, state)
            self.start_calls[program] += 1
            if await self._supervisor.start(program) and program not in run.started:
                run.started.append(program)
        spawned = self._clock()
        next_state_check = self._state_tick_after(spawned)
        probe = self._probes[program]
        starvation = _Starvation(self._cpu_wait) if self._cpu_wait is not None else None
        extended = False
        while True:
            probe_began = self._clock()
            result = await probe()
            if result.ok:
                self._passed[program] = (probe_began, self._clock(), result)
                elapsed = self._clock() - spawned
                self._observer.program_ready(str(program), elapsed)
                log.info(
                    "ready program=%s state=%s after %.0f ms",
                    program,
                    state.name,
                    elapsed * 1000,
                    extra={
                        "program": str(program),
                        "state": state.name,
                        "elapsed_ms": round(elapsed * 1000, 1),
                        "event": "ready",
                    },
                )
                for user in restarted_users:
                    await self._attempt(run, user, None, restart=False)
                return
            now = self._clock()
            run.waiting_on[program] = f"{state.name}, probe: {result.detail}"
            if now - spawned > settings.ready_grace_s:
                # The grace is for hangs: time spent waiting for a CPU (many
                # starts at once on a small machine) does not count, or every
                # slow start would be killed and begun again, on the same CPUs.
                starved = starvation.seconds() if starvation is not None else 0.0
                if now - spawned - starved > settings.ready_grace_s:
                    raise ProgramFailed(
                        program,
                        f"{program} is {state.name} but not ready after "
                        f"{settings.ready_grace_s:g} s"
                        + (f" (and {starved:.1f} s waiting for a CPU)" if starved else "")
                        + f": {result.detail}",
                        state=state.name,
                        probe=result.detail,
                    )
                if not extended:
                    extended = True
                    log.info(
                        "not ready program=%s after %.0f s, %.0f s of them waiting for a CPU: "
                        "the grace goes on",
                        program,
                        now - spawned,
                        starved,
                        extra={"program": str(program), "event": "grace_extended"},
                    )
            if now >= next_state_check:
                info = await self._fresh_info(program, since=next_state_check)
                state = info.state
                if starvation is not None:
                    starvation.observe(info.pid)
                if state in FAILED_STATES or state == ProcessState.STOPPED:
                    tail = await self._supervisor.stderr_tail(program)
                    raise ProgramFailed(
                        program,
                        f"{program} went {state.name} while starting"
                        + (f": {info.spawnerr}" if info.spawnerr else ""),
                        state=state.name,
                        spawnerr=info.spawnerr,
                        stderr_tail=tail,
                    )
                next_state_check = self._state_tick_after(now)
            await asyncio.sleep(settings.probe_interval_s)

    def _state_tick_after(self, moment: float) -> float:
        # The programs starting together check supervisord's state on the same
        # ticks, and share one getAllProcessInfo per tick (Coalescer since=):
        # one call each cost supervisord 30 ms of CPU per start, taken from the
        # programs it was starting.
        interval = self._settings.state_interval_s
        return (math.floor(moment / interval) + 1) * interval

    async def _check_port_free(self, program: Program, state: ProcessState) -> None:
        port = self._ports.get(program)
        if port is None or self._port_holder is None:
            return
        holder = await self._port_holder(port)
        if holder is not None:
            raise PortInUse(
                program,
                f"{program} cannot start: {holder.describe()}",
                state=state.name,
                port=port,
                pid=holder.pid,
            )

    async def _stop_users(self, program: Program) -> list[Program]:
        """Stop the alive programs that use `program`, last user first."""
        infos = await self._infos.get()
        users = [
            p
            for layer in stop_layers()
            for p in PROGRAMS
            if p in layer
            and p in dependents_of(program)
            and p in infos
            and infos[p].state in ALIVE_STATES
        ]
        for user in users:
            log.info("stopping program=%s, it uses %s which is being restarted", user, program)
            await self._supervisor.stop(user)
        return list(reversed(users))

    # -- stop ----------------------------------------------------------------

    async def stop(self, reason: str = "request") -> StopResult:
        """Stop the five in reverse dependency order. Idempotent; concurrent
        stops share one."""
        if self._stopping is None:
            task = asyncio.ensure_future(self._stop_all(reason))
            self._stopping = task

            def clear(done: asyncio.Future[StopResult]) -> None:
                if self._stopping is done:
                    self._stopping = None
                _consume(done)

            task.add_done_callback(clear)
        return await asyncio.shield(self._stopping)

    async def _stop_all(self, reason: str) -> StopResult:
        began = self._clock()
        run = self._run
        cancelled = False
        if run is not None:
            cancelled = True
            for task in run.tasks:
                task.cancel()
            await asyncio.gather(*run.tasks, return_exceptions=True)
            if run.finished is not None:
                await asyncio.wait([run.finished])
            if self._run is run:
                self._run = None
        stopped: list[Program] = []
        for layer in stop_layers():
            ordered = [p for p in PROGRAMS if p in layer]
            results = await asyncio.gather(*(self._supervisor.stop(p) for p in ordered))
            stopped.extend(
                p for p, was_running in zip(ordered, results, strict=True) if was_running
            )
        elapsed = round((self._clock() - began) * 1000, 2)
        if stopped:
            self._observer.stopped(reason)
        log.info(
            "stop (%s) done in %.0f ms: %s",
            reason,
            elapsed,
            ", ".join(stopped) or "nothing was running",
            extra={"event": "stop", "reason": reason, "elapsed_ms": elapsed},
        )
        return StopResult(stopped=stopped, elapsed_ms=elapsed, cancelled_start=cancelled)
