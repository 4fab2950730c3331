"""The project's manifests as `kubectl kustomize` renders them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml


def kubectl() -> str:
    path = shutil.which("kubectl")
    assert path is not None, "kubectl (with built-in kustomize) is required to render manifests/"
    return path


def kustomize(directory: str) -> str:
    """`kubectl kustomize DIRECTORY`'s output (a directory relative to the repository root,
    where pytest runs)."""
    done = subprocess.run(
        [kubectl(), "kustomize", directory], capture_output=True, text=True, check=True
    )
    return done.stdout


def rendered(folder: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize FOLDER` renders; a failure shows kustomize's error."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]
