"""Bad input on the real servers: a few hundred generated bad messages through every inbound subject.

The messages come from the contract-model strategies of ``tests/unit/test_fuzz_contracts.py``
(seeded: ``derandomize=True``), kept to those the parse path rejects. Intake and dispatch run
in this process on the real NATS and PostgreSQL; after the batch each message has its
field-level rejection (``ct.appeal.rejected`` by msg id, ``ct.order.rejected`` naming
ActionMustBeWellFormed, an ``errors`` reply to ``ct.q.appeal``), no row was stored, nothing
was dead-lettered or redelivered, every consumer loop still runs, and a valid call and a
valid unit action sent afterwards are still handled. The 10,000-example run is the
in-process one (FUZZ_EXAMPLES); this one proves the same on the wire.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from services.dispatch.__main__ import create_service as create_dispatch
from services.intake.__main__ import create_service as create_intake
from shared.bus import parse_message
from shared.contracts import subjects
from tests.integration.test_intake import a_call
from tests.support import Recorder, publish, running, wait_for
from tests.unit.test_fuzz_contracts import wire_message

pytestmark = pytest.mark.integration

MESSAGES = 300
QUERIES = 40
INTAKE_SUBJECTS = (subjects.IN_HOTLINE, subjects.IN_APP, subjects.IN_RECEPTION, subjects.IN_EVENT)
DISPATCH_SUBJECTS = (subjects.IN_ORDER_ALL, subjects.IN_FEEDBACK)


def bad_messages(n: int, max_payload: int) -> list[tuple[str, bytes]]:
    """``n`` seeded messages (subject, body) that the parse path rejects, each small enough for the server."""
    found: list[tuple[str, bytes]] = []

    @settings(max_examples=n * 3, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(wire_message())
    def collect(message):
        subject, data = message
        # a NATS subject token is never empty and holds no whitespace or NUL: such subjects cannot be sent
        if any(not t or any(c.isspace() or c == "\x00" for c in t) for t in subject.split(".")):
            return
        if len(data) < max_payload - 4096 and parse_message(subject, data)[0] is None and len(found) < n:
            found.append(message)

    collect()
    return found


async def stored_rows(db) -> dict[str, int]:
    tables = ("intake.appeals", "intake.coffee_events", "dispatch.orders", "dispatch.appeals")
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in tables}  # noqa: S608 - our own names


async def consumer_stats(js, services) -> dict[str, tuple[int, int, int]]:
    out = {}
    for service in services:
        for sub in service.consumers.subscriptions:
            info = await js.consumer_info(sub.stream, sub.durable)
            out[sub.durable] = (info.num_redelivered, info.num_ack_pending, info.num_pending)
    return out


async def test_a_few_hundred_bad_messages_are_each_rejected_at_once_and_nothing_is_stored(servers, nc, js, db):
    corpus = bad_messages(MESSAGES, nc.max_payload)
    assert len(corpus) == MESSAGES
    by_subject = {s: sum(1 for subject, _ in corpus if subjects.subject_matches(s, subject))
                  for s in (*INTAKE_SUBJECTS, *DISPATCH_SUBJECTS, subjects.Q_APPEAL)}
    assert all(by_subject.values()), by_subject  # every inbound subject and the query got some

    rec = await Recorder(nc).watch("ct.appeal.rejected", "ct.order.rejected", "ct.appeal.registered",
                                   "ct.dlq.>")
    async with running(create_intake, servers) as intake, running(create_dispatch, servers) as dispatch:
        services = (intake, dispatch)

        async def settled():
            stats = await consumer_stats(js, services)
            return all(ack_pending == 0 and pending == 0 for _, ack_pending, pending in stats.values()) and stats

        # what earlier tests left on the shared streams is handled first, so the counts below are the batch's
        before = await wait_for(settled, timeout=30, what="every consumer drained before the batch")
        before_rows = await stored_rows(db)
        run = uuid.uuid4().hex[:8]
        intake_ids, orders, queries = [], 0, []
        for i, (subject, data) in enumerate(corpus):
            msg_id = f"fuzz-{run}-{i}"
            if subject == subjects.Q_APPEAL:
                queries.append(data)
                continue
            await publish(js, subject, data, msg_id=msg_id)
            if subject in INTAKE_SUBJECTS:
                intake_ids.append(msg_id)
            else:
                orders += 1

        # the query answers at once with one error per field (never a timeout)
        for data in queries[:QUERIES]:
            reply = json.loads((await nc.request(subjects.Q_APPEAL, data, timeout=5)).data)
            assert reply["found"] is False and reply["errors"], reply
            assert all(e["field"] and e["message"] for e in reply["errors"])

        def rejected_intake():
            return {b.get("msg_id") for s, b, _ in rec.messages if s == subjects.APPEAL_REJECTED} >= set(intake_ids)

        def rejected_orders():
            return len([b for b in rec.on(subjects.ORDER_REJECTED) if b.get("rule") == "ActionMustBeWellFormed"
                        and b.get("reason") == "invalid"]) >= orders

        await wait_for(rejected_intake, timeout=40, what="a ct.appeal.rejected for every bad intake message")
        await wait_for(rejected_orders, timeout=40, what="a ct.order.rejected for every bad unit action or rating")

        after = await wait_for(settled, timeout=30, what="every consumer drained")
        redelivered = {d: after[d][0] - before[d][0] for d in after if after[d][0] != before[d][0]}
        assert redelivered == {}, redelivered
        for s, b, _ in rec.messages:
            if s == subjects.APPEAL_REJECTED and b.get("msg_id") in intake_ids:
                assert b["errors"] and all(e["field"] and e["message"] for e in b["errors"])
        assert [s for s, _, _ in rec.messages if s.startswith("ct.dlq.")] == []
        assert rec.on(subjects.APPEAL_REGISTERED) == []
        assert await stored_rows(db) == before_rows
        # no consumer loop died on the way
        assert all(not t.done() for s in services for t in s.consumers._loops)
        assert [(await s.health()).ok for s in services] == [True, True]

        # and a valid call and a valid unit action after the batch are still handled
        call = a_call(received_at=datetime.now(UTC).isoformat())
        await publish(js, subjects.IN_HOTLINE, call, msg_id=call["call_id"])
        await wait_for(lambda: rec.on(subjects.APPEAL_REGISTERED, source_id=call["call_id"]), timeout=20,
                       what="the valid call registered")
        action_id = f"A-{run}"
        await publish(js, subjects.order_action_subject("sanitation", "sign"),
                      {"action_id": action_id, "order_id": f"WO-none-{run}", "actor": "张科长"}, msg_id=action_id)
        refused = await wait_for(lambda: rec.on(subjects.ORDER_REJECTED, action_id=action_id), timeout=20,
                                 what="the valid action handled (refused: no such order)")
        assert refused[0]["reason"] != "invalid"
    await rec.close()
