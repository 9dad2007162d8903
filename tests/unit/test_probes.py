from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from browser_stack.probes import (
    _listening_inode_proc,
    cdp_version,
    listening_inode,
    rfb_banner,
    rfb_banner_once,
    tcp_accepts,
    unix_accepts,
    wm_claimed_xprop,
)


async def _server(banner: bytes, counter: list[int]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counter.append(1)
        writer.write(banner)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_rfb_banner_passes_only_for_rfb() -> None:
    counter: list[int] = []
    good = await _server(b"RFB 003.008\n", counter)
    bad = await _server(b"HTTP/1.1 400\r\n", counter)
    async with good, bad:
        good_port = good.sockets[0].getsockname()[1]
        bad_port = bad.sockets[0].getsockname()[1]
        assert (await rfb_banner("127.0.0.1", good_port)()).ok
        result = await rfb_banner("127.0.0.1", bad_port)()
        assert not result.ok
        assert "not an RFB banner" in result.detail


async def test_rfb_banner_once_connects_once_per_listener() -> None:
    counter: list[int] = []
    server = await _server(b"RFB 003.008\n", counter)
    async with server:
        port = server.sockets[0].getsockname()[1]
        assert listening_inode(port) is not None
        probe = rfb_banner_once("127.0.0.1", port)
        results = [await probe() for _ in range(20)]
        assert all(r.ok for r in results)
        assert len(counter) == 1
    assert listening_inode(port) is None
    assert not (await probe()).ok


def test_listening_inode_agrees_with_proc_net() -> None:
    # The netlink answer and the /proc/net fallback name the same socket.
    with socket.socket() as v4, socket.socket(socket.AF_INET6) as v6:
        v4.bind(("127.0.0.1", 0))
        v6.bind(("::1", 0))
        for s in (v4, v6):
            s.listen()
            port = s.getsockname()[1]
            assert (
                listening_inode(port)
                == _listening_inode_proc(port, "/proc/net")
                == (os.fstat(s.fileno()).st_ino)
            )
        unused = v4.getsockname()[1]
    assert listening_inode(unused) is None


async def test_tcp_and_unix_probes(tmp_path: Path) -> None:
    counter: list[int] = []
    server = await _server(b"", counter)
    path = str(tmp_path / "X5")
    unix = await asyncio.start_unix_server(lambda r, w: w.close(), path)
    async with server, unix:
        port = server.sockets[0].getsockname()[1]
        assert (await tcp_accepts("127.0.0.1", port)()).ok
        assert (await unix_accepts(path)()).ok
    assert not (await tcp_accepts("127.0.0.1", port)()).ok
    assert not (await unix_accepts(str(tmp_path / "missing"))()).ok


@pytest.fixture
async def cdp_server() -> AsyncIterator[TestServer]:
    async def version(request: web.Request) -> web.Response:
        host = request.host
        return web.json_response(
            {"Browser": "Chrome/156", "webSocketDebuggerUrl": f"ws://{host}/devtools/browser/x"}
        )

    async def empty(request: web.Request) -> web.Response:
        return web.json_response({"Browser": "Chrome/156"})

    app = web.Application()
    app.router.add_get("/json/version", version)
    app.router.add_get("/empty/json/version", empty)
    async with TestServer(app, host="127.0.0.1") as server:
        yield server


async def test_cdp_probe_reads_the_websocket_url(cdp_server: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        port = cdp_server.port
        assert port is not None
        result = await cdp_version(session, "127.0.0.1", port)()
        assert result.ok
        assert result.data["cdp_ws"] == f"ws://127.0.0.1:{port}/devtools/browser/x"
        closed = await cdp_version(session, "127.0.0.1", 9)()
        assert not closed.ok


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


async def test_wm_probe_reads_xprop(tmp_path: Path) -> None:
    claimed = _script(
        tmp_path / "xprop-yes",
        'echo "_NET_SUPPORTING_WM_CHECK(WINDOW): window id # 0x400001 on $DISPLAY"\n',
    )
    absent = _script(tmp_path / "xprop-no", 'echo "_NET_SUPPORTING_WM_CHECK:  not found."\n')
    result = await wm_claimed_xprop(claimed, ":42")()
    assert result.ok
    assert result.detail.endswith(":42")
    assert not (await wm_claimed_xprop(absent, ":42")()).ok
    missing = await wm_claimed_xprop(os.path.join(tmp_path, "nope"), ":42")()
    assert not missing.ok
    assert "cannot run" in missing.detail


async def test_find_holder_names_the_listening_process() -> None:
    from browser_stack.port_owner import find_holder

    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        holder = find_holder(port)
        assert holder is not None
        assert holder.pid == os.getpid()
        assert f"port {port} is already held by pid {os.getpid()}" in holder.describe()
    assert find_holder(port) is None


async def test_native_wm_probe_speaks_x11(tmp_path: Path) -> None:
    from browser_stack.probes import wm_claimed

    from ..integration.fake_x11 import serve

    window: list[int | None] = [None]
    path = str(tmp_path / "X5")
    server = await serve(path, lambda: window[0])
    async with server:
        probe = wm_claimed(path)
        unclaimed = await probe()
        assert not unclaimed.ok
        assert "not found" in unclaimed.detail
        window[0] = 0x20020B
        claimed = await probe()
        assert claimed.ok
        assert claimed.detail.endswith("window id # 0x20020b")
    gone = await wm_claimed(path)()
    assert not gone.ok


async def test_native_wm_probe_sees_a_dead_window_manager(tmp_path: Path) -> None:
    # The root window keeps the property after the window manager dies; the
    # window it names is gone with it.
    from browser_stack.probes import wm_claimed

    from ..integration.fake_x11 import serve

    running: list[int | None] = [0x20020B]
    path = str(tmp_path / "X6")
    server = await serve(path, lambda: running[0], root_property=lambda: 0x20020B)
    async with server:
        probe = wm_claimed(path)
        assert (await probe()).ok
        running[0] = None  # SIGKILL: the root property stays
        dead = await probe()
        assert not dead.ok
        assert "window is gone" in dead.detail
        running[0] = 0x20020B  # restarted, same id
        assert (await probe()).ok


async def test_native_wm_probe_rechecks_what_it_remembered(tmp_path: Path) -> None:
    # A warm check sends both GetProperty requests for the last window it saw
    # behind the setup; a new window manager or a new X server must still be seen.
    from browser_stack.x11 import WmCheck

    from ..integration.fake_x11 import serve

    running: list[int | None] = [0x20020B]
    path = str(tmp_path / "X7")
    check = WmCheck(path)
    async with await serve(path, lambda: running[0], root=0x3A1):
        assert await check.window() == 0x20020B
        assert await check.window() == 0x20020B  # the remembered path
        running[0] = 0x40000D  # openbox restarted: another window
        assert await check.window() == 0x40000D
        running[0] = None
        assert await check.window() is None
        assert await check.window() is None
        running[0] = 0x40000D
        assert await check.window() == 0x40000D
    # Xvnc restarted at the same path: another root window.
    async with await serve(path, lambda: running[0], root=0x5B2):
        assert await check.window() == 0x40000D
        running[0] = None
        assert await check.window() is None
