"""Intake against the real NATS and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.intake.__main__ import create_service
from shared.access import API_KEY_HEADER, DEMO_READ_KEY
from shared.contracts import subjects
from shared.contracts.common import uscc_check_character
from tests.support import Recorder, publish, running, wait_for

pytestmark = pytest.mark.integration


def an_enterprise() -> tuple[str, str]:
    """A credit code and a mobile of an enterprise of its own, so no two tests' calls look like duplicates."""
    n = uuid.uuid4().int
    first17 = "915101" + "".join(str((n >> (4 * i)) % 10) for i in range(11))
    return first17 + uscc_check_character(first17), f"138{n % 10**8:08d}"


def a_call(**over) -> dict:
    uscc, phone = an_enterprise()
    call = {
        "call_id": f"CALL-{uuid.uuid4().hex[:12]}",
        "received_at": datetime.now(UTC).isoformat(),
        "caller_phone": phone,
        "caller_name": "潘星",
        "enterprise_name": "四川东航投资有限公司",
        "enterprise_uscc": uscc,
        "content": "东航中心附近路口的左转车道通行不便，高峰时段通行缓慢，建议适当调整。",
        "category_hint": "交通出行",
    }
    call.update(over)
    return call


@pytest.fixture
async def intake(servers):
    async with running(create_service, servers) as service:
        yield service


@pytest.fixture
async def recorder(nc):
    rec = await Recorder(nc).watch("ct.appeal.>")
    yield rec
    await rec.close()


async def count_appeals(db, channel: str, source_id: str) -> int:
    return await db.fetchval("SELECT count(*) FROM intake.appeals WHERE channel=$1 AND source_id=$2", channel, source_id)


async def test_a_call_republished_three_ways_creates_one_appeal(intake, js, db, recorder):
    call = a_call()
    await publish(js, subjects.IN_HOTLINE, call, msg_id=call["call_id"])
    await publish(js, subjects.IN_HOTLINE, call, msg_id=call["call_id"])  # dropped by JetStream's window
    await publish(js, subjects.IN_HOTLINE, call, msg_id=f"{call['call_id']}-retry")  # another id, same call
    await publish(js, subjects.IN_HOTLINE, call)  # no id at all

    await wait_for(lambda: recorder.on(subjects.APPEAL_REGISTERED, source_id=call["call_id"]), what="registered")
    # the last copy is handled after the first: wait until all three reached the consumer
    info = await wait_for(lambda: _acked_all(js), what="consumer drained")
    assert info
    assert await count_appeals(db, "hotline", call["call_id"]) == 1
    registered = recorder.on(subjects.APPEAL_REGISTERED, source_id=call["call_id"])
    assert len(registered) == 1
    event = registered[0]
    assert event["appeal_id"].startswith("CT-")
    assert event["channel"] == "hotline"
    assert event["enterprise"]["uscc"] == call["enterprise_uscc"]
    assert event["contact"]["phone"] == call["caller_phone"]
    assert event["source_ref"] == f"hotline:{call['call_id']}"


async def _acked_all(js) -> bool:
    info = await js.consumer_info("CT_IN", "intake-ct_in_appeal_hotline")
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_an_invalid_call_is_rejected_with_field_errors_and_not_stored(intake, js, db, recorder):
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    call = a_call(enterprise_uscc="914403001922038217", caller_phone="12345", received_at=future, content="")
    await publish(js, subjects.IN_HOTLINE, call, msg_id=call["call_id"])

    rejected = await wait_for(lambda: recorder.on(subjects.APPEAL_REJECTED, source_id=call["call_id"]), what="rejected")
    fields = {e["field"] for e in rejected[0]["errors"]}
    assert fields == {"enterprise_uscc", "caller_phone", "received_at", "content"}
    assert rejected[0]["msg_id"] == call["call_id"]
    await wait_for(lambda: _acked_all(js), what="the rejected call acked, not redelivered")
    assert await count_appeals(db, "hotline", call["call_id"]) == 0


async def test_a_body_that_is_not_json_is_rejected_and_acked(intake, js, recorder):
    msg_id = f"garbage-{uuid.uuid4().hex[:8]}"
    await publish(js, subjects.IN_APP, b"\x00not json{", msg_id=msg_id)
    rejected = await wait_for(lambda: recorder.on(subjects.APPEAL_REJECTED, msg_id=msg_id), what="rejected")
    assert rejected[0]["errors"] == [{"field": "body", "message": "not a JSON object"}]
    assert rejected[0]["source_id"] is None

    async def drained():
        info = await js.consumer_info("CT_IN", "intake-ct_in_appeal_app")
        return info.num_pending == 0 and info.num_ack_pending == 0

    await wait_for(drained, what="acked")
    assert len(recorder.on(subjects.APPEAL_REJECTED, msg_id=msg_id)) == 1


async def test_an_event_record_registers_one_appeal_per_item(intake, js, db, recorder):
    event_id = f"EV-{uuid.uuid4().hex[:8]}"
    record = {
        "event_id": event_id, "kind": "sub", "date": "2026-11-20", "organizer_unit": "区行政审批局",
        "theme": "企业发展之水电气保障", "attendees": ["区领导甲"],
        "items": [
            {"item_no": 1, "enterprise_name": "四川深航装饰工程有限公司", "content": "生活垃圾清运问题",
             "contact_phone": "13900002222", "proposed_unit": "区城管局环卫所", "proposed_deadline_days": 3},
            {"item_no": 2, "enterprise_name": "通威太阳能(成都)有限公司", "content": "招聘人才成本高",
             "category_hint": "人才招聘"},
        ],
    }
    await publish(js, subjects.IN_EVENT, record, msg_id=event_id)
    await wait_for(lambda: len([e for e in recorder.on(subjects.APPEAL_REGISTERED)
                                if e["source_id"].startswith(event_id)]) == 2, what="two appeals")
    first = recorder.on(subjects.APPEAL_REGISTERED, source_id=f"{event_id}#1")[0]
    assert first["channel"] == "coffee_event"
    assert first["proposal"]["proposed_unit"] == "区城管局环卫所"
    assert first["proposal"]["proposed_deadline_days"] == 3
    assert await db.fetchval("SELECT theme FROM intake.coffee_events WHERE event_id=$1", event_id) == "企业发展之水电气保障"


async def test_the_status_query_answers_by_id_and_by_source(intake, nc, js, recorder):
    import json

    call = a_call()
    await publish(js, subjects.IN_HOTLINE, call, msg_id=call["call_id"])
    event = (await wait_for(lambda: recorder.on(subjects.APPEAL_REGISTERED, source_id=call["call_id"])))[0]

    async def timeline_has_registration():
        reply = await nc.request(subjects.Q_APPEAL, json.dumps({"appeal_id": event["appeal_id"]}).encode(), timeout=5)
        body = json.loads(reply.data)
        return body if body["timeline"] else None

    body = await wait_for(timeline_has_registration, what="timeline")
    assert body["status"] == "registered"
    assert body["contact_phone"] == call["caller_phone"][:3] + "****" + call["caller_phone"][-4:]
    assert body["timeline"][0]["subject"] == "ct.appeal.registered"

    reply = await nc.request(subjects.Q_APPEAL, json.dumps({"channel": "hotline", "source_id": call["call_id"]}).encode(), timeout=5)
    assert json.loads(reply.data)["appeal_id"] == event["appeal_id"]
    reply = await nc.request(subjects.Q_APPEAL, b"{}", timeout=5)
    assert json.loads(reply.data)["found"] is False


async def test_the_http_status_routes_answer_as_the_query_does_and_errors_as_problems(intake, nc, js, recorder):
    import json

    call = a_call()
    await publish(js, subjects.IN_HOTLINE, call, msg_id=call["call_id"])
    event = (await wait_for(lambda: recorder.on(subjects.APPEAL_REGISTERED, source_id=call["call_id"])))[0]
    transport = httpx.ASGITransport(app=intake.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake",
                                 headers={API_KEY_HEADER: DEMO_READ_KEY}) as http:
        async def timeline_has_registration():
            response = await http.get(f"/appeals/{event['appeal_id']}")
            return response if response.status_code == 200 and response.json()["timeline"] else None

        by_id = await wait_for(timeline_has_registration, what="timeline over HTTP")
        body = by_id.json()
        assert body["status"] == "registered"
        assert body["contact_phone"] == call["caller_phone"][:3] + "****" + call["caller_phone"][-4:]
        reply = await nc.request(subjects.Q_APPEAL, json.dumps({"appeal_id": event["appeal_id"]}).encode(), timeout=5)
        assert json.loads(reply.data) == body  # one use case, one answer

        by_source = await http.get("/appeals", params={"channel": "hotline", "source_id": call["call_id"]})
        assert by_source.status_code == 200 and by_source.json()["appeal_id"] == event["appeal_id"]

        missing = await http.get("/appeals/CT-19990101-000000")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert missing.json()["status"] == 404 and "CT-19990101-000000" in missing.json()["detail"]
        missing = await http.get("/appeals", params={"channel": "hotline", "source_id": "nobody"})
        assert missing.status_code == 404

        invalid = await http.get("/appeals", params={"channel": "hotline"})
        assert invalid.status_code == 422
        assert invalid.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in invalid.json()["errors"]] == ["source_id"]
        too_long = await http.get("/appeals/" + "X" * 41)
        assert too_long.status_code == 422 and too_long.json()["errors"][0]["field"] == "appeal_id"


async def _timeline_drained(js) -> bool:
    info = await js.consumer_info("CT_EVENTS", "intake-ct_order_all")
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_a_domain_event_republished_under_another_message_id_enters_the_timeline_once_as_sent(intake, js, db):
    appeal_id = f"CT-20261126-{uuid.uuid4().int % 10**6:06d}"
    event_id = f"dis-{uuid.uuid4().hex}"
    signed = {"event_id": event_id, "occurred_at": "2026-11-26T11:00:00.123456+08:00", "appeal_id": appeal_id,
              "source_ref": "hotline:C-1", "correlation_id": "C-1", "actor": "李四", "order_id": f"WO-{appeal_id}-1",
              "unit_code": "hrss", "unit": "区人社局"}
    await publish(js, subjects.ORDER_SIGNED, signed, msg_id=event_id)
    await publish(js, subjects.ORDER_SIGNED, signed, msg_id=f"{event_id}-again")  # past JetStream's window
    await wait_for(lambda: db.fetchval("SELECT count(*) FROM intake.timeline WHERE appeal_id = $1", appeal_id),
                   what="the timeline row")
    await wait_for(lambda: _timeline_drained(js), what="both copies acked")
    rows = await db.fetch("SELECT event_id, what, actor, payload FROM intake.timeline WHERE appeal_id = $1", appeal_id)
    assert [(r["event_id"], r["what"], r["actor"]) for r in rows] == [(event_id, f"区人社局 signed for order WO-{appeal_id}-1",
                                                                       "李四")]
    assert json.loads(rows[0]["payload"]) == signed  # the event as it was delivered
