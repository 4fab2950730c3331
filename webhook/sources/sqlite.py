"""SQLite through aiosqlite (edge: driver), imported only when a database uses it."""

from __future__ import annotations

import sqlite3
from urllib.parse import quote

import aiosqlite

from webhook.sources.engines import failure, network_kind
from webhook.sources.errors import Kind, SourceError, TableMissing
from webhook.sources.target import Target
from webhook.tools.base import Dialect, Row


def _kind(exc: BaseException) -> Kind:
    """Which kind of failure a driver error is, from its code (never its text)."""
    if isinstance(exc, sqlite3.OperationalError):
        if exc.sqlite_errorcode == sqlite3.SQLITE_CANTOPEN:
            return "not found"
        if exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
            return "timed out"
    return network_kind(exc)


def _failure(target: Target, exc: BaseException, prefix: str) -> SourceError:
    return failure(target, exc, _kind(exc), prefix)


class SQLite:
    """A file on a mounted volume, opened read-only so the webhook never creates one.

    A connection per lookup: opening a local file is cheap, and a query stuck behind a
    writer's lock then never holds up the next lookup. SQLite's busy timeout is half the
    deadline, so a locked database answers "database is locked" inside the deadline.
    """

    dialect: Dialect = "sqlite"

    def __init__(self, target: Target, timeout: float) -> None:
        self._target = target
        self._uri = f"file:{quote(target.path or '')}?mode=ro"
        self._busy = timeout / 2

    async def query(self, sql: str) -> list[Row]:
        try:
            async with aiosqlite.connect(self._uri, uri=True, timeout=self._busy) as conn:
                rows = await conn.execute_fetchall(sql)
        except sqlite3.OperationalError as exc:
            if str(exc).startswith("no such table"):
                raise TableMissing from None
            raise _failure(self._target, exc, f"{self._target.path}: ") from None
        except (sqlite3.Error, OSError) as exc:
            raise _failure(self._target, exc, f"{self._target.path}: ") from None
        return [tuple(row) for row in rows]

    def reset(self) -> None:
        """Nothing is pooled."""
