"""Gate lookups: a short-lived cache and single flight in front of the version sources.

`Lookups.answer` finishes a pending gate: it reads with the full `cache_ttl_seconds`
first and, when that answer denies and is older than a second, again with a short
`max_age`, so a person who just ran the migration is let in on the next try while
satisfied answers stay cached.

The answer always comes within the source's deadline: a database that is down or slow
becomes `Unreachable` with a reason, and the gate applies `on_unreachable`. Concurrent
requests for one database share a single read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from webhook import decide
from webhook.config import Config
from webhook.gate import Found, Unreachable
from webhook.review import AdmissionResponse
from webhook.sources import SourceError, VersionSource

log = logging.getLogger("schemagate.lookup")

Observe = Callable[[str, str, float], None]

# A failed read is remembered this long, so a dead database costs one deadline per
# second rather than one per request, and its recovery is noticed within a second.
FAILURE_TTL = 1.0
# A denial read from a cache older than this is read again before it is final, so a
# person who just ran the migration does not wait out the whole cache TTL.
RECHECK_DENIAL_AFTER = 1.0


@dataclass(slots=True)  # made per admission: see review.AdmissionRequest
class Fetched:
    """What a database records (or why it could not be read), and how old that answer is."""

    found: Found
    age: float


@dataclass(frozen=True)
class _Snapshot:
    found: Found
    taken: float


class Lookups:
    def __init__(
        self,
        sources: Mapping[str, VersionSource],
        *,
        observe: Observe = lambda database, result, seconds: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`observe(database, result, seconds)` is called once per database read, with
        result one of recorded, no_table, unreachable, timeout (cache hits are not reads)."""
        self._sources = dict(sources)
        self._observe = observe
        self._clock = clock
        self._cache: dict[str, _Snapshot] = {}
        self._inflight: dict[str, asyncio.Task[Fetched]] = {}

    def start(self) -> None:
        """Resolve every database's URL now, so a missing Secret stops the server at start."""
        for source in self._sources.values():
            source.start()

    async def get(self, name: str, max_age: float) -> Fetched:
        snapshot = self._cache.get(name)
        if snapshot is not None:
            age = self._clock() - snapshot.taken
            failed = isinstance(snapshot.found, Unreachable)
            if age < (min(max_age, FAILURE_TTL) if failed else max_age):
                return Fetched(snapshot.found, age)
        task = self._inflight.get(name)
        if task is None:
            task = asyncio.create_task(self._read(name), name=f"schemagate-lookup-{name}")
            self._inflight[name] = task
            task.add_done_callback(lambda _: self._inflight.pop(name, None))
        # Shielded: one client giving up must not cancel the read others are waiting on.
        return await asyncio.shield(task)

    async def _read(self, name: str) -> Fetched:
        started = self._clock()
        found: Found
        try:
            found = await self._sources[name].lookup()
            result = "recorded" if found.table_present else "no_table"
        except SourceError as exc:
            # The denial names the kind of failure only; the detail is for operators.
            found = Unreachable(exc.kind)
            result = "timeout" if exc.timed_out else "unreachable"
            log.warning("gate lookup on database %s failed (%s): %s", name, exc.kind, exc)
        taken = self._clock()
        self._observe(name, result, taken - started)
        self._cache[name] = _Snapshot(found, taken)
        return Fetched(found, 0.0)

    async def answer(
        self, pending: decide.PendingGate, config: Config
    ) -> tuple[AdmissionResponse, Found]:
        """The gate's answer and what it was decided on: the webhook's path, and the CLI's."""
        name = pending.check.db.name
        fetched = await self.get(name, config.cache_ttl)
        answer = decide.finish_gate(pending, fetched.found, config)
        if not answer.allowed and fetched.age > RECHECK_DENIAL_AFTER:
            fetched = await self.get(name, RECHECK_DENIAL_AFTER)
            answer = decide.finish_gate(pending, fetched.found, config)
        return answer, fetched.found

    def close(self) -> None:
        """Cancel reads in flight and drop every pooled connection."""
        for task in self._inflight.values():
            task.cancel()
        for source in self._sources.values():
            source.close()
