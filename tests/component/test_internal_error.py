"""An unexpected failure inside a decision is answered as a review, never a traceback."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.factories import deployment, review
from tests.support import wording
from tests.support.net import free_port
from webhook import decide
from webhook.app import State, make_server
from webhook.config import Config
from webhook.lookup import Lookups
from webhook.tls import ServingTLS

pytestmark = pytest.mark.component


async def test_internal_error_is_a_500_review_and_a_logged_traceback(
    tls_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A mock is the only way to make a pure decision fail on purpose: no input does.
    def broken(*_args: object) -> None:
        raise RuntimeError("decision exploded")

    monkeypatch.setattr(decide, "admit", broken)
    tls = ServingTLS(tls_dir / "tls.crt", tls_dir / "tls.key")
    runner = web.ServerRunner(make_server(State(Config(), Lookups({}), tls=tls)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls.context).start()
    client_tls = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
    try:
        async with aiohttp.ClientSession() as session:
            doc = review(deployment(mode="inject"), uid="boom-1")
            with caplog.at_level(logging.ERROR):
                async with session.post(
                    f"https://127.0.0.1:{port}/mutate", json=doc, ssl=client_tls
                ) as response:
                    assert response.status == 200
                    answer = await response.json()
    finally:
        await runner.cleanup()
    assert answer == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": "boom-1",
            "allowed": False,
            "status": {
                "code": 500,
                "message": wording.internal_error("boom-1"),
            },
        },
    }
    assert "decision exploded" in caplog.text
    assert "Traceback" in caplog.text
