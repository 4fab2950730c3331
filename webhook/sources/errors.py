"""What can go wrong reading a version source."""

from __future__ import annotations

from typing import Literal

# What a denial may say about a failed read: the kind only. A driver's own words name
# users, databases, hosts and files of the webhook's configuration, which other tenants
# must not learn; they go to the webhook's log.
Kind = Literal[
    "authentication failed",
    "connection refused",
    "timed out",
    "not found",
    "misconfigured",
    "failed",
]


class SourceError(Exception):
    """The database could not be read. str() is the detail for the log, one line with no
    credentials in it; `kind` is what a denial may show."""

    def __init__(self, detail: str, kind: Kind = "failed") -> None:
        super().__init__(detail)
        self.kind: Kind = kind

    @property
    def timed_out(self) -> bool:
        return self.kind == "timed out"


class TableMissing(Exception):
    """The tool's table does not exist: no migrations were ever recorded there."""
