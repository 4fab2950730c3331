"""A real node on this machine: a pod network, containerd + runc, kubelet and kube-scheduler.

The pod network is a Linux bridge with the gateway address and a /24 of pod addresses
that this run makes and removes. Every pod address lives in a network namespace that
containerd's CNI plugins made for this run; nothing is sent anywhere else. The control
plane of this tier listens on the gateway, so the host (kubectl, the tests) and the pods
reach it at the same address, and one DNAT rule makes the `kubernetes` Service's
ClusterIP lead there: the one thing kube-proxy would have to do for in-cluster clients.

The kubelet's node address is the gateway too (it refuses a loopback one), so the API
server reaches the kubelet and `kubectl logs` and `kubectl exec` work.

Pitfalls met on this kind of machine, each handled where noted: containerd must restrict
oom_score_adj (the pause container asks for -998 and is refused); runc, not crun
(cgroup v1 hybrid); the node registers with the not-ready taint and nothing removes it
(no node-lifecycle controller); the sandbox image must be local; containerd runs in its
own session and is stopped last, after its tasks are killed, so no shim outlives a run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

from tests.e2e.controlplane import Binaries, ControlPlane, ControlPlaneError, Process
from tests.node.images import Image
from tests.support.lifecycle import Started
from tests.support.net import free_port

GATEWAY = "10.244.7.1"
SUBNET = "10.244.7.0/24"
BRIDGE = "sgbr0"
SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service: the first address of the service range
NODE_NAME = "node-1"
RULE_COMMENT = "schemagate-node-tier"
LOCK = Path("/run/lock/schemagate-node.lock")
READY_TIMEOUT = 90.0

CONTAINERD_CONFIG = """\
version = 2
root = "{state}/containerd/root"
state = "{state}/containerd/state"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox}"
  # The pause container asks for oom_score_adj -998, which this machine refuses.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{state}/cni"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    # runc: crun refuses this machine's cgroup v1 "hybrid" layout.
    BinaryName = "{runc}"
"""

PACKAGES = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "ip": "iproute2",
    "iptables": "iptables",
}


class NodeError(ControlPlaneError):
    """The node could not start or stop cleanly; str() says which part and why."""


def _which(name: str) -> str:
    found = name if name.startswith("/") and os.access(name, os.X_OK) else shutil.which(name)
    if not found:
        raise NodeError(f"{name} not found: install the Debian package {PACKAGES[name]}")
    return found


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


class PodNetwork:
    """The bridge with the gateway address, and the ClusterIP rule for the API server.

    Made before the control plane starts (it listens on the gateway) and removed last.
    A leftover of a run that was killed is removed first. `LOCK` keeps two node tiers on
    one machine apart: the second waits for the first.
    """

    def __init__(self) -> None:
        self._lock: IO[str] | None = None
        self._rules: list[list[str]] = []

    def up(self) -> None:
        for tool in ("ip", "iptables", "/usr/lib/cni/bridge"):
            _which(tool)
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        self._lock = LOCK.open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._remove_leftovers()
        _sh("ip", "link", "add", BRIDGE, "type", "bridge")
        _sh("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        _sh("ip", "link", "set", BRIDGE, "up")

    def route_service(self, apiserver_port: int) -> None:
        """In-cluster clients dial https://10.0.0.1:443: send that to the API server."""
        rule = [
            "PREROUTING",
            "-d",
            f"{SERVICE_IP}/32",
            "-p",
            "tcp",
            "--dport",
            "443",
            "-m",
            "comment",
            "--comment",
            RULE_COMMENT,
            "-j",
            "DNAT",
            "--to-destination",
            f"{GATEWAY}:{apiserver_port}",
        ]
        _sh("iptables", "-t", "nat", "-A", *rule)
        self._rules.append(rule)

    def down(self) -> None:
        for rule in self._rules:
            _sh("iptables", "-t", "nat", "-D", *rule, check=False)
        self._rules.clear()
        _sh("ip", "link", "del", BRIDGE, check=False)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _remove_leftovers(self) -> None:
        listed = _sh("iptables", "-t", "nat", "-S", "PREROUTING").stdout.splitlines()
        for line in listed:
            if RULE_COMMENT in line and line.startswith("-A "):
                _sh("iptables", "-t", "nat", "-D", *line.split()[1:], check=False)
        if _sh("ip", "link", "show", BRIDGE, check=False).returncode == 0:
            _sh("ip", "link", "del", BRIDGE)


class Node(Started):
    """containerd, kubelet and kube-scheduler for one control plane, all state under `dir`."""

    def __init__(self, cluster: ControlPlane, binaries: Binaries, images: Sequence[Image]) -> None:
        self.cluster = cluster
        self.binaries = binaries
        self.images = list(images)
        self.dir = Path(tempfile.mkdtemp(prefix="schemagate-node-"))
        self.socket = self.dir / "containerd.sock"
        self.processes: list[Process] = []
        self.start_seconds = 0.0
        self._netns_before: set[str] = set()

    @property
    def pod_logs(self) -> Path:
        """Where the kubelet keeps container logs: NS_POD_UID/CONTAINER/N.log."""
        return Path("/var/log/pods")

    def start(self) -> None:
        started = time.monotonic()
        try:
            self._netns_before = set(_netns())
            sandbox = self.images[0].ref  # busybox: a process that blocks is all pause does
            self._write_containerd_config(sandbox)
            self._write_cni_config()
            containerd = self._spawn(
                "containerd", [_which("containerd"), "--config", str(self.dir / "containerd.toml")]
            )
            self._wait(containerd, "containerd's socket", self.socket.exists, 30.0)
            # The sandbox image first; the others while the kubelet registers (~15 s).
            sandbox_image, *others = self.images
            self.ctr("images", "import", str(sandbox_image.archive))
            with ThreadPoolExecutor(max_workers=1) as pool:
                imports = [
                    pool.submit(self.ctr, "images", "import", str(i.archive)) for i in others
                ]
                self._spawn("kube-scheduler", self._scheduler_argv())
                kubelet = self._spawn("kubelet", self._kubelet_argv())
                self._wait(kubelet, f"node {NODE_NAME} Ready", self._ready, READY_TIMEOUT)
                for done in imports:
                    done.result()
            # Nothing removes the not-ready taint here (no node-lifecycle controller).
            self._kubectl("taint", "node", NODE_NAME, "node.kubernetes.io/not-ready:NoSchedule-")
            self.start_seconds = time.monotonic() - started
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """kubelet and scheduler, then every container, then containerd; then the state."""
        by_name = {p.name: p for p in self.processes}
        for name in ("kubelet", "kube-scheduler"):
            if name in by_name:
                by_name[name].stop()
        if "containerd" in by_name and by_name["containerd"].alive():
            self._kill_containers()
        if "containerd" in by_name:
            by_name["containerd"].stop()
        self.processes.clear()
        for mount in reversed(_mounts_under(self.dir)):
            _sh("umount", "-l", mount, check=False)
        for name in set(_netns()) - self._netns_before:
            _sh("ip", "netns", "delete", name, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def check_alive(self) -> None:
        for proc in self.processes:
            if not proc.alive():
                raise proc.failure("is not running")

    def ctr(self, *args: str) -> str:
        done = _sh(_which("ctr"), "--address", str(self.socket), "--namespace", "k8s.io", *args)
        return done.stdout

    def tag(self, image: Image, ref: str) -> None:
        """An extra name for an imported image (e.g. the fixed tag an overlay names)."""
        self.ctr("images", "tag", "--force", image.ref, ref)

    # internals

    def _write_containerd_config(self, sandbox: str) -> None:
        text = CONTAINERD_CONFIG.format(
            state=self.dir, socket=self.socket, sandbox=sandbox, runc=_which("runc")
        )
        (self.dir / "containerd.toml").write_text(text)

    def _write_cni_config(self) -> None:
        # The bridge plugin joins the existing bridge (PodNetwork) and host-local hands
        # out the subnet; allocations live in this run's state, not in /var/lib/cni.
        conflist = {
            "cniVersion": "0.4.0",
            "name": "pods",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.dir / "cni-ipam"),
                    },
                }
            ],
        }
        (self.dir / "cni").mkdir()
        (self.dir / "cni" / "10-pods.conflist").write_text(json.dumps(conflist))

    def _scheduler_argv(self) -> list[str]:
        return [
            str(self.binaries.kube_scheduler),
            f"--kubeconfig={self.cluster.kubeconfig}",
            "--leader-elect=false",
            "--port=0",
            "--secure-port=0",
        ]

    def _kubelet_argv(self) -> list[str]:
        pki = self.cluster.pki
        return [
            str(self.binaries.kubelet),
            f"--kubeconfig={self.cluster.kubeconfig}",
            "--container-runtime=remote",
            f"--container-runtime-endpoint=unix://{self.socket}",
            "--cgroup-driver=cgroupfs",
            "--cgroups-per-qos=false",
            "--enforce-node-allocatable=",
            "--fail-swap-on=false",
            f"--root-dir={self.dir / 'kubelet'}",
            f"--cert-dir={self.dir / 'kubelet-pki'}",
            f"--hostname-override={NODE_NAME}",
            # The gateway: the API server reaches the kubelet there (logs, exec).
            f"--node-ip={GATEWAY}",
            f"--address={GATEWAY}",
            f"--port={free_port()}",
            "--read-only-port=0",
            "--healthz-port=0",
            # Only the API server (its kubelet client certificate) may call the kubelet.
            "--anonymous-auth=false",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authentication-token-webhook=false",
            "--authorization-mode=AlwaysAllow",
            # Test images are local: never collect them, never evict for disk pressure.
            "--image-gc-high-threshold=100",
            "--eviction-hard=",
            f"--pod-infra-container-image={self.images[0].ref}",
            # Mounted Secrets and ConfigMaps are refreshed on each pod sync (1 min by
            # default): the serving pods wait for their TLS Secret, run-once pods for
            # their marker, and a test need not wait a minute for either.
            "--sync-frequency=5s",
            "--v=1",
        ]

    def _spawn(self, name: str, argv: list[str]) -> Process:
        proc = Process(name, argv, self.dir / f"{name}.log")
        self.processes.append(proc)
        proc.start()
        return proc

    def _kubectl(self, *args: str) -> str:
        done = _sh("kubectl", f"--kubeconfig={self.cluster.kubeconfig}", *args)
        return done.stdout

    def _ready(self) -> bool:
        done = _sh(
            "kubectl",
            f"--kubeconfig={self.cluster.kubeconfig}",
            "get",
            "node",
            NODE_NAME,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False,
        )
        return done.stdout.strip() == "True"

    def _wait(self, proc: Process, what: str, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise proc.failure(f"exited before {what}")
            if done():
                return
            time.sleep(0.5)
        raise proc.failure(f"no {what} within {timeout:.0f} s")

    def _kill_containers(self) -> None:
        with contextlib.suppress(NodeError):
            for line in self.ctr("tasks", "list", "--quiet").split():
                _sh(
                    _which("ctr"),
                    "--address",
                    str(self.socket),
                    "-n",
                    "k8s.io",
                    "tasks",
                    "kill",
                    "--signal",
                    "KILL",
                    line,
                    check=False,
                )
            deadline = time.monotonic() + 15
            while self.ctr("tasks", "list", "--quiet").split() and time.monotonic() < deadline:
                time.sleep(0.2)


def _netns() -> list[str]:
    return [
        line.split()[0]
        for line in _sh("ip", "netns", "list", check=False).stdout.splitlines()
        if line.strip()
    ]


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder.resolve()) + "/"
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts]
    return sorted(p for p in points if p.startswith(prefix))
