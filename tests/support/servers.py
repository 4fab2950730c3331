"""Throwaway PostgreSQL and MariaDB servers: a temp data dir, loopback only, a free port.

Both run from the machine's own binaries (`initdb`/`pg_ctl` of the postgresql package,
`mariadb-install-db`/`mariadbd` of mariadb-server). A missing binary is a failure that
says what to install, never a skip. As root, PostgreSQL runs as the `postgres` user
(initdb refuses root) from a directory that user can reach.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import pymysql

from tests.support.net import free_port

# Awkward on purpose: every URL carries it percent-encoded, and no message may show it.
PASSWORD = "p@ss:w/rd%S3cret"
START_SECONDS = 60


def _binary(name: str, package: str, *extra_dirs: str) -> str:
    found = shutil.which(name) or next(
        (str(Path(d) / name) for d in extra_dirs if (Path(d) / name).is_file()), None
    )
    if found is None:
        raise RuntimeError(f"{name} not found: install the Debian package {package}")
    return found


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


class PostgresServer:
    user = "postgres"

    def __init__(self, host: str = "127.0.0.1", clients: str | None = None) -> None:
        """`host`: the address to listen on; `clients`: a further CIDR allowed to log in
        (the node tier's pods), beside loopback."""
        bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        self._initdb = _binary("initdb", "postgresql", *map(str, bindirs))
        self._pg_ctl = _binary("pg_ctl", "postgresql", *map(str, bindirs))
        # Not under pytest's tmp: that is 0700 root, out of reach of the postgres user.
        self.root = Path(tempfile.mkdtemp(prefix="schemagate-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.host = host
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            os.chown(self.root, pwd.getpwnam("postgres").pw_uid, -1)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        os.chmod(pwfile, 0o644)
        try:
            self._run(self._initdb, "-D", str(self.data), "-U", self.user,
                      f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                      "-E", "UTF8", "--locale=C.UTF-8", "-N", "--no-instructions")  # fmt: skip
        except RuntimeError:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        pwfile.unlink()
        if clients is not None:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {clients} scram-sha-256\n")

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self._as, *argv], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed:\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses={self.host} -c timezone=UTC "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=50"
        )
        self._run(
            self._pg_ctl,
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(START_SECONDS),
            "start",
        )

    def stop(self) -> None:
        self._run(self._pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str, password: str = PASSWORD) -> str:
        secret = quote(password, safe="")
        return f"postgresql://{self.user}:{secret}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=PASSWORD,
            dbname=database,
            autocommit=True,
            connect_timeout=5,
        )

    def create_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')


class MariaDBServer:
    user = "gate"

    def __init__(self, root: Path, host: str = "127.0.0.1") -> None:
        """`host`: the address to listen on (the node tier's pods reach its gateway)."""
        self.host = host
        self._install = _binary("mariadb-install-db", "mariadb-server")
        self._mariadbd = _binary("mariadbd", "mariadb-server", "/usr/sbin")
        self.root = root
        self.data = root / "data"
        self.socket = root / "mysqld.sock"
        self.log = root / "server.log"
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._as_root = ["--user=root"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [
                self._install,
                "--no-defaults",
                f"--datadir={self.data}",
                *self._as_root,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--innodb-log-file-size=8M",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed:\n{done.stdout}{done.stderr}")

    def add_user(self) -> None:
        """The account the webhook connects as, with the awkward password."""
        with self.admin() as conn, conn.cursor() as cursor:
            cursor.execute("CREATE USER 'gate'@'%%' IDENTIFIED BY %s", (PASSWORD,))
            cursor.execute("GRANT ALL ON *.* TO 'gate'@'%'")

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                self._mariadbd,
                "--no-defaults",
                f"--datadir={self.data}",
                *self._as_root,
                f"--port={self.port}",
                f"--bind-address={self.host}",
                f"--socket={self.socket}",
                f"--pid-file={self.root / 'mysqld.pid'}",
                f"--log-error={self.log}",
                "--skip-log-bin",
                "--skip-name-resolve",
                "--innodb-log-file-size=8M",
                "--innodb-buffer-pool-size=32M",
                "--max-connections=100",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"mariadbd exited with {self._proc.returncode}:\n{_tail(self.log)}"
                )
            try:
                self.admin().close()
                return
            except pymysql.err.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"mariadbd not ready in {START_SECONDS} s:\n{_tail(self.log)}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    close = stop

    def admin(self) -> pymysql.connections.Connection:
        return pymysql.connect(
            unix_socket=str(self.socket), user="root", autocommit=True, connect_timeout=5
        )

    def url(self, database: str, password: str = PASSWORD) -> str:
        credentials = f"{self.user}:{quote(password, safe='')}"
        return f"mysql://{credentials}@{self.host}:{self.port}/{database}"

    def connect(self, database: str) -> pymysql.connections.Connection:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=PASSWORD,
            database=database,
            autocommit=True,
            connect_timeout=5,
            init_command="SET time_zone = '+00:00'",
        )

    def create_database(self, name: str) -> None:
        with self.admin() as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
