"""Golden output: files compared verbatim with what a command prints.

After a deliberate change of the output, regenerate with
`SCHEMAGATE_UPDATE_GOLDEN=1 .venv/bin/pytest <the tests>` and review the diff in git:
the files are the specification of the output, so the regeneration is what a reviewer reads.
"""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).parent
UPDATE = os.environ.get("SCHEMAGATE_UPDATE_GOLDEN") == "1"


def compare(name: str, actual: str) -> None:
    """Assert `actual` equals the golden file `name` (under tests/golden/), character for
    character; with SCHEMAGATE_UPDATE_GOLDEN=1, write it first."""
    path = HERE / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.is_file(), f"no golden file {path}; create it with SCHEMAGATE_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, (
        f"output differs from {path} (SCHEMAGATE_UPDATE_GOLDEN=1 rewrites it)"
    )
