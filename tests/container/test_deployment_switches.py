"""A deployment's own switches in the image, under podman: LAZY_START_BROWSER_STACK,
and DISABLE_BROWSER / DISABLE_MCP_BROWSER / DISABLE_VNC passed on by the image's
entrypoint to the sidecar and kept in force through the gateway; the fleet gauge
through the gateway's /browser-stack/metrics; the example browser tool through the
gateway, as DeerFlow's backend reaches a sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from ..helpers import PREFIX, REPO, metric_value, request, wait_for
from .conftest import PAGE, api, stack_processes, states, status

EXAMPLE = REPO / "examples" / "deerflow_browser_tool.py"


def settled(container: Any) -> dict[str, Any]:
    """Status once no start runs (BROWSER_STACK_START=all brings the rest)."""
    return wait_for(
        lambda: (s := status(container.url)) and not s["starting"] and s, 120, "the start to end"
    )


@pytest.mark.parametrize(
    ("variable", "needs", "ready", "disabled"),
    [
        (
            "DISABLE_MCP_BROWSER",
            ["cdp", "vnc"],
            {"tigervnc", "openbox", "browser", "websocat"},
            {"mcp-server-browser"},
        ),
        # mcp-server-browser is not its switch's: the image would start it too.
        (
            "DISABLE_BROWSER",
            ["vnc"],
            {"tigervnc", "openbox", "websocat", "mcp-server-browser"},
            {"browser"},
        ),
        # Chromium draws on Xvnc's display: no gate can open.
        ("DISABLE_VNC", [], set(), {"tigervnc", "openbox", "websocat"}),
    ],
)
def test_a_deployments_own_off_switch_is_kept_in_lazy_mode(
    image: str,
    sandbox_factory: Any,
    variable: str,
    needs: list[str],
    ready: set[str],
    disabled: set[str],
) -> None:
    c = sandbox_factory(image, env={"LAZY_START_BROWSER_STACK": "true", variable: "true"})
    first = status(c.url)
    assert first["mode"] == {"lazy": True, "switch": "LAZY_START_BROWSER_STACK=true"}
    assert first["disabled"] == dict.fromkeys(disabled, variable)
    assert (first["idle"]["timeout_s"], first["idle"]["timeout_source"]) == (
        300,
        "lazy mode's default",
    )
    assert set(states(c.url).values()) == {"STOPPED"}
    code, out = api(c, "POST", "/ensure")
    if not needs:
        assert code == 409, out
        assert (out["error"], out["variables"]) == ("disabled_by_deployment", [variable])
        assert stack_processes(c) == []
        return
    assert code == 200, out
    assert out["needs"] == needs
    after = settled(c)
    assert {n for n, p in after["programs"].items() if p["ready"]} == ready
    for name in disabled:
        assert (after["programs"][name]["state"], after["programs"][name]["readiness"]) == (
            "STOPPED",
            "disabled",
        )
    # A gated route whose gate is off: nginx answers the sidecar's 409 as JSON.
    route = "/sse" if variable == "DISABLE_MCP_BROWSER" else "/cdp/json/version"
    refused = request(c.url, "GET", route)
    assert refused.status == 409, refused.body
    assert refused.body["error"] == "disabled_by_deployment"


def test_the_awake_gauge_through_the_gateway(image: str, sandbox_factory: Any) -> None:
    c = sandbox_factory(image, env={"LAZY_START_BROWSER_STACK": "true"})

    def scrape(name: str) -> float:
        text = request(c.url, "GET", "/browser-stack/metrics").body
        return metric_value(text, name)

    assert (scrape("browser_stack_awake"), scrape("browser_stack_lazy")) == (0, 1)
    code, out = api(c, "POST", "/ensure", {"needs": ["cdp"]})
    assert code == 200, out
    assert scrape("browser_stack_awake") == 1
    settled(c)
    assert api(c, "POST", "/stop")[0] == 200
    assert scrape("browser_stack_awake") == 0


def test_the_example_tool_through_the_gateway(image: str, sandbox_factory: Any) -> None:
    c = sandbox_factory(image, env={"LAZY_START_BROWSER_STACK": "true"})
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--sandbox", c.url, "--prewarm", PAGE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "stand-in\n"
    assert request(c.url, "GET", f"/browser-stack{PREFIX}/status").body["ready"]["cdp"] is True
