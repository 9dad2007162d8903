"""Stale X display locks.

Xvnc refuses a display whose lock file (/tmp/.X99-lock) names a live pid. After
a container restart that pid is often reused by an unrelated process, so Xvnc
goes FATAL and the whole stack with it. Before starting Xvnc we remove a lock
whose pid is dead or is not an X server, and the socket beside it. A live X
server's lock is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from browser_stack.config import Settings
from browser_stack.core_types import Hook
from browser_stack.errors import PortInUse
from browser_stack.stack import X_SERVER_NAMES, Program

log = logging.getLogger(__name__)


def lock_path(settings: Settings) -> str:
    # Xvnc keeps the lock in the parent of the socket directory (/tmp).
    return os.path.join(
        os.path.dirname(settings.x11_socket_dir), f".X{settings.display_number}-lock"
    )


def read_lock_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return int(f.read().strip())
    except FileNotFoundError:
        return None
    except ValueError:
        return 0  # unreadable content: nobody can own it


def holder_is_x_server(pid: int) -> bool:
    import psutil  # only when a lock file is there: most starts never load it

    try:
        process = psutil.Process(pid)
        names = {process.name()}
        with contextlib.suppress(psutil.Error, IndexError):
            names.add(os.path.basename(process.cmdline()[0]))
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell: leave it alone
    return bool(names & X_SERVER_NAMES)


def clear_stale_lock(lock: str, socket: str) -> str | None:
    """Remove a stale lock and socket; return why, or None if nothing was done."""
    pid = read_lock_pid(lock)
    if pid is None:
        return None
    if pid > 0 and holder_is_x_server(pid):
        return None
    import psutil

    why = f"lock {lock} names pid {pid}, which is " + (
        "not an X server" if pid > 0 and psutil.pid_exists(pid) else "gone"
    )
    for path in (lock, socket):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    log.warning("removed stale X lock: %s", why)
    return why


def live_holder(lock: str) -> int | None:
    """The pid of a live X server named by the lock, if any."""
    pid = read_lock_pid(lock)
    if pid and holder_is_x_server(pid):
        return pid
    return None


def hook(settings: Settings) -> Hook:
    """Run before tigervnc is spawned (it is not alive then, so a live X
    server on its display is somebody else's)."""

    async def before_tigervnc() -> None:
        lock = lock_path(settings)
        await asyncio.to_thread(clear_stale_lock, lock, settings.x11_socket)
        pid = await asyncio.to_thread(live_holder, lock)
        if pid is not None:
            raise PortInUse(
                Program.TIGERVNC,
                f"tigervnc cannot start: display {settings.display} is already served "
                f"by X server pid {pid} ({lock})",
                state="STOPPED",
                port=settings.display,
                pid=pid,
            )

    return before_tigervnc
