"""The project's manifests as `kubectl kustomize` renders them."""

from __future__ import annotations

import subprocess


def kustomize(directory: str) -> str:
    """`kubectl kustomize DIRECTORY`'s output (a directory relative to the repository root,
    where pytest runs)."""
    done = subprocess.run(
        ["kubectl", "kustomize", directory], capture_output=True, text=True, check=True
    )
    return done.stdout
