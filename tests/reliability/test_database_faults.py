"""A steady mix of admissions over TLS while the gate's PostgreSQL fails under it.

Stopped and restarted: every answer comes within the lookup deadline and follows
on_unreachable (one webhook fails closed, one open), and once the database is back the
same processes let gates through again. Blocked on a held table lock: the deadline holds,
and inject requests answered meanwhile show that no lookup ever stalls the event loop.
"""

from __future__ import annotations

import time

import pytest

from tests.reliability.harness import (
    TRANSCRIPT,
    Database,
    Launch,
    Load,
    Outcome,
    describe,
    gate_config,
    report,
    well_formed,
)
from tests.support import wording

pytestmark = pytest.mark.faults

DEADLINE = 1.0  # lookup.timeout_seconds in these configs
TTL = 1.0  # lookup.cache_ttl_seconds
# Scheduling of a handshake, a lookup and its teardown on a busy two-core machine.
SLACK = 0.5
UNREACHABLE = "could not be read"


def _healthy_gate(o: Outcome) -> bool:
    return o.allowed and not o.warnings and "status" not in o.response


def _unreachable_gate(o: Outcome, policy: str) -> bool:
    if policy == "closed":
        return (
            not o.allowed
            and o.response["status"]["code"] == 503
            and UNREACHABLE in o.message
            and o.message.endswith(wording.FAILS_CLOSED)
        )
    return (
        o.allowed
        and len(o.warnings) == 1
        and UNREACHABLE in o.warnings[0]
        and o.warnings[0].endswith(wording.ADMITTED_UNCHECKED)
    )


def test_postgres_stopped_and_restarted_under_load(
    orders: Database, launch: Launch, tls_dir: object
) -> None:
    env = {"ORDERS_DATABASE_URL": orders.url}
    webhooks = {
        policy: launch(gate_config(policy=policy, timeout=DEADLINE, ttl=TTL), env=env)
        for policy in ("closed", "open")
    }
    pids = {policy: w.proc.pid for policy, w in webhooks.items()}
    loads = {
        policy: Load(w.port, w.context, workers=2, name=f"pg-{policy}", limit=40)
        for policy, w in webhooks.items()
    }
    for load in loads.values():
        load.__enter__()
    try:
        time.sleep(2)
        down_from = time.monotonic()
        orders.server.stop()
        down = time.monotonic()
        time.sleep(3)
        up_from = time.monotonic()
        orders.server.start()
        up = time.monotonic()
        # Recovered: gates pass again on both, without restarting either process.
        recovered: dict[str, float] = {}
        while len(recovered) < 2 and time.monotonic() < up + 10:
            for policy, load in loads.items():
                answers = [o for o in load.select("gate", up) if o.answered]
                if policy not in recovered and answers and _healthy_gate(answers[-1]):
                    recovered[policy] = answers[-1].finished - up
            time.sleep(0.1)
        time.sleep(2)
    finally:
        for load in loads.values():
            load.stop()

    for policy, load in loads.items():
        served = webhooks[policy]
        assert served.proc.poll() is None and served.proc.pid == pids[policy]
        outcomes = load.outcomes
        failed = load.failures(well_formed)
        gates = load.select("gate")
        report(
            f"postgres stop/start, on_unreachable {policy}",
            len(outcomes),
            len(outcomes) - len(failed),
            len(failed),
            f"gate {describe(gates)}; recovered {recovered.get(policy, -1):.1f} s after start",
        )
        assert failed == []
        # Every answer within the lookup deadline, whatever the database was doing.
        slow = [o for o in outcomes if o.latency > DEADLINE + SLACK]
        assert slow == [], [(o.kind, round(o.latency, 2)) for o in slow]
        # Answered before the stop began: the recorded version 3 satisfies >= 2. (One
        # started before it may read the database after it went down.)
        before = [o for o in load.select("gate") if o.answered and o.finished < down_from]
        assert before and all(_healthy_gate(o) for o in before)
        # Down (and any cached answer expired): on_unreachable, for every gate.
        outage = load.select("gate", down + TTL + 0.2, up_from)
        assert len(outage) >= 5
        assert all(_unreachable_gate(o, policy) for o in outage), [
            (o.message, o.warnings) for o in outage if not _unreachable_gate(o, policy)
        ]
        # Around the transitions: one answer or the other, nothing else.
        assert all(_healthy_gate(o) or _unreachable_gate(o, policy) for o in load.select("gate"))
        # Back: the last second of gates all pass.
        assert policy in recovered, "gates never passed again after the restart"
        assert recovered[policy] < 2 * TTL + DEADLINE + SLACK
        tail = load.select("gate", time.monotonic() - 1.5)
        assert tail and all(_healthy_gate(o) for o in tail)
        metrics = served.request("GET", "/metrics")[1]
        TRANSCRIPT.add(metrics)
        assert served.metric("schemagate_lookups_total", result="unreachable") >= 1
        assert served.metric("schemagate_lookups_total", result="recorded") >= 2


def test_gate_query_blocked_by_a_lock_honours_the_deadline_without_stalling(
    orders: Database, launch: Launch
) -> None:
    served = launch(gate_config(timeout=DEADLINE, ttl=0), env={"ORDERS_DATABASE_URL": orders.url})
    context = served.context
    with (
        Load(served.port, context, kinds=("gate",), workers=2, name="lock-gate", limit=30) as gates,
        Load(
            served.port, context, kinds=("inject",), workers=2, name="lock-inject", limit=30
        ) as injects,
    ):
        time.sleep(1.5)
        conn = orders.server.connect(orders.name)
        conn.autocommit = False
        conn.execute("LOCK TABLE flyway_schema_history IN ACCESS EXCLUSIVE MODE")
        held = time.monotonic()
        time.sleep(4)
        conn.close()  # rolls back, releasing the lock
        released = time.monotonic()
        time.sleep(2)
    outcomes = gates.outcomes + injects.outcomes
    failed = [o for o in outcomes if not well_formed(o)]
    during = injects.select("inject", held, released)
    before = injects.select("inject", 0, held)
    hung = gates.select("gate", held + 0.05, released - DEADLINE - SLACK)
    report(
        "gate query on a held lock",
        len(outcomes),
        len(outcomes) - len(failed),
        len(failed),
        f"inject before: {describe(before)}; during the hang: {describe(during)}",
    )
    assert failed == []
    assert all(o.latency <= DEADLINE + SLACK for o in outcomes), describe(gates.outcomes)
    # Every gate that started during the hang waited out the deadline, and said so.
    assert len(hung) >= 4
    for o in hung:
        assert not o.allowed
        assert o.message.endswith(
            f"{wording.could_not_read('orders', 'timed out')}. {wording.FAILS_CLOSED}"
        ), o.message
        assert o.latency >= DEADLINE - 0.1
    # No event-loop stall: inject answers kept flowing at their usual pace.
    assert len(during) >= 20
    assert max(o.latency for o in during) < DEADLINE / 2
    # And the gate passes again once the lock is gone.
    after = gates.select("gate", released + DEADLINE + SLACK)
    assert after and all(_healthy_gate(o) for o in after)
