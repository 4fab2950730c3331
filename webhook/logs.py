"""One JSON object per log line, so cluster log pipelines can index every field."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from webhook import accesslog

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes after the admission lines `webhook.accesslog` holds, so lines stay in order."""

    def emit(self, record: logging.LogRecord) -> None:
        accesslog.flush()
        super().emit(record)


def configure(level: str = "info") -> None:
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would add a second line per admission; ours carries more.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # The line per admission goes to the same stream, past the logging machinery.
    accesslog.install(sys.stderr)
