"""The documentation says what the code does: every relative link and anchor resolves,
every `schemagate` command shown parses with the real command line, every YAML block
loads (and a configuration or an overlay shown is accepted), the limits table is the
code's constants, and the messages quoted are the ones the code produces for the
documented input.

The README's quick start is run against a server in tests/component/test_readme.py;
the examples with a golden output, an overlay or an e2e rig are checked where they run
(tests/unit/test_check.py, tests/unit/test_manifests.py, tests/e2e/test_client_ca.py).
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import logging
import re
import shlex
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from aiohttp import web_protocol

from tests.server import ROOT
from tests.support.manifests import rendered
from webhook import app, contract, decide, review, serve, status
from webhook.cli import build_parser, main
from webhook.config import Config, ConfigError, StartupError, parse_config
from webhook.evaluate import evaluate
from webhook.gate import Found, Unreachable
from webhook.limits import Limits
from webhook.lookup import Lookups
from webhook.tools import TOOLS
from webhook.versions import Recorded

DOCS = sorted([ROOT / "README.md", ROOT / "bench" / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def _prose(text: str) -> str:
    """The text outside fenced blocks and inline code."""
    text = FENCE.sub("", text)
    return re.sub(r"`[^`]*`", "", text)


def _blocks(name: str, language: str | None = None) -> list[str]:
    return [body for lang, body in FENCE.findall(_text(name)) if language in (None, lang)]


def _section(name: str, heading: str) -> str:
    """The text under `heading` (a whole line, `## …`) up to the next heading of its level."""
    level = heading.split(" ", 1)[0]
    after = _text(name).split(f"\n{heading}\n", 1)[1]
    return re.split(rf"\n{level} ", after, maxsplit=1)[0]


def _rows(table_text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in `table_text`, cells stripped."""
    rows: list[list[str]] = []
    for line in table_text.splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if set("".join(cells)) <= {"-", ":"}:
            continue
        rows.append(cells)
    return rows[1:]  # the header row off


# --- links and anchors -----------------------------------------------------------------


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to `-`."""
    text = heading.strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in ("L", "N", "M"))
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6} (.+?)\s*#*$", line)
        if match:
            slug = github_slug(match[1])
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(path: Path) -> Iterator[str]:
    for target in re.findall(r"\]\(([^)\s]+)\)", _prose(path.read_text(encoding="utf-8"))):
        if not re.match(r"[a-z]+:", target):
            yield target


def test_github_slugs() -> None:
    assert github_slug("Authenticating the API server (`--client-ca`)") == (
        "authenticating-the-api-server---client-ca"
    )
    assert github_slug("The API server is blocked: how to get out") == (
        "the-api-server-is-blocked-how-to-get-out"
    )
    assert github_slug("`schemagate check [PATH|-]...`") == "schemagate-check-path-"
    assert github_slug("Certificates: three options") == "certificates-three-options"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    broken = []
    for target in links(path):
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            broken.append(f"{target}: no {resolved.relative_to(ROOT)}")
        elif anchor and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, broken


def test_docs_pages_start_with_who_they_are_for() -> None:
    for path in (ROOT / "docs").glob("*.md"):
        title, blank, first, *_ = path.read_text(encoding="utf-8").splitlines()
        assert title.startswith("# ") and blank == "", path.name
        assert first.startswith("For "), path.name


def test_readme_links_every_docs_page() -> None:
    linked = {target.partition("#")[0] for target in links(ROOT / "README.md")}
    pages = {f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md")}
    assert pages <= linked
    assert "bench/README.md" in linked


def test_the_readme_test_command_is_make_test() -> None:
    """CI runs the test command the README shows (.ci/run)."""
    (quick_start,) = [b for b in _blocks("README.md", "sh") if "make run" in b]
    assert re.search(r"^make test\s", quick_start, re.M)
    assert "\nmake test\n" in _text(".ci/run")


# --- command lines ----------------------------------------------------------------------


def _subparsers(parser: Any) -> dict[str, Any]:
    for action in parser._actions:
        if action.choices and isinstance(action.choices, dict):
            return dict(action.choices)
    return {}


def _options(parser: Any) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def shown_commands() -> Iterator[tuple[str, str, bool]]:
    """(page, command line, complete) for every `schemagate <subcommand>` the docs show.

    Complete: a line of a console, sh or yaml block (it must parse as a whole); otherwise
    inline code, which may elide arguments (`…`) and is checked word by word."""
    words = "serve|check|status|controller|wait|certs"
    for path in DOCS:
        name = str(path.relative_to(ROOT))
        text = path.read_text(encoding="utf-8")
        for lang, body in FENCE.findall(text):
            if lang not in ("console", "sh", "yaml"):
                continue
            for line in body.replace("\\\n", " ").splitlines():
                line = line.removeprefix("$ ")
                # A pipeline's stage, or the image of a `docker run` followed by its args.
                for stage in line.split("|"):
                    found = re.search(rf"(?:^|\s)\S*schemagate(?::\S+)? ((?:{words})\b.*)", stage)
                    if found:
                        yield name, "schemagate " + found[1].strip(), True
        for span in re.findall(r"`([^`]+)`", FENCE.sub("", text)):
            span = " ".join(span.split())
            if re.match(rf"schemagate ({words})\b", span):
                yield name, span, False


def test_the_docs_show_the_commands_this_test_expects() -> None:
    complete = {line for _, line, whole in shown_commands() if whole}
    assert "schemagate check -" in complete
    assert "schemagate status --config config.yaml" in complete
    assert "schemagate check --config /config/config.yaml --no-lookup -" in complete
    inline = {line for _, line, whole in shown_commands() if not whole}
    assert "schemagate certs bootstrap --every 600" in inline
    assert (
        "schemagate serve --cert-secret schemagate-tls --service schemagate "
        "--webhook-configuration schemagate"
    ) in inline


@pytest.mark.parametrize(
    ("page", "line", "complete"), sorted(set(shown_commands())), ids=lambda v: str(v)[:60]
)
def test_every_command_shown_parses(page: str, line: str, complete: bool) -> None:
    argv = shlex.split(line.replace("…", "").replace("...", ""))[1:]
    if complete:
        build_parser().parse_args(argv)
        return
    parser, rest = build_parser(), list(argv)
    while rest and rest[0] in _subparsers(parser):
        parser = _subparsers(parser)[rest.pop(0)]
    assert not _subparsers(parser), f"{page}: `{line}` names no command"
    for word in rest:
        flag = word.split("=", 1)[0]
        if flag.startswith("-") and flag != "-":
            assert flag in _options(parser), f"{page}: `{line}`: no option {flag}"
        elif word.startswith("["):  # a synopsis: `check [PATH|-]...`
            (positional,) = [a for a in parser._actions if not a.option_strings]
            assert word.strip("[]") == positional.metavar


def _table_flags(cell: str) -> list[str]:
    return re.findall(r"`(-[-\w]+)", cell)


def test_serve_flags_table_is_the_parser() -> None:
    serve_parser = _subparsers(build_parser())["serve"]
    rows = _rows(_section("docs/configuration.md", "## `schemagate serve` flags"))
    shown: dict[str, str] = {}
    for flags, variables, _default in rows:
        names = re.findall(r"`(SCHEMAGATE_\w+)`", variables)
        for flag, variable in zip(_table_flags(flags), names, strict=True):
            shown[flag] = variable
    options = _options(serve_parser) - {"-h", "--help"}
    assert set(shown) == options
    for action in serve_parser._actions:
        for flag in action.option_strings:
            if flag in shown:
                assert f"[{shown[flag]}]" in action.help, flag


def test_check_flags_table_is_the_parser() -> None:
    check_parser = _subparsers(build_parser())["check"]
    rows = _rows(_section("docs/cli.md", "## `schemagate check [PATH|-]...`"))
    shown = {flag for flags, _ in rows for flag in _table_flags(flags)}
    options = _options(check_parser) - {"-h", "--help", "--namespace", "--output"}
    assert shown == options


# --- YAML blocks ---------------------------------------------------------------------


def yaml_blocks() -> Iterator[tuple[str, str]]:
    for path in DOCS:
        for body in _blocks(str(path.relative_to(ROOT)), "yaml"):
            yield str(path.relative_to(ROOT)), body


@pytest.mark.parametrize(("page", "block"), list(yaml_blocks()), ids=lambda v: str(v)[:40])
def test_every_yaml_block_loads(page: str, block: str) -> None:
    docs = list(yaml.safe_load_all(block))
    assert docs and all(d is not None for d in docs), page


def test_the_configuration_example_is_accepted() -> None:
    (example,) = [b for b in _blocks("docs/configuration.md", "yaml") if "databases:" in b]
    config = parse_config(yaml.safe_load(example))
    assert set(config.databases) == {"orders", "releases"}
    assert config.lookup_timeout == 2 and config.cache_ttl == 5
    assert config.on_unreachable == "closed"


def test_the_config_error_shown_is_what_parse_config_says() -> None:
    text = " ".join(_section("docs/configuration.md", "## The configuration file").split())
    shown = re.search(r"`schemagate: config error: ([^`]+)`", text)
    assert shown is not None
    with pytest.raises(ConfigError) as raised:
        parse_config({"databases": {"orders": {"url": "sqlite:///x.db", "tool": "flyaway"}}})
    assert str(raised.value) == shown[1]
    assert 'print(f"schemagate: config error: {exc}"' in _text("webhook/cli.py")


def test_the_contract_shows_every_annotation() -> None:
    (block,) = [b for b in _blocks("README.md", "yaml") if contract.LABEL in b]
    shown = yaml.safe_load(block)["metadata"]
    assert set(shown["labels"]) == {contract.LABEL}
    assert shown["labels"][contract.LABEL] in contract.MODES
    assert set(shown["annotations"]) == set(contract.ANNOTATIONS)


def _kustomize(overlay: str, *, resources: str) -> list[dict[str, Any]]:
    folder = Path(tempfile.mkdtemp(prefix="docs-overlay-", dir=ROOT))
    try:
        (folder / "kustomization.yaml").write_text(
            overlay.replace("<path to manifests>", "../manifests")
            if "resources:" in overlay
            else f"resources: [{resources}]\n{overlay}"
        )
        return rendered(folder)
    finally:
        shutil.rmtree(folder)


def test_the_without_rollouts_overlay_shown_renders() -> None:
    (block,) = [b for b in _blocks("docs/contract.md", "yaml") if "without-rollouts" in b]
    docs = _kustomize(block, resources="")
    (hook,) = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
    groups = {g for rule in hook["webhooks"][0]["rules"] for g in rule["apiGroups"]}
    assert "argoproj.io" not in groups and "apps" in groups


def test_the_client_ca_overlay_shown_renders() -> None:
    (block,) = [b for b in _blocks("docs/security.md", "yaml") if "SCHEMAGATE_CLIENT_CA" in b]
    docs = _kustomize(block, resources="../manifests/base")
    (deployment,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "schemagate"
    ]
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["SCHEMAGATE_CLIENT_CA"] == "/etc/schemagate-client-ca/ca.crt"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["client-ca"]["configMap"] == {"name": "schemagate-client-ca"}


# --- the limits table -----------------------------------------------------------------


def _numbers(cell: str) -> list[float]:
    return [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", cell)]


def test_the_limits_table_is_the_code() -> None:
    rows = {
        what: limit
        for what, limit in _rows(_section("docs/security.md", "## Limits on every client"))
    }
    limits = Limits()
    budget = limits.body_budget_bytes
    assert app.State(Config(), Lookups({})).budget.limit == budget
    handler = inspect.signature(web_protocol.RequestHandler.__init__).parameters
    mib, kib = 1024 * 1024, 1024

    def shown(prefix: str) -> list[float]:
        (cell,) = [limit for what, limit in rows.items() if what.startswith(prefix)]
        return _numbers(cell)

    assert shown("TLS handshake") == [limits.handshake_seconds]
    assert shown("request headers, from") == [limits.header_seconds]
    assert _numbers(rows["request body"]) == [limits.body_seconds, 408]
    assert shown("idle keep-alive")[0] == limits.idle_seconds
    assert shown("open connections") == [limits.max_connections]
    assert shown("request body size") == [
        (review.MAX_BODY_BYTES - review.ENVELOPE_BYTES) / mib,
        review.ENVELOPE_BYTES / kib,
        review.API_SERVER_BODY_BYTES / mib,
        413,
    ]
    assert review.MAX_BODY_BYTES == 2 * review.API_SERVER_BODY_BYTES + review.ENVELOPE_BYTES
    assert _numbers(rows["request headers"]) == [
        handler["max_line_size"].default,
        handler["max_headers"].default,
        400,
    ]
    assert handler["max_field_size"].default == handler["max_line_size"].default
    assert "max_line_size" not in inspect.getsource(serve)  # aiohttp's own defaults apply
    decoded = shown("bodies being decoded")
    assert decoded == [budget / mib, 25, 503, limits.body_seconds]
    assert _numbers(rows["`Content-Encoding`"]) == [415]
    assert shown("annotation values") == [
        contract.MAX_VALUE_CHARS,
        contract.MAX_COMMAND_CHARS / kib,
        contract.MAX_COMMAND_ARGS,
    ]
    after = _section("docs/security.md", "## Limits on every client")
    quoted = re.search(r"quotes at most (\d+) characters", " ".join(after.split()))
    assert quoted is not None
    assert int(quoted[1]) == inspect.signature(review.show).parameters["limit"].default


def test_the_webhook_timeout_shown_is_the_manifest() -> None:
    hook = yaml.safe_load(_text("manifests/base/webhook/mutatingwebhookconfiguration.yaml"))
    (webhook,) = hook["webhooks"]
    table = _rows(_section("docs/operations.md", "## Failure policy"))
    rows = {r[0]: r[1] for r in table}
    meaning = {r[0]: r[2] for r in table}
    assert rows["`failurePolicy`"] == f"`{webhook['failurePolicy']}`"
    assert rows["`timeoutSeconds`"] == f"`{webhook['timeoutSeconds']}`"
    (selector,) = webhook["namespaceSelector"]["matchExpressions"]
    assert all(f"`{ns}`" in rows["`namespaceSelector`"] for ns in selector["values"])
    blocked = _section("docs/operations.md", "## The API server is blocked: how to get out")
    assert f'failed calling webhook "{webhook["name"]}"' in blocked
    assert f"kubectl delete mutatingwebhookconfiguration {hook['metadata']['name']}" in blocked
    (expression,) = webhook["objectSelector"]["matchExpressions"]
    assert rows["`objectSelector`"] == f"`{expression['key']}` `{expression['operator']}`"
    defaults = parse_config({})
    assert f"{defaults.lookup_timeout:g} s by default" in meaning["`timeoutSeconds`"]


# --- messages quoted --------------------------------------------------------------------

AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _config(tool: str, *, namespaces: tuple[str, ...] = ("shop",)) -> Any:
    return parse_config(
        {
            "databases": {
                "orders": {"url": "sqlite:///x.db", "tool": tool, "namespaces": list(namespaces)}
            }
        }
    )


def _workload(
    namespace: str, mode: str, annotations: Mapping[str, str], name: str = "api"
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {contract.LABEL: mode},
            "annotations": dict(annotations),
        },
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": "ghcr.io/example/a:1"}]},
            },
        },
    }


def _gate_answer(
    tool: str,
    version: str,
    found: Found | None,
    *,
    database: str = "orders",
    namespace: str = "shop",
) -> str:
    config = _config(tool)
    obj = _workload(
        namespace,
        "gate",
        {"schemagate.dev/database": database, "schemagate.dev/schema-version": version},
    )
    result = evaluate(obj, namespace=namespace, config=config, excluded=decide.DEFAULT_EXCLUDED)
    if isinstance(result.result, decide.PendingGate):
        assert found is not None
        answer = decide.finish_gate(result.result, found, config)
    else:
        answer = result.result
    assert not answer.allowed and answer.message is not None
    return answer.message


def _liquibase_lock() -> Recorded:
    """The liquibase tool's own reading of a held lock whose time carries no zone."""
    gate = TOOLS["liquibase"].gate
    assert gate is not None
    changes = [("1", None, AT.replace(tzinfo=None), "EXECUTED")]
    locks = [(True, datetime(2026, 11, 20, 10, 5), "runner-7f9c (10.0.3.12)")]
    return gate.parse([changes, locks])


def test_the_gate_messages_shown_are_the_gates() -> None:
    shown = _section("docs/contract.md", "## Gate mode")
    (block,) = re.findall(r"```text\n(.*?)```", shown, re.S)
    produced = [
        _gate_answer("flyway", "42", Recorded(True, latest="41", applied_at=AT)),
        _gate_answer("flyway", "42", Recorded(False)),
        _gate_answer(
            "golang-migrate", "42", Recorded(True, latest="42", problems=("dirty at 42",))
        ),
        _gate_answer("liquibase", "v42", Recorded(True, latest="v41", present=frozenset({"v41"}))),
        _gate_answer("liquibase", "v1.0", _liquibase_lock()),
        _gate_answer("flyway", "42", Unreachable("connection refused")),
        _gate_answer("flyway", "42", None, database="billing"),
        _gate_answer("flyway", "42", None, namespace="tenant"),
    ]
    assert block.splitlines() == produced


def test_the_liquibase_lock_rows_are_the_tools_shape() -> None:
    # The rows _liquibase_lock feeds the parser: the columns its queries select.
    gate = TOOLS["liquibase"].gate
    assert gate is not None and gate.history is not None
    history, locks = gate.history.queries(gate.history.location("postgresql"), "postgresql")
    assert "SELECT ID, TAG, DATEEXECUTED, EXECTYPE " in history
    assert "SELECT LOCKED, LOCKGRANTED, LOCKEDBY " in locks


def test_the_inject_example_is_what_admission_stores() -> None:
    section = _section("docs/contract.md", "## Inject mode")
    before, after = [b for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    obj = yaml.safe_load(before)
    result = evaluate(
        obj, namespace="shop", config=parse_config({}), excluded=decide.DEFAULT_EXCLUDED
    ).result
    assert isinstance(result, review.AdmissionResponse) and result.patch
    stored = jsonpatch.apply_patch(obj, result.patch)
    shown = yaml.safe_load(after.replace("# … unchanged", ""))
    assert stored["spec"]["template"]["spec"]["initContainers"] == (shown["spec"]["initContainers"])
    printed = re.search(r"kubectl prints\s+`Warning: ([^`]+)`", section)
    assert printed is not None
    assert result.warnings == (printed[1],)


def test_the_rollout_workload_ref_refusal_shown_is_the_codes() -> None:
    text = " ".join(_section("docs/contract.md", "## Workload kinds").split())
    shown = re.search(r"refused with `([^`]+)`", text)
    assert shown is not None
    rollout = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": "api",
            "namespace": "shop",
            "labels": {contract.LABEL: "inject"},
            "annotations": {"schemagate.dev/tool": "flyway"},
        },
        "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}},
    }
    answer = evaluate(
        rollout, namespace="shop", config=parse_config({}), excluded=decide.DEFAULT_EXCLUDED
    ).result
    assert isinstance(answer, review.AdmissionResponse) and answer.message is not None
    assert answer.message.endswith(shown[1].replace("'<name>'", "'api'"))


def test_the_status_example_is_what_status_prints() -> None:
    section = _section("docs/cli.md", "## `schemagate status`")
    (block,) = re.findall(
        r"```console\n\$ schemagate status --config config.yaml\n(.*?)```", section, re.S
    )
    config = parse_config(
        {
            "databases": {
                "orders": {"url": "sqlite:///x.db", "tool": "flyway", "namespaces": ["shop"]},
                "ledger": {"url": "sqlite:///y.db", "tool": "flyway", "namespaces": ["billing"]},
            }
        }
    )
    gates: dict[tuple[str, str], tuple[str, str, Found]] = {
        ("billing", "ledger"): ("ledger", "7", Unreachable("timed out")),
        ("shop", "orders"): ("orders", "42", Recorded(True, latest="41", applied_at=AT)),
    }
    rows = []
    for (namespace, name), (database, version, found) in gates.items():
        obj = _workload(
            namespace,
            "gate",
            {"schemagate.dev/database": database, "schemagate.dev/schema-version": version},
            name,
        )
        evaluation = evaluate(
            obj, namespace=namespace, config=config, excluded=decide.DEFAULT_EXCLUDED
        )
        assert isinstance(evaluation.result, decide.PendingGate)
        answer = decide.finish_gate(evaluation.result, found, config)
        rows.append(status._row(evaluation, answer, found))
    web = _workload("shop", "inject", {"schemagate.dev/tool": "flyway"}, "web")
    evaluation = evaluate(web, namespace="shop", config=config, excluded=decide.DEFAULT_EXCLUDED)
    assert isinstance(evaluation.result, review.AdmissionResponse)
    rows.append(status._row(evaluation, evaluation.result, None))
    assert status.render(rows, "table") == block


def test_the_check_input_error_shown_is_what_check_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = " ".join(_text("docs/cli.md").split())
    shown = re.search(r"e\.g\. `(schemagate: deploy\.yaml: [^`]+)`", text)
    assert shown is not None
    (tmp_path / "deploy.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\n"
        "metadata: {name: b}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["check", "deploy.yaml"]) == 2
    assert capsys.readouterr().err == shown[1] + "\n"


def test_the_client_certificate_refusals_shown_are_the_ones_tested() -> None:
    """Produced over a real server by tests/reliability/test_security.py (asserted there
    byte for byte); here, that the docs quote those very strings."""
    text = " ".join(
        _section("docs/security.md", "### Authenticating the API server (`--client-ca`)").split()
    )
    shown = re.findall(r"HTTP 403 `([^`]+)`", text)
    assert len(shown) == 2
    tested = _text("tests/reliability/test_security.py")
    source = inspect.getsource(app)
    for message in shown:
        assert f'b"{message}\\n"' in tested, message
        assert f'return "{message}"' in source, message


def test_the_tls_wait_log_lines_shown_are_the_servers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = " ".join(_text("docs/install.md").split())
    waiting = re.search(r"log `(waiting up to [^`]+)`", text)
    found = re.search(r"the server logs `([^`]+)`", text)
    exits = re.search(r"exits with `(no such file after waiting (\d+) s)`", text)
    assert waiting and found and exits
    shipped = yaml.safe_load_all(_text("manifests/base/deployment.yaml"))
    (deployment,) = [d for d in shipped if d and d.get("kind") == "Deployment"]
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["SCHEMAGATE_TLS_WAIT"] == exits[2]
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"

    async def appear() -> None:
        await asyncio.sleep(0.2)
        cert.write_text("x")
        key.write_text("x")

    async def run() -> None:
        await asyncio.gather(serve._wait_for_files(cert, key, float(exits[2])), appear())

    with caplog.at_level(logging.INFO, logger=serve.log.name):
        asyncio.run(run())
    logged = [r.getMessage() for r in caplog.records]
    docs_paths = waiting[1].replace("/run/schemagate/tls/", f"{tmp_path}/")
    assert logged[0].startswith(docs_paths), logged
    assert logged[1] == found[1]
    cert.unlink()
    with pytest.raises(StartupError, match=re.escape(f"{cert}: no such file after waiting 0.1 s")):
        asyncio.run(serve._wait_for_files(cert, key, 0.1))


def test_make_cluster_prints_what_the_docs_show() -> None:
    """The node tier's stack (tests/node/stack.py) prints these lines; it is not run here."""
    section = _section("docs/testing.md", "## A cluster to explore: `make cluster`")
    (block,) = re.findall(r"```console\n(.*?)```", section, re.S)
    printed = re.findall(r'print\(f?"([^"{]+)', _text("tests/node/stack.py"))
    for line in block.splitlines():
        head = line.split("…", 1)[0].split("=", 1)[0]
        assert any(p.startswith(head) for p in printed), line


def test_the_failure_policy_patch_shown_applies_to_the_registration() -> None:
    blocked = _section("docs/operations.md", "## The API server is blocked: how to get out")
    (command,) = [b for b in re.findall(r"```sh\n(.*?)```", blocked, re.S) if "patch" in b]
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:4] == ["kubectl", "patch", "mutatingwebhookconfiguration", "schemagate"]
    assert argv[argv.index("--type=json") + 1] == "-p"
    ops = yaml.safe_load(argv[argv.index("-p") + 1])
    hook = yaml.safe_load(_text("manifests/base/webhook/mutatingwebhookconfiguration.yaml"))
    patched = jsonpatch.apply_patch(hook, ops)
    assert [w["failurePolicy"] for w in patched["webhooks"]] == ["Ignore"]


def test_what_gets_installed_is_what_the_base_renders() -> None:
    table = _rows(_section("docs/install.md", "## Install with kubectl"))
    rows = []
    for first, _notes in table:
        kinds = set(re.findall(r"[A-Z]\w+", re.sub(r"`[^`]*`", "", first)))
        names = {n.replace("<hash>", "*") for n in re.findall(r"`([^`]+)`", first)}
        rows.append((kinds, names))
    rendered = _kustomize("", resources="../manifests/base")
    for obj in rendered:
        kind, name = obj["kind"], obj["metadata"]["name"]
        assert any(
            kind in kinds and (not names or any(fnmatch.fnmatch(name, n) for n in names))
            for kinds, names in rows
        ), (kind, name)
    every_name = {o["metadata"]["name"] for o in rendered}
    for _, names in rows:
        for pattern in names:
            assert fnmatch.filter(every_name, pattern), pattern


def test_the_wait_image_denial_shown_is_the_codes() -> None:
    rows = _rows(_section("docs/configuration.md", "## `schemagate serve` flags"))
    (default,) = [d for flags, _, d in rows if "--wait-image" in flags]
    shown = re.search(r"denied with `([^`]+)`", default)
    assert shown is not None
    obj = _workload("shop", "inject", {"schemagate.dev/tool": "flyway", contract.RUN: "once"})
    answer = evaluate(
        obj, namespace="shop", config=parse_config({}), excluded=decide.DEFAULT_EXCLUDED
    ).result
    assert isinstance(answer, review.AdmissionResponse) and answer.message is not None
    assert answer.message == f"shop/api: {shown[1]}"


def test_every_repository_path_a_command_shown_applies_exists() -> None:
    shown = set()
    for path in DOCS:
        for target in re.findall(
            r"(?:-k|-f) ((?:manifests|tests|dev)/[\w./-]+)", _text(str(path.relative_to(ROOT)))
        ):
            shown.add(target.rstrip("."))
    assert "manifests/status" in shown and "manifests/base" in shown
    assert all((ROOT / target).exists() for target in shown), sorted(shown)
