"""The doctor on the real stack from supervisord.d/browser-stack-programs.conf.

Live (the CLI over supervisord's socket, and the sidecar's route) and static
(the CLI on the same files), with the stack stopped and with it running: every
check ok. The one exception is cgroup-memory, which says what this machine
has (no cgroup v2 here: a warning). The module leaves the stack stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from browser_stack import memory

from ..helpers import states, wait_for
from .conftest import Stack, call, ensure, local_stack, stop_stack

CGROUP = "cgroup-memory"


def cli_env(stack: Stack) -> dict[str, str]:
    """The environment supervisord was booted with (the programs' PATH among it),
    and where its socket is: what `docker exec CONTAINER browser-stack doctor` has."""
    env = local_stack.stack_env(stack.root, path=local_stack.search_path())
    env["SUPERVISOR_SERVER_URL"] = f"unix://{stack.root}/supervisor.sock"
    return env


def doctor(stack: Stack, *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "browser_stack", "doctor", "--json", *args],
        env=cli_env(stack),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr == ""
    return done.returncode, json.loads(done.stdout)


def assert_every_check_ok(report: dict[str, Any], mode: str) -> dict[str, dict[str, str]]:
    assert report["mode"] == mode
    checks = {c["check"]: c for c in report["checks"]}
    cgroup = "ok" if memory.cgroup_memory()["available"] else "warn"
    assert checks.pop(CGROUP)["verdict"] == cgroup
    assert {n: c["verdict"] for n, c in checks.items()} == dict.fromkeys(checks, "ok"), checks
    assert report["ok"] is True
    return checks


def test_stopped_stack_live_static_and_the_route(stack: Stack) -> None:
    stop_stack(stack)
    code, live = doctor(stack)
    assert code == 0
    checks = assert_every_check_ok(live, "live")
    assert {"stack-ports", "x-lock", "pidfd"} <= set(checks)
    code, static = doctor(stack, "--static", "--config", str(stack.root / "supervisord.conf"))
    assert code == 0
    checks = assert_every_check_ok(static, "static")
    assert not {"stack-ports", "x-lock", "pidfd"} & set(checks)
    assert "stopsignal=INT" in checks["browser-stop-signal"]["saw"]
    # The route asks the same, in the sidecar's own environment, and wakes nothing.
    status, routed = call(stack, "GET", "/v1/browser-stack/doctor")
    assert status == 200
    assert_every_check_ok(routed, "live")
    assert set(states(stack.base_url).values()) == {"STOPPED"}


def test_running_stack_holds_its_own_ports_and_display(stack: Stack) -> None:
    try:
        ensure(stack)
        code, live = doctor(stack)
        assert code == 0
        checks = assert_every_check_ok(live, "live")
        assert "held by browser (pid" in checks["stack-ports"]["saw"]
        assert "held by tigervnc (pid" in checks["stack-ports"]["saw"]
        assert "tigervnc's own Xvnc" in checks["x-lock"]["saw"]
        # The doctor only read: every program goes on to RUNNING (supervisord says
        # so startsecs after the spawn, which may be after the probes passed).
        wait_for(
            lambda: set(states(stack.base_url).values()) == {"RUNNING"}, what="all five RUNNING"
        )
    finally:
        stop_stack(stack)
