"""A supervisord that wants a username and password on its unix socket."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from ..helpers import Sidecar, free_ports
from .conftest import PROGRAMS, Stack, make_stack

USER = "stack-user"
# Distinctive, so a grep cannot match anything else by chance.
PASSWORD = f"pw-{secrets.token_hex(12)}"
WRONG = f"wrong-{secrets.token_hex(12)}"


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from make_stack(tmp_path_factory.mktemp("auth"), auth=(USER, PASSWORD))


@pytest.fixture
def stack(auth_stack: Stack) -> Stack:
    auth_stack.reset()
    return auth_stack


def _extra_sidecar(stack: Stack, password: str) -> Sidecar:
    """A sidecar on its own port in place of the stack's, logging at DEBUG,
    with the given password."""
    listen = f"127.0.0.1:{free_ports(1)[0]}"
    return stack.other_sidecar(
        SUPERVISOR_PASSWORD=password, BROWSER_STACK_LISTEN=listen, BROWSER_STACK_LOG_LEVEL="DEBUG"
    )


def test_sidecar_with_credentials_starts_and_stops_the_stack(stack: Stack) -> None:
    assert stack.sidecar is not None
    health = stack.sidecar.healthz()
    assert health.status == 200
    assert health.body["supervisor"]["reachable"] is True

    response = stack.sidecar.ensure()

    assert response.status == 200, response.body
    assert stack.starts() == dict.fromkeys(PROGRAMS, 1)
    stopped = stack.sidecar.stop()
    assert stopped.status == 200
    assert sorted(stopped.body["stopped"]) == sorted(PROGRAMS)


def test_wrong_password_is_a_clear_error_not_a_hang(stack: Stack) -> None:
    sidecar = _extra_sidecar(stack, WRONG)

    response = sidecar.ensure(timeout=20)  # a hang would raise TimeoutError here

    assert response.status == 502, response.body
    assert response.body["error"] == "supervisor_error"
    assert "credentials" in response.body["message"]
    status = sidecar.status()
    assert status.status == 200
    assert status.body["supervisor"]["reachable"] is False
    assert "credentials" in status.body["supervisor"]["message"]
    ready = sidecar.readyz()
    assert ready.status == 503
    assert "credentials" in ready.body["reasons"][0]
    assert stack.starts() == {}


def test_password_never_appears_in_the_sidecars_output(stack: Stack) -> None:
    bodies = []
    sidecars = []
    for password in (PASSWORD, WRONG):
        sidecar = _extra_sidecar(stack, password)  # one at a time: each controls the stack
        sidecars.append(sidecar)
        for response in (
            sidecar.healthz(),
            sidecar.ensure(timeout=20),
            sidecar.status(),
            sidecar.stop(),
        ):
            bodies.append(repr(response.body))
        sidecar.terminate()  # everything it logs is in the file now

    for sidecar in sidecars:
        output = sidecar.read_output()
        assert "DEBUG" in output or "INFO" in output  # it did log, at DEBUG level
        assert PASSWORD not in output
        assert WRONG not in output
    assert not any(PASSWORD in b or WRONG in b for b in bodies)


def test_healthz_reports_refused_credentials_as_unreachable(stack: Stack) -> None:
    sidecar = _extra_sidecar(stack, WRONG)

    health = sidecar.healthz()

    assert health.status == 200, health.body
    assert health.body["supervisor"]["reachable"] is False
    assert "credentials" in health.body["supervisor"]["message"]
