"""Two real sidecars on one real supervisord: the first controls the stack; the
second says so in one line and only reads, however idle it thinks the stack is,
until the first is gone (claim.py)."""

from __future__ import annotations

from ..helpers import PREFIX, Sidecar, free_port, wait_for
from .conftest import Stack


def test_a_second_sidecar_says_so_once_and_controls_nothing_until_the_first_goes(
    stack: Stack, sidecar: Sidecar
) -> None:
    assert sidecar.ensure().status == 200
    # The second has idle stop on, the first not: the second never sees the
    # first's callers, and would stop what they use.
    second = stack.start_sidecar(
        BROWSER_STACK_LISTEN=f"127.0.0.1:{free_port()}",
        BROWSER_STACK_IDLE_TIMEOUT="1",
        BROWSER_STACK_IDLE_MIN_UPTIME="0",
    )
    stack.extra_sidecars.append(second)  # the next reset ends it

    said = [line for line in second.read_output().splitlines() if "not in control" in line]
    assert len(said) == 1, said
    assert f"pid {sidecar.pid}" in said[0] and sidecar.listen in said[0]
    for response in (
        second.ensure({"needs": ["cdp"]}),
        second.ensure({"needs": ["cdp"], "wait": False}),
        second.stop(),
        second.request("POST", f"{PREFIX}/lease", {"ttl_s": 5}),
    ):
        assert response.status == 409, response.body
        assert response.body["error"] == "not_in_control"
        assert response.body["holder_listen"] == sidecar.listen
        assert response.body["holder_pid"] == sidecar.pid
    ready = second.readyz()
    assert ready.status == 503
    assert "another sidecar" in ready.body["reasons"][0]
    assert second.status().body["in_control"] is False
    assert sidecar.status().body["in_control"] is True
    # Idle as far as the second can tell: it would stop the stack now, and does not.
    wait_for(
        lambda: second.status().body["idle"]["stops_in_s"] == 0,
        what="the second sidecar to find the stack idle",
    )
    assert set(stack.states().values()) == {"RUNNING"}
    assert "idle stop" not in second.read_output()

    sidecar.terminate()  # the first goes: the second takes over when it acts
    response = second.ensure({"needs": ["cdp"]})
    assert response.status == 200, response.body
    assert response.body["cold"] is False
    assert second.status().body["in_control"] is True
    wait_for(
        lambda: set(stack.states().values()) == {"STOPPED"},
        what="the second sidecar's idle stop, now that it controls the stack",
    )
    assert "idle stop of stack" in second.read_output()
