"""The admission line written past logging is the line logging would have written."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

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


async def test_inside_the_loop_lines_go_out_together_within_the_flush_interval(
    pipe: tuple[int, accesslog.Sink], at_level: logging.Logger
) -> None:
    read, sink = pipe
    at_level.setLevel(logging.INFO)
    for _ in range(3):
        _admit()
    assert sink.buffer.count(b"\n") == 3 and sink.timer is not None
    await asyncio.sleep(0)  # not at the end of the iteration: one write for many
    assert sink.buffer.count(b"\n") == 3
    await asyncio.sleep(accesslog.FLUSH_SECONDS + 0.05)
    assert not sink.buffer and sink.timer is None
    assert os.read(read, 65536).count(b"\n") == 3


async def test_a_full_buffer_is_written_at_once(tmp_path: Path, at_level: logging.Logger) -> None:
    at_level.setLevel(logging.INFO)
    path = tmp_path / "log"
    with path.open("w") as stream:  # a file: a pipe holds less than FLUSH_BYTES
        sink = accesslog.Sink(stream)
        saved, accesslog._sink = accesslog._sink, sink
        try:
            _admit()
            lines = accesslog.FLUSH_BYTES // len(sink.buffer) + 1
            for _ in range(lines - 1):
                _admit()
            # The write that reached FLUSH_BYTES took everything with it, and the timer.
            assert not sink.buffer and sink.timer is None
            assert path.read_bytes().count(b"\n") == lines
        finally:
            accesslog._sink = saved
