"""Reading recorded versions: deadline, brief cache and one query per database at a time.

Edge code: it drives the version sources and hands plain `Recorded` / `Unreachable`
data to the pure gate decision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from webhook.gate import Unreachable
from webhook.sources.base import SourceUnavailable, VersionSource
from webhook.versions import Recorded

log = logging.getLogger(__name__)

# A failed read is remembered this long, so a dead database costs one timeout per
# second rather than one per request, and recovery is noticed within a second.
FAILURE_TTL = 1.0

Found = Recorded | Unreachable
Observer = Callable[[str, str, float], None]  # database, result, seconds


@dataclass(frozen=True, slots=True)
class Fetched:
    found: Found
    age: float  # seconds since it was read from the database


class Lookups:
    def __init__(
        self,
        sources: Mapping[str, VersionSource],
        *,
        timeout: float,
        observe: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sources = sources
        self._timeout = timeout
        self._observe = observe
        self._clock = clock
        self._cache: dict[str, tuple[Found, float]] = {}
        self._inflight: dict[str, asyncio.Task[Found]] = {}

    async def start(self) -> None:
        # Connect eagerly where possible, but a database that is down at start must not
        # stop the webhook from serving inject mode and other databases.
        for name, source in self._sources.items():
            try:
                async with asyncio.timeout(self._timeout):
                    await source.start()
            except (SourceUnavailable, TimeoutError) as exc:
                log.warning(
                    "database %s not reachable at start: %s", name, _reason(exc, self._timeout)
                )

    async def close(self) -> None:
        for task in self._inflight.values():
            task.cancel()
        for source in self._sources.values():
            await source.close()

    async def get(self, name: str, max_age: float) -> Fetched:
        now = self._clock()
        cached = self._cache.get(name)
        if cached is not None:
            found, at = cached
            limit = max_age if isinstance(found, Recorded) else min(max_age, FAILURE_TTL)
            if now - at <= limit:
                return Fetched(found, now - at)
        task = self._inflight.get(name)
        if task is None:
            task = asyncio.create_task(self._read(name))
            self._inflight[name] = task
            task.add_done_callback(lambda _: self._inflight.pop(name, None))
        # Shielded: one caller giving up (its client went away) must not cancel the
        # read that other callers are waiting on.
        found = await asyncio.shield(task)
        return Fetched(found, 0.0)

    async def _read(self, name: str) -> Found:
        start = self._clock()
        found: Found
        try:
            async with asyncio.timeout(self._timeout):
                found = await self._sources[name].lookup()
            result = "ok"
        except (SourceUnavailable, TimeoutError) as exc:
            found = Unreachable(_reason(exc, self._timeout))
            result = "timeout" if isinstance(exc, TimeoutError) else "unavailable"
        end = self._clock()
        self._cache[name] = (found, end)
        if self._observe is not None:
            self._observe(name, result, end - start)
        return found


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within the {timeout:g} s lookup deadline"
    return str(exc)
