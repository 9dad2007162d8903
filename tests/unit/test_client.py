"""browser_stack.client against a hand-written fake sidecar: every error code maps
to its exception, sync and async alike, and the requests carry what they should.
The client against the real sidecar is in tests/e2e/test_client_e2e.py."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from browser_stack import client


class FakeSidecar:
    def __init__(self) -> None:
        self.status = 200
        self.body: bytes = b"{}"
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                fake.requests.append(
                    (self.command, self.path, dict(self.headers), self.rfile.read(n))
                )
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(fake.body)))
                self.end_headers()
                self.wfile.write(fake.body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, status: int, payload: Any) -> None:
        self.status = status
        self.body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeSidecar]:
    fake = FakeSidecar()
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def fake(server: FakeSidecar, monkeypatch: pytest.MonkeyPatch) -> FakeSidecar:
    monkeypatch.delenv("BROWSER_STACK_TOKEN", raising=False)
    server.requests.clear()
    server.answer(200, {"ready": True, "cold": True, "elapsed_ms": 5.5, "endpoints": {}})
    return server


def ensure_both(fake: FakeSidecar, **kwargs: Any) -> list[BaseException | client.Ensured]:
    """Call the sync and the async ensure with the same arguments."""
    import asyncio

    out: list[BaseException | client.Ensured] = []
    for fn in (
        lambda: client.ensure_browser_stack(fake.url, **kwargs),
        lambda: asyncio.run(client.aensure_browser_stack(fake.url, **kwargs)),
    ):
        try:
            out.append(fn())
        except client.BrowserStackClientError as exc:
            out.append(exc)
    return out


ERRORS = [
    (400, "bad_request", client.BadRequest),
    (401, "unauthorized", client.Unauthorized),
    (409, "stopped", client.StackStopped),
    (409, "not_in_control", client.NotInControl),
    (409, "disabled_by_deployment", client.DisabledByDeployment),
    (502, "program_failed", client.ProgramFailed),
    (502, "port_in_use", client.ProgramFailed),
    (502, "supervisor_error", client.ProgramFailed),
    (503, "supervisor_unavailable", client.SupervisorUnavailable),
    (504, "readiness_timeout", client.ReadinessTimeout),
    (404, "not_found", client.ClientError),
    (500, "something_new", client.ClientError),
]


@pytest.mark.parametrize(("status", "code", "cls"), ERRORS)
def test_each_error_code_is_its_exception(
    fake: FakeSidecar, status: int, code: str, cls: type[client.ClientError]
) -> None:
    fake.answer(status, {"error": code, "message": "why it failed"})
    for exc in ensure_both(fake, needs=["cdp"]):
        assert type(exc) is cls
        assert isinstance(exc, client.ClientError)
        assert (exc.status, exc.code, exc.message) == (status, code, "why it failed")
        assert str(exc) == f"browser-stack answered {status} {code}: why it failed"


def test_every_error_the_sidecar_answers_has_its_exception() -> None:
    """The sidecar's error codes (errors.py) against the client's classes: a code
    added there without one here would reach callers as the bare ClientError."""
    from browser_stack import errors

    # The API's errors, as errors.py declares them (a module's own errors, such as
    # the activation proxy's, are not answers of the API); 500: no answer carries
    # one (a bad setting stops `serve` before it listens).
    answered = {
        (cls.status, cls.code)
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.BrowserStackError) and cls.status != 500
    }
    generic = {"not_found", "unknown_program"}  # a 404 means a wrong URL to a tool
    assert "disabled_by_deployment" in {code for _, code in answered}
    for status, code in answered:
        exc = client.error_for(status, json.dumps({"error": code}).encode())
        assert (type(exc) is not client.ClientError) or code in generic, code


def test_disabled_by_deployment_names_the_variables(fake: FakeSidecar) -> None:
    fake.answer(
        409,
        {
            "error": "disabled_by_deployment",
            "message": "the deployment turned off mcp-server-browser",
            "variables": ["DISABLE_MCP_BROWSER"],
        },
    )
    for exc in ensure_both(fake, needs=["mcp"]):
        assert isinstance(exc, client.DisabledByDeployment)
        assert exc.variables == ["DISABLE_MCP_BROWSER"]


def test_program_failed_names_program_and_last_stderr_line(fake: FakeSidecar) -> None:
    fake.answer(
        502,
        {
            "error": "program_failed",
            "message": "browser could not start",
            "program": "browser",
            "state": "FATAL",
            "stderr_tail": "line 1\nMissing X server or $DISPLAY\n\n",
        },
    )
    for exc in ensure_both(fake):
        assert isinstance(exc, client.ProgramFailed)
        assert (exc.program, exc.state) == ("browser", "FATAL")
        assert str(exc).endswith("(last stderr line: Missing X server or $DISPLAY)")


def test_readiness_timeout_lists_pending_gates(fake: FakeSidecar) -> None:
    fake.answer(504, {"error": "readiness_timeout", "message": "m", "pending_gates": ["vnc"]})
    for exc in ensure_both(fake):
        assert isinstance(exc, client.ReadinessTimeout)
        assert exc.pending_gates == ["vnc"]


@pytest.mark.parametrize("body", [b"<html>bad gateway</html>", b"[1, 2]", b""])
def test_error_without_json_object_is_still_a_client_error(fake: FakeSidecar, body: bytes) -> None:
    fake.answer(502, body)
    for exc in ensure_both(fake):
        assert type(exc) is client.ClientError
        assert exc.code == "http_error"
        assert exc.status == 502


def test_request_body_and_answer(fake: FakeSidecar) -> None:
    results = ensure_both(fake, needs="cdp, mcp", timeout=12)
    for got in results:
        assert isinstance(got, client.Ensured)
        assert got.cold is True and got.elapsed_ms == 5.5 and got.endpoints == {}
        assert got["ready"] is True  # still the sidecar's dict
    for method, path, headers, body in fake.requests:
        assert (method, path) == ("POST", "/v1/browser-stack/ensure")
        assert json.loads(body) == {"needs": ["cdp", "mcp"], "timeout_s": 12}
        assert headers["Content-Type"] == "application/json"
        assert "Authorization" not in headers


def test_a_url_with_a_path_is_the_sidecar_behind_a_gateway_prefix(fake: FakeSidecar) -> None:
    """`http://sandbox:8080/browser-stack` (the image's gateway route): every call,
    sync and async, goes to that prefix once."""
    import asyncio

    base = fake.url + "/browser-stack/"
    client.ensure_browser_stack(base, needs=["cdp"])
    asyncio.run(client.aensure_browser_stack(base, needs=["cdp"]))
    client.prewarm_browser_stack(base)
    asyncio.run(client.aprewarm_browser_stack(base))
    paths = [path for _method, path, _headers, _body in fake.requests]
    assert paths == ["/browser-stack/v1/browser-stack/ensure"] * 4


def test_default_needs_and_timeout_are_left_to_the_sidecar(fake: FakeSidecar) -> None:
    # The client sent 30 s whatever BROWSER_STACK_ENSURE_TIMEOUT said.
    ensure_both(fake)
    assert [json.loads(r[3]) for r in fake.requests] == [{}] * 2


def test_token_from_argument_or_environment(
    fake: FakeSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_both(fake, token="arg-token")
    monkeypatch.setenv("BROWSER_STACK_TOKEN", "env-token")
    ensure_both(fake)
    auths = [r[2].get("Authorization") for r in fake.requests]
    assert auths == ["Bearer arg-token"] * 2 + ["Bearer env-token"] * 2


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), 301, True])
def test_bad_timeout_is_a_client_error_before_any_request(
    fake: FakeSidecar, timeout: float
) -> None:
    # A BrowserStackClientError, as the README promises, and still a ValueError.
    with pytest.raises(client.InvalidArgument, match="timeout must be") as caught:
        client.ensure_browser_stack(fake.url, timeout=timeout)
    assert isinstance(caught.value, client.BrowserStackClientError)
    assert isinstance(caught.value, ValueError)
    assert fake.requests == []


@pytest.mark.parametrize("needs", ["gpu", "cdp,gpu", ["cdp", "GPU"], [""]])
def test_an_unknown_need_is_a_value_error_before_any_request(
    fake: FakeSidecar, needs: str | list[str]
) -> None:
    with pytest.raises(client.InvalidArgument, match="unknown need"):
        client.ensure_browser_stack(fake.url, needs=needs)
    with pytest.raises(client.InvalidArgument, match="unknown need"):
        client.prewarm_browser_stack(fake.url, needs=needs)
    assert fake.requests == []


def test_async_uses_a_given_session(fake: FakeSidecar) -> None:
    import asyncio

    import aiohttp

    async def run() -> client.Ensured:
        async with aiohttp.ClientSession() as session:
            out = await client.aensure_browser_stack(fake.url, session=session)
            assert not session.closed  # the caller's session stays open
            return out

    assert asyncio.run(run())["ready"] is True


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "http://127.0.0.1:8110"),
        ({"BROWSER_STACK_URL": "http://x:1/"}, "http://x:1"),
        ({"BROWSER_STACK_LISTEN": "127.0.0.1:9000"}, "http://127.0.0.1:9000"),
        ({"BROWSER_STACK_LISTEN": "0.0.0.0:9000"}, "http://127.0.0.1:9000"),
        ({"BROWSER_STACK_LISTEN": "[::1]:9000"}, "http://[::1]:9000"),
        ({"BROWSER_STACK_LISTEN": "unix:/run/bs.sock"}, "unix:/run/bs.sock"),
    ],
)
def test_healthcheck_url(env: dict[str, str], url: str) -> None:
    assert client.healthcheck_url(env) == url


def test_healthz_main(fake: FakeSidecar, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answer(200, {"ok": True, "supervisor": {"reachable": False}})
    assert client.main(["healthz", "--url", fake.url]) == 0
    assert fake.requests[-1][:2] == ("GET", "/healthz")
    fake.answer(200, {"ok": False})
    assert client.main(["healthz", "--url", fake.url]) == 1
    fake.answer(503, {"error": "x", "message": "y"})
    assert client.main(["healthz", "--url", fake.url]) == 1
    assert "browser-stack healthz: 503: y" in capsys.readouterr().err


def test_readyz_main_prints_the_reasons(
    fake: FakeSidecar, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answer(200, {"ok": True, "reasons": []})
    assert client.main(["readyz", "--url", fake.url]) == 0
    assert fake.requests[-1][:2] == ("GET", "/readyz")
    fake.answer(503, {"ok": False, "reasons": ["websocat is not configured in supervisord"]})
    assert client.main(["readyz", "--url", fake.url]) == 1
    err = capsys.readouterr().err
    assert err == "browser-stack readyz: 503: websocat is not configured in supervisord\n"


# -- everything a caller can hit is one of the documented exceptions -----------------


def call_both(url: str) -> list[BaseException]:
    """GET /healthz through the sync and the async client; what each raised."""
    import asyncio

    out: list[BaseException] = []
    for fn in (
        lambda: client.call("GET", "/healthz", base_url=url, timeout_s=5),
        lambda: asyncio.run(client.acall("GET", "/healthz", base_url=url, timeout_s=5)),
    ):
        try:
            fn()
        except client.BrowserStackClientError as exc:
            out.append(exc)
        else:
            raise AssertionError(f"{url}: no exception")
    return out


@pytest.mark.parametrize("body", [b"<html>gateway</html>", b"[1, 2]", b"not json"])
def test_a_success_that_is_not_the_sidecars_json_is_not_the_sidecar(
    fake: FakeSidecar, body: bytes
) -> None:
    # A 200 with a gateway's HTML raised JSONDecodeError.
    fake.answer(200, body)
    for exc in call_both(fake.url):
        assert type(exc) is client.NotTheSidecar
        assert isinstance(exc, client.Unreachable)
        assert fake.url in str(exc)


@pytest.fixture
def rfb_server() -> Iterator[str]:
    """A server that speaks first, as Xvnc does on 5900."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.sendall(b"RFB 003.008\n")
                    with contextlib.suppress(OSError):
                        conn.recv(65536)

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_the_wrong_port_is_not_the_sidecar(rfb_server: str) -> None:
    # The VNC port gave http.client.BadStatusLine.
    for exc in call_both(rfb_server):
        assert type(exc) is client.NotTheSidecar
        assert rfb_server in str(exc)


@pytest.mark.parametrize(
    "url", ["foo", "http://[::1", "ftp://host:1", "http://:8110", "host:port", "unix:relative"]
)
def test_an_unusable_url_is_invalid_url_before_any_request(url: str) -> None:
    # These gave ValueError, or aiohttp's URL errors, from deep inside.
    for exc in call_both(url):
        assert type(exc) is client.InvalidURL
        assert isinstance(exc, ValueError)
        assert repr(url) in str(exc)


def test_host_port_is_taken_as_http(fake: FakeSidecar) -> None:
    bare = fake.url.removeprefix("http://")
    assert client.ensure_browser_stack(bare)["ready"] is True
    assert client.target(bare).url == fake.url


def test_the_client_reaches_a_unix_socket_sidecar(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "bs.sock"
    server = UnixHTTPServer(str(path), JsonHandler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"unix:{path}"
        assert client.call("GET", "/healthz", base_url=url)[0] == {"ok": True, "path": "/healthz"}
        got = asyncio.run(client.acall("GET", "/readyz", base_url=url))[0]
        assert got == {"ok": True, "path": "/readyz"}
        assert client.main(["healthz", "--url", url]) == 0
    finally:
        server.shutdown()
        server.server_close()
    for exc in call_both(url):
        assert type(exc) is client.Unreachable


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class JsonHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"ok": True, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: Any) -> None:
        pass


def test_prewarm_asks_for_a_background_start_and_returns_at_once(fake: FakeSidecar) -> None:
    import asyncio

    fake.answer(202, {"accepted": True, "needs": ["cdp"]})
    assert client.prewarm_browser_stack(fake.url, needs="cdp") == {
        "accepted": True,
        "needs": ["cdp"],
    }
    assert asyncio.run(client.aprewarm_browser_stack(fake.url, needs=["cdp"]))["accepted"]
    for method, path, _headers, body in fake.requests:
        assert (method, path) == ("POST", "/v1/browser-stack/ensure")
        assert json.loads(body) == {"needs": ["cdp"], "wait": False}
