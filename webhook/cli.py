"""The `schemagate` command line. Every flag can also come from a SCHEMAGATE_* variable."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from webhook import logs
from webhook.config import ConfigError, load_config


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get("SCHEMAGATE_" + name, default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="schemagate",
        description="Kubernetes admission webhook that makes schema migrations safe under GitOps.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the admission webhook over HTTPS")
    serve.add_argument(
        "--config",
        default=_env("CONFIG"),
        required=_env("CONFIG") is None,
        help="YAML configuration file [SCHEMAGATE_CONFIG]",
    )
    serve.add_argument(
        "--tls-cert",
        default=_env("TLS_CERT"),
        required=_env("TLS_CERT") is None,
        help="PEM serving certificate, reloaded on change [SCHEMAGATE_TLS_CERT]",
    )
    serve.add_argument(
        "--tls-key",
        default=_env("TLS_KEY"),
        required=_env("TLS_KEY") is None,
        help="PEM private key, reloaded on change [SCHEMAGATE_TLS_KEY]",
    )
    serve.add_argument(
        "--host",
        default=_env("HOST", "0.0.0.0"),
        help="address to listen on [SCHEMAGATE_HOST] (default 0.0.0.0)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=int(_env("PORT", "8443") or 8443),
        help="port to listen on [SCHEMAGATE_PORT] (default 8443)",
    )
    serve.add_argument(
        "--client-ca",
        default=_env("CLIENT_CA"),
        help="require API server client certificates signed by this CA [SCHEMAGATE_CLIENT_CA]",
    )
    serve.add_argument(
        "--namespace",
        default=_env("NAMESPACE"),
        help="the webhook's own namespace, never mutated [SCHEMAGATE_NAMESPACE]",
    )
    serve.add_argument(
        "--cert-secret",
        default=_env("CERT_SECRET"),
        help="bootstrap certificates into this Secret before serving and keep the "
        "--tls-cert/--tls-key files in step with it; needs --namespace, --service and "
        "--webhook-configuration [SCHEMAGATE_CERT_SECRET]",
    )
    serve.add_argument(
        "--service",
        default=_env("SERVICE"),
        help="the webhook's Service, named in the serving certificate [SCHEMAGATE_SERVICE]",
    )
    serve.add_argument(
        "--webhook-configuration",
        default=_env("WEBHOOK_CONFIGURATION"),
        help="MutatingWebhookConfiguration whose caBundle the bootstrap keeps "
        "[SCHEMAGATE_WEBHOOK_CONFIGURATION]",
    )
    serve.add_argument(
        "--kubeconfig",
        default=_env("KUBECONFIG"),
        help="kubeconfig for the bootstrap outside a pod [SCHEMAGATE_KUBECONFIG]",
    )
    serve.add_argument(
        "--wait-image",
        default=_env("WAIT_IMAGE"),
        help="image of the init container that `schemagate.dev/run: once` pods wait in: "
        "this image itself [SCHEMAGATE_WAIT_IMAGE]",
    )
    serve.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="[SCHEMAGATE_LOG_LEVEL] (default info)",
    )

    controller = sub.add_parser(
        "controller", help="run each `run: once` release's migration as one Job"
    )
    controller.add_argument(
        "--config",
        default=_env("CONFIG"),
        required=_env("CONFIG") is None,
        help="the webhook's YAML configuration file (the same) [SCHEMAGATE_CONFIG]",
    )
    controller.add_argument(
        "--kubeconfig",
        default=_env("KUBECONFIG"),
        help="kubeconfig outside a pod [SCHEMAGATE_KUBECONFIG]",
    )
    controller.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="[SCHEMAGATE_LOG_LEVEL] (default info)",
    )

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
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig outside a pod (default: in-cluster, then $KUBECONFIG)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "controller":
        return _controller(args)
    if args.command == "wait":
        from webhook.wait import wait

        return wait(Path(args.marker))
    return _certs(args)


def _controller(args: argparse.Namespace) -> int:
    from certs.bootstrap import BootstrapError
    from webhook.controller import run

    logs.configure(args.log_level)
    try:
        asyncio.run(run(load_config(args.config), args.kubeconfig))
    except ConfigError as exc:
        print(f"schemagate: config error: {exc}", file=sys.stderr)
        return 2
    except BootstrapError as exc:
        print(f"schemagate: {exc}", file=sys.stderr)
        return 1
    return 0


def _serve(args: argparse.Namespace) -> int:
    from certs.bootstrap import BootstrapError
    from webhook.certsync import CertSecret
    from webhook.serve import ServeOptions, run

    logs.configure(args.log_level)
    try:
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
            port=args.port,
            client_ca=Path(args.client_ca) if args.client_ca else None,
            namespace=args.namespace,
            cert_secret=cert_secret,
        )
        if cert_secret is None:
            _check_readable(options.tls_cert, options.tls_key)
        _check_readable(options.client_ca)
        run(options)
    except ConfigError as exc:
        print(f"schemagate: config error: {exc}", file=sys.stderr)
        return 2
    except BootstrapError as exc:
        print(f"schemagate: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"schemagate: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr
        )
        return 1
    return 0


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
    from certs.bootstrap import BootstrapError
    from webhook.certsync import CertSecret, ensure

    target = CertSecret(
        args.namespace,
        args.service,
        args.secret,
        args.webhook_configuration,
        args.kubeconfig,
        tuple(args.ip),
        args.rotate_ca,
    )
    try:
        result = await ensure(target)
    except BootstrapError as exc:
        print(f"schemagate: {exc}", file=sys.stderr)
        return 1
    for change in result.changes or ("nothing to do: the Secret and caBundle are valid",):
        print(change)
    return 0
