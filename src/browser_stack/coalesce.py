"""Share one round of work among concurrent callers without serving stale data.

A caller that arrives while a round is running waits for the next round, which
starts as soon as the running one ends and serves everyone who queued for it.
So every answer comes from a round that began after its caller arrived, and
however many callers arrive, at most two rounds are ever alive at once.

A caller that says since when it needs news (`get(since=t)`, e.g. when its
request arrived) may also join the running round if that round began at or
after t.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    def __init__(
        self, work: Callable[[], Awaitable[T]], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._work = work
        self._clock = clock
        self._running: asyncio.Task[T] | None = None
        self._running_began = 0.0
        self._queued: asyncio.Task[T] | None = None
        self.rounds = 0

    async def get(self, since: float | None = None) -> T:
        """A round that began after this call, or at or after `since` if given."""
        if self._running is not None and since is not None and self._running_began >= since:
            task = self._running
        elif self._queued is not None:
            task = self._queued
        elif self._running is None:
            self._running = self._launch()
            task = self._running
        else:
            self._queued = asyncio.ensure_future(self._after(self._running))
            task = self._queued
        # shield: a caller that goes away must not cancel the others' round.
        return await asyncio.shield(task)

    def _launch(self) -> asyncio.Task[T]:
        self.rounds += 1
        self._running_began = self._clock()
        task = asyncio.ensure_future(self._work())
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[T]) -> None:
        if self._running is task:
            self._running = None
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not logged

    async def _after(self, previous: asyncio.Task[T]) -> T:
        await asyncio.wait([previous])
        self._queued = None
        self._running = self._launch()
        return await self._running
