from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from browser_stack.coalesce import Coalescer
from browser_stack.xlock import clear_stale_lock


async def test_callers_arriving_during_a_round_get_the_next_round() -> None:
    started: list[int] = []
    gate = asyncio.Event()

    async def work() -> int:
        started.append(len(started))
        await gate.wait()
        return len(started)

    coalescer = Coalescer(work)
    first = asyncio.ensure_future(coalescer.get())
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(coalescer.get()) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    assert await first == 1
    # All fifty shared one fresh round that began after they arrived.
    assert set(await asyncio.gather(*later)) == {2}
    assert coalescer.rounds == 2


async def test_a_caller_may_join_a_round_that_began_after_its_since() -> None:
    now = [10.0]
    gate = asyncio.Event()
    rounds: list[int] = []

    async def work() -> int:
        rounds.append(len(rounds) + 1)
        number = len(rounds)
        await gate.wait()
        return number

    coalescer = Coalescer(work, clock=lambda: now[0])
    first = asyncio.ensure_future(coalescer.get())
    await asyncio.sleep(0)
    now[0] = 11.0
    # Began at 10: news enough for a caller that arrived at 9.5, not at 10.5.
    joins = asyncio.ensure_future(coalescer.get(since=9.5))
    waits = asyncio.ensure_future(coalescer.get(since=10.5))
    await asyncio.sleep(0)
    gate.set()
    assert await first == await joins == 1
    assert await waits == 2
    assert coalescer.rounds == 2


async def test_a_cancelled_caller_does_not_cancel_the_round() -> None:
    async def work() -> str:
        await asyncio.sleep(0.02)
        return "done"

    coalescer = Coalescer(work)
    a = asyncio.ensure_future(coalescer.get())
    b = asyncio.ensure_future(coalescer.get())
    await asyncio.sleep(0)
    a.cancel()
    assert await b == "done"


def _lock(tmp_path: Path, pid: int) -> tuple[str, str]:
    lock = tmp_path / ".X99-lock"
    lock.write_text(f"{pid:>10}\n")
    sock = tmp_path / "X99"
    sock.write_text("")
    return str(lock), str(sock)


def test_lock_of_a_dead_pid_is_removed(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    lock, sock = _lock(tmp_path, child.pid)
    assert "gone" in (clear_stale_lock(lock, sock) or "")
    assert not os.path.exists(lock)
    assert not os.path.exists(sock)


def test_lock_naming_a_live_non_x_process_is_removed(tmp_path: Path) -> None:
    lock, sock = _lock(tmp_path, os.getpid())
    assert "not an X server" in (clear_stale_lock(lock, sock) or "")
    assert not os.path.exists(lock)


def test_lock_of_a_live_x_server_is_kept(tmp_path: Path) -> None:
    # A process whose executable is called Xvnc, as the kernel reports it.
    fake_x = tmp_path / "Xvnc"
    fake_x.symlink_to("/bin/sleep")
    child = subprocess.Popen([str(fake_x), "30"])
    try:
        lock, sock = _lock(tmp_path, child.pid)
        assert clear_stale_lock(lock, sock) is None
        assert os.path.exists(lock)
        assert os.path.exists(sock)
    finally:
        child.kill()
        child.wait()


def test_no_lock_is_nothing_to_do(tmp_path: Path) -> None:
    assert clear_stale_lock(str(tmp_path / "none"), str(tmp_path / "X99")) is None


def test_tigervnc_hook_refuses_a_display_served_by_a_live_x_server(tmp_path: Path) -> None:
    from browser_stack.config import Settings
    from browser_stack.errors import PortInUse
    from browser_stack.xlock import hook

    fake_x = tmp_path / "Xvfb"
    fake_x.symlink_to("/bin/sleep")
    child = subprocess.Popen([str(fake_x), "30"])
    try:
        (tmp_path / ".X11-unix").mkdir()
        (tmp_path / ".X77-lock").write_text(f"{child.pid:>10}\n")
        settings = Settings(display=":77", x11_socket_dir=str(tmp_path / ".X11-unix"))
        with pytest.raises(PortInUse) as caught:
            asyncio.run(hook(settings)())
        assert caught.value.fields["pid"] == child.pid
        assert "already served" in caught.value.message
    finally:
        child.kill()
        child.wait()
    # The server is gone now: the same lock is stale and the hook clears it.
    asyncio.run(hook(settings)())
    assert not (tmp_path / ".X77-lock").exists()
