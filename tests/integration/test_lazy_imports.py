"""What a running `serve` has imported: none of the modules only some paths
need (psutil, tenacity, the doctor, the memory report, the activation proxy,
the JSON logger) after it started and answered a warm ensure. A stray import at
the top of a module would add its memory back to every idle sidecar.

Python says what it imports, as it imports it, whenever that is
(PYTHONPROFILEIMPORTTIME, the environment form of `-X importtime`): the real
sidecar process runs with it, and its output is read."""

from __future__ import annotations

from ..helpers import PREFIX, free_port
from .conftest import Stack

# Loaded only by the paths that need them: each with its submodules.
LAZY = (
    "psutil",  # memory report, idle stop's connection count, a port's holder
    "tenacity",  # a start's retries
    "browser_stack.doctor",  # and its modules: the checks, supervisord's config parser
    "browser_stack.memory",
    "browser_stack.proxy",  # BROWSER_STACK_ACTIVATION=proxy
    "pythonjsonlogger",  # BROWSER_STACK_LOG_FORMAT=json
)
# Loaded by any serve: proof that the import log is read at all.
ALWAYS = ("aiohttp", "browser_stack.server", "browser_stack.http_api", "browser_stack.controller")


def imported(output: str) -> set[str]:
    """The modules named in -X importtime's lines ("import time: 12 | 34 |   name")."""
    names = set()
    for line in output.splitlines():
        if line.startswith("import time:") and "imported package" not in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def lazy_among(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == m or n.startswith(m + ".") for m in LAZY))


def test_a_serve_that_answered_a_warm_ensure_has_loaded_no_lazy_module(stack: Stack) -> None:
    assert stack.sidecar is not None
    assert stack.sidecar.ensure().status == 200  # the stack up, started by another process
    watched = stack.other_sidecar(
        BROWSER_STACK_LISTEN=f"127.0.0.1:{free_port()}", PYTHONPROFILEIMPORTTIME="1"
    )
    assert watched.readyz().status == 200
    at_start = imported(watched.read_output())
    assert set(ALWAYS) <= at_start
    assert lazy_among(at_start) == []

    # Status probes what supervisord keeps alive: the model then knows it ready,
    # and the ensures answer from it, starting nothing.
    assert watched.status().status == 200
    for _ in range(2):
        response = watched.ensure()
        assert response.status == 200, response.body
        assert response.headers["x-browser-stack-outcome"] == "warm"
        assert response.body["started"] == []
    assert watched.request("GET", f"{PREFIX}/status").body["starting"] is False
    assert lazy_among(imported(watched.read_output())) == []
    # /metrics reports memory per program: its path loads the memory report.
    assert watched.request("GET", "/metrics").status == 200
    assert "browser_stack.memory" in lazy_among(imported(watched.read_output()))
