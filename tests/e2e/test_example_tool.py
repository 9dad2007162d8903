"""examples/deerflow_browser_tool.py run as a script against the real stack, from a
stopped stack: pre-warm as on acquire, then the tool's call, which ensures CDP,
connects Playwright and prints the page's title."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ..helpers import REPO, page_server, request
from .conftest import Stack, stop_stack

EXAMPLE = REPO / "examples" / "deerflow_browser_tool.py"
TITLE = "a page for the example tool"


@pytest.fixture
def page() -> Iterator[str]:
    with page_server(f"<html><head><title>{TITLE}</title></head><body>x</body></html>") as url:
        yield url


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )


def test_the_example_tool_reads_a_title_from_a_stopped_stack(stack: Stack, page: str) -> None:
    stop_stack(stack)
    cdp = f"http://127.0.0.1:{os.environ.get('BROWSER_REMOTE_DEBUGGING_PORT') or 9222}"
    done = run_example("--browser-stack", stack.base_url, "--cdp", cdp, "--prewarm", page)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{TITLE}\n"
    status = request(stack.base_url, "GET", "/v1/browser-stack/status").body
    assert status["ready"]["cdp"] is True  # started by the tool: the stack was stopped
    # Its page closed, the browser stays for the next call: a second call is warm.
    again = run_example("--browser-stack", stack.base_url, "--cdp", cdp, page)
    assert (again.returncode, again.stdout) == (0, f"{TITLE}\n"), again.stderr
    stop_stack(stack)


def test_the_example_tool_says_when_the_browser_cannot_be_had(stack: Stack, page: str) -> None:
    done = run_example("--browser-stack", "http://127.0.0.1:9", "--cdp", "http://127.0.0.1:9", page)
    assert done.returncode == 1
    assert done.stderr.startswith("the browser is not available: ")
