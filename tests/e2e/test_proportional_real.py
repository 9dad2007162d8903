"""Memory proportional to use, on the real stack: BROWSER_STACK_START=needed
starts what the gates need and no more, a gate left alone stops its own programs
while CDP is in use, and wait: false starts in the background.

A sidecar with BROWSER_STACK_START=needed and a short idle timeout runs in
place of the stack's own; every test starts from a stopped stack.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from ..clients import RFB_BANNER
from ..helpers import Sidecar, page_server, wait_for
from .conftest import Stack, main_pid, sidecar_in_place, spawn_count, stop_stack

IDLE_TIMEOUT_S = 3
# A part stops once the timeout has passed and the next check (every 0.3 s here)
# has seen it; generous for a loaded machine. A bound, not a measurement.
STOP_BOUND_S = IDLE_TIMEOUT_S + 20


@pytest.fixture(scope="module")
def needed(stack: Stack) -> Iterator[Sidecar]:
    with sidecar_in_place(
        stack,
        BROWSER_STACK_START="needed",
        BROWSER_STACK_IDLE_TIMEOUT=str(IDLE_TIMEOUT_S),
        BROWSER_STACK_IDLE_MIN_UPTIME="1",
    ) as running:
        yield running
        stop_stack(stack)


@pytest.fixture(autouse=True)
def stopped_first(stack: Stack, needed: Sidecar) -> None:
    stop_stack(stack)


def alive(sidecar: Sidecar) -> set[str]:
    return {n for n, s in sidecar.states().items() if s in ("STARTING", "RUNNING")}


def ensure(sidecar: Sidecar, needs: list[str]) -> dict[str, Any]:
    status, out = sidecar.ensure({"needs": needs})
    assert status == 200, out
    return dict(out)


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def test_cdp_starts_xvnc_and_chromium_alone_and_browser_tools_need_no_window_manager(
    stack: Stack, needed: Sidecar
) -> None:
    from playwright.async_api import async_playwright

    out = ensure(needed, ["cdp"])
    assert sorted(out["started"]) == ["browser", "tigervnc"]

    async def tools() -> dict[str, Any]:
        async with async_playwright() as p:
            browser = await p.chromium.connect_over_cdp(out["endpoints"]["cdp"])
            try:
                context = browser.contexts[0]
                page = await context.new_page()
                await page.goto("data:text/html,<h1 style='color:red'>no window manager</h1>")
                await page.set_viewport_size({"width": 800, "height": 600})
                shot = await page.screenshot()
                cdp = await context.new_cdp_session(page)
                captured = await cdp.send("Page.captureScreenshot", {"format": "png"})
                window = await cdp.send("Browser.getWindowForTarget")
                await cdp.send(
                    "Browser.setWindowBounds",
                    {"windowId": window["windowId"], "bounds": {"width": 1000, "height": 700}},
                )
                bounds = await cdp.send("Browser.getWindowBounds", {"windowId": window["windowId"]})
                second = await context.new_page()
                await second.goto("data:text/html,<title>second</title>")
                return {
                    "shot": png_size(shot),
                    "captured": png_size(base64.b64decode(captured["data"])),
                    "bounds": bounds["bounds"],
                    "second": await second.title(),
                }
            finally:
                await browser.close()

    got = asyncio.run(tools())
    assert got["shot"] == (800, 600)
    assert got["captured"] == (800, 600)
    assert (got["bounds"]["width"], got["bounds"]["height"]) == (1000, 700)
    assert got["second"] == "second"
    # Nothing else came up meanwhile, in the foreground or behind it.
    assert alive(needed) == {"tigervnc", "browser"}


async def mcp_tools(url: str, use: bool = False) -> list[str]:
    """The MCP server's tools; with `use`, one read-only tool call too, which
    makes mcp-server-browser connect to Chromium (the page stays as it is)."""
    from mcp import ClientSession
    from mcp.client.sse import sse_client

    async with sse_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        names = [tool.name for tool in (await session.list_tools()).tools]
        if use:
            result = await session.call_tool("browser_get_text", {})
            assert not result.is_error, result
        return names


def test_mcp_left_alone_stops_while_a_cdp_session_holds_the_browser(
    stack: Stack, needed: Sidecar
) -> None:
    from playwright.async_api import async_playwright

    out = ensure(needed, ["cdp", "mcp"])
    chromium = main_pid(stack, "browser")

    async def scenario() -> tuple[list[str], list[str], str, str]:
        async with async_playwright() as p:
            browser = await p.chromium.connect_over_cdp(out["endpoints"]["cdp"])
            try:
                page = await browser.contexts[0].new_page()
                await page.goto(origin)
                await page.evaluate("() => { document.cookie = 'held=yes; path=/'; }")
                first = await mcp_tools(out["endpoints"]["mcp"], use=True)
                # The MCP client is gone; the CDP session stays.
                await asyncio.to_thread(
                    wait_for,
                    lambda: "mcp-server-browser" not in alive(needed),
                    STOP_BOUND_S,
                    "mcp-server-browser's idle stop",
                )
                assert main_pid(stack, "browser") == chromium  # untouched
                held = needed.status().body["idle"]["programs"]["browser"]
                assert any(h.startswith("cdp: ") for h in held), held
                cookie = await page.evaluate("() => document.cookie")
                title = await page.title()
                again = await asyncio.to_thread(ensure, needed, ["mcp"])
                second = await mcp_tools(again["endpoints"]["mcp"])
                return first, second, str(cookie), title
            finally:
                await browser.close()

    with page_server("<html><title>held</title><body>held page</body></html>") as origin:
        first, second, cookie, title = asyncio.run(scenario())
    assert [n for n in first if n.startswith("browser_")]
    assert second == first
    assert "held=yes" in cookie and title == "held"
    assert "idle stop of mcp" in needed.read_output()


def test_a_vnc_viewer_leaves_and_its_chain_stops_while_cdp_is_used(
    stack: Stack, needed: Sidecar
) -> None:
    import aiohttp
    from playwright.async_api import async_playwright

    out = ensure(needed, ["cdp", "vnc"])
    assert {"tigervnc", "openbox", "browser", "websocat"} <= alive(needed)

    async def scenario() -> set[str]:
        async with async_playwright() as p:
            browser = await p.chromium.connect_over_cdp(out["endpoints"]["cdp"])
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.ws_connect(out["endpoints"]["vnc_ws"]) as ws,
                ):
                    banner = b""
                    while len(banner) < len(RFB_BANNER):
                        message = await asyncio.wait_for(ws.receive(), 10)
                        banner += message.data
                    assert banner == RFB_BANNER
                    await ws.send_bytes(RFB_BANNER)  # the viewer's version: a handshake
                    security = await asyncio.wait_for(ws.receive(), 10)
                    assert security.data[0] >= 1  # security types offered
                # The viewer left; the CDP session stays.
                await asyncio.to_thread(
                    wait_for,
                    lambda: not {"websocat", "openbox"} & alive(needed),
                    STOP_BOUND_S,
                    "the VNC chain's idle stop",
                )
                return alive(needed)
            finally:
                await browser.close()

    assert asyncio.run(scenario()) == {"tigervnc", "browser"}
    assert "idle stop of vnc" in needed.read_output()


def test_wait_false_answers_at_once_and_a_later_ensure_joins_the_start(
    stack: Stack, needed: Sidecar
) -> None:
    before = spawn_count(stack, "browser")
    accepted = needed.ensure({"needs": ["cdp"], "wait": False})
    assert accepted.status == 202, accepted.body
    assert accepted.body == {"accepted": True, "needs": ["cdp"]}
    out = ensure(needed, ["cdp"])
    assert out["programs"]["browser"]["ready"] is True
    assert spawn_count(stack, "browser") == before + 1  # one start, shared
    last = wait_for(lambda: needed.status().body["last_start"], what="the start's end")
    assert last["ok"] is True
