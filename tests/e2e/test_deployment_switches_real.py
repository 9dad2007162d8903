"""A deployment's own DISABLE_MCP_BROWSER=true in lazy mode, on the real stack:
mcp-server-browser never starts (pre-warm, the default ensure, and the rest of the
stack that BROWSER_STACK_START=all brings up after an answer), an `mcp` ensure or
gate answers 409 naming the variable, and the fleet gauge follows the stack.

The sidecar in place of the stack's own gets the environment the image's entrypoint
gives it: bin/browser-stack-entrypoint --aio is run with the deployment's variables
and the lazy switch, and what it passes on is the sidecar's.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..helpers import PREFIX, REPO, Sidecar, metric_value, wait_for
from .conftest import Stack, sidecar_in_place, spawn_count, stop_stack

MCP = "mcp-server-browser"


def through_the_entrypoint(tmp_path: Path, **given: str) -> dict[str, str]:
    """What `browser-stack-entrypoint --aio` passes on for `given`: the image's
    switches and the list of the deployment's own."""
    done = subprocess.run(
        [str(REPO / "bin" / "browser-stack-entrypoint"), "--aio", "env", "-0"],
        env={"PATH": os.environ["PATH"], "BROWSER_STACK_LOG_DIR": str(tmp_path), **given},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    exported = dict(item.split("=", 1) for item in done.stdout.split("\0") if item)
    names = (*given, "DISABLE_BROWSER", "DISABLE_VNC", "BROWSER_STACK_DEPLOYMENT_DISABLED")
    return {name: exported[name] for name in names}


@pytest.fixture(scope="module")
def mcp_off(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    env = through_the_entrypoint(
        tmp_path_factory.mktemp("entrypoint"),
        LAZY_START_BROWSER_STACK="true",
        DISABLE_MCP_BROWSER="true",
    )
    assert env["BROWSER_STACK_DEPLOYMENT_DISABLED"] == "DISABLE_MCP_BROWSER"
    assert env["DISABLE_BROWSER"] == env["DISABLE_VNC"] == "true"  # for run.sh: lazy
    with sidecar_in_place(stack, **env) as running:
        stop_stack(stack)
        yield running
        stop_stack(stack)


def settled(sidecar: Sidecar) -> dict[str, object]:
    """Status once no start runs: the rest of the stack follows an answer."""

    def done() -> dict[str, object] | None:
        body: dict[str, object] = sidecar.status().body
        return None if body["starting"] else body

    return wait_for(done, 60, "the start to end")


def mcp_port_open() -> bool:
    port = int(os.environ.get("MCP_SERVER_BROWSER_PORT") or 8100)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_mcp_server_browser_never_starts(stack: Stack, mcp_off: Sidecar) -> None:
    spawned_before = spawn_count(stack, MCP)
    # pre-warm and the default ensure: the gates the deployment left open
    prewarm = mcp_off.ensure({"wait": False})
    assert prewarm.status == 202, prewarm.body
    assert prewarm.body["needs"] == ["cdp", "vnc"]
    answer = mcp_off.ensure()
    assert answer.status == 200, answer.body
    assert answer.body["needs"] == ["cdp", "vnc"]
    status = settled(mcp_off)  # BROWSER_STACK_START=all (the default) brought the rest
    programs = status["programs"]
    assert isinstance(programs, dict)
    assert {n for n, p in programs.items() if p["ready"]} == {
        "tigervnc",
        "openbox",
        "browser",
        "websocat",
    }
    assert (programs[MCP]["state"], programs[MCP]["readiness"], programs[MCP]["disabled_by"]) == (
        "STOPPED",
        "disabled",
        "DISABLE_MCP_BROWSER",
    )
    assert status["mode"] == {"lazy": True, "switch": "LAZY_START_BROWSER_STACK=true"}
    assert spawn_count(stack, MCP) == spawned_before
    assert not mcp_port_open()


def test_an_mcp_ensure_or_gate_is_409_naming_the_variable(stack: Stack, mcp_off: Sidecar) -> None:
    spawned_before = spawn_count(stack, MCP)
    for response in (
        mcp_off.ensure({"needs": ["mcp"]}),
        mcp_off.ensure({"needs": ["cdp", "mcp"], "wait": False}),
        mcp_off.request("GET", f"{PREFIX}/gate/mcp"),
    ):
        assert response.status == 409, response.body
        assert response.body["error"] == "disabled_by_deployment"
        assert response.body["variables"] == ["DISABLE_MCP_BROWSER"]
    settled(mcp_off)
    assert spawn_count(stack, MCP) == spawned_before
    assert not mcp_port_open()


def test_the_awake_gauge_follows_the_stack(stack: Stack, mcp_off: Sidecar) -> None:
    def awake() -> float:
        return metric_value(mcp_off.request("GET", "/metrics").body, "browser_stack_awake")

    stop_stack(stack)
    assert awake() == 0
    assert mcp_off.ensure({"needs": ["cdp"]}).status == 200
    assert awake() == 1
    settled(mcp_off)
    stop_stack(stack)
    assert awake() == 0
