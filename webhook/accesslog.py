"""The one JSON line per admission, written without the logging machinery.

Every admission logs one line: uid, object, operation, mode, decision, dry_run and
duration_ms, after the time, level, logger and msg every line of `webhook.logs` has. Through
`logging` (a LogRecord, the handler's lock, the formatter's walk over the record, a
datetime, a flush per line) that line cost a sixth of an admission; here it is one
`orjson.dumps` into a buffer that goes out in one write at most `FLUSH_SECONDS` after its
first line, or at once when `FLUSH_BYTES` are waiting. Under load, hundreds of admissions
share a system call, which cost as much as the rest of the line when it was one per
event-loop iteration; a quiet server's line is out within a tenth of a second. Lines still
in the buffer when the process is killed (SIGKILL, the OOM killer) are lost; on SIGTERM
and every other exit they are written.

`webhook.logs.configure` hands this module its handler's stream; the handler flushes the
buffer before every line of its own, so lines stay in order, and the buffer is also
flushed at exit. The level is the logger's: at `--log-level warning` no line is written.
Until `configure` has run (a test, a library caller), the line goes through `logging` as
it always did, so a caller's own handlers and caplog still see it.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
import os
import select
from datetime import UTC, datetime
from time import time as _now
from typing import TextIO

import orjson

LOGGER = "schemagate.admission"
# What every line of webhook.logs starts with; logging adds these itself.
_HEADER = frozenset(("time", "level", "logger", "msg"))
log = logging.getLogger(LOGGER)


# The longest a line waits in the buffer, and how much may wait before it is written.
FLUSH_SECONDS = 0.1
FLUSH_BYTES = 64 * 1024


class Sink:
    """Lines for one file descriptor, written within `FLUSH_SECONDS` or `FLUSH_BYTES`
    (at once outside a running loop)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.fd = stream.fileno()
        self.buffer = bytearray()
        self.timer: asyncio.TimerHandle | None = None

    def write(self, line: bytes) -> None:
        self.buffer += line
        if len(self.buffer) >= FLUSH_BYTES:
            self.flush()
        elif self.timer is None:
            try:
                self.timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
            except RuntimeError:
                self.flush()

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.buffer:
            return
        data, self.buffer = self.buffer, bytearray()
        view = memoryview(data)
        try:
            self.stream.flush()  # anything written to the stream first goes out first
            while view:
                try:
                    view = view[os.write(self.fd, view) :]
                except BlockingIOError:  # a non-blocking pipe that is full: wait for room
                    select.select([], [self.fd], [])
        except (OSError, ValueError):
            # The stream is gone (a closed pipe, a closed file): as logging does with
            # raiseExceptions off, the line is dropped rather than the admission failed.
            pass


class _Clock:
    """`datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")`, with the
    date and time of day formatted once per second."""

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def stamp(self, now: float) -> str:
        # As datetime.fromtimestamp rounds: to the microsecond, half to even.
        fraction, whole = math.modf(now)
        micros = round(fraction * 1e6)
        if micros >= 1_000_000:
            whole, micros = whole + 1, micros - 1_000_000
        second = int(whole)
        if second != self.second:
            self.second = second
            self.prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self.prefix}.{micros // 1000:03d}+00:00"


_sink: Sink | None = None
_clock = _Clock()


def install(stream: TextIO) -> Sink | None:
    """Write admission lines to `stream` directly from now on (None if it has no file
    descriptor: then they keep going through logging)."""
    global _sink
    uninstall()
    try:
        _sink = Sink(stream)
    except (AttributeError, OSError, ValueError):
        return None
    atexit.register(_sink.flush)
    return _sink


def uninstall() -> None:
    global _sink
    if _sink is not None:
        _sink.flush()
        atexit.unregister(_sink.flush)
        _sink = None


def flush() -> None:
    if _sink is not None:
        _sink.flush()


def admission(
    uid: str,
    ref: str,
    operation: str,
    mode: str,
    decision: str,
    dry_run: bool,
    duration_ms: float,
) -> None:
    """Log one admission, at info, with the fields of every admission line."""
    sink = _sink
    if sink is not None and not log.isEnabledFor(logging.INFO):
        return
    # One literal on the hot path: merging a dict of the fields into the header costs
    # as much again as dumping the line.
    line = {
        "time": _clock.stamp(_now()),
        "level": "info",
        "logger": LOGGER,
        "msg": "admission",
        "uid": uid,
        "object": ref,
        "operation": operation,
        "mode": mode,
        "decision": decision,
        "dry_run": dry_run,
        "duration_ms": duration_ms,
    }
    if sink is None:
        log.info("admission", extra={k: v for k, v in line.items() if k not in _HEADER})
        return
    sink.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
