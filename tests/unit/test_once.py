"""`run: once` over data: what a release is, what admission places, what `wait` says."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import pytest

from tests.factories import deployment, review
from webhook import decide
from webhook.config import Config
from webhook.contract import RELEASE, InjectSpec
from webhook.inject import NAME, VOLUME, WAIT
from webhook.once import MAX_NAME, release_of, wait_container
from webhook.review import AdmissionResponse, parse_review
from webhook.wait import wait

IMAGE = "ghcr.io/schemagate/schemagate:0.1.0"
CONFIG = Config(wait_image=IMAGE)
ONCE = {"schemagate.dev/tool": "alembic", "schemagate.dev/run": "once"}
SPEC = InjectSpec("alembic", None, None, None, "once")


def app(**changes: Any) -> dict[str, Any]:
    obj = deployment(mode="inject", annotations=ONCE, replicas=3)
    obj["spec"]["template"]["spec"]["volumes"] = [
        {"name": "migrations", "configMap": {"name": "migrations-1", "defaultMode": 420}},
        {"name": "cache", "emptyDir": {}},
    ]
    obj["spec"]["template"]["spec"]["serviceAccountName"] = "api"
    for path, value in changes.items():
        target = obj
        *parents, last = path.split(".")
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[int(last) if isinstance(target, list) else last] = value
    return obj


def admit(obj: dict[str, Any], config: Config = CONFIG, old: Any = None) -> AdmissionResponse:
    request = parse_review(
        orjson.dumps(review(obj, old=old, operation="UPDATE" if old else "CREATE"))
    )
    answer = decide.admit(request, config, decide.mode(request))
    assert isinstance(answer, AdmissionResponse)
    return answer


def admitted(obj: dict[str, Any], config: Config = CONFIG) -> dict[str, Any]:
    answer = admit(obj, config)
    assert answer.allowed, answer.message
    if answer.patch is None:
        return obj
    result: dict[str, Any] = jsonpatch.apply_patch(obj, answer.patch)
    return result


def test_a_release_is_the_migration_run_not_the_workload_around_it() -> None:
    base = release_of(app(), SPEC, CONFIG)
    same = [
        app(**{"spec.replicas": 5}),
        app(**{"metadata.labels": {"schemagate.dev/migrate": "inject", "team": "x"}}),
        app(**{"metadata.annotations": {**ONCE, "schemagate.dev/retry": "2"}}),
        app(**{"spec.template.metadata.annotations": {"kubectl.kubernetes.io/restartedAt": "x"}}),
        # A volume the migration does not mount is not part of it.
        app(
            **{"spec.template.spec.volumes.1": {"name": "cache", "emptyDir": {"medium": "Memory"}}}
        ),
        admitted(app()),  # what schemagate placed itself
    ]
    for obj in same:
        assert release_of(obj, SPEC, CONFIG).digest == base.digest
    different = [
        app(**{"spec.template.spec.containers.0.image": "ghcr.io/example/api:1.1"}),
        app(**{"spec.template.spec.containers.0.env": []}),
        app(
            **{"spec.template.spec.volumes.0": {"name": "migrations", "configMap": {"name": "m-2"}}}
        ),
        app(**{"spec.template.spec.serviceAccountName": "other"}),
        app(**{"metadata.name": "billing"}),
    ]
    digests = {release_of(obj, SPEC, CONFIG).digest for obj in different}
    assert base.digest not in digests and len(digests) == len(different)
    assert base.pod["restartPolicy"] == "Never"
    assert [v["name"] for v in base.pod["volumes"]] == ["migrations"]
    assert base.pod["serviceAccountName"] == "api"
    assert base.pod["containers"][0]["name"] == NAME
    assert (base.job, base.marker) == (f"api-migrate-{base.short}", f"api-migrated-{base.short}")


def test_names_fit_a_label_value() -> None:
    long = release_of(app(**{"metadata.name": "a" * 50 + "-" + "b" * 12}), SPEC, CONFIG)
    assert len(long.job) <= MAX_NAME and len(long.marker) <= MAX_NAME
    assert long.marker.endswith("-migrated-" + long.short)
    assert not long.marker.removesuffix("-migrated-" + long.short).endswith("-")


def test_admission_places_the_wait_container_the_marker_volume_and_the_release() -> None:
    answer = admit(app())
    assert answer.allowed
    result = admitted(app())
    release = release_of(app(), SPEC, CONFIG)
    pod = result["spec"]["template"]["spec"]
    assert pod["initContainers"] == [wait_container(IMAGE)]
    assert pod["volumes"][-1] == {
        "name": VOLUME,
        "configMap": {"name": release.marker, "defaultMode": 420},
    }
    assert result["spec"]["template"]["metadata"]["annotations"] == {RELEASE: release.digest}
    assert answer.warnings == (
        f"schemagate: run once: pods of release {release.short} wait in init container "
        f"{WAIT} for Job {release.job} (marker ConfigMap {release.marker})",
    )
    # A re-sync of the stored object changes nothing.
    again = admit(result)
    assert again.allowed and again.patch is None and again.warnings == ()


def test_switching_modes_swaps_what_was_placed_with_guards() -> None:
    once = admitted(app())
    every = copy.deepcopy(once)
    every["metadata"]["annotations"]["schemagate.dev/run"] = "every-pod"
    answer = admit(every, old=once)
    ops = answer.patch or []
    assert {"op": "test", "path": "/spec/template/spec/initContainers/0/name", "value": WAIT} in ops
    switched = admitted(every)
    pod = switched["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == [NAME]
    assert VOLUME not in [v["name"] for v in pod["volumes"]]
    assert RELEASE not in switched["spec"]["template"]["metadata"].get("annotations", {})
    # And back, and then the label removed: nothing of schemagate's is left.
    back = admitted(copy.deepcopy(once) | {"spec": switched["spec"]})
    assert [c["name"] for c in back["spec"]["template"]["spec"]["initContainers"]] == [WAIT]
    unlabelled = copy.deepcopy(back)
    del unlabelled["metadata"]["labels"]["schemagate.dev/migrate"]
    removal = admit(unlabelled, old=back)
    assert removal.warnings == (decide.removed("Deployment"),)
    cleaned: dict[str, Any] = jsonpatch.apply_patch(unlabelled, removal.patch or [])
    assert cleaned["spec"]["template"]["spec"]["initContainers"] == []
    assert [v["name"] for v in cleaned["spec"]["template"]["spec"]["volumes"]] == [
        "migrations",
        "cache",
    ]
    assert cleaned["spec"]["template"]["metadata"]["annotations"] == {}


@pytest.mark.parametrize(
    ("obj", "config", "message"),
    [
        (
            app(),
            Config(),
            "shop/api: run once needs the webhook started with --wait-image "
            "(SCHEMAGATE_WAIT_IMAGE)",
        ),
        (
            app(**{"metadata.name": "x" * 64}),
            CONFIG,
            f"shop/{'x' * 64}: run once needs a name of at most 63 characters",
        ),
        (
            app(**{"metadata.name": ""}),
            CONFIG,
            "shop/: run once needs metadata.name (generateName is not supported)",
        ),
    ],
)
def test_refusals(obj: dict[str, Any], config: Config, message: str) -> None:
    answer = admit(obj, config)
    assert (answer.allowed, answer.code, answer.message) == (False, 422, message)


def marker(tmp_path: Path, **data: str) -> Path:
    for key, value in data.items():
        (tmp_path / key).write_text(value)
    return tmp_path


def test_wait_succeeds_on_a_succeeded_marker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = marker(
        tmp_path, state="succeeded", job="api-migrate-0123456789ab", release="0123456789abcdef",
        finished="2026-12-01T22:00:00Z",
    )  # fmt: skip
    assert wait(folder) == 0
    assert capsys.readouterr().out == (
        "schemagate: release 0123456789ab: migration Job api-migrate-0123456789ab succeeded "
        "(2026-12-01T22:00:00Z)\n"
    )


def test_wait_fails_with_the_job_and_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = marker(
        tmp_path, state="failed", job="api-migrate-0123456789ab", release="0123456789abcdef",
        reason="Job has reached the specified backoff limit",
    )  # fmt: skip
    assert wait(folder) == 1
    assert capsys.readouterr().err == (
        "schemagate: release 0123456789ab: migration Job api-migrate-0123456789ab failed: "
        "Job has reached the specified backoff limit. Logs: kubectl logs "
        "job/api-migrate-0123456789ab. Retry with a new release or a new value of annotation "
        "schemagate.dev/retry on the workload.\n"
    )


def test_wait_fails_on_an_empty_marker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert wait(tmp_path) == 1
    assert capsys.readouterr().err == f"schemagate: {tmp_path} holds no run state (state '')\n"
