"""The shipped nginx snippets in a real nginx in front of the real sidecar and stack.

nginx stands in for the AIO image's gateway (tests/image/gateway.py): the sidecar's
API under /browser-stack/, and browser locations gated with the shipped gate-*.conf.
With the stack stopped, a plain `curl` of /cdp/json/version through nginx starts it
and answers from Chromium; the sidecar's status, health and the ungated routes
through nginx never wake it. The module leaves the stack stopped, as
test_real_stack.py expects.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from ..clients import RFB_BANNER, mcp_tool_names, page_text, rfb_banner_over_websocket
from ..image.gateway import Gateway, Upstreams, nginx_binary, running_gateway
from .conftest import PROGRAMS, Stack, assert_all_stopped, stop_stack


@pytest.fixture(scope="module")
def gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if nginx_binary() is None or shutil.which("curl") is None:
        pytest.fail("nginx and curl are needed (scripts/install-deps.sh --dev)", pytrace=False)
    sidecar = stack.base_url.removeprefix("http://")
    with running_gateway(tmp_path_factory.mktemp("gateway"), Upstreams(sidecar=sidecar)) as gw:
        yield gw
    stop_stack(stack)


def curl(url: str, *args: str) -> tuple[int, bytes, float]:
    """`curl` as a person would; returns (status, body, seconds)."""
    t0 = time.monotonic()
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}", *args, url],
        capture_output=True,
        timeout=90,
        check=False,
    )
    elapsed = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    body, _, code = done.stdout.rpartition(b"\n")
    return int(code), body, elapsed


def gate_status(gateway: Gateway) -> dict[str, Any]:
    status, body, _ = curl(gateway.url + "/browser-stack/v1/browser-stack/status")
    assert status == 200, body
    out: dict[str, Any] = json.loads(body)
    return out


def test_status_health_and_ungated_routes_never_wake_the_stack(
    stack: Stack, gateway: Gateway
) -> None:
    stop_stack(stack)
    for _ in range(3):
        out = gate_status(gateway)
        assert {n: p["state"] for n, p in out["programs"].items()} == dict.fromkeys(
            PROGRAMS, "STOPPED"
        )
        assert out["ready"] == {"cdp": False, "mcp": False, "vnc": False}
        status, body, _ = curl(gateway.url + "/browser-stack/healthz")
        assert status == 200 and json.loads(body)["ok"] is True
        status, _, _ = curl(gateway.url + "/v1/shell/anything")
        assert status == 200
        status, _, _ = curl(gateway.url + "/browser-stack/v1/browser-stack/programs/browser")
        assert status == 200
    time.sleep(0.3)  # a wrongly started program would show up by now
    assert_all_stopped(stack)


def test_curl_cdp_through_nginx_starts_the_stack_and_answers_from_chromium(
    stack: Stack, gateway: Gateway
) -> None:
    stop_stack(stack)
    status, body, seconds = curl(gateway.url + "/cdp/json/version")
    print(f"cold /cdp/json/version through nginx: {seconds * 1000:.0f} ms")
    assert status == 200, body
    version = json.loads(body)
    assert version["Browser"].startswith(("Chrome/", "HeadlessChrome/")), version
    # Chromium writes the caller's Host into the URL: the websocket goes through nginx too
    assert version["webSocketDebuggerUrl"].startswith(f"ws://127.0.0.1:{gateway.port}/devtools/")
    out = gate_status(gateway)
    assert out["ready"]["cdp"] is True
    assert out["programs"]["browser"]["ready"] is True


def test_warm_gate_cost(gateway: Gateway) -> None:
    """A gated request on a running stack costs one warm ensure in the sidecar."""

    def median_ms(url: str, n: int = 15) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            with urllib.request.urlopen(url, timeout=10) as r:
                assert r.status == 200
                r.read()
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    gated = median_ms(gateway.url + "/cdp/json/version")
    direct = median_ms(f"http://127.0.0.1:{Upstreams(sidecar='').cdp}/json/version")
    print(f"warm /json/version: through gated nginx {gated:.1f} ms, direct {direct:.1f} ms")
    assert gated < 500


def test_playwright_over_the_gated_websocket(gateway: Gateway) -> None:
    with urllib.request.urlopen(gateway.url + "/cdp/json/version", timeout=30) as r:
        ws_url = json.loads(r.read())["webSocketDebuggerUrl"]
    text = asyncio.run(page_text(ws_url, "data:text/html,<p id=x>through nginx</p>", "#x"))
    assert text == "through nginx"


def test_vnc_websocket_through_nginx_starts_vnc_from_cold(stack: Stack, gateway: Gateway) -> None:
    stop_stack(stack)
    url = gateway.url.replace("http", "ws") + "/websockify"
    assert asyncio.run(rfb_banner_over_websocket(url)) == RFB_BANNER
    assert gate_status(gateway)["ready"]["vnc"] is True


def test_mcp_sse_through_nginx(gateway: Gateway) -> None:
    names = asyncio.run(mcp_tool_names(gateway.url + "/sse"))
    assert [n for n in names if n.startswith("browser_")], names
