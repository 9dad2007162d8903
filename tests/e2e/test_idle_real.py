"""Idle auto-stop on the real stack, with a short timeout.

A sidecar with BROWSER_STACK_IDLE_TIMEOUT=3 runs in place of the stack's own
(which has idle stop off).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from ..helpers import Sidecar, page_server, wait_for
from .conftest import Stack, assert_all_stopped, sidecar_in_place

IDLE_TIMEOUT_S = 3
MIN_UPTIME_S = 1


@pytest.fixture(scope="module")
def idle_sidecar(stack: Stack) -> Iterator[Sidecar]:
    with sidecar_in_place(
        stack,
        BROWSER_STACK_IDLE_TIMEOUT=str(IDLE_TIMEOUT_S),
        BROWSER_STACK_IDLE_MIN_UPTIME=str(MIN_UPTIME_S),
    ) as running:
        yield running
        assert_all_stopped(stack)


def all_stopped(sidecar: Sidecar) -> bool:
    return all(p["state"] == "STOPPED" for p in sidecar.status().body["programs"].values())


def test_an_idle_stack_is_stopped(stack: Stack, idle_sidecar: Sidecar) -> None:
    status, out = idle_sidecar.ensure()
    assert status == 200, out
    began = time.monotonic()
    wait_for(lambda: all_stopped(idle_sidecar), timeout=30, what="the idle stop")
    waited = time.monotonic() - began
    assert waited >= IDLE_TIMEOUT_S - 0.5  # not before the timeout (coarse: no timing race)
    idle = idle_sidecar.status().body["idle"]
    assert idle["enabled"] is True
    assert idle["idle_stops"] >= 1
    assert "idle stop of stack: no activity" in idle_sidecar.read_output()
    assert_all_stopped(stack)


def test_an_open_cdp_connection_holds_the_stack_until_it_closes(
    stack: Stack, idle_sidecar: Sidecar
) -> None:
    from playwright.async_api import async_playwright

    status, out = idle_sidecar.ensure({"needs": ["cdp"]})
    assert status == 200, out
    cdp = out["endpoints"]["cdp"]

    async def hold_then_close() -> list[str]:
        async with async_playwright() as p:
            browser = await p.chromium.connect_over_cdp(cdp)
            # Well past the timeout with the connection open.
            await asyncio.sleep(IDLE_TIMEOUT_S + 3)
            idle = idle_sidecar.status().body["idle"]
            assert not all_stopped(idle_sidecar)
            await browser.close()
            return list(idle["held_by"])

    held_by = asyncio.run(hold_then_close())
    assert any(reason.startswith("cdp: ") for reason in held_by), held_by
    wait_for(lambda: all_stopped(idle_sidecar), timeout=30, what="the stop after close")


def test_cookies_and_local_storage_survive_an_idle_stop(
    stack: Stack, idle_sidecar: Sidecar
) -> None:
    from playwright.async_api import async_playwright

    with page_server("<html><body>profile test</body></html>") as origin:
        status, out = idle_sidecar.ensure({"needs": ["cdp"]})
        assert status == 200, out

        async def write() -> None:
            async with async_playwright() as p:
                browser = await p.chromium.connect_over_cdp(out["endpoints"]["cdp"])
                page = await browser.contexts[0].new_page()  # the persistent profile
                await page.goto(origin)
                await page.evaluate(
                    """() => {
                        document.cookie = "kept=cookie-value; max-age=86400; path=/";
                        localStorage.setItem("kept", "storage-value");
                    }"""
                )
                await page.close()
                await browser.close()

        asyncio.run(write())
        wait_for(lambda: all_stopped(idle_sidecar), timeout=30, what="the idle stop")
        assert not stack.chromium_processes()

        status, out = idle_sidecar.ensure({"needs": ["cdp"]})
        assert status == 200, out
        assert out["cold"] is True

        async def read() -> tuple[str, str]:
            async with async_playwright() as p:
                browser = await p.chromium.connect_over_cdp(out["endpoints"]["cdp"])
                page = await browser.contexts[0].new_page()
                await page.goto(origin)
                cookie = await page.evaluate("() => document.cookie")
                stored = await page.evaluate("() => localStorage.getItem('kept')")
                await page.close()
                await browser.close()
                return str(cookie), str(stored)

        cookie, stored = asyncio.run(read())
        assert "kept=cookie-value" in cookie
        assert stored == "storage-value"
        wait_for(lambda: all_stopped(idle_sidecar), timeout=30, what="the idle stop")
