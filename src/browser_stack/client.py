"""A small client for the sidecar's HTTP API, used by the CLI and by browser tools
(a DeerFlow tool, an agent SDK) that call ensure before they touch the browser.

    from browser_stack.client import ensure_browser_stack, aensure_browser_stack

    ready = ensure_browser_stack("http://127.0.0.1:8110", needs=["cdp"], timeout=30)
    browser = await playwright.chromium.connect_over_cdp(ready.endpoints["cdp"])

    ready = await aensure_browser_stack(needs=["mcp"])       # the same, async
    prewarm_browser_stack(needs=["cdp"])   # start in the background, answer at once

Both return the ensure answer (a dict, exactly as the sidecar sent it) whose
`endpoints` property is the part a tool needs. Without `timeout` the sidecar's
own default applies (BROWSER_STACK_ENSURE_TIMEOUT).

The URL is `http://host:port` (or https), `host:port`, or `unix:/path` for a
sidecar listening on a unix socket; without one, BROWSER_STACK_URL, then
http://127.0.0.1:8110.

Everything a caller can hit is an exception under `BrowserStackClientError`:
- `InvalidURL` (also a ValueError): the URL cannot be used, before any request;
- `InvalidArgument` (also a ValueError): a bad timeout or a need that is not a
  gate, before any request;
- `Unreachable`: nothing answered at the URL (refused, reset, no answer in time),
  and its subclass `NotTheSidecar`: something answered, but not as browser-stack
  does (not HTTP, or not its JSON: another service on that port, a gateway's page);
- `ClientError`: the sidecar answered with an error, as the subclass its error code
  names in the sidecar's table (browser_stack.errors.ERROR_CODES: `ProgramFailed`,
  `ReadinessTimeout`, `SupervisorUnavailable`, ...), each carrying the sidecar's
  JSON in `payload`.

The sync part is stdlib only. The async part uses aiohttp (a dependency of the
sidecar), imported when first used. `python -m browser_stack.client readyz` is the
container HEALTHCHECK (the sidecar answers, supervisord answers it and has the five
programs); `healthz` only asks whether the sidecar serves. Neither wakes the stack.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from browser_stack.config import MAX_ENSURE_TIMEOUT_S
from browser_stack.contract import ENSURE_TIMEOUT
from browser_stack.errors import ERROR_CODES
from browser_stack.stack import GATES

if TYPE_CHECKING:
    import aiohttp

DEFAULT_URL = "http://127.0.0.1:8110"
PREFIX = "/v1/browser-stack"
# Added to an ensure's own timeout for the HTTP request: the sidecar answers 504 at
# its deadline, and this margin lets that answer arrive instead of a client timeout.
HTTP_MARGIN_S = 5.0
# A prewarm's 202 is written before anything starts.
PREWARM_HTTP_TIMEOUT_S = 10.0


class BrowserStackClientError(Exception):
    """Base of everything this client raises about the sidecar."""


class InvalidURL(BrowserStackClientError, ValueError):
    """The sidecar's URL cannot be used (no host, a bad port, an unknown scheme)."""


class Unreachable(BrowserStackClientError):
    """Nothing answered at the sidecar's URL (refused, reset, or no answer in time)."""


class NotTheSidecar(Unreachable):
    """Something answered at the URL, but not as browser-stack does: not HTTP (the
    wrong port), or a success that is not its JSON (a gateway's HTML page)."""


class InvalidArgument(BrowserStackClientError, ValueError):
    """An argument the sidecar would refuse (a bad timeout, a need that is not a
    gate), raised before any request is sent."""


class ClientError(BrowserStackClientError):
    """The sidecar answered with an error.

    `status` is the HTTP status, `code` the sidecar's error code, `payload` its JSON
    body ({"error": code, "message": ..., ...fields}).
    """

    # The error codes raised as this class (the sidecar's table says which).
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


class Unauthorized(ClientError):
    """401: the sidecar has BROWSER_STACK_TOKEN set and the token was missing or wrong."""


class StackStopped(ClientError):
    """409: a stop took the stack down while this ensure waited; calling again starts it."""


class NotInControl(ClientError):
    """409: another sidecar controls this supervisord's stack; `holder_listen`
    says where it listens (ask that one)."""

    @property
    def holder_listen(self) -> str:
        return str(self.payload.get("holder_listen", ""))


class DisabledByDeployment(ClientError):
    """409: the gates asked for need a program the deployment turned off with the
    image's own switch; `variables` names it (DISABLE_MCP_BROWSER, ...). Calling
    again does not help."""

    @property
    def variables(self) -> list[str]:
        return [str(v) for v in self.payload.get("variables", [])]


class ProgramFailed(ClientError):
    """502: a program could not start; `program`, `state` and `stderr_tail` say why."""

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

    retry_after_s = 2.0


class ReadinessTimeout(ClientError):
    """504: the gates were not ready in time; the start goes on in the background."""

    @property
    def pending_gates(self) -> list[str]:
        return [str(g) for g in self.payload.get("pending_gates", [])]


_CLASSES: dict[str, type[ClientError]] = {
    cls.__name__: cls
    for cls in (
        ClientError,
        BadRequest,
        Unauthorized,
        StackStopped,
        NotInControl,
        DisabledByDeployment,
        ProgramFailed,
        SupervisorUnavailable,
        ReadinessTimeout,
    )
}
# Each code of the sidecar's error table, to the exception it raises here.
_BY_CODE: dict[str, type[ClientError]] = {e.code: _CLASSES[e.client] for e in ERROR_CODES}
for _cls in _CLASSES.values():
    _cls.codes = tuple(code for code, cls in _BY_CODE.items() if cls is _cls)


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


@dataclass(frozen=True)
class Target:
    """Where the sidecar listens: a base URL, or a unix socket (`socket_path`)."""

    url: str
    socket_path: str | None = None

    @property
    def _split(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(self.url)

    @property
    def prefix(self) -> str:
        return "" if self.socket_path else self._split.path.rstrip("/")

    def connection(self, timeout_s: float) -> http.client.HTTPConnection:
        if self.socket_path is not None:
            return _UnixConnection(self.socket_path, timeout_s)
        parts = self._split
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout_s)
        return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout_s)

    def aiohttp_url(self, path: str) -> str:
        if self.socket_path is not None:
            return "http://localhost" + path
        return self.url + path


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def default_url() -> str:
    return os.environ.get("BROWSER_STACK_URL", "").strip() or DEFAULT_URL


def target(base_url: str | None = None) -> Target:
    """The sidecar's address from `base_url` (or BROWSER_STACK_URL): an http(s)
    URL, `host:port` (BROWSER_STACK_LISTEN's form) or `unix:/path`."""
    given = (base_url or default_url()).strip()
    hint = "use http://host:port, host:port or unix:/path"
    if given.startswith("unix:"):
        path = given.removeprefix("unix:")
        if not path.startswith("/"):
            raise InvalidURL(f"{given!r}: a unix socket needs an absolute path; {hint}")
        return Target(url=given, socket_path=path)
    explicit = given.startswith(("http://", "https://"))
    if "://" in given and not explicit:
        raise InvalidURL(f"{given!r}: the scheme must be http or https; {hint}")
    value = (given if explicit else "http://" + given).rstrip("/")
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"{given!r} is not a usable URL ({exc}); {hint}") from None
    if not parts.hostname:
        raise InvalidURL(f"{given!r} names no host; {hint}")
    if not explicit and (port is None or parts.path or parts.query):
        raise InvalidURL(f"{given!r} is neither a URL nor host:port; {hint}")
    return Target(url=value)


def _headers(data: bytes | None, token: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"} if data is not None else {}
    token = token if token is not None else os.environ.get("BROWSER_STACK_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def check_timeout(timeout: float | None) -> float | None:
    """None (the sidecar's default), or seconds in (0, MAX_ENSURE_TIMEOUT_S]."""
    if timeout is None:
        return None
    problem = ENSURE_TIMEOUT.problem("timeout", timeout)
    if problem is not None:
        raise InvalidArgument(f"{problem}, not {timeout!r}")
    return timeout


def check_needs(needs: Iterable[str] | str) -> list[str]:
    """The gate names of `needs` ("cdp,mcp" or a list); InvalidArgument for a name
    that is not a gate, so a request the sidecar would refuse is never sent."""
    if isinstance(needs, str):  # "cdp" or "cdp,mcp", not ["c", "d", "p"]
        needs = [n.strip() for n in needs.split(",") if n.strip()]
    names = list(needs)
    unknown = [n for n in names if n not in GATES]
    if unknown:
        raise InvalidArgument(f"unknown need {unknown[0]!r}; allowed: {', '.join(GATES)}")
    return names


def _ensure_body(
    needs: Iterable[str] | str | None, timeout: float | None, *, wait: bool = True
) -> dict[str, Any]:
    body: dict[str, Any] = {} if wait else {"wait": False}
    if check_timeout(timeout) is not None:
        body["timeout_s"] = timeout
    if needs is not None:
        body["needs"] = check_needs(needs)
    return body


def _http_deadline(timeout: float | None) -> float:
    # The sidecar answers 504 at its deadline; the margin lets that answer arrive
    # instead of a client timeout. Without a timeout of ours the sidecar's default
    # applies, which is at most MAX_ENSURE_TIMEOUT_S.
    return (timeout if timeout is not None else MAX_ENSURE_TIMEOUT_S) + HTTP_MARGIN_S


def _answer(url: str, status: int, raw: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    """The JSON object of a success, or the exception an error answer means."""
    if status >= 400:
        raise error_for(status, raw)
    try:
        payload = json.loads(raw or b"{}")
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise NotTheSidecar(
            f"{url} answered {status} with something that is not browser-stack's JSON "
            f"({headers.get('Content-Type', 'no content type')}): {raw[:200]!r}"
        )
    return payload


def call(
    method: str,
    path: str,
    *,
    base_url: str | None = None,
    body: dict[str, Any] | None = None,
    timeout_s: float = 60.0,
    token: str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """One request; returns (JSON body, headers) or raises one of this module's
    exceptions (InvalidURL, Unreachable, NotTheSidecar, ClientError)."""
    where = target(base_url)
    url = where.url + path
    data = json.dumps(body).encode() if body is not None else None
    connection = where.connection(timeout_s)
    try:
        connection.request(method, where.prefix + path, body=data, headers=_headers(data, token))
        response = connection.getresponse()
        raw = response.read()
    except http.client.HTTPException as exc:
        raise NotTheSidecar(
            f"{url} did not answer as an HTTP server does ({type(exc).__name__}: {exc})"
        ) from None
    except (OSError, ValueError) as exc:  # refused, reset, timed out, no such host
        raise Unreachable(f"no answer from browser-stack at {url}: {exc}") from None
    finally:
        connection.close()
    headers = dict(response.headers)
    return _answer(url, response.status, raw, headers), headers


def ensure_browser_stack(
    base_url: str | None = None,
    needs: Iterable[str] | str | None = None,
    timeout: float | None = None,
    *,
    token: str | None = None,
) -> Ensured:
    """Start what is missing; return once the `needs` gates (cdp, mcp, vnc; default
    all) are ready, with the endpoints to connect to. Waits at most `timeout` s
    (default: the sidecar's BROWSER_STACK_ENSURE_TIMEOUT), then raises
    ReadinessTimeout. `base_url` defaults to BROWSER_STACK_URL, then
    http://127.0.0.1:8110; `token` to BROWSER_STACK_TOKEN."""
    payload, _headers = call(
        "POST",
        f"{PREFIX}/ensure",
        base_url=base_url,
        body=_ensure_body(needs, timeout),
        timeout_s=_http_deadline(timeout),
        token=token,
    )
    return Ensured(payload)


def prewarm_browser_stack(
    base_url: str | None = None,
    needs: Iterable[str] | str | None = None,
    *,
    token: str | None = None,
) -> dict[str, Any]:
    """Start what the `needs` gates need in the background and return at once
    (202): for an orchestrator that knows a task will use the browser before its
    first browser call. A later ensure joins the start; its failure is in the
    sidecar's log, its metrics and status (`last_start`)."""
    payload, _headers = call(
        "POST",
        f"{PREFIX}/ensure",
        base_url=base_url,
        body=_ensure_body(needs, None, wait=False),
        timeout_s=PREWARM_HTTP_TIMEOUT_S,
        token=token,
    )
    return payload


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
    """The async `call`; uses `session` when given (else a short-lived one, which
    is also what a unix socket URL uses)."""
    import aiohttp

    where = target(base_url)
    url = where.url + path
    data = json.dumps(body).encode() if body is not None else None
    own = session is None or where.socket_path is not None
    if own:
        connector = aiohttp.UnixConnector(where.socket_path) if where.socket_path else None
        client = aiohttp.ClientSession(connector=connector)
    else:
        assert session is not None
        client = session
    try:
        async with client.request(
            method,
            where.aiohttp_url(path),
            data=data,
            headers=_headers(data, token),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            raw = await response.read()
            headers = dict(response.headers)
            return _answer(url, response.status, raw, headers), headers
    except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        raise Unreachable(f"no answer from browser-stack at {url}: {reason}") from None
    except aiohttp.ClientError as exc:  # a bad status line or headers: not HTTP
        raise NotTheSidecar(
            f"{url} did not answer as an HTTP server does ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        if own:
            await client.close()


async def aensure_browser_stack(
    base_url: str | None = None,
    needs: Iterable[str] | str | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - the sidecar's deadline, sent to it
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
        timeout_s=_http_deadline(timeout),
        token=token,
        session=session,
    )
    return Ensured(payload)


async def aprewarm_browser_stack(
    base_url: str | None = None,
    needs: Iterable[str] | str | None = None,
    *,
    token: str | None = None,
    session: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    """The async `prewarm_browser_stack`."""
    payload, _headers = await acall(
        "POST",
        f"{PREFIX}/ensure",
        base_url=base_url,
        body=_ensure_body(needs, None, wait=False),
        timeout_s=PREWARM_HTTP_TIMEOUT_S,
        token=token,
        session=session,
    )
    return payload


def healthcheck_url(env: Mapping[str, str]) -> str:
    """BROWSER_STACK_URL, else the sidecar's own BROWSER_STACK_LISTEN (a wildcard
    host means loopback; a unix socket is asked on its path), else the default."""
    if env.get("BROWSER_STACK_URL", "").strip():
        return env["BROWSER_STACK_URL"].strip().rstrip("/")
    listen = env.get("BROWSER_STACK_LISTEN", "").strip()
    if listen.startswith("unix:"):
        return listen
    if listen and ":" in listen:
        host, port = listen.rsplit(":", 1)
        host = host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return DEFAULT_URL


# What each probe command asks. healthz: the sidecar serves (liveness). readyz:
# it can start the stack: supervisord answers and has the five (readiness, the
# container HEALTHCHECK).
PROBE_PATHS = {"healthz": "/healthz", "readyz": "/readyz"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m browser_stack.client",
        description="healthz: exit 0 when the sidecar serves; readyz: exit 0 when it "
        "also reaches supervisord and its five programs. Neither wakes the stack.",
    )
    parser.add_argument("command", choices=sorted(PROBE_PATHS))
    parser.add_argument("--url", default=None, help="sidecar URL (default: from the environment)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (3)")
    args = parser.parse_args(argv)
    name = f"browser-stack {args.command}"
    try:
        payload, _ = call(
            "GET",
            PROBE_PATHS[args.command],
            base_url=args.url or healthcheck_url(os.environ),
            timeout_s=args.timeout,
            token="",
        )
    except ClientError as exc:
        reasons = exc.payload.get("reasons") or [exc.message]
        print(f"{name}: {exc.status}: {'; '.join(map(str, reasons))}", file=sys.stderr)
        return 1
    except BrowserStackClientError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    if payload.get("ok") is not True:
        print(f"{name}: unexpected answer {json.dumps(payload)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
