"""The contract has one definition: every route the app serves is in the OpenAPI
document, every error the code can raise or the app answers is in the one table
of error codes, and the client and the document read that table."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import browser_stack
from browser_stack import client, contract
from browser_stack.errors import ERROR_CODES, ERRORS, BadRequest, BrowserStackError
from browser_stack.http_api import MAX_BODY_BYTES
from browser_stack.openapi import spec
from browser_stack.server import create_app

from .fakes import FAST, make_controller

pytestmark = pytest.mark.unit
PREFIX = "/v1/browser-stack"
# A value for each path parameter the document names.
PATH_VALUES = {"gate": "cdp", "name": "browser"}


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """(path, method) of every route the app serves; HEAD is aiohttp's own
    companion of each GET."""
    return {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def spec_routes() -> set[tuple[str, str]]:
    return {(path, method) for path, ops in spec()["paths"].items() for method in ops}


async def test_every_route_the_app_serves_is_in_the_spec_and_no_other() -> None:
    controller, _ = make_controller()
    served = app_routes(create_app(FAST, controller))
    assert {"/readyz", "/metrics", f"{PREFIX}/openapi.json"} <= {path for path, _ in served}
    assert served - spec_routes() == set(), "served but missing from the spec"
    assert spec_routes() - served == set(), "in the spec but not served"


@pytest.fixture
async def api() -> AsyncIterator[TestClient[Any, Any]]:
    controller, _ = make_controller()
    async with TestClient(TestServer(create_app(FAST, controller))) as c:
        yield c


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m[1]], path)


async def test_a_method_a_path_does_not_list_is_the_spec_s_405(api: TestClient[Any, Any]) -> None:
    document = spec()
    enum = document["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
    for path, operations in document["paths"].items():
        listed = {m.upper() for m in operations}
        for method in {"GET", "POST", "PUT", "DELETE"} - listed:
            response = await api.request(method, concrete(path))
            assert response.status == 405, (method, path)
            body = await response.json()
            assert body["error"] == "method_not_allowed" and body["error"] in enum
            allowed = {m.strip() for m in response.headers["Allow"].split(",")} - {"HEAD"}
            assert allowed == listed, (method, path)


def all_modules() -> Iterator[str]:
    for module in pkgutil.iter_modules(browser_stack.__path__):
        if module.name != "__main__":
            yield f"browser_stack.{module.name}"


def error_classes() -> set[type[BrowserStackError]]:
    for name in all_modules():
        importlib.import_module(name)
    found: set[type[BrowserStackError]] = set()
    frontier: list[type[BrowserStackError]] = [BrowserStackError]
    while frontier:
        cls = frontier.pop()
        found.add(cls)
        frontier.extend(cls.__subclasses__())
    return found


def test_every_error_the_code_raises_is_in_the_table_with_its_status() -> None:
    classes = error_classes()
    # The activation proxy's own errors are among them.
    assert {"upstream_unreachable", "readiness_timeout"} <= {c.code for c in classes}
    for cls in classes:
        assert cls.code in ERRORS, f"{cls.__qualname__}: {cls.code} is not in ERROR_CODES"
        assert cls.status == ERRORS[cls.code].status, cls.__qualname__


async def answers(api: TestClient[Any, Any]) -> list[tuple[int, dict[str, Any]]]:
    """An error answer of each kind the HTTP layer makes itself, beside the
    controller's (the classes above)."""
    calls = [
        api.get("/nowhere"),  # aiohttp's 404
        api.get(f"{PREFIX}/programs/sshd"),  # outside the allowlist
        api.put(f"{PREFIX}/ensure"),  # 405
        api.post(f"{PREFIX}/ensure", data=b"x" * (MAX_BODY_BYTES + 1)),  # 413
        api.post(f"{PREFIX}/ensure", data=b"{"),  # not JSON
        api.post(f"{PREFIX}/lease", json={"ttl_s": contract.MAX_LEASE_S + 1}),
    ]
    out = []
    for call in calls:
        response = await call
        out.append((response.status, await response.json()))
    return out


async def test_every_error_the_app_answers_is_in_the_table_the_client_and_spec_read(
    api: TestClient[Any, Any],
) -> None:
    controller, _ = make_controller()
    locked = create_app(replace(FAST, token="secret"), controller)
    async with TestClient(TestServer(locked)) as with_token:
        refused = await with_token.get(f"{PREFIX}/status")
        seen = [(refused.status, await refused.json())]
    seen += await answers(api)
    enum = spec()["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
    codes = {body["error"] for _, body in seen}
    assert codes == {
        "unauthorized",
        "not_found",
        "unknown_program",
        "method_not_allowed",
        "body_too_large",
        "bad_request",
    }
    # An error answer that is not the sidecar's JSON (a gateway's page) is named
    # in the client by the table's code for other HTTP errors.
    assert client.error_for(502, b"<html>bad gateway</html>").code in ERRORS
    for status, body in seen:
        row = ERRORS[body["error"]]
        assert status == row.status, body
        assert row.code in enum
        raised = client.error_for(status, _json(body))
        assert type(raised).__name__ == row.client and raised.code == row.code


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def test_the_client_and_the_spec_read_every_row_of_the_table() -> None:
    enum = spec()["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
    assert enum == [e.code for e in ERROR_CODES if e.where == "api"]
    for row in ERROR_CODES:
        raised = client.error_for(row.status, _json({"error": row.code, "message": ""}))
        assert type(raised).__name__ == row.client, row.code
        assert row.code in type(raised).codes
    # Each status the spec describes names the table's codes for it.
    for path_ops in spec()["paths"].values():
        for operation in path_ops.values():
            for status, answer in operation["responses"].items():
                if "Error" not in str(answer.get("content")):
                    continue  # not an error answer (/readyz's 503 says why itself)
                errors = [e for e in ERROR_CODES if e.where == "api" and str(e.status) == status]
                for row in errors:
                    assert row.code in answer["description"], (status, row.code)


@pytest.mark.parametrize(
    ("body_type", "body", "message"),
    [
        (contract.EnsureBody, {"timeout_s": 0}, "timeout_s must be more than 0"),
        (contract.EnsureBody, {"timeout_s": "5"}, "timeout_s must be a number of seconds"),
        (contract.EnsureBody, {"needs": []}, "needs must be a non-empty list"),
        (contract.EnsureBody, {"needs": ["gpu"]}, 'unknown need "gpu"'),
        (contract.EnsureBody, {"wait": 1}, "wait must be true or false"),
        (contract.EnsureBody, {"other": 1}, "unknown field(s) other"),
        (contract.LeaseBody, {}, "ttl_s must be a number of seconds"),
        (contract.StopBody, {"force": True}, "stop takes no body fields"),
    ],
)
def test_a_body_the_schema_refuses_the_parser_refuses(
    body_type: type[Any], body: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        contract.parse(body_type, body)
    assert message in caught.value.message


def test_the_schema_bounds_are_the_parser_s() -> None:
    for body_type, name in ((contract.EnsureBody, "timeout_s"), (contract.LeaseBody, "ttl_s")):
        limit = contract.schema(body_type)["properties"][name]["maximum"]
        assert getattr(contract.parse(body_type, {name: limit}), name) == limit
        with pytest.raises(BadRequest):
            contract.parse(body_type, {name: limit * 1.0001})
    assert contract.schema(contract.LeaseBody)["required"] == ["ttl_s"]
    assert "required" not in contract.schema(contract.EnsureBody)
