"""Share one round of work among concurrent callers without serving stale data.

A caller that arrives while a round is running waits for the next round, which
starts as soon as the running one ends and serves everyone who queued for it.
So every answer comes from a round that began after its caller arrived, and
however many callers arrive, at most two rounds are ever alive at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    def __init__(self, work: Callable[[], Awaitable[T]]) -> None:
        self._work = work
        self._running: asyncio.Task[T] | None = None
        self._queued: asyncio.Task[T] | None = None
        self.rounds = 0

    async def get(self) -> T:
        if self._queued is not None:
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
