"""requirements.lock and requirements-build.lock, from which the image installs: every
runtime dependency and every build requirement of pyproject.toml pinned, with hashes, by
pip-compile (`make lock`), nothing stale, and one version of what both pin."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^ \\]+) \\$")


def locked(lock: Path = LOCK) -> dict[str, tuple[Version, list[str], list[str]]]:
    """name -> (version, hashes, what it is there for)."""
    found: dict[str, tuple[Version, list[str], list[str]]] = {}
    name = ""
    for line in lock.read_text(encoding="utf-8").splitlines():
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


def test_every_build_requirement_is_pinned_within_its_range() -> None:
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pins = locked(BUILD_LOCK)
    for requirement in map(Requirement, wanted):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is a build requirement but not in {BUILD_LOCK.name}"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), "make lock"
    direct = {
        n
        for n, (_, _, via) in pins.items()
        if "schemagate (pyproject.toml::build-system.requires)" in via
    }
    assert direct == {canonicalize_name(Requirement(r).name) for r in wanted}, "make lock"


def test_what_both_locks_pin_they_pin_alike() -> None:
    runtime, build = locked(LOCK), locked(BUILD_LOCK)
    for name in runtime.keys() & build.keys():
        assert runtime[name][:2] == build[name][:2], f"{name} differs between the locks"


@pytest.mark.parametrize("lock", [LOCK, BUILD_LOCK], ids=lambda p: p.name)
def test_every_pin_has_hashes_and_a_reason(lock: Path) -> None:
    pins = locked(lock)
    assert len(pins) >= (20 if lock == LOCK else 3)  # the dependencies and theirs
    for name, (_, hashes, via) in pins.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name
        assert via, f"{name} is pinned for no dependency: make lock"
    # Written by pip-compile as `make lock` runs it, with no machine-specific index.
    header = lock.read_text(encoding="utf-8")
    assert "pip-compile" in header and "--generate-hashes" in header
    assert "--index-url" not in header and "--find-links" not in header
    assert "--extra-index-url" not in header and "file://" not in header
