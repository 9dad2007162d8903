"""One start of the stack, shared by every ensure that arrives while it lasts.

A run brings each program up (bringup.py) once, whatever the number of callers:
what the callers' gates need at once, the rest once those are ready, each after
what it needs to be spawned. A program whose bring-up stopped the programs that
use it (a restart) hands them back here to be brought up in turn; their failure
is theirs alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from browser_stack.errors import ReadinessTimeout, StackStopped
from browser_stack.stack import GATE_PROGRAMS, PROGRAMS, SPAWN_AFTER, Gate, Program


class BringsUp(Protocol):
    """bringup.BringUp, as a run uses it."""

    async def __call__(self, program: Program, progress: Run) -> list[Program]:
        """Bring `program` up; return the programs using it that a restart stopped."""

    def not_started(self, program: Program, dependency: Program) -> None:
        """`program` was not spawned because `dependency` failed."""


def _consume(future: asyncio.Future[Any]) -> None:
    # Mark a failure as seen: a run's failure may have no caller left to read it.
    if not future.cancelled():
        future.exception()


class Run:
    def __init__(
        self,
        bring_up: BringsUp,
        pending: Iterable[Program],
        first: Iterable[Program],
        began: float,
    ) -> None:
        self._bring_up = bring_up
        self.began = began
        self._loop = asyncio.get_running_loop()
        self.futures: dict[Program, asyncio.Future[None]] = {}
        self.released = {p: asyncio.Event() for p in PROGRAMS}
        self.started: list[Program] = []
        # Every program this run brought up (or tried to).
        self.tried: set[Program] = set()
        self.waiting_on: dict[Program, str] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        todo = set(pending)
        for program in PROGRAMS:
            if program in todo:
                self.start(program)
            else:
                self.futures[program] = self._loop.create_future()
                self.futures[program].set_result(None)
        self.release(first)
        self._spawn_task(self._release_rest(frozenset(first)))
        self.finished: asyncio.Future[None] = asyncio.ensure_future(self._all_done())

    # -- what callers use ----------------------------------------------------

    def release(self, programs: Iterable[Program]) -> None:
        for program in programs:
            self.released[program].set()

    def include(self, programs: Iterable[Program], ready: Callable[[Program], bool]) -> None:
        """Bring up in this run what a caller who joined it needs and the run
        left out (with BROWSER_STACK_START=needed, a run holds only what its
        first callers' gates need), or what went away since."""
        for program in programs:
            future = self.futures[program]
            done_well = future.done() and not future.cancelled() and future.exception() is None
            if done_well and not ready(program):
                self.start(program)

    def done(self, programs: Iterable[Program]) -> bool:
        return all(self.futures[p].done() for p in programs)

    async def wait(self, programs: Iterable[Program]) -> None:
        await asyncio.wait([self.futures[p] for p in programs])

    def failure(self, programs: Iterable[Program]) -> BaseException | None:
        for program in programs:
            future = self.futures[program]
            if future.done() and not future.cancelled() and future.exception() is not None:
                return future.exception()
        return None

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.wait([self.finished])

    # -- what a bring-up reports (bringup.Progress) ----------------------------

    def waiting(self, program: Program, why: str) -> None:
        self.waiting_on[program] = why

    def spawned(self, program: Program) -> None:
        if program not in self.started:
            self.started.append(program)

    # -- internals ---------------------------------------------------------------

    def start(self, program: Program) -> None:
        """Bring `program` up in this run (again, if a restart stopped it)."""
        self.tried.add(program)
        future: asyncio.Future[None] = self._loop.create_future()
        future.add_done_callback(_consume)
        self.futures[program] = future
        self._spawn_task(self._one(program, future))

    def _spawn_task(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _release_rest(self, first: frozenset[Program]) -> None:
        # What the callers' gates need goes first; the rest waits until those
        # are ready, so that on a small machine it does not take their CPU
        # (mcp-server-browser's start costs as much as Chromium's).
        await self.wait(first)
        self.release(PROGRAMS)

    async def _one(self, program: Program, future: asyncio.Future[None]) -> None:
        try:
            if not self.released[program].is_set():
                self.waiting_on[program] = "deferred until the gates asked for are ready"
                await self.released[program].wait()
            for dependency in SPAWN_AFTER[program]:
                self.waiting_on[program] = f"waiting for {dependency}"
                await self.wait([dependency])
                error = self.failure([dependency])
                if error is not None:
                    future.set_exception(error)  # callers hear the cause
                    self.waiting_on[program] = f"not started: {dependency} failed"
                    self._bring_up.not_started(program, dependency)
                    return
            users = await self._bring_up(program, self)
        except asyncio.CancelledError:
            if not future.done():
                future.set_exception(StackStopped("a stop cancelled the start"))
            raise
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(None)
            self.waiting_on.pop(program, None)
            for user in users:
                self.start(user)

    async def _all_done(self) -> None:
        while not self.done(PROGRAMS):
            await asyncio.wait([f for f in self.futures.values() if not f.done()])


def timeout_error(
    timeout_s: float, gates: Iterable[Gate], run: Run | None, before_run: str = "not checked"
) -> ReadinessTimeout:
    """What an ensure that ran out of time answers: the gates and programs
    still pending, and what each was doing (`before_run`: why, when no start
    had begun)."""
    pending: dict[str, str] = {}
    pending_gates = set()
    for gate in gates:
        for program in GATE_PROGRAMS[gate]:
            if run is None or not run.futures[program].done():
                pending_gates.add(gate)
                why = run.waiting_on.get(program, "waiting") if run else before_run
                pending[str(program)] = why
    if not pending_gates:  # timed out while re-checking or waiting on a stop
        pending_gates = set(gates)
    return ReadinessTimeout(timeout_s, pending_gates, pending)
