"""The core compiled as the image compiles it (setup.py with SCHEMAGATE_COMPILE=1), for
the tests and the bench to run on this machine without building the image.

`tree()` is a copy of the packages with the compiled modules beside their sources, cached
under `~/.cache/schemagate/compiled` by a hash of everything the build reads. With it
first on PYTHONPATH, `import webhook.decide` loads the extension (an extension module
wins over a source file of the same name); the editable install's finder comes after
the path, so nothing else needs changing. pytest needs `--import-mode=append` and its
own script (not `python -m`), or the checkout goes on the path ahead of the tree.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(
    os.environ.get("SCHEMAGATE_COMPILED_CACHE", Path.home() / ".cache/schemagate/compiled")
)
PACKAGES = ("webhook", "certs")
BUILD_FILES = ("setup.py", "pyproject.toml", "README.md")
# Set for a test run that must be on the compiled core: tests/conftest.py refuses to
# start when the core it imports is not the extension.
EXPECT_ENV = "SCHEMAGATE_EXPECT_COMPILED"
KEEP = 3  # trees kept: the newest few, so switching branches does not rebuild


class CompileError(RuntimeError):
    """The build failed; str() carries the end of its output."""


def _inputs() -> list[Path]:
    files = [ROOT / name for name in BUILD_FILES]
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def _key() -> str:
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    digest.update(importlib.metadata.version("mypy").encode())
    for path in _inputs():
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def tree() -> Path:
    """The compiled tree for the checkout as it is now, built on a miss (about 25 s)."""
    target = CACHE / _key()
    if (target / ".complete").is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=CACHE))
    try:
        for path in _inputs():
            dest = work / path.relative_to(ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        done = subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace"],
            cwd=work,
            env={**os.environ, "SCHEMAGATE_COMPILE": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise CompileError(
                f"mypyc build failed ({done.returncode}):\n{done.stdout[-3000:]}"
                f"\n{done.stderr[-3000:]}"
            )
        shutil.rmtree(work / "build")
        (work / ".complete").write_text("")
        if target.exists():  # another process finished the same build first
            shutil.rmtree(work)
        else:
            work.rename(target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    _prune()
    return target


def _prune() -> None:
    trees = sorted(
        (p for p in CACHE.iterdir() if (p / ".complete").is_file()),
        key=lambda p: p.stat().st_mtime,
    )
    for old in trees[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def env(compiled: Path) -> dict[str, str]:
    """Environment variables that make a Python process load `compiled` first."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": f"{compiled}{os.pathsep}{path}" if path else str(compiled)}
