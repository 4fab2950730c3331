"""A real, throwaway Kubernetes control plane on loopback: etcd + kube-apiserver (+ KCM).

The binaries come from `build-control-plane.sh` (Kubernetes v1.20.2 built from Debian's
source package, cached under ~/.cache/schemagate/control-plane; etcd from Debian's
`etcd-server`). Everything else is made fresh per run in a state directory: a PKI,
etcd's data, a kubeconfig, the logs. Every process runs in its own process group and
is stopped (TERM, then KILL) by `stop()`, which `ControlPlane` as a context manager
calls on any exit.

Run `.venv/bin/python -m tests.e2e.controlplane` for a cluster to poke at by hand; it
prints the kubeconfig path and stops (cleaning up) on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.lifecycle import Started
from tests.support.net import free_port
from tests.support.pki import CertificateAuthority, key_pem, new_key, public_pem

K8S_VERSION = "v1.20.2"
CACHE = Path(os.environ.get("SCHEMAGATE_CP_CACHE", Path.home() / ".cache/schemagate/control-plane"))
BIN_DIR = CACHE / "bin"
BUILD_SCRIPT = Path(__file__).with_name("build-control-plane.sh")
BUILD_LOG = CACHE / "build.log"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")
SERVICE_CIDR = "10.0.0.0/24"
READY_TIMEOUT = 90.0


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; str() carries the reason and log tail."""


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:])


# --- binaries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path  # these two only run in the node tier (tests/node)
    kubelet: Path
    build_seconds: float  # 0-ish when everything was cached


def binaries_cached() -> bool:
    """Are the binaries there and of the right version, so no build will be needed?"""
    if shutil.which("etcd") is None:
        return False
    for component in COMPONENTS:
        path = BIN_DIR / component
        if not os.access(path, os.X_OK) or _version(path) != f"Kubernetes {K8S_VERSION}":
            return False
    return True


def _version(binary: Path) -> str:
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def ensure_binaries() -> Binaries:
    """Run the build script (a no-op in well under a second when the cache is up to date).

    A missing toolchain, a failed download or a failed compile raises `ControlPlaneError`
    with the tail of the build log: a failure of the tier, never a skip.
    """
    started = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    if shutil.which("bash") is None:
        raise ControlPlaneError("bash is needed to run build-control-plane.sh")
    with BUILD_LOG.open("w", encoding="utf-8") as log:
        rc = subprocess.run(
            ["bash", str(BUILD_SCRIPT), *COMPONENTS],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        ).returncode
    if rc != 0:
        raise ControlPlaneError(
            f"{BUILD_SCRIPT.name} failed (exit {rc}); last lines of {BUILD_LOG}:\n{tail(BUILD_LOG)}"
        )
    etcd = shutil.which("etcd")
    if etcd is None:
        raise ControlPlaneError("no etcd on PATH after the build (Debian package etcd-server)")
    found = {c: BIN_DIR / c for c in COMPONENTS}
    for name, path in found.items():
        if not os.access(path, os.X_OK):
            raise ControlPlaneError(f"the build reported success but {path} is missing")
        version = _version(path)
        if version != f"Kubernetes {K8S_VERSION}":
            raise ControlPlaneError(f"{name} reports {version!r}, expected {K8S_VERSION}")
    return Binaries(
        Path(etcd),
        found["kube-apiserver"],
        found["kube-controller-manager"],
        found["kube-scheduler"],
        found["kubelet"],
        time.monotonic() - started,
    )


# --- processes -------------------------------------------------------------------------


@dataclass
class Process:
    """A child in its own process group, its output in a log file."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log_file: IO[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        self._log_file = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,  # own process group: stop() reaches every descendant
            preexec_fn=_die_with_parent,
        )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        popen, self.popen = self.popen, None
        if popen is not None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(popen.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    popen.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            # Reap stray group members (the group id is the leader's pid).
            with suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def failure(self, what: str) -> ControlPlaneError:
        code = self.popen.returncode if self.popen is not None else None
        return ControlPlaneError(
            f"{self.name} {what} (exit code {code}); last lines of {self.log}:\n{tail(self.log)}"
        )


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the test process dies, however it dies
    (SIGKILL, a closed pipe), so no etcd or kube-apiserver outlives an aborted run.

    SIGKILL, not SIGTERM: kube-controller-manager v1.20 without leader election ignores
    SIGTERM, and a kube-apiserver whose etcd is gone can hang in graceful shutdown."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1


# --- the control plane -----------------------------------------------------------------


class ControlPlane(Started):
    """etcd + kube-apiserver (RBAC) on random loopback ports, optionally kube-controller-manager.

    What other tests need is public: `kubeconfig` (admin, system:masters), `server`
    (https://127.0.0.1:PORT), `ca_cert` (the cluster CA file, which signs the API
    server's serving cert and client certs), `ca` (to issue more certs), and
    `user_kubeconfig()` for a client authenticated as someone else (RBAC tests).
    """

    def __init__(
        self,
        binaries: Binaries,
        state_dir: Path | None = None,
        *,
        with_controller_manager: bool = True,
        address: str = "127.0.0.1",
        admission_config: Path | None = None,
    ) -> None:
        """`address`: where the API server listens; the node tier uses its pod network's
        gateway, which the host and the pods both reach."""
        self.binaries = binaries
        self.address = address
        self.with_controller_manager = with_controller_manager
        # --admission-control-config-file: e.g. the client certificate it presents to webhooks
        self.admission_config = admission_config
        self._own_dir = state_dir is None
        # etcd fsyncs on every write; a tmpfs keeps that off the disk (test data only).
        # mkdtemp makes a private (0700) directory with an unpredictable name.
        shm = Path("/dev/shm")
        parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        self.dir = state_dir or Path(tempfile.mkdtemp(prefix="schemagate-e2e-", dir=parent))
        self.pki = self.dir / "pki"
        self.kubeconfig = self.dir / "kubeconfig"
        self.ca_cert = self.pki / "ca.crt"
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self.server = f"https://{address}:{self.apiserver_port}"
        self.ca = CertificateAuthority.create("schemagate-e2e-cluster-ca")
        self.processes: list[Process] = []
        self.start_seconds = 0.0

    # lifecycle

    def start(self) -> None:
        started = time.monotonic()
        try:
            self._write_pki()
            self._write_kubeconfig(self.kubeconfig, self.pki / "admin.crt", self.pki / "admin.key")
            etcd = self._spawn("etcd", self._etcd_argv())
            self._wait_http(etcd, f"http://127.0.0.1:{self.etcd_port}/health", 30.0)
            apiserver = self._spawn("kube-apiserver", self._apiserver_argv())
            self._wait_http(apiserver, f"{self.server}/readyz", READY_TIMEOUT)
            self.start_seconds = time.monotonic() - started
            if self.with_controller_manager:
                self._spawn("kube-controller-manager", self._kcm_argv())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process (newest first) and remove the state dir if we made it."""
        while self.processes:
            self.processes.pop().stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def check_alive(self) -> None:
        for proc in self.processes:
            if not proc.alive():
                raise proc.failure("is not running")

    # helpers for tests

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the cluster CA and authenticates as the admin user."""
        ctx = ssl.create_default_context(cafile=str(self.ca_cert))
        ctx.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")
        return ctx

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig for a client-certificate user (CN=user, O=groups); RBAC applies.

        For a service account: `user_kubeconfig("system:serviceaccount:NS:NAME",
        ["system:serviceaccounts", "system:serviceaccounts:NS"])`.
        """
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in user)
        pair = self.ca.issue(user, organizations=groups)
        cert_path, key_path = self.pki / f"user-{safe}.crt", self.pki / f"user-{safe}.key"
        cert_path.write_bytes(pair.cert_pem)
        key_path.write_bytes(pair.key_pem)
        key_path.chmod(0o600)
        path = self.dir / f"kubeconfig-{safe}"
        self._write_kubeconfig(path, cert_path, key_path)
        return path

    def logs(self) -> dict[str, Path]:
        return {p.name: p.log for p in self.processes}

    # internals

    def _write_pki(self) -> None:
        self.pki.mkdir(parents=True, exist_ok=True)
        self.ca_cert.write_bytes(self.ca.cert_pem)
        files = {
            "apiserver": self.ca.issue(
                "kube-apiserver",
                usage=ExtendedKeyUsageOID.SERVER_AUTH,
                dns_names=(
                    "localhost",
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                ),
                ips=tuple(dict.fromkeys(("127.0.0.1", "10.0.0.1", self.address))),
            ),
            "admin": self.ca.issue("admin", organizations=("system:masters",)),
            # How the API server authenticates to a kubelet (logs, exec) in the node tier.
            "kubelet-client": self.ca.issue(
                "kube-apiserver-kubelet-client", organizations=("system:masters",)
            ),
        }
        for name, pair in files.items():
            (self.pki / f"{name}.crt").write_bytes(pair.cert_pem)
            (self.pki / f"{name}.key").write_bytes(pair.key_pem)
        sa = new_key()
        (self.pki / "sa.key").write_bytes(key_pem(sa))
        (self.pki / "sa.pub").write_bytes(public_pem(sa))
        for key_file in self.pki.glob("*.key"):
            key_file.chmod(0o600)

    def _write_kubeconfig(self, path: Path, cert: Path, key: Path) -> None:
        path.write_text(
            "apiVersion: v1\n"
            "kind: Config\n"
            "clusters:\n"
            "- name: e2e\n"
            f"  cluster: {{server: '{self.server}', certificate-authority: '{self.ca_cert}'}}\n"
            "users:\n"
            "- name: user\n"
            f"  user: {{client-certificate: '{cert}', client-key: '{key}'}}\n"
            "contexts:\n"
            "- name: e2e\n"
            "  context: {cluster: e2e, user: user}\n"
            "current-context: e2e\n",
            encoding="utf-8",
        )
        path.chmod(0o600)

    def _spawn(self, name: str, argv: list[str]) -> Process:
        # etcd reads ETCD_* variables as flags: hand it an environment without them.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        proc = Process(name, argv, self.dir / f"{name}.log", env)
        self.processes.append(proc)
        proc.start()
        return proc

    def _wait_http(self, proc: Process, url: str, timeout: float) -> None:
        ctx = self.ssl_context() if url.startswith("https") else None
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not proc.alive():
                raise proc.failure("exited while starting")
            try:
                with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (OSError, ssl.SSLError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise proc.failure(f"was not ready at {url} within {timeout:.0f} s ({last})")

    def _etcd_argv(self) -> list[str]:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        return [
            str(self.binaries.etcd),
            "--name=e2e",
            f"--data-dir={self.dir / 'etcd-data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=e2e={peer}",
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        pki = self.pki
        return [
            str(self.binaries.kube_apiserver),
            f"--bind-address={self.address}",
            f"--advertise-address={self.address}",
            f"--secure-port={self.apiserver_port}",
            "--insecure-port=0",
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--cert-dir={self.dir / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={self.ca_cert}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # with --advertise-address=127.0.0.1 the endpoint reconciler only complains
            "--endpoint-reconciler-type=none",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
            *(
                [f"--admission-control-config-file={self.admission_config}"]
                if self.admission_config
                else []
            ),
            "--profiling=false",
            # Call a webhook Service at its endpoints' pod addresses: no kube-proxy routes
            # ClusterIPs here (the node tier's webhook runs as pods).
            "--enable-aggregator-routing=true",
            f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _kcm_argv(self) -> list[str]:
        pki = self.pki
        return [
            str(self.binaries.kube_controller_manager),
            f"--kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--port=0",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={self.ca_cert}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route,"
            "-attachdetach,-persistentvolume-binder,-persistentvolume-expander",
        ]


def main() -> int:
    """Start a cluster for manual use and keep it until Ctrl-C."""
    binaries = ensure_binaries()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop cleanly on TERM as well
    with ControlPlane(binaries) as cp:
        print(f"ready in {cp.start_seconds:.1f} s")
        print(f"export KUBECONFIG={cp.kubeconfig}")
        print("Ctrl-C stops it and removes", cp.dir)
        try:
            while True:
                time.sleep(1)
                cp.check_alive()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
