"""Run a tool's read-only queries on an engine and hand the rows to the tool's parser.

What to query and how to read the rows live in the tool's module (webhook/tools); this is
the edge that runs them. A missing history table means no migrations recorded; a missing
side table (a lock table the tool creates lazily) reads as empty.
"""

from __future__ import annotations

from webhook.sources.engines import Engine
from webhook.sources.errors import SourceError, TableMissing
from webhook.tools.base import Gate, Row
from webhook.versions import Recorded


async def read(tool: Gate, engine: Engine, queries: tuple[str, ...]) -> Recorded:
    """What `tool` recorded, from its `queries`. Engine errors propagate as SourceError."""
    history, *sides = queries
    try:
        results: list[list[Row]] = [await engine.query(history)]
    except TableMissing:
        return Recorded(table_present=False)
    for sql in sides:
        try:
            results.append(await engine.query(sql))
        except TableMissing:
            results.append([])
    try:
        return tool.parse(results)
    except (ValueError, TypeError, IndexError) as exc:
        # Rows the tool never writes (a hand-edited table, another tool's table of the
        # same name): the gate cannot read a version, so it is a failed read, not a crash.
        raise SourceError(f"its table holds rows the tool does not write ({exc})"[:300]) from None
