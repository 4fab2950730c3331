"""Figures the tiers print at the end of a run, from whichever process measured them.

`make test` runs the tiers in pytest-xdist worker processes, but only the controlling
process prints the summary. So figures go to a file that the controlling process names
in an environment variable before its workers start (tests/conftest.py), one JSON line
each, and are printed from there under their section's title, in the order recorded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "SCHEMAGATE_TEST_SUMMARY"


def record(section: str, line: str) -> None:
    """Add a line to a section of the end-of-run summary (a no-op outside pytest)."""
    path = os.environ.get(ENV)
    if path:
        with Path(path).open("a", encoding="utf-8") as out:
            out.write(json.dumps([section, line]) + "\n")


def record_lines(section: str, *lines: str) -> None:
    for line in lines:
        record(section, line)


def sections(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    if path.is_file():
        for raw in path.read_text(encoding="utf-8").splitlines():
            section, line = json.loads(raw)
            found.setdefault(section, []).append(line)
    return found
