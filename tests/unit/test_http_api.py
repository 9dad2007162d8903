from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from browser_stack.server import create_app
from browser_stack.stack import PROGRAMS, Program
from browser_stack.states import ProcessState

from .fakes import FAST, FakeSupervisor, make_controller

ENSURE = "/v1/browser-stack/ensure"


@pytest.fixture
def sup() -> FakeSupervisor:
    return FakeSupervisor()


@pytest.fixture
async def client(sup: FakeSupervisor) -> AsyncIterator[TestClient[object, object]]:
    controller, _ = make_controller(sup)
    async with TestClient(TestServer(create_app(FAST, controller))) as c:
        yield c


async def test_ensure_answers_the_contract(client: TestClient[object, object]) -> None:
    response = await client.post(ENSURE, json={"needs": ["cdp", "mcp"], "timeout_s": 5})
    assert response.status == 200
    body = await response.json()
    assert body["ready"] is True
    assert body["cold"] is True
    assert isinstance(body["elapsed_ms"], float)
    # What these gates need; the rest is spawned once they are ready.
    assert {"tigervnc", "browser", "mcp-server-browser"} <= set(body["started"]) <= set(PROGRAMS)
    assert body["programs"]["browser"]["ready"] is True
    assert set(body["endpoints"]) == {"cdp", "cdp_ws", "mcp", "vnc", "vnc_ws"}
    assert response.headers["X-Browser-Stack-Outcome"] == "cold"
    assert float(response.headers["X-Browser-Stack-Elapsed-Ms"]) >= 0


async def start_ended(client: TestClient[object, object]) -> dict[str, Any]:
    """The status once the start in the background has ended; the bound only
    guards against a hang."""
    for _ in range(1000):
        status: dict[str, Any] = await (await client.get("/v1/browser-stack/status")).json()
        if not status["starting"] and status["last_start"] is not None:
            return status
        await asyncio.sleep(0.01)
    raise AssertionError(f"the start did not end: {status}")


async def test_an_answer_carries_every_programs_readiness_and_the_endpoints(
    client: TestClient[object, object], sup: FakeSupervisor
) -> None:
    await client.post(ENSURE, json={"needs": ["cdp"]})
    await start_ended(client)  # the rest of the stack comes up after the answer
    sup.programs[Program.WEBSOCAT].state = ProcessState.EXITED  # behind our back
    await client.get("/v1/browser-stack/status")  # supervisord read: the model knows
    body = await (await client.post(ENSURE, json={"needs": ["cdp"]})).json()
    assert body["cold"] is False
    assert set(body["programs"]) == set(PROGRAMS)
    browser = body["programs"]["browser"]
    assert (browser["ready"], browser["readiness"]) == (True, "ready")
    websocat = body["programs"]["websocat"]
    assert (websocat["state"], websocat["ready"], websocat["readiness"]) == (
        "EXITED",
        False,
        "failed",
    )
    assert body["endpoints"]["cdp_ws"] == "ws://127.0.0.1:9222/devtools/browser/fake"


async def test_empty_body_means_all_gates(client: TestClient[object, object]) -> None:
    response = await client.post(ENSURE)
    body = await response.json()
    assert response.status == 200
    assert body["needs"] == ["cdp", "mcp", "vnc"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"needs": "cdp"}', "non-empty list"),
        (b'{"needs": []}', "non-empty list"),
        (b'{"needs": ["gpu"]}', 'unknown need "gpu"; allowed: cdp, mcp, vnc'),
        (b'{"needs": [1]}', "unknown need 1;"),
        # Python's reprs, None and {'a': 1}, were in these messages.
        (b'{"needs": [null]}', "unknown need null;"),
        (b'{"needs": [{"a": 1}]}', 'unknown need {"a": 1};'),
        (b'{"timeout_s": "5"}', "number"),
        (b'{"timeout_s": true}', "number"),
        (b'{"timeout_s": -1}', "more than 0"),
        (b'{"timeout_s": 0}', "more than 0"),
        (b'{"timeout_s": 1e9}', "at most"),
        (b'{"program": "sshd"}', "unknown field"),
    ],
)
async def test_bad_ensure_bodies_are_400_and_start_nothing(
    client: TestClient[object, object], sup: FakeSupervisor, body: bytes, fragment: str
) -> None:
    response = await client.post(ENSURE, data=body)
    assert response.status == 400
    payload = await response.json()
    assert payload["error"] == "bad_request"
    assert fragment in payload["message"]
    assert sup.calls == []


async def test_unknown_need_lists_the_allowed_gates(client: TestClient[object, object]) -> None:
    response = await client.post(ENSURE, json={"needs": ["sshd"]})
    assert (await response.json())["allowed"] == ["cdp", "mcp", "vnc"]


async def test_oversized_body_is_413(
    client: TestClient[object, object], sup: FakeSupervisor
) -> None:
    response = await client.post(ENSURE, data=b"{" + b" " * 10_000 + b"}")
    assert response.status == 413
    assert (await response.json())["error"] == "body_too_large"
    assert sup.calls == []


async def test_wrong_method_is_405(client: TestClient[object, object]) -> None:
    response = await client.get(ENSURE)
    assert response.status == 405
    assert (await response.json())["error"] == "method_not_allowed"


async def test_unknown_route_is_404_json(client: TestClient[object, object]) -> None:
    response = await client.get("/v1/browser-stack/nothing")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_unknown_program_is_404_listing_the_allowlist(
    client: TestClient[object, object], sup: FakeSupervisor
) -> None:
    response = await client.get("/v1/browser-stack/programs/sshd")
    assert response.status == 404
    body = await response.json()
    assert body["error"] == "unknown_program"
    assert body["allowed"] == list(PROGRAMS)
    assert sup.calls == []


async def test_program_status(client: TestClient[object, object]) -> None:
    response = await client.get("/v1/browser-stack/programs/browser")
    assert response.status == 200
    body = await response.json()
    assert body["program"] == "browser"
    assert body["state"] == "STOPPED"


async def test_failed_program_is_502_with_details(
    client: TestClient[object, object], sup: FakeSupervisor
) -> None:
    sup.programs[Program.BROWSER].crash_on_start = True
    sup.programs[Program.BROWSER].stderr = "boom"
    response = await client.post(ENSURE, json={"needs": ["cdp"]})
    assert response.status == 502
    body = await response.json()
    assert body["error"] == "program_failed"
    assert body["program"] == "browser"
    assert body["state"] == "FATAL"
    assert body["stderr_tail"] == "boom"


async def test_unreachable_supervisor_is_503_with_retry_after(
    client: TestClient[object, object], sup: FakeSupervisor
) -> None:
    sup.reachable = False
    response = await client.post(ENSURE)
    assert response.status == 503
    assert response.headers["Retry-After"] == "2"
    assert (await response.json())["error"] == "supervisor_unavailable"
    health = await client.get("/healthz")
    assert health.status == 200
    assert (await health.json())["supervisor"]["reachable"] is False


async def test_deadline_is_504_naming_the_gates(
    client: TestClient[object, object], sup: FakeSupervisor
) -> None:
    sup.programs[Program.BROWSER].ready_after_s = None
    response = await client.post(ENSURE, json={"needs": ["cdp"], "timeout_s": 0.1})
    assert response.status == 504
    body = await response.json()
    assert body["error"] == "readiness_timeout"
    assert body["pending_gates"] == ["cdp"]


async def test_stop_during_ensure_is_409_for_the_waiter(
    client: TestClient[object, object], sup: FakeSupervisor
) -> None:
    sup.programs[Program.BROWSER].ready_after_s = 0.5
    waiting = asyncio.ensure_future(client.post(ENSURE, json={"needs": ["cdp"]}))
    await asyncio.sleep(0.05)
    stop = await client.post("/v1/browser-stack/stop")
    assert stop.status == 200
    assert (await stop.json())["cancelled_start"] is True
    response = await waiting
    assert response.status == 409
    assert (await response.json())["error"] == "stopped"


async def test_status_is_passive(client: TestClient[object, object], sup: FakeSupervisor) -> None:
    response = await client.get("/v1/browser-stack/status")
    assert response.status == 200
    body = await response.json()
    assert set(body["programs"]) == set(PROGRAMS)
    assert body["ready"] == {"cdp": False, "mcp": False, "vnc": False}
    assert sup.calls == []
    health = await client.get("/healthz")
    assert (await health.json())["supervisor"]["reachable"] is True
    assert sup.calls == []


async def test_status_says_when_supervisord_is_unreachable(
    client: TestClient[object, object], sup: FakeSupervisor
) -> None:
    # It said "reachable": true whatever happened (and answered 503 instead).
    sup.reachable = False
    response = await client.get("/v1/browser-stack/status")
    assert response.status == 200
    body = await response.json()
    assert body["supervisor"]["reachable"] is False
    assert "not reachable" in body["supervisor"]["message"]
    assert {p["state"] for p in body["programs"].values()} == {"UNKNOWN"}
    assert body["ready"] == {"cdp": False, "mcp": False, "vnc": False}
    sup.reachable = True
    body = await (await client.get("/v1/browser-stack/status")).json()
    assert body["supervisor"] == {"reachable": True}


async def test_healthz_is_liveness_and_readyz_needs_supervisord_and_the_five(
    client: TestClient[object, object], sup: FakeSupervisor
) -> None:
    ready = await client.get("/readyz")
    assert (ready.status, await ready.json()) == (200, {"ok": True, "reasons": []})
    sup.reachable = False
    health = await client.get("/healthz")
    assert health.status == 200
    assert (await health.json())["supervisor"]["reachable"] is False
    ready = await client.get("/readyz")
    assert ready.status == 503
    body = await ready.json()
    assert body["ok"] is False
    assert "not reachable" in body["reasons"][0]
    sup.reachable = True
    sup.unconfigured = {Program.BROWSER, Program.WEBSOCAT}
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["reasons"] == [
        "browser is not configured in supervisord",
        "websocat is not configured in supervisord",
    ]
    assert (await client.get("/healthz")).status == 200
    assert sup.calls == []  # neither wakes the stack


async def test_stop_rejects_a_body_naming_programs(
    client: TestClient[object, object], sup: FakeSupervisor
) -> None:
    response = await client.post("/v1/browser-stack/stop", json={"programs": ["sshd"]})
    assert response.status == 400
    assert sup.calls == []


GUARDED = [
    ("POST", ENSURE),
    ("POST", "/v1/browser-stack/stop"),
    ("POST", "/v1/browser-stack/lease"),
    ("GET", "/v1/browser-stack/gate/cdp"),
    ("GET", "/v1/browser-stack/status"),
    ("GET", "/v1/browser-stack/programs/browser"),
    ("GET", "/v1/browser-stack/memory"),
    ("GET", "/v1/browser-stack/openapi.json"),
    ("GET", "/metrics"),
]


async def test_with_a_token_every_endpoint_but_the_probes_needs_it(sup: FakeSupervisor) -> None:
    # status and programs/* return stderr tails, memory pids, metrics usage.
    settings = replace(FAST, token="s3cret")
    controller, _ = make_controller(sup, settings)
    async with TestClient(TestServer(create_app(settings, controller))) as c:
        for method, path in GUARDED:
            assert (await c.request(method, path)).status == 401, path
            wrong = await c.request(method, path, headers={"Authorization": "Bearer nope"})
            assert wrong.status == 401, path
            assert wrong.headers["WWW-Authenticate"] == "Bearer"
        assert sup.calls == []
        for path in ("/healthz", "/readyz"):
            assert (await c.get(path)).status == 200, path
        token = {"Authorization": "Bearer s3cret"}
        assert (await c.post(ENSURE, headers=token)).status == 200
        assert (await c.get("/v1/browser-stack/status", headers=token)).status == 200
        assert (await c.get("/metrics", headers=token)).status == 200


async def test_gate_for_auth_request_ensures_one_gate(
    client: TestClient[object, object], sup: FakeSupervisor
) -> None:
    response = await client.get("/v1/browser-stack/gate/cdp")
    assert response.status == 204
    assert response.headers["X-Browser-Stack-Outcome"] == "cold"
    assert sup.starts(Program.BROWSER) == ["browser"]
    unknown = await client.get("/v1/browser-stack/gate/ssh")
    assert unknown.status == 400
    sup.reachable = False
    # Ready: answered from what is known, with no need of supervisord.
    assert (await client.get("/v1/browser-stack/gate/cdp")).status == 204
    sup.reachable = True
    await client.post("/v1/browser-stack/stop")
    sup.reachable = False
    down = await client.get("/v1/browser-stack/gate/cdp")
    assert down.status == 503
    assert down.headers["X-Browser-Stack-Error"] == "supervisor_unavailable"


async def test_whitespace_body_is_not_json(
    client: TestClient[object, object], sup: FakeSupervisor
) -> None:
    # Found by the schemathesis fuzz: "\t" was taken for an empty body.
    response = await client.post(ENSURE, data=b"\t")
    assert response.status == 400
    assert sup.calls == []


async def test_wait_false_is_202_at_once_and_the_start_goes_on(
    client: TestClient[object, object], sup: FakeSupervisor
) -> None:
    sup.programs[Program.BROWSER].ready_after_s = 0.3
    response = await client.post(ENSURE, json={"needs": ["cdp"], "wait": False})
    assert response.status == 202
    assert await response.json() == {"accepted": True, "needs": ["cdp"]}
    status = await (await client.get("/v1/browser-stack/status")).json()
    assert status["starting"] is True
    joined = await client.post(ENSURE, json={"needs": ["cdp"]})
    assert joined.status == 200
    assert (await joined.json())["cold"] is True
    assert sup.starts(Program.BROWSER) == ["browser"]
    status = await start_ended(client)  # the rest of the start ends after the answer
    assert status["last_start"]["ok"] is True
    assert {"tigervnc", "browser"} <= set(status["last_start"]["started"])
    bad = await client.post(ENSURE, json={"wait": "no"})
    assert bad.status == 400
    assert "wait must be true or false" in (await bad.json())["message"]


async def test_status_shows_a_program_whose_background_start_waits(
    client: TestClient[object, object], sup: FakeSupervisor
) -> None:
    sup.programs[Program.WEBSOCAT].start_fault = 20  # NO_FILE: its command is gone
    await client.post(ENSURE, json={"needs": ["cdp"]})
    status = await start_ended(client)
    assert status["last_start"]["ok"] is False
    failing = status["backoff"]["websocat"]
    assert failing["failures"] == 1
    assert failing["retry_in_s"] > 0
    assert failing["error"]["program"] == "websocat"
    text = await (await client.get("/v1/browser-stack/status?format=text")).text()
    assert "websocat: failed 1 time(s) in a row; next background start in" in text
