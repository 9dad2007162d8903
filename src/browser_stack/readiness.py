"""Readiness, decided once: a pure function from what is known of a program to
one of a few named states. The start path, the warm path, status and metrics
all ask it; nothing else decides whether a program is ready."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from browser_stack.states import ALIVE_STATES, FAILED_STATES, ProcessState


class Readiness(StrEnum):
    # Passed its probe after its current process was spawned, has not exited
    # since, and (with liveness checks on) passed one recently.
    READY = "ready"
    # supervisord keeps it alive, but it has not passed since its spawn, or its
    # last pass is too old, or something showed it going away.
    STARTING = "starting"
    # supervisord is retrying or gave up (BACKOFF, EXITED, FATAL), or its
    # process exited and supervisord has not said what comes next.
    FAILED = "failed"
    # Not running: STOPPED or STOPPING.
    STOPPED = "stopped"
    # supervisord has not named it: not configured, not asked yet, or UNKNOWN.
    UNKNOWN = "unknown"
    # Not running, and never started: the deployment turned it off.
    DISABLED = "disabled"


@dataclass(frozen=True)
class ProgramFacts:
    """What is known of one program: supervisord's last word on it (None when
    supervisord has not named it), whether its process was seen to exit, and
    when its probe last passed for that process (None: not since its spawn, or
    something showed it going away since); and whether the deployment turned it
    off."""

    state: ProcessState | None
    exited: bool = False
    passed_at: float | None = None
    disabled: bool = False


def readiness(facts: ProgramFacts, now: float, fresh_for_s: float | None) -> Readiness:
    """`fresh_for_s`: how old a pass may be (the liveness interval plus a probe's
    timeout); None when liveness checks are off and a pass holds until an event."""
    state = facts.state
    if facts.disabled and (state is None or state not in ALIVE_STATES):
        return Readiness.DISABLED
    if state is None or state == ProcessState.UNKNOWN:
        return Readiness.UNKNOWN
    if state in FAILED_STATES:
        return Readiness.FAILED
    if state not in ALIVE_STATES:
        return Readiness.STOPPED
    if facts.exited:
        return Readiness.FAILED
    if facts.passed_at is None:
        return Readiness.STARTING
    if fresh_for_s is not None and now - facts.passed_at > fresh_for_s:
        return Readiness.STARTING
    return Readiness.READY
