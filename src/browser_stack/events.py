"""Events that end a program's readiness the moment they happen (liveness.py
catches what no event shows).

- `watch_exit`: a pidfd per process (`os.pidfd_open`, readable the moment the
  process exits, for any pid the sidecar can see, not only its children;
  Linux 5.3 and later), and how it ended from the same pidfd
  (PIDFD_GET_INFO, Linux 6.15 and later; before, supervisord's log says).
  Without pidfd, an exit is noticed at the next liveness check, when
  supervisord names another process or state.
- `EventWatch`: the model's `Watch`: each ready program's process, and for Xvnc
  and openbox the display and the window manager's window (x11.DisplayWatch).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import struct
from collections.abc import Callable

from browser_stack.core_types import Gone, ProbeResult
from browser_stack.stack import Program
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
