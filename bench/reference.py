"""The reference: the least work any admission webhook must do on this stack.

A bare aiohttp app, as its documentation would write it: decode the AdmissionReview
(`request.json()`), answer `allowed` with its uid (`web.json_response`). No contract,
no patch, no metrics, no log line. It serves with `webhook.tls.ServingTLS`, the same
certificate and TLS settings as schemagate, and accepts bodies up to the same limit.

    python -m bench.reference --tls-cert tls.crt --tls-key tls.key --port 9443
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from aiohttp import web

from webhook.review import MAX_BODY_BYTES
from webhook.tls import ServingTLS


async def mutate(request: web.Request) -> web.Response:
    review = await request.json()
    uid = review["request"]["uid"]
    return web.json_response(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        }
    )


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def serve(cert: Path, key: Path, host: str, port: int) -> None:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ServingTLS(cert, key).context).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reference")
    parser.add_argument("--tls-cert", type=Path, required=True)
    parser.add_argument("--tls-key", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.tls_cert, args.tls_key, args.host, args.port))


if __name__ == "__main__":
    main()
