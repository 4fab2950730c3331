"""`admission.answer`, the whole answer to a decoded review with no HTTP around it: the
route, the decision, and a gate finished through the lookups it is handed."""

from __future__ import annotations

import orjson

from tests.factories import deployment, review
from webhook import admission, decide
from webhook.config import Config, DatabaseConfig
from webhook.gate import Found
from webhook.review import AdmissionRequest, AdmissionResponse, allowed, parse_review
from webhook.versions import Recorded

ORDERS = DatabaseConfig("orders", "url", "postgresql://h/orders", "flyway", frozenset({"shop"}))
CONFIG = Config(databases={"orders": ORDERS})
GATED = {"schemagate.dev/database": "orders", "schemagate.dev/schema-version": "42"}


class Recording:
    """Lookups that answer from a fixed record and remember what they were asked."""

    def __init__(self, found: Recorded) -> None:
        self.found = found
        self.asked: list[str] = []

    async def answer(
        self, pending: decide.PendingGate, config: Config
    ) -> tuple[AdmissionResponse, Found]:
        self.asked.append(pending.check.db.name)
        return decide.finish_gate(pending, self.found, config), self.found


class Broken:
    """Lookups with a fault in schemagate itself, the one thing no input causes."""

    async def answer(
        self, pending: decide.PendingGate, config: Config
    ) -> tuple[AdmissionResponse, Found]:
        raise RuntimeError("lookup exploded")


def _request(doc: dict[str, object]) -> AdmissionRequest:
    return parse_review(orjson.dumps(doc))


async def test_pass_and_inject_never_ask_the_lookups() -> None:
    lookups = Recording(Recorded(True, latest="42"))
    plain = await admission.answer(_request(review(deployment())), CONFIG, lookups)
    assert (plain.response, plain.mode, plain.decision) == (allowed(), "pass", "allowed")
    injected = await admission.answer(
        _request(review(deployment(mode="inject", annotations={"schemagate.dev/tool": "flyway"}))),
        CONFIG,
        lookups,
    )
    assert (injected.mode, injected.decision) == ("inject", "patched")
    assert injected.response.patch
    assert lookups.asked == []


async def test_a_gate_is_finished_by_the_lookups_it_is_handed() -> None:
    doc = review(deployment(mode="gate", annotations=GATED))
    met = Recording(Recorded(True, latest="42"))
    answered = await admission.answer(_request(doc), CONFIG, met)
    assert (answered.mode, answered.decision, answered.response.allowed) == (
        "gate",
        "allowed",
        True,
    )
    behind = Recording(Recorded(True, latest="41"))
    denied = await admission.answer(_request(doc), CONFIG, behind)
    assert (denied.mode, denied.decision, denied.response.allowed) == ("gate", "denied", False)
    assert denied.response.message == (
        "shop/api needs schema orders >= 42 (flyway); orders records 41. "
        "Run the migrations first, then re-apply."
    )
    assert met.asked == behind.asked == ["orders"]


async def test_the_excluded_namespaces_pass_before_any_lookup() -> None:
    doc = review(deployment(mode="gate", annotations=GATED))
    lookups = Recording(Recorded(True, latest="41"))
    answered = await admission.answer(_request(doc), CONFIG, lookups, frozenset({"shop"}))
    assert (answered.mode, answered.decision) == ("pass", "allowed")
    assert lookups.asked == []


async def test_a_fault_inside_is_a_500_answer_not_an_exception() -> None:
    doc = review(deployment(mode="gate", annotations=GATED), uid="boom-2")
    answered = await admission.answer(_request(doc), CONFIG, Broken())
    assert (answered.mode, answered.decision) == ("gate", "error")
    assert (answered.response.allowed, answered.response.code) == (False, 500)
    assert answered.response.message == (
        "schemagate internal error (uid boom-2); see the webhook log"
    )
