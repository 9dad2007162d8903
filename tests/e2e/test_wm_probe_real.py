"""The window-manager probe against a real Xvnc and a real openbox, no supervisord.

A window manager killed with SIGKILL leaves _NET_SUPPORTING_WM_CHECK on the root
window (xprop -root still shows it); the probe must not call that display claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from browser_stack.probes import wm_claimed

from ..helpers import free_port
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


def _wait(predicate: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


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
def xvnc() -> Iterator[tuple[str, Path]]:
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
        _wait(socket_path.exists, f"Xvnc's socket {socket_path}")
        yield f":{number}", socket_path
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_killed_window_manager_no_longer_claims_the_display(xvnc: tuple[str, Path]) -> None:
    display, socket_path = xvnc
    probe = wm_claimed(str(socket_path))
    assert not asyncio.run(probe()).ok  # no window manager yet

    with _openbox(display):
        _wait(lambda: asyncio.run(probe()).ok, "openbox to claim the display")
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
        _wait(lambda: asyncio.run(probe()).ok, "the second openbox to claim the display")
    assert not asyncio.run(probe()).ok
