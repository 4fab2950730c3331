"""`custom`: an in-house tool, read with the operator's own query (gate only).

The query lives in the database's entry in the webhook's configuration, never in a
Deployment; it is validated at load (one SELECT or WITH statement) and, like every
gate query, runs in a read-only session. It returns rows of (version, state):
`applied` (or NULL) counts the version as applied, `pending` does not, `running` means
a migration is in progress (the gate waits), anything else (`failed`, `dirty`, ...) is a
problem quoted in the denial. Versions are ordered as dotted numbers, like Flyway's.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.tools.base import Docs, Gate, Row, Tool, quoted, rows_of
from webhook.versions import Recorded, version_key


def custom_history(rows: Sequence[Row]) -> Recorded:
    applied: set[str] = set()
    problems: list[str] = []
    running: list[str] = []
    for row in rows:
        if len(row) != 2:
            return Recorded(
                True,
                problems=(f"the custom query returned {len(row)} columns, not (version, state)",),
            )
        version, state = str(row[0]), str(row[1] or "applied").strip()
        if state.lower() == "applied":
            applied.add(version)
        elif state.lower() == "pending":
            continue
        elif state.lower() == "running":
            running.append(f"version {version} is running")
        else:
            problems.append(f"version {version} is {quoted(state)}")
    latest = max(applied, key=version_key, default=None)
    return Recorded(True, latest, problems=tuple(problems), running=tuple(running))


TOOL = Tool(
    name="custom",
    command=None,
    image=None,
    locks=True,
    gate=Gate(
        compare="ordered",
        matches=("at-least", "exact"),
        history=None,
        parse=rows_of(custom_history),
        wanted="",
        current="",
        docs=Docs(
            table="the database entry's `query`",
            recorded="highest version whose state is `applied` (or NULL), as dotted numbers",
            refused="a state other than `applied`, `pending` or `running` (`running`: a "
            "migration is running)",
        ),
    ),
)
