"""The real five programs and the sidecar under a private supervisord.

The supervisord config, start and shutdown live in scripts/local_stack.py, which
scripts/demo.sh uses too. mcp-server-browser is looked for in BROWSER_STACK_NODE_BIN
(default: the repo's node_modules/.bin, filled by `npm ci`). The tests skip when a
program is missing, and fail instead when BROWSER_STACK_E2E_REQUIRED=1 (.ci/run sets it).
"""

from __future__ import annotations

import contextlib
import os
import time
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import psutil
import pytest

from scripts import local_stack

from ..helpers import PROGRAMS, Response, Sidecar, free_port, request, states, wait_for

# The stack's own sidecar, as scripts/local_stack.py names its program.
SIDECAR_PROGRAM = "browser-stack"


@dataclass(frozen=True)
class Stack:
    base_url: str
    root: Path

    def processes(self) -> list[psutil.Process]:
        """Live processes started under this stack's supervisord, itself included."""
        return list(local_stack.stack_processes(self.root))

    def chromium_processes(self) -> list[str]:
        found = []
        for p in local_stack.stack_processes(self.root):
            try:
                cmdline = p.cmdline()
                if "chromium" in p.name() or (cmdline and "chromium" in cmdline[0]):
                    found.append(f"{p.pid} {' '.join(cmdline)[:100]}")
            except psutil.Error:  # gone meanwhile
                continue
        return found


def missing_programs(reason: str) -> NoReturn:
    """Skip for want of the real programs; fail under BROWSER_STACK_E2E_REQUIRED=1."""
    if os.environ.get("BROWSER_STACK_E2E_REQUIRED") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    path = local_stack.search_path()
    missing = local_stack.missing_executables(path)
    if missing:
        reason = (
            f"e2e needs the real programs; not found on PATH: {', '.join(missing)} "
            f"(mcp-server-browser is looked for in {local_stack.default_node_bin()}, "
            "set BROWSER_STACK_NODE_BIN; scripts/install-deps.sh installs them all)"
        )
        missing_programs(reason)
    root = tmp_path_factory.mktemp("stack")
    listen = f"127.0.0.1:{free_port()}"
    # The suite's shared stack stops when a test says so, not after lazy mode's
    # idle timeout between two tests (a test of idle stop runs a sidecar of its own).
    proc = local_stack.start(root, listen=listen, env=local_stack.kept_up())
    killed: list[str] = []
    try:
        base_url = f"http://{listen}"
        local_stack.wait_healthy(base_url, root, proc.pid, timeout=60)
        # The lazy boot: supervisord came up and started none of the five.
        at_boot = states(base_url)
        assert set(at_boot.values()) == {"STOPPED"}, at_boot
        yield Stack(base_url=base_url, root=root)
    finally:
        killed = local_stack.stop(root, proc.pid)
        proc.wait(timeout=10)
    assert not killed, "processes outlived supervisord's shutdown:\n" + "\n".join(killed)


@pytest.fixture(scope="module")
def stopped_after(stack: Stack) -> Iterator[None]:
    """For a module that leaves the stack stopped (pytestmark usefixtures)."""
    yield
    stop_stack(stack)


def call(
    stack: Stack, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 90
) -> Response:
    return request(stack.base_url, method, path, body, timeout=timeout)


def ensure(stack: Stack, body: dict[str, Any] | None = None) -> dict[str, Any]:
    status, out = call(stack, "POST", "/v1/browser-stack/ensure", body)
    assert status == 200, out
    assert out["ready"] is True, out
    return out


def assert_all_stopped(stack: Stack) -> None:
    status, out = call(stack, "GET", "/v1/browser-stack/status")
    assert status == 200, out
    assert out["supervisor"]["reachable"] is True
    for name in PROGRAMS:
        assert out["programs"][name]["state"] == "STOPPED", (name, out["programs"][name])
    # Chromium's crashpad handlers run in their own sessions and exit just after the browser.
    deadline = time.monotonic() + 3
    while (left := stack.chromium_processes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == []


def stop_stack(stack: Stack) -> None:
    """Bring the stack to the state a test starts from when it needs it stopped."""
    status, out = call(stack, "POST", "/v1/browser-stack/stop")
    assert status == 200, out
    assert_all_stopped(stack)


def rpc(stack: Stack, method: str, *args: Any) -> Any:
    """One call to the stack's supervisord, behind the sidecar's back."""
    return local_stack.rpc(stack.root, method, *args)


def main_pid(stack: Stack, name: str) -> int:
    return int(rpc(stack, "getProcessInfo", name)["pid"])


def spawn_count(stack: Stack, name: str) -> int:
    """How many times supervisord has spawned `name` (its log, since the stack began)."""
    text = (stack.root / "supervisord.log").read_text(encoding="utf-8", errors="replace")
    return text.count(f"spawned: '{name}'")


def start_sidecar(stack: Stack, listen: str | None = None, **extra_env: str) -> Sidecar:
    """A sidecar of a test's own on the stack's supervisord, with a short
    readiness grace and a long ensure deadline unless told otherwise."""
    listen = listen or f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "SUPERVISOR_SERVER_URL": f"unix://{stack.root}/supervisor.sock",
        "BROWSER_STACK_LISTEN": listen,
        "BROWSER_STACK_READY_GRACE": "3",
        "BROWSER_STACK_ENSURE_TIMEOUT": "60",
        **extra_env,
    }
    return Sidecar(env, stack.root / f"sidecar-{listen.replace(':', '-')}.log")


@contextlib.contextmanager
def sidecar_in_place(stack: Stack, **extra_env: str) -> Iterator[Sidecar]:
    """A sidecar with a test module's settings in place of the stack's own, on
    its address: one sidecar controls a supervisord (claim.py), and whatever
    asks the stack's address asks this one. The stack's own is back after."""
    stop_stacks_sidecar(stack)
    running = start_sidecar(stack, stack.base_url.removeprefix("http://"), **extra_env)
    try:
        yield running
    finally:
        running.kill()
        # ALREADY_STARTED: supervisord restarted it meanwhile and retries its
        # start, which failed while this one held the address.
        with contextlib.suppress(xmlrpc.client.Fault):
            local_stack.rpc(stack.root, "startProcess", SIDECAR_PROGRAM, True)
        wait_for(lambda: _answers(stack.base_url), 60, "the stack's own sidecar")


def stop_stacks_sidecar(stack: Stack) -> None:
    """Stop the stack's own sidecar program (again, after supervisord started it
    anew: it would take the address whenever the one in its place restarts)."""
    with contextlib.suppress(xmlrpc.client.Fault):  # NOT_RUNNING: stopped already
        local_stack.rpc(stack.root, "stopProcess", SIDECAR_PROGRAM, True)


def _answers(base_url: str) -> bool:
    try:
        return request(base_url, "GET", "/healthz", timeout=2).status == 200
    except OSError:
        return False
