"""The `schemagate` command line. Every flag can also come from a SCHEMAGATE_* variable."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

# BootstrapError without certs.bootstrap: the Kubernetes client loads only where needed.
from certs.errors import BootstrapError
from webhook import logs
from webhook.config import Config, ConfigError, StartupError
from webhook.config_file import load_config
from webhook.decide import excluded

# Where a pod finds its own namespace (mounted with its service-account token), and the
# namespace the shipped manifests install into, for a server run outside a pod.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
INSTALL_NAMESPACE = "schemagate-system"


def own_namespace(given: str | None, found_in: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The namespace never to gate: as given, else the pod's own, else the install's."""
    if given:
        return given
    try:
        return found_in.read_text(encoding="utf-8").strip() or INSTALL_NAMESPACE
    except OSError:
        return INSTALL_NAMESPACE


def _from_env(
    parser: argparse.ArgumentParser,
    flag: str,
    help: str,
    *,
    var: str | None = None,
    default: str | None = None,
    default_help: str | None = None,
    required: bool = False,
    **kwargs: Any,
) -> None:
    """A flag whose default is the variable SCHEMAGATE_<FLAG> (`--tls-cert`:
    SCHEMAGATE_TLS_CERT, or SCHEMAGATE_<var>), then `default`; the help names both. A
    `required` flag is required only while that variable is unset."""
    name = "SCHEMAGATE_" + (var or flag.lstrip("-").upper().replace("-", "_"))
    value = os.environ.get(name, default)
    shown = default_help or default
    text = f"{help} [{name}]" + (f" (default: {shown})" if shown is not None else "")
    parser.add_argument(
        flag, default=value, required=required and value is None, help=text, **kwargs
    )


def _log_level(parser: argparse.ArgumentParser) -> None:
    levels = ["debug", "info", "warning", "error"]
    _from_env(parser, "--log-level", "log level", default="info", choices=levels)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="schemagate",
        description="Kubernetes admission webhook that makes schema migrations safe under GitOps.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the admission webhook over HTTPS")
    _from_env(serve, "--config", "YAML configuration file", required=True)
    _from_env(serve, "--tls-cert", "PEM serving certificate, reloaded on change", required=True)
    _from_env(serve, "--tls-key", "PEM private key, reloaded on change", required=True)
    _from_env(
        serve,
        "--tls-wait",
        "seconds to wait for the --tls-cert/--tls-key files to appear, e.g. a mounted "
        "Secret that the certificate bootstrap has not created yet",
        default="0",
        default_help="0: they must exist at start",
    )
    _from_env(serve, "--host", "address to listen on", default="0.0.0.0")
    _from_env(serve, "--port", "port to listen on", default="8443")
    _from_env(serve, "--client-ca", "require API server client certificates signed by this CA")
    _from_env(
        serve,
        "--namespace",
        "the webhook's own namespace, never gated or mutated",
        default_help=f"the pod's service-account namespace, else {INSTALL_NAMESPACE}",
    )
    _from_env(
        serve,
        "--cert-secret",
        "bootstrap certificates into this Secret before serving and keep the "
        "--tls-cert/--tls-key files in step with it; needs --namespace, --service and "
        "--webhook-configuration",
    )
    _from_env(serve, "--service", "the webhook's Service, named in the serving certificate")
    _from_env(
        serve,
        "--webhook-configuration",
        "MutatingWebhookConfiguration whose caBundle the bootstrap keeps",
    )
    _from_env(serve, "--kubeconfig", "kubeconfig for the bootstrap outside a pod")
    _from_env(
        serve,
        "--wait-image",
        "image of the init container that `schemagate.dev/run: once` pods wait in: "
        "this image itself",
    )
    _log_level(serve)

    controller = sub.add_parser(
        "controller", help="run each `run: once` release's migration as one Job"
    )
    _from_env(
        controller, "--config", "the webhook's YAML configuration file (the same)", required=True
    )
    _from_env(controller, "--kubeconfig", "kubeconfig outside a pod")
    _log_level(controller)

    wait = sub.add_parser(
        "wait", help="init container of `run: once` pods: succeed once the release's run has"
    )
    wait.add_argument("--marker", required=True, help="the mounted marker ConfigMap's folder")

    certs = sub.add_parser("certs", help="certificate tools").add_subparsers(
        dest="certs_command", required=True
    )
    issue = certs.add_parser("issue", help="write a CA and a serving certificate to a folder")
    issue.add_argument("--out", required=True, help="folder for ca.crt, tls.crt, tls.key")
    issue.add_argument("--dns-name", action="append", default=[], help="DNS name (repeatable)")
    issue.add_argument("--ip", action="append", default=[], help="IP address (repeatable)")

    boot = certs.add_parser(
        "bootstrap",
        help="ensure the TLS Secret (CA + serving cert for the Service) and the caBundle of "
        "the MutatingWebhookConfiguration; renews and rotates as needed",
    )
    boot.add_argument("--namespace", required=True, help="namespace of the Service and Secret")
    boot.add_argument("--service", required=True, help="the webhook's Service")
    boot.add_argument("--secret", required=True, help="kubernetes.io/tls Secret to keep")
    boot.add_argument(
        "--webhook-configuration",
        required=True,
        help="MutatingWebhookConfiguration whose caBundle to set",
    )
    boot.add_argument(
        "--ip",
        action="append",
        default=[],
        help="extra IP SAN, for a webhook reached by URL (repeatable)",
    )
    boot.add_argument(
        "--rotate-ca",
        action="store_true",
        help="start a CA rotation (old and new CA overlap in the caBundle)",
    )
    boot.add_argument(
        "--every",
        type=float,
        default=0,
        metavar="SECONDS",
        help="keep running and repeat the round this often (renewal and CA rotation); "
        "a failed round is logged and retried at the next (default 0: one round)",
    )
    boot.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig outside a pod (default: in-cluster, then $KUBECONFIG)",
    )

    check = sub.add_parser(
        "check",
        help="what admission would do to rendered manifests (for CI); exit 1 if any "
        "would be denied, 2 for bad input",
    )
    check.add_argument(
        "paths",
        nargs="*",
        default=["-"],
        metavar="PATH|-",
        help="YAML or JSON files, directories (read recursively for *.yaml, *.yml, *.json) "
        "or - for stdin (the default)",
    )
    _from_env(
        check,
        "--config",
        "the webhook's configuration; without it no database is known, as in the "
        "shipped config.yaml",
    )
    check.add_argument(
        "--no-lookup",
        action="store_true",
        help="check everything but what the databases record, reading none",
    )
    check.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace for objects that name none (default: default)",
    )
    _from_env(
        check,
        "--webhook-namespace",
        "the webhook's own namespace, never mutated",
        var="NAMESPACE",
        default=INSTALL_NAMESPACE,
    )
    check.add_argument(
        "--show-patch",
        action="store_true",
        help="also print the JSON Patch and the object it produces",
    )
    check.add_argument("-o", "--output", choices=["text", "json"], default="text")

    status = sub.add_parser(
        "status",
        help="every labelled workload in the cluster and what its database records; "
        "exit 1 if a gated one is not satisfied",
    )
    _from_env(
        status,
        "--config",
        "the webhook's configuration, to read the databases; set in the webhook's pod",
        required=True,
    )
    status.add_argument("-n", "--namespace", help="only this namespace (default: every namespace)")
    _from_env(
        status,
        "--webhook-namespace",
        "the webhook's own namespace, never gated",
        var="NAMESPACE",
        default=INSTALL_NAMESPACE,
    )
    status.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig outside a pod (default: in-cluster, then $KUBECONFIG)",
    )
    status.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _command(args)
    except ConfigError as exc:
        print(f"schemagate: config error: {exc}", file=sys.stderr)
        return 2
    except BootstrapError as exc:
        print(f"schemagate: {exc}", file=sys.stderr)
        return 1


def _command(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve(args)
    if args.command == "check":
        return _check(args)
    if args.command == "status":
        return _status(args)
    if args.command == "controller":
        return _controller(args)
    if args.command == "wait":
        from webhook.wait import wait

        return wait(Path(args.marker))
    return _certs(args)


def _check(args: argparse.Namespace) -> int:
    from webhook.check import CheckOptions, run

    logs.configure("error")  # a database that cannot be read is in the answer already
    options = CheckOptions(
        paths=args.paths,
        config=load_config(args.config) if args.config else Config(),
        excluded=excluded(args.webhook_namespace),
        namespace=args.namespace,
        lookup=not args.no_lookup,
        show_patch=args.show_patch,
        output=args.output,
    )
    return run(options, sys.stdin, sys.stdout, sys.stderr)


def _status(args: argparse.Namespace) -> int:
    from webhook.status import StatusError, StatusOptions, run

    logs.configure("error")  # a database that cannot be read is in the answer already
    try:
        options = StatusOptions(
            config=load_config(args.config),
            excluded=excluded(args.webhook_namespace),
            kubeconfig=args.kubeconfig,
            namespace=args.namespace,
            output=args.output,
        )
        code, text = run(options)
    except StatusError as exc:
        print(f"schemagate: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return code


def _controller(args: argparse.Namespace) -> int:
    from webhook.controller import run

    logs.configure(args.log_level)
    asyncio.run(run(load_config(args.config), args.kubeconfig))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from webhook.serve import ServeOptions, run

    logs.configure(args.log_level)
    try:
        port = _port(args.port)
        tls_wait = _seconds(args.tls_wait, "--tls-wait/SCHEMAGATE_TLS_WAIT")
        config = replace(load_config(args.config), wait_image=args.wait_image or None)
        cert_secret = None
        if args.cert_secret:
            missing = [
                f for f in ("namespace", "service", "webhook_configuration") if not getattr(args, f)
            ]
            if missing:
                flags = ", ".join("--" + f.replace("_", "-") for f in missing)
                print(f"schemagate: --cert-secret needs {flags}", file=sys.stderr)
                return 2
            from webhook.certsync import CertSecret

            cert_secret = CertSecret(
                args.namespace,
                args.service,
                args.cert_secret,
                args.webhook_configuration,
                args.kubeconfig,
            )
        options = ServeOptions(
            config=config,
            tls_cert=Path(args.tls_cert),
            tls_key=Path(args.tls_key),
            host=args.host,
            port=port,
            client_ca=Path(args.client_ca) if args.client_ca else None,
            namespace=own_namespace(args.namespace),
            cert_secret=cert_secret,
            tls_wait=tls_wait,
        )
        _check_readable(options.client_ca)
        run(options)
    except StartupError as exc:
        print(f"schemagate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"schemagate: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr
        )
        return 1
    return 0


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 65536):
        raise StartupError(f"--port/SCHEMAGATE_PORT: {text!r} is not a port number (1-65535)")
    return int(text)


def _seconds(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:
        raise StartupError(f"{name}: {text!r} is not a number of seconds (0-86400)")
    return value


def _check_readable(*paths: Path | None) -> None:
    for path in paths:
        if path is not None and not path.is_file():
            raise OSError(2, "file not found", str(path))


def _certs(args: argparse.Namespace) -> int:
    if args.certs_command == "issue":
        from certs.files import issue_to_dir

        if not args.dns_name and not args.ip:
            print("schemagate: certs issue needs at least one --dns-name or --ip", file=sys.stderr)
            return 2
        issue_to_dir(Path(args.out), args.dns_name, args.ip)
        print(f"wrote {args.out}/ca.crt, tls.crt, tls.key")
        return 0
    return asyncio.run(_bootstrap(args))


async def _bootstrap(args: argparse.Namespace) -> int:
    from webhook.certsync import UNCHANGED, CertSecret, ensure, renew_forever

    target = CertSecret(
        args.namespace,
        args.service,
        args.secret,
        args.webhook_configuration,
        args.kubeconfig,
        tuple(args.ip),
        args.rotate_ca,
    )
    if args.every > 0:
        logs.configure("info")
        await _until_terminated(renew_forever(target, args.every))
        return 0
    result = await ensure(target)
    for change in result.changes or (UNCHANGED,):
        print(change)
    return 0


async def _until_terminated(work: Coroutine[None, None, None]) -> None:
    """Run `work` until SIGTERM or SIGINT, then exit cleanly (a pod being stopped)."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
