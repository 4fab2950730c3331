"""The real migration tools, installed by the tests themselves, idempotently and cached.

npm packages go into one prefix under ~/.cache/schemagate/tools/npm (reinstalled only when
the pinned set changes); Debian packages are installed with apt-get when their binary is
missing (as root; otherwise the failure says what to install). A tool that cannot be had
is a test failure with the reason, never a skip.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "schemagate" / "tools"
NPM_PACKAGES = (
    "@dbmate/linux-x64@2.36.0",
    "knex@3.3.0",
    "pg@8.23.1",
    "mysql2@3.24.5",
    "node-pg-migrate@9.0.0",
    "sequelize@6.37.8",
    "sequelize-cli@6.6.5",
    "typeorm@1.1.1",
)
INSTALL_SECONDS = 600


def npm_prefix() -> Path:
    """The prefix holding NPM_PACKAGES, installing them on first use."""
    prefix = CACHE / "npm"
    prefix.mkdir(parents=True, exist_ok=True)
    marker = prefix / "installed.txt"
    wanted = "\n".join(NPM_PACKAGES) + "\n"
    with (prefix / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists() or marker.read_text() != wanted:
            npm = apt_binary("npm", "npm")
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), *NPM_PACKAGES],
                capture_output=True,
                text=True,
                timeout=INSTALL_SECONDS,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"npm install failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
                )
            marker.write_text(wanted)
    return prefix


def npm_bin(name: str) -> str:
    path = npm_prefix() / "node_modules" / ".bin" / name
    if not path.exists():
        raise RuntimeError(f"{name} is not in {path.parent} after npm install")
    return str(path)


def dbmate() -> str:
    path = npm_prefix() / "node_modules" / "@dbmate" / "linux-x64" / "bin" / "dbmate"
    if not path.exists():
        raise RuntimeError(f"dbmate is not at {path} after npm install of @dbmate/linux-x64")
    return str(path)


def apt_binary(binary: str, package: str) -> str:
    """`binary` from PATH, installing the Debian `package` first when it is missing."""
    apt_install(package, lambda: shutil.which(binary) is not None)
    found = shutil.which(binary)
    assert found is not None
    return found


def apt_perl_module(module: str, package: str) -> None:
    """The Perl `module` (a DBI driver sqitch needs), from the Debian `package`."""

    def present() -> bool:
        done = subprocess.run(["perl", f"-M{module}", "-e1"], capture_output=True, check=False)
        return done.returncode == 0

    apt_install(package, present)


def apt_install(package: str, present: Callable[[], bool]) -> None:
    if present():
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"install the Debian package {package} (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
    done = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        # The package lists may be missing or stale on a fresh machine: refresh once.
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, check=False)
        done = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0 or not present():
        raise RuntimeError(f"apt-get install {package} failed:\n{done.stdout}{done.stderr}")
