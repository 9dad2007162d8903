from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping
from dataclasses import replace

import psutil
import pytest
from aiohttp.test_utils import TestClient, TestServer

from browser_stack.http_api import create_app
from browser_stack.idle import Facts, IdleMonitor, IdlePolicy, user_connections
from browser_stack.stack import GATES

from .fakes import FAST, make_controller

pytestmark = pytest.mark.unit

NONE: Mapping[str, int] = {"cdp": 0, "mcp": 0, "vnc": 0, "vnc_ws": 0}


def facts(now: float, **kw: object) -> Facts:
    base = Facts(
        now=now,
        stack_up=True,
        youngest_uptime_s=now,
        connections=NONE,
        last_ensure=0.0,
        lease_until=0.0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_idle_stack_is_stopped_after_the_timeout() -> None:
    policy = IdlePolicy(timeout_s=60, min_uptime_s=10)
    assert not policy.decide(facts(30)).stop
    decision = policy.decide(facts(59.9))
    assert not decision.stop
    assert decision.stops_in_s == pytest.approx(0.1)
    decision = policy.decide(facts(60))
    assert decision.stop
    assert decision.reason == "no activity for 60 s"


def test_never_stops_while_a_connection_is_open_and_counts_from_its_close() -> None:
    policy = IdlePolicy(timeout_s=60, min_uptime_s=0)
    held = policy.decide(facts(500, connections={**NONE, "cdp": 2}))
    assert not held.stop
    assert held.held_by == ["cdp: 2 connections"]
    assert held.idle_for_s == 0
    assert not policy.decide(facts(530)).stop
    assert policy.decide(facts(560)).stop


def test_ensure_calls_and_leases_are_activity() -> None:
    policy = IdlePolicy(timeout_s=60, min_uptime_s=0)
    assert not policy.decide(facts(100, last_ensure=90)).stop
    assert policy.decide(facts(150, last_ensure=90)).stop
    policy = IdlePolicy(timeout_s=60, min_uptime_s=0)
    leased = policy.decide(facts(100, lease_until=200))
    assert not leased.stop
    assert leased.held_by == ["lease: 100 s left"]
    assert not policy.decide(facts(250, lease_until=200)).stop  # 50 s after the lease
    assert policy.decide(facts(260, lease_until=200)).stop


def test_minimum_uptime_keeps_a_fresh_start_up() -> None:
    policy = IdlePolicy(timeout_s=5, min_uptime_s=30)
    decision = policy.decide(facts(100, youngest_uptime_s=10))
    assert not decision.stop
    assert decision.stops_in_s == pytest.approx(20)
    assert decision.held_by == ["minimum uptime: 20 s left"]
    assert policy.decide(facts(120, youngest_uptime_s=30)).stop


def test_disabled_or_stopped_stack_never_stops() -> None:
    assert not IdlePolicy(0, 0).decide(facts(10_000)).stop
    assert not IdlePolicy(60, 0).decide(facts(10_000, stack_up=False)).stop


Addr = namedtuple("Addr", "ip port")
Conn = namedtuple("Conn", "fd family type laddr raddr status pid")


def conn(lport: int, rport: int, pid: int, status: str = psutil.CONN_ESTABLISHED) -> Conn:
    return Conn(0, 2, 1, Addr("127.0.0.1", lport), Addr("127.0.0.1", rport), status, pid)


def test_user_connections_ignore_the_stack_and_the_sidecar() -> None:
    ports = {"cdp": 9222, "mcp": 8100, "vnc": 5900, "vnc_ws": 6080}
    chromium, mcp, websocat, xvnc, playwright, sidecar = 10, 11, 12, 13, 50, 60
    table = [
        conn(9222, 40001, chromium),  # mcp-server-browser's CDP connection, server end
        conn(40001, 9222, mcp),  # ... and its client end
        conn(5900, 40002, xvnc),  # websocat -> Xvnc for a noVNC viewer
        conn(40002, 5900, websocat),
        conn(6080, 40003, websocat),  # the noVNC viewer itself
        conn(40003, 6080, 77),
        conn(9222, 40004, chromium),  # Playwright
        conn(40004, 9222, playwright),
        conn(9222, 40005, chromium),  # the sidecar's own probe
        conn(40005, 9222, sidecar),
        conn(9222, 40006, chromium, psutil.CONN_TIME_WAIT),  # closed
        Conn(0, 2, 1, Addr("10.0.0.5", 8100), Addr("10.0.0.9", 51000), "ESTABLISHED", mcp),
    ]
    own = {chromium, mcp, websocat, xvnc, sidecar}
    got = user_connections(ports, own, table)
    assert got == {"cdp": 1, "mcp": 1, "vnc": 0, "vnc_ws": 1}


class FakeController:
    def __init__(self) -> None:
        self.stops: list[str] = []
        self.last_ensure = 0.0
        self.starting = False

    async def process_infos(self) -> dict[object, object]:
        return {}

    async def stop(self, reason: str = "request") -> None:
        self.stops.append(reason)


async def test_monitor_stops_through_the_controller_with_the_idle_reason() -> None:
    now = [0.0]
    controller = FakeController()
    monitor = IdleMonitor(controller, IdlePolicy(10, 0), {}, clock=lambda: now[0])

    async def up() -> Facts:
        return facts(now[0], last_ensure=controller.last_ensure, lease_until=monitor.lease_until)

    monitor.facts = up  # type: ignore[method-assign]
    now[0] = 5
    assert not (await monitor.check()).stop
    monitor.lease(20)  # held until 25
    now[0] = 30
    assert not (await monitor.check()).stop
    now[0] = 35
    assert (await monitor.check()).stop
    assert controller.stops == ["idle"]
    assert monitor.describe()["idle_stops"] == 1


async def test_lease_endpoint_validates_and_holds() -> None:
    controller, _sup = make_controller()
    settings = replace(FAST, idle_timeout_s=60)
    async with TestClient(TestServer(create_app(settings, controller))) as c:
        ok = await c.post("/v1/browser-stack/lease", json={"ttl_s": 120})
        assert ok.status == 200
        body = await ok.json()
        assert body["idle_stop"] is True
        assert 119 <= body["held_s"] <= 120
        for bad in ({}, {"ttl_s": -1}, {"ttl_s": "5"}, {"ttl_s": 1e9}, {"ttl_s": 5, "x": 1}):
            assert (await c.post("/v1/browser-stack/lease", json=bad)).status == 400
        await controller.ensure(frozenset(GATES), 5)
        status = await (await c.get("/v1/browser-stack/status")).json()
        assert status["idle"]["enabled"] is True
        assert status["idle"]["timeout_s"] == 60
