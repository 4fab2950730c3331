"""Database engines: run one read-only query and hand back plain rows (edge: drivers).

Connections are opened lazily, so a configured but unused database costs nothing and a
database that is down at start does not stop the webhook. The caller owns the deadline
(the drivers' own timeouts sit beyond it, so the caller's fires first and says so).
After a failure or timeout the caller calls `reset()`, which drops every connection,
so a half-read or cancelled one is never reused and the next lookup reconnects (and
re-reads a rotated password).
"""

from __future__ import annotations

import asyncio
import math
import socket
import sqlite3
import ssl
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

import aiomysql
import aiosqlite
import asyncpg

from webhook.config import ConfigError
from webhook.sources.errors import Kind, SourceError, TableMissing
from webhook.sources.target import Target
from webhook.tools.base import Dialect, Row

# Lookups for one database are single-flighted upstream, so two connections are plenty.
POOL_SIZE = 2
# Drop idle connections well before a typical server or proxy idle cutoff.
IDLE_SECONDS = 60
# Driver and server-side limits exceed the caller's deadline by this much: they only
# clean up after a lookup the caller already abandoned.
SLACK_SECONDS = 1.0
MYSQL_TABLE_MISSING = 1146  # ER_NO_SUCH_TABLE
# TIMESTAMP columns are read in this session's zone, UTC; DATETIME has no zone at all.
MYSQL_TIMESTAMP = 7  # MYSQL_TYPE_TIMESTAMP
MYSQL_ACCESS_DENIED = (1044, 1045)  # ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR
MYSQL_UNKNOWN_DATABASE = 1049  # ER_BAD_DB_ERROR
MYSQL_CANNOT_CONNECT = 2003  # CR_CONN_HOST_ERROR
PG_DROPPED = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.IdleSessionTimeoutError,
    ConnectionResetError,
)


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
        return Postgres(target, timeout)
    if target.engine == "mysql":
        return MySQL(target, timeout)
    if target.engine == "sqlite":
        return SQLite(target, timeout)
    raise ConfigError(
        f"no database engine for dialect {target.engine!r}; known: postgresql, mysql, sqlite"
    )


def _failure(target: Target, exc: BaseException, prefix: str = "") -> SourceError:
    text = prefix + (" ".join(str(exc).split()) or type(exc).__name__)
    return SourceError(target.redact(text)[:300], _kind(exc))


def _kind(exc: BaseException) -> Kind:
    """Which kind of failure a driver error is, from its type or code (never its text,
    which the drivers word differently from release to release)."""
    code = exc.args[0] if isinstance(exc, aiomysql.MySQLError) and exc.args else None
    if isinstance(
        exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError
    ):
        return "authentication failed"
    if code in MYSQL_ACCESS_DENIED:
        return "authentication failed"
    if isinstance(exc, asyncpg.InvalidCatalogNameError) or code == MYSQL_UNKNOWN_DATABASE:
        return "not found"
    if (
        isinstance(exc, sqlite3.OperationalError)
        and exc.sqlite_errorcode == sqlite3.SQLITE_CANTOPEN
    ):
        return "not found"
    if isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
        return "timed out"
    # aiomysql reports every failure to connect as error 2003, raised from the socket's
    # own error.
    cause = exc.__cause__ if code == MYSQL_CANNOT_CONNECT else exc
    if isinstance(cause, socket.gaierror):
        return "not found"
    if isinstance(cause, TimeoutError):
        return "timed out"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    return "failed"


class Postgres:
    dialect: Dialect = "postgresql"

    def __init__(self, target: Target, timeout: float) -> None:
        self._target = target
        self._timeout = timeout + SLACK_SECONDS
        self._pool: asyncpg.Pool | None = None
        millis = str(math.ceil(self._timeout * 1000))
        # The server gives up on its own too, so a blocked lookup the client abandoned
        # does not linger on the server; read-only because gate mode never writes.
        self._settings = {
            "application_name": "schemagate",
            "statement_timeout": millis,
            "lock_timeout": millis,
            "default_transaction_read_only": "on",
            "TimeZone": "UTC",
        }

    async def query(self, sql: str) -> list[Row]:
        try:
            try:
                records = await self._fetch(sql)
            except PG_DROPPED:
                # A pooled connection the server closed while it sat idle (a restart, a
                # failover) only shows up when used: start over once on fresh ones.
                self.reset()
                records = await self._fetch(sql)
        except asyncpg.UndefinedTableError:
            raise TableMissing from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, ValueError) as exc:
            raise _failure(self._target, exc) from None
        return [tuple(record) for record in records]

    async def _fetch(self, sql: str) -> list[asyncpg.Record]:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._target.url,
                min_size=0,
                max_size=POOL_SIZE,
                timeout=self._timeout,
                max_inactive_connection_lifetime=IDLE_SECONDS,
                server_settings=self._settings,
            )
        async with self._pool.acquire() as conn:
            records: list[asyncpg.Record] = await conn.fetch(sql)
            return records

    def reset(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()


class MySQL:
    """MySQL and MariaDB, through aiomysql, on one kept-open connection.

    One is enough: lookups for a database are single-flighted upstream, and the lock
    keeps any other caller from interleaving on it. A ping before each query reconnects
    when the server dropped the connection (a restart, an idle cutoff).
    """

    dialect: Dialect = "mysql"

    def __init__(self, target: Target, timeout: float) -> None:
        self._target = target
        self._timeout = timeout + SLACK_SECONDS
        self._conn: aiomysql.Connection | None = None
        self._lock = asyncio.Lock()
        # lock_wait_timeout bounds waits on table locks (whole seconds); MariaDB alone
        # understands the /*M! */ comment and also caps the statement itself.
        self._init = (
            "SET SESSION time_zone = '+00:00', "
            f"SESSION lock_wait_timeout = {math.ceil(self._timeout)} "
            f"/*M!100108 , SESSION max_statement_time = {self._timeout:.3f} */"
        )

    def _connect_args(self) -> dict[str, Any]:
        target, options = self._target, self._target.options
        args: dict[str, Any] = {
            "host": target.host or "localhost",
            "port": target.port or 3306,
            "user": target.user or "",
            "password": target.password or "",
            "db": target.database,
            "connect_timeout": self._timeout,
            "autocommit": True,
            "init_command": self._init,
        }
        if "unix_socket" in options:
            args["unix_socket"] = options["unix_socket"]
        if options.get("ssl", "").lower() in ("1", "true", "required") or "ssl-ca" in options:
            args["ssl"] = ssl.create_default_context(cafile=options.get("ssl-ca"))
        return args

    async def query(self, sql: str) -> list[Row]:
        async with self._lock:
            try:
                if self._conn is None:
                    self._conn = await aiomysql.connect(**self._connect_args())
                else:
                    await self._conn.ping(reconnect=True)
                async with self._conn.cursor() as cursor:
                    # Gate mode never writes; a read-only transaction makes the server
                    # refuse it too (an operator's `custom` query included).
                    # After a failure the transaction is left to the next START (which
                    # ends it) or to reset(): nothing waits on the server while cancelled.
                    await cursor.execute("START TRANSACTION READ ONLY")
                    await cursor.execute(sql)
                    rows = await cursor.fetchall()
                    utc = [d[1] == MYSQL_TIMESTAMP for d in cursor.description or ()]
                    await cursor.execute("ROLLBACK")
            except aiomysql.ProgrammingError as exc:
                if exc.args and exc.args[0] == MYSQL_TABLE_MISSING:
                    raise TableMissing from None
                raise _failure(self._target, exc) from None
            except (aiomysql.MySQLError, OSError) as exc:
                raise _failure(self._target, exc) from None
        return [
            tuple(_in_utc(v) if z else v for v, z in zip(row, utc, strict=True)) for row in rows
        ]

    def reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _in_utc(value: Any) -> Any:
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) else value


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
