"""What keeps the readiness model current between requests.

- `watch_exit`: a pidfd per process (`os.pidfd_open`, readable the moment the
  process exits, for any pid the sidecar can see, not only its children;
  Linux 5.3 and later), and how it ended from the same pidfd
  (PIDFD_GET_INFO, Linux 6.15 and later; before, supervisord's log says).
  Without pidfd, an exit is noticed at the next liveness check, when
  supervisord names another process or state.
- `EventWatch`: the model's `Watch`: each ready program's process, and for Xvnc
  and openbox the display and the window manager's window (x11.DisplayWatch).
- `ExitLog`: what an exit is told as: counted at once, logged with how it
  ended as soon as supervisord says.
- `Liveness`: the one case no event shows is a hang. While anything is up,
  every interval, supervisord's state and the probe of each program that holds
  a pass; a failure ends its readiness, and the next ensure brings it up again
  (restarting it after the grace period, as a start does).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import struct
from collections.abc import Awaitable, Callable, Mapping

from browser_stack.errors import SupervisorError, SupervisorUnavailable
from browser_stack.model import Gone
from browser_stack.observer import Observer
from browser_stack.probes import ProbeResult
from browser_stack.reader import Reader
from browser_stack.stack import Program
from browser_stack.supervisor import ProcessInfo, Supervisor
from browser_stack.x11 import DisplayWatch

log = logging.getLogger(__name__)

Cancel = Callable[[], None]
_warned_no_pidfd = False

# linux/pidfd.h: ioctl(pidfd, PIDFD_GET_INFO, struct pidfd_info) with
# PIDFD_INFO_EXIT in its mask gives the exit status of a process that has
# exited, child or not. exit_code sits at byte 60 of the 64-byte version 0.
_PIDFD_INFO_SIZE = 64
_PIDFD_GET_INFO = (3 << 30) | (_PIDFD_INFO_SIZE << 16) | (0xFF << 8) | 11
_PIDFD_INFO_EXIT = 1 << 3
_EXIT_CODE = struct.Struct("=i")
_EXIT_CODE_OFFSET = 60


def how_it_ended(pidfd: int) -> str:
    """ "terminated by SIGKILL", "exit status 1", or "" where the kernel cannot say."""
    info = bytearray(_PIDFD_INFO_SIZE)
    struct.pack_into("=Q", info, 0, _PIDFD_INFO_EXIT)
    try:
        fcntl.ioctl(pidfd, _PIDFD_GET_INFO, info)
    except OSError:
        return ""
    if not struct.unpack_from("=Q", info, 0)[0] & _PIDFD_INFO_EXIT:
        return ""
    status = _EXIT_CODE.unpack_from(info, _EXIT_CODE_OFFSET)[0]
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"terminated by {signal.Signals(number).name}"
        except ValueError:
            return f"terminated by signal {number}"
    if os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    return ""


def watch_exit(pid: int, on_exit: Callable[[str], None]) -> Cancel:
    """Call `on_exit(how)` once when process `pid` exits ("" when how it ended
    is not known); returns what cancels it."""
    global _warned_no_pidfd
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        loop.call_soon(on_exit, "")  # already gone
        return lambda: None
    except (OSError, AttributeError) as exc:
        if not _warned_no_pidfd:
            _warned_no_pidfd = True
            log.warning("no pidfd (%s): exits are noticed by the liveness checks", exc)
        return lambda: None
    closed = False

    def cancel() -> None:
        nonlocal closed
        if not closed:
            closed = True
            loop.remove_reader(fd)
            os.close(fd)

    def readable() -> None:
        how = how_it_ended(fd)
        cancel()
        on_exit(how)

    loop.add_reader(fd, readable)
    return cancel


class EventWatch:
    def __init__(self, display: DisplayWatch | None = None) -> None:
        self._display = display
        self._exits: dict[Program, tuple[int, Cancel]] = {}

    def follow(self, program: Program, pid: int, result: ProbeResult, gone: Gone) -> None:
        current = self._exits.get(program)
        if current is None or current[0] != pid:
            if current is not None:
                current[1]()
            self._exits[program] = (pid, watch_exit(pid, lambda how: gone(how, True)))
        if self._display is None:
            return
        if program == Program.TIGERVNC:
            self._display.follow_display(lambda: gone("its X display closed", False))
        elif program == Program.OPENBOX and result.data.get("window"):
            self._display.follow_wm(
                int(result.data["window"]),
                lambda: gone("its window manager window was destroyed", False),
            )

    def forget(self, program: Program) -> None:
        current = self._exits.pop(program, None)
        if current is not None:
            current[1]()
        if self._display is not None:
            if program == Program.TIGERVNC:
                self._display.forget_display()
            elif program == Program.OPENBOX:
                self._display.forget_wm()

    async def close(self) -> None:
        for program in list(self._exits):
            self.forget(program)
        if self._display is not None:
            await self._display.close()


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
