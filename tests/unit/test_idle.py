from __future__ import annotations

import asyncio
import contextlib
from collections import namedtuple
from collections.abc import Mapping
from dataclasses import replace

import psutil
import pytest
from aiohttp.test_utils import TestClient, TestServer

from browser_stack.core_types import ProcessInfo
from browser_stack.errors import SupervisorUnavailable
from browser_stack.idle import Decision, IdleFacts, IdleMonitor, IdlePolicy, user_connections
from browser_stack.metrics import Metrics
from browser_stack.server import create_app
from browser_stack.stack import GATES, PROGRAMS, Gate, Program
from browser_stack.states import ProcessState

from ..helpers import until
from .fakes import FAST, Recorder, make_controller

NONE: Mapping[str, int] = {"cdp": 0, "mcp": 0, "vnc": 0, "vnc_ws": 0}


def facts(now: float, **kw: object) -> IdleFacts:
    base = IdleFacts(
        now=now,
        stack_up=True,
        youngest_uptime_s=now,
        connections=NONE,
        last_ensure=0.0,
        lease_until=0.0,
        last_activity=0.0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


class Checks:
    """A policy asked again and again, each time with the last use it reported,
    as the monitor does."""

    def __init__(self, policy: IdlePolicy) -> None:
        self.policy = policy
        self.last_activity = 0.0

    def decide(self, now: float, **kw: object) -> Decision:
        decision = self.policy.decide(facts(now, last_activity=self.last_activity, **kw))
        self.last_activity = decision.last_activity
        return decision


def test_idle_stack_is_stopped_after_the_timeout() -> None:
    checks = Checks(IdlePolicy(timeout_s=60, min_uptime_s=10))
    assert not checks.decide(30).stop
    decision = checks.decide(59.9)
    assert not decision.stop
    assert decision.stops_in_s == pytest.approx(0.1)
    decision = checks.decide(60)
    assert decision.stop
    assert decision.reason == "no activity for 60 s"


def test_deciding_changes_nothing_but_reports_the_last_use() -> None:
    policy = IdlePolicy(timeout_s=60, min_uptime_s=0)
    seen = facts(500, connections={**NONE, "cdp": 1})
    assert policy.decide(seen) == policy.decide(seen)
    assert policy.decide(seen).last_activity == 500
    assert policy.decide(facts(500)).last_activity == 0


def test_never_stops_while_a_connection_is_open_and_counts_from_its_close() -> None:
    checks = Checks(IdlePolicy(timeout_s=60, min_uptime_s=0))
    held = checks.decide(500, connections={**NONE, "cdp": 2})
    assert not held.stop
    assert held.held_by == ["cdp: 2 connections"]
    assert held.idle_for_s == 0
    assert not checks.decide(530).stop
    assert checks.decide(560).stop


def test_ensure_calls_and_leases_are_activity() -> None:
    checks = Checks(IdlePolicy(timeout_s=60, min_uptime_s=0))
    assert not checks.decide(100, last_ensure=90).stop
    assert checks.decide(150, last_ensure=90).stop
    checks = Checks(IdlePolicy(timeout_s=60, min_uptime_s=0))
    leased = checks.decide(100, lease_until=200)
    assert not leased.stop
    assert leased.held_by == ["lease: 100 s left"]
    assert not checks.decide(250, lease_until=200).stop  # 50 s after the lease
    assert checks.decide(260, lease_until=200).stop


def test_minimum_uptime_keeps_a_fresh_start_up() -> None:
    checks = Checks(IdlePolicy(timeout_s=5, min_uptime_s=30))
    decision = checks.decide(100, youngest_uptime_s=10)
    assert not decision.stop
    assert decision.stops_in_s == pytest.approx(20)
    assert decision.held_by == ["minimum uptime: 20 s left"]
    assert checks.decide(120, youngest_uptime_s=30).stop


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
    """Every program RUNNING since `started`, on the test's clock."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.started = 0.0
        self.stops: list[str] = []
        self.stopped: list[frozenset[Program]] = []
        self.last_use = dict.fromkeys(Gate, 0.0)
        self.starting = False
        # False: another sidecar controls the stack (claim.py).
        self.controls = True
        self.fail_with: Exception | None = None
        self.reader = self  # what the monitor reads supervisord's state through

    def in_control(self) -> bool:
        return self.controls

    async def refresh(self) -> dict[Program, ProcessInfo]:
        if self.fail_with is not None:
            raise self.fail_with
        return {
            p: ProcessInfo(
                str(p),
                ProcessState.RUNNING,
                pid=100 + i,
                start=int(self.started),
                now=int(self.clock[0]),
            )
            for i, p in enumerate(PROGRAMS)
        }

    async def stop(
        self, reason: str = "request", programs: frozenset[Program] = frozenset(PROGRAMS)
    ) -> None:
        self.stops.append(reason)
        self.stopped.append(programs)


async def no_connections(ports: Mapping[str, int], pids: list[int]) -> dict[str, int]:
    return dict.fromkeys(ports, 0)


async def test_monitor_stops_through_the_controller_with_the_idle_reason() -> None:
    now = [0.0]
    controller = FakeController(now)
    monitor = IdleMonitor(
        controller, IdlePolicy(10, 0), NONE, clock=lambda: now[0], connections=no_connections
    )
    now[0] = 5
    assert not (await monitor.check())["stack"].stop
    monitor.lease(20)  # held until 25
    now[0] = 30
    assert not (await monitor.check())["stack"].stop
    now[0] = 35
    assert (await monitor.check())["stack"].stop
    assert controller.stops == ["idle"]
    assert controller.stopped == [frozenset(PROGRAMS)]
    assert monitor.describe()["idle_stops"] == 1


async def test_a_sidecar_that_does_not_control_the_stack_stops_nothing() -> None:
    # Another sidecar on the same supervisord controls it: its callers' use is
    # invisible here, so an idle stop from here would stop what they use.
    now = [0.0]
    controller = FakeController(now)
    controller.controls = False
    monitor = IdleMonitor(
        controller, IdlePolicy(10, 0), NONE, clock=lambda: now[0], connections=no_connections
    )
    now[0] = 60
    assert (await monitor.check())["stack"].stop  # idle, as far as this one can tell
    assert controller.stops == []
    controller.controls = True  # the other one is gone: this one took the claim
    await monitor.check()
    assert controller.stops == ["idle"]


async def test_per_gate_an_idle_gate_stops_its_own_programs_while_cdp_is_used() -> None:
    now = [0.0]
    controller = FakeController(now)
    open_ports = {"cdp": 1, "mcp": 0, "vnc": 1, "vnc_ws": 0}

    async def connections(ports: Mapping[str, int], pids: list[int]) -> dict[str, int]:
        return {name: open_ports[name] for name in ports}

    monitor = IdleMonitor(
        controller,
        IdlePolicy(10, 0),
        NONE,
        per_gate=True,
        clock=lambda: now[0],
        connections=connections,
    )
    now[0] = 5
    controller.last_use[Gate.MCP] = 5  # an MCP ensure at 5
    decisions = await monitor.check()
    assert not any(d.stop for d in decisions.values())
    described = monitor.describe()
    assert described["programs"]["mcp-server-browser"] == []
    assert described["programs"]["websocat"] == ["vnc: 1 connection"]
    assert described["programs"]["browser"] == ["cdp: 1 connection", "vnc: 1 connection"]
    now[0] = 16  # MCP idle for 11 s; CDP and the VNC viewer still connected
    decisions = await monitor.check()
    assert decisions["mcp"].stop and not decisions["vnc"].stop and not decisions["stack"].stop
    assert controller.stops == ["idle-mcp"]
    assert controller.stopped == [frozenset({Program.MCP_SERVER_BROWSER})]
    open_ports["vnc"] = 0  # the viewer leaves at 16
    now[0] = 20
    await monitor.check()
    now[0] = 27
    await monitor.check()
    assert controller.stops[-1] == "idle-vnc"
    assert controller.stopped[-1] == frozenset({Program.WEBSOCAT, Program.OPENBOX})
    assert monitor.describe()["parts"]["vnc"]["programs"] == ["openbox", "websocat"]


async def test_a_failing_check_is_logged_counted_and_the_monitor_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # It swallowed every exception without a word: a bug silently disabled idle stop.
    now = [0.0]
    controller = FakeController(now)
    recorder = Recorder()
    monitor = IdleMonitor(
        controller,
        IdlePolicy(10, 0),
        NONE,
        clock=lambda: now[0],
        interval_s=0.001,
        connections=no_connections,
        observer=recorder,
    )
    controller.fail_with = KeyError("a bug")
    task = asyncio.create_task(monitor.run())
    try:
        await until(lambda: len(recorder.idle_errors) >= 2)
        controller.fail_with = SupervisorUnavailable("supervisord at unix:///x is not reachable")
        await until(lambda: "supervisor_unavailable" in recorder.idle_errors)
        controller.fail_with = None
        now[0] = 100
        await until(lambda: "idle" in controller.stops)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert recorder.idle_errors[0] == "KeyError"
    failures = [r for r in caplog.records if "idle check failed" in r.getMessage()]
    assert failures and failures[0].exc_info is not None  # with its traceback
    assert any("not reachable" in r.getMessage() for r in caplog.records)


async def test_idle_check_errors_are_a_metric() -> None:
    metrics = Metrics()
    metrics.idle_check_failed("KeyError")
    assert b'browser_stack_idle_check_errors_total{error="KeyError"} 1.0' in metrics.render()


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
