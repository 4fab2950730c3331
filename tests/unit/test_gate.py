"""Gate decisions over data: every tool, every recorded state, every refusal."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import orjson
import pytest

from tests.factories import deployment, review, workload
from tests.support import wording
from webhook import decide
from webhook.config import Config, DatabaseConfig
from webhook.gate import Found, GateCheck, Unreachable, needs_check
from webhook.review import AdmissionResponse, parse_review
from webhook.versions import Recorded, is_version, version_key

AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _db(tool: str, namespaces: tuple[str, ...] = ("shop",)) -> DatabaseConfig:
    return DatabaseConfig("orders", "url", "postgresql://h/orders", tool, frozenset(namespaces))


def _config(tool: str = "flyway", policy: str = "closed") -> Config:
    return Config(databases={"orders": _db(tool)}, on_unreachable=policy)  # type: ignore[arg-type]


def _gated(
    version: str, match: str | None = None, database: str = "orders", namespace: str = "shop"
) -> dict[str, object]:
    annotations = {"schemagate.dev/database": database, "schemagate.dev/schema-version": version}
    if match:
        annotations["schemagate.dev/version-match"] = match
    return deployment("api", namespace, mode="gate", annotations=annotations)


def _plan(
    obj: dict[str, object], config: Config, **kw: object
) -> AdmissionResponse | decide.PendingGate:
    request = parse_review(orjson.dumps(review(obj, **kw)))  # type: ignore[arg-type]
    return decide.admit(request, config, decide.mode(request))


def _answer(
    tool: str,
    version: str,
    found: Found,
    match: str | None = None,
    policy: str = "closed",
) -> AdmissionResponse:
    config = _config(tool, policy)
    pending = _plan(_gated(version, match), config)
    assert isinstance(pending, decide.PendingGate), pending
    return decide.finish_gate(pending, found, config)


FLYWAY_41 = Recorded(True, latest="41", applied_at=AT)


@pytest.mark.parametrize(
    ("tool", "required", "match", "found", "ok"),
    [
        ("flyway", "41", None, FLYWAY_41, True),
        ("flyway", "40", None, FLYWAY_41, True),
        ("flyway", "42", None, FLYWAY_41, False),
        ("flyway", "40", "exact", FLYWAY_41, False),
        ("flyway", "41.0", "exact", FLYWAY_41, True),
        ("flyway", "1.9", None, Recorded(True, latest="1.10"), True),
        ("flyway", "1.10", None, Recorded(True, latest="1.9"), False),
        ("golang-migrate", "20240101120000", None, Recorded(True, latest="20240102000000"), True),
        ("atlas", "3", None, Recorded(True, latest="2"), False),
        (
            "liquibase",
            "v42",
            None,
            Recorded(True, latest="v41", present=frozenset({"v41", "7"})),
            False,
        ),
        (
            "liquibase",
            "7",
            None,
            Recorded(True, latest="v41", present=frozenset({"v41", "7"})),
            True,
        ),
        (
            "liquibase",
            "v41",
            "exact",
            Recorded(True, latest="v41", present=frozenset({"v41"})),
            True,
        ),
        (
            "liquibase",
            "v40",
            "exact",
            Recorded(True, latest="v41", present=frozenset({"v40", "v41"})),
            False,
        ),
        ("alembic", "ae10", None, Recorded(True, latest="ae10", heads=("ae10",)), True),
        ("alembic", "ae10", "exact", Recorded(True, latest="b2", heads=("b2",)), False),
        ("flyway", "1", None, Recorded(True), False),
    ],
)
def test_satisfaction(
    tool: str, required: str, match: str | None, found: Recorded, ok: bool
) -> None:
    assert _answer(tool, required, found, match).allowed is ok


@pytest.mark.parametrize(
    ("tool", "found", "message"),
    [
        (
            "flyway",
            FLYWAY_41,
            wording.behind(
                "shop/api",
                "schema orders >= 42 (flyway)",
                "orders",
                "41 (applied 2026-11-20T10:00:00Z)",
            ),
        ),
        (
            "flyway",
            Recorded(False),
            wording.no_migrations("shop/api", "schema orders >= 42 (flyway)", "orders"),
        ),
        (
            "golang-migrate",
            Recorded(True, latest="42", problems=("dirty at 42",)),
            wording.history_problem(
                "shop/api", "schema orders >= 42 (golang-migrate)", "orders", "dirty at 42"
            ),
        ),
        (
            "liquibase",
            Recorded(True, latest="v1", present=frozenset({"v1"})),
            wording.behind(
                "shop/api", "tag or changeset 42 in orders (liquibase)", "orders", "tag v1"
            ),
        ),
        (
            "flyway",
            Unreachable("connection refused"),
            wording.unreachable_closed(
                "shop/api", "schema orders >= 42 (flyway)", "orders", "connection refused"
            ),
        ),
    ],
)
def test_denial_messages(tool: str, found: Found, message: str) -> None:
    answer = _answer(tool, "42", found)
    assert not answer.allowed
    assert answer.message == message


def test_alembic_branch_heads_are_heads_as_alembic_current_lists_them() -> None:
    # Branches joined by depends_on leave one row per branch head; `alembic current`
    # lists each as a head, so each can be required, and all of them together.
    found = Recorded(True, heads=("a2", "b1"), present=frozenset({"a2", "b1"}))
    assert _answer("alembic", "a2", found).allowed
    assert _answer("alembic", "b1,a2", found).allowed
    answer = _answer("alembic", "a3", found)
    assert answer.message == wording.behind(
        "shop/api",
        "schema orders == a3 (alembic)",
        "orders",
        "heads a2, b1",
        note=wording.ALEMBIC_HEADS_ONLY,
    )


def test_a_held_lock_says_a_migration_is_running() -> None:
    found = Recorded(
        True,
        latest="v41",
        present=frozenset({"v41", "v42"}),
        running=(
            "the liquibase lock is held by runner-7f9c (10.0.3.12) since 2026-11-20T10:05:00Z",
        ),
    )
    answer = _answer("liquibase", "v42", found)
    assert answer.message == wording.migration_running(
        "shop/api",
        "tag or changeset v42 in orders (liquibase)",
        "orders",
        "the liquibase lock is held by runner-7f9c (10.0.3.12) since 2026-11-20T10:05:00Z",
    )


def test_a_tool_annotation_must_name_the_databases_tool() -> None:
    obj = _gated("42")
    obj["metadata"]["annotations"]["schemagate.dev/tool"] = "flyway"  # type: ignore[index]
    answer = _plan(obj, _config("liquibase"))
    assert isinstance(answer, AdmissionResponse)
    assert (answer.allowed, answer.code, answer.message) == (
        False,
        422,
        "shop/api: annotation schemagate.dev/tool: 'flyway' does not match database 'orders', "
        "which the webhook reads as liquibase; fix the annotation or remove it",
    )
    obj["metadata"]["annotations"]["schemagate.dev/tool"] = "liquibase"  # type: ignore[index]
    assert isinstance(_plan(obj, _config("liquibase")), decide.PendingGate)


def test_unreachable_open_allows_with_a_warning() -> None:
    answer = _answer("flyway", "42", Unreachable("timed out"), policy="open")
    assert answer.allowed
    assert answer.warnings == (
        wording.unreachable_open("shop/api", "schema orders >= 42 (flyway)", "orders", "timed out"),
    )


@pytest.mark.parametrize(
    ("obj", "tool", "message"),
    [
        (
            _gated("42", database="billing"),
            "flyway",
            "shop/api: annotation schemagate.dev/database: unknown database 'billing'; namespace "
            "'shop' may use: orders",
        ),
        (
            _gated("42", namespace="tenant"),
            "flyway",
            "tenant/api: namespace 'tenant' may not gate on database 'orders'; ask the webhook's "
            "operators to add it to the database's namespaces",
        ),
        (
            _gated("v42"),
            "flyway",
            "shop/api: annotation schemagate.dev/schema-version: 'v42' is not a flyway version; "
            "expected dotted numbers such as 42 or 1.10",
        ),
        (
            _gated("ae10", "at-least"),
            "alembic",
            "shop/api: annotation schemagate.dev/version-match: alembic revisions are not ordered, "
            "so only exact is possible (each revision required must be a head)",
        ),
        (
            _gated(",,"),
            "django",
            "shop/api: annotation schemagate.dev/schema-version: ',,' names nothing; expected "
            "one name, or several separated by commas",
        ),
        (
            _gated("shop.0001_initial", "exact"),
            "django",
            "shop/api: annotation schemagate.dev/version-match: django records no single "
            "version, so only at-least is possible (every name required must be applied)",
        ),
        (
            deployment(mode="gate"),
            "flyway",
            "shop/api: annotation schemagate.dev/database: required (the name of a database in the "
            "webhook config)",
        ),
    ],
)
def test_refusals_need_no_lookup(obj: dict[str, object], tool: str, message: str) -> None:
    answer = _plan(obj, _config(tool))
    assert isinstance(answer, AdmissionResponse)
    assert (answer.allowed, answer.code, answer.message) == (False, 422, message)


def test_updates_are_checked_only_when_template_or_requirement_changes() -> None:
    old = _gated("42")
    scaled = _gated("42")
    scaled["spec"]["replicas"] = 5  # type: ignore[index]
    relabelled = _gated("42")
    relabelled["metadata"]["labels"]["team"] = "x"  # type: ignore[index]
    bumped = _gated("43")
    new_image = _gated("42")
    new_image["spec"]["template"]["spec"]["containers"][0]["image"] = "api:2"  # type: ignore[index]

    def check(new: dict[str, object]) -> bool:
        request = parse_review(orjson.dumps(review(new, operation="UPDATE", old=old)))
        return needs_check(request, new, workload("Deployment"))

    assert (check(scaled), check(relabelled), check(bumped), check(new_image)) == (
        False,
        False,
        True,
        True,
    )
    # A scale-up is allowed even though the database is far behind: no lookup at all.
    answer = _plan(scaled, _config(), operation="UPDATE", old=old)
    assert isinstance(answer, AdmissionResponse) and answer.allowed


def test_gate_check_carries_the_default_match() -> None:
    pending = _plan(_gated("42"), _config("liquibase"))
    assert isinstance(pending, decide.PendingGate)
    assert pending.check == GateCheck("shop/api", _db("liquibase"), "42", "at-least")


def test_switching_to_gate_removes_the_injected_container_once_admitted() -> None:
    gated = _gated("41")
    pod = gated["spec"]["template"]["spec"]  # type: ignore[index]
    pod["initContainers"] = [{"name": "schemagate-migrate", "image": "i", "command": ["x"]}]
    pending = _plan(gated, _config())
    assert isinstance(pending, decide.PendingGate)
    denial = decide.finish_gate(pending, Recorded(True, latest="40"), _config())
    assert (denial.allowed, denial.patch) == (False, None)
    answer = decide.finish_gate(pending, FLYWAY_41, _config())
    assert answer.allowed
    assert answer.patch == [
        {
            "op": "test",
            "path": "/spec/template/spec/initContainers/0/name",
            "value": "schemagate-migrate",
        },
        {"op": "remove", "path": "/spec/template/spec/initContainers/0"},
    ]
    assert answer.warnings == (wording.removed("Deployment"),)


def test_unknown_database_lists_only_what_the_namespace_may_use() -> None:
    config = Config(
        databases={
            "orders": _db("flyway"),
            "payroll": DatabaseConfig(
                "payroll", "url", "postgresql://h/p", "flyway", frozenset({"hr"})
            ),
            "shared": DatabaseConfig("shared", "url", "postgresql://h/s", "flyway", frozenset("*")),
        }
    )
    shop = _plan(_gated("42", database="billing"), config)
    tenant = _plan(_gated("42", database="billing", namespace="tenant"), config)
    nobody = _plan(_gated("42", database="billing", namespace="tenant"), Config())
    assert [a.message for a in (shop, tenant, nobody)] == [  # type: ignore[union-attr]
        "shop/api: annotation schemagate.dev/database: unknown database 'billing'; namespace "
        "'shop' may use: orders, shared",
        "tenant/api: annotation schemagate.dev/database: unknown database 'billing'; namespace "
        "'tenant' may use: shared",
        "tenant/api: annotation schemagate.dev/database: unknown database 'billing'; namespace "
        "'tenant' may use: none",
    ]


def _injected(obj: dict[str, object]) -> dict[str, object]:
    pod = obj["spec"]["template"]["spec"]  # type: ignore[index]
    pod["initContainers"] = [{"name": "schemagate-migrate", "image": "i", "command": ["x"]}]
    return obj


def test_a_label_flip_from_inject_to_gate_is_a_release() -> None:
    # kubectl label deploy api schemagate.dev/migrate=gate --overwrite: the request's template
    # equals the old one, but schemagate's own patch takes the init container out, so new
    # pods roll out: the gate must be judged.
    annotations = {
        "schemagate.dev/tool": "flyway",
        "schemagate.dev/database": "orders",
        "schemagate.dev/schema-version": "99",
    }
    old = _injected(deployment("api", mode="inject", annotations=annotations))
    new = _injected(deployment("api", mode="gate", annotations=annotations))
    pending = _plan(new, _config(), operation="UPDATE", old=old)
    assert isinstance(pending, decide.PendingGate), pending
    denial = decide.finish_gate(pending, FLYWAY_41, _config())
    assert (denial.allowed, denial.code, denial.message) == (
        False,
        403,
        wording.behind(
            "shop/api",
            "schema orders >= 99 (flyway)",
            "orders",
            "41 (applied 2026-11-20T10:00:00Z)",
        ),
    )


def test_gate_judges_the_template_as_stored_after_the_cleanup() -> None:
    gated = _gated("99")
    old, new = copy.deepcopy(gated), _injected(copy.deepcopy(gated))
    # Only a stray injected container differs: after schemagate removes it, the stored
    # template equals the old one, so no lookup is needed.
    request = parse_review(orjson.dumps(review(new, operation="UPDATE", old=old)))
    stored = copy.deepcopy(gated)
    kind = workload("Deployment")
    assert (needs_check(request, new, kind), needs_check(request, stored, kind)) == (True, False)
    # Entering gate from no label at all, with an unchanged template, is a release too.
    unlabelled = copy.deepcopy(gated)
    del unlabelled["metadata"]["labels"]["schemagate.dev/migrate"]  # type: ignore[index]
    entering = parse_review(orjson.dumps(review(gated, operation="UPDATE", old=unlabelled)))
    assert needs_check(entering, gated, kind)


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            {"schemagate.dev/database": "nonexistent"},
            "shop/api: annotation schemagate.dev/database: unknown database 'nonexistent'; "
            "namespace 'shop' may use: orders",
        ),
        (
            {"schemagate.dev/database": "orders", "schemagate.dev/schema-version": "zzz"},
            "shop/api: annotation schemagate.dev/schema-version: 'zzz' is not a flyway version; "
            "expected dotted numbers such as 42 or 1.10",
        ),
        (
            {"schemagate.dev/schema-version": "zzz"},
            "shop/api: annotation schemagate.dev/schema-version: 'zzz' is not a flyway version; "
            "expected dotted numbers such as 42 or 1.10",
        ),
    ],
)
def test_inject_mode_checks_gate_annotations_too(annotations: dict[str, str], message: str) -> None:
    obj = deployment(
        "api", mode="inject", annotations={"schemagate.dev/tool": "flyway", **annotations}
    )
    answer = _plan(obj, _config())
    assert isinstance(answer, AdmissionResponse)
    assert (answer.allowed, answer.code, answer.message) == (False, 422, message)


@pytest.mark.parametrize("version", ["4\u00b2", "\u0664\u0661", "\uff14\uff11"])
def test_non_ascii_versions_are_refused_not_an_internal_error(version: str) -> None:
    answer = _plan(_gated(version), _config())
    assert isinstance(answer, AdmissionResponse)
    assert (answer.allowed, answer.code, answer.message) == (
        False,
        422,
        f"shop/api: annotation schemagate.dev/schema-version: {version!r} must contain only "
        "ASCII characters",
    )
    # Whatever a database records, comparing never raises and never reads "٤١" as 41.
    assert version_key(version) != version_key("41") and not is_version(version)
