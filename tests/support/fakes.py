"""Fakes for the pure logic in front of the databases: a clock moved by hand and a
version source whose answers, and when it gives them, the test decides.

They stand in for `time.monotonic` and a `webhook.sources.VersionSource` in
`webhook.lookup.Lookups` (tests/unit/test_lookup.py); the real sources over real
databases are tested beside them (tests/component/gate).
"""

from __future__ import annotations

import asyncio
from collections import deque

from webhook.sources import SourceError, VersionSource
from webhook.versions import Recorded


class FakeClock:
    """Monotonic time that only moves when told, so cache ages are exact."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Answer = Recorded | SourceError


class FakeSource:
    """A `VersionSource` that answers from a script.

    Each `lookup()` takes the next answer given to the constructor or to `answer()`
    (the last one is kept for every later read): a `Recorded` is returned, a
    `SourceError` raised. `takes` seconds pass on `clock` during each read. After
    `hold()`, reads wait until `release()`: `waiting` is set once one does, so a test
    can act while a read is in flight. It counts reads begun, finished and cancelled.
    """

    def __init__(
        self,
        *answers: Answer,
        name: str = "orders",
        clock: FakeClock | None = None,
        takes: float = 0.0,
    ) -> None:
        self.name = name
        self._answers: deque[Answer] = deque(answers or [Recorded(table_present=False)])
        self._clock = clock
        self._takes = takes
        self._gate: asyncio.Event | None = None
        self.waiting = asyncio.Event()
        self.started = False
        self.closed = False
        self.reads = 0
        self.finished = 0
        self.cancelled = 0

    def answer(self, *answers: Answer) -> None:
        """What the next reads find (the last of them for every read after)."""
        self._answers = deque(answers)

    def hold(self) -> None:
        self._gate = asyncio.Event()
        self.waiting.clear()

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    # the VersionSource interface

    def start(self) -> None:
        self.started = True

    async def lookup(self) -> Recorded:
        self.reads += 1
        answer = self._answers.popleft() if len(self._answers) > 1 else self._answers[0]
        try:
            if self._gate is not None:
                self.waiting.set()
                await self._gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self._clock is not None:
            self._clock.advance(self._takes)
        self.finished += 1
        if isinstance(answer, SourceError):
            raise answer
        return answer

    def close(self) -> None:
        self.closed = True


def _conforms(source: FakeSource) -> VersionSource:
    return source  # mypy checks FakeSource against the protocol here
