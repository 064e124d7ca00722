"""Notify's channel clients against real local servers: the SMS sink, an SMTP server, a WeCom-style robot.

No NATS or PostgreSQL here: each test talks HTTP or SMTP over loopback to a server
started in the test, and waits for conditions with timeouts rather than sleeping.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
import sys
import threading
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiosmtpd.controller import Controller

from services.notify.channels import (
    WECOM_MAX_BYTES,
    Channels,
    DeliveryError,
    JsonPoster,
    OutboundMessage,
    SmsGateway,
    SmtpMailer,
    WeComWebhook,
    send_with_retries,
)
from services.notify.config import load_rules
from services.notify.domain import DeliveryPolicy, notification_id, plan_notifications
from shared.contracts.events import AppealRegistered
from shared.contracts.subjects import APPEAL_REGISTERED
from shared.district import load_district
from tests.support import wait_for
from tools.sms_sink import LocalSmsSink

PHONE = "13812345678"
FAST = DeliveryPolicy(max_attempts=5, backoff_base_seconds=0.01, backoff_cap_seconds=0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sms(text: str = "【企业咖啡时】您的诉求已受理，编号CT-1。", to: str = PHONE) -> OutboundMessage:
    return OutboundMessage(notification_id=notification_id("evt-1", to, "sms"), address=to, text=text)


@pytest.fixture
async def sink():
    async with LocalSmsSink() as running:
        yield running


@pytest.fixture
async def client():
    """Notify's own HTTP client, as each HTTP channel has one."""
    poster = JsonPoster(concurrency=4, timeout=2.0)
    yield poster
    await poster.aclose()


@pytest.fixture
async def http():
    """A plain HTTP client, to talk to the sink itself."""
    async with httpx.AsyncClient() as c:
        yield c


# --- SMS gateway -----------------------------------------------------------------------------


async def test_an_sms_failing_twice_with_500_is_accepted_once_under_one_id(sink, client):
    gateway = SmsGateway(sink.url, client, timeout=2.0)
    message = sms()
    sink.fail_next(2, status=500)
    attempts = await send_with_retries(gateway, message, FAST)
    assert attempts == 3
    accepted = await sink.wait_for_messages(1, timeout=2.0)
    assert [m["id"] for m in accepted] == [message.notification_id]
    assert accepted[0]["to"] == PHONE and accepted[0]["text"] == message.text
    assert [r["id"] for r in sink.requests] == [message.notification_id] * 3
    assert [r["status"] for r in sink.requests] == [500, 500, 200]


async def test_a_resent_sms_is_dropped_by_the_gateway_as_a_duplicate(sink, client):
    gateway = SmsGateway(sink.url, client, timeout=2.0)
    await gateway.send(sms())
    await gateway.send(sms())
    assert len(sink.messages) == 1
    assert [r.get("duplicate") for r in sink.requests] == [False, True]


async def test_a_down_gateway_is_a_retryable_failure_until_it_comes_back(sink, client):
    gateway = SmsGateway(sink.url, client, timeout=2.0)
    await sink.go_down()
    with pytest.raises(DeliveryError) as info:
        await gateway.send(sms())
    assert info.value.retryable
    await sink.come_up()
    await gateway.send(sms())
    assert len(await sink.wait_for_messages(1)) == 1


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (401, False), (404, False), (408, True), (429, True), (502, True), (503, True)])
async def test_client_errors_are_final_but_408_429_and_5xx_are_retried(sink, client, status, retryable):
    sink.fail_next(1, status=status)
    with pytest.raises(DeliveryError) as info:
        await SmsGateway(sink.url, client, timeout=2.0).send(sms())
    assert info.value.retryable is retryable and info.value.status == status
    assert sink.messages == []


async def test_a_slow_gateway_times_out_retryably(sink, client):
    sink.delay_seconds = 2.0  # the gateway's latency, longer than the client's patience
    with pytest.raises(DeliveryError, match="timed out") as info:
        await SmsGateway(sink.url, client, timeout=0.2).send(sms())
    assert info.value.retryable


async def test_retries_stop_after_the_configured_attempts(sink, client):
    sink.fail_next(10, status=503)
    policy = DeliveryPolicy(max_attempts=3, backoff_base_seconds=0.01, backoff_cap_seconds=0.02)
    with pytest.raises(DeliveryError) as info:
        await send_with_retries(SmsGateway(sink.url, client, timeout=2.0), sms(), policy)
    assert info.value.attempts == 3 and len(sink.requests) == 3


async def test_a_final_failure_is_not_retried(sink, client):
    sink.fail_next(1, status=400)
    with pytest.raises(DeliveryError) as info:
        await send_with_retries(SmsGateway(sink.url, client, timeout=2.0), sms(), FAST)
    assert info.value.attempts == 1 and not info.value.retryable


async def test_retries_wait_with_back_off(sink, client):
    sink.fail_next(2, status=500)
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    policy = DeliveryPolicy(max_attempts=5, backoff_base_seconds=1.0, backoff_cap_seconds=60.0)
    assert await send_with_retries(SmsGateway(sink.url, client, timeout=2.0), sms(), policy, sleep=record) == 3
    assert len(waits) == 2 and 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0


async def test_sms_logs_mask_the_phone(sink, client, caplog):
    caplog.set_level(logging.INFO, logger="coffeetime.notify")
    sink.fail_next(1, status=500)
    await send_with_retries(SmsGateway(sink.url, client, timeout=2.0), sms(), FAST)
    assert "138****5678" in caplog.text and PHONE not in caplog.text


async def test_a_planned_receipt_goes_through_the_channels_to_the_sink(sink, client):
    event = AppealRegistered(
        event_id="evt-receipt-1", occurred_at="2026-11-26T10:00:00+08:00", appeal_id="CT-20261126-0042",
        channel="hotline", source_id="call-42", enterprise={"name": "成都川开电气有限公司"},
        contact={"name": "潘星", "phone": PHONE}, content="园区道路缺少左转车道。", kind="appeal",
        received_at="2026-11-26T09:30:00+08:00",
    )
    now = datetime(2026, 11, 26, 23, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    [planned] = plan_notifications(APPEAL_REGISTERED, event, load_district(), load_rules(env={}), now)
    channels = Channels({"sms": SmsGateway(sink.url, client, timeout=2.0)})
    await channels.send(planned)
    [accepted] = await sink.wait_for_messages(1)
    assert accepted["id"] == planned.notification_id and "CT-20261126-0042" in accepted["text"]
    with pytest.raises(DeliveryError, match="no client") as info:
        await channels.send(planned.model_copy(update={"channel": "email"}))
    assert not info.value.retryable


async def test_the_sink_serves_its_messages_and_takes_orders_over_http(sink, http):
    assert (await http.post(f"{sink.base_url}/control/fail", json={"count": 1, "status": 503})).status_code == 200
    first = await http.post(sink.url, json={"id": "a1", "to": PHONE, "text": "你好"})
    second = await http.post(sink.url, json={"id": "a1", "to": PHONE, "text": "你好"})
    bad = await http.post(sink.url, json={"id": "", "to": PHONE})
    assert (first.status_code, second.status_code, bad.status_code) == (503, 200, 400)
    listed = (await http.get(f"{sink.base_url}/messages")).json()
    assert [(m["id"], m["text"]) for m in listed] == [("a1", "你好")]
    assert (await http.post(f"{sink.base_url}/control/reset")).status_code == 200
    assert (await http.get(f"{sink.base_url}/messages")).json() == []


async def test_the_sink_runs_as_a_program():
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.sms_sink", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        banner = await asyncio.wait_for(proc.stdout.readline(), timeout=10.0)
        assert f"127.0.0.1:{port}" in banner.decode()
        async with httpx.AsyncClient() as c:
            await c.post(f"http://127.0.0.1:{port}/sms", json={"id": "x", "to": PHONE, "text": "t"})
            assert [m["id"] for m in (await c.get(f"http://127.0.0.1:{port}/messages")).json()] == ["x"]
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), timeout=10.0) == 0


# --- SMTP --------------------------------------------------------------------------------------


class Mailbox:
    """An aiosmtpd handler that keeps what it receives; some addresses are refused."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list = []
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address.startswith("busy@"):
            return "451 4.3.0 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self.envelopes.append(envelope)
            self.messages.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 Message accepted for delivery"


@pytest.fixture(scope="module")
def smtp_server():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), ready_timeout=10.0)
    controller.start()
    yield controller, mailbox
    controller.stop()


async def test_an_email_arrives_with_a_utf8_subject_and_body(smtp_server):
    controller, mailbox = smtp_server
    mailer = SmtpMailer(controller.hostname, controller.port, "coffeetime@example.gov.cn", timeout=5.0)
    nid = notification_id("evt-mail-1", "zhaomin@example.gov.cn", "email")
    message = OutboundMessage(nid, "zhaomin@example.gov.cn", "【企业咖啡时】区公安分局交警大队：新主办工单WO-1。\n请及时签收。",
                              subject="新工单WO-1（诉求CT-20261126-0001，主办）")
    await mailer.send(message)
    received = await wait_for(lambda: next((m for m in mailbox.messages if nid in m["Message-ID"]), None), timeout=5.0,
                              what="the e-mail at the SMTP server")
    assert received["Subject"] == "新工单WO-1（诉求CT-20261126-0001，主办）"
    assert received["To"] == "zhaomin@example.gov.cn" and received["From"] == "coffeetime@example.gov.cn"
    assert received.get_content().replace("\r\n", "\n").strip() == message.text
    assert received.get_content_charset() == "utf-8"
    raw = next(e.original_content for e in mailbox.envelopes if nid.encode() in e.original_content)
    assert b"Subject: =?utf-8?" in raw  # encoded as RFC 2047 UTF-8 on the wire
    assert received["Message-ID"] == f"<{nid}@coffeetime.notify>"


@pytest.mark.parametrize(("address", "retryable"), [("nobody@example.gov.cn", False), ("busy@example.gov.cn", True)])
async def test_a_refused_recipient_fails_final_or_retryable_by_its_code(smtp_server, address, retryable):
    controller, _ = smtp_server
    mailer = SmtpMailer(controller.hostname, controller.port, "coffeetime@example.gov.cn", timeout=5.0)
    with pytest.raises(DeliveryError) as info:
        await mailer.send(OutboundMessage("n1", address, "正文", subject="主题"))
    assert info.value.retryable is retryable


async def test_an_unreachable_smtp_server_is_retryable():
    mailer = SmtpMailer("127.0.0.1", free_port(), "coffeetime@example.gov.cn", timeout=2.0)
    with pytest.raises(DeliveryError) as info:
        await mailer.send(OutboundMessage("n2", "zhaomin@example.gov.cn", "正文", subject="主题"))
    assert info.value.retryable


# --- WeCom-style group robot ---------------------------------------------------------------------------


async def test_a_robot_post_answered_errcode_0_is_delivered(sink, client):
    url = sink.webhook_url("693a91f6-unit")
    await WeComWebhook(client, timeout=2.0).send(OutboundMessage("w1", url, "【企业咖啡时】区公安分局交警大队：新主办工单WO-1"))
    await sink.wait_for(lambda s: len(s.robot_messages) == 1, timeout=2.0)
    assert sink.robot_messages[0]["key"] == "693a91f6-unit"
    assert sink.robot_messages[0]["content"] == "【企业咖啡时】区公安分局交警大队：新主办工单WO-1"


@pytest.mark.parametrize(("errcode", "retryable"), [(93000, False), (40008, False), (-1, True), (45009, True)])
async def test_a_non_zero_errcode_is_a_failure(sink, client, errcode, retryable):
    sink.reject_next_robot(1, errcode=errcode, errmsg="refused")
    with pytest.raises(DeliveryError, match=f"errcode {errcode}") as info:
        await WeComWebhook(client, timeout=2.0).send(OutboundMessage("w2", sink.webhook_url(), "内容"))
    assert info.value.retryable is retryable
    assert sink.robot_messages == []


async def test_a_robot_answering_500_is_retried_until_it_accepts(sink, client):
    sink.fail_next(1, status=500)
    attempts = await send_with_retries(WeComWebhook(client, timeout=2.0), OutboundMessage("w3", sink.webhook_url(), "内容"), FAST)
    assert attempts == 2 and len(sink.robot_messages) == 1


async def test_robot_content_is_cut_to_the_wecom_limit(sink, client):
    await WeComWebhook(client, timeout=2.0).send(OutboundMessage("w4", sink.webhook_url(), "超长内容" * 400))
    await sink.wait_for(lambda s: len(s.robot_messages) == 1, timeout=2.0)
    content = sink.robot_messages[0]["content"]
    assert len(content.encode("utf-8")) <= WECOM_MAX_BYTES and content.endswith("…")


async def test_an_unreachable_robot_is_retryable(client):
    with pytest.raises(DeliveryError) as info:
        await WeComWebhook(client, timeout=2.0).send(
            OutboundMessage("w5", f"http://127.0.0.1:{free_port()}/cgi-bin/webhook/send?key=k", "内容")
        )
    assert info.value.retryable
