"""The build's one choice beyond pyproject.toml: compile the pure core with mypyc.

With SCHEMAGATE_COMPILE=1 (the image's build, Dockerfile) the modules of the import
contract "the pure core imports no edge library" in `webhook` are compiled to C
extensions: functions over data, type-checked strictly, where an admission spends the
time that is its own (decoding aside). The contract is read from pyproject.toml, so the
compiled set is the core as the import linter enforces it. The edges (HTTP, databases,
the cluster) stay Python either way.

Without it (an editable install, `make run`, every test tier but the one that runs the
unit tests against this build) the same modules run as Python: the code is the same,
and a compiler is needed only where the image is built.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
CORE_CONTRACT = "the pure core imports no edge library"


def core_sources() -> list[str]:
    """The files of the core's `webhook` modules (a package: each of its modules)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(
        c for c in config["tool"]["importlinter"]["contracts"] if c["name"] == CORE_CONTRACT
    )
    sources: list[str] = []
    for module in contract["source_modules"]:
        if not module.startswith("webhook."):
            continue
        path = Path(*module.split("."))
        package = ROOT / path
        if package.is_dir():
            sources += sorted(str(p.relative_to(ROOT)) for p in package.glob("*.py"))
        else:
            sources.append(f"{path}.py")
    return sources


def ext_modules() -> list[object]:
    if os.environ.get("SCHEMAGATE_COMPILE") != "1":
        return []
    from mypyc.build import mypycify

    return list(mypycify(core_sources(), opt_level="3"))


if __name__ == "__main__":  # as setuptools runs it; the tests import core_sources
    setup(ext_modules=ext_modules())
