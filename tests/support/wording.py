"""What schemagate says when it denies or warns, written once for the tests that quote it.

Each function builds the whole text from its parts, and tests still compare whole
messages with it. The wording is spelled out here rather than imported from webhook/,
so changing what a person reads fails the tests until it is changed here too.

The gate's denials all start `{ref} needs {need}`, where `need` is what the workload
declares, e.g. "schema orders >= 42 (flyway)" or "migration X in orders (knex)".
"""

from __future__ import annotations

RUN_THE_MIGRATIONS = "Run the migrations first, then re-apply."
REPAIR_THE_HISTORY = "Repair the migration history, then re-apply."
WAIT_FOR_THE_MIGRATION = (
    "Retry when it finishes (a lock left behind by a migration that died must be released "
    "with the tool)."
)
FAILS_CLOSED = (
    "The gate fails closed (on_unreachable: closed); retry when the database is reachable."
)
ADMITTED_UNCHECKED = "Admitted unchecked (on_unreachable: open)."
# What an unmet Alembic requirement's denial adds: its record can hide an effective head.
ALEMBIC_HEADS_ONLY = (
    "Alembic records heads only, not the effective heads `alembic current` derives "
    "through depends_on: require the head that depends on such a revision."
)


def behind(ref: str, need: str, database: str, recorded: str, note: str = "") -> str:
    """The gate's denial when the database records something that does not satisfy `need`;
    `note` is the tool's own sentence, where it has one (ALEMBIC_HEADS_ONLY)."""
    return f"{ref} needs {need}; {database} records {recorded}. " + (
        f"{note} {RUN_THE_MIGRATIONS}" if note else RUN_THE_MIGRATIONS
    )


def no_migrations(ref: str, need: str, database: str) -> str:
    """The gate's denial when the tool's table is not there."""
    return f"{ref} needs {need}; no migrations recorded in {database}. {RUN_THE_MIGRATIONS}"


def history_problem(ref: str, need: str, database: str, problems: str) -> str:
    """The gate's denial when the history records a failed or dirty migration."""
    return f"{ref} needs {need}; {database} records a problem: {problems}. {REPAIR_THE_HISTORY}"


def migration_running(ref: str, need: str, database: str, running: str) -> str:
    """The gate's denial while the tool's lock is held or a migration is marked running."""
    return (
        f"{ref} needs {need}; a migration is running on {database}: {running}. "
        f"{WAIT_FOR_THE_MIGRATION}"
    )


def could_not_read(database: str, reason: str) -> str:
    """How a failed read is named to the tenant: the kind of failure, no detail."""
    return f"{database} could not be read: {reason} (details in the webhook log)"


def unreachable_closed(ref: str, need: str, database: str, reason: str) -> str:
    """The gate's denial (503) when the database cannot be read and on_unreachable is closed."""
    return f"{ref} needs {need}, but {could_not_read(database, reason)}. {FAILS_CLOSED}"


def unreachable_open(ref: str, need: str, database: str, reason: str) -> str:
    """The warning on an admission let through unchecked (on_unreachable: open)."""
    return (
        f"schemagate: {ref} needs {need}, but {could_not_read(database, reason)}. "
        f"{ADMITTED_UNCHECKED}"
    )


def removed(kind: str) -> str:
    """The warning when a workload leaves inject mode and its init container is taken out."""
    return f"schemagate removed what it injected: the {kind} is no longer in inject mode"


def internal_error(uid: str) -> str:
    """The 500 answer when handling a review raised."""
    return f"schemagate internal error (uid {uid}); see the webhook log"


def api_server_denied(webhook: str, message: str) -> str:
    """How kubectl shows a webhook's denial (the API server's wording around ours)."""
    return f'admission webhook "{webhook}" denied the request: {message}'
