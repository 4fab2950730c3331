"""`schemagate check` as CI runs it: a real process, real files and stdin, output compared
verbatim with tests/golden/check/. No database is read here (tests/component/test_check_gate.py
reads real ones)."""

from __future__ import annotations

import dataclasses
import itertools
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from tests.factories import corpus, labelled, review
from tests.golden import compare
from tests.support.manifests import kustomize
from webhook.config import Config
from webhook.decide import DEFAULT_EXCLUDED
from webhook.evaluate import evaluate
from webhook.review import parse_review
from webhook.tools import INJECT_TOOLS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.name for p in (ROOT / "manifests" / "examples").iterdir() if p.is_dir())
CONFIG = "tests/fixtures/check/config.yaml"


def check(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", "check", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


# --- the corpus ------------------------------------------------------------------------


def test_unlabelled_corpus_is_not_reported() -> None:
    """The webhook's objectSelector never sends unlabelled objects: nothing to say."""
    done = check("tests/fixtures/corpus")
    assert (done.returncode, done.stderr) == (0, "")
    compare("check/corpus.txt", done.stdout)


def labelled_corpus() -> str:
    """Every corpus Deployment in inject mode, the tools taken in turn, as one stream."""
    docs = []
    for (_, obj), tool in zip(corpus(), itertools.cycle(INJECT_TOOLS), strict=False):
        annotations = {"schemagate.dev/tool": tool}
        if tool == "command":
            annotations["schemagate.dev/command"] = '["./migrate", "up"]'
        docs.append(labelled(obj, "inject", annotations))
    return yaml.safe_dump_all(docs, sort_keys=False)


def test_labelled_corpus() -> None:
    done = check("-", stdin=labelled_corpus())
    # Some published Deployments have a placeholder container without an image: denied.
    assert (done.returncode, done.stderr) == (1, "")
    compare("check/corpus-labelled.txt", done.stdout)


def test_labelled_corpus_as_json_matches_the_text() -> None:
    done = check("-o", "json", "-", stdin=labelled_corpus())
    assert done.returncode == 1
    report = orjson.loads(done.stdout)
    assert report["documents"] == len(corpus()) == len(report["workloads"])
    denied = [w for w in report["workloads"] if w["verdict"] == "denied"]
    assert report["denied"] == len(denied) > 0
    for workload in denied:
        assert workload["code"] == 422
        assert workload["message"].endswith("has no image; set annotation schemagate.dev/image")
    for workload in report["workloads"]:
        if workload["verdict"] == "admitted":
            assert workload["injected"]["name"] == "schemagate-migrate"
            assert workload["patch"][0]["value"] in (
                workload["injected"],
                [workload["injected"]],
            )


# --- the manifest examples -------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_rendered_by_kustomize(example: str) -> None:
    """`kubectl kustomize DIR | schemagate check -`, as the CI step of docs/cli.md runs it."""
    rendered = kustomize(f"manifests/examples/{example}")
    done = check("-", stdin=rendered)
    gated = "schemagate.dev/migrate: gate" in rendered
    # Without --config no database is known, as with the shipped config.yaml: denied.
    assert (done.returncode, done.stderr) == (1 if gated else 0, "")
    compare(f"check/examples/{example}.txt", done.stdout)

    offline = check("--config", CONFIG, "--no-lookup", "-o", "json", "-", stdin=rendered)
    assert (offline.returncode, offline.stderr) == (0, "")
    compare(f"check/examples/{example}.no-lookup.json", offline.stdout)


def test_example_patch_and_result() -> None:
    done = check("--show-patch", "-", stdin=kustomize("manifests/examples/init-container"))
    assert done.returncode == 0
    compare("check/examples/init-container.show-patch.txt", done.stdout)


def test_example_directories_read_recursively() -> None:
    """Plain files, not rendered: no namespace from kustomize, so `-n` applies."""
    done = check("-n", "shop", "--config", CONFIG, "--no-lookup", "manifests/examples")
    assert (done.returncode, done.stderr) == (0, "")
    compare("check/examples-directory.txt", done.stdout)


def test_namespace_outside_the_database_is_denied_without_a_lookup() -> None:
    done = check("--config", CONFIG, "--no-lookup", "manifests/examples/sync-waves/deployment.yaml")
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == (
        "manifests/examples/sync-waves/deployment.yaml: document 1: Deployment default/orders "
        "(gate): denied (422): default/orders: namespace 'default' may not gate on database "
        "'orders'; ask the webhook's operators to add it to the database's namespaces"
    )


def test_excluded_namespaces_pass() -> None:
    rendered = kustomize("manifests/examples/init-container").replace(
        "namespace: shop-init", "namespace: kube-system"
    )
    done = check("-", stdin=rendered)
    assert done.returncode == 0
    assert done.stdout == (
        "-: document 1: Deployment kube-system/orders (pass): passes, schemagate does not act "
        "on it here\n1 labelled of 1 document: 1 admitted, 0 denied\n"
    )


def test_list_documents_and_json_files(tmp_path: Path) -> None:
    """`kubectl get -o json` gives a List; its items are the objects."""
    (_, obj), *_ = corpus()
    item = labelled(obj, "inject", {"schemagate.dev/tool": "flyway"})
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [{"kind": "ConfigMap", "apiVersion": "v1"}, item],
    }
    (tmp_path / "list.json").write_bytes(orjson.dumps(listing))
    done = check(str(tmp_path / "list.json"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{tmp_path}/list.json: document 1, item 2: Deployment ")


# --- input errors: exit 2, a line naming the file and the document ---------------------

BAD_INPUTS = [
    pytest.param(
        "kind: ConfigMap\napiVersion: v1\n---\nkey: [unclosed\n",
        "-: document 2: expected ',' or ']', but got '<stream end>' at line 5",
        id="yaml-syntax",
    ),
    pytest.param("just a string\n", "-: document 1: a str, not a Kubernetes object", id="scalar"),
    pytest.param("- a\n- b\n", "-: document 1: a list, not a Kubernetes object", id="list"),
    pytest.param(
        "---\n---\napiVersion: v1\nmetadata: {name: x}\n",
        "-: document 2: not a Kubernetes object (no kind)",
        id="no-kind",
    ),
    pytest.param(
        "apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Pod}, 7]\n",
        "-: document 1, item 2: a int, not a Kubernetes object",
        id="list-item",
    ),
]


@pytest.mark.parametrize(("text", "error"), BAD_INPUTS)
def test_bad_input_names_the_document(text: str, error: str) -> None:
    done = check("-", stdin=text)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"schemagate: {error}\n")


def test_every_bad_file_is_named_and_nothing_is_judged(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"apiVersion": ')
    (tmp_path / "empty").mkdir()
    (tmp_path / "latin1.yaml").write_bytes(b"kind: \xff\n")
    done = check(
        "manifests/examples/init-container/deployment.yaml",
        str(tmp_path / "bad.json"),
        str(tmp_path / "empty"),
        str(tmp_path / "latin1.yaml"),
        str(tmp_path / "missing.yaml"),
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        f"schemagate: {tmp_path}/bad.json: document 1: not valid JSON: "
        "unexpected end of data: line 1 column 16 (char 15)",
        f"schemagate: {tmp_path}/empty: no *.yaml, *.yml or *.json files in this directory",
        f"schemagate: {tmp_path}/latin1.yaml: not UTF-8 text",
        f"schemagate: {tmp_path}/missing.yaml: no such file or directory",
    ]


def test_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("databases: {orders: {url: x, tool: flyway, namespaces: [shop]}}\n")
    done = check("--config", str(config), "manifests/examples")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "schemagate: config error: databases.orders.url: scheme must be postgresql://, "
        "mysql:// or sqlite:///\n"
    )


def test_bad_flag_is_a_usage_error() -> None:
    done = check("--output", "xml", "-")
    assert done.returncode == 2
    assert "argument -o/--output: invalid choice: 'xml'" in done.stderr


# --- the docs and the seam -------------------------------------------------------------


def test_readme_example_is_what_check_prints() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    (match,) = re.finditer(
        r"```console\n\$ kubectl kustomize (\S+) \| schemagate check -\n(.*?)```", text, re.S
    )
    assert check("-", stdin=kustomize(match[1])).stdout == match[2]


def test_the_request_is_the_one_the_api_server_sends_for_a_create() -> None:
    """Beside uid, user and dryRun, what `check` builds equals a real CREATE review, decoded;
    the API server fills in the namespace of an object that names none, and so does check."""
    (_, obj), *_ = corpus()
    obj = labelled(obj, "inject", {"schemagate.dev/tool": "flyway"})
    assert "namespace" not in obj["metadata"]
    built = evaluate(obj, namespace="shop", config=Config(), excluded=DEFAULT_EXCLUDED).request
    stored = {**obj, "metadata": {**obj["metadata"], "namespace": "shop"}}
    sent = parse_review(orjson.dumps(review(stored)))
    assert dataclasses.replace(built, uid=sent.uid, username=sent.username, dry_run=False) == sent
