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

from webhook.tools.base import Docs, Gate, Row, Tool, moment, one_table, rows_of, utc
from webhook.versions import Recorded


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
        history=one_table("django_migrations", "app, name, applied", "ORDER BY id"),
        parse=rows_of(django_history),
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
