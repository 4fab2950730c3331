"""Configuration checks that need no server: each error names the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.cli import INSTALL_NAMESPACE, own_namespace
from webhook.config import ConfigError, parse_config


@pytest.mark.parametrize(
    ("namespaces", "message"),
    [
        (
            "*,shop",
            'databases.orders.namespaces: must be a non-empty list of namespaces, or ["*"] for '
            "any; got str '*,shop'",
        ),
        (
            [],
            'databases.orders.namespaces: must be a non-empty list of namespaces, or ["*"] for '
            "any; got list []",
        ),
    ],
)
def test_namespaces_must_be_a_list(namespaces: object, message: str) -> None:
    spec = {"url": "sqlite:///x.db", "tool": "flyway", "namespaces": namespaces}
    with pytest.raises(ConfigError) as raised:
        parse_config({"databases": {"orders": spec}})
    assert str(raised.value) == message


def test_own_namespace_defaults_to_the_pods_then_the_installs(tmp_path: Path) -> None:
    pod = tmp_path / "namespace"
    pod.write_text("platform\n")
    assert own_namespace("given", pod) == "given"
    assert own_namespace(None, pod) == "platform"
    assert own_namespace(None, tmp_path / "absent") == INSTALL_NAMESPACE == "schemagate-system"
