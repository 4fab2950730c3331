"""One configured database as a version source with a hard deadline per lookup."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from webhook.config import ConfigError, DatabaseConfig
from webhook.sources.engines import Engine, open_engine
from webhook.sources.errors import SourceError
from webhook.sources.target import resolve
from webhook.sources.tools import read
from webhook.tools import gate_of
from webhook.tools.base import Dialect, Location
from webhook.versions import Recorded


class VersionSource(Protocol):
    name: str

    def start(self) -> None:
        """Check the database is configured usably (URL present); ConfigError names the key."""
        ...

    async def lookup(self) -> Recorded:
        """What the tool recorded, within the deadline; SourceError otherwise."""
        ...

    def close(self) -> None:
        """Drop open connections."""
        ...


def open_source(db: DatabaseConfig, timeout: float) -> VersionSource:
    return DatabaseSource(db, timeout)


def queries_for(db: DatabaseConfig, dialect: Dialect) -> tuple[str, ...]:
    """The configured query (`custom`), or the tool's own at its (configured) location."""
    history = gate_of(db.tool).history
    if history is None:
        if db.query is None:
            raise ConfigError(f"databases.{db.name}.query: required for tool {db.tool}")
        return (db.query,)
    default = history.location(dialect)
    where = Location(db.schema or default.schema, db.table or default.table)
    return history.queries(where, dialect)


class DatabaseSource:
    def __init__(
        self, db: DatabaseConfig, timeout: float, environ: Mapping[str, str] = os.environ
    ) -> None:
        self.name = db.name
        self._db = db
        self._timeout = timeout
        self._environ = environ
        self._engine: Engine | None = None
        self._queries: tuple[str, ...] = ()

    def start(self) -> None:
        target = resolve(self._db, self._environ)
        if target.path is not None and not Path(target.path).is_file():
            # Opened read-only, the file is never created: a typo would deny every gate.
            # (Later, a file that went away is a failed lookup, not a stopped server.)
            raise ConfigError(
                f"databases.{self.name}.{self._db.url_kind}: SQLite file {target.path} does not "
                "exist (the webhook opens it read-only and never creates it)"
            )
        self._connect()

    def _connect(self) -> Engine:
        # Resolved again after every reset, so a rotated Secret or env value is picked up.
        if self._engine is None:
            target = resolve(self._db, self._environ)
            self._queries = queries_for(self._db, target.engine)
            self._engine = open_engine(target, self._timeout)
        return self._engine

    async def lookup(self) -> Recorded:
        try:
            engine = self._connect()
        except ConfigError as exc:
            raise SourceError(str(exc), "misconfigured") from None
        try:
            async with asyncio.timeout(self._timeout):
                return await read(gate_of(self._db.tool), engine, self._queries)
        except TimeoutError:
            self.close()
            reason = f"no answer within the {self._timeout:g} s lookup deadline"
            raise SourceError(reason, "timed out") from None
        except SourceError:
            self.close()
            raise

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.reset()
