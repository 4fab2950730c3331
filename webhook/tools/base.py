"""What schemagate knows of a migration tool, as plain data and pure functions.

A `Tool` is everything inject mode needs (the preset) and, for tools whose history the
gate can read, a `Gate`: how versions compare, where the history lives on each engine,
the read-only queries and the parsing of their rows into `Recorded`. Every field is
required, so mypy refuses a tool that leaves a part out. Running the queries is the
version sources' job (webhook/sources); nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from certs.times import utc_text
from webhook.versions import Recorded, version_key

Dialect = Literal["postgresql", "mysql", "sqlite"]
DIALECTS: tuple[Dialect, ...] = ("postgresql", "mysql", "sqlite")
Match = Literal["at-least", "exact"]
Row = tuple[Any, ...]
# ordered: versions compare as dotted numbers; names: a requirement names entries that
# must be present (a list with commas); graph: revisions, the requirement must be a head.
Comparison = Literal["ordered", "names", "graph"]
# Errors quoted from a tool's table are cut here so a denial stays readable.
MAX_QUOTED = 200


def quoted_name(name: str, dialect: Dialect) -> str:
    """An identifier quoted for `dialect`: for mixed case, and for reserved words
    (sqitch's `change` column on MySQL)."""
    quote = "`" if dialect == "mysql" else '"'
    return quote + name.replace(quote, quote * 2) + quote


@dataclass(frozen=True)
class Location:
    """The tool's table, and the schema it lives in (None: the connection's default)."""

    schema: str | None
    table: str

    def sql(self, dialect: Dialect) -> str:
        names = (self.schema, self.table) if self.schema else (self.table,)
        return ".".join(quoted_name(name, dialect) for name in names)

    def beside(self, table: str) -> Location:
        """Another table of the tool, in the same schema."""
        return Location(self.schema, table)


@dataclass(frozen=True, kw_only=True)
class Docs:
    """The tool's row in the table of gate mode in docs/contract.md (tested against it)."""

    table: str
    recorded: str
    refused: str


@dataclass(frozen=True, kw_only=True)
class History:
    # Where the history lives by default on each engine (schema, table, name case).
    location: Callable[[Dialect], Location]
    # The read-only queries: the first reads the history (its table missing means no
    # migrations recorded); the others read side tables (locks), missing meaning empty.
    queries: Callable[[Location, Dialect], tuple[str, ...]]


@dataclass(frozen=True, kw_only=True)
class Gate:
    compare: Comparison
    # The matches a requirement may use; the first is the default.
    matches: tuple[Match, ...]
    # None: the database entry in the webhook's config carries the query (`custom`).
    history: History | None
    # The rows of each query, in order, as what the tool recorded.
    parse: Callable[[Sequence[Sequence[Row]]], Recorded]
    # How a denial names what is required and what is recorded: "tag or changeset",
    # "tag" (liquibase); empty for a plain version.
    wanted: str
    current: str
    docs: Docs
    # What a denial for an unmet requirement adds when the tool's record can hide what
    # the tool itself reports (Alembic's effective heads); empty for most tools.
    unmet_note: str = ""


@dataclass(frozen=True, kw_only=True)
class Tool:
    name: str
    # The preset command of inject mode; None: the Deployment must give one.
    command: tuple[str, ...] | None
    # The tool's well-known image, for the docs: inject mode still defaults to the app
    # container's image (the seed pattern: migrations ship inside the app image).
    image: str | None
    # False for tools that run migrations without a lock: several replicas would race.
    locks: bool
    gate: Gate | None


def select(columns: str, where: Location, dialect: Dialect, tail: str = "") -> str:
    """One fixed query on a tool's table."""
    # Only identifiers are interpolated: fixed column lists, and schema/table names that
    # the config restricts to letters, digits, _ and $ and that are quoted here besides.
    return f"SELECT {columns} FROM {where.sql(dialect)} {tail}".strip()  # noqa: S608


def flag(value: Any) -> bool:
    """A boolean column as any engine returns it: bool, 0/1, b'\\x01' (BIT(1)) or text."""
    if isinstance(value, bytes | bytearray):
        return int.from_bytes(value, "big") != 0
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true", "y", "yes")
    return bool(value)


def moment(value: Any) -> datetime | None:
    """A timestamp column as datetime; text (SQLite) is parsed. A value without a zone
    stays naive: where the tool wrote local time, the zone is not known."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace(" ", "T", 1).replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        # Go and SQLite write up to nanoseconds; Python parses at most microseconds.
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def iso(value: datetime | None) -> str:
    """A time for a message: UTC with `Z` when the zone is known, else as recorded
    and saying that no zone was recorded (never claim a zone we do not know)."""
    if value is None:
        return "an unrecorded time"
    if value.tzinfo is None:
        return value.strftime("%Y-%m-%dT%H:%M:%S") + ", time zone not recorded"
    return utc_text(value)


def utc(value: datetime | None) -> datetime | None:
    """For tools whose times are UTC though stored without a zone."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def quoted(error: Any) -> str:
    return " ".join(str(error).split())[:MAX_QUOTED]


def one_table(table: str, columns: str = "version", tail: str = "") -> History:
    """A history that is one table of the same name on every engine, in the connection's
    default schema, read by one query of `columns` (then `tail`, e.g. an ORDER BY)."""

    def queries(where: Location, dialect: Dialect) -> tuple[str, ...]:
        return (select(columns, where, dialect, tail),)

    return History(location=lambda dialect: Location(None, table), queries=queries)


def rows_of(
    parse: Callable[[Sequence[Row]], Recorded],
) -> Callable[[Sequence[Sequence[Row]]], Recorded]:
    """The `Gate.parse` of a tool with one query: `parse` over that query's rows."""
    return lambda results: parse(results[0])


def highest_version(results: Sequence[Sequence[Row]]) -> Recorded:
    """The rows of a `one_table` of versions: the highest version is current."""
    versions = [str(row[0]) for row in results[0] if row[0] is not None]
    return Recorded(True, max(versions, key=version_key, default=None))


def without_extension(name: str) -> str:
    """A migration file's name as users also write it: `2026_orders.js` → `2026_orders`."""
    stem, dot, _ = name.rpartition(".")
    return stem if dot else name
