"""What can go wrong reading a version source."""

from __future__ import annotations


class SourceError(Exception):
    """The database could not be read. str() is one line with no credentials in it."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


class TableMissing(Exception):
    """The tool's table does not exist: no migrations were ever recorded there."""
