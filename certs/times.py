"""Times as schemagate writes them, in messages, certificates and Kubernetes objects."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_text(moment: datetime) -> str:
    """RFC 3339 in UTC to the second (`2026-12-01T09:30:00Z`); `moment` must be aware."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
