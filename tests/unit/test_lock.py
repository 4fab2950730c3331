"""requirements.lock, from which the image installs: every runtime dependency of
pyproject.toml pinned, with hashes, by pip-compile (`make lock`), and nothing stale."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^ \\]+) \\$")


def locked() -> dict[str, tuple[Version, list[str], list[str]]]:
    """name -> (version, hashes, what it is there for)."""
    found: dict[str, tuple[Version, list[str], list[str]]] = {}
    name = ""
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        pin = PIN.match(line)
        if pin:
            name = canonicalize_name(pin[1])
            found[name] = (Version(pin[2]), [], [])
        elif line.strip().startswith("--hash=sha256:"):
            found[name][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
        elif line.strip().startswith("#") and name:
            found[name][2].append(line.strip("# ").removeprefix("via").strip())
    return found


def test_every_runtime_dependency_is_pinned_within_its_range() -> None:
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = locked()
    for requirement in map(Requirement, wanted):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is in pyproject.toml but not in requirements.lock: make lock"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} does not satisfy pyproject.toml's {requirement}: make lock"
        )
    # Nothing pinned for pyproject.toml that it no longer asks for.
    direct = {n for n, (_, _, via) in pins.items() if "schemagate (pyproject.toml)" in via}
    assert direct == {canonicalize_name(Requirement(r).name) for r in wanted}, "make lock"


def test_every_pin_has_hashes_and_a_reason() -> None:
    pins = locked()
    assert len(pins) >= 20  # the dependencies and theirs
    for name, (_, hashes, via) in pins.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name
        assert via, f"{name} is pinned for no dependency: make lock"
    # Written by pip-compile as `make lock` runs it, with no machine-specific index.
    header = LOCK.read_text(encoding="utf-8")
    assert "pip-compile --generate-hashes" in header
    assert "--index-url" not in header and "--find-links" not in header
    assert "--extra-index-url" not in header and "file://" not in header
