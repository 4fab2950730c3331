"""Manifests the node tier applies, and what it reads back from the pods they run.

The app container of every test workload is the `tools` image (Debian's Alembic): the
injected init container borrows its image, environment and mounts, as it would borrow a
real app's. The migrations come from tests/node/alembic through a ConfigMap.

The app records what it found when it started: it reads `alembic_version` once and logs
`app found schema <rev>`, so "the migration finished before the app started" is read
from the app's own observation of the database, next to the kubelet's timestamps.
"""

from __future__ import annotations

import datetime
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg

from tests.e2e.harness import Kubectl, wait_for
from tests.node.stack import NAMESPACE
from tests.support.servers import MariaDBServer

ALEMBIC = Path(__file__).with_name("alembic")
# Each release's migrations: a prefix of this chain (r0003 fails).
CHAIN = ("r0001_orders.py", "r0002_status.py", "r0003_broken.py")
MIGRATE = "schemagate-migrate"
LABEL = "schemagate.dev/migrate"
# The session's namespaces are numbered from this one counter (the `namespace` fixture
# and the tests that name their own), so no two tests share one.
NAMESPACE_IDS = itertools.count(1)

# SQLAlchemy (Alembic's own dependency in the image) speaks to PostgreSQL (psycopg2)
# and MariaDB (mysql+pymysql://) alike.
APP_SCRIPT = """\
import os, time, sqlalchemy
engine = sqlalchemy.create_engine(os.environ["DATABASE_URL"])
found = "none"
with engine.connect() as conn:
    if sqlalchemy.inspect(conn).has_table("alembic_version"):
        rows = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version"))
        found = ",".join(sorted(r[0] for r in rows)) or "none"
engine.dispose()
print("app found schema", found, flush=True)
while True:
    time.sleep(3600)
"""


def secret(name: str, namespace: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"url": url},
    }


def migrations(name: str, namespace: str, revisions: int) -> dict[str, Any]:
    """A ConfigMap with the Alembic project and the first `revisions` migrations."""
    files = ["alembic.ini", "env.py", *CHAIN[:revisions]]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {f: (ALEMBIC / f).read_text() for f in files},
    }


def migrations_volume(configmap: Mapping[str, Any]) -> dict[str, Any]:
    """ConfigMap keys are flat: `items` puts the revisions under versions/."""
    items = [
        {"key": key, "path": key if not key.startswith("r0") else f"versions/{key}"}
        for key in configmap["data"]
    ]
    return {
        "name": "migrations",
        "configMap": {"name": configmap["metadata"]["name"], "items": items},
    }


def app_container(image: str, database_secret: str, migration_seconds: float = 0) -> dict[str, Any]:
    return {
        "name": "app",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-c", APP_SCRIPT],
        "workingDir": "/migrations",
        "env": [
            {
                "name": "DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": database_secret, "key": "url"}},
            },
            {"name": "MIGRATION_SECONDS", "value": str(migration_seconds)},
        ],
        "volumeMounts": [{"name": "migrations", "mountPath": "/migrations", "readOnly": True}],
    }


def deployment(
    name: str,
    namespace: str,
    *,
    image: str,
    configmap: Mapping[str, Any],
    database_secret: str,
    replicas: int = 3,
    migration_seconds: float = 0,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An inject-mode Deployment (by default) whose rollout never lowers availability."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels if labels is not None else {LABEL: "inject"}),
            "annotations": dict(
                annotations if annotations is not None else {"schemagate.dev/tool": "alembic"}
            ),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [app_container(image, database_secret, migration_seconds)],
                    "volumes": [migrations_volume(configmap)],
                },
            },
        },
    }


WEBHOOK = "app.kubernetes.io/name=schemagate"  # the label of schemagate's own pods


def webhook_pods(kube: Kubectl) -> list[dict[str, Any]]:
    listed = kube.json("get", "pods", "-n", NAMESPACE, "-l", WEBHOOK)
    return [p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")]


def wait_serving(kube: Kubectl, replicas: int = 2) -> None:
    kube(
        "-n", NAMESPACE, "rollout", "status", "deployment/schemagate", "--timeout=120s", check=True
    )

    def ready() -> bool:
        pods = webhook_pods(kube)
        return len(pods) == replicas and all(
            all(s["ready"] for s in p["status"].get("containerStatuses", [])) for p in pods
        )

    wait_for(f"{replicas} ready schemagate pods", ready, timeout=120)


# --- reading back --------------------------------------------------------------------


def pods(kube: Kubectl, namespace: str, app: str) -> list[dict[str, Any]]:
    listed: dict[str, Any] = kube.json("get", "pods", "-n", namespace, "-l", f"app={app}")
    return list(listed["items"])


def status_of(pod: Mapping[str, Any], container: str) -> dict[str, Any]:
    found = maybe_status(pod, container)
    assert found is not None, f"pod {pod['metadata']['name']} has no status for {container}"
    return found


def maybe_status(pod: Mapping[str, Any], container: str) -> dict[str, Any] | None:
    """None until the kubelet has reported the container."""
    statuses = [
        *pod["status"].get("initContainerStatuses", []),
        *pod["status"].get("containerStatuses", []),
    ]
    return next((dict(s) for s in statuses if s["name"] == container), None)


def moment(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def logs(kube: Kubectl, namespace: str, pod: str, container: str) -> str:
    return kube("logs", "-n", namespace, pod, "-c", container, check=True).stdout


def first_line(kube: Kubectl, namespace: str, pod: str, container: str) -> str:
    """The first line a running container logged, waiting for it: the kubelet reports a
    container running before its first write reaches the log."""
    lines: list[str] = []

    def logged() -> bool:
        lines[:] = logs(kube, namespace, pod, container).splitlines()
        return bool(lines)

    wait_for(f"the first log line of {pod}/{container}", logged)
    return lines[0]


def previous_logs(kube: Kubectl, namespace: str, pod: str, container: str) -> str | None:
    """The log of the container's previous run, or None once the runtime has removed it
    (the kubelet keeps one dead instance per container, and not always that)."""
    done = kube("logs", "-n", namespace, pod, "-c", container, "--previous")
    return done.stdout if done.returncode == 0 else None


def recorded(url: str) -> list[str]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        present = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
        if not present or not present[0]:
            return []
        return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


def columns(url: str, table: str) -> list[str]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    return [r[0] for r in rows]


def runs_started(url: str) -> int:
    """How many runs of migration 0001 began (tests/node/alembic/r0001_orders.py)."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SELECT last_value, is_called FROM migration_runs").fetchone()
    assert row is not None
    return int(row[0]) if row[1] else 0


def count_runs(url: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE SEQUENCE migration_runs")


# MariaDB's counter: the AUTO_INCREMENT table `migration_runs` (the migration's DDL
# commits its insert at once, and an AUTO_INCREMENT value is never handed out twice).


def count_runs_mariadb(server: MariaDBServer, database: str) -> None:
    with server.connect(database) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE migration_runs (id INT AUTO_INCREMENT PRIMARY KEY)")


def runs_started_mariadb(server: MariaDBServer, database: str) -> int:
    """How many runs of migration 0001 began on a MariaDB database."""
    with server.connect(database) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM migration_runs")
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def dump(objects: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
