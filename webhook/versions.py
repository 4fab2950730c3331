"""What a migration tool recorded, and how versions compare. Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

_SPLIT = re.compile(r"[._]")


@dataclass(frozen=True)
class Recorded:
    """A snapshot of one database's migration history, read from the tool's own table.

    `table_present` is False when the tool's table does not exist (no migrations yet).
    `latest` is the tool's notion of the current version: the highest applied version
    (ordered tools), the last tag (liquibase), or the single head (alembic).
    `applied_at` is when `latest` was applied, where the tool records it.
    `present` holds every identifier a requirement may name: liquibase tags and
    changeset IDs, alembic heads, or the applied names of a names tool.
    `problems` are unhealthy states the tool recorded (a failed row, a dirty flag, a
    partial revision): any of them denies a gate until someone repairs the history.
    `running` says a migration holds the tool's lock (who, since when): the gate denies
    until it finishes.
    """

    table_present: bool
    latest: str | None = None
    applied_at: datetime | None = None
    present: frozenset[str] = field(default_factory=frozenset)
    heads: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    running: tuple[str, ...] = ()


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key comparing dotted versions numerically: 1.10 > 1.9 and 2 == 2.0.

    Trailing zero components are dropped so `2`, `2.0` and `2.0.0` are equal.
    Non-numeric components sort after numeric ones and compare as text, so odd
    versions still get a total order instead of an exception.
    """
    parts: list[tuple[int, int | str]] = []
    for piece in _SPLIT.split(version.strip()):
        if _digits(piece):
            parts.append((0, int(piece)))
        else:
            parts.append((1, piece))
    while parts and parts[-1] == (0, 0):
        parts.pop()
    return tuple(parts)


def is_version(text: str) -> bool:
    """True for a dotted numeric version such as `42`, `1.10` or `20240101120000`."""
    return bool(text) and all(_digits(p) for p in _SPLIT.split(text))


def _digits(piece: str) -> bool:
    # str.isdigit() is also true for superscript, Arabic-Indic and fullwidth digits, which
    # int() rejects or reads as other numbers; versions are ASCII.
    return piece.isascii() and piece.isdigit()
