"""`schemagate wait`: the init container of `run: once` pods. Standard library only.

The kubelet mounts the release's marker ConfigMap before any container of the pod
starts, and does not start the pod while it is missing: by the time this runs, the
release's Job has ended and the marker says how. No database credentials and no API
access are needed.
"""

from __future__ import annotations

import sys
from pathlib import Path


def wait(marker: Path) -> int:
    def field(key: str) -> str:
        try:
            return (marker / key).read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    state, job = field("state"), field("job") or "(unknown)"
    release = field("release")[:12] or "(unknown)"
    if state == "succeeded":
        print(f"schemagate: release {release}: migration Job {job} succeeded ({field('finished')})")
        return 0
    if state == "failed":
        print(
            f"schemagate: release {release}: migration Job {job} failed: "
            f"{field('reason') or 'no reason recorded'}. Logs: kubectl logs job/{job}. "
            "Retry with a new release or a new value of annotation schemagate.dev/retry "
            "on the workload.",
            file=sys.stderr,
        )
        return 1
    print(f"schemagate: {marker} holds no run state (state {state!r})", file=sys.stderr)
    return 1
