"""The lookup layer's own logic, over a fake source and a fake clock: how long answers and
failures are cached, single flight, what one caller giving up does, and the recheck of
a denial read from an old cache. tests/component/gate/test_lookup.py runs the same layer
over a real SQLite database."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.fakes import FakeClock, FakeSource
from webhook import decide
from webhook.config import Config, parse_config
from webhook.gate import GateCheck, Unreachable
from webhook.lookup import FAILURE_TTL, RECHECK_DENIAL_AFTER, Fetched, Lookups
from webhook.sources import SourceError
from webhook.versions import Recorded


def recorded(version: str) -> Recorded:
    return Recorded(table_present=True, latest=version)


V41, V42 = recorded("41"), recorded("42")
REFUSED = SourceError("connect to db:5432: connection refused", "connection refused")
TIMED_OUT = SourceError("no answer from db:5432 within 2 s", "timed out")

Reads = list[tuple[str, str, float]]


def lookups(*sources: FakeSource, clock: FakeClock) -> tuple[Lookups, Reads]:
    """Lookups over the sources (by name), and the reads `observe` was told of."""
    observed: Reads = []

    def observe(database: str, result: str, seconds: float) -> None:
        observed.append((database, result, seconds))

    return Lookups({s.name: s for s in sources}, observe=observe, clock=clock), observed


async def until(condition: str, check: object) -> None:
    """Let the event loop run until `check()` holds (tasks to reach a point)."""
    assert callable(check)
    for _ in range(100):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never: {condition}")


# -- the cache --------------------------------------------------------------------------


async def test_an_answer_is_cached_for_less_than_the_age_the_caller_accepts() -> None:
    clock = FakeClock()
    source = FakeSource(V41, V42, clock=clock)
    layer, observed = lookups(source, clock=clock)

    assert await layer.get("orders", 5) == Fetched(V41, 0.0)
    clock.advance(4.5)
    assert await layer.get("orders", 5) == Fetched(V41, 4.5)  # cached: no read
    assert source.reads == 1
    clock.advance(0.5)  # exactly the age accepted: too old
    assert await layer.get("orders", 5) == Fetched(V42, 0.0)
    assert source.reads == 2
    assert [result for _, result, _ in observed] == ["recorded", "recorded"]


async def test_each_caller_says_how_old_an_answer_it_accepts() -> None:
    clock = FakeClock()
    source = FakeSource(V41, V42)
    layer, _ = lookups(source, clock=clock)

    await layer.get("orders", 5)
    clock.advance(2)
    assert await layer.get("orders", 3) == Fetched(V41, 2.0)
    assert await layer.get("orders", 2) == Fetched(V42, 0.0)  # read again for this caller
    assert await layer.get("orders", 0.5) == Fetched(V42, 0.0)  # the new answer is cached
    assert source.reads == 2


async def test_age_counts_from_the_end_of_the_read_and_the_read_is_timed() -> None:
    clock = FakeClock()
    source = FakeSource(V41, clock=clock, takes=0.25)
    layer, observed = lookups(source, clock=clock)

    await layer.get("orders", 5)
    assert observed == [("orders", "recorded", 0.25)]
    clock.advance(1)
    assert await layer.get("orders", 5) == Fetched(V41, 1.0)


async def test_a_missing_table_is_an_answer_like_any_other() -> None:
    clock = FakeClock()
    source = FakeSource(Recorded(table_present=False))
    layer, observed = lookups(source, clock=clock)

    assert await layer.get("orders", 5) == Fetched(Recorded(table_present=False), 0.0)
    clock.advance(4)
    assert (await layer.get("orders", 5)).age == 4.0
    assert (source.reads, observed) == (1, [("orders", "no_table", 0.0)])


async def test_databases_are_cached_apart() -> None:
    clock = FakeClock()
    orders, billing = FakeSource(V41), FakeSource(recorded("7"), name="billing")
    layer, observed = lookups(orders, billing, clock=clock)

    assert (await layer.get("orders", 5)).found == V41
    assert (await layer.get("billing", 5)).found == recorded("7")
    assert (await layer.get("orders", 5)).found == V41
    assert (orders.reads, billing.reads) == (1, 1)
    assert [database for database, _, _ in observed] == ["orders", "billing"]


# -- failures ---------------------------------------------------------------------------


async def test_a_failure_is_remembered_for_the_failure_ttl_only() -> None:
    assert FAILURE_TTL < 5  # else this test shows nothing
    clock = FakeClock()
    source = FakeSource(REFUSED, V41)
    layer, observed = lookups(source, clock=clock)

    assert await layer.get("orders", 5) == Fetched(Unreachable("connection refused"), 0.0)
    clock.advance(FAILURE_TTL - 0.25)  # steps a float holds exactly
    assert await layer.get("orders", 5) == Fetched(
        Unreachable("connection refused"), FAILURE_TTL - 0.25
    )
    assert source.reads == 1
    clock.advance(0.25)  # a success this old would still be cached for 5 s
    assert await layer.get("orders", 5) == Fetched(V41, 0.0)
    assert source.reads == 2
    assert [result for _, result, _ in observed] == ["unreachable", "recorded"]


async def test_a_caller_accepting_less_than_the_failure_ttl_reads_again_sooner() -> None:
    clock = FakeClock()
    source = FakeSource(REFUSED, V41)
    layer, _ = lookups(source, clock=clock)

    await layer.get("orders", 5)
    clock.advance(FAILURE_TTL / 4)
    assert await layer.get("orders", FAILURE_TTL / 2) == Fetched(
        Unreachable("connection refused"), FAILURE_TTL / 4
    )
    clock.advance(FAILURE_TTL / 4)
    assert await layer.get("orders", FAILURE_TTL / 2) == Fetched(V41, 0.0)


async def test_a_timeout_is_observed_as_such_and_shows_only_its_kind() -> None:
    clock = FakeClock()
    layer, observed = lookups(FakeSource(TIMED_OUT, clock=clock, takes=2.0), clock=clock)

    fetched = await layer.get("orders", 5)
    assert fetched == Fetched(Unreachable("timed out"), 0.0)
    assert observed == [("orders", "timeout", 2.0)]


# -- single flight ----------------------------------------------------------------------


async def test_concurrent_gets_share_one_read() -> None:
    clock = FakeClock()
    source = FakeSource(V41, V42)
    layer, observed = lookups(source, clock=clock)
    source.hold()
    waiting = [asyncio.create_task(layer.get("orders", 5)) for _ in range(10)]
    await source.waiting.wait()
    await until("every caller waits", lambda: all(not t.done() for t in waiting))
    assert source.reads == 1
    late = asyncio.create_task(layer.get("orders", 5))  # joins the read in flight
    await asyncio.sleep(0)
    source.release()

    answers = await asyncio.gather(*waiting, late)
    assert answers == [Fetched(V41, 0.0)] * 11
    assert (source.reads, len(observed)) == (1, 1)


async def test_once_a_read_is_done_the_next_stale_get_reads_anew() -> None:
    clock = FakeClock()
    source = FakeSource(V41, V42)
    layer, _ = lookups(source, clock=clock)
    source.hold()
    first = asyncio.gather(*(layer.get("orders", 5) for _ in range(3)))
    await source.waiting.wait()
    source.release()
    assert await first == [Fetched(V41, 0.0)] * 3

    clock.advance(5)
    assert await layer.get("orders", 5) == Fetched(V42, 0.0)
    assert source.reads == 2


async def test_a_failed_read_is_shared_too() -> None:
    clock = FakeClock()
    source = FakeSource(REFUSED)
    layer, observed = lookups(source, clock=clock)
    source.hold()
    waiting = asyncio.gather(*(layer.get("orders", 5) for _ in range(5)))
    await source.waiting.wait()
    source.release()

    assert await waiting == [Fetched(Unreachable("connection refused"), 0.0)] * 5
    assert (source.reads, [r for _, r, _ in observed]) == (1, ["unreachable"])


# -- cancellation -----------------------------------------------------------------------


async def test_one_caller_giving_up_does_not_cancel_the_read_others_wait_on() -> None:
    clock = FakeClock()
    source = FakeSource(V41)
    layer, _ = lookups(source, clock=clock)
    source.hold()
    leaving = asyncio.create_task(layer.get("orders", 5))
    staying = asyncio.create_task(layer.get("orders", 5))
    await source.waiting.wait()

    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert source.cancelled == 0
    source.release()
    assert await staying == Fetched(V41, 0.0)
    assert (source.reads, source.cancelled) == (1, 0)


async def test_a_read_every_caller_gave_up_on_still_fills_the_cache() -> None:
    clock = FakeClock()
    source = FakeSource(V41, V42)
    layer, observed = lookups(source, clock=clock)
    source.hold()
    alone = asyncio.create_task(layer.get("orders", 5))
    await source.waiting.wait()
    alone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await alone

    source.release()
    await until("the read finishes", lambda: source.finished == 1)
    await asyncio.sleep(0)  # its done callback runs
    clock.advance(1)
    assert await layer.get("orders", 5) == Fetched(V41, 1.0)
    assert (source.reads, source.cancelled, len(observed)) == (1, 0, 1)


async def test_a_caller_cancelled_by_its_deadline_gets_cancelled_error_not_an_answer() -> None:
    clock = FakeClock()
    source = FakeSource(V41)
    layer, _ = lookups(source, clock=clock)
    source.hold()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.get("orders", 5), timeout=0.01)
    assert (source.reads, source.cancelled) == (1, 0)
    source.release()
    assert await layer.get("orders", 5) == Fetched(V41, 0.0)
    assert source.reads == 1


async def test_close_cancels_reads_in_flight_and_closes_the_sources() -> None:
    clock = FakeClock()
    source = FakeSource(V41)
    layer, observed = lookups(source, clock=clock)
    source.hold()
    waiting = asyncio.create_task(layer.get("orders", 5))
    await source.waiting.wait()

    layer.close()
    done, _ = await asyncio.wait({waiting}, timeout=5)
    assert done == {waiting}
    assert waiting.cancelled()
    assert (source.cancelled, source.finished, source.closed, observed) == (1, 0, True, [])


def test_start_starts_every_source() -> None:
    one, two = FakeSource(name="orders"), FakeSource(name="billing")
    layer, _ = lookups(one, two, clock=FakeClock())
    assert (one.started, two.started) == (False, False)
    layer.start()
    assert (one.started, two.started) == (True, True)


# -- the recheck of a denial ------------------------------------------------------------


def config(ttl: float = 5.0) -> Config:
    return parse_config(
        {
            "databases": {
                "orders": {"url": "sqlite:///x", "tool": "flyway", "namespaces": ["shop"]}
            },
            "lookup": {"cache_ttl_seconds": ttl},
        }
    )


def pending(conf: Config, required: str = "42") -> decide.PendingGate:
    return decide.PendingGate(
        GateCheck("shop/api", conf.databases["orders"], required, "at-least"), [], "Deployment"
    )


async def test_a_denial_from_an_old_cache_is_read_again_before_it_is_final() -> None:
    assert RECHECK_DENIAL_AFTER < 5  # else this test shows nothing
    clock, conf = FakeClock(), config()
    source = FakeSource(V41, V42)  # the migration runs after the first read
    layer, _ = lookups(source, clock=clock)

    answer, found = await layer.answer(pending(conf), conf)
    assert (answer.allowed, found, source.reads) == (False, V41, 1)
    clock.advance(RECHECK_DENIAL_AFTER + 0.5)
    answer, found = await layer.answer(pending(conf), conf)
    assert (answer.allowed, found, source.reads) == (True, V42, 2)


async def test_a_denial_from_a_young_cache_is_final() -> None:
    clock, conf = FakeClock(), config()
    source = FakeSource(V41, V42)
    layer, _ = lookups(source, clock=clock)

    await layer.answer(pending(conf), conf)
    clock.advance(RECHECK_DENIAL_AFTER)  # not older than the limit
    answer, found = await layer.answer(pending(conf), conf)
    assert (answer.allowed, found, source.reads) == (False, V41, 1)


async def test_an_allowed_answer_stays_cached_for_the_whole_ttl() -> None:
    clock, conf = FakeClock(), config(ttl=5)
    source = FakeSource(V42, V41)
    layer, _ = lookups(source, clock=clock)

    await layer.answer(pending(conf), conf)
    clock.advance(4.9)
    answer, found = await layer.answer(pending(conf), conf)
    assert (answer.allowed, found, source.reads) == (True, V42, 1)


async def test_a_recheck_that_still_denies_is_the_answer() -> None:
    clock, conf = FakeClock(), config()
    source = FakeSource(V41)
    layer, _ = lookups(source, clock=clock)

    await layer.answer(pending(conf), conf)
    clock.advance(3)
    answer, found = await layer.answer(pending(conf), conf)
    assert (answer.allowed, found, source.reads) == (False, V41, 2)
    clock.advance(0.5)  # the recheck's answer is now cached
    answer, found = await layer.answer(pending(conf), conf)
    assert (answer.allowed, found, source.reads) == (False, V41, 2)
