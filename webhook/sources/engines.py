"""Database engines: run one read-only query and hand back plain rows (edge: drivers).

Connections are opened lazily, so a configured but unused database costs nothing and a
database that is down at start does not stop the webhook. The caller owns the deadline
(the drivers' own timeouts sit beyond it, so the caller's fires first and says so).
After a failure or timeout the caller calls `reset()`, which drops every connection,
so a half-read or cancelled one is never reused and the next lookup reconnects (and
re-reads a rotated password).

Each engine lives in a module of its own (`postgres`, `mysql`, `sqlite`), imported only
when a configured database uses it: a driver costs memory and start-up time, and a
webhook usually reads one kind of database.
"""

from __future__ import annotations

import socket
from typing import Protocol

from webhook.config import ConfigError
from webhook.sources.errors import Kind, SourceError
from webhook.sources.target import Target
from webhook.tools.base import Dialect, Row

# Lookups for one database are single-flighted upstream, so two connections are plenty.
POOL_SIZE = 2
# Drop idle connections well before a typical server or proxy idle cutoff.
IDLE_SECONDS = 60
# Driver and server-side limits exceed the caller's deadline by this much: they only
# clean up after a lookup the caller already abandoned.
SLACK_SECONDS = 1.0


class Engine(Protocol):
    dialect: Dialect

    async def query(self, sql: str) -> list[Row]:
        """Rows of `sql`; TableMissing if the table is absent; SourceError otherwise."""
        ...

    def reset(self) -> None:
        """Forget every pooled connection at once, without waiting on the server."""
        ...


def open_engine(target: Target, timeout: float) -> Engine:
    """The engine for the target's dialect. A dialect without one is a configuration error,
    never a fallback to another engine."""
    if target.engine == "postgresql":
        from webhook.sources.postgres import Postgres

        return Postgres(target, timeout)
    if target.engine == "mysql":
        from webhook.sources.mysql import MySQL

        return MySQL(target, timeout)
    if target.engine == "sqlite":
        from webhook.sources.sqlite import SQLite

        return SQLite(target, timeout)
    raise ConfigError(
        f"no database engine for dialect {target.engine!r}; known: postgresql, mysql, sqlite"
    )


def failure(target: Target, exc: BaseException, kind: Kind, prefix: str = "") -> SourceError:
    text = prefix + (" ".join(str(exc).split()) or type(exc).__name__)
    return SourceError(target.redact(text)[:300], kind)


def network_kind(cause: BaseException | None) -> Kind:
    """Which kind of failure a socket-level error is (never from its text, which the
    drivers word differently from release to release)."""
    if isinstance(cause, socket.gaierror):
        return "not found"
    if isinstance(cause, TimeoutError):
        return "timed out"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    return "failed"
