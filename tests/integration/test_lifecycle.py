"""ensure / status / stop against a real supervisord running stand-ins."""

from __future__ import annotations

import asyncio

import aiohttp

from ..helpers import PREFIX, Sidecar, free_port, wait_for
from .conftest import PROGRAMS, Stack

ONE_EACH = dict.fromkeys(PROGRAMS, 1)
X_CLIENTS = ("openbox", "browser", "websocat")


def assert_all_ready(body: dict[str, object]) -> None:
    programs = body["programs"]
    assert isinstance(programs, dict)
    not_ready = {name: p for name, p in programs.items() if not p["ready"]}
    assert not not_ready, not_ready
    assert set(programs) == set(PROGRAMS)


def test_cold_ensure_spawns_each_program_once_and_x_clients_after_x(
    stack: Stack, sidecar: Sidecar
) -> None:
    response = sidecar.ensure()

    assert response.status == 200, response.body
    assert response.body["ready"] is True
    assert response.body["cold"] is True
    assert response.headers["x-browser-stack-outcome"] == "cold"
    assert sorted(response.body["started"]) == sorted(PROGRAMS)
    assert_all_ready(response.body)
    assert response.body["endpoints"]["cdp_ws"].startswith("ws://")
    assert stack.starts() == ONE_EACH
    assert set(stack.states().values()) <= {"STARTING", "RUNNING"}
    x_seen = stack.x_at_start()
    assert x_seen["tigervnc"] == [False]  # the check can tell: no X before the X server
    for program in X_CLIENTS:
        assert x_seen[program] == [True], f"{program} was spawned before the X socket existed"


async def test_200_concurrent_ensures_share_one_start(stack: Stack, sidecar: Sidecar) -> None:
    connector = aiohttp.TCPConnector(limit=200)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> tuple[int, dict[str, object]]:
            async with session.post(f"{sidecar.base_url}{PREFIX}/ensure") as r:
                return r.status, await r.json()

        results = await asyncio.gather(*(one() for _ in range(200)))

    statuses = [status for status, _ in results]
    assert statuses == [200] * 200, [body for status, body in results if status != 200][:3]
    assert stack.starts() == ONE_EACH
    assert any(body["cold"] for _, body in results)


def test_warm_ensure_spawns_nothing(stack: Stack, sidecar: Sidecar) -> None:
    assert sidecar.ensure().status == 200
    pids = {name: info["pid"] for name, info in stack.states_info().items()}

    response = sidecar.ensure()

    assert response.status == 200, response.body
    assert response.body["cold"] is False
    assert response.body["started"] == []
    assert response.headers["x-browser-stack-outcome"] == "warm"
    assert_all_ready(response.body)
    assert stack.starts() == ONE_EACH
    assert {name: info["pid"] for name, info in stack.states_info().items()} == pids


def test_status_and_healthz_are_passive(stack: Stack, sidecar: Sidecar) -> None:
    for _ in range(3):
        status = sidecar.status()
        assert status.status == 200, status.body
        assert status.body["starting"] is False
        assert status.body["ready"] == {"cdp": False, "mcp": False, "vnc": False}
        assert {p["state"] for p in status.body["programs"].values()} == {"STOPPED"}
        health = sidecar.healthz()
        assert health.status == 200
        assert health.body["supervisor"]["reachable"] is True
        one = sidecar.request("GET", f"{PREFIX}/programs/browser")
        assert one.status == 200
        assert one.body["ready"] is False

    assert stack.starts() == {}
    assert set(stack.states().values()) == {"STOPPED"}


def test_stop_stops_all_five_and_is_idempotent(stack: Stack, sidecar: Sidecar) -> None:
    assert sidecar.ensure().status == 200
    assert len(stack.live_standins()) == len(PROGRAMS)

    first = sidecar.stop()

    assert first.status == 200, first.body
    assert sorted(first.body["stopped"]) == sorted(PROGRAMS)
    assert stack.states() == dict.fromkeys(PROGRAMS, "STOPPED")
    assert stack.live_standins() == []
    assert not stack.marker.exists()

    second = sidecar.stop()

    assert second.status == 200, second.body
    assert second.body["stopped"] == []
    assert stack.states() == dict.fromkeys(PROGRAMS, "STOPPED")
    assert stack.starts() == ONE_EACH
    status = sidecar.status()
    assert status.body["ready"] == {"cdp": False, "mcp": False, "vnc": False}


def test_program_stopped_behind_the_sidecars_back_is_brought_back(
    stack: Stack, sidecar: Sidecar
) -> None:
    assert sidecar.ensure().status == 200
    stack.supervisorctl("stop", "browser")

    status = sidecar.status()

    assert status.status == 200
    browser = status.body["programs"]["browser"]
    assert browser["state"] == "STOPPED"
    assert browser["ready"] is False
    assert status.body["ready"]["cdp"] is False
    assert status.body["ready"]["vnc"] is True

    response = sidecar.ensure()

    assert response.status == 200, response.body
    assert response.body["started"] == ["browser"]
    assert_all_ready(response.body)
    assert stack.starts() == {**ONE_EACH, "browser": 2}


def test_restarted_sidecar_finds_the_stack_up(stack: Stack) -> None:
    assert stack.sidecar is not None
    assert stack.sidecar.ensure().status == 200
    old_pid = stack.sidecar.pid

    sidecar = stack.restart_sidecar(hard=True)

    assert sidecar.pid != old_pid
    response = sidecar.ensure()
    assert response.status == 200, response.body
    assert response.body["cold"] is False
    assert response.body["started"] == []
    assert stack.starts() == ONE_EACH


def test_supervisord_down_then_back(stack: Stack, sidecar: Sidecar) -> None:
    stack.stop_supervisord()

    down = sidecar.ensure()

    assert down.status == 503, down.body
    assert down.body["error"] == "supervisor_unavailable"
    assert int(down.headers["retry-after"]) > 0
    health = sidecar.healthz()
    assert health.status == 200, health.body
    assert health.body["supervisor"]["reachable"] is False
    assert health.body["supervisor"]["message"]
    ready = sidecar.readyz()
    assert ready.status == 503, ready.body
    assert "not reachable" in ready.body["reasons"][0]
    assert stack.starts() == {}
    # A sidecar started now says at once that nothing can start yet.
    fresh = stack.start_sidecar(BROWSER_STACK_LISTEN=f"127.0.0.1:{free_port()}")
    try:
        wait_for(lambda: "no stack start can work yet" in fresh.read_output(), 10, "the warning")
    finally:
        fresh.terminate()

    stack.start_supervisord()
    back = sidecar.ensure()

    assert back.status == 200, back.body
    assert back.body["cold"] is True
    assert_all_ready(back.body)
    assert sidecar.alive() and stack.sidecar is sidecar
    assert stack.starts() == ONE_EACH
    assert sidecar.healthz().body["supervisor"]["reachable"] is True
    assert sidecar.readyz().status == 200


def test_readyz_fails_while_one_of_the_five_is_not_configured(stack: Stack) -> None:
    # /healthz said ok and ensure then answered 502: only status showed NOT_CONFIGURED.
    stack.apply_config(omit=frozenset({"websocat"}))
    try:
        sidecar = stack.other_sidecar(BROWSER_STACK_LISTEN=f"127.0.0.1:{free_port()}")
        try:
            ready = sidecar.readyz()
            assert ready.status == 503, ready.body
            assert ready.body == {
                "ok": False,
                "reasons": ["websocat is not configured in supervisord"],
            }
            assert sidecar.healthz().status == 200
            assert "websocat is not configured" in sidecar.read_output()  # logged at start
            assert stack.starts() == {}  # asking never starts anything
        finally:
            sidecar.terminate()
    finally:
        stack.apply_config()
    assert stack.restart_sidecar().readyz().status == 200
