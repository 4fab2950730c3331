"""The webhook's configuration, validated completely at start. Pure: `parse_config`
takes the decoded document; `webhook.config_file` reads the YAML file.

Every error names the offending key as a dotted path (`databases.orders.tool`) and the
values that are allowed, so a bad ConfigMap fails the rollout with a one-line reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from webhook.review import show
from webhook.tools import GATE_TOOLS, INJECT_TOOLS, gate_of
from webhook.tools.base import Dialect

URL_KEYS = ("url", "url_env", "url_file")
# A database URL's scheme, and the engine it names.
URL_SCHEMES: Mapping[str, Dialect] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "sqlite": "sqlite",
}
MAX_QUERY_CHARS = 4096

UrlKind = Literal["url", "url_env", "url_file"]
Policy = Literal["closed", "open"]


class ConfigError(ValueError):
    """A configuration problem; str() is the one-line message naming the key."""


class StartupError(ValueError):
    """Another input given at start (a flag, a variable, a certificate file, the address to
    listen on) is unusable; str() is one line naming it."""


@dataclass(frozen=True)
class DatabaseConfig:
    name: str
    url_kind: UrlKind
    url_value: str
    tool: str
    namespaces: frozenset[str]
    schema: str | None = None
    table: str | None = None
    query: str | None = None  # tool custom: the operator's own read-only query

    def allows(self, namespace: str) -> bool:
        return "*" in self.namespaces or namespace in self.namespaces


@dataclass(frozen=True)
class ToolOverride:
    image: str | None = None
    command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Config:
    databases: Mapping[str, DatabaseConfig] = field(default_factory=dict)
    lookup_timeout: float = 2.0
    cache_ttl: float = 5.0
    on_unreachable: Policy = "closed"
    tool_overrides: Mapping[str, ToolOverride] = field(default_factory=dict)
    # Not from the file: `serve --wait-image`, the image of `run: once`'s wait container.
    wait_image: str | None = None


def parse_config(data: object) -> Config:
    """Validate an already-decoded document and build the typed configuration."""
    top = _mapping(data, "config")
    _only(top, ("databases", "lookup", "on_unreachable", "inject"), "")
    databases = {
        str(name): _database(str(name), spec)
        for name, spec in _mapping(top.get("databases", {}), "databases").items()
    }
    lookup = _mapping(top.get("lookup", {}), "lookup")
    _only(lookup, ("timeout_seconds", "cache_ttl_seconds"), "lookup.")
    timeout = _number(lookup.get("timeout_seconds", 2), "lookup.timeout_seconds", low=0.05, high=25)
    ttl = _number(lookup.get("cache_ttl_seconds", 5), "lookup.cache_ttl_seconds", low=0, high=3600)
    policy = top.get("on_unreachable", "closed")
    if policy not in ("closed", "open"):
        raise ConfigError(f"on_unreachable: {policy!r} is not one of closed, open")
    inject = _mapping(top.get("inject", {}), "inject")
    _only(inject, ("tools",), "inject.")
    overrides = {
        str(tool): _override(str(tool), spec)
        for tool, spec in _mapping(inject.get("tools", {}), "inject.tools").items()
    }
    return Config(databases, timeout, ttl, policy, overrides)


def engine_of(url: str, where: str) -> Dialect:
    """The engine a database URL's scheme names; ConfigError naming `where` otherwise."""
    scheme, sep, _ = url.partition("://")
    engine = URL_SCHEMES.get(scheme.lower())
    if engine is None or not sep:
        # Never echo the URL itself: it may carry a password.
        raise ConfigError(f"{where}: scheme must be postgresql://, mysql:// or sqlite:///")
    return engine


def _database(name: str, spec: object) -> DatabaseConfig:
    where = f"databases.{name}"
    body = _mapping(spec, where)
    _only(body, (*URL_KEYS, "tool", "namespaces", "schema", "table", "query"), where + ".")
    given = [key for key in URL_KEYS if key in body]
    if len(given) != 1:
        raise ConfigError(
            f"{where}: set exactly one of url, url_env, url_file (found {len(given)})"
        )
    kind: UrlKind = given[0]  # type: ignore[assignment]
    value = _text(body[kind], f"{where}.{kind}")
    if kind == "url":
        engine_of(value, f"{where}.url")
    tool = body.get("tool")
    if tool not in GATE_TOOLS:
        raise ConfigError(f"{where}.tool: {tool!r} is not one of {', '.join(GATE_TOOLS)}")
    if "namespaces" not in body:
        raise ConfigError(f'{where}.namespaces: required (a list of namespaces, or ["*"])')
    namespaces = body["namespaces"]
    if not isinstance(namespaces, list) or not namespaces:
        # A string such as "*,shop" is not split: it would name no namespace at all.
        raise ConfigError(
            f'{where}.namespaces: must be a non-empty list of namespaces, or ["*"] for any; '
            f"got {type(namespaces).__name__} {show(namespaces)}"
        )
    allowed = frozenset(_text(ns, f"{where}.namespaces") for ns in namespaces)
    schema = _optional_identifier(body.get("schema"), f"{where}.schema")
    table = _optional_identifier(body.get("table"), f"{where}.table")
    query = None
    if gate_of(str(tool)).history is None:
        query = _query(body.get("query"), f"{where}.query", str(tool))
        if schema or table:
            raise ConfigError(
                f"{where}: schema and table do not apply to tool {tool}; "
                "the query names its own tables"
            )
    elif "query" in body:
        raise ConfigError(f"{where}.query: only tool custom takes a query; {tool} has its own")
    return DatabaseConfig(name, kind, value, str(tool), allowed, schema, table, query)


def _query(value: object, where: str, tool: str) -> str:
    """One read-only statement returning (version, state); the sessions are read-only too."""
    if value is None:
        raise ConfigError(f"{where}: required for tool {tool} (a SELECT returning version, state)")
    text = _text(value, where).strip().removesuffix(";").strip()
    if len(text) > MAX_QUERY_CHARS:
        raise ConfigError(f"{where}: {len(text)} characters exceeds {MAX_QUERY_CHARS}")
    if not re.match(r"(?i)(select|with)\b", text):
        raise ConfigError(f"{where}: must be one SELECT (or WITH ... SELECT) statement")
    if ";" in text or "\x00" in text:
        raise ConfigError(f"{where}: must be a single statement (no ';' inside)")
    return text


def _override(tool: str, spec: object) -> ToolOverride:
    where = f"inject.tools.{tool}"
    if tool not in INJECT_TOOLS:
        raise ConfigError(f"{where}: unknown tool; expected one of {', '.join(INJECT_TOOLS)}")
    body = _mapping(spec, where)
    _only(body, ("image", "command"), where + ".")
    image = _text(body["image"], f"{where}.image") if "image" in body else None
    command = None
    if "command" in body:
        raw = body["command"]
        if not isinstance(raw, list) or not raw or not all(isinstance(a, str) for a in raw):
            raise ConfigError(f"{where}.command: must be a non-empty list of strings")
        command = tuple(raw)
    return ToolOverride(image, command)


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping, not {type(value).__name__}")
    return value


def _only(body: Mapping[str, Any], keys: tuple[str, ...], prefix: str) -> None:
    for key in body:
        if key not in keys:
            raise ConfigError(f"{prefix}{key}: unknown key; expected one of {', '.join(keys)}")


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a non-empty string")
    return value


def _number(value: object, where: str, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: must be a number")
    if not low <= value <= high:
        raise ConfigError(f"{where}: {value} is outside {low}..{high}")
    return float(value)


def _optional_identifier(value: object, where: str) -> str | None:
    if value is None:
        return None
    text = _text(value, where)
    # Schema and table names are quoted into SQL by the sources; keep them plain identifiers.
    if not all(c.isalnum() or c in "_$" for c in text):
        raise ConfigError(f"{where}: {text!r} must contain only letters, digits, _ and $")
    return text
