"""MySQL and MariaDB through aiomysql (edge: driver), imported only when a database uses it."""

from __future__ import annotations

import asyncio
import math
import ssl
from datetime import UTC, datetime
from typing import Any

import aiomysql

from webhook.sources.engines import SLACK_SECONDS, failure, network_kind
from webhook.sources.errors import Kind, SourceError, TableMissing
from webhook.sources.target import Target
from webhook.tools.base import Dialect, Row

MYSQL_TABLE_MISSING = 1146  # ER_NO_SUCH_TABLE
# TIMESTAMP columns are read in this session's zone, UTC; DATETIME has no zone at all.
MYSQL_TIMESTAMP = 7  # MYSQL_TYPE_TIMESTAMP
MYSQL_ACCESS_DENIED = (1044, 1045)  # ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR
MYSQL_UNKNOWN_DATABASE = 1049  # ER_BAD_DB_ERROR
MYSQL_CANNOT_CONNECT = 2003  # CR_CONN_HOST_ERROR


def _kind(exc: BaseException) -> Kind:
    """Which kind of failure a driver error is, from its code (never its text)."""
    code = exc.args[0] if isinstance(exc, aiomysql.MySQLError) and exc.args else None
    if code in MYSQL_ACCESS_DENIED:
        return "authentication failed"
    if code == MYSQL_UNKNOWN_DATABASE:
        return "not found"
    # aiomysql reports every failure to connect as error 2003, raised from the socket's
    # own error.
    return network_kind(exc.__cause__ if code == MYSQL_CANNOT_CONNECT else exc)


def _failure(target: Target, exc: BaseException) -> SourceError:
    return failure(target, exc, _kind(exc))


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
