"""Start-up errors: the server stops at once with one line naming the input at fault."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from certs.files import issue_to_dir
from tests.server import SCHEMAGATE, Served
from tests.support.net import free_port

pytestmark = pytest.mark.component


def _serve(
    config: Path, cert: Path, key: Path, *, port: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(SCHEMAGATE),
            "serve",
            "--config",
            str(config),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--host",
            "127.0.0.1",
            *(["--port", port] if port else []),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def inputs(tmp_path: Path, tls_dir: Path) -> dict[str, Path]:
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    other = tmp_path / "other"
    issue_to_dir(other, ["localhost"], [])
    shutil.copy(tls_dir / "tls.crt", tmp_path / "tls.crt")
    text = tmp_path / "text.crt"
    text.write_text("Certificate:\n    Data:\n        Version: 3 (0x2)\n")
    return {
        "config": config,
        "cert": tls_dir / "tls.crt",
        "key": tls_dir / "tls.key",
        "other_key": other / "tls.key",
        "text_cert": text,
        "tmp": tmp_path,
    }


Case = Callable[[dict[str, Path]], tuple[dict[str, object], str]]


def _port_env(p: dict[str, Path]) -> tuple[dict[str, object], str]:
    return (
        {"port": "", "env": {"SCHEMAGATE_PORT": "abc"}},
        "schemagate: --port/SCHEMAGATE_PORT: 'abc' is not a port number (1-65535)",
    )


def _mismatched_key(p: dict[str, Path]) -> tuple[dict[str, object], str]:
    return (
        {"key": p["other_key"]},
        f"schemagate: {p['other_key']}: the private key does not match the certificate {p['cert']}",
    )


def _not_pem(p: dict[str, Path]) -> tuple[dict[str, object], str]:
    return ({"cert": p["text_cert"]}, f"schemagate: {p['text_cert']}: not a PEM certificate")


def _key_not_pem(p: dict[str, Path]) -> tuple[dict[str, object], str]:
    return ({"key": p["cert"]}, f"schemagate: {p['cert']}: not an unencrypted PEM private key")


def _bad_yaml(p: dict[str, Path]) -> tuple[dict[str, object], str]:
    bad = p["tmp"] / "bad.yaml"
    bad.write_text("lookup:\n  timeout_seconds: 2\n cache_ttl_seconds: 5\n")
    return (
        {"config": bad},
        f"schemagate: config error: config {bad} is not valid YAML at line 3, column 2: "
        "expected <block end>, but found '<block mapping start>'",
    )


def _missing_sqlite(p: dict[str, Path]) -> tuple[dict[str, object], str]:
    config = p["tmp"] / "sqlite.yaml"
    config.write_text(
        "databases:\n  orders: {url: 'sqlite:///nonexistent.db', tool: flyway, "
        "namespaces: [shop]}\n"
    )
    return (
        {"config": config},
        "schemagate: config error: databases.orders.url: SQLite file /nonexistent.db does not "
        "exist (the webhook opens it read-only and never creates it)",
    )


@pytest.mark.parametrize(
    "case", [_port_env, _mismatched_key, _not_pem, _key_not_pem, _bad_yaml, _missing_sqlite]
)
def test_one_line_naming_the_input(inputs: dict[str, Path], case: Case) -> None:
    given, message = case(inputs)
    proc = _serve(
        given.get("config", inputs["config"]),  # type: ignore[arg-type]
        given.get("cert", inputs["cert"]),  # type: ignore[arg-type]
        given.get("key", inputs["key"]),  # type: ignore[arg-type]
        port=given.get("port", str(free_port())),  # type: ignore[arg-type]
        env=given.get("env"),  # type: ignore[arg-type]
    )
    assert (proc.returncode, proc.stderr.strip(), proc.stdout) == (2, message, "")


def test_a_busy_port_names_the_address(inputs: dict[str, Path]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _serve(inputs["config"], inputs["cert"], inputs["key"], port=str(port))
    assert (proc.returncode, proc.stderr) == (
        2,
        f"schemagate: cannot listen on 127.0.0.1:{port}: Address already in use\n",
    )


def test_tls_wait_serves_once_the_files_appear(inputs: dict[str, Path], tls_dir: Path) -> None:
    """A Secret volume marked optional is mounted empty until the bootstrap has created
    the Secret: the server waits for it, says so, and serves once kubelet fills it in."""
    later = inputs["tmp"] / "mounted"
    later.mkdir()
    log = inputs["tmp"] / "serve.log"
    port = free_port()
    proc = subprocess.Popen(
        [
            str(SCHEMAGATE),
            "serve",
            "--config",
            str(inputs["config"]),
            "--tls-cert",
            str(later / "tls.crt"),
            "--tls-key",
            str(later / "tls.key"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "SCHEMAGATE_TLS_WAIT": "30"},
    )
    try:
        deadline = time.monotonic() + 10
        while "waiting up to 30 s for" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        shutil.copy(tls_dir / "tls.key", later / "tls.key")
        shutil.copy(tls_dir / "tls.crt", later / "tls.crt")
        served = Served(port, tls_dir, log, proc)
        while True:
            try:
                assert served.request("GET", "/healthz") == (200, b"ok\n")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        text = log.read_text()
        assert (
            f"waiting up to 30 s for {later / 'tls.crt'} and {later / 'tls.key'}: not there yet"
            in text
        )
        assert "serving certificate files found" in text
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def test_tls_wait_gives_up_with_one_line(inputs: dict[str, Path]) -> None:
    absent = inputs["tmp"] / "absent"
    proc = _serve(
        inputs["config"],
        absent / "tls.crt",
        absent / "tls.key",
        port=str(free_port()),
        env={"SCHEMAGATE_TLS_WAIT": "1"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"schemagate: {absent / 'tls.crt'}: no such file after waiting 1 s"
    )
