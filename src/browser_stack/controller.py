"""ensure / stop / status for the five programs: the plan and single flight.

Readiness comes from the model (model.py), kept current by events (events.py, liveness.py).
A warm ensure whose gates' programs are all ready answers from it, with no
request to supervisord or to any program. Anything else goes through a start:
one `Run` (start_run.py) shared by every caller that arrives while it lasts, which
brings each program up (bringup.py, the one place a program is spawned).

The controller keeps no state that supervisord and the probes cannot give
back: a restarted sidecar reads supervisord, probes what runs, and picks up
wherever the stack is.

Concurrency contract:
- Every ensure that arrives while a start is running joins that start: one
  `startProcess` per program, whatever the number of callers.
- A caller that goes away (timeout, disconnect) does not cancel the start.
- What the callers' gates need is spawned first; the rest of the stack once
  that is ready, so that it does not take CPU from them.
- A stop cancels a start in flight; its waiting callers get `StackStopped`
  (409). An ensure that arrives while a stop runs waits for the stop to end,
  then starts the stack again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from browser_stack.backoff import Backoff
from browser_stack.bringup import MAX_ATTEMPTS, BringUp
from browser_stack.config import Settings
from browser_stack.core_types import Control, CpuWait, Hook, PortLookup, Probe, Supervisor, Watch
from browser_stack.errors import (
    BrowserStackError,
    DisabledByDeployment,
    NotInControl,
    ProgramFailed,
    SupervisorError,
    SupervisorLate,
    SupervisorUnavailable,
)
from browser_stack.liveness import ExitLog, Liveness
from browser_stack.model import NoWatch, ProgramStatus, ReadinessModel, View
from browser_stack.observer import NullObserver, Observer
from browser_stack.probes import ATTEMPT_TIMEOUT_S
from browser_stack.stack import (
    GATES,
    PROGRAMS,
    Gate,
    Program,
    blocked,
    programs_for,
    spawn_closure,
    stop_layers,
)
from browser_stack.stack_reader import Reader, endpoints
from browser_stack.start_run import Run, timeout_error

log = logging.getLogger(__name__)


class _Alone:
    """The control of a controller alone on its supervisord by construction
    (tests, benches): always held."""

    def held(self) -> bool:
        return True

    async def check(self) -> None:
        return None


@dataclass(frozen=True)
class Plan:
    # Ready before the gates open.
    needed: frozenset[Program]
    # Spawned at once: what is needed and what it needs to be spawned.
    first: frozenset[Program]


@functools.cache
def plan(gates: frozenset[Gate]) -> Plan:
    needed = programs_for(gates)
    return Plan(needed, spawn_closure(needed))


@dataclass(frozen=True)
class EnsureResult:
    gates: frozenset[Gate]
    cold: bool
    elapsed_ms: float
    started: list[Program]
    # What the model knew when the answer was made: each program, the endpoints.
    view: View
    joined: bool = False

    @property
    def programs(self) -> Mapping[Program, ProgramStatus]:
        return self.view.programs

    @property
    def endpoints(self) -> Mapping[str, str]:
        return self.view.endpoints


@dataclass(frozen=True)
class StartOutcome:
    ended_at: float
    started: tuple[Program, ...]
    error: dict[str, Any] | None

    def to_dict(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.error is None,
            "ended_s_ago": round(now - self.ended_at, 1),
            "started": [str(p) for p in self.started],
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class StopResult:
    stopped: list[Program]
    elapsed_ms: float
    cancelled_start: bool


class Controller:
    def __init__(
        self,
        supervisor: Supervisor,
        probes: Mapping[Program, Probe],
        settings: Settings,
        *,
        watch: Watch | None = None,
        clock: Callable[[], float] = time.monotonic,
        before_start: Mapping[Program, Hook] | None = None,
        port_holder: PortLookup | None = None,
        cpu_wait: CpuWait | None = None,
        observer: Observer | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        control: Control | None = None,
    ) -> None:
        missing = set(PROGRAMS) - set(probes)
        if missing:
            raise ValueError(f"no probe for {sorted(missing)}")
        self._supervisor = supervisor
        self._settings = settings
        self._clock = clock
        # Whether this sidecar may act: another on the same supervisord may (claim.py).
        self._control: Control = control or _Alone()
        self._observer: Observer = observer or NullObserver()
        interval = settings.liveness_interval_s
        self.model = ReadinessModel(
            watch or NoWatch(),
            clock=clock,
            # A pass is fresh for an interval and the time its probe may take.
            fresh_for_s=interval + ATTEMPT_TIMEOUT_S if interval else None,
            on_exit=lambda program, pid, how: self._exit_log(program, pid, how),
            endpoints=lambda cdp_ws: endpoints(settings, cdp_ws),
            disabled=settings.disabled,
        )
        # What the deployment turned off: never started, whatever asks.
        self._disabled = settings.disabled
        # The gates that cannot open, each with the programs it lacks: fixed for
        # the sidecar's life, so an ensure only looks it up.
        self._blocked = blocked(GATES, self._disabled)
        # The gates that can open: what an ensure that names none waits for.
        self.enabled_gates = frozenset(GATES) - frozenset(self._blocked)
        self.reader = Reader(supervisor, probes, self.model, clock=clock, observer=self._observer)
        self._exit_log = ExitLog(supervisor, self.reader.refresh, self._observer)
        self._bring_up = BringUp(
            supervisor,
            probes,
            self.model,
            self.reader.refresh,
            settings,
            clock=clock,
            observer=self._observer,
            before_start=before_start,
            port_holder=port_holder,
            cpu_wait=cpu_wait,
            max_attempts=max_attempts,
        )
        self.liveness = Liveness(self.reader, interval_s=interval, observer=self._observer)
        self._run: Run | None = None
        self._stopping: asyncio.Task[StopResult] | None = None
        self._stopping_programs: frozenset[Program] = frozenset()
        self._background: set[asyncio.Task[EnsureResult]] = set()
        # When an ensure for each gate last came or went: activity for the idle stop.
        self.last_use: dict[Gate, float] = dict.fromkeys(Gate, 0.0)
        # The last start's outcome, for status: a background start has no caller.
        self._last_start: StartOutcome | None = None
        # Programs that failed: their next background start waits.
        self._backoff = Backoff()

    def check_gates(self, gates: frozenset[Gate]) -> None:
        """Raise DisabledByDeployment when `gates` need a program the deployment
        turned off."""
        if gates <= self.enabled_gates:
            return
        refused = {gate: self._blocked[gate] for gate in gates if gate in self._blocked}
        programs = frozenset().union(*refused.values())
        variables = dict.fromkeys(self._disabled[p] for p in sorted(programs))
        raise DisabledByDeployment(refused, programs, variables)

    @property
    def starting(self) -> bool:
        return self._run is not None

    def endpoints(self) -> Mapping[str, str]:
        return self.model.view.endpoints

    def in_control(self) -> bool:
        """Whether this sidecar controls the stack (taking the claim if it is free)."""
        return self._control.held()

    async def check_control(self) -> None:
        """Raise NotInControl, naming the sidecar in control, unless this one is."""
        await self._control.check()

    async def control_problem(self) -> str:
        """Why this sidecar may not act, or "" when it may."""
        try:
            await self._control.check()
        except NotInControl as error:
            return error.message
        return ""

    # -- ensure --------------------------------------------------------------

    async def ensure(self, gates: frozenset[Gate], timeout_s: float) -> EnsureResult:
        """Start what is not running; return once `gates` are ready.

        Raises ProgramFailed (a program could not start), StackStopped (a stop
        came first), ReadinessTimeout (deadline passed; the start goes on),
        SupervisorUnavailable (supervisord is not there; one that is there and
        answers late only delays the answer, up to the deadline) and
        NotInControl (another sidecar controls this supervisord's stack).
        """
        began = self._clock()
        self._used(gates, began)
        # Asked for: what the gates need is tried now, however often it failed.
        self._backoff.clear(plan(gates).first)
        try:
            self.check_gates(gates)
            await self._control.check()
            result = await self._ensure(gates, timeout_s, began)
        except BrowserStackError as error:
            self._observer.ensure_done(error.code, self._clock() - began)
            raise
        finally:
            self._used(gates, self._clock())
        self._observer.ensure_done("cold" if result.cold else "warm", self._clock() - began)
        if result.joined:
            self._observer.ensure_joined()
        return result

    def last_start(self) -> dict[str, Any] | None:
        """The last start's outcome, for status."""
        if self._last_start is None:
            return None
        return self._last_start.to_dict(self._clock())

    def backoff(self) -> dict[str, Any]:
        """For status: the programs whose background start waits after failing."""
        return self._backoff.describe(self._clock())

    def _used(self, gates: frozenset[Gate], now: float) -> None:
        for gate in gates:
            self.last_use[gate] = now

    def prewarm(self, gates: frozenset[Gate]) -> None:
        """Start what `gates` need in the background and return at once: the
        same single-flight start an ensure joins. Its failure is logged, counted
        and kept for status (`last_start`)."""
        task = asyncio.ensure_future(self.ensure(gates, self._settings.ensure_timeout_s))
        self._background.add(task)
        task.add_done_callback(self._prewarmed)

    def _prewarmed(self, task: asyncio.Task[EnsureResult]) -> None:
        self._background.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.warning("background start failed: %s", error, extra={"event": "prewarm_failed"})

    async def _ensure(self, gates: frozenset[Gate], timeout_s: float, began: float) -> EnsureResult:
        needed = plan(gates).needed
        if self._run is None and self._stopping is None and self.model.ready(needed):
            self._start_the_rest(gates)  # from the model: nothing asked
            return self._result(gates, False, began, None, False)
        cold = joined = False
        run: Run | None = None
        unanswered = ""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    if self._stopping is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.shield(self._stopping)
                        continue
                    if self._run is None:
                        try:
                            await self.reader.refresh()
                        except SupervisorLate as late:
                            # There, and not answering yet: ask again until the deadline.
                            unanswered = late.message
                            continue
                        if self._stopping is not None:
                            continue
                        if self._run is None and self.model.ready(needed):
                            self._start_the_rest(gates)
                            return self._result(gates, cold, began, self._run, joined)
                    if self._run is None:
                        self._run = self._begin(gates)
                    else:
                        joined = True
                    run = self._run
                    if joined and run.failure(needed) is not None:
                        # That failure is older than this call: let the run end
                        # and try afresh rather than answer with it.
                        await asyncio.wait([run.finished])
                        continue
                    first = plan(gates).first
                    run.include(first, lambda p: self.model.ready([p]))
                    run.release(first)
                    waited = not run.done(needed)
                    await run.wait(needed)
                    error = run.failure(needed)
                    if error is not None:
                        raise error
                    # Cold: it waited for a spawn, not only for a probe (a
                    # restarted sidecar that finds the stack up).
                    cold = cold or (waited and any(p in run.started for p in first))
                    if self.model.ready(needed):
                        return self._result(gates, cold, began, run, joined)
                    # Gone since its pass (an exit, a restart of what it uses):
                    # the run brings it up again, or a new one will.
                    if run.done(needed) and self._run is run:
                        await asyncio.wait([run.finished])
        except TimeoutError:
            raise timeout_error(timeout_s, gates, run, unanswered or "not checked") from None

    def _start_the_rest(self, gates: frozenset[Gate]) -> None:
        """The gates are ready; with BROWSER_STACK_START=all, what else is down
        comes up in the background, but for a program whose last start failed
        and whose wait has not passed (backoff.py)."""
        if self._settings.start != "all" or self._run is not None or self._stopping is not None:
            return
        skipped = self._backoff.waiting(self._clock()) | set(self._disabled)
        if any(p not in skipped for p in self.model.not_ready(PROGRAMS)):
            self._run = self._begin(gates)

    def _begin(self, gates: frozenset[Gate]) -> Run:
        first = plan(gates).first
        scope = PROGRAMS if self._settings.start == "all" else first
        skipped = (self._backoff.waiting(self._clock()) - first) | set(self._disabled)
        pending = [p for p in self.model.not_ready(scope) if p not in skipped]
        run = Run(self._bring_up, pending, first, self._clock())
        run.finished.add_done_callback(lambda _: self._finish(run))
        self._observer.start_begun()
        log.info("start begins: %s", ", ".join(pending))
        return run

    def _finish(self, run: Run) -> None:
        if self._run is run:
            self._run = None
        failed = run.failure(PROGRAMS)
        now = self._clock()
        for program in run.tried:
            own = run.failure([program])
            if isinstance(own, ProgramFailed) and own.program == program:
                self._backoff.failed(program, own.to_dict(), now)
        self._backoff.clear(p for p in PROGRAMS if self.model.ready([p]))
        elapsed = now - run.began
        self._observer.start_ended(elapsed, failed is None)
        error = None
        if failed is not None:
            error = (
                failed.to_dict()
                if isinstance(failed, BrowserStackError)
                else {"error": "error", "message": str(failed)}
            )
        self._last_start = StartOutcome(self._clock(), tuple(run.started), error)
        log.info(
            "start ends in %.0f ms: %s",
            elapsed * 1000,
            f"failed ({failed})" if failed else "all ready",
            extra={"elapsed_ms": round(elapsed * 1000, 1), "ok": failed is None},
        )

    def _result(
        self, gates: frozenset[Gate], cold: bool, began: float, run: Run | None, joined: bool
    ) -> EnsureResult:
        return EnsureResult(
            gates=gates,
            cold=cold,
            elapsed_ms=round((self._clock() - began) * 1000, 2),
            started=list(run.started) if run is not None else [],
            view=self.model.view,
            joined=joined,
        )

    # -- stop ----------------------------------------------------------------

    async def stop(
        self, reason: str = "request", programs: frozenset[Program] = frozenset(PROGRAMS)
    ) -> StopResult:
        """Stop the five (or `programs`: what an idle gate alone needs) in
        reverse dependency order. Idempotent; a stop joins one under way that
        covers its programs, and otherwise runs after it (a stop of all five must
        not end with an idle gate's stop of two). Raises NotInControl when another
        sidecar controls the stack."""
        await self._control.check()
        while (under_way := self._stopping) is not None and not (
            programs <= self._stopping_programs
        ):
            if under_way.done():
                self._stopping = None
                break
            with contextlib.suppress(Exception):
                await asyncio.shield(under_way)
        if self._stopping is None:
            task = asyncio.ensure_future(self._stop_all(reason, programs))
            self._stopping = task
            self._stopping_programs = programs

            def clear(done: asyncio.Future[StopResult]) -> None:
                if self._stopping is done:
                    self._stopping = None
                if not done.cancelled():
                    done.exception()

            task.add_done_callback(clear)
        return await asyncio.shield(self._stopping)

    async def _stop_all(self, reason: str, programs: frozenset[Program]) -> StopResult:
        began = self._clock()
        run = self._run
        if run is not None:
            await run.cancel()
            if self._run is run:
                self._run = None
        stopped: list[Program] = []
        for layer in stop_layers():
            ordered = [p for p in PROGRAMS if p in layer and p in programs]
            for program in ordered:
                self.model.stopping(program)
            results = await asyncio.gather(*(self._supervisor.stop(p) for p in ordered))
            stopped.extend(
                p for p, was_running in zip(ordered, results, strict=True) if was_running
            )
        with contextlib.suppress(SupervisorUnavailable, SupervisorError):
            await self.reader.refresh()
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
        return StopResult(stopped=stopped, elapsed_ms=elapsed, cancelled_start=run is not None)
