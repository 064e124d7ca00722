"""The guarantees every service relies on, against the real servers: outbox, retries, dead letters, replicas."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

import pytest

from services.intake.__main__ import create_service as create_intake
from shared.contracts import subjects
from shared.service import Service
from tests.integration.test_intake import a_call
from tests.support import Recorder, publish, running, settings_for, wait_for

pytestmark = pytest.mark.integration


async def test_the_outbox_publishes_after_a_restart_between_commit_and_publish(servers, js, db, nc):
    rec = await Recorder(nc).watch(subjects.APPEAL_REGISTERED)
    call = a_call()
    # a process that commits but dies before relaying: its relay never runs
    async with running(create_intake, servers, outbox_relay=False):
        await publish(js, subjects.IN_HOTLINE, call, msg_id=call["call_id"])
        appeal_id = await wait_for(lambda: db.fetchval(
            "SELECT appeal_id FROM intake.appeals WHERE source_id=$1", call["call_id"]), what="appeal committed")
        staged = await db.fetchrow("SELECT id, subject FROM intake.outbox WHERE convert_from(payload, 'UTF8') LIKE $1",
                                   f"%{appeal_id}%")
        assert staged["subject"] == subjects.APPEAL_REGISTERED
    assert rec.on(subjects.APPEAL_REGISTERED, appeal_id=appeal_id) == []

    # the next start relays what the dead process left, under the outbox id
    async with running(create_intake, servers):
        await wait_for(lambda: rec.on(subjects.APPEAL_REGISTERED, appeal_id=appeal_id), what="relayed after restart")
        headers = next(h for s, b, h in rec.messages if b.get("appeal_id") == appeal_id)
        assert headers["Nats-Msg-Id"] == staged["id"]
        await wait_for(lambda: db.fetchval("SELECT count(*) = 0 FROM intake.outbox WHERE id=$1", staged["id"]),
                       what="relayed row deleted")

        # a crash after publish but before the delete relays the row again: JetStream drops the copy
        payload = json.dumps(next(b for s, b, h in rec.messages if b.get("appeal_id") == appeal_id)).encode()
        before = (await js.stream_info("CT_EVENTS")).state.messages
        await db.execute("INSERT INTO intake.outbox (id, subject, payload) VALUES ($1, $2, $3)",
                         staged["id"], subjects.APPEAL_REGISTERED, payload)
        await wait_for(lambda: db.fetchval("SELECT count(*) = 0 FROM intake.outbox WHERE id=$1", staged["id"]),
                       what="row relayed again")
        assert (await js.stream_info("CT_EVENTS")).state.messages == before
    assert len(rec.on(subjects.APPEAL_REGISTERED, appeal_id=appeal_id)) == 1
    await rec.close()


async def test_a_batch_staged_in_one_statement_keeps_its_order_for_the_relay(servers, db):
    from shared.contracts import AppealQuery
    from shared.outbox import put_many

    events = [AppealQuery(appeal_id=f"CT-20261126-{n:04d}") for n in range(40)]
    async with running(create_intake, servers, outbox_relay=False):
        pass  # the intake schema and its outbox exist
    tx = db.transaction()
    await tx.start()
    try:
        await db.execute("SET LOCAL search_path = intake")
        ids = await put_many(db, "intake", [(subjects.Q_APPEAL, e) for e in events])
        staged = await db.fetch("SELECT id, payload FROM outbox WHERE id = ANY($1::text[]) ORDER BY seq", ids)
    finally:
        await tx.rollback()  # nothing is relayed: only the order is looked at
    assert [r["id"] for r in staged] == ids and len(set(ids)) == 40
    assert [json.loads(r["payload"])["appeal_id"] for r in staged] == [e.appeal_id for e in events]


def flaky_service(env, attempts: dict, seen: list, subject: str) -> Service:
    """A minimal service whose handler fails for messages marked poison."""
    folder = Path(tempfile.mkdtemp())
    service = Service("reliability", settings_for(env, max_deliver=3, retry_backoff_s="0.1"), folder)

    async def handle(batch):
        for d in batch:
            body = d.json()
            # deliveries, not handler calls: a failed batch is retried message by message
            attempts[body["n"]] = max(attempts.get(body["n"], 0), d.num_delivered)
            if body.get("poison"):
                raise RuntimeError("cannot handle this one")
        seen.extend(d.json()["n"] for d in batch)

    service.consumers.subscribe(subject, handle, invalid="reject", durable=f"reliability-{uuid.uuid4().hex[:6]}")
    return service


async def test_a_failing_message_is_retried_then_dead_lettered_without_blocking_others(servers, js, nc):
    subject = f"ct.in.order.test_{uuid.uuid4().hex[:6]}.sign"
    dlq = subjects.dead_letter_subject("reliability", subject)
    rec = await Recorder(nc).watch(dlq)
    attempts: dict = {}
    seen: list = []
    service = flaky_service(servers, attempts, seen, subject)
    await service.start()
    try:
        await publish(js, subject, {"n": 1})
        await publish(js, subject, {"n": 2, "poison": True}, msg_id=f"poison-{uuid.uuid4().hex[:6]}")
        await publish(js, subject, {"n": 3})
        dead = await wait_for(lambda: rec.on(dlq), what="dead letter")
        assert dead == [{"n": 2, "poison": True}]
        headers = rec.messages[0][2]
        assert headers["Ct-Original-Subject"] == subject
        assert headers["Ct-Deliveries"] == "3"
        assert "cannot handle this one" in headers["Ct-Error"]
        assert sorted(seen) == [1, 3]
        assert attempts[2] == 3  # max_deliver deliveries, then no more

        async def settled():
            info = await js.consumer_info("CT_IN", service.consumers.subscriptions[0].durable)
            return info.num_ack_pending == 0 and info.num_pending == 0

        await wait_for(settled, what="nothing left to redeliver")
    finally:
        await service.stop()
        await rec.close()


async def test_two_intake_replicas_share_one_durable_consumer_without_duplicates(servers, js, db, nc):
    rec = await Recorder(nc).watch(subjects.APPEAL_REGISTERED)
    tag = uuid.uuid4().hex[:8]
    calls = [a_call(call_id=f"R-{tag}-{i:03d}") for i in range(300)]
    async with running(create_intake, servers) as one, running(create_intake, servers) as two:
        before = one.consumers.handled + two.consumers.handled
        for call in calls:
            await publish(js, subjects.IN_HOTLINE, call, msg_id=call["call_id"])
        await wait_for(lambda: len([b for b in rec.on(subjects.APPEAL_REGISTERED)
                                    if b["source_id"].startswith(f"R-{tag}")]) >= 300, timeout=30, what="300 registered")
        assert one.consumers.handled + two.consumers.handled - before >= 300
    ids = [b["source_id"] for b in rec.on(subjects.APPEAL_REGISTERED) if b["source_id"].startswith(f"R-{tag}")]
    assert len(ids) == len(set(ids)) == 300
    assert await db.fetchval("SELECT count(*) FROM intake.appeals WHERE source_id LIKE $1", f"R-{tag}-%") == 300
    await rec.close()
