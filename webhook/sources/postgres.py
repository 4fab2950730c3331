"""PostgreSQL through asyncpg (edge: driver), imported only when a database uses it."""

from __future__ import annotations

import math

import asyncpg

from webhook.sources.engines import IDLE_SECONDS, POOL_SIZE, SLACK_SECONDS, failure, network_kind
from webhook.sources.errors import Kind, SourceError, TableMissing
from webhook.sources.target import Target
from webhook.tools.base import Dialect, Row

PG_DROPPED = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.IdleSessionTimeoutError,
    ConnectionResetError,
)


def _kind(exc: BaseException) -> Kind:
    """Which kind of failure a driver error is, from its type (never its text)."""
    if isinstance(
        exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError
    ):
        return "authentication failed"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return "not found"
    return network_kind(exc)


def _failure(target: Target, exc: BaseException) -> SourceError:
    return failure(target, exc, _kind(exc))


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
