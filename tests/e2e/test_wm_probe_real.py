"""The window-manager probe and the display's events against a real Xvnc and a
real openbox, no supervisord.

A window manager killed with SIGKILL leaves _NET_SUPPORTING_WM_CHECK on the root
window (xprop -root still shows it); the probe must not call that display claimed.
The display watch hears it go (DestroyNotify), and hears Xvnc go (EOF).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from browser_stack.probes import wm_claimed
from browser_stack.x11 import DisplayWatch

from ..helpers import free_port, until, wait_for
from .conftest import missing_programs

X11_DIR = Path("/tmp/.X11-unix")


def _need(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        missing_programs(f"needs {', '.join(missing)} (scripts/install-deps.sh installs them)")


def _free_display() -> int:
    for n in range(150, 250):
        if not (X11_DIR / f"X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display between :150 and :249")


def _root_property(display: str) -> str:
    return subprocess.run(
        ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout


@contextlib.contextmanager
def _openbox(display: str) -> Iterator[None]:
    """openbox on `display` while the block runs, then killed (SIGKILL)."""
    openbox = subprocess.Popen(
        ["openbox"],
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        openbox.kill()
        openbox.wait(timeout=10)


@pytest.fixture()
def xvnc() -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    _need("Xvnc", "openbox", "xprop")
    number = _free_display()
    process = subprocess.Popen(
        [
            "Xvnc",
            f":{number}",
            "-rfbport",
            str(free_port()),
            "-SecurityTypes",
            "None",
            "-localhost",
            "-nolisten",
            "tcp",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    socket_path = X11_DIR / f"X{number}"
    try:
        wait_for(socket_path.exists, what=f"Xvnc's socket {socket_path}")
        yield f":{number}", socket_path, process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=10)


def test_a_killed_window_manager_no_longer_claims_the_display(
    xvnc: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    display, socket_path, _ = xvnc
    probe = wm_claimed(str(socket_path))
    assert not asyncio.run(probe()).ok  # no window manager yet

    with _openbox(display):
        wait_for(lambda: asyncio.run(probe()).ok, what="openbox to claim the display")
        claimed = asyncio.run(probe())
        assert "window id #" in claimed.detail

    # The root window still names openbox's window...
    assert "window id #" in _root_property(display)
    # ...but that window went with openbox.
    dead = asyncio.run(probe())
    assert not dead.ok
    assert "window is gone" in dead.detail

    # A new openbox claims the display again, and the same probe sees it.
    with _openbox(display):
        wait_for(lambda: asyncio.run(probe()).ok, what="the second openbox to claim the display")
    assert not asyncio.run(probe()).ok


async def test_the_display_watch_hears_the_window_manager_and_the_x_server_go(
    xvnc: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    display, socket_path, server = xvnc
    probe = wm_claimed(str(socket_path))
    heard: list[str] = []
    watch = DisplayWatch(str(socket_path))
    try:
        watch.follow_display(lambda: heard.append("display"))
        with _openbox(display):
            async with asyncio.timeout(20):
                while not (claimed := await probe()).ok:  # noqa: ASYNC110 - polling X
                    await asyncio.sleep(0.05)
            window = int(claimed.data["window"])
            watch.follow_wm(window, lambda: heard.append("wm"))
            await asyncio.sleep(0.5)
            assert heard == []  # nothing to tell while openbox runs
        # _openbox killed it (SIGKILL): its window is destroyed, and we are told.
        await until(lambda: heard == ["wm"], timeout_s=10)
        server.kill()
        await until(lambda: heard == ["wm", "display"], timeout_s=10)
    finally:
        await watch.close()
