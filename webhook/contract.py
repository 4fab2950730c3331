"""The label and annotations a workload uses to talk to schemagate. Pure.

Parsing turns annotations into typed specs or raises `Invalid`, whose message names
the annotation, the bad value and what is allowed, so a denial tells the user what
to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from webhook.review import show
from webhook.tools import GATE_TOOLS, INJECT_TOOLS
from webhook.tools.base import Match as Match  # re-exported: the contract's vocabulary

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
MATCHES: tuple[Match, ...] = ("at-least", "exact")
RUNS = ("every-pod", "once")
# Set by schemagate on the pod template in `run: once`: the release its pods wait for.
RELEASE = PREFIX + "release"

# Bounds on what a workload may hand us: generous for real use, small enough that a
# hostile value is refused before it costs anything.
MAX_VALUE_CHARS = 256
MAX_COMMAND_CHARS = 16 * 1024
MAX_COMMAND_ARGS = 256

Run = Literal["every-pod", "once"]


class Invalid(ValueError):
    """A workload's schemagate label or annotations are wrong; str() says how."""


@dataclass(slots=True)  # made per admission: see review.AdmissionRequest
class InjectSpec:
    tool: str
    container: str | None
    image: str | None
    command: tuple[str, ...] | None
    run: Run = "every-pod"


@dataclass(slots=True)  # made per admission: see review.AdmissionRequest
class GateSpec:
    database: str
    required: str
    match: Match | None  # None: the tool's default (at-least where versions are ordered)
    tool: str | None = None  # when named, it must be the database's configured tool


@dataclass(slots=True)  # made per admission: see review.AdmissionRequest
class Declared:
    """Every schemagate annotation a Deployment carries, each one checked on its own
    whatever the mode (None: absent), so a malformed annotation is always a denial."""

    tool: str | None
    container: str | None
    image: str | None
    command: tuple[str, ...] | None
    database: str | None
    required: str | None
    match: Match | None
    run: Run = "every-pod"

    def inject_spec(self) -> InjectSpec:
        if self.tool is None:
            raise Invalid(f"annotation {TOOL}: required; one of {', '.join(INJECT_TOOLS)}")
        if self.tool == "command" and self.command is None:
            raise Invalid(
                f"annotation {COMMAND}: required when {TOOL} is command "
                '(a JSON list of strings, e.g. ["./migrate", "up"])'
            )
        return InjectSpec(self.tool, self.container, self.image, self.command, self.run)

    def gate_spec(self) -> GateSpec:
        if self.database is None:
            raise Invalid(
                f"annotation {DATABASE}: required (the name of a database in the webhook config)"
            )
        if self.required is None:
            raise Invalid(
                f"annotation {SCHEMA_VERSION}: required (the schema version this release needs)"
            )
        if self.tool is not None and self.tool not in GATE_TOOLS:
            raise Invalid(
                f"annotation {TOOL}: {show(self.tool)} is not one of {', '.join(GATE_TOOLS)}"
            )
        return GateSpec(self.database, self.required, self.match, self.tool)


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


def parse_annotations(annots: Mapping[str, Any]) -> Declared:
    check_known(annots)
    tool = _choice(annots, TOOL, INJECT_TOOLS) if TOOL in annots else None
    image = _optional_text(annots, IMAGE)
    if IMAGE in annots and image is None:
        raise Invalid(
            f"annotation {IMAGE}: must not be empty; omit it to use the app container's image"
        )
    _optional_text(annots, RETRY)
    match: Match | None = None
    if VERSION_MATCH in annots:
        match = _choice(annots, VERSION_MATCH, MATCHES)  # type: ignore[assignment]
    return Declared(
        tool=tool,
        container=_optional_text(annots, CONTAINER),
        image=image,
        command=_command(annots),
        database=_optional_text(annots, DATABASE),
        required=_version(annots),
        match=match,
        run="once" if RUN in annots and _choice(annots, RUN, RUNS) == "once" else "every-pod",
    )


def _meta_map(obj: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    meta = obj.get("metadata") if obj else None
    value = meta.get(key) if isinstance(meta, dict) else None
    return value if isinstance(value, dict) else {}


def _choice(annots: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = annots.get(key)
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
    # str.isprintable looks at the whole string at once; the only space it passes is " ".
    if not (value.isprintable() and " " not in value) and any(
        c.isspace() or not c.isprintable() for c in value
    ):
        raise Invalid(
            f"annotation {key}: {show(value)} must not contain spaces or control characters"
        )
    return value or None


def _version(annots: Mapping[str, Any]) -> str | None:
    value = _optional_text(annots, SCHEMA_VERSION)
    if value is not None and not value.isascii():
        # Superscript, Arabic-Indic or fullwidth digits would otherwise pass as numbers.
        raise Invalid(
            f"annotation {SCHEMA_VERSION}: {show(value)} must contain only ASCII characters"
        )
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
