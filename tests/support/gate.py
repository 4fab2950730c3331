"""The gate as the webhook runs it, for tests over real databases: lookups built the way
`schemagate serve` builds them, a read of what a tool recorded, and the gate's verdict
on it for shop/api on database `orders`."""

from __future__ import annotations

from typing import Any

from webhook.config import parse_config
from webhook.contract import Match
from webhook.gate import GateCheck, decide_gate
from webhook.lookup import Lookups
from webhook.sources import open_source
from webhook.versions import Recorded


def lookups_for(url: str, tool: str, *, timeout: float = 2.0, **extra: Any) -> Lookups:
    """Lookups over one database named `orders`, built the way `schemagate serve` builds them."""
    config = parse_config(
        {
            "databases": {"orders": {"url": url, "tool": tool, "namespaces": ["shop"], **extra}},
            "lookup": {"timeout_seconds": timeout},
        }
    )
    return Lookups({"orders": open_source(config.databases["orders"], config.lookup_timeout)})


async def read(url: str, tool: str, **extra: Any) -> Recorded:
    """What `tool` records in the database at `url`, read once through the lookup layer."""
    lookups = lookups_for(url, tool, **extra)
    try:
        fetched = await lookups.get("orders", 0)
    finally:
        lookups.close()
    assert isinstance(fetched.found, Recorded), fetched.found
    return fetched.found


def verdict(
    tool: str, required: str, found: Recorded, match: Match = "at-least", **extra: Any
) -> tuple[bool, str]:
    """(allowed, status message) of the gate for shop/api on database orders."""
    entry = {"url": "sqlite:///x", "tool": tool, "namespaces": ["shop"], **extra}
    config = parse_config({"databases": {"orders": entry}})
    answer = decide_gate(
        GateCheck("shop/api", config.databases["orders"], required, match), found, config
    )
    return answer.allowed, answer.message or ""
