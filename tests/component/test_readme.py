"""The README's quick-start curl example, run against `make run`'s configuration."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.server import ROOT, Served, start

pytestmark = pytest.mark.component


@pytest.fixture(scope="module")
def dev_server(tls_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("readme")
    db = tmp / "schemagate.db"
    sqlite3.connect(db).executescript((ROOT / "dev" / "seed.sql").read_text())
    server = start(
        ROOT / "dev" / "config.yaml",
        tls_dir,
        tmp / "serve.log",
        env={"LOCAL_DATABASE_URL": f"sqlite://{db}"},
    )
    yield server
    assert server.stop() == 0


def _readme_outputs() -> dict[str, object]:
    """`--data @dev/<file>` of each curl in the README, mapped to the JSON it shows."""
    text = (ROOT / "README.md").read_text()
    found = re.findall(r"--data @dev/(\S+) https://127\.0\.0\.1:8443/mutate\n(\{.*\})\n", text)
    return {name: orjson.loads(output) for name, output in found}


def test_readme_shows_what_the_server_answers(dev_server: Served) -> None:
    outputs = _readme_outputs()
    assert sorted(outputs) == ["review-gate.json", "review-inject.json"]
    for name, shown in outputs.items():
        review = orjson.loads((ROOT / "dev" / name).read_bytes())
        assert dev_server.admit(review) == shown, name
