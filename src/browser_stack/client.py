"""A small client for the sidecar's HTTP API, used by the CLI and by browser tools
(a DeerFlow tool, an agent SDK) that call ensure before they touch the browser.

    from browser_stack.client import ensure_browser_stack, aensure_browser_stack

    ready = ensure_browser_stack("http://127.0.0.1:8110", needs=["cdp"], timeout=30)
    browser = await playwright.chromium.connect_over_cdp(ready.endpoints["cdp"])

    ready = await aensure_browser_stack(needs=["mcp"])       # the same, async

Both return the ensure answer (a dict, exactly as the sidecar sent it) whose
`endpoints` property is the part a tool needs. Errors are exceptions, all under
`BrowserStackClientError`: `Unreachable` when nothing answers at the URL, and
`ClientError` when the sidecar answers with an error, as one subclass per error
code (`ProgramFailed`, `ReadinessTimeout`, `SupervisorUnavailable`, ...), each
carrying the sidecar's JSON in `payload`.

The sync part is stdlib only. The async part uses aiohttp (a dependency of the
sidecar), imported when first used. `python -m browser_stack.client healthz` is the
container HEALTHCHECK: GET /healthz, exit 0 when the sidecar answers; it never
wakes the stack.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

DEFAULT_URL = "http://127.0.0.1:8110"
PREFIX = "/v1/browser-stack"
# Added to an ensure's own timeout for the HTTP request: the sidecar answers 504 at
# its deadline, and this margin lets that answer arrive instead of a client timeout.
HTTP_MARGIN_S = 5.0


class BrowserStackClientError(Exception):
    """Base of everything this client raises about the sidecar."""


class Unreachable(BrowserStackClientError):
    """Nothing answered at the sidecar's URL (refused, reset, or no answer in time)."""


class ClientError(BrowserStackClientError):
    """The sidecar answered with an error.

    `status` is the HTTP status, `code` the sidecar's error code, `payload` its JSON
    body ({"error": code, "message": ..., ...fields}).
    """

    codes: tuple[str, ...] = ()

    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        self.status = status
        self.payload = payload
        self.code = str(payload.get("error", "error"))
        self.message = str(payload.get("message", ""))
        super().__init__(self._describe())

    def _describe(self) -> str:
        return f"browser-stack answered {self.status} {self.code}: {self.message}"


class BadRequest(ClientError):
    """400: the request was invalid (an unknown gate, a bad timeout)."""

    codes = ("bad_request",)


class Unauthorized(ClientError):
    """401: the sidecar has BROWSER_STACK_TOKEN set and the token was missing or wrong."""

    codes = ("unauthorized",)


class StackStopped(ClientError):
    """409: a stop took the stack down while this ensure waited; calling again starts it."""

    codes = ("stopped",)


class ProgramFailed(ClientError):
    """502: a program could not start; `program`, `state` and `stderr_tail` say why."""

    codes = ("program_failed", "port_in_use", "supervisor_error")

    @property
    def program(self) -> str:
        return str(self.payload.get("program", ""))

    @property
    def state(self) -> str:
        return str(self.payload.get("state", ""))

    @property
    def stderr_tail(self) -> str:
        return str(self.payload.get("stderr_tail", ""))

    def _describe(self) -> str:
        text = super()._describe()
        last = [line for line in self.stderr_tail.splitlines() if line.strip()][-1:]
        return f"{text} (last stderr line: {last[0].strip()})" if last else text


class SupervisorUnavailable(ClientError):
    """503: supervisord does not answer the sidecar; retry after `retry_after_s`."""

    codes = ("supervisor_unavailable",)
    retry_after_s = 2.0


class ReadinessTimeout(ClientError):
    """504: the gates were not ready in time; the start goes on in the background."""

    codes = ("readiness_timeout",)

    @property
    def pending_gates(self) -> list[str]:
        return [str(g) for g in self.payload.get("pending_gates", [])]


_BY_CODE: dict[str, type[ClientError]] = {
    code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        StackStopped,
        ProgramFailed,
        SupervisorUnavailable,
        ReadinessTimeout,
    )
    for code in cls.codes
}


def error_for(status: int, raw: bytes) -> ClientError:
    """The exception for an error answer: the subclass for its code, else ClientError."""
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        payload = {"error": "http_error", "message": raw.decode("utf-8", "replace")[:500]}
    return _BY_CODE.get(str(payload.get("error")), ClientError)(status, payload)


class Ensured(dict[str, Any]):
    """The ensure answer as the sidecar sent it, with typed accessors."""

    @property
    def endpoints(self) -> dict[str, str]:
        """cdp, cdp_ws, mcp, vnc, vnc_ws: where the tool connects."""
        return {str(k): str(v) for k, v in self.get("endpoints", {}).items()}

    @property
    def cold(self) -> bool:
        """Whether this call had to wait for a start."""
        return bool(self.get("cold", False))

    @property
    def elapsed_ms(self) -> float:
        return float(self.get("elapsed_ms", 0.0))


def default_url() -> str:
    return os.environ.get("BROWSER_STACK_URL", DEFAULT_URL).rstrip("/")


def _headers(data: bytes | None, token: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"} if data is not None else {}
    token = token if token is not None else os.environ.get("BROWSER_STACK_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _ensure_body(needs: Iterable[str] | str | None, timeout: float) -> dict[str, Any]:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    body: dict[str, Any] = {"timeout_s": timeout}
    if needs is not None:
        if isinstance(needs, str):  # "cdp" or "cdp,mcp", not ["c", "d", "p"]
            needs = [n.strip() for n in needs.split(",") if n.strip()]
        body["needs"] = list(needs)
    return body


def call(
    method: str,
    path: str,
    *,
    base_url: str | None = None,
    body: dict[str, Any] | None = None,
    timeout_s: float = 60.0,
    token: str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """One request; returns (JSON body, headers) or raises ClientError / Unreachable."""
    url = (base_url or default_url()).rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=_headers(data, token))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            raw = exc.read()
        raise error_for(exc.code, raw) from None
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"no answer from browser-stack at {url}: {reason}") from None


def ensure_browser_stack(
    base_url: str | None = None,
    needs: Iterable[str] | str | None = None,
    timeout: float = 30.0,
    *,
    token: str | None = None,
) -> Ensured:
    """Start what is missing; return once the `needs` gates (cdp, mcp, vnc; default
    all) are ready, with the endpoints to connect to. Waits at most `timeout` s,
    then raises ReadinessTimeout. `base_url` defaults to BROWSER_STACK_URL, then
    http://127.0.0.1:8110; `token` to BROWSER_STACK_TOKEN."""
    payload, _headers = call(
        "POST",
        f"{PREFIX}/ensure",
        base_url=base_url,
        body=_ensure_body(needs, timeout),
        timeout_s=timeout + HTTP_MARGIN_S,
        token=token,
    )
    return Ensured(payload)


async def acall(
    method: str,
    path: str,
    *,
    base_url: str | None = None,
    body: dict[str, Any] | None = None,
    timeout_s: float = 60.0,
    token: str | None = None,
    session: aiohttp.ClientSession | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The async `call`; uses `session` when given (else a short-lived one)."""
    import aiohttp

    url = (base_url or default_url()).rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    own = session is None
    client = aiohttp.ClientSession() if session is None else session
    try:
        async with client.request(
            method,
            url,
            data=data,
            headers=_headers(data, token),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            raw = await response.read()
            if response.status >= 400:
                raise error_for(response.status, raw)
            return json.loads(raw or b"{}"), dict(response.headers)
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise Unreachable(f"no answer from browser-stack at {url}: {reason}") from None
    finally:
        if own:
            await client.close()


async def aensure_browser_stack(
    base_url: str | None = None,
    needs: Iterable[str] | str | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - the sidecar's readiness deadline, sent to it
    *,
    token: str | None = None,
    session: aiohttp.ClientSession | None = None,
) -> Ensured:
    """The async `ensure_browser_stack`; cancelling it drops the request (the start
    it caused goes on in the sidecar)."""
    payload, _headers = await acall(
        "POST",
        f"{PREFIX}/ensure",
        base_url=base_url,
        body=_ensure_body(needs, timeout),
        timeout_s=timeout + HTTP_MARGIN_S,
        token=token,
        session=session,
    )
    return Ensured(payload)


def healthcheck_url(env: Mapping[str, str]) -> str:
    """BROWSER_STACK_URL, else the sidecar's own BROWSER_STACK_LISTEN (a wildcard
    host means loopback), else the default."""
    if env.get("BROWSER_STACK_URL"):
        return env["BROWSER_STACK_URL"].rstrip("/")
    listen = env.get("BROWSER_STACK_LISTEN", "")
    if listen and not listen.startswith("unix:") and ":" in listen:
        host, port = listen.rsplit(":", 1)
        host = host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return DEFAULT_URL


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m browser_stack.client",
        description="healthz: exit 0 when the sidecar answers GET /healthz (never wakes the stack)",
    )
    parser.add_argument("command", choices=["healthz"])
    parser.add_argument("--url", default=None, help="sidecar URL (default: from the environment)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (3)")
    args = parser.parse_args(argv)
    url = (args.url or healthcheck_url(os.environ)).rstrip("/")
    try:
        payload, _ = call("GET", "/healthz", base_url=url, timeout_s=args.timeout, token="")
    except BrowserStackClientError as exc:
        print(f"browser-stack healthz: {exc}", file=sys.stderr)
        return 1
    if payload.get("ok") is not True:
        print(f"browser-stack healthz: unexpected answer {payload!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
