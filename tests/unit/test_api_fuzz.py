"""Fuzz the running sidecar from its own OpenAPI description with schemathesis.

The sidecar runs for real (aiohttp on a loopback port, in a thread) in front of
a fake supervisord, so thousands of generated requests cost no real processes.
Every answer must match the description (status and body), no answer may be a
500, and nothing outside the allowlist may ever be started or stopped.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from browser_stack.openapi import PREFIX, spec
from browser_stack.server import create_app
from browser_stack.stack import PROGRAMS

from .fakes import FAST, FakeSupervisor, make_controller

schema = schemathesis.openapi.from_dict(spec())


class ServedApp:
    """create_app on the fakes, served on a free port from a thread of its own
    (schemathesis calls it over real HTTP)."""

    def __init__(self) -> None:
        self.supervisor = FakeSupervisor()
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        controller, _ = make_controller(self.supervisor)
        runner = web.AppRunner(create_app(FAST, controller))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> ServedApp:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture(scope="module")
def sidecar() -> Iterator[ServedApp]:
    with ServedApp() as running:
        yield running
    touched = {name for _call, name in running.supervisor.calls}
    assert touched <= set(PROGRAMS)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_contract(case: schemathesis.Case, sidecar: ServedApp) -> None:
    response = case.call(base_url=sidecar.url, timeout=15)
    # 502/503/504 are part of the contract (and checked against it); a 500 is not.
    assert response.status_code != 500
    case.validate_response(response, excluded_checks=[schemathesis.checks.not_a_server_error])
    touched = {name for _call, name in sidecar.supervisor.calls}
    assert touched <= set(PROGRAMS)


@pytest.mark.parametrize(
    ("mode", "path", "method", "expected"),
    [
        (GenerationMode.POSITIVE, f"{PREFIX}/ensure", "POST", {200}),
        (GenerationMode.NEGATIVE, f"{PREFIX}/ensure", "POST", {400}),
        (GenerationMode.POSITIVE, f"{PREFIX}/programs/{{name}}", "GET", {404}),
    ],
)
def test_the_fuzzer_generates_valid_and_invalid_requests(
    sidecar: ServedApp, mode: GenerationMode, path: str, method: str, expected: set[int]
) -> None:
    # Guards the test above against generating only one kind of input. It read a
    # list that test filled, and failed when run alone or first.
    statuses: set[int] = set()

    @given(case=schema[path][method].as_strategy(generation_mode=mode))
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    def send(case: schemathesis.Case) -> None:
        statuses.add(case.call(base_url=sidecar.url, timeout=15).status_code)

    send()
    assert expected <= statuses
