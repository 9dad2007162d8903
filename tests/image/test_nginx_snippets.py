"""deploy/nginx/*.conf in a real nginx, in front of a fake sidecar and a fake browser.

The fakes let every answer of the gate be tried (the real stack is in
tests/e2e/test_nginx_gate.py): 204 lets the request through, each sidecar error
becomes its own status with a JSON body, an unreachable sidecar is a 503, nothing
of the caller's request reaches the sidecar, and ungated routes never ask it.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .gateway import Gateway, Upstreams, free_port, nginx_binary, running_gateway

pytestmark = [
    pytest.mark.skipif(nginx_binary() is None, reason="nginx not installed"),
]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Fake:
    """A tiny HTTP server in a thread; `answers` maps a path to (status, headers, body)."""

    answers: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    def serve(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.seen.append(
                    Seen(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                status, headers, out = fake.answers.get(
                    self.path, (404, {"Content-Type": "application/json"}, b'{"error":"not_found"}')
                )
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return server


def gate_answer(status: int, code: str | None = None) -> tuple[int, dict[str, str], bytes]:
    if status == 204:
        return 204, {"X-Browser-Stack-Outcome": "warm"}, b""
    headers = {"Content-Type": "application/json", "X-Browser-Stack-Error": str(code)}
    return status, headers, json.dumps({"error": code, "message": "m"}).encode()


@dataclass
class Rig:
    gateway: Gateway
    sidecar: Fake
    browser: Fake

    def gate_calls(self) -> list[Seen]:
        return [s for s in self.sidecar.seen if "/gate/" in s.path]


DEFAULT_SIDECAR = {
    **{f"/v1/browser-stack/gate/{g}": gate_answer(204) for g in ("cdp", "mcp", "vnc")},
    "/healthz": (200, {"Content-Type": "application/json"}, b'{"ok":true}'),
}
DEFAULT_BROWSER = {
    "/json/version": (200, {"Content-Type": "application/json"}, b'{"B":1}'),
    "/boom": (500, {"Content-Type": "text/plain"}, b"upstream boom"),
    "/sse": (200, {"Content-Type": "text/plain"}, b"mcp"),
}


@pytest.fixture(scope="module")
def module_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One nginx and one pair of fakes for the module (nginx starts in ~50 ms, but
    each shutdown costs more)."""
    sidecar, browser = Fake(), Fake()
    servers = [sidecar.serve(), browser.serve()]
    up = Upstreams(
        sidecar=f"127.0.0.1:{sidecar.port}", cdp=browser.port, vnc_ws=browser.port, mcp=browser.port
    )
    try:
        with running_gateway(tmp_path_factory.mktemp("nginx"), up) as gateway:
            yield Rig(gateway, sidecar, browser)
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def rig(module_rig: Rig) -> Rig:
    for fake, answers in (
        (module_rig.sidecar, DEFAULT_SIDECAR),
        (module_rig.browser, DEFAULT_BROWSER),
    ):
        fake.answers.clear()
        fake.answers.update(answers)
        fake.seen.clear()
    return module_rig


def fetch(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def test_ready_gate_lets_the_request_through_and_tells_the_sidecar_nothing(rig: Rig) -> None:
    status, _, body = fetch(
        rig.gateway.url + "/cdp/json/version",
        method="POST",
        body=b'{"secret": 1}',
        headers={"Authorization": "Bearer caller-secret", "Cookie": "s=1", "Upgrade": "websocket"},
    )
    assert (status, body) == (200, b'{"B":1}')
    [call] = rig.gate_calls()
    assert (call.method, call.path, call.body) == ("GET", "/v1/browser-stack/gate/cdp", b"")
    assert not {"authorization", "cookie", "upgrade", "content-type"} & set(call.headers)
    # the browser got the caller's request as it was, prefix stripped
    [upstream] = rig.browser.seen
    assert (upstream.method, upstream.path, upstream.body) == (
        "POST",
        "/json/version",
        b'{"secret": 1}',
    )
    assert upstream.headers["authorization"] == "Bearer caller-secret"


@pytest.mark.parametrize(
    ("path", "gate"),
    [
        ("/cdp/json/version", "cdp"),
        ("/devtools/x", "cdp"),
        ("/websockify", "vnc"),
        ("/sse", "mcp"),
        ("/message", "mcp"),
    ],
)
def test_each_location_asks_for_its_gate(rig: Rig, path: str, gate: str) -> None:
    fetch(rig.gateway.url + path)
    assert [c.path for c in rig.gate_calls()] == [f"/v1/browser-stack/gate/{gate}"]


@pytest.mark.parametrize(
    ("sidecar_status", "code", "want_status"),
    [
        (504, "readiness_timeout", 504),
        (502, "program_failed", 502),
        (502, "port_in_use", 502),
        (503, "supervisor_unavailable", 503),
        (409, "stopped", 409),
        (409, "disabled_by_deployment", 409),
    ],
)
def test_failed_gate_answers_the_sidecars_status_as_json(
    rig: Rig, sidecar_status: int, code: str, want_status: int
) -> None:
    rig.sidecar.answers["/v1/browser-stack/gate/cdp"] = gate_answer(sidecar_status, code)
    status, headers, body = fetch(rig.gateway.url + "/cdp/json/version")
    assert status == want_status
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"] == code
    assert rig.browser.seen == []  # the browser was never asked


def test_sidecar_401_is_passed_on(rig: Rig) -> None:
    rig.sidecar.answers["/v1/browser-stack/gate/cdp"] = gate_answer(401, "unauthorized")
    status, _, _ = fetch(rig.gateway.url + "/cdp/json/version")
    assert status == 401
    assert rig.browser.seen == []


def test_unreachable_sidecar_is_503(tmp_path: Path) -> None:
    browser = Fake()
    server = browser.serve()
    up = Upstreams(sidecar=f"127.0.0.1:{free_port()}", cdp=browser.port)  # nothing listens
    try:
        with running_gateway(tmp_path / "nginx", up) as gateway:
            status, _, body = fetch(gateway.url + "/cdp/json/version")
            assert status == 503
            assert json.loads(body)["error"] == "browser_stack_unreachable"
            status, _, _ = fetch(gateway.url + "/browser-stack/healthz")
            assert status == 502  # nginx's own answer: nothing behind /browser-stack/
    finally:
        server.shutdown()
        server.server_close()
    assert browser.seen == []


def test_upstream_errors_are_not_mistaken_for_gate_failures(rig: Rig) -> None:
    status, _, body = fetch(rig.gateway.url + "/cdp/boom")
    assert (status, body) == (500, b"upstream boom")


def test_browser_stack_prefix_reaches_the_sidecar_unchanged(rig: Rig) -> None:
    rig.sidecar.answers["/v1/browser-stack/ensure"] = (
        400,
        {"Content-Type": "application/json"},
        b'{"error":"bad_request","message":"m"}',
    )
    status, _, body = fetch(rig.gateway.url + "/browser-stack/healthz")
    assert (status, body) == (200, b'{"ok":true}')
    status, _, body = fetch(
        rig.gateway.url + "/browser-stack/v1/browser-stack/ensure",
        method="POST",
        body=b'{"needs":["x"]}',
        headers={"Content-Type": "application/json", "Authorization": "Bearer t"},
    )
    assert status == 400 and json.loads(body)["error"] == "bad_request"
    ensure = rig.sidecar.seen[-1]
    assert (ensure.method, ensure.path, ensure.body) == (
        "POST",
        "/v1/browser-stack/ensure",
        b'{"needs":["x"]}',
    )
    assert ensure.headers["authorization"] == "Bearer t"  # a token, when set, is the caller's
    assert rig.gate_calls() == []


def test_ungated_route_never_asks_the_sidecar(rig: Rig) -> None:
    status, _, body = fetch(rig.gateway.url + "/v1/shell/x")
    assert (status, body) == (200, b"not gated\n")
    assert rig.sidecar.seen == []


def test_gate_locations_are_internal(rig: Rig) -> None:
    status, _, _ = fetch(rig.gateway.url + "/_browser_stack/gate/cdp")
    assert status == 404
    assert rig.sidecar.seen == []
