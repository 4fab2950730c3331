"""Container images for the node tier, built on this machine and cached by content.

No registry is reachable, so every image a pod runs is made here:

- `busybox`: Debian's busybox-static alone. The pod sandbox ("pause") image and the app
  container of test workloads (`sleep`, `sh`).
- `python`: a Debian bookworm tree from debootstrap laid out like the public
  `python:3.11-slim` image (`/usr/local/bin/python3.11`), the base the Dockerfile names
  through its `PYTHON_IMAGE` argument.
- `tools`: real migration tools from Debian: Alembic (with psycopg2 and PyMySQL) and
  sqitch (with psql).
- `schemagate`: the project's own image, built from its Dockerfile by buildah.

Each image is an OCI archive under `~/.cache/schemagate/images`, named by a hash of
everything it is built from (the recipe below, the package list, the Dockerfile and the
files it copies). A hit costs nothing; a miss builds (seen: 40-90 s for a debootstrap
tree, 70 s for the Dockerfile); the three newest archives of each image are kept.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.controlplane import tail

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SCHEMAGATE_IMAGE_CACHE", Path.home() / ".cache/schemagate/images"))
LOGS = CACHE / "logs"
SUITE = "bookworm"
# The interpreter the public base image has; Debian bookworm's python3.11 matches it.
PYTHON = "python3.11"
TOOLS_PACKAGES = (
    "alembic",  # the command; python3-alembic alone carries only the module
    "python3-psycopg2",
    "python3-pymysql",
    "sqitch",
    "libdbd-pg-perl",
    "postgresql-client",
    "ca-certificates",
)
# The public image also carries the interpreter's C headers, which the Dockerfile's
# builder compiles the core against (mypyc); the builder installs the compiler itself.
PYTHON_PACKAGES = (PYTHON, f"{PYTHON}-venv", f"{PYTHON}-dev", "python3-pip", "ca-certificates")
# Nothing sets it for a process in a container but the image's config.
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageError(RuntimeError):
    """An image could not be built; str() names the step and carries the log's tail."""


@dataclass(frozen=True)
class Image:
    """A built image: its reference on the node and the OCI archive that holds it."""

    ref: str
    archive: Path
    built_seconds: float  # 0 when it came from the cache


def ensure_all() -> dict[str, Image]:
    """Every image of the tier, built where the cache misses, in dependency order."""
    busybox = ensure_busybox()
    python = ensure_python()
    return {
        "busybox": busybox,
        "python": python,
        "tools": ensure_tools(),
        "schemagate": ensure_schemagate(python),
    }


def all_cached() -> bool:
    """Would `ensure_all` build nothing?"""
    keys = {
        "busybox": _busybox_key(),
        "python": _python_key(),
        "tools": _tools_key(),
        "schemagate": _schemagate_key(_ref("python", _python_key())),
    }
    return all(_archive(name, key).is_file() for name, key in keys.items())


def ensure_busybox() -> Image:
    def build(root: Path) -> None:
        binary = shutil.which("busybox") or "/bin/busybox"
        if not Path(binary).is_file():
            raise ImageError("busybox not found: install the Debian package busybox-static")
        (root / "bin").mkdir(parents=True)
        shutil.copy2(binary, root / "bin/busybox")
        _run("busybox --install", ["chroot", str(root), "/bin/busybox", "--install", "-s", "/bin"])
        for folder in ("tmp", "etc", "proc", "sys", "dev"):
            (root / folder).mkdir(exist_ok=True)
        (root / "tmp").chmod(0o1777)
        # A stand-in for pause: the sandbox only needs a process that blocks forever.
        (root / "etc/passwd").write_text("root:x:0:0:root:/:/bin/sh\n")

    return _rootfs_image("busybox", _busybox_key(), build, ["sleep", "2147483647"])


def _busybox_key() -> str:
    binary = shutil.which("busybox") or "/bin/busybox"
    return _key(ensure_busybox, _file_digest(binary) if Path(binary).is_file() else "missing")


def ensure_python() -> Image:
    def build(root: Path) -> None:
        _debootstrap(root, PYTHON_PACKAGES)
        # The public image's layout: the venv made in the Dockerfile's builder stage links
        # to /usr/local/bin/python3.11, which must exist in the final stage too.
        local = root / "usr/local"
        for name in (PYTHON, "python3", "python"):
            _symlink(local / "bin" / name, f"/usr/bin/{PYTHON}")
        _symlink(local / "lib" / PYTHON, f"/usr/lib/{PYTHON}")

    return _rootfs_image("python", _python_key(), build, [PYTHON])


def _python_key() -> str:
    return _key(ensure_python, *PYTHON_PACKAGES)


def ensure_tools() -> Image:
    build = lambda root: _debootstrap(root, TOOLS_PACKAGES)  # noqa: E731
    return _rootfs_image("tools", _tools_key(), build, ["sh"])


def _tools_key() -> str:
    return _key(ensure_tools, *TOOLS_PACKAGES)


def ensure_schemagate(python: Image) -> Image:
    """The project's image from its Dockerfile, on the local look-alike of its base."""
    key = _schemagate_key(python.ref)
    cached = _cached("schemagate", key)
    if cached is not None:
        return cached
    started = time.monotonic()
    log = LOGS / "schemagate.log"
    with tempfile.TemporaryDirectory(prefix="schemagate-image-") as tmp:
        # The package index is reached through a CA only the host trusts: the build sees
        # the host's bundle and a pip.conf naming it (the host's own names other files).
        pip_conf = Path(tmp) / "pip.conf"
        pip_conf.write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        storage = _Storage(Path(tmp) / "storage")
        storage.load(python)
        ref = _ref("schemagate", key)
        storage.buildah(
            "buildah bud",
            "bud",
            "--isolation",
            "chroot",
            "--pull=never",
            "--layers=false",
            "--build-arg",
            f"PYTHON_IMAGE={python.ref}",
            "-v",
            "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro",
            "-v",
            f"{pip_conf}:/etc/pip.conf:ro",
            "-t",
            ref,
            "-f",
            str(REPO / "Dockerfile"),
            str(REPO),
            log=log,
        )
        return _export(storage, "schemagate", key, ref, started)


def _schemagate_key(python_ref: str) -> str:
    return _key(ensure_schemagate, python_ref, *(_file_digest(p) for p in _context_files()))


# --- recipe helpers ------------------------------------------------------------------


def _context_files() -> list[Path]:
    """The Dockerfile, .dockerignore and every file its COPY instructions take from the
    context (what a change to would change the image)."""
    files = [REPO / "Dockerfile", REPO / ".dockerignore"]
    for line in (REPO / "Dockerfile").read_text().splitlines():
        words = shlex.split(line) if line.startswith("COPY ") else []
        if not words or any(w.startswith("--from") for w in words):
            continue
        for source in words[1:-1]:
            if source.startswith("--"):
                continue
            path = REPO / source
            found = [path] if path.is_file() else sorted(path.rglob("*"))
            files += [
                f
                for f in found
                if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"
            ]
    return files


def _debootstrap(root: Path, packages: Sequence[str]) -> None:
    mirror = _mirror()
    _run(
        "debootstrap",
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            SUITE,
            str(root),
            mirror,
        ],
        log=LOGS / f"debootstrap-{root.name}.log",
    )
    # Nothing in a pod runs apt: drop its caches and lists (about a third of the tree).
    for folder in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        shutil.rmtree(root / folder, ignore_errors=True)


def _mirror() -> str:
    """The machine's own Debian archive, as apt is configured to reach it."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            words = line.split()
            if words[:1] == ["deb"]:
                return next(w for w in words[1:] if "://" in w)
    raise ImageError("no Debian archive found in the apt sources, so debootstrap has no mirror")


def _symlink(link: Path, target: str) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)  # Debian's empty /usr/local/lib/python3.11/dist-packages
    elif link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def _key(recipe: Callable[..., Image], *inputs: str) -> str:
    """The cache key: the source of the recipe and of the steps every recipe shares (a
    changed recipe rebuilds), and the recipe's inputs."""
    digest = hashlib.sha256()
    for code in (recipe, _rootfs_image, _debootstrap):
        digest.update(inspect.getsource(code).encode())
    for part in inputs:
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


def _file_digest(path: str | Path) -> str:
    p = Path(path)
    return (
        f"{p.relative_to(REPO) if p.is_relative_to(REPO) else p}:"
        + hashlib.sha256(p.read_bytes()).hexdigest()
    )


# --- building and caching ------------------------------------------------------------


def _archive(name: str, key: str) -> Path:
    return CACHE / f"{name}-{key[:16]}.oci.tar"


def _ref(name: str, key: str) -> str:
    """`localhost/...`: a name no registry serves, and one that CRI keeps as written."""
    repo = "schemagate" if name == "schemagate" else f"schemagate-{name}"
    return f"localhost/{repo}:{key[:16]}"


def _cached(name: str, key: str) -> Image | None:
    archive = _archive(name, key)
    return Image(_ref(name, key), archive, 0.0) if archive.is_file() else None


def _rootfs_image(
    name: str, key: str, build: Callable[[Path], None], command: Sequence[str]
) -> Image:
    cached = _cached(name, key)
    if cached is not None:
        return cached
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"schemagate-{name}-") as tmp:
        root = Path(tmp) / name
        build(root)
        storage = _Storage(Path(tmp) / "storage")
        ref = _ref(name, key)
        log = LOGS / f"{name}.log"
        container = storage.buildah("buildah from", "from", "scratch", log=log).strip()
        mount = storage.buildah("buildah mount", "mount", container, log=log).strip()
        _run("copy the tree", ["cp", "-a", f"{root}/.", mount], log=log)
        storage.buildah("buildah unmount", "unmount", container, log=log)
        storage.buildah(
            "buildah config",
            "config",
            "--env",
            f"PATH={PATH}",
            "--cmd",
            " ".join(command),
            container,
            log=log,
        )
        storage.buildah("buildah commit", "commit", container, ref, log=log)
        return _export(storage, name, key, ref, started)


def _export(storage: _Storage, name: str, key: str, ref: str, started: float) -> Image:
    archive = _archive(name, key)
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    storage.buildah(
        "buildah push", "push", ref, f"oci-archive:{partial}:{ref}", log=LOGS / f"{name}.log"
    )
    partial.rename(archive)  # never leave a half-written archive under the final name
    _prune(name)
    return Image(ref, archive, time.monotonic() - started)


def _prune(name: str, keep: int = 3) -> None:
    """Drop all but the newest archives of an image. Not just the newest one: two
    checkouts of the project (or a test run and `make cluster`) may use two at once."""
    archives = sorted(CACHE.glob(f"{name}-*.oci.tar"), key=lambda p: p.stat().st_mtime)
    for old in archives[:-keep]:
        old.unlink(missing_ok=True)


class _Storage:
    """A throwaway buildah store: the archives are the cache, so nothing else persists."""

    def __init__(self, root: Path) -> None:
        self.args = ["--root", str(root / "root"), "--runroot", str(root / "run")]

    def buildah(self, what: str, *args: str, log: Path) -> str:
        return _run(what, ["buildah", *self.args, *args], log=log)

    def load(self, image: Image) -> None:
        self.buildah("buildah pull", "pull", f"oci-archive:{image.archive}", log=LOGS / "load.log")


def _run(what: str, argv: Iterable[str], log: Path | None = None) -> str:
    argv = list(argv)
    if shutil.which(argv[0]) is None:
        raise ImageError(f"{what}: {argv[0]} not found (Debian package {argv[0]})")
    LOGS.mkdir(parents=True, exist_ok=True)
    log = log or LOGS / "run.log"
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n$ {shlex.join(argv)}\n")
        out.flush()
        done = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=out,
            stdin=subprocess.DEVNULL,
            text=True,
            check=False,
        )
        out.write(done.stdout)
    if done.returncode != 0:
        raise ImageError(
            f"{what} failed (exit {done.returncode}); last lines of {log}:\n{tail(log)}"
        )
    return done.stdout
