"""The container image, tested without a Docker engine: the Dockerfile's structure (with
dockerfile-parse), the build context (.dockerignore), agreement with the manifests, and
(component tier) that the wheel the Dockerfile installs builds and that a venv built the
same way runs the `schemagate` entry point.
"""

from __future__ import annotations

import fnmatch
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LOCK = "requirements.lock"

Instruction = dict[str, Any]

# An exact Python patch release on a named Debian slim base, or any image by digest.
PINNED_TAG = re.compile(r"^python:3\.11\.\d+-slim-(bookworm|trixie)$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)
SECRET_VALUE = re.compile(
    r"-----BEGIN|://[^/\s:@]+:[^/\s@]+@|ghp_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}"
)


def parse() -> DockerfileParser:
    # Reads lazily from the file object: hand it the bytes, not an open file.
    return DockerfileParser(fileobj=io.BytesIO(DOCKERFILE.read_bytes()))


def stages() -> list[list[Instruction]]:
    """Instructions grouped by stage, each list starting with its FROM."""
    result: list[list[Instruction]] = []
    for instruction in parse().structure:
        if instruction["instruction"] == "FROM":
            result.append([])
        if result and instruction["instruction"] != "COMMENT":
            result[-1].append(instruction)
    return result


def of(stage: list[Instruction], name: str) -> list[Instruction]:
    return [i for i in stage if i["instruction"] == name]


def key_values(value: str) -> Iterator[tuple[str, str]]:
    """KEY=VALUE pairs of an ENV/ARG/LABEL instruction (both syntaxes)."""
    words = shlex.split(value)
    if words and "=" not in words[0]:  # legacy `ENV KEY value`
        yield words[0], " ".join(words[1:])
        return
    for word in words:
        key, _, val = word.partition("=")
        yield key, val


def copy_sources(stage: list[Instruction]) -> list[str]:
    sources: list[str] = []
    for instruction in of(stage, "COPY"):
        words = [w for w in shlex.split(instruction["value"]) if not w.startswith("--")]
        sources.extend(words[:-1])
    return sources


def exec_form(instruction: Instruction) -> list[str]:
    value = yaml.safe_load(instruction["value"])  # JSON array: a subset of YAML
    assert isinstance(value, list), f"{instruction['instruction']} must use the exec form"
    return [str(v) for v in value]


# --- structure ------------------------------------------------------------------------


def test_multi_stage_on_the_same_pinned_base() -> None:
    parsed = parse()
    assert parsed.is_multistage
    all_stages = stages()
    assert len(all_stages) >= 2
    # The base is an ARG (a local look-alike can be named at build time): check its default.
    defaults = dict(
        kv
        for i in parsed.structure
        if i["instruction"] == "ARG" and i["startline"] < all_stages[0][0]["startline"]
        for kv in key_values(i["value"])
    )
    bases = [
        re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], shlex.split(s[0]["value"])[0])
        for s in all_stages
    ]
    assert all("$" not in base for base in bases), f"unresolved base image in {bases}"
    for base in bases:
        assert not base.endswith(":latest")
        assert PINNED_TAG.match(base) or DIGEST.search(base), f"base image not pinned: {base}"
    # The venv's python is a symlink into the base image: builder and final must match.
    assert bases[0] == bases[-1]


def test_final_stage_copies_only_the_venv() -> None:
    final = stages()[-1]
    copies = of(final, "COPY")
    assert copies, "the final stage must copy the venv from the builder"
    for instruction in copies:
        words = shlex.split(instruction["value"])
        assert any(w.startswith("--from=") for w in words), "only COPY --from=<builder>"
        assert words[-2:] == ["/opt/venv", "/opt/venv"]
    assert not of(final, "ADD")
    for run in of(final, "RUN"):
        # No package installs and no network tools in the image that runs.
        assert not re.search(r"\b(apt-get|apt|apk|curl|wget|pip install)\b", run["value"])


def test_builder_installs_only_what_the_locks_pin_with_hashes() -> None:
    """Reproducible: every file downloaded once and checked against its hash; the wheel
    built, compiled, in a venv of both locks without build isolation; the venv that ships
    holds what requirements.lock pins and the wheel, without any dependency resolution."""
    (compiler, builder_run) = of(stages()[0], "RUN")
    assert " ".join(compiler["value"].split()) == (
        "apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev "
        "&& rm -rf /var/lib/apt/lists/*"
    )
    commands = [" ".join(c.split()) for c in builder_run["value"].split("&&")]
    locks = "-r requirements.lock -r requirements-build.lock"
    offline = "--no-index --find-links /deps --no-deps --require-hashes --only-binary :all:"
    assert commands[:-1] == [
        f"python -m pip download --require-hashes --only-binary :all: --dest /deps {locks}",
        "python -m venv /build",
        f"/build/bin/pip install {offline} {locks}",
        "SCHEMAGATE_COMPILE=1 /build/bin/pip wheel --no-build-isolation --no-deps "
        "--wheel-dir /wheels .",
        "python -m venv --without-pip /opt/venv",
        f"python -m pip --python /opt/venv/bin/python install {offline} -r requirements.lock",
        "python -m pip --python /opt/venv/bin/python install --no-deps /wheels/*.whl",
    ]
    assert commands[-1].startswith("/opt/venv/bin/python -m compileall")
    assert {"requirements.lock", "requirements-build.lock", "setup.py"} <= set(
        copy_sources(stages()[0])
    )


def test_no_pip_in_the_image_that_runs() -> None:
    (final_run,) = of(stages()[-1], "RUN")
    commands = [" ".join(c.split()) for c in final_run["value"].split("&&")]
    # The base's interpreter by its full name: `python` is the venv's (PATH).
    assert any(
        c.startswith('/usr/local/bin/python3.11 -c "import pathlib, pip, shutil;') for c in commands
    )
    assert commands[-2:] == [
        '! /usr/local/bin/python3.11 -c "import pip"',
        '! python -c "import pip"',
    ]


def test_runs_as_numeric_non_root_user() -> None:
    users = of(stages()[-1], "USER")
    assert users, "the final stage must set USER"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1]["value"].strip())
    assert match, "USER must be numeric (runAsNonRoot cannot check a user name)"
    assert int(match.group(1)) != 0
    assert match.group(2) is None or int(match.group(2)) != 0


def test_no_add_of_urls_and_no_secrets() -> None:
    for stage in stages():
        for add in of(stage, "ADD"):
            assert not re.search(r"\b(https?|ftp)://", add["value"]), "ADD of a URL"
        for instruction in of(stage, "ENV") + of(stage, "ARG"):
            for key, value in key_values(instruction["value"]):
                assert not SECRET_NAME.search(key), f"{instruction['instruction']} {key}"
                assert not SECRET_VALUE.search(value), f"{instruction['instruction']} {key}"


def test_read_only_root_filesystem_ready() -> None:
    env = dict(kv for i in of(stages()[-1], "ENV") for kv in key_values(i["value"]))
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"


def test_entrypoint_is_the_venv_console_script() -> None:
    final = stages()[-1]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "schemagate" in scripts
    (entrypoint,) = of(final, "ENTRYPOINT")
    assert exec_form(entrypoint) == ["/opt/venv/bin/schemagate"]
    (cmd,) = of(final, "CMD")
    assert exec_form(cmd) == ["serve"]
    exposed = {p for e in of(final, "EXPOSE") for p in e["value"].split()}
    assert "8443" in exposed


def test_image_agrees_with_the_deployment() -> None:
    """The manifests run the image as its USER and on its port."""
    with (ROOT / "manifests/base/deployment.yaml").open() as handle:
        deployment = yaml.safe_load(handle)
    pod = deployment["spec"]["template"]["spec"]
    (user,) = of(stages()[-1], "USER")
    uid, _, gid = user["value"].strip().partition(":")
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid or uid)
    (container,) = pod["containers"]
    assert container["args"] == exec_form(of(stages()[-1], "CMD")[0])
    assert 8443 in {p["containerPort"] for p in container["ports"]}


# --- build context --------------------------------------------------------------------


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def excluded(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        regex = re.compile(fnmatch.translate(body).replace(".*", "[^/]*"))
        if body.startswith("**/"):
            tail = re.compile(fnmatch.translate(body[3:]).replace(".*", "[^/]*"))
            hit = any(tail.match(c.split("/")[-1]) or tail.match(c) for c in candidates)
        else:
            hit = any(regex.match(c) for c in candidates)
        if hit:
            verdict = not negate
    return verdict


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "tests/unit/test_dockerfile.py",
        "manifests/base/deployment.yaml",
        ".mypy_cache/3.11/x.json",
        ".pytest_cache/v/cache",
        "webhook/__pycache__/cli.cpython-311.pyc",
        "build/lib/webhook/cli.py",
        "schemagate.egg-info/PKG-INFO",
        ".run/tls/tls.key",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert excluded(path)


def test_dockerignore_keeps_what_the_build_copies() -> None:
    builder = stages()[0]
    sources = copy_sources(builder)
    assert {"pyproject.toml", "webhook", "certs"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY source {source} does not exist"
        assert not excluded(source), f"{source} is excluded by .dockerignore"
    assert not excluded("webhook/cli.py")
    assert not excluded("certs/__init__.py")


# --- the wheel and the venv (component: builds and installs) --------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The builder's wheel, compiled, of exactly the files the Dockerfile copies into /src:
    built with this venv's setuptools and mypy in place of the build venv's."""
    work = tmp_path_factory.mktemp("image")
    src = work / "src"
    src.mkdir()
    for source in copy_sources(stages()[0]):
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, src / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / source)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "--wheel-dir",
            str(work / "wheels"),
            ".",
        ],
        cwd=src,
        env={**os.environ, "SCHEMAGATE_COMPILE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout}\n{result.stderr}"
    (built,) = (work / "wheels").glob("schemagate-*.whl")
    return built


@pytest.mark.component
def test_wheel_holds_the_packages_and_the_entry_point(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert "webhook/cli.py" in names
    assert "certs/__init__.py" in names
    assert not [n for n in names if n.startswith("tests/")]
    assert re.search(r"^schemagate\s*=\s*webhook\.cli:main$", scripts, re.M)
    # The core compiled (setup.py), beside its sources; the edges as Python only.
    extensions = {n.split(".")[0] for n in names if n.endswith(".so")}
    assert {"webhook/decide", "webhook/review", "webhook/tools/flyway"} <= extensions
    assert "webhook/app" not in extensions


@pytest.mark.component
def test_venv_built_like_the_image_runs_the_entry_point(wheel: Path) -> None:
    """The builder's steps: a venv without pip, the lock installed into it with
    --require-hashes, the wheel with --no-deps; then the ENTRYPOINT.

    Dependencies come from the package index alone, as in an image build (this machine's
    pip configuration is set aside; pip's cache makes repeated runs fast).
    """
    venv = wheel.parent.parent / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CONFIG_FILE": os.devnull,
    }
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
    for args in (
        ["--no-deps", "--require-hashes", "--only-binary", ":all:", "-r", str(ROOT / LOCK)],
        ["--no-deps", str(wheel)],
    ):
        install = subprocess.run(
            [*pip, "--quiet", *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=environment,
        )
        assert install.returncode == 0, f"pip install failed:\n{install.stderr}"
    assert not (venv / "bin" / "pip").exists()
    no_pip = subprocess.run([str(venv / "bin" / "python"), "-c", "import pip"], check=False)
    assert no_pip.returncode != 0, "the venv must not contain pip"
    # Run as the image does: no bytecode writes, from a directory with no sources in it.
    run_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": ""}
    for args in (["--help"], ["serve", "--help"]):
        result = subprocess.run(
            [str(venv / "bin" / "schemagate"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=wheel.parent,
            env=run_env,
        )
        assert result.returncode == 0, f"schemagate {' '.join(args)} failed:\n{result.stderr}"
        assert "usage: schemagate" in result.stdout
