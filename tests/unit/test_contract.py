"""Annotation parsing: every mistake is refused with the annotation and the allowed values."""

from __future__ import annotations

import pytest

from webhook.contract import InjectSpec, Invalid, mode_of, parse_gate, parse_inject

T = "schemagate.dev/tool"
C = "schemagate.dev/command"


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            {},
            "annotation schemagate.dev/tool: required; one of flyway, liquibase, alembic, "
            "golang-migrate, atlas, command",
        ),
        (
            {T: "rails"},
            "annotation schemagate.dev/tool: 'rails' is not one of flyway, liquibase, "
            "alembic, golang-migrate, atlas, command",
        ),
        (
            {T: "command"},
            "annotation schemagate.dev/command: required when schemagate.dev/tool is "
            'command (a JSON list of strings, e.g. ["./migrate", "up"])',
        ),
        (
            {T: "command", C: "./migrate up"},
            "annotation schemagate.dev/command: './migrate up' is not valid JSON; must be a JSON "
            'list of strings, e.g. ["flyway", "migrate"]',
        ),
        (
            {T: "command", C: '{"a": 1}'},
            "annotation schemagate.dev/command: '{\"a\": 1}' must be a JSON list of strings, "
            'e.g. ["flyway", "migrate"]',
        ),
        (
            {T: "command", C: "[]"},
            "annotation schemagate.dev/command: '[]' must be a JSON list "
            'of strings, e.g. ["flyway", "migrate"]',
        ),
        (
            {T: "command", C: '["a", 1]'},
            "annotation schemagate.dev/command: '[\"a\", 1]' must be "
            'a JSON list of strings, e.g. ["flyway", "migrate"]',
        ),
        (
            {T: "command", C: "[" * 100_000},
            "annotation schemagate.dev/command: 100000 characters exceeds 16384",
        ),
        (
            {T: "flyway", "schemagate.dev/image": ""},
            "annotation schemagate.dev/image: must not be empty; omit it to use the app "
            "container's image",
        ),
        (
            {T: "flyway", "schemagate.dev/image": "a b"},
            "annotation schemagate.dev/image: 'a b' must not contain spaces or control characters",
        ),
        (
            {T: "flyway", "schemagate.dev/imgae": "x"},
            "annotation 'schemagate.dev/imgae' is not a schemagate annotation; known: "
            "schemagate.dev/tool, schemagate.dev/container, schemagate.dev/image, "
            "schemagate.dev/command, schemagate.dev/database, schemagate.dev/schema-version, "
            "schemagate.dev/version-match, schemagate.dev/run, schemagate.dev/retry",
        ),
        (
            {T: "flyway", "schemagate.dev/run": "twice"},
            "annotation schemagate.dev/run: 'twice' is not one of every-pod, once",
        ),
        (
            {T: "flyway", "schemagate.dev/retry": "a b"},
            "annotation schemagate.dev/retry: 'a b' must not contain spaces or control characters",
        ),
    ],
)
def test_bad_inject_annotations(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_inject(annotations)
    assert str(caught.value) == message


def test_inject_spec_with_everything() -> None:
    spec = parse_inject(
        {
            T: "command",
            C: '["./migrate", "--dry-run=false", "$(X); rm -rf /"]',
            "schemagate.dev/container": "api",
            "schemagate.dev/image": " img:1 ",
        }
    )
    # Shell metacharacters are plain argv strings: nothing runs them through a shell.
    assert spec == InjectSpec(
        "command", "api", "img:1", ("./migrate", "--dry-run=false", "$(X); rm -rf /")
    )


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            {},
            "annotation schemagate.dev/database: required (the name of a database in the "
            "webhook config)",
        ),
        (
            {"schemagate.dev/database": "orders"},
            "annotation schemagate.dev/schema-version: required (the schema version this release "
            "needs)",
        ),
        (
            {
                "schemagate.dev/database": "orders",
                "schemagate.dev/schema-version": "4",
                "schemagate.dev/version-match": "newest",
            },
            "annotation schemagate.dev/version-match: 'newest' is not one of at-least, exact",
        ),
    ],
)
def test_bad_gate_annotations(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_gate(annotations)
    assert str(caught.value) == message


def test_label_values() -> None:
    assert mode_of({"metadata": {"labels": {"schemagate.dev/migrate": "gate"}}}) == "gate"
    assert mode_of({"metadata": {"labels": {}}}) is None
    with pytest.raises(
        Invalid, match=r"label schemagate.dev/migrate: 'yes' is not one of inject, gate"
    ):
        mode_of({"metadata": {"labels": {"schemagate.dev/migrate": "yes"}}})
