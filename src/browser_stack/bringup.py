"""Bringing one program up: decide what to do from supervisord's state, do it,
then probe until ready.

`next_action` is the decision, pure and tested as a table. `BringUp` acts on it:
the stop of a failed program, the checks before a spawn (stale X lock, a foreign
holder of the port), the spawn itself (`startProcess(name, False)`, the one
place a program is spawned), and the probe loop that watches supervisord's
state on shared ticks to see a crash early. Bounded retries around all of it.

A late answer from supervisord (`SupervisorLate`: connected, no answer within
the call timeout) is not a failure but an unknown: whatever it was (a state
read, a spawn, a stop), the attempt reads the state again and goes on from
what it says, as often as it takes. Only supervisord's own word (a state, a
fault), a probe that never passes, or supervisord gone fails a start.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Protocol

from browser_stack.config import Settings
from browser_stack.core_types import CpuWait, Hook, PortLookup, Probe, ProcessInfo, Supervisor
from browser_stack.errors import BrowserStackError, PortInUse, ProgramFailed, SupervisorLate
from browser_stack.model import ReadinessModel
from browser_stack.observer import Observer
from browser_stack.readiness import Readiness
from browser_stack.stack import PORT_PROGRAMS, PROGRAMS, Program, dependents_of, stop_layers
from browser_stack.states import ALIVE_STATES, FAILED_STATES, ProcessState

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
RETRY_PAUSE_S = 0.2

# A read of supervisord's state, shared with whoever asks at or after `since`.
Refresh = Callable[[float | None], Awaitable[Mapping[Program, ProcessInfo]]]


class Action(StrEnum):
    SPAWN = "spawn"
    # BACKOFF would answer ALREADY_STARTED, and FATAL needs a fresh start.
    STOP_THEN_SPAWN = "stop, then spawn"
    WAIT_FOR_STOP = "wait for its stop to end"
    PROBE = "probe"
    # Alive but never ready (a hung Chromium, a dead CDP): SIGCONT, stop it and
    # the programs that use it, spawn it again.
    RESTART = "restart"
    # supervisord has no such program: trying again cannot help.
    FAIL = "fail"


def next_action(state: ProcessState | None, restart: bool) -> Action:
    """What to do with a program in `state` (None: supervisord does not name it);
    `restart`: an earlier attempt found it alive and never ready."""
    if state is None:
        return Action.FAIL
    if state == ProcessState.STOPPING:
        return Action.WAIT_FOR_STOP
    if state in ALIVE_STATES:
        return Action.RESTART if restart else Action.PROBE
    if state in FAILED_STATES or state == ProcessState.UNKNOWN:
        return Action.STOP_THEN_SPAWN
    return Action.SPAWN


class Starvation:
    """How long one starting program's process has waited for a CPU since the
    attempt first saw its pid: a busy machine's delay, not a hang. A hung
    program (stopped, deadlocked, waiting on what never comes) is not runnable
    and gains no such wait."""

    def __init__(self, read: CpuWait | None) -> None:
        self._read = read
        self._pid = 0
        self._base = 0.0

    def observe(self, pid: int) -> None:
        if self._read is not None and pid > 0 and pid != self._pid:
            wait = self._read(pid)
            self._pid, self._base = (pid, wait) if wait is not None else (0, 0.0)

    def seconds(self) -> float:
        wait = self._read(self._pid) if self._read is not None and self._pid > 0 else None
        return max(0.0, wait - self._base) if wait is not None else 0.0


class Progress(Protocol):
    """Where a bring-up tells what it is doing (for 504 answers) and what it spawned."""

    def waiting(self, program: Program, why: str) -> None: ...

    def spawned(self, program: Program) -> None: ...


class BringUp:
    def __init__(
        self,
        supervisor: Supervisor,
        probes: Mapping[Program, Probe],
        model: ReadinessModel,
        refresh: Refresh,
        settings: Settings,
        *,
        clock: Callable[[], float],
        observer: Observer,
        before_start: Mapping[Program, Hook] | None = None,
        port_holder: PortLookup | None = None,
        cpu_wait: CpuWait | None = None,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self._supervisor = supervisor
        self._cpu_wait = cpu_wait
        self._probes = probes
        self._model = model
        self._refresh = refresh
        self._settings = settings
        self._clock = clock
        self._observer = observer
        self._before_start = dict(before_start or {})
        self._port_holder = port_holder
        self._max_attempts = max_attempts
        # The port each program's probe waits on: held by anything else before
        # the spawn, the program cannot come up there.
        self._ports = {PORT_PROGRAMS[kind]: port for kind, port in settings.program_ports.items()}

    async def __call__(self, program: Program, progress: Progress) -> list[Program]:
        """Bring `program` up, retrying what may work next time. Returns the
        programs that use it which a restart of it stopped: theirs to bring up."""
        # Here, not at the top: a sidecar that never starts the stack never loads it.
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_fixed

        users: list[Program] = []
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_fixed(RETRY_PAUSE_S),
            retry=retry_if_exception(lambda exc: isinstance(exc, ProgramFailed) and exc.retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    retry = attempt.retry_state.attempt_number > 1
                    users += await self._attempt(program, progress, retry=retry)
        except BrowserStackError as exc:
            state = self._state_name(program)
            log.warning(
                "start failed program=%s state=%s: %s",
                program,
                state,
                exc,
                extra={"program": str(program), "state": state, "event": "failed"},
            )
            raise
        return users

    def not_started(self, program: Program, dependency: Program) -> None:
        log.warning(
            "not started program=%s state=%s: it needs %s, which failed",
            program,
            self._state_name(program),
            dependency,
            extra={"program": str(program), "event": "not_started"},
        )

    def _state_name(self, program: Program) -> str:
        state = self._model.facts(program).state
        return state.name if state is not None else "NOT_CONFIGURED"

    async def _attempt(self, program: Program, progress: Progress, *, retry: bool) -> list[Program]:
        """One attempt, from a fresh read of supervisord's state when it is a
        retry. A late answer anywhere in it leaves what supervisord said or did
        unknown: read the state again and go on from there (not a failed
        attempt; the callers' deadlines bound their wait, not this). A retry
        replaces the process the failed attempt left, never one spawned since."""
        replace: int | None = None
        # The users a restart stopped: theirs to bring up, late answer or not.
        users: list[Program] = []
        read = retry
        while True:
            try:
                if read:
                    await self._refresh(None)
                    if retry and replace is None:
                        info = self._model.info(program)
                        replace = info.pid if info is not None else 0
                await self._act(program, progress, replace, users)
                return users
            except SupervisorLate as late:
                read = True
                progress.waiting(program, f"{late.message}; reading its state again")
                log.info(
                    "late answer program=%s: %s; reading its state again",
                    program,
                    late.message,
                    extra={"program": str(program), "event": "late"},
                )

    async def _act(
        self, program: Program, progress: Progress, replace: int | None, users: list[Program]
    ) -> None:
        """Act on supervisord's state as the model has it, then probe until
        ready. `replace`: the pid of the process a retry must replace; `users`
        gets the programs using it that a restart stopped."""
        while True:
            info = self._model.info(program)
            state = info.state if info is not None else None
            restart = replace is not None and info is not None and info.pid == replace
            action = next_action(state, restart)
            progress.waiting(program, f"{action} ({state.name if state else 'not configured'})")
            if action == Action.FAIL:
                raise ProgramFailed(
                    program,
                    f"{program} is not configured in supervisord",
                    state="NOT_CONFIGURED",
                    retryable=False,
                )
            if action == Action.WAIT_FOR_STOP:
                await asyncio.sleep(self._settings.state_interval_s)
                await self._refresh(None)
                continue
            if action == Action.RESTART:
                users += await self._stop_users(program)
                await self._supervisor.resume(program)
            if action in (Action.RESTART, Action.STOP_THEN_SPAWN):
                log.info("restarting program=%s state=%s", program, state.name if state else "")
                self._model.stopping(program)
                await self._supervisor.stop(program)
                await self._refresh(None)
            if action != Action.PROBE:
                await self._spawn(program, progress)
            break
        await self._until_ready(program, progress)

    async def _spawn(self, program: Program, progress: Progress) -> None:
        state = self._model.facts(program).state
        if state in ALIVE_STATES:
            return  # someone else started it meanwhile
        hook = self._before_start.get(program)
        if hook is not None:
            await hook()
        await self._check_port_free(program, state)
        try:
            spawned = await self._supervisor.start(program)
        except SupervisorLate:
            progress.spawned(program)  # asked for; whether it was, the next read says
            raise
        if spawned:
            progress.spawned(program)
        self._model.spawned(program)

    async def _until_ready(self, program: Program, progress: Progress) -> None:
        # A pass counts for the process supervisord names: a program just
        # spawned has its pid in the next read of supervisord's state, begun now,
        # so that it is there by the time the probe passes.
        spawned = self._clock()
        info = self._model.info(program)
        pid_read = None
        if info is None or not info.pid:
            pid_read = asyncio.ensure_future(self._refresh(spawned))
        try:
            await self._probe_until_ready(program, progress, spawned, pid_read)
        finally:
            if pid_read is not None and not pid_read.done():
                pid_read.cancel()
            elif pid_read is not None and not pid_read.cancelled():
                pid_read.exception()  # seen here, whatever it was

    async def _probe_until_ready(
        self,
        program: Program,
        progress: Progress,
        spawned: float,
        pid_read: asyncio.Future[Mapping[Program, ProcessInfo]] | None,
    ) -> None:
        settings = self._settings
        probe = self._probes[program]
        next_tick = self._tick_after(spawned)
        starvation = Starvation(self._cpu_wait)
        extended = False
        while True:
            began = self._clock()
            result = await probe()
            self._observer.probed(str(program), "start")
            if result.ok:
                if pid_read is not None:
                    await pid_read
                info = self._model.info(program)
                if info is not None and self._model.passed(program, info.pid, result, began):
                    elapsed = self._clock() - spawned
                    self._observer.program_ready(str(program), elapsed)
                    log.info(
                        "ready program=%s pid=%d state=%s after %.0f ms",
                        program,
                        info.pid,
                        info.state.name,
                        elapsed * 1000,
                        extra={
                            "program": str(program),
                            "state": info.state.name,
                            "elapsed_ms": round(elapsed * 1000, 1),
                            "event": "ready",
                        },
                    )
                    return
            now = self._clock()
            facts = self._model.facts(program)
            state_name = facts.state.name if facts.state else "NOT_CONFIGURED"
            progress.waiting(program, f"{state_name}, probe: {result.detail}")
            if now - spawned > settings.ready_grace_s:
                # The grace is for hangs: time spent waiting for a CPU (many
                # starts at once on a small machine) does not count, or every
                # slow start would be killed and begun again, on the same CPUs.
                starved = starvation.seconds()
                if now - spawned - starved > settings.ready_grace_s:
                    raise ProgramFailed(
                        program,
                        f"{program} is {state_name} but not ready after "
                        f"{settings.ready_grace_s:g} s"
                        + (f" (and {starved:.1f} s waiting for a CPU)" if starved else "")
                        + f": {result.detail}",
                        state=state_name,
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
            if now >= next_tick:
                await self._refresh(next_tick)
                await self._fail_if_down(program)
                info = self._model.info(program)
                if info is not None:
                    starvation.observe(info.pid)
                next_tick = self._tick_after(now)
            await asyncio.sleep(settings.probe_interval_s)

    async def _fail_if_down(self, program: Program) -> None:
        readiness = self._model.readiness(program)
        if readiness not in (Readiness.FAILED, Readiness.STOPPED, Readiness.UNKNOWN):
            return
        info = self._model.info(program)
        state = info.state.name if info is not None else "NOT_CONFIGURED"
        spawnerr = info.spawnerr if info is not None else ""
        tail = await self._supervisor.stderr_tail(program)
        raise ProgramFailed(
            program,
            f"{program} went {state} while starting" + (f": {spawnerr}" if spawnerr else ""),
            state=state,
            spawnerr=spawnerr,
            stderr_tail=tail,
        )

    def _tick_after(self, moment: float) -> float:
        # The programs starting together check supervisord's state on the same
        # ticks and share one getAllProcessInfo per tick: one call each cost
        # supervisord CPU that the programs it was starting needed.
        interval = self._settings.state_interval_s
        return (math.floor(moment / interval) + 1) * interval

    async def _check_port_free(self, program: Program, state: ProcessState | None) -> None:
        port = self._ports.get(program)
        if port is None or self._port_holder is None:
            return
        holder = await self._port_holder(port)
        if holder is not None:
            raise PortInUse(
                program,
                f"{program} cannot start: {holder.describe()}",
                state=state.name if state else "STOPPED",
                port=port,
                pid=holder.pid,
            )

    async def _stop_users(self, program: Program) -> list[Program]:
        """Stop the alive programs that use `program`, last user first: they
        would keep a connection to the process being replaced."""
        users = [
            p
            for layer in stop_layers()
            for p in PROGRAMS
            if p in layer
            and p in dependents_of(program)
            and self._model.facts(p).state in ALIVE_STATES
        ]
        for user in users:
            log.info("stopping program=%s, it uses %s which is being restarted", user, program)
            self._model.stopping(user)
            await self._supervisor.stop(user)
        return list(reversed(users))
