"""Transparent activation on the real stack: clients that never call ensure.

A second stack, in proxy mode (BROWSER_STACK_ACTIVATION=proxy): the sidecar holds
the public CDP, MCP, VNC and websocket ports, the programs listen on internal
ones. The session's main stack is stopped while this module runs (every module
leaves it so), so the two never hold a port or the display at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..clients import RFB_BANNER
from ..helpers import free_port, wait_for
from .conftest import Stack, local_stack, stop_stack

IDLE_TIMEOUT_S = 3


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


CDP = _port("BROWSER_REMOTE_DEBUGGING_PORT", 9222)
MCP = _port("MCP_SERVER_BROWSER_PORT", 8100)
VNC = _port("VNC_SERVER_PORT", 5900)


@dataclass
class ProxyStack:
    base_url: str
    root: Path

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + "/v1/browser-stack/status", timeout=30) as r:
            return dict(json.loads(r.read()))

    def all_stopped(self) -> bool:
        return all(p["state"] == "STOPPED" for p in self.status()["programs"].values())

    def stop(self) -> None:
        urllib.request.urlopen(self.base_url + "/v1/browser-stack/stop", data=b"").close()
        wait_for(self.all_stopped, timeout=30, what="the stop")


@pytest.fixture(scope="module")
def proxy_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyStack]:
    # The main stack must not hold the display or the public ports meanwhile.
    stop_stack(stack)
    root = tmp_path_factory.mktemp("bs-proxy")
    listen = f"127.0.0.1:{free_port()}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BROWSER_STACK_ACTIVATION", "proxy")
        env.setenv("BROWSER_STACK_IDLE_TIMEOUT", str(IDLE_TIMEOUT_S))
        env.setenv("BROWSER_STACK_IDLE_MIN_UPTIME", "1")
        process = local_stack.start(root, listen=listen)
    killed: list[str] = []
    try:
        base = f"http://{listen}"
        local_stack.wait_healthy(base, root, process.pid, timeout=60)
        yield ProxyStack(base, root)
    finally:
        killed = local_stack.stop(root, process.pid)
        process.wait(10)
    assert not killed, killed


def test_nothing_runs_and_the_sidecar_holds_the_public_ports(proxy_stack: ProxyStack) -> None:
    proxy_stack.stop()
    status = proxy_stack.status()
    assert set(status["proxy"]) == {"cdp", "mcp", "vnc", "vnc_ws"}
    assert status["endpoints"]["cdp"].endswith(f":{CDP}")


def test_playwright_connect_over_cdp_with_no_ensure(proxy_stack: ProxyStack) -> None:
    from playwright.async_api import async_playwright

    async def run() -> str | None:
        async with async_playwright() as p:
            browser = await p.chromium.connect_over_cdp(f"http://127.0.0.1:{CDP}")
            try:
                page = await browser.contexts[0].new_page()
                await page.goto("data:text/html,<h1 id=x>through the proxy</h1>")
                text = await page.text_content("#x")
                await page.close()
            finally:
                await browser.close()
        return text

    text = asyncio.run(run())
    with urllib.request.urlopen(f"http://127.0.0.1:{CDP}/json/version", timeout=10) as r:
        ws = json.loads(r.read())["webSocketDebuggerUrl"]
    assert text == "through the proxy"
    # Chromium named the port it was asked on: the public one, through the proxy.
    assert ws.startswith(f"ws://127.0.0.1:{CDP}/devtools/browser/")
    stats = proxy_stack.status()["proxy"]["cdp"]
    assert stats["accepted"] >= 2
    assert stats["bytes_down"] > 0


def test_mcp_sse_client_lists_tools_through_the_proxy(proxy_stack: ProxyStack) -> None:
    from mcp import ClientSession
    from mcp.client.sse import sse_client

    async def run() -> list[str]:
        url = f"http://127.0.0.1:{MCP}/sse"
        async with sse_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return [tool.name for tool in (await session.list_tools()).tools]

    names = asyncio.run(run())
    assert [n for n in names if n.startswith("browser_")], names


def test_rfb_handshake_through_the_public_vnc_port(proxy_stack: ProxyStack) -> None:
    with socket.create_connection(("127.0.0.1", VNC), timeout=30) as s:
        banner = b""
        while len(banner) < len(RFB_BANNER):
            chunk = s.recv(len(RFB_BANNER) - len(banner))
            assert chunk, banner
            banner += chunk
        assert banner == RFB_BANNER
        s.sendall(RFB_BANNER)  # the client's version: the handshake goes on
        count = s.recv(1)  # number of security types (1: None, as configured)
        assert count and count[0] >= 1


def test_idle_stop_after_the_last_client_disconnects(proxy_stack: ProxyStack) -> None:
    # Hold a raw CDP connection open past the idle timeout, then let go.
    held = socket.create_connection(("127.0.0.1", CDP), timeout=30)
    try:
        # Chromium refuses a Host that is not an IP address or localhost.
        held.sendall(b"GET /json/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert held.recv(12).startswith(b"HTTP/1.1 200")
        time.sleep(IDLE_TIMEOUT_S + 2)
        status = proxy_stack.status()
        assert not proxy_stack.all_stopped()
        assert status["proxy"]["cdp"]["open_connections"] >= 1
        assert any(h.startswith("cdp: ") for h in status["idle"]["held_by"]), status["idle"]
    finally:
        held.close()
    wait_for(proxy_stack.all_stopped, timeout=30, what="the idle stop after the last client")


def test_a_stack_that_cannot_start_answers_http_503_with_the_reason(
    proxy_stack: ProxyStack,
) -> None:
    proxy_stack.stop()
    internal_cdp = CDP + 10000
    squatter = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(internal_cdp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _listens(internal_cdp), what="the squatter")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{CDP}/json/version", timeout=60)
        with caught.value as answer:
            assert answer.code == 503
            body = json.loads(answer.read())
        assert body["error"] == "port_in_use"
        assert str(internal_cdp) in body["message"]
    finally:
        squatter.kill()
        squatter.wait()
    assert proxy_stack.status()["proxy"]["cdp"]["failed_activations"] >= 1
    proxy_stack.stop()


def _listens(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
