"""Hand-written fakes: a supervisord that replays scripted program behaviour,
probes that read it, and a watch that tells the model when a fake process exits.
No mocking library.

Time is the event loop's: the unit tests that use these run under looptime, so
the programs' start delays and every sleep of the controller pass in virtual
time, instantly and in order."""

from __future__ import annotations

import asyncio
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from browser_stack.config import Settings
from browser_stack.controller import Controller
from browser_stack.core_types import Gone, Probe, ProbeResult, ProcessInfo
from browser_stack.errors import SupervisorLate, SupervisorUnavailable
from browser_stack.observer import NullObserver
from browser_stack.stack import PROGRAMS, SPAWN_AFTER, Program
from browser_stack.states import ALIVE_STATES, ProcessState
from browser_stack.supervisor import CALL_TIMEOUT_S, START_FAULTS, map_fault

T = TypeVar("T")


@dataclass
class FakeProgram:
    name: Program
    state: ProcessState = ProcessState.STOPPED
    pid: int = 0
    started_at: float = 0.0
    ready_after_s: float | None = 0.01  # None: the probe never passes
    crash_on_start: bool = False  # goes BACKOFF then FATAL, like a crash loop
    start_fault: int | None = None
    crashes_left: int = 1_000_000
    spawnerr: str = ""
    stderr: str = ""
    hung: bool = False  # RUNNING but the probe fails
    restart_cures_hang: bool = False  # a fresh process is not hung


@dataclass
class FakeWatch:
    """The model's Watch for fake processes: the fake supervisord calls `exited`
    when one of them ends, as a pidfd would."""

    following: dict[Program, tuple[int, Gone]] = field(default_factory=dict)

    def follow(self, program: Program, pid: int, result: ProbeResult, gone: Gone) -> None:
        self.following[program] = (pid, gone)

    def forget(self, program: Program) -> None:
        self.following.pop(program, None)

    # What the kernel says of an exit ("" : it cannot, before Linux 6.15).
    how: str = "terminated by SIGKILL"

    def exited(self, program: Program, pid: int) -> None:
        followed = self.following.get(program)
        if followed is not None and followed[0] == pid:
            del self.following[program]
            followed[1](self.how, True)


@dataclass
class FakeSupervisor:
    programs: dict[Program, FakeProgram] = field(
        default_factory=lambda: {p: FakeProgram(p) for p in PROGRAMS}
    )
    calls: list[tuple[str, str]] = field(default_factory=list)
    reachable: bool = True
    spawn_violations: list[str] = field(default_factory=list)
    next_pid: int = 100
    unconfigured: set[Program] = field(default_factory=set)
    info_calls: int = 0
    watch: FakeWatch = field(default_factory=FakeWatch)
    # Every probe the fake probes answered: (program, passed).
    probe_calls: list[tuple[Program, bool]] = field(default_factory=list)
    # Set while supervisord answers; cleared by pause() (SIGSTOP), set by carry_on().
    answering: asyncio.Event = field(default_factory=lambda: _set(asyncio.Event()))
    call_timeout_s: float = CALL_TIMEOUT_S
    # Calls that got no answer within call_timeout_s.
    late_answers: int = 0

    def pause(self) -> None:
        """supervisord stops answering (SIGSTOP): calls queue up, unanswered."""
        self.answering.clear()

    def carry_on(self) -> None:
        """SIGCONT: every queued call is served, in order, whether or not its
        caller still waits (the request was in supervisord's socket)."""
        self.answering.set()

    async def _serve(self, work: Callable[[], T]) -> T:
        """One call: `work` done when supervisord answers; a call still waiting
        after call_timeout_s raises SupervisorLate, as the adapter does, and its
        work is done on resume all the same."""
        await asyncio.sleep(0)
        self._check_reachable()
        if self.answering.is_set():
            return work()

        async def later() -> T:
            await self.answering.wait()
            return work()

        served = asyncio.ensure_future(later())
        served.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            return await asyncio.wait_for(asyncio.shield(served), self.call_timeout_s)
        except TimeoutError:
            self.late_answers += 1
            raise SupervisorLate(
                f"supervisord at unix:///fake.sock did not answer within {self.call_timeout_s:g} s"
            ) from None

    def kill(self, program: Program, then: ProcessState = ProcessState.EXITED) -> None:
        """The process ends (kill -9, a crash); supervisord then says `then`."""
        p = self.programs[program]
        pid, p.pid, p.state = p.pid, 0, then
        self.watch.exited(program, pid)

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def probe_ok(self, program: Program) -> bool:
        p = self.programs[program]
        if p.state not in ALIVE_STATES or p.ready_after_s is None or p.hung:
            return False
        return self.now() - p.started_at >= p.ready_after_s

    def _check_reachable(self) -> None:
        if not self.reachable:
            raise SupervisorUnavailable("supervisord at unix:///fake.sock is not reachable")

    async def process_info(self) -> dict[Program, ProcessInfo]:
        return await self._serve(self._process_info)

    def _process_info(self) -> dict[Program, ProcessInfo]:
        self.info_calls += 1
        out = {}
        for name, p in self.programs.items():
            if name in self.unconfigured:
                continue
            # supervisord says RUNNING only startsecs after the spawn.
            starting = p.state == ProcessState.STARTING and p.ready_after_s is not None
            if starting and self.now() - p.started_at >= 0.05:
                p.state = ProcessState.RUNNING
            out[name] = ProcessInfo(
                name=str(name),
                state=p.state,
                pid=p.pid,
                start=int(p.started_at),
                now=int(self.now()),
                spawnerr=p.spawnerr,
            )
        return out

    async def start(self, program: Program) -> bool:
        return await self._serve(lambda: self._start(program))

    def _start(self, program: Program) -> bool:
        self.calls.append(("start", str(program)))
        if program in self.unconfigured:
            fault = xmlrpc.client.Fault(10, f"BAD_NAME: {program}")
            return map_fault(START_FAULTS, fault, "supervisor.startProcess", str(program))
        p = self.programs[program]
        if p.start_fault is not None:
            return map_fault(
                START_FAULTS, xmlrpc.client.Fault(p.start_fault, "fake"), "start", program
            )
        for dependency in SPAWN_AFTER[program]:
            if not self.probe_ok(dependency):
                self.spawn_violations.append(f"{program} spawned before {dependency} was ready")
        if p.state in ALIVE_STATES or p.state == ProcessState.BACKOFF:
            return False
        p.started_at = self.now()
        self.next_pid += 1
        p.pid = self.next_pid
        if p.crash_on_start and p.crashes_left > 0:
            p.crashes_left -= 1
            p.state = ProcessState.FATAL
            p.spawnerr = "Exited too quickly (process log may have details)"
            p.pid = 0
        else:
            p.state = ProcessState.STARTING
            p.spawnerr = ""
        return True

    async def stop(self, program: Program) -> bool:
        return await self._serve(lambda: self._stop(program))

    def _stop(self, program: Program) -> bool:
        self.calls.append(("stop", str(program)))
        p = self.programs[program]
        if p.state not in ALIVE_STATES and p.state != ProcessState.BACKOFF:
            return False
        pid, p.pid, p.state = p.pid, 0, ProcessState.STOPPED
        if p.restart_cures_hang:
            p.hung = False
        self.watch.exited(program, pid)  # nothing, unless the sidecar still followed it
        return True

    async def resume(self, program: Program) -> None:
        self.calls.append(("resume", str(program)))

    async def stderr_tail(self, program: Program) -> str:
        return self.programs[program].stderr

    async def exit_cause(self, program: Program) -> str:
        await asyncio.sleep(0)
        self._check_reachable()
        self.calls.append(("exit_cause", str(program)))
        return "terminated by SIGKILL; not expected"

    async def close(self) -> None:
        return None

    def starts(self, program: Program | None = None) -> list[str]:
        return [n for c, n in self.calls if c == "start" and (program is None or n == program)]


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event


def fake_probes(supervisor: FakeSupervisor) -> dict[Program, Probe]:
    def make(program: Program) -> Probe:
        async def probe() -> ProbeResult:
            await asyncio.sleep(0)
            ok = supervisor.probe_ok(program)
            supervisor.probe_calls.append((program, ok))
            if ok:
                data = {"cdp_ws": "ws://127.0.0.1:9222/devtools/browser/fake"}
                return ProbeResult(True, "ok", data if program == Program.BROWSER else {})
            return ProbeResult(False, f"{program} not answering")

        return probe

    return {p: make(p) for p in PROGRAMS}


FAST = Settings(
    probe_interval_s=0.001,
    state_interval_s=0.005,
    ready_grace_s=0.5,
    ensure_timeout_s=5.0,
    liveness_interval_s=2.0,
)


def make_controller(
    supervisor: FakeSupervisor | None = None, settings: Settings = FAST, **kwargs: object
) -> tuple[Controller, FakeSupervisor]:
    """A controller on the fakes, on the event loop's clock (looptime's, in tests
    that use it)."""
    supervisor = supervisor or FakeSupervisor()
    kwargs.setdefault("clock", asyncio.get_running_loop().time)
    controller = Controller(
        supervisor,  # type: ignore[arg-type]
        fake_probes(supervisor),
        settings,
        watch=supervisor.watch,
        **kwargs,  # type: ignore[arg-type]
    )
    return controller, supervisor


class Recorder(NullObserver):
    """An observer that keeps what the tests look at: exits, liveness failures
    and failed idle checks, by program or error."""

    def __init__(self) -> None:
        self.exits: list[str] = []
        self.liveness_failures: list[str] = []
        self.idle_errors: list[str] = []

    def program_exited(self, program: str) -> None:
        self.exits.append(program)

    def liveness_failed(self, program: str) -> None:
        self.liveness_failures.append(program)

    def idle_check_failed(self, error: str) -> None:
        self.idle_errors.append(error)
