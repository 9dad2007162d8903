"""The readiness model: what is known of each program, kept current by events.

A program becomes ready when its probe passes for its current process. From then
on it stays ready until something shows it going away: its process exits (a
pidfd), the X display closes or the window manager's window is destroyed (X11
events), a liveness check fails, or supervisord names another process or state.
A warm ensure then answers from here with no request to supervisord or Chromium.

Watchers are outside (`Watch`); the model tells them what to follow and they
call back once when it goes. `readiness()` (readiness.py) decides, here as
everywhere.

What the model knows changes only on those events, on supervisord's answers and
when a pass grows too old (a timer at that moment): each change publishes a new
immutable `View`, and every reader (an ensure's answer, status, metrics) reads
the current one. Its JSON is written once per view, not once per answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from browser_stack.core_types import Gone, ProbeResult, ProcessInfo, Watch
from browser_stack.readiness import ProgramFacts, Readiness, readiness
from browser_stack.stack import PROGRAMS, Program
from browser_stack.states import ALIVE_STATES, ProcessState

log = logging.getLogger(__name__)


class NoWatch:
    """No events: exits and the rest are noticed by the liveness checks."""

    def follow(self, program: Program, pid: int, result: ProbeResult, gone: Gone) -> None:
        pass

    def forget(self, program: Program) -> None:
        pass


@dataclass(frozen=True)
class ProgramStatus:
    program: Program
    state: str
    pid: int
    uptime_s: int
    readiness: Readiness
    detail: str
    reason: dict[str, str] | None = None
    # The variable with which the deployment turned it off.
    disabled_by: str | None = None

    @property
    def ready(self) -> bool:
        return self.readiness == Readiness.READY

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state,
            "pid": self.pid,
            "uptime_s": self.uptime_s,
            "ready": self.ready,
            "readiness": str(self.readiness),
            "probe": self.detail,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        if self.disabled_by is not None:
            out["disabled_by"] = self.disabled_by
        return out


@dataclass(frozen=True)
class View:
    """What the model knew at one moment."""

    programs: Mapping[Program, ProgramStatus]
    ready: frozenset[Program]
    endpoints: Mapping[str, str]

    @cached_property
    def json_tail(self) -> str:
        """`,"programs":{...},"endpoints":{...}}`: the end of an ensure answer."""
        programs = {str(p): s.to_dict() for p, s in self.programs.items()}
        compact = {"separators": (",", ":")}
        return (
            f',"programs":{json.dumps(programs, **compact)}'  # type: ignore[arg-type]
            f',"endpoints":{json.dumps(self.endpoints, **compact)}}}'  # type: ignore[arg-type]
        )


@dataclass
class _Entry:
    info: ProcessInfo | None = None
    exited: bool = False
    passed_at: float | None = None
    probe: ProbeResult = field(default_factory=lambda: ProbeResult(False, "not checked yet"))
    # Fires when its pass grows too old, to publish that.
    stale: asyncio.TimerHandle | None = None


class ReadinessModel:
    def __init__(
        self,
        watch: Watch,
        *,
        clock: Callable[[], float],
        fresh_for_s: float | None,
        on_exit: Callable[[Program, int, str], None] | None = None,
        endpoints: Callable[[str], Mapping[str, str]] = lambda cdp_ws: {"cdp_ws": cdp_ws},
        disabled: Mapping[Program, str] | None = None,
    ) -> None:
        self._watch = watch
        # What the deployment turned off, and the variable that did.
        self._disabled = dict(disabled or {})
        self._clock = clock
        self._fresh_for_s = fresh_for_s
        self._on_exit = on_exit
        self._endpoints = endpoints
        self._entries = {p: _Entry() for p in PROGRAMS}
        # Whether supervisord has answered once: a program it did not name is
        # then not configured rather than unknown.
        self._observed = False
        # Set while any program holds a pass: the liveness checks wait for it.
        self.up = asyncio.Event()
        self.view = self._view()

    # -- reading --------------------------------------------------------------

    def facts(self, program: Program) -> ProgramFacts:
        entry = self._entries[program]
        state = entry.info.state if entry.info is not None else None
        return ProgramFacts(
            state=state,
            exited=entry.exited,
            passed_at=entry.passed_at,
            disabled=program in self._disabled,
        )

    def readiness(self, program: Program) -> Readiness:
        return self.view.programs[program].readiness

    def ready(self, programs: Iterable[Program]) -> bool:
        return self.view.ready.issuperset(programs)

    def not_ready(self, programs: Iterable[Program]) -> list[Program]:
        return [p for p in programs if p not in self.view.ready]

    def info(self, program: Program) -> ProcessInfo | None:
        return self._entries[program].info

    def probe(self, program: Program) -> ProbeResult:
        return self._entries[program].probe

    def holding(self) -> list[Program]:
        """The programs holding a pass, fresh or not: what liveness checks."""
        return [p for p, e in self._entries.items() if e.passed_at is not None]

    def status(self, program: Program, reason: dict[str, str] | None = None) -> ProgramStatus:
        status = self.view.programs[program]
        return status if reason is None else replace(status, reason=reason)

    def statuses(self) -> dict[Program, ProgramStatus]:
        return dict(self.view.programs)

    # -- what changes it ------------------------------------------------------

    def observe(self, infos: Mapping[Program, ProcessInfo]) -> None:
        """supervisord's word on all five. Another process than the one that
        passed (a restart), or a state that is not alive, ends its readiness."""
        self._observed = True
        for program, entry in self._entries.items():
            new = infos.get(program)
            old = entry.info
            entry.info = new
            if new is None or new.state not in ALIVE_STATES:
                self._end(program, entry, f"supervisord: {new.state.name}" if new else "")
                entry.exited = False
            elif old is not None and old.pid and new.pid != old.pid:
                self._end(program, entry, f"supervisord restarted it (pid {new.pid})")
                entry.exited = False
        self._publish()

    def spawned(self, program: Program) -> None:
        """We asked supervisord to spawn it; its pid comes with the next read."""
        entry = self._entries[program]
        entry.info = ProcessInfo(name=str(program), state=ProcessState.STARTING, pid=0)
        entry.exited = False
        entry.passed_at = None
        entry.probe = ProbeResult(False, "spawned")
        self._publish()

    def passed(self, program: Program, pid: int, result: ProbeResult, began: float) -> bool:
        """Its probe, begun at `began`, passed while supervisord named process
        `pid`. False (and nothing recorded) unless that is its live process."""
        entry = self._entries[program]
        info = entry.info
        if info is None or info.state not in ALIVE_STATES or info.pid != pid or entry.exited:
            return False
        entry.passed_at = max(entry.passed_at or began, began)
        entry.probe = result
        self._watch.follow(program, pid, result, self._gone(program, pid))
        if self._fresh_for_s is not None:
            if entry.stale is not None:
                entry.stale.cancel()
            delay = entry.passed_at + self._fresh_for_s - self._clock()
            entry.stale = asyncio.get_running_loop().call_later(delay + 0.001, self._publish)
        self._publish()
        return True

    def lost(self, program: Program, why: str) -> None:
        """Something showed it is not usable (a liveness check failed, its
        display closed): not ready until its probe passes again."""
        entry = self._entries[program]
        if entry.passed_at is not None:
            log.warning(
                "not ready program=%s: %s",
                program,
                why,
                extra={"program": str(program), "event": "lost", "reason": why},
            )
        self._unpass(entry, why)

    def stopping(self, program: Program) -> None:
        """We are stopping it on purpose: its exit is not news."""
        self._watch.forget(program)
        self._unpass(self._entries[program], "stopping")

    # -- internals -------------------------------------------------------------

    def _gone(self, program: Program, pid: int) -> Gone:
        def gone(why: str, exited: bool) -> None:
            entry = self._entries[program]
            if entry.info is None or entry.info.pid != pid:
                return  # an older process of it: already replaced
            if exited:  # the exit's own log line says how it ended
                entry.exited = True
                self._unpass(entry, f"exited: {why}" if why else "exited")
                if self._on_exit is not None:
                    self._on_exit(program, pid, why)
            else:
                self.lost(program, why)

        return gone

    def _end(self, program: Program, entry: _Entry, why: str) -> None:
        if entry.passed_at is not None or entry.exited:
            self._watch.forget(program)
        if entry.passed_at is not None:
            entry.passed_at = None
            entry.probe = ProbeResult(False, why or "not configured in supervisord")

    def _unpass(self, entry: _Entry, why: str) -> None:
        entry.passed_at = None
        entry.probe = ProbeResult(False, why)
        self._publish()

    def _publish(self) -> None:
        self.view = self._view()
        if any(e.passed_at is not None for e in self._entries.values()):
            self.up.set()
        else:
            self.up.clear()

    def _view(self) -> View:
        now = self._clock()
        programs = {}
        for program, entry in self._entries.items():
            info = entry.info
            if info is None:
                state, pid, uptime = ("NOT_CONFIGURED" if self._observed else "UNKNOWN"), 0, 0
            else:
                alive = info.state in ALIVE_STATES and info.start
                # As of supervisord's last word: at most a liveness interval old.
                state, pid, uptime = info.state.name, info.pid, info.uptime_s if alive else 0
            decided = readiness(self.facts(program), now, self._fresh_for_s)
            programs[program] = ProgramStatus(
                program,
                state,
                pid,
                uptime,
                decided,
                entry.probe.detail,
                disabled_by=self._disabled.get(program),
            )
        ready = frozenset(p for p, s in programs.items() if s.ready)
        browser = self._entries[Program.BROWSER].probe
        cdp_ws = browser.data.get("cdp_ws", "") if Program.BROWSER in ready else ""
        return View(programs, ready, self._endpoints(cdp_ws))
