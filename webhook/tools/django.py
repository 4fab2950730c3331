"""Django: `django_migrations (id, app, name, applied)`, present-or-absent `app.name`.

DDL: django/django, django/db/migrations/recorder.py (`MigrationRecorder.Migration`:
app and name CharField(255), applied DateTimeField). There is no single version across
apps, so a requirement names the migrations that must be applied, `app.name[,app.name…]`,
as `manage.py showmigrations` lists them; only `at-least`. `applied` is UTC (Django's
default USE_TZ). Django takes no lock; a failed migration is rolled back where DDL is
transactional and is never recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.tools.base import (
    Dialect,
    Docs,
    Gate,
    History,
    Location,
    Row,
    Tool,
    moment,
    select,
    utc,
)
from webhook.versions import Recorded


def location(dialect: Dialect) -> Location:
    return Location(None, "django_migrations")


def queries(where: Location, dialect: Dialect) -> tuple[str, ...]:
    return (select("app, name, applied", where, dialect, "ORDER BY id"),)


def parse(results: Sequence[Sequence[Row]]) -> Recorded:
    return django_history(results[0])


def django_history(rows: Sequence[Row]) -> Recorded:
    """Every applied `app.name` is present; `latest` is the last one applied."""
    names = [f"{app}.{name}" for app, name, _ in rows]
    latest = names[-1] if names else None
    return Recorded(
        True,
        latest,
        utc(moment(rows[-1][2])) if rows else None,
        present=frozenset(names),
    )


TOOL = Tool(
    name="django",
    command=("python", "manage.py", "migrate", "--no-input"),
    image=None,
    locks=False,
    gate=Gate(
        compare="names",
        matches=("at-least",),
        history=History(location=location, queries=queries),
        parse=parse,
        wanted="migrations",
        current="",
        docs=Docs(
            table="`django_migrations`",
            recorded="every required `app.name` (a list with commas) must be applied; "
            "only `at-least`",
            refused="nothing: Django records only what it applied",
        ),
    ),
)
