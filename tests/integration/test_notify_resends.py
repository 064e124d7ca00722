"""Resends under faults, on the real NATS and PostgreSQL and a real local SMS gateway.

The gateway here drops a repeated id, as the contract allows, but real gateways do not
all do so: these tests count the posts per id (``gateway.requests``), not the accepted
messages, and the resends notify counts (``coffeetime_notification_resends_total``).
"""

# ruff: noqa: F811 - the fixtures of test_notify are imported and used as parameters

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta

import pytest

from services.notify.domain import notification_id
from shared import clock
from shared.contracts import subjects
from shared.metrics import registry
from tests.integration.test_notify import (  # noqa: F401 - fixtures
    a_phone,
    an_appeal_id,
    district_file,
    gateway,
    recorder,
    registered,
    robots,
    send,
    smtp,
    start_notify,
)
from tests.support import wait_for

pytestmark = pytest.mark.integration


def metric(name: str, **labels) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def resends() -> float:
    return metric("coffeetime_notification_resends_total", channel="sms")


def unrecorded() -> float:
    return metric("coffeetime_notification_outcomes_unrecorded", channel="sms")


def posts(gateway, ids) -> Counter:
    """How many times the gateway was posted each of these ids (failed posts included)."""
    return Counter(r["id"] for r in gateway.requests if r.get("path") == "/sms" and r["id"] in ids)


async def receipts_of(db, events) -> list:
    """The receipts of these registrations once every one is planned and none is pending."""
    rows = await db.fetch("SELECT * FROM notify.notifications WHERE cause_event_id = ANY($1::text[])",
                          [e.event_id for e in events])
    if len(rows) != len(events) or any(r["status"] == "pending" for r in rows):
        return []
    return rows


async def attempts_of(db, nid: str) -> list[tuple[int, str]]:
    rows = await db.fetch("SELECT attempt, outcome FROM notify.delivery_attempts WHERE notification_id = $1 "
                          "ORDER BY attempt", nid)
    return [(r["attempt"], r["outcome"]) for r in rows]


class Hold:
    """Holds the gateway's answers to SMS posts until released (the posts are received, the answers wait)."""

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.released = asyncio.Event()
        self.waiting = 0
        self._route = gateway._route

    async def _held_route(self, req):
        if req.path == "/sms":
            self.waiting += 1
            await self.released.wait()
        return await self._route(req)

    def __enter__(self) -> Hold:
        self.gateway._route = self._held_route
        return self

    def release(self) -> None:
        self.released.set()

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.gateway._route = self._route


# --- the gateway down for a while ------------------------------------------------------------------------


async def test_a_gateway_answering_503_for_a_while_then_200_delivers_every_receipt_once(
        start_notify, js, db, gateway, recorder, monkeypatch):
    monkeypatch.setenv("NOTIFY_MAX_ATTEMPTS", "30")  # rides out the outage below many times over
    async with start_notify():
        gateway.fail_next(10**9, status=503)
        events = [registered(an_appeal_id(), a_phone()) for _ in range(20)]
        for event in events:
            await send(js, subjects.APPEAL_REGISTERED, event)

        async def each_refused_three_times():
            rows = await db.fetch("SELECT n.notification_id FROM notify.notifications n WHERE cause_event_id = "
                                  "ANY($1::text[])", [e.event_id for e in events])
            ids = {r["notification_id"] for r in rows}
            return ids if len(ids) == len(events) and all(
                c >= 3 for c in posts(gateway, ids).values()) and len(posts(gateway, ids)) == len(ids) else None

        ids = await wait_for(each_refused_three_times, timeout=30, what="every receipt refused three times")
        assert await db.fetchval("SELECT count(*) FROM notify.notifications WHERE notification_id = ANY($1::text[]) "
                                 "AND status <> 'pending'", list(ids)) == 0  # nothing given up during the outage
        gateway.fail_next(0)  # the gateway is back
        rows = await wait_for(lambda: receipts_of(db, events), timeout=30, what="every receipt delivered")

    assert {r["status"] for r in rows} == {"delivered"}
    accepted = Counter(r["id"] for r in gateway.requests if r["id"] in ids and r["status"] == 200)
    assert accepted == dict.fromkeys(ids, 1)  # each id accepted by one post, never posted after that
    assert Counter(m["id"] for m in gateway.messages if m["id"] in ids) == dict.fromkeys(ids, 1)
    for nid in ids:
        outcomes = [o for _, o in await attempts_of(db, nid)]
        assert outcomes[-1] == "delivered" and set(outcomes[:-1]) == {"retried"}
        assert len(outcomes) == posts(gateway, {nid})[nid]
    await wait_for(lambda: all(recorder.on(subjects.NOTIFY_DELIVERED, notification_id=n) for n in ids),
                   what="ct.notify.delivered for each")
    assert all(len(recorder.on(subjects.NOTIFY_DELIVERED, notification_id=n)) == 1 for n in ids)
    assert not any(recorder.on(subjects.NOTIFY_FAILED, notification_id=n) for n in ids)


# --- PostgreSQL lost between the send and the record -------------------------------------------------------


async def test_the_database_lost_between_send_and_record_sends_each_id_once(
        start_notify, js, db, gateway, caplog):
    role, own = await db.fetchval("SELECT current_user"), await db.fetchval("SELECT pg_backend_pid()")
    async with start_notify():
        before = resends()
        with Hold(gateway) as hold:
            events = [registered(an_appeal_id(), a_phone()) for _ in range(12)]
            for event in events:
                await send(js, subjects.APPEAL_REGISTERED, event)
            # every send is logged 'sending' and committed before it goes out; the gateway holds the answers
            marked = await wait_for(lambda: db.fetch(
                "SELECT a.notification_id FROM notify.delivery_attempts a JOIN notify.notifications n "
                "USING (notification_id) WHERE n.cause_event_id = ANY($1::text[]) AND a.outcome = 'sending'",
                [e.event_id for e in events]), what="the sends logged before they go")
            await wait_for(lambda: hold.waiting >= len(marked), what="those posts with the gateway")
            ids = {r["notification_id"] for r in marked}
            try:
                # PostgreSQL goes away for notify: no new login, the open connections cut (this test's own kept)
                await db.execute(f'ALTER ROLE "{role}" NOLOGIN')
                await db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> $1", own)
                hold.release()  # the gateway accepts them now; notify cannot record it
                await wait_for(lambda: len({m["id"] for m in gateway.messages} & ids) == len(ids),
                               what="accepted by the gateway")
                await wait_for(lambda: unrecorded() >= len(ids) and "cannot record delivery outcomes" in caplog.text,
                               timeout=15, what="the outcomes kept in memory while the database is away")
            finally:
                await db.execute(f'ALTER ROLE "{role}" LOGIN')
        await wait_for(lambda: db.fetchval("SELECT count(*) = $2 FROM notify.notifications WHERE notification_id = "
                                           "ANY($1::text[]) AND status = 'delivered'", list(ids), len(ids)),
                       timeout=30, what="recorded once the database is back")
        rows = await wait_for(lambda: receipts_of(db, events), timeout=30, what="every receipt delivered")

    assert posts(gateway, ids) == dict.fromkeys(ids, 1)  # each id posted once
    assert {r["status"] for r in rows} == {"delivered"}
    every = {r["notification_id"] for r in rows}
    assert Counter(r["id"] for r in gateway.requests if r["id"] in every) == dict.fromkeys(every, 1)
    assert resends() == before
    for nid in ids:
        assert await attempts_of(db, nid) == [(1, "delivered")]


# --- a crash between the durable mark and the send ----------------------------------------------------------


async def test_a_crash_after_the_sending_mark_leads_to_one_resend_counted(start_notify, db, gateway):
    phone = a_phone()
    nid = notification_id(f"int-{uuid.uuid4().hex}", phone, "sms")
    lease_end = clock.now() + timedelta(seconds=1)
    async with start_notify():
        before = resends()
        # what a replica leaves when killed after committing the 'sending' mark, before (or during) its post
        await db.execute(
            """
            INSERT INTO notify.notifications (notification_id, cause_event_id, cause_subject, appeal_id, channel,
                address, recipient_role, template, template_kind, lang, text, not_before, next_attempt_at, claims,
                locked_until)
            VALUES ($1, 'int-crash', 'ct.appeal.registered', 'CT-20261126-MARK', 'sms', $2, 'enterprise', 'receipt',
                    'receipt', 'zh', '【企业咖啡时】您的诉求已受理，编号CT-20261126-MARK。', now(), $3, 1, $3)
            """,
            nid, phone, lease_end,
        )
        await db.execute("INSERT INTO notify.delivery_attempts (notification_id, attempt, at, outcome, duration_ms) "
                         "VALUES ($1, 1, now(), 'sending', 0)", nid)
        row = await wait_for(lambda: db.fetchrow("SELECT * FROM notify.notifications WHERE notification_id = $1 "
                                                 "AND status = 'delivered'", nid), what="delivered after the lease")
    assert row["claims"] == 2 and row["attempts"] == 1
    assert posts(gateway, {nid}) == {nid: 1}  # the crashed worker never posted it: one post in all
    assert resends() == before + 1
    assert await attempts_of(db, nid) == [(1, "unknown"), (2, "delivered")]


async def test_a_stop_mid_send_resends_only_what_was_with_the_gateway_and_counts_it(start_notify, js, db, gateway):
    with Hold(gateway) as hold:
        async with start_notify():
            before = resends()
            events = [registered(an_appeal_id(), a_phone()) for _ in range(40)]
            for event in events:
                await send(js, subjects.APPEAL_REGISTERED, event)
            await wait_for(lambda: db.fetchval("SELECT count(*) = $2 FROM notify.notifications WHERE cause_event_id = "
                                               "ANY($1::text[])", [e.event_id for e in events], len(events)),
                           what="every receipt planned")
            await wait_for(lambda: hold.waiting >= 1, what="posts with the gateway")
        # stopped while the gateway held the first posts: those may have arrived, the rest never left
        marked = {r["notification_id"] for r in await db.fetch(
            "SELECT a.notification_id FROM notify.delivery_attempts a JOIN notify.notifications n "
            "USING (notification_id) WHERE n.cause_event_id = ANY($1::text[]) AND a.outcome = 'sending'",
            [e.event_id for e in events])}
        held = hold.waiting
        hold.release()
        async with start_notify(fresh=False):
            rows = await wait_for(lambda: receipts_of(db, events), timeout=30, what="every receipt delivered")
            counted = resends() - before
    assert 1 <= held <= len(marked) <= 32  # in flight, or marked just ahead of the senders
    assert len(marked) < len(events)  # the others were not sent again: they were never sent
    ids = {r["notification_id"] for r in rows}
    sent = posts(gateway, ids)
    twice = {i for i, n in sent.items() if n > 1}
    assert set(sent) == ids and max(sent.values()) <= 2
    assert twice <= marked and counted == len(marked)  # only what was in flight went again, each counted
    assert {r["status"] for r in rows} == {"delivered"}


# --- past the budget -------------------------------------------------------------------------------------------


async def test_a_receipt_failed_past_its_budget_is_sent_again_by_retry_failed(
        start_notify, js, db, gateway, recorder, servers, monkeypatch, capsys):
    from tools import cli

    async with start_notify():
        await gateway.go_down()
        event = registered(an_appeal_id(), a_phone())
        await send(js, subjects.APPEAL_REGISTERED, event)
        [row] = await wait_for(lambda: receipts_of(db, [event]), timeout=20, what="failed past its 3 attempts")
        nid = row["notification_id"]
        assert row["status"] == "failed"
        await wait_for(lambda: recorder.on(subjects.NOTIFY_FAILED, notification_id=nid), what="ct.notify.failed")
        await gateway.come_up()

        monkeypatch.setenv("DATABASE_URL", servers["DATABASE_URL"])
        listed = await asyncio.to_thread(cli.main, ["notify", "retry-failed", "--id", nid])
        assert listed == 0 and "1 would be sent again" in capsys.readouterr().out
        assert (await db.fetchval("SELECT status FROM notify.notifications WHERE notification_id = $1", nid)) == "failed"
        await asyncio.to_thread(cli.main, ["notify", "retry-failed", "--id", nid, "--yes"])
        assert "1 sent again" in capsys.readouterr().out
        delivered = await wait_for(lambda: db.fetchrow("SELECT * FROM notify.notifications WHERE notification_id = $1 "
                                                       "AND status = 'delivered'", nid), what="delivered after all")
    assert delivered["attempts"] == 1 and delivered["retry_from_claim"] == 3
    assert [m["id"] for m in gateway.messages if m["id"] == nid] == [nid]
    outcomes = [o for _, o in await attempts_of(db, nid)]
    assert outcomes == ["retried", "retried", "failed", "delivered"]
    await wait_for(lambda: recorder.on(subjects.NOTIFY_DELIVERED, notification_id=nid), what="ct.notify.delivered")
