"""A deployment's switches as the sidecar reads them: lazy mode and its idle stop,
the image's own DISABLE_* (what they cover is never started), and the fleet
gauges, on the fakes over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from browser_stack import switches
from browser_stack.config import LAZY_IDLE_TIMEOUT_S, Settings
from browser_stack.errors import ConfigError
from browser_stack.metrics import Metrics
from browser_stack.server import create_app
from browser_stack.stack import DISABLED_BY, GATES, Gate, Program, blocked

from ..helpers import metric_value
from .fakes import FAST, FakeSupervisor, make_controller

PREFIX = "/v1/browser-stack"


@pytest.mark.parametrize(
    ("env", "timeout", "source"),
    [
        ({}, 0.0, "eager mode's default"),
        ({"LAZY_START_BROWSER_STACK": "true"}, LAZY_IDLE_TIMEOUT_S, "lazy mode's default"),
        ({"DISABLE_BROWSER_STACK": "1"}, LAZY_IDLE_TIMEOUT_S, "lazy mode's default"),
        ({"AUTOSTART_BROWSER_STACK": "no"}, LAZY_IDLE_TIMEOUT_S, "lazy mode's default"),
        ({"BROWSER_STACK_DEFAULT": "lazy"}, LAZY_IDLE_TIMEOUT_S, "lazy mode's default"),
        (
            {"LAZY_START_BROWSER_STACK": "true", "BROWSER_STACK_IDLE_TIMEOUT": "0"},
            0.0,
            "BROWSER_STACK_IDLE_TIMEOUT",
        ),
        (
            {"LAZY_START_BROWSER_STACK": "yes", "BROWSER_STACK_IDLE_TIMEOUT": "45"},
            45.0,
            "BROWSER_STACK_IDLE_TIMEOUT",
        ),
        ({"BROWSER_STACK_IDLE_TIMEOUT": "120"}, 120.0, "BROWSER_STACK_IDLE_TIMEOUT"),
        ({"LAZY_START_BROWSER_STACK": "false"}, 0.0, "eager mode's default"),
    ],
)
def test_idle_stop_is_on_by_default_in_lazy_mode_only(
    env: dict[str, str], timeout: float, source: str
) -> None:
    settings = Settings.from_env(env)
    assert settings.lazy == switches.is_lazy(env)
    assert (settings.idle_timeout_s, settings.idle_timeout_source) == (timeout, source)


def test_an_invalid_switch_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"LAZY_START_BROWSER_STACK": "sure"})
    assert caught.value.fields["variable"] == "LAZY_START_BROWSER_STACK"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"BROWSER_STACK_DEPLOYMENT_DISABLED": "DISABLE_VNC,DISABLE_GPU"})
    assert "DISABLE_GPU" in caught.value.message


def test_each_image_switch_covers_programs_of_the_allowlist() -> None:
    assert tuple(DISABLED_BY) == switches.IMAGE_SWITCHES
    covered = [p for programs in DISABLED_BY.values() for p in programs]
    assert sorted(covered) == sorted(Program)  # each of the five by exactly one


@pytest.mark.parametrize(
    ("turned_off", "disabled", "refused"),
    [
        ("", {}, set()),
        ("DISABLE_BROWSER", {"browser": "DISABLE_BROWSER"}, {Gate.CDP, Gate.MCP}),
        (
            "DISABLE_MCP_BROWSER",
            {"mcp-server-browser": "DISABLE_MCP_BROWSER"},
            {Gate.MCP},
        ),
        (
            # Chromium draws on Xvnc's display: without it no gate opens.
            "DISABLE_VNC",
            {"tigervnc": "DISABLE_VNC", "openbox": "DISABLE_VNC", "websocat": "DISABLE_VNC"},
            set(GATES),
        ),
        (
            "DISABLE_VNC DISABLE_MCP_BROWSER",
            {
                "tigervnc": "DISABLE_VNC",
                "openbox": "DISABLE_VNC",
                "websocat": "DISABLE_VNC",
                "mcp-server-browser": "DISABLE_MCP_BROWSER",
            },
            set(GATES),
        ),
    ],
)
def test_what_each_image_switch_keeps_stopped(
    turned_off: str, disabled: dict[str, str], refused: set[Gate]
) -> None:
    settings = Settings.from_env({"BROWSER_STACK_DEPLOYMENT_DISABLED": turned_off})
    assert {str(p): v for p, v in settings.disabled.items()} == disabled
    assert set(blocked(GATES, settings.disabled)) == refused


def lazy_with(turned_off: str) -> Settings:
    return replace(
        FAST,
        lazy=True,
        disabled_by=switches.deployment_disabled({switches.DEPLOYMENT_DISABLED: turned_off}),
    )


@pytest.fixture
async def mcp_off() -> AsyncIterator[tuple[TestClient[object, object], FakeSupervisor]]:
    settings = lazy_with("DISABLE_MCP_BROWSER")
    controller, sup = make_controller(settings=settings)
    async with TestClient(TestServer(create_app(settings, controller))) as c:
        yield c, sup


async def settled(client: TestClient[object, object]) -> dict[str, Any]:
    """Status once no start runs (the rest of the stack follows an answer)."""
    for _ in range(1000):
        status: dict[str, Any] = await (await client.get(f"{PREFIX}/status")).json()
        if not status["starting"]:
            return status
        await asyncio.sleep(0.01)
    raise AssertionError(f"the start did not end: {status}")


async def test_a_disabled_program_is_never_started(
    mcp_off: tuple[TestClient[object, object], FakeSupervisor],
) -> None:
    client, sup = mcp_off
    # pre-warm with the default gates, then the default ensure: the gates left open
    accepted = await client.post(f"{PREFIX}/ensure", json={"wait": False})
    assert accepted.status == 202
    assert (await accepted.json())["needs"] == ["cdp", "vnc"]
    answer = await client.post(f"{PREFIX}/ensure")
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["needs"] == ["cdp", "vnc"]
    status = await settled(client)  # BROWSER_STACK_START=all: the rest followed
    assert sup.starts(Program.MCP_SERVER_BROWSER) == []
    assert {p for p, s in status["programs"].items() if s["ready"]} == {
        "tigervnc",
        "openbox",
        "browser",
        "websocat",
    }
    mcp = status["programs"]["mcp-server-browser"]
    assert (mcp["state"], mcp["readiness"], mcp["disabled_by"]) == (
        "STOPPED",
        "disabled",
        "DISABLE_MCP_BROWSER",
    )
    assert status["disabled"] == {"mcp-server-browser": "DISABLE_MCP_BROWSER"}
    assert status["mode"] == {"lazy": True, "switch": "no switch set"}
    text = await (await client.get(f"{PREFIX}/status?format=text")).text()
    assert "mcp-server-browser   STOPPED        by DISABLE_MCP_BROWSER" in text
    assert "disabled" in text.splitlines()[3]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/ensure", {"needs": ["mcp"]}),
        ("POST", "/ensure", {"needs": ["cdp", "mcp", "vnc"]}),
        ("POST", "/ensure", {"needs": ["mcp"], "wait": False}),
        ("GET", "/gate/mcp", None),
    ],
)
async def test_asking_for_a_disabled_gate_is_409_naming_the_variable(
    mcp_off: tuple[TestClient[object, object], FakeSupervisor],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    client, sup = mcp_off
    response = await client.request(method, PREFIX + path, json=body)
    assert response.status == 409
    error = await response.json()
    assert error["error"] == "disabled_by_deployment"
    assert error["variables"] == ["DISABLE_MCP_BROWSER"]
    assert error["gates"] == ["mcp"]
    assert "DISABLE_MCP_BROWSER=true" in error["message"]
    await settled(client)
    assert sup.starts() == []  # refused before anything started


async def test_with_every_gate_turned_off_the_default_ensure_is_refused() -> None:
    settings = lazy_with("DISABLE_VNC")
    controller, sup = make_controller(settings=settings)
    async with TestClient(TestServer(create_app(settings, controller))) as client:
        response = await client.post(f"{PREFIX}/ensure")
        assert response.status == 409
        error = await response.json()
        assert error["gates"] == ["cdp", "mcp", "vnc"]
        assert error["variables"] == ["DISABLE_VNC"]
    assert sup.starts() == []


async def test_the_fleet_gauges_move_with_the_stack() -> None:
    settings = lazy_with("")
    settings = replace(settings, idle_timeout_s=LAZY_IDLE_TIMEOUT_S)
    controller, _sup = make_controller(settings=settings)
    async with TestClient(TestServer(create_app(settings, controller, Metrics()))) as client:

        async def scrape() -> str:
            return await (await client.get("/metrics")).text()

        text = await scrape()
        assert metric_value(text, "browser_stack_awake") == 0
        assert metric_value(text, "browser_stack_lazy") == 1
        assert metric_value(text, "browser_stack_idle_timeout_seconds") == LAZY_IDLE_TIMEOUT_S
        assert (await client.post(f"{PREFIX}/ensure", json={"needs": ["cdp"]})).status == 200
        assert metric_value(await scrape(), "browser_stack_awake") == 1
        await settled(client)
        assert (await client.post(f"{PREFIX}/stop")).status == 200
        assert metric_value(await scrape(), "browser_stack_awake") == 0
