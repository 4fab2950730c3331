"""The label and annotations a Deployment uses to talk to schemagate. Pure.

Parsing turns annotations into typed specs or raises `Invalid`, whose message names
the annotation, the bad value and what is allowed, so a denial tells the user what
to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from webhook.config import GATE_TOOLS, INJECT_TOOLS
from webhook.review import show

PREFIX = "schemagate.dev/"
LABEL = PREFIX + "migrate"
MODES = ("inject", "gate")

TOOL = PREFIX + "tool"
CONTAINER = PREFIX + "container"
IMAGE = PREFIX + "image"
COMMAND = PREFIX + "command"
DATABASE = PREFIX + "database"
SCHEMA_VERSION = PREFIX + "schema-version"
VERSION_MATCH = PREFIX + "version-match"
RUN = PREFIX + "run"
RETRY = PREFIX + "retry"  # read by the controller only: a new value retries a failed run
ANNOTATIONS = (TOOL, CONTAINER, IMAGE, COMMAND, DATABASE, SCHEMA_VERSION, VERSION_MATCH, RUN, RETRY)
MATCHES = ("at-least", "exact")
RUNS = ("every-pod", "once")
# Set by schemagate on the pod template in `run: once`: the release its pods wait for.
RELEASE = PREFIX + "release"

# Bounds on what a Deployment may hand us: generous for real use, small enough that a
# hostile value is refused before it costs anything.
MAX_VALUE_CHARS = 256
MAX_COMMAND_CHARS = 16 * 1024
MAX_COMMAND_ARGS = 256

Match = Literal["at-least", "exact"]
Run = Literal["every-pod", "once"]


class Invalid(ValueError):
    """A Deployment's schemagate label or annotations are wrong; str() says how."""


@dataclass(frozen=True, slots=True)
class InjectSpec:
    tool: str
    container: str | None
    image: str | None
    command: tuple[str, ...] | None
    run: Run = "every-pod"


@dataclass(frozen=True, slots=True)
class GateSpec:
    database: str
    required: str
    match: Match | None  # None: the tool's default (at-least where versions are ordered)


def labels_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return _meta_map(obj, "labels")


def annotations_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return _meta_map(obj, "annotations")


def mode_of(obj: Mapping[str, Any] | None) -> str | None:
    """The label's value, or None when the object does not carry the label."""
    value = labels_of(obj).get(LABEL)
    if value is None:
        return None
    if value not in MODES:
        raise Invalid(f"label {LABEL}: {show(value)} is not one of {', '.join(MODES)}")
    return str(value)


def check_known(annots: Mapping[str, Any]) -> None:
    """A mistyped schemagate annotation would be silently ignored; refuse it instead."""
    for key in annots:
        if isinstance(key, str) and key.startswith(PREFIX) and key not in ANNOTATIONS:
            raise Invalid(
                f"annotation {show(key)} is not a schemagate annotation; "
                f"known: {', '.join(ANNOTATIONS)}"
            )


def parse_inject(annots: Mapping[str, Any]) -> InjectSpec:
    check_known(annots)
    tool = _choice(annots, TOOL, INJECT_TOOLS)
    container = _optional_text(annots, CONTAINER)
    image = _optional_text(annots, IMAGE)
    if IMAGE in annots and image is None:
        raise Invalid(
            f"annotation {IMAGE}: must not be empty; omit it to use the app container's image"
        )
    command = _command(annots)
    if tool == "command" and command is None:
        raise Invalid(
            f"annotation {COMMAND}: required when {TOOL} is command "
            '(a JSON list of strings, e.g. ["./migrate", "up"])'
        )
    run: Run = _choice(annots, RUN, RUNS) if RUN in annots else "every-pod"  # type: ignore[assignment]
    _optional_text(annots, RETRY)
    return InjectSpec(tool, container, image, command, run)


def parse_gate(annots: Mapping[str, Any]) -> GateSpec:
    check_known(annots)
    database = _required_text(annots, DATABASE, "the name of a database in the webhook config")
    required = _required_text(annots, SCHEMA_VERSION, "the schema version this release needs")
    match: Match | None = None
    if VERSION_MATCH in annots:
        match = _choice(annots, VERSION_MATCH, MATCHES)  # type: ignore[assignment]
    if TOOL in annots:
        _choice(annots, TOOL, GATE_TOOLS)
    return GateSpec(database, required, match)


def _meta_map(obj: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    meta = obj.get("metadata") if obj else None
    value = meta.get(key) if isinstance(meta, dict) else None
    return value if isinstance(value, dict) else {}


def _choice(annots: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = annots.get(key)
    if value is None:
        raise Invalid(f"annotation {key}: required; one of {', '.join(allowed)}")
    if value not in allowed:
        raise Invalid(f"annotation {key}: {show(value)} is not one of {', '.join(allowed)}")
    return str(value)


def _optional_text(annots: Mapping[str, Any], key: str) -> str | None:
    value = annots.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(f"annotation {key}: must be a string")
    if len(value) > MAX_VALUE_CHARS:
        raise Invalid(f"annotation {key}: {len(value)} characters exceeds {MAX_VALUE_CHARS}")
    value = value.strip()
    if any(c.isspace() or not c.isprintable() for c in value):
        raise Invalid(
            f"annotation {key}: {show(value)} must not contain spaces or control characters"
        )
    return value or None


def _required_text(annots: Mapping[str, Any], key: str, what: str) -> str:
    value = _optional_text(annots, key)
    if value is None:
        raise Invalid(f"annotation {key}: required ({what})")
    return value


def _command(annots: Mapping[str, Any]) -> tuple[str, ...] | None:
    raw = annots.get(COMMAND)
    if raw is None:
        return None
    hint = 'a JSON list of strings, e.g. ["flyway", "migrate"]'
    if not isinstance(raw, str):
        raise Invalid(f"annotation {COMMAND}: must be {hint}")
    if len(raw) > MAX_COMMAND_CHARS:
        raise Invalid(f"annotation {COMMAND}: {len(raw)} characters exceeds {MAX_COMMAND_CHARS}")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Invalid(
            f"annotation {COMMAND}: {show(raw)} is not valid JSON; must be {hint}"
        ) from None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(arg, str) and arg for arg in value)
    ):
        raise Invalid(f"annotation {COMMAND}: {show(raw)} must be {hint}")
    if len(value) > MAX_COMMAND_ARGS:
        raise Invalid(f"annotation {COMMAND}: {len(value)} arguments exceeds {MAX_COMMAND_ARGS}")
    if any("\x00" in arg for arg in value):
        raise Invalid(f"annotation {COMMAND}: arguments must not contain NUL characters")
    return tuple(value)
