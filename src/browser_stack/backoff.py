"""Background starts of a program that keeps failing, spaced out.

With BROWSER_STACK_START=all, every warm ensure brings up in the background
what is down. A program that fails each time (its command gone, its port held
by another process) would be tried again on every warm ensure, each try a
spawn, its retries and a log line. After a failure of its own, a program's
next background try waits `delay_s(failures)`: twice as long after each
failure in a row, up to a cap. An ensure whose gates need the program tries it
at once and starts the count afresh; a start that brings it up ends it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from browser_stack.stack import Program

FIRST_DELAY_S = 10.0
MAX_DELAY_S = 300.0


def delay_s(failures: int) -> float:
    """How long the next background try waits after `failures` in a row."""
    return min(MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** max(0, failures - 1))


@dataclass(frozen=True)
class Failing:
    failures: int
    retry_at: float
    # The last failure, as its error's JSON (code, message, fields).
    error: dict[str, Any]


class Backoff:
    def __init__(self) -> None:
        self._failing: dict[Program, Failing] = {}

    def failed(self, program: Program, error: dict[str, Any], now: float) -> None:
        before = self._failing.get(program)
        failures = (before.failures if before else 0) + 1
        self._failing[program] = Failing(failures, now + delay_s(failures), error)

    def clear(self, programs: Iterable[Program]) -> None:
        """Brought up, or needed by an ensure: no wait before its next try."""
        for program in programs:
            self._failing.pop(program, None)

    def waiting(self, now: float) -> frozenset[Program]:
        """The programs whose background start must wait now."""
        return frozenset(p for p, f in self._failing.items() if f.retry_at > now)

    def describe(self, now: float) -> dict[str, Any]:
        """For status: each failing program, how often in a row, when its next
        background try may come, and its last error."""
        return {
            str(program): {
                "failures": failing.failures,
                "retry_in_s": round(max(0.0, failing.retry_at - now), 1),
                "error": failing.error,
            }
            for program, failing in sorted(self._failing.items())
        }
