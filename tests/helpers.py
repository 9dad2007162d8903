"""Helpers every test tier shares: free ports, waiting for a condition (sync and
async), plain HTTP requests, the sidecar's status and metrics, the real sidecar
as a subprocess. One copy each (the benches use them too: `python -m bench.X`)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

PREFIX = "/v1/browser-stack"
PROGRAMS = ("tigervnc", "openbox", "browser", "mcp-server-browser", "websocat")
REPO = Path(__file__).resolve().parent.parent

T = TypeVar("T")


_HANDED_OUT: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (all bound at once, then released),
    never one this process handed out before: layouts that run at once each pick
    their ports before any of them binds, and the kernel may offer a released port
    again."""
    ports: list[int] = []
    with _HANDED_OUT_LOCK, contextlib.ExitStack() as stack:
        while len(ports) < count:
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                ports.append(port)
    return ports


def free_port() -> int:
    return free_ports(1)[0]


def wait_for(
    predicate: Callable[[], T], timeout: float = 20, what: str = "condition", interval: float = 0.02
) -> T:
    """Poll until `predicate()` is truthy and return it; the deadline only guards
    against a hang (no test asserts how long anything took)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """The async `wait_for`: wait for a condition; the deadline guards against a hang."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the condition is plain state, no event
            await asyncio.sleep(0.005)


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: Any

    def __iter__(self) -> Iterator[Any]:
        """`status, body = response`."""
        return iter((self.status, self.body))


def request(
    base_url: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    timeout: float = 30,
) -> Response:
    """One HTTP request to `base_url` (http://host:port); any status is an answer.

    Unlike browser_stack.client, which raises on errors, this returns whatever
    came back, for tests that assert on statuses and headers."""
    host, port = base_url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        raw = response.read()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode("utf-8", "replace")
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, decoded)
    finally:
        conn.close()


def metric_value(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (GET /metrics), by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{name} {labels} not in metrics")


def program_states(status: Mapping[str, Any]) -> dict[str, str]:
    """Program name -> state, from the body of GET .../status."""
    return {name: program["state"] for name, program in status["programs"].items()}


def status(base_url: str, under: str = "") -> dict[str, Any]:
    """The sidecar's status (never wakes the stack); `under` is a gateway's prefix."""
    code, body = request(base_url, "GET", f"{under}{PREFIX}/status")
    assert code == 200, body
    assert isinstance(body, dict)
    return body


def states(base_url: str, under: str = "") -> dict[str, str]:
    return program_states(status(base_url, under))


class Sidecar:
    """The real sidecar (`python -m browser_stack serve`) as a subprocess, in its
    own session; stdout and stderr go to one file. Waits until it answers."""

    def __init__(self, env: Mapping[str, str], output: Path, *, timeout: float = 30) -> None:
        self.env = dict(env)
        self.output = output
        self.listen = self.env["BROWSER_STACK_LISTEN"]
        self.base_url = f"http://{self.listen}"
        self.start(timeout=timeout)

    def start(self, *, timeout: float = 30) -> None:
        """Start it (again, after kill or terminate: the same settings and
        address, a new process); return once it answers."""
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "browser_stack", "serve"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for(self._answers, timeout, f"the sidecar at {self.base_url}")
        except AssertionError:
            self.kill()
            raise AssertionError(f"sidecar did not come up:\n{self.read_output()}") from None

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"sidecar exited {self.proc.returncode}:\n{self.read_output()}")
        try:
            self.request("GET", "/healthz", timeout=2)  # any HTTP answer: something listens
        except OSError:
            return False
        return self._listens()

    def _listens(self) -> bool:
        """This process holds the address (not another sidecar left on it)."""
        import psutil

        port = int(self.listen.rsplit(":", 1)[1])
        try:
            held = psutil.Process(self.proc.pid).net_connections("tcp")
        except psutil.Error:
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in held)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def read_output(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def request(self, method: str, path: str, body: Any = None, *, timeout: float = 90) -> Response:
        return request(self.base_url, method, path, body, timeout=timeout)

    def ensure(self, body: Any = None, *, timeout: float = 90) -> Response:
        return self.request("POST", f"{PREFIX}/ensure", body, timeout=timeout)

    def status(self) -> Response:
        return self.request("GET", f"{PREFIX}/status")

    def stop(self) -> Response:
        return self.request("POST", f"{PREFIX}/stop")

    def states(self) -> dict[str, str]:
        return states(self.base_url)

    def healthz(self) -> Response:
        return self.request("GET", "/healthz")

    def readyz(self) -> Response:
        return self.request("GET", "/readyz")

    def terminate(self) -> None:
        """SIGTERM (what supervisord would send) and wait."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@contextlib.contextmanager
def page_server(html: str = "<html><title>page</title><body>a page</body></html>") -> Iterator[str]:
    """A local HTTP page (cookies need an http origin, not a data: URL); yields
    its origin, http://127.0.0.1:PORT/."""
    import http.server
    import threading

    body = html.encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
