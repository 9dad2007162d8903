"""End to end: the sidecar starts the real five programs on demand and real clients use them.

The tests share one stack (session fixture `stack`, which checks that the lazy boot
started none of the five). Each test first brings the stack to the state it starts
from, stopped or started, so they pass in any order.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from ..clients import RFB_BANNER, page_text, rfb_banner_over_websocket
from .conftest import PROGRAMS, Stack, assert_all_stopped, call, ensure, stop_stack

pytestmark = pytest.mark.usefixtures("stopped_after")


def read_rfb_banner(host_port: str) -> bytes:
    host, port = host_port.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        data = b""
        while len(data) < len(RFB_BANNER):
            chunk = s.recv(len(RFB_BANNER) - len(data))
            if not chunk:
                break
            data += chunk
        return data


def test_healthz(stack: Stack) -> None:
    status, out = call(stack, "GET", "/healthz")
    assert status == 200
    assert out["ok"] is True
    assert out["supervisor"]["reachable"] is True


def test_bad_ensure_is_400_and_starts_nothing(stack: Stack) -> None:
    stop_stack(stack)
    status, out = call(stack, "POST", "/v1/browser-stack/ensure", {"needs": ["no-such-thing"]})
    assert status == 400, out
    assert isinstance(out["error"], str) and out["message"]
    assert_all_stopped(stack)


def test_cold_ensure_starts_all_five(stack: Stack) -> None:
    stop_stack(stack)
    t0 = time.monotonic()
    out = ensure(stack, {"needs": ["cdp", "mcp", "vnc"], "timeout_s": 60})
    wall_ms = (time.monotonic() - t0) * 1000
    print(f"cold ensure: elapsed_ms={out['elapsed_ms']:.0f} wall_ms={wall_ms:.0f}")
    assert out["cold"] is True
    assert sorted(out["started"]) == sorted(PROGRAMS)
    for name in PROGRAMS:
        program = out["programs"][name]
        # ready comes from the probes; supervisord says RUNNING only startsecs after spawn
        assert program["state"] in ("STARTING", "RUNNING"), (name, program)
        assert program["ready"] is True, (name, program)
        assert program["pid"] > 0
    endpoints = out["endpoints"]
    assert set(endpoints) >= {"cdp", "cdp_ws", "mcp", "vnc", "vnc_ws"}
    assert endpoints["cdp_ws"].startswith("ws://")
    assert endpoints["mcp"].endswith("/sse")
    assert stack.chromium_processes(), "ensure said ready but no chromium process is found"


def test_playwright_over_cdp(stack: Stack) -> None:
    cdp = ensure(stack, {"needs": ["cdp"]})["endpoints"]["cdp"]
    assert asyncio.run(page_text(cdp, "data:text/html,<h1 id=x>hello</h1>", "#x")) == "hello"


def test_mcp_sse_lists_browser_tools_and_drives_the_browser(stack: Stack) -> None:
    from mcp import ClientSession
    from mcp.client.sse import sse_client

    url = ensure(stack, {"needs": ["mcp"]})["endpoints"]["mcp"]

    async def run() -> tuple[list[str], str]:
        async with sse_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            result = await session.list_tools()
            names = [tool.name for tool in result.tools]
            # A tool call makes mcp-server-browser connect to our Chromium over CDP.
            nav = await session.call_tool(
                "browser_navigate", {"url": "data:text/html,<h1>hello mcp</h1>"}
            )
            assert not nav.is_error, nav
            got = await session.call_tool("browser_get_text", {})
            assert not got.is_error, got
            text = " ".join(getattr(c, "text", "") for c in got.content)
            return names, text

    names, text = asyncio.run(run())
    assert [n for n in names if n.startswith("browser_")], names
    assert "hello mcp" in text


def test_vnc_banner(stack: Stack) -> None:
    vnc = ensure(stack, {"needs": ["vnc"]})["endpoints"]["vnc"]
    assert read_rfb_banner(vnc) == RFB_BANNER


def test_vnc_over_websocket(stack: Stack) -> None:
    url = ensure(stack, {"needs": ["vnc"]})["endpoints"]["vnc_ws"]
    assert asyncio.run(rfb_banner_over_websocket(url, read_timeout_s=5)) == RFB_BANNER


def test_warm_ensure_is_not_cold(stack: Stack) -> None:
    ensure(stack)
    out = ensure(stack)
    print(f"warm ensure: elapsed_ms={out['elapsed_ms']:.1f}")
    assert out["cold"] is False
    assert out["started"] == []
    assert all(out["programs"][name]["ready"] for name in PROGRAMS), out["programs"]


def test_stop_then_cdp_only_ensure(stack: Stack) -> None:
    ensure(stack)
    status, out = call(stack, "POST", "/v1/browser-stack/stop")
    assert status == 200, out
    assert sorted(out["stopped"]) == sorted(PROGRAMS)
    assert_all_stopped(stack)

    out = ensure(stack, {"needs": ["cdp"]})
    assert out["cold"] is True
    assert "browser" in out["started"]
    assert out["programs"]["browser"]["ready"] is True
    with urllib.request.urlopen(out["endpoints"]["cdp"] + "/json/version", timeout=5) as r:
        assert json.loads(r.read())["webSocketDebuggerUrl"].startswith("ws://")


def test_stop_leaves_nothing_and_is_idempotent(stack: Stack) -> None:
    ensure(stack, {"needs": ["cdp"]})
    status, out = call(stack, "POST", "/v1/browser-stack/stop")
    assert status == 200, out
    assert "browser" in out["stopped"]
    assert_all_stopped(stack)

    status, out = call(stack, "POST", "/v1/browser-stack/stop")
    assert status == 200, out
    assert out["stopped"] == []
    assert_all_stopped(stack)
