"""A small client for the sidecar's HTTP API (stdlib only), used by the CLI
and by browser tools that call ensure before they touch the browser."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8110"
PREFIX = "/v1/browser-stack"


class ClientError(Exception):
    """The sidecar answered with an error; `payload` is its JSON body."""

    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        self.status = status
        self.payload = payload
        self.code = str(payload.get("error", "error"))
        super().__init__(f"{status} {self.code}: {payload.get('message', '')}")


class Unreachable(Exception):
    """Nothing answered at the sidecar's URL."""


def default_url() -> str:
    return os.environ.get("BROWSER_STACK_URL", DEFAULT_URL).rstrip("/")


def call(
    method: str,
    path: str,
    *,
    base_url: str | None = None,
    body: dict[str, Any] | None = None,
    timeout_s: float = 60.0,
    token: str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    url = (base_url or default_url()).rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    token = token if token is not None else os.environ.get("BROWSER_STACK_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"error": "http_error", "message": raw.decode("utf-8", "replace")[:500]}
        raise ClientError(exc.code, payload) from None
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"no answer from browser-stack at {url}: {reason}") from None


def ensure_browser_stack(
    base_url: str | None = None,
    needs: Iterable[str] | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Start what is missing and return the ensure answer (with `endpoints`)."""
    body: dict[str, Any] = {"timeout_s": timeout}
    if needs is not None:
        body["needs"] = list(needs)
    payload, _headers = call(
        "POST", f"{PREFIX}/ensure", base_url=base_url, body=body, timeout_s=timeout + 5
    )
    return payload
