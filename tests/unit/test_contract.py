"""Annotation parsing: every mistake is refused with the annotation and the allowed values."""

from __future__ import annotations

import pytest

from webhook.contract import InjectSpec, Invalid, mode_of, parse_annotations
from webhook.tools import INJECT_TOOLS

T = "schemagate.dev/tool"
C = "schemagate.dev/command"
V = "schemagate.dev/schema-version"


def parse_inject(annotations: dict[str, str]) -> InjectSpec:
    return parse_annotations(annotations).inject_spec()


def parse_gate(annotations: dict[str, str]) -> object:
    return parse_annotations(annotations).gate_spec()


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            {},
            f"annotation schemagate.dev/tool: required; one of {', '.join(INJECT_TOOLS)}",
        ),
        (
            {T: "flyaway"},
            f"annotation schemagate.dev/tool: 'flyaway' is not one of {', '.join(INJECT_TOOLS)}",
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


@pytest.mark.parametrize("version", ["4\u00b2", "\u0664\u0661", "\uff14\uff11", "4\u00e9"])
def test_versions_are_ascii(version: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_gate({"schemagate.dev/database": "orders", V: version})
    assert str(caught.value) == (
        f"annotation schemagate.dev/schema-version: {version!r} must contain only ASCII characters"
    )


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        # Gate-mode annotations on an inject-mode Deployment, and the other way round:
        # whatever the mode, each one present is checked.
        (
            {T: "flyway", V: "\u0664\u0661"},
            "annotation schemagate.dev/schema-version: '\u0664\u0661' must contain only ASCII "
            "characters",
        ),
        (
            {T: "flyway", "schemagate.dev/version-match": "newest"},
            "annotation schemagate.dev/version-match: 'newest' is not one of at-least, exact",
        ),
        (
            {"schemagate.dev/database": "orders", V: "4", C: "not json"},
            "annotation schemagate.dev/command: 'not json' is not valid JSON; must be a JSON "
            'list of strings, e.g. ["flyway", "migrate"]',
        ),
        (
            {"schemagate.dev/database": "orders", V: "4", "schemagate.dev/image": "x y"},
            "annotation schemagate.dev/image: 'x y' must not contain spaces or control characters",
        ),
    ],
)
def test_every_annotation_is_checked_whatever_the_mode(
    annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(Invalid) as caught:
        parse_annotations(annotations)
    assert str(caught.value) == message


def test_label_values() -> None:
    assert mode_of({"metadata": {"labels": {"schemagate.dev/migrate": "gate"}}}) == "gate"
    assert mode_of({"metadata": {"labels": {}}}) is None
    with pytest.raises(
        Invalid, match=r"label schemagate.dev/migrate: 'yes' is not one of inject, gate"
    ):
        mode_of({"metadata": {"labels": {"schemagate.dev/migrate": "yes"}}})
