"""The media clock: one 20 ms tick for every call of the process.

Ticks are scheduled against absolute monotonic times (start + n * 20 ms), so there is no drift; after a
stall the missed ticks are skipped (subscribers are told how many) instead of sent in a burst.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

import numpy as np

FRAME_MS = 20
log = logging.getLogger("ivr.phone.clock")


class MediaClock:
    """Calls every subscriber once per 20 ms tick, at absolute times start + n * period (monotonic clock).

    A tick that comes more than ``max_late`` periods late is dropped: subscribers get ``skipped`` > 0 and
    advance their timestamps instead of sending a burst.
    """

    def __init__(self, period: float = FRAME_MS / 1000, max_late: int = 2):
        self.period = period
        self.max_late = max_late
        self._subs: dict[int, Callable[[float, int], None]] = {}
        self._task: asyncio.Task | None = None
        self._next_id = 0
        self.ticks = 0
        self.skipped = 0
        self.lateness: deque[float] = deque(maxlen=3000)  # seconds each recent tick ran after its due time

    def subscribe(self, fn: Callable[[float, int], None]) -> int:
        self._next_id += 1
        self._subs[self._next_id] = fn
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self._next_id

    def unsubscribe(self, token: int) -> None:
        self._subs.pop(token, None)

    async def _run(self) -> None:
        start = time.monotonic()
        n = 0
        while self._subs:
            n += 1
            due = start + n * self.period
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            self.lateness.append(now - due)
            late = int((now - due) / self.period)
            skipped = 0
            if late > self.max_late:
                skipped = late
                n += late
                self.skipped += late
            self.ticks += 1
            for fn in list(self._subs.values()):
                try:
                    fn(now, skipped)
                except Exception:  # one broken call never stops the others' audio
                    log.exception("media tick failed")
        self._task = None

    def lateness_ms(self) -> tuple[float, float, float]:
        """p50, p99 and max of how late recent ticks ran, in milliseconds."""
        if not self.lateness:
            return 0.0, 0.0, 0.0
        x = np.array(self.lateness) * 1000
        return float(np.percentile(x, 50)), float(np.percentile(x, 99)), float(x.max())

    async def close(self) -> None:
        self._subs.clear()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
