"""The two decisions of the core, as tables: readiness from the raw facts, and
what a bring-up does from supervisord's state."""

from __future__ import annotations

import pytest

from browser_stack.bringup import Action, next_action
from browser_stack.core_types import ProbeResult, ProcessInfo
from browser_stack.model import NoWatch, ReadinessModel
from browser_stack.readiness import ProgramFacts, Readiness, readiness
from browser_stack.stack import PROGRAMS, Program
from browser_stack.states import ProcessState as S

NOW = 100.0
FRESH = 3.0  # liveness interval 2 s + a probe's timeout 1 s

READINESS = [
    # state, exited, passed_at, fresh_for_s -> readiness
    (None, False, None, FRESH, Readiness.UNKNOWN),  # not configured / not asked
    (S.UNKNOWN, False, 99.0, FRESH, Readiness.UNKNOWN),
    (S.STOPPED, False, None, FRESH, Readiness.STOPPED),
    (S.STOPPING, False, 99.0, FRESH, Readiness.STOPPED),
    (S.BACKOFF, False, 99.0, FRESH, Readiness.FAILED),
    (S.EXITED, False, None, FRESH, Readiness.FAILED),
    (S.FATAL, False, None, FRESH, Readiness.FAILED),
    (S.STARTING, False, None, FRESH, Readiness.STARTING),  # spawned, no pass yet
    (S.RUNNING, False, None, FRESH, Readiness.STARTING),  # RUNNING says nothing of ready
    (S.STARTING, False, 99.0, FRESH, Readiness.READY),  # passed before startsecs
    (S.RUNNING, False, 99.0, FRESH, Readiness.READY),
    (S.RUNNING, False, NOW - FRESH, FRESH, Readiness.READY),  # at the edge
    (S.RUNNING, False, NOW - FRESH - 0.01, FRESH, Readiness.STARTING),  # stale
    (S.RUNNING, False, 0.0, None, Readiness.READY),  # liveness off: holds until an event
    (S.RUNNING, True, 99.0, FRESH, Readiness.FAILED),  # exited, supervisord not asked yet
    (S.RUNNING, True, None, None, Readiness.FAILED),
]


@pytest.mark.parametrize(("state", "exited", "passed_at", "fresh", "expected"), READINESS)
def test_readiness_table(
    state: S | None, exited: bool, passed_at: float | None, fresh: float | None, expected: Readiness
) -> None:
    assert readiness(ProgramFacts(state, exited, passed_at), NOW, fresh) == expected


NEXT_ACTION = [
    # state, restart -> action
    (None, False, Action.FAIL),
    (None, True, Action.FAIL),
    (S.STOPPED, False, Action.SPAWN),
    (S.STOPPED, True, Action.SPAWN),
    (S.STOPPING, False, Action.WAIT_FOR_STOP),
    (S.STARTING, False, Action.PROBE),
    (S.RUNNING, False, Action.PROBE),
    (S.STARTING, True, Action.RESTART),
    (S.RUNNING, True, Action.RESTART),
    (S.BACKOFF, False, Action.STOP_THEN_SPAWN),
    (S.EXITED, False, Action.STOP_THEN_SPAWN),
    (S.FATAL, True, Action.STOP_THEN_SPAWN),
    (S.UNKNOWN, False, Action.STOP_THEN_SPAWN),
]


@pytest.mark.parametrize(("state", "restart", "expected"), NEXT_ACTION)
def test_next_action_table(state: S | None, restart: bool, expected: Action) -> None:
    assert next_action(state, restart) == expected


def test_every_state_has_an_action_and_a_readiness() -> None:
    for state in [None, *S]:
        assert next_action(state, False) in Action
        assert readiness(ProgramFacts(state), NOW, FRESH) in Readiness


# -- the model: facts as events and supervisord's reads change them ----------------


def model(now: list[float]) -> ReadinessModel:
    return ReadinessModel(NoWatch(), clock=lambda: now[0], fresh_for_s=FRESH)


def running(pid: int) -> dict[Program, ProcessInfo]:
    return {p: ProcessInfo(str(p), S.RUNNING, pid=pid + i) for i, p in enumerate(PROGRAMS)}


async def test_a_pass_counts_only_for_the_process_supervisord_names() -> None:
    now = [NOW]
    m = model(now)
    assert m.readiness(Program.BROWSER) == Readiness.UNKNOWN
    m.observe(running(10))
    browser_pid = 12
    assert not m.passed(Program.BROWSER, browser_pid + 1, ProbeResult(True), NOW)
    assert m.readiness(Program.BROWSER) == Readiness.STARTING
    assert m.passed(Program.BROWSER, browser_pid, ProbeResult(True), NOW)
    assert m.readiness(Program.BROWSER) == Readiness.READY
    m.observe(running(20))  # restarted behind our back
    assert m.readiness(Program.BROWSER) == Readiness.STARTING
    assert m.readiness(Program.TIGERVNC) == Readiness.STARTING


async def test_not_configured_once_supervisord_has_answered() -> None:
    m = model([NOW])
    assert m.status(Program.WEBSOCAT).state == "UNKNOWN"
    m.observe({})
    assert m.status(Program.WEBSOCAT).state == "NOT_CONFIGURED"
    assert m.readiness(Program.WEBSOCAT) == Readiness.UNKNOWN


async def test_a_lost_program_is_starting_until_it_passes_again() -> None:
    now = [NOW]
    m = model(now)
    m.observe(running(10))
    m.passed(Program.OPENBOX, 11, ProbeResult(True), NOW)
    assert m.up.is_set()
    m.lost(Program.OPENBOX, "its window manager window was destroyed")
    assert m.readiness(Program.OPENBOX) == Readiness.STARTING
    assert m.probe(Program.OPENBOX).detail == "its window manager window was destroyed"
    assert not m.up.is_set()
    m.passed(Program.OPENBOX, 11, ProbeResult(True), NOW + 1)
    assert m.readiness(Program.OPENBOX) == Readiness.READY
