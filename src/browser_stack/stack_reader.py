"""Reading the stack: the model, supervisord's state read on shared ticks, one
probe at a time, and a look at everything for status, metrics and /readyz.

Nothing here starts or stops a program.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from browser_stack.coalesce import Coalescer
from browser_stack.config import Settings
from browser_stack.core_types import Probe, ProbeResult, ProcessInfo, Supervisor
from browser_stack.errors import SupervisorError, SupervisorUnavailable
from browser_stack.model import ProgramStatus, ReadinessModel
from browser_stack.observer import Observer
from browser_stack.readiness import Readiness
from browser_stack.stack import PORTS, PROGRAMS, Program


@dataclass(frozen=True)
class StatusReport:
    programs: dict[Program, ProgramStatus]
    # Why supervisord could not be asked; empty when it answered.
    supervisor_error: str


@dataclass(frozen=True)
class HostProblems:
    unreachable: str = ""
    missing: tuple[Program, ...] = ()

    @property
    def reasons(self) -> list[str]:
        if self.unreachable:
            return [self.unreachable]
        return [f"{p} is not configured in supervisord" for p in self.missing]


class Reader:
    def __init__(
        self,
        supervisor: Supervisor,
        probes: Mapping[Program, Probe],
        model: ReadinessModel,
        *,
        clock: Callable[[], float],
        observer: Observer,
    ) -> None:
        self._supervisor = supervisor
        self._probes = probes
        self.model = model
        self._clock = clock
        self._observer = observer
        # Programs starting together read supervisord's state on shared ticks:
        # one getAllProcessInfo per tick, whatever the number of programs.
        self._reads: Coalescer[Mapping[Program, ProcessInfo]] = Coalescer(self._read, clock)

    async def refresh(self, since: float | None = None) -> Mapping[Program, ProcessInfo]:
        """supervisord's state of the five, read at or after `since` (default:
        after this call), and told to the model."""
        return await self._reads.get(since)

    async def _read(self) -> Mapping[Program, ProcessInfo]:
        infos = await self._supervisor.process_info()
        self.model.observe(infos)
        return infos

    async def probe(self, program: Program, purpose: str) -> ProbeResult | None:
        """Probe `program` once and tell the model of a pass, for the process
        supervisord named before the probe began. None: supervisord names none."""
        info = self.model.info(program)
        if info is None:
            return None
        began = self._clock()
        result = await self._probes[program]()
        self._observer.probed(str(program), purpose)
        if result.ok:
            self.model.passed(program, info.pid, result, began)
        return result

    async def look(self) -> None:
        """supervisord's state, and a probe of each program it keeps alive that
        is not known ready (a stack started at boot or by someone else, or
        before this sidecar started). A ready stack costs one XML-RPC call."""
        await self.refresh()
        unknown = [p for p in PROGRAMS if self.model.readiness(p) == Readiness.STARTING]
        await asyncio.gather(*(self.probe(p, "status") for p in unknown))

    async def status(self) -> StatusReport:
        """Each program's state, readiness and why it failed; without
        supervisord, what the model last knew."""
        try:
            await self.look()
        except (SupervisorUnavailable, SupervisorError) as exc:
            return StatusReport(self.model.statuses(), exc.message)
        failed = [p for p in PROGRAMS if self.model.readiness(p) == Readiness.FAILED]
        tails = await asyncio.gather(*(self._supervisor.stderr_tail(p) for p in failed))
        reasons: dict[Program, dict[str, str]] = {}
        for program, tail in zip(failed, tails, strict=True):
            info = self.model.info(program)
            reasons[program] = {"spawnerr": info.spawnerr if info else "", "stderr_tail": tail}
        for program in PROGRAMS:
            if self.model.readiness(program) == Readiness.STARTING:
                reasons[program] = {"probe": self.model.probe(program).detail}
        return StatusReport({p: self.model.status(p, reasons.get(p)) for p in PROGRAMS}, "")

    async def host_problems(self) -> HostProblems:
        """What keeps any ensure from working: supervisord not answering, or
        programs it does not have. Asks supervisord only."""
        try:
            infos = await self.refresh()
        except (SupervisorUnavailable, SupervisorError) as exc:
            # Refused credentials count as unreachable: nothing can be asked.
            return HostProblems(unreachable=exc.message)
        return HostProblems(missing=tuple(p for p in PROGRAMS if p not in infos))


def endpoints(settings: Settings, cdp_ws: str) -> dict[str, str]:
    """Where clients connect, as `settings.public_host` names it."""
    s = settings
    host = s.public_host
    if s.activation == "proxy" and cdp_ws:
        # Chromium names the port it was asked on; behind the activation proxy
        # the probe asked the internal port, and clients must use the public one.
        internal = f"127.0.0.1:{s.internal_cdp_port}/"
        cdp_ws = cdp_ws.replace(internal, f"{host}:{s.cdp_port}/", 1)
    public = s.public_ports
    urls = {p.name: p.url.format(host=host, port=public[p.name]) for p in PORTS}
    return {**urls, "cdp_ws": cdp_ws}
