"""Notify against the real NATS and PostgreSQL, a real local SMS gateway, WeCom robots and SMTP server.

Domain events are published to JetStream as the other services publish them
(contract models, unique ids, ``Nats-Msg-Id`` = event id). The service runs in
this process; every wait is a condition with a timeout.
"""

from __future__ import annotations

import email
import email.policy
import random
import socket
import threading
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from aiosmtpd.controller import Controller

from services.notify import use_cases
from services.notify.__main__ import context_of, create_service
from services.notify.domain import notification_id
from shared import clock
from shared.access import API_KEY_HEADER, DEMO_READ_KEY, DEMO_SMS_SECRET, GatewaySignature
from shared.contracts import events as ev
from shared.contracts import subjects
from shared.district import DEFAULT_PATH, load_district
from tests.support import Recorder, publish, running, wait_for
from tools.sms_sink import LocalSmsSink

pytestmark = pytest.mark.integration

SH = ZoneInfo("Asia/Shanghai")
DURABLES = ("notify-ct_appeal_all", "notify-ct_order_all", "notify-ct_deadline_warning", "notify-ct_deadline_monthly_list")
ENTERPRISE = "成都川开电气有限公司"


# --- outside servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """An aiosmtpd handler keeping every e-mail it receives."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self.messages.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 Message accepted for delivery"

    def with_id(self, notification_id: str) -> list[email.message.EmailMessage]:
        return [m for m in list(self.messages) if notification_id in (m["Message-ID"] or "")]


@pytest.fixture(scope="module")
def smtp():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), ready_timeout=10.0)
    controller.start()
    yield controller, mailbox
    controller.stop()


@pytest.fixture(scope="module")
async def gateway():
    """The SMS gateway."""
    async with LocalSmsSink() as sink:
        yield sink


@pytest.fixture(scope="module")
async def robots():
    """The units' WeCom group robots (a second sink, so the SMS gateway can fail alone)."""
    async with LocalSmsSink() as sink:
        yield sink


@pytest.fixture(scope="module")
def district_file(tmp_path_factory, robots):
    """The district configuration with every unit's group robot on the local robot sink."""
    raw = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    for unit in raw["units"]:
        if unit.get("wecom_webhook"):
            unit["wecom_webhook"] = robots.webhook_url(unit["unit_code"])
    path = tmp_path_factory.mktemp("notify") / "district.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def start_notify(servers, js, db, monkeypatch, gateway, robots, smtp, district_file):
    """Starts notify in this process (quiet hours off unless given) once earlier work is done."""
    monkeypatch.setenv("NOTIFY_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("NOTIFY_BACKOFF_BASE_SECONDS", "0.05")
    monkeypatch.setenv("NOTIFY_BACKOFF_CAP_SECONDS", "0.2")
    controller, _ = smtp

    @asynccontextmanager
    async def start(fresh: bool = True, **overrides):
        """``fresh``: wait for earlier work and reset the sinks; False restarts within a test."""
        settings = dict(sms_gateway_url=gateway.url, smtp_host="127.0.0.1", smtp_port=controller.port,
                        quiet_hours="", district_config=str(district_file)) | overrides
        if fresh:
            await gateway.come_up()
            gateway.reset()
        async with running(create_service, servers, **settings) as service:
            if fresh:
                try:
                    await wait_for(lambda: idle(js, db), timeout=30, what="notify idle before the test")
                except AssertionError as e:
                    raise AssertionError(f"{e}; still pending: {await pending_summary(js, db)}") from None
                gateway.reset()
                robots.reset()
            yield service
        await gateway.come_up()

    yield start
    clock.set_clock(None)


@pytest.fixture
async def notify(start_notify):
    async with start_notify() as service:
        yield service


@pytest.fixture
async def recorder(nc):
    rec = await Recorder(nc).watch("ct.notify.>", subjects.IN_FEEDBACK)
    yield rec
    await rec.close()


DUE_PENDING = ("status = 'pending' AND greatest(coalesce(next_attempt_at, now()), coalesce(not_before, now()))"
               " <= now() + interval '1 minute'")


async def idle(js, db) -> bool:
    """No event waits for notify's consumers and no notification is pending that is due by now.

    A pending one due weeks ahead (planned by an earlier test on a clock set to then) is not work in progress."""
    for durable in DURABLES:
        info = await js.consumer_info("CT_EVENTS", durable)
        if info.num_pending or info.num_ack_pending:
            return False
    return await db.fetchval(f"SELECT count(*) = 0 FROM notify.notifications WHERE {DUE_PENDING}")


async def pending_summary(js, db) -> dict:
    """What keeps notify from idle: its consumers' backlog and the pending notifications by kind and when due."""
    backlog = {d: ((i := await js.consumer_info("CT_EVENTS", d)).num_pending, i.num_ack_pending) for d in DURABLES}
    rows = await db.fetch(f"SELECT * FROM notify.notifications WHERE {DUE_PENDING} LIMIT 5")
    return {"backlog": backlog, "pending": [dict(r) for r in rows]}


# --- events as the other services publish them ---------------------------------------------------------------


def a_phone() -> str:
    return "139" + "".join(random.choice("0123456789") for _ in range(8))


def an_appeal_id() -> str:
    return f"CT-20261126-T{uuid.uuid4().hex[:8]}"


def base(appeal_id: str, service: str = "int") -> dict:
    return {"event_id": f"{service}-{uuid.uuid4().hex}", "occurred_at": clock.now(), "appeal_id": appeal_id,
            "source_ref": f"hotline:CALL-{appeal_id}", "correlation_id": f"corr-{appeal_id}"}


def registered(appeal_id: str, phone: str) -> ev.AppealRegistered:
    return ev.AppealRegistered(
        **base(appeal_id), channel="hotline", source_id=f"CALL-{appeal_id}",
        enterprise={"name": ENTERPRISE, "uscc": "914403001922038216"}, contact={"name": "潘星", "phone": phone},
        content="园区道路缺少左转车道，货车进出困难。", category_hint="交通出行", kind="appeal",
        received_at=clock.now(),
    )


def dispatched(appeal_id: str, unit_code: str) -> ev.OrderDispatched:
    unit = load_district().unit(unit_code)
    return ev.OrderDispatched(
        **base(appeal_id, "dis"), order_id=f"WO-{appeal_id}-1", unit_code=unit_code, unit=unit.name, role="lead",
        category="交通出行", received_at=clock.now(), deadline_days=5, sign_hours=2.0,
        summary="园区道路缺少左转车道", enterprise_name=ENTERPRISE,
    )


def replied(appeal_id: str, unit_code: str = "traffic_police") -> ev.OrderReplied:
    unit = load_district().unit(unit_code)
    return ev.OrderReplied(**base(appeal_id, "dis"), order_id=f"WO-{appeal_id}-1", unit_code=unit_code,
                           unit=unit.name, reply="已在园区路口增设左转车道。", resolved=True)


async def send(js, subject: str, event, msg_id: str | None = None) -> None:
    await publish(js, subject, event.model_dump_json().encode(), msg_id=msg_id or event.event_id)


async def rows_of(db, event_id: str) -> list:
    return await db.fetch("SELECT * FROM notify.notifications WHERE cause_event_id = $1 ORDER BY channel, address",
                          event_id)


async def settled(db, event_id: str, count: int | None = None) -> list:
    """The event's notifications once none is pending (and, with ``count``, once there are that many)."""
    rows = await rows_of(db, event_id)
    if not rows or any(r["status"] == "pending" for r in rows) or (count is not None and len(rows) != count):
        return []
    return rows


def http(service) -> httpx.AsyncClient:
    """A client of notify's HTTP API: the demo read key, and each post signed as the SMS gateway signs it."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.http), base_url="http://notify",
                             headers={API_KEY_HEADER: DEMO_READ_KEY}, auth=GatewaySignature(DEMO_SMS_SECRET))


# --- the enterprise's receipt ---------------------------------------------------------------------------------


async def test_a_registered_appeal_sends_one_receipt_sms_with_the_appeal_id(notify, js, db, gateway, recorder):
    appeal_id, phone = an_appeal_id(), a_phone()
    event = registered(appeal_id, phone)
    await send(js, subjects.APPEAL_REGISTERED, event)

    [row] = await wait_for(lambda: settled(db, event.event_id), what="receipt delivered")
    assert (row["channel"], row["address"], row["template"], row["status"]) == ("sms", phone, "receipt", "delivered")
    [sms] = [m for m in gateway.messages if m["to"] == phone]
    assert sms["id"] == row["notification_id"]
    assert appeal_id in sms["text"] and sms["text"].startswith("【企业咖啡时】")

    [delivered] = await wait_for(lambda: recorder.on(subjects.NOTIFY_DELIVERED, notification_id=row["notification_id"]),
                                 what="ct.notify.delivered")
    assert delivered["recipient"] == phone[:3] + "****" + phone[-4:]
    assert (delivered["appeal_id"], delivered["cause_event_id"]) == (appeal_id, event.event_id)
    assert delivered["attempts"] == 1
    assert delivered["correlation_id"] == f"corr-{appeal_id}"

    contact = await db.fetchrow("SELECT * FROM notify.appeal_contacts WHERE appeal_id = $1", appeal_id)
    assert (contact["phone"], contact["enterprise_name"], contact["category_hint"]) == (phone, ENTERPRISE, "交通出行")

    async with http(notify) as client:
        page = (await client.get("/notifications", params={"appeal_id": appeal_id})).json()
        detail = (await client.get(f"/notifications/{row['notification_id']}")).json()
    listed = page["items"]
    assert page["next_cursor"] is None
    assert [(n["channel"], n["recipient"], n["status"]) for n in listed] == [
        ("sms", delivered["recipient"], "delivered")]
    assert phone not in str(listed) and listed[0]["recipient_name"] == "潘*"
    assert [(a["attempt"], a["outcome"]) for a in detail["delivery_attempts"]] == [(1, "delivered")]


# --- the handling unit ---------------------------------------------------------------------------------------------


async def test_a_dispatched_order_reaches_the_liaisons_by_sms_email_and_wecom(notify, js, db, gateway, robots, smtp):
    _, mailbox = smtp
    unit = load_district().unit("traffic_police")
    event = dispatched(an_appeal_id(), unit.unit_code)
    await send(js, subjects.ORDER_DISPATCHED, event)

    expected = ({("sms", c.phone) for c in unit.liaisons} | {("email", c.email) for c in unit.liaisons}
                | {("wecom", robots.webhook_url(unit.unit_code))})
    rows = await wait_for(lambda: settled(db, event.event_id, len(expected)), what="all delivered")
    assert {(r["channel"], r["address"]) for r in rows} == expected
    assert {r["status"] for r in rows} == {"delivered"}

    for r in rows:
        if r["channel"] == "sms":
            [sms] = [m for m in gateway.messages if m["id"] == r["notification_id"]]
            assert sms["to"] == r["address"] and event.order_id in sms["text"] and "主办" in sms["text"]
        elif r["channel"] == "email":
            [mail] = await wait_for(lambda r=r: mailbox.with_id(r["notification_id"]), what="e-mail received")
            assert mail["To"] == r["address"] and event.order_id in mail["Subject"]
            assert event.appeal_id in mail.get_content()
    [robot] = [m for m in robots.robot_messages if m["key"] == unit.unit_code]
    assert event.order_id in robot["content"] and unit.name in robot["content"]


async def test_a_slow_gateway_does_not_hold_up_email_and_wecom(notify, js, db, gateway):
    gateway.delay_seconds = 1.5
    event = dispatched(an_appeal_id(), "sanitation")
    await send(js, subjects.ORDER_DISPATCHED, event)

    async def others_delivered():
        rows = await rows_of(db, event.event_id)
        others = [r for r in rows if r["channel"] != "sms"]
        return rows if others and all(r["status"] == "delivered" for r in others) else None

    rows = await wait_for(others_delivered, what="e-mail and WeCom delivered")
    assert {r["status"] for r in rows if r["channel"] == "sms"} == {"pending"}  # still with the gateway
    await wait_for(lambda: settled(db, event.event_id), what="the SMS delivered after all")


async def test_a_receipt_is_sent_while_a_round_of_liaison_sms_is_still_in_flight(notify, js, db, gateway):
    """The receipt lane: without it the receipt would wait for a whole round of 128 work notices (4 s)."""
    gateway.delay_seconds = 0.5  # each SMS half a second at the gateway: a round of 128 at 16 in flight takes 4 s
    cause = f"int-burst-{uuid.uuid4().hex}"
    phones = [a_phone() for _ in range(160)]
    await db.execute(
        """
        INSERT INTO notify.notifications (notification_id, cause_event_id, cause_subject, appeal_id, channel, address,
            recipient_role, template, template_kind, lang, text, not_before, next_attempt_at)
        SELECT $1 || '-' || p, $1, 'ct.order.dispatched', 'CT-20261126-BURST', 'sms', p, 'liaison', 'order_new',
               'work_notice', 'zh', '【企业咖啡时】新主办工单WO-BURST，请及时签收。', now(), now()
        FROM unnest($2::text[]) AS p
        """,
        cause, phones,
    )
    burst_sent = "SELECT count(*) FROM notify.notifications WHERE cause_event_id = $1 AND status = 'delivered'"
    await wait_for(lambda: db.fetchval("SELECT count(*) > 0 FROM notify.delivery_attempts "
                                       "WHERE notification_id LIKE $1 || '-%'", cause), what="the burst in flight")
    event = registered(an_appeal_id(), a_phone())
    await send(js, subjects.APPEAL_REGISTERED, event)
    [receipt] = await wait_for(lambda: settled(db, event.event_id), timeout=10, what="the receipt delivered")
    assert receipt["status"] == "delivered" and receipt["template"] == "receipt"
    assert await db.fetchval(burst_sent, cause) < 128  # the liaisons' first round had not ended
    await wait_for(lambda: db.fetchval(burst_sent + " HAVING count(*) = 160", cause), what="the burst delivered")


# --- effectively once ------------------------------------------------------------------------------------------------


async def test_the_same_event_delivered_twice_sends_one_sms(notify, js, db, gateway, recorder):
    appeal_id, phone = an_appeal_id(), a_phone()
    event = registered(appeal_id, phone)
    await send(js, subjects.APPEAL_REGISTERED, event)
    await send(js, subjects.APPEAL_REGISTERED, event, msg_id=f"{event.event_id}-republished")  # past JetStream's dedup

    async def both_handled():
        info = await js.consumer_info("CT_EVENTS", "notify-ct_appeal_all")
        return info.num_pending == 0 and info.num_ack_pending == 0 and await settled(db, event.event_id)

    await wait_for(both_handled, what="both copies handled")
    [row] = await rows_of(db, event.event_id)
    assert [m["id"] for m in gateway.messages if m["to"] == phone] == [row["notification_id"]]
    assert [r["id"] for r in gateway.requests if r["id"] == row["notification_id"]] == [row["notification_id"]]
    await wait_for(lambda: recorder.on(subjects.NOTIFY_DELIVERED, notification_id=row["notification_id"]))
    assert len(recorder.on(subjects.NOTIFY_DELIVERED, notification_id=row["notification_id"])) == 1


async def test_a_gateway_failing_twice_then_accepting_gets_one_message_under_one_id(notify, js, db, gateway, recorder):
    phone = a_phone()
    gateway.fail_next(2, status=500)
    event = registered(an_appeal_id(), phone)
    await send(js, subjects.APPEAL_REGISTERED, event)

    [row] = await wait_for(lambda: settled(db, event.event_id), what="delivered after two failures")
    nid = row["notification_id"]
    assert (row["status"], row["attempts"]) == ("delivered", 3)
    assert [(r["id"], r["status"]) for r in gateway.requests] == [(nid, 500), (nid, 500), (nid, 200)]
    assert [m["id"] for m in gateway.messages] == [nid]
    attempts = await db.fetch("SELECT attempt, outcome, error FROM notify.delivery_attempts WHERE notification_id = $1 "
                              "ORDER BY attempt", nid)
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(1, "retried"), (2, "retried"), (3, "delivered")]
    assert "HTTP 500" in attempts[0]["error"]
    [delivered] = await wait_for(lambda: recorder.on(subjects.NOTIFY_DELIVERED, notification_id=nid))
    assert delivered["attempts"] == 3
    assert recorder.on(subjects.NOTIFY_FAILED, notification_id=nid) == []
    async with http(notify) as client:
        exposition = (await client.get("/metrics")).text
    assert 'coffeetime_notifications_total{channel="sms",outcome="retried"}' in exposition
    assert 'coffeetime_notifications_total{channel="sms",outcome="delivered"}' in exposition


async def test_a_gateway_down_fails_the_sms_after_the_attempts_while_email_and_wecom_flow(
        notify, js, db, gateway, robots, recorder):
    await gateway.go_down()
    unit = load_district().unit("sanitation")
    event = dispatched(an_appeal_id(), unit.unit_code)
    await send(js, subjects.ORDER_DISPATCHED, event)

    rows = await wait_for(lambda: settled(db, event.event_id, 3), timeout=20, what="every channel settled")
    by_channel = {r["channel"]: r for r in rows}
    assert {c: r["status"] for c, r in by_channel.items()} == {
        "sms": "failed", "email": "delivered", "wecom": "delivered"}
    sms = by_channel["sms"]
    assert sms["attempts"] == 3 and "unreachable" in sms["last_error"]
    outcomes = await db.fetch("SELECT outcome FROM notify.delivery_attempts WHERE notification_id = $1 "
                              "ORDER BY attempt", sms["notification_id"])
    assert [o["outcome"] for o in outcomes] == ["retried", "retried", "failed"]

    [failed] = await wait_for(lambda: recorder.on(subjects.NOTIFY_FAILED, notification_id=sms["notification_id"]),
                              what="ct.notify.failed")
    assert failed["attempts"] == 3 and "unreachable" in failed["error"] and failed["recipient"].count("*") == 4
    for channel in ("email", "wecom"):
        await wait_for(lambda c=channel: recorder.on(subjects.NOTIFY_DELIVERED,
                                                     notification_id=by_channel[c]["notification_id"]))
    assert [m["key"] for m in robots.robot_messages] == [unit.unit_code]
    await gateway.come_up()


# --- the enterprise's rating by SMS ---------------------------------------------------------------------------------


async def test_an_sms_reply_3_to_a_rating_invitation_becomes_unsatisfied_feedback(notify, js, db, recorder):
    appeal_id, phone = an_appeal_id(), a_phone()
    await send(js, subjects.APPEAL_REGISTERED, registered(appeal_id, phone))
    reply = replied(appeal_id)
    await send(js, subjects.ORDER_REPLIED, reply)
    [invitation] = await wait_for(lambda: settled(db, reply.event_id), what="rating invitation delivered")
    assert invitation["template"] == "reply_rating_invitation" and "回复1满意，2基本满意，3不满意" in invitation["text"]

    gateway_id = f"MO-{uuid.uuid4().hex[:10]}"
    body = {"id": gateway_id, "from": f"+86{phone}", "text": " 3 ", "received_at": clock.now().isoformat()}
    async with http(notify) as client:
        answer = await client.post("/sms/inbound", json=body)
        assert answer.status_code == 200
        assert answer.json() == {"accepted": True, "duplicate": False, "appeal_id": appeal_id,
                                      "rating": "unsatisfied", "feedback_id": f"sms-{gateway_id}", "reason": None}
        [feedback] = await wait_for(lambda: recorder.on(subjects.IN_FEEDBACK, feedback_id=f"sms-{gateway_id}"),
                                    what="ct.in.feedback")
        assert feedback == {"feedback_id": f"sms-{gateway_id}", "appeal_id": appeal_id, "rating": "unsatisfied",
                            "comment": "3", "via": "sms", "outcome": None, "caller": None}
        headers = next(h for s, b, h in recorder.messages if b.get("feedback_id") == f"sms-{gateway_id}")
        assert headers["Nats-Msg-Id"] == f"sms-{gateway_id}"

        again = await client.post("/sms/inbound", json=body)  # the gateway retries its post (signed anew)
        assert again.status_code == 200
        assert again.json()["duplicate"] is True and again.json()["rating"] == "unsatisfied"
        unclear = await client.post("/sms/inbound", json={"id": f"{gateway_id}-b", "from": phone, "text": "好的谢谢"})
        assert unclear.status_code == 200
        assert unclear.json()["accepted"] is False and unclear.json()["reason"].startswith("未能识别评价")
        stranger = await client.post("/sms/inbound", json={"id": f"{gateway_id}-c", "from": a_phone(), "text": "3"})
        assert stranger.status_code == 404 and stranger.headers["content-type"] == "application/problem+json"
        assert stranger.json()["reason"] == "unknown_phone"  # not accepted: nothing sent on
        invalid = await client.post("/sms/inbound", json={"id": "x y", "from": "12345", "text": "3"})
        assert invalid.status_code == 422
        assert {e["field"] for e in invalid.json()["errors"]} >= {"id", "from"}
        schema = (await client.get("/openapi.json")).json()
        assert "/sms/inbound" in schema["paths"] and "InboundSms" in schema["components"]["schemas"]

    await wait_for(lambda: db.fetchval("SELECT count(*) = 0 FROM notify.outbox"), what="outbox relayed")
    assert await db.fetchval("SELECT count(*) FROM notify.inbound_sms WHERE message_id LIKE $1", f"{gateway_id}%") == 3
    assert len(recorder.on(subjects.IN_FEEDBACK, appeal_id=appeal_id)) == 1


# --- order and time ---------------------------------------------------------------------------------------------


async def test_a_reply_handled_before_the_registration_waits_for_the_contact(notify, js, db, gateway):
    appeal_id, phone = an_appeal_id(), a_phone()
    reply = replied(appeal_id)
    await send(js, subjects.ORDER_REPLIED, reply)
    await wait_for(lambda: db.fetchval("SELECT count(*) = 1 FROM notify.waiting_events WHERE event_id = $1",
                                       reply.event_id), what="the reply parked")
    assert await rows_of(db, reply.event_id) == []

    await send(js, subjects.APPEAL_REGISTERED, registered(appeal_id, phone))
    [invitation] = await wait_for(lambda: settled(db, reply.event_id), what="invitation planned once the contact came")
    assert invitation["address"] == phone and invitation["status"] == "delivered"
    await wait_for(lambda: len([m for m in gateway.messages if m["to"] == phone]) == 2, what="receipt and invitation")
    assert await db.fetchval("SELECT count(*) FROM notify.waiting_events WHERE appeal_id = $1", appeal_id) == 0


class FakeClock:
    """Time that runs from a chosen instant at the real pace; :meth:`jump` moves it."""

    def __init__(self, start: datetime) -> None:
        self.jump(start)

    def jump(self, to: datetime) -> None:
        self._base, self._t0 = to, time.monotonic()

    def __call__(self) -> datetime:
        return self._base + timedelta(seconds=time.monotonic() - self._t0)


async def test_quiet_hours_defer_the_rating_invitation_to_8_am(start_notify, js, db, gateway):
    fake = FakeClock(datetime(2026, 11, 20, 23, 0, tzinfo=SH))
    async with start_notify(quiet_hours="22:00-08:00"):
        clock.set_clock(fake)
        try:
            appeal_id, phone = an_appeal_id(), a_phone()
            receipt = registered(appeal_id, phone)
            await send(js, subjects.APPEAL_REGISTERED, receipt)
            await wait_for(lambda: settled(db, receipt.event_id), what="the receipt goes at once, even at 23:00")

            reply = replied(appeal_id)
            await send(js, subjects.ORDER_REPLIED, reply)
            [invitation] = await wait_for(lambda: rows_of(db, reply.event_id), what="invitation planned")
            eight = datetime(2026, 11, 21, 8, 0, tzinfo=SH)
            assert invitation["not_before"] == eight and invitation["status"] == "pending"

            # a minute before eight: another receipt goes, the invitation still waits
            fake.jump(eight - timedelta(minutes=1))
            probe = registered(an_appeal_id(), a_phone())
            await send(js, subjects.APPEAL_REGISTERED, probe)
            await wait_for(lambda: settled(db, probe.event_id), what="a later receipt delivered")
            still = (await rows_of(db, reply.event_id))[0]
            assert (still["status"], still["attempts"]) == ("pending", 0)
            assert [m["id"] for m in gateway.messages if m["id"] == invitation["notification_id"]] == []

            fake.jump(eight)
            [sent] = await wait_for(lambda: settled(db, reply.event_id), what="the invitation sent at 08:00")
            assert sent["status"] == "delivered" and sent["delivered_at"] >= eight
            assert [m["to"] for m in gateway.messages if m["id"] == invitation["notification_id"]] == [phone]
        finally:
            clock.set_clock(None)
    assert datetime.now(UTC) - clock.now() < timedelta(seconds=5)


# --- crashes, stops and gaps in the configuration ---------------------------------------------------------------------


async def test_a_worker_that_died_mid_send_is_replaced_after_its_lease_with_the_same_id(notify, db, gateway):
    phone = a_phone()
    nid = notification_id(f"int-{uuid.uuid4().hex}", phone, "sms")
    lease_end = clock.now() + timedelta(seconds=1)
    # what a replica leaves behind when it is killed while the gateway holds its request
    await db.execute(
        """
        INSERT INTO notify.notifications (notification_id, cause_event_id, cause_subject, appeal_id, channel, address,
            recipient_role, template, template_kind, lang, text, not_before, next_attempt_at, claims, locked_until)
        VALUES ($1, 'int-crash', 'ct.appeal.registered', 'CT-20261126-CRASH', 'sms', $2, 'enterprise', 'receipt',
                'receipt', 'zh', '【企业咖啡时】您的诉求已受理，编号CT-20261126-CRASH。', now(), $3, 1, $3)
        """,
        nid, phone, lease_end,
    )
    row = (await wait_for(lambda: db.fetchrow("SELECT * FROM notify.notifications WHERE notification_id = $1 "
                                              "AND status = 'delivered'", nid), what="delivered after the lease"))
    assert row["delivered_at"] >= lease_end and row["claims"] == 2
    assert [m["id"] for m in gateway.messages] == [nid]
    attempts = await db.fetch("SELECT attempt, outcome FROM notify.delivery_attempts WHERE notification_id = $1", nid)
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(2, "delivered")]  # attempt 1 died with its worker


async def test_a_stop_mid_send_gives_the_message_back_and_the_restart_resends_it_under_the_same_id(
        start_notify, js, db, gateway):
    phone = a_phone()
    event = registered(an_appeal_id(), phone)
    async with start_notify():
        gateway.delay_seconds = 3.0  # the request is still with the gateway when the service stops
        await send(js, subjects.APPEAL_REGISTERED, event)
        [claimed] = await wait_for(lambda: db.fetch("SELECT * FROM notify.notifications WHERE cause_event_id = $1 "
                                                    "AND claims = 1", event.event_id), what="claimed")
    given_back = (await rows_of(db, event.event_id))[0]
    assert (given_back["status"], given_back["locked_until"], given_back["attempts"]) == ("pending", None, 0)

    gateway.delay_seconds = 0
    async with start_notify(fresh=False):
        [row] = await wait_for(lambda: settled(db, event.event_id), what="resent after the restart")
    assert row["status"] == "delivered" and row["claims"] == 2
    await wait_for(lambda: len([r for r in gateway.requests if r["id"] == claimed["notification_id"]]) == 2,
                   what="the first request answered too")
    assert [m["id"] for m in gateway.messages if m["to"] == phone] == [claimed["notification_id"]]


async def test_without_a_gateway_an_sms_fails_at_once_with_a_clear_reason(start_notify, js, db, smtp, recorder):
    async with start_notify(sms_gateway_url=None):
        event = registered(an_appeal_id(), a_phone())
        await send(js, subjects.APPEAL_REGISTERED, event)
        [row] = await wait_for(lambda: settled(db, event.event_id), what="failed")
        [failed] = await wait_for(lambda: recorder.on(subjects.NOTIFY_FAILED, notification_id=row["notification_id"]))
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert failed["error"].startswith("未配置短信网关") and "SMS_GATEWAY_URL" in failed["error"]


async def test_an_event_whose_registration_never_comes_is_planned_without_the_contact_after_the_wait(
        notify, js, db, smtp):
    appeal_id = an_appeal_id()
    unit = load_district().unit("traffic_police")
    difficult = ev.AppealEscalated(**base(appeal_id, "esc"), order_id=f"WO-{appeal_id}-1", unit_code=unit.unit_code,
                                   unit=unit.name, level="difficult", reason="涉及多部门", summary="左转车道")
    await send(js, subjects.APPEAL_ESCALATED, difficult)
    await wait_for(lambda: db.fetchval("SELECT count(*) = 1 FROM notify.waiting_events WHERE event_id = $1",
                                       difficult.event_id), what="waiting for the contact (the leader by category)")

    released = await use_cases.release_waiting(notify.unit_of_work(), context_of(notify), wait=timedelta(0))
    assert released >= 1
    rows = await wait_for(lambda: settled(db, difficult.event_id), what="planned without the contact and sent")
    leader = load_district().leader_for(None)
    assert {(r["recipient_role"], r["address"]) for r in rows} == {
        ("district_leader", a) for a in (leader.contact.phone, leader.contact.email) if a}
    assert {r["status"] for r in rows} == {"delivered"}


# --- the HTTP list ------------------------------------------------------------------------------------------------


async def test_an_appeals_notifications_page_with_a_cursor_each_row_once(notify, db):
    appeal_id = an_appeal_id()
    planned_at = clock.now()
    ids = [f"{uuid.uuid4().hex}" for _ in range(7)]
    # seven delivered notifications, most planned in the same instant: the cursor must break the ties
    for i, nid in enumerate(ids):
        await db.execute(
            """
            INSERT INTO notify.notifications (notification_id, cause_event_id, cause_subject, appeal_id, channel,
                address, recipient_role, template, template_kind, lang, text, not_before, next_attempt_at,
                status, created_at)
            VALUES ($1, 'int-page', 'ct.order.dispatched', $2, $3, $4, 'liaisons', 'new_order', 'work_notice', 'zh',
                    '新工单', now(), now(), 'delivered', $5)
            """,
            nid, appeal_id, ("sms", "email", "wecom")[i % 3], f"1390000{i:04d}", planned_at + timedelta(
                microseconds=1 if i >= 5 else 0),
        )
    seen, pages, cursor = [], 0, None
    async with http(notify) as client:
        while True:
            params = {"appeal_id": appeal_id, "limit": 3} | ({"cursor": cursor} if cursor else {})
            answer = await client.get("/notifications", params=params)
            assert answer.status_code == 200
            page = answer.json()
            assert len(page["items"]) <= 3 and page["limit"] == 3
            seen += [n["notification_id"] for n in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        bad = await client.get("/notifications", params={"appeal_id": appeal_id, "cursor": "not-a-cursor"})
        missing = await client.get("/notifications/no-such-notification")
    assert pages == 3 and sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"
    assert missing.status_code == 404 and missing.json()["reason"] == "unknown_notification"
