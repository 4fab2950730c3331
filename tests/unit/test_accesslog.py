"""The admission line written past logging is the line logging would have written."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest

from webhook import accesslog, logs

FIELDS = {
    "uid": "0d6c-uid",
    "object": "shop/orders",
    "operation": "CREATE",
    "mode": "inject",
    "decision": "patched",
    "dry_run": False,
    "duration_ms": 0.123,
}


def _admit() -> None:
    accesslog.admission("0d6c-uid", "shop/orders", "CREATE", "inject", "patched", False, 0.123)


@pytest.fixture
def at_level() -> Iterator[logging.Logger]:
    logger = logging.getLogger(accesslog.LOGGER)
    saved = logger.level
    try:
        yield logger
    finally:
        logger.setLevel(saved)


@pytest.fixture
def pipe() -> Iterator[tuple[int, accesslog.Sink]]:
    read, write = os.pipe()
    with os.fdopen(write, "w") as stream:
        sink = accesslog.Sink(stream)
        saved, accesslog._sink = accesslog._sink, sink
        try:
            yield read, sink
        finally:
            accesslog._sink = saved
            os.close(read)


def test_the_line_has_the_formatters_keys_values_and_order(
    pipe: tuple[int, accesslog.Sink], at_level: logging.Logger
) -> None:
    read, _ = pipe
    at_level.setLevel(logging.INFO)
    record = logging.getLogger(accesslog.LOGGER).makeRecord(
        accesslog.LOGGER, logging.INFO, "", 0, "admission", (), None, extra=FIELDS
    )
    expected = logs.JsonFormatter().format(record)
    _admit()  # no running loop: written at once
    line = os.read(read, 65536).decode()
    assert line.endswith("\n") and line.count("\n") == 1
    ours, theirs = orjson.loads(line), orjson.loads(expected)
    ours_time, theirs_time = ours.pop("time"), theirs.pop("time")
    assert list(ours.items()) == list(theirs.items())
    assert len(ours_time) == len(theirs_time) and ours_time.endswith("+00:00")


def test_no_line_below_the_loggers_level(
    pipe: tuple[int, accesslog.Sink], at_level: logging.Logger
) -> None:
    read, sink = pipe
    at_level.setLevel(logging.WARNING)
    _admit()
    assert not sink.buffer
    os.set_blocking(read, False)
    with pytest.raises(BlockingIOError):
        os.read(read, 1)


def test_timestamps_match_datetime_to_the_millisecond() -> None:
    clock = accesslog._Clock()
    rng = random.Random(17)
    for i in range(20_000):
        now = 1.7e9 + rng.random() * 1e8
        if i % 3 == 0:
            now = int(now) + 0.9999996  # rounds up into the next second
        expected = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        assert clock.stamp(now) == expected


async def test_inside_the_loop_lines_go_out_together_at_the_end_of_the_iteration(
    pipe: tuple[int, accesslog.Sink], at_level: logging.Logger
) -> None:
    read, sink = pipe
    at_level.setLevel(logging.INFO)
    for _ in range(3):
        _admit()
    assert sink.buffer.count(b"\n") == 3 and sink.scheduled
    await asyncio.sleep(0)
    assert not sink.buffer
    assert os.read(read, 65536).count(b"\n") == 3
