"""`webhook.app.BodyBudget`: room taken at once when there is some, a wait woken by the
bytes given back, and a timeout when none comes (the HTTP side is in
tests/reliability/test_hostile_http.py)."""

from __future__ import annotations

import asyncio

import pytest

from webhook.app import BodyBudget


async def test_room_now_is_taken_at_once_and_capped_at_the_whole_budget() -> None:
    budget = BodyBudget(100)
    assert await budget.take(30, wait=0) == 30
    assert await budget.take(70, wait=0) == 70
    budget.give(100)
    # An oversized review takes the whole budget rather than waiting forever.
    assert await budget.take(500, wait=0) == 100


async def test_a_wait_ends_when_enough_is_given_back() -> None:
    budget = BodyBudget(100)
    await budget.take(90, wait=0)
    waiter = asyncio.create_task(budget.take(50, wait=5))
    await asyncio.sleep(0.01)
    budget.give(30)  # 40 free: not enough yet
    await asyncio.sleep(0.01)
    assert not waiter.done()
    budget.give(60)  # 100 free
    assert await asyncio.wait_for(waiter, 1) == 50
    # Meanwhile a small one passes a large one that waits.
    assert await budget.take(50, wait=0) == 50


async def test_no_room_within_the_wait_is_a_timeout_and_takes_nothing() -> None:
    budget = BodyBudget(100)
    await budget.take(100, wait=0)
    with pytest.raises(TimeoutError):
        await budget.take(10, wait=0.05)
    budget.give(100)
    assert await budget.take(100, wait=0) == 100
