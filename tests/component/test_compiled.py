"""The core as the image ships it, compiled with mypyc (setup.py): every core module is
an extension, and the unit tier (but its checks of the repository) passes against it.

mypyc checks declared types at run time where Python would not, and native classes
behave as the declarations say rather than as Python allows: a difference there would
show in the unit tier, hypothesis's fuzzing of the decoder and the decisions included.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import compiled

pytestmark = pytest.mark.component

ROOT = compiled.ROOT
PYTEST = Path(sys.executable).parent / "pytest"


def _core_modules() -> list[str]:
    spec = importlib.util.spec_from_file_location("schemagate_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)
    return [source.removesuffix(".py").replace("/", ".") for source in setup.core_sources()]


@pytest.fixture(scope="module")
def tree() -> Path:
    return compiled.tree()


def test_the_compiled_set_is_the_core_of_the_import_contract() -> None:
    modules = _core_modules()
    # The hot path of an admission, and nothing that touches the network.
    for module in (
        "webhook.admission",
        "webhook.decide",
        "webhook.review",
        "webhook.inject",
        "webhook.contract",
        "webhook.gate",
        "webhook.tools.flyway",
    ):
        assert module in modules
    for edge in ("webhook.app", "webhook.serve", "webhook.lookup", "webhook.sources"):
        assert not any(m == edge or m.startswith(edge + ".") for m in modules)


def test_every_core_module_loads_as_an_extension(tree: Path) -> None:
    modules = _core_modules()
    probe = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    print(name, importlib.import_module(name).__file__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *modules],
        cwd="/",
        env={**os.environ, **compiled.env(tree)},
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert set(loaded) == set(modules)
    pure = {name: path for name, path in loaded.items() if not path.endswith(".so")}
    assert not pure, f"loaded as Python, not compiled: {pure}"


# What the unit tier checks of the repository rather than of the code: the image build
# (it builds wheels of its own), the manifests, the Makefile, the locks, the test imports.
NOT_THE_CORE = (
    "test_dockerfile",
    "test_manifests",
    "test_makefile",
    "test_lock",
    "test_test_imports",
)


@pytest.mark.timeout(600)
def test_the_unit_tier_passes_on_the_compiled_core(tree: Path) -> None:
    ignored = [f"--ignore=tests/unit/{name}.py" for name in NOT_THE_CORE]
    for option in ignored:
        assert (ROOT / option.removeprefix("--ignore=")).is_file(), option
    done = subprocess.run(
        [
            str(PYTEST),
            "tests/unit",
            *ignored,
            "--import-mode=append",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
            "-q",
            "--no-header",
            "-o",
            "addopts=",
        ],
        cwd=ROOT,
        env={**os.environ, **compiled.env(tree), compiled.EXPECT_ENV: "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    tail = done.stdout[-4000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed is not None and int(passed.group(1)) > 900, tail
    assert " failed" not in done.stdout and " error" not in done.stdout, tail
