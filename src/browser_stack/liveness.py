"""What keeps the readiness model current where no event tells, and what an
exit is told as (events.py notices exits and the display's events).

- `Liveness`: the one case no event shows is a hang. While anything is up,
  every interval, supervisord's state and the probe of each program that holds
  a pass; a failure ends its readiness, and the next ensure brings it up again
  (restarting it after the grace period, as a start does).
- `ExitLog`: what an exit is told as: counted at once, logged with how it
  ended as soon as supervisord says.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from browser_stack.core_types import ProcessInfo, Supervisor
from browser_stack.errors import SupervisorError, SupervisorUnavailable
from browser_stack.observer import Observer
from browser_stack.stack import Program
from browser_stack.stack_reader import Reader

log = logging.getLogger(__name__)


class Liveness:
    def __init__(self, reader: Reader, *, interval_s: float, observer: Observer) -> None:
        self._reader = reader
        self._model = reader.model
        self._interval_s = interval_s
        self._observer = observer

    async def run(self) -> None:
        """For the app's lifetime; idle while nothing is up."""
        while True:
            await self._model.up.wait()
            await asyncio.sleep(self._interval_s)
            try:
                await self.check()
            except Exception:
                log.exception("liveness check failed; the next one runs as usual")

    async def check(self) -> None:
        try:
            await self._reader.refresh()
        except (SupervisorUnavailable, SupervisorError) as exc:
            # The processes' own events and probes still tell: go on with them.
            log.warning("liveness check: %s", exc.message)
        await asyncio.gather(*(self._check(p) for p in self._model.holding()))

    async def _check(self, program: Program) -> None:
        result = await self._reader.probe(program, "liveness")
        if result is not None and not result.ok:
            self._observer.liveness_failed(str(program))
            self._model.lost(program, f"liveness check failed: {result.detail}")


class ExitLog:
    """Counts an exit and logs it at once, with how it ended where the pidfd
    told (a process still being reaped, or a kernel before 6.15, cannot say
    yet). Then supervisord's state is read, and where the kernel did not say,
    a second line gives supervisord's account: its state first (a read served
    after supervisord has reaped the process), then its log."""

    def __init__(
        self,
        supervisor: Supervisor,
        refresh: Callable[[], Awaitable[Mapping[Program, ProcessInfo]]],
        observer: Observer,
    ) -> None:
        self._supervisor = supervisor
        self._refresh = refresh
        self._observer = observer
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, program: Program, pid: int, how: str) -> None:
        self._observer.program_exited(str(program))
        log.warning(
            "exited program=%s pid=%d: %s",
            program,
            pid,
            how or "how it ended: asking supervisord",
            extra={"program": str(program), "pid": pid, "event": "exited", "reason": how},
        )
        task = asyncio.ensure_future(self._after(program, pid, explained=bool(how)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _after(self, program: Program, pid: int, *, explained: bool) -> None:
        try:
            info = (await self._refresh()).get(program)
            if explained:
                return
            how = await self._supervisor.exit_cause(program) or "not in supervisord's log"
            now = f"{info.state.name} pid {info.pid}" if info else "not configured"
        except (SupervisorUnavailable, SupervisorError) as exc:
            how, now = "unknown", f"unreachable ({exc.message})"
        log.warning(
            "ended program=%s pid=%d: %s; supervisord now: %s",
            program,
            pid,
            how,
            now,
            extra={"program": str(program), "pid": pid, "event": "ended", "reason": how},
        )
