"""browser_stack.client (sync and async) against the running sidecar and the real stack.

This is what a DeerFlow browser tool calls before it connects. The module starts
with the stack stopped and leaves it stopped.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request

import pytest

from browser_stack import client

from ..helpers import free_port
from .conftest import Stack, assert_all_stopped, call, stop_stack

pytestmark = pytest.mark.usefixtures("stopped_after")


def test_bad_needs_are_refused_and_start_nothing(stack: Stack) -> None:
    stop_stack(stack)
    # The client knows the gates: nothing is sent.
    with pytest.raises(ValueError, match="unknown need 'nope'"):
        client.ensure_browser_stack(stack.base_url, needs=["cdp", "nope"], timeout=10)
    # Sent anyway, the sidecar refuses it.
    status, body = call(stack, "POST", "/v1/browser-stack/ensure", {"needs": ["cdp", "nope"]})
    assert status == 400, body
    assert body["error"] == "bad_request"
    assert_all_stopped(stack)


def test_healthcheck_module_never_wakes_the_stack(stack: Stack) -> None:
    stop_stack(stack)
    for command in ("healthz", "readyz"):
        done = subprocess.run(
            [sys.executable, "-m", "browser_stack.client", command, "--url", stack.base_url],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert_all_stopped(stack)


def test_sync_ensure_returns_endpoints_that_answer(stack: Stack) -> None:
    stop_stack(stack)
    ready = client.ensure_browser_stack(stack.base_url, needs=["cdp"], timeout=60)
    assert ready.cold is True
    assert ready["ready"] is True and "browser" in ready["started"]
    with urllib.request.urlopen(ready.endpoints["cdp"] + "/json/version", timeout=10) as r:
        assert json.loads(r.read())["webSocketDebuggerUrl"] == ready.endpoints["cdp_ws"]


def test_async_ensure_warm_then_other_gates(stack: Stack) -> None:
    client.ensure_browser_stack(stack.base_url, needs=["cdp"], timeout=60)

    async def run() -> tuple[client.Ensured, client.Ensured]:
        warm = await client.aensure_browser_stack(stack.base_url, needs="cdp", timeout=30)
        more = await client.aensure_browser_stack(stack.base_url, needs="mcp,vnc", timeout=60)
        return warm, more

    warm, more = asyncio.run(run())
    assert warm.cold is False
    # (the cdp ensure before started the whole stack; mcp and vnc may be ready already)
    assert more["ready"] is True
    assert more.endpoints["mcp"].endswith("/sse")
    assert set(more["needs"]) == {"mcp", "vnc"}


def test_readiness_timeout_is_a_clear_exception(stack: Stack) -> None:
    stop_stack(stack)
    with pytest.raises(client.ReadinessTimeout) as caught:
        client.ensure_browser_stack(stack.base_url, needs=["vnc"], timeout=0.001)
    assert caught.value.status == 504
    assert caught.value.pending_gates == ["vnc"]
    # the start goes on: a second call with time to wait gets it
    ready = client.ensure_browser_stack(stack.base_url, needs=["vnc"], timeout=60)
    assert ready["ready"] is True


def test_unreachable_sync_and_async() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(client.Unreachable, match="no answer from browser-stack at"):
        client.ensure_browser_stack(url, timeout=5)
    with pytest.raises(client.Unreachable, match="no answer from browser-stack at"):
        asyncio.run(client.aensure_browser_stack(url, timeout=5))
    done = subprocess.run(
        [sys.executable, "-m", "browser_stack.client", "healthz", "--url", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("browser-stack healthz: no answer")
