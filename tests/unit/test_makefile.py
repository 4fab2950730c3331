"""`make help` lists every documented target, including those with digits (test-e2e)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_documented_target() -> None:
    documented = re.findall(
        r"^([^\s:#]+):.*## ", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M
    )
    shown = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    listed = re.findall(r"^\s+(?:\x1b\[36m)?(\S+?)\s", shown, re.M)
    assert "test-e2e" in documented
    assert listed == documented
