"""Fixtures shared by every tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from certs.files import issue_to_dir


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a serving certificate for localhost / 127.0.0.1, as `certs issue` writes them."""
    out = tmp_path_factory.mktemp("tls")
    issue_to_dir(out, ["localhost"], ["127.0.0.1"])
    return out
