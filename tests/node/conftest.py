"""Fixtures of the node tier: one `Stack` (tests/node/stack.py) for the whole session.

A part that cannot be had (a Debian package, the build, an image, the node) fails the
tests that need it with the reason; nothing here skips.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e import controlplane
from tests.e2e.harness import Kubectl, namespace_object
from tests.node import images
from tests.node.stack import Stack
from tests.node.workloads import NAMESPACE_IDS, secret
from tests.support import summary

# A cold first run builds the binaries (about 6 min) and the images (about 4 min).
BUILD_TIMEOUT = 1800


def timing(what: str, seconds: float) -> None:
    summary.record("node tier timings", f"{what:<62} {seconds:7.2f} s")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cold = not controlplane.binaries_cached() or not images.all_cached()
    for item in items:
        if "tests/node/" in item.nodeid and cold:
            item.add_marker(pytest.mark.timeout(BUILD_TIMEOUT))


@pytest.fixture(scope="session")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    started = time.monotonic()
    built = Stack()
    try:
        built.start()
        for what, seconds in built.timings.items():
            timing(what, seconds)
        yield built
    finally:
        if request.session.testsfailed:
            _keep_logs(built, tmp_path_factory)
        built.stop()
        timing("node session (fixtures + tests)", time.monotonic() - started)


@pytest.fixture(scope="session")
def kube(stack: Stack) -> Kubectl:
    return stack.kubectl


@pytest.fixture
def namespace(kube: Kubectl) -> Callable[[str], str]:
    """Creates `<prefix>-<n>`, labelled with its name as API servers from 1.21 on do."""

    def make(prefix: str) -> str:
        name = f"{prefix}-{next(NAMESPACE_IDS)}"
        kube.apply_objects([namespace_object(name)])
        return name

    return make


@pytest.fixture
def database(stack: Stack, kube: Kubectl) -> Callable[[str, str], str]:
    """A fresh PostgreSQL database and a Secret `db` in the namespace holding its URL,
    the same from the host and from pods. Returns the URL."""

    def make(name: str, namespace: str) -> str:
        assert stack.postgres is not None
        stack.postgres.create_database(name)
        url = stack.postgres.url(name)
        kube.apply_objects([secret("db", namespace, url)])
        return url

    return make


def _keep_logs(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    keep = tmp_path_factory.getbasetemp() / "node-logs"
    keep.mkdir(exist_ok=True)
    for part in (stack.cluster, stack.node):
        for proc in getattr(part, "processes", []):
            if proc.log.exists():
                shutil.copy(proc.log, keep / f"{proc.name}.log")
    timing(f"(logs kept in {keep})", 0.0)
