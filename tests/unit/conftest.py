"""Fixtures of the unit tier."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import looptime
import pytest


@pytest.fixture
async def virtual_time() -> AsyncIterator[None]:
    """The test's event loop on looptime's clock: sleeps, timeouts and the fake
    programs' start delays pass at once and in order, whatever the machine's load."""
    loop = looptime.patch_event_loop(asyncio.get_running_loop(), _enabled=False)
    with loop.looptime_enabled():
        yield
