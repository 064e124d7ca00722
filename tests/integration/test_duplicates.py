"""Duplicates (重复诉求并单) end to end on the real NATS and PostgreSQL: intake, dispatch and notify in this process.

Two calls of one enterprise about one matter make one master with orders and one
duplicate without; each caller gets a receipt; the master's reply reaches both
with a rating invitation; a split gives the duplicate its own order.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.dispatch.__main__ import create_service as create_dispatch
from services.intake.__main__ import create_service as create_intake
from shared.contracts import subjects
from shared.contracts.common import uscc_check_character
from tests.integration.test_notify import district_file, gateway, idle, robots, smtp, start_notify  # noqa: F401
from tests.support import Recorder, publish, running, wait_for
from tools.sms_sink import LocalSmsSink

pytestmark = pytest.mark.integration

LEAD = {"Authorization": "Bearer token-approval_bureau"}


@pytest.fixture
async def rec(nc):
    recorder = await Recorder(nc).watch("ct.order.>", "ct.appeal.>")
    yield recorder
    await recorder.close()


def a_phone() -> str:
    return "137" + "".join(random.choice("0123456789") for _ in range(8))


def a_credit_code() -> str:
    first = "91510100" + "".join(random.choice("0123456789") for _ in range(9))
    return first + uscc_check_character(first)


def a_call(phone: str, uscc: str, content: str, minutes_ago: int) -> dict:
    return {"call_id": f"DUP-{uuid.uuid4().hex[:10]}",
            "received_at": (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat(),
            "caller_phone": phone, "content": content, "enterprise_name": "成都锦程精密机械有限公司",
            "enterprise_uscc": uscc, "caller_name": "李敏", "category_hint": "交通出行"}


def sms_to(sink: LocalSmsSink, phone: str) -> list[str]:
    return [m["text"] for m in list(sink.messages) if m.get("to") == phone]


async def test_two_calls_about_one_matter_make_one_case_both_hear_the_reply_and_a_split_gets_its_own_order(
        servers, js, db, rec, gateway, start_notify):  # noqa: F811 - notify's fixtures: its sinks, idle before and after
    first_phone, second_phone, uscc = a_phone(), a_phone(), a_credit_code()
    marker = uuid.uuid4().hex[:4]  # keeps the texts apart from other tests' appeals
    first = a_call(first_phone, uscc, f"锦程机械厂门口路口的左转车道通行不便，高峰时段货车排队很长，门口路段车辆乱停乱放。{marker}", 30)
    second = a_call(second_phone, uscc, f"锦程机械厂门口路口左转车道通行太不方便，高峰时段货车排长队，门口还有车辆乱停乱放。{marker}", 5)

    async with (running(create_intake, servers) as intake, running(create_dispatch, servers), start_notify()):
        await publish(js, subjects.IN_HOTLINE, first, msg_id=first["call_id"])
        master = (await wait_for(lambda: rec.on(subjects.APPEAL_REGISTERED, source_id=first["call_id"]),
                                 what="the first call registered"))[0]
        await publish(js, subjects.IN_HOTLINE, second, msg_id=second["call_id"])
        duplicate = (await wait_for(lambda: rec.on(subjects.APPEAL_REGISTERED, source_id=second["call_id"]),
                                    what="the second call registered"))[0]
        master_id, duplicate_id = master["appeal_id"], duplicate["appeal_id"]

        # the registration names the master, and ct.appeal.merged says so to everyone else
        assert master["duplicate_of"] is None
        assert duplicate["duplicate_of"] == master_id and duplicate["similarity"] >= 0.25
        (merged,) = await wait_for(lambda: rec.on(subjects.APPEAL_MERGED, appeal_id=duplicate_id), what="merged")
        assert merged["master_appeal_id"] == master_id and merged["similarity"] == duplicate["similarity"]

        # the master is dispatched; the duplicate follows it with no order of its own
        (order,) = await wait_for(lambda: rec.on(subjects.ORDER_DISPATCHED, appeal_id=master_id), what="dispatched")
        await wait_for(lambda: db.fetchval("SELECT status = 'following' FROM dispatch.appeals WHERE appeal_id = $1",
                                           duplicate_id), what="the duplicate following its master")
        assert await db.fetchval("SELECT count(*) FROM dispatch.orders WHERE appeal_id = $1", duplicate_id) == 0
        assert rec.on(subjects.ORDER_DISPATCHED, appeal_id=duplicate_id) == []

        # each caller gets a receipt with its own appeal id
        await gateway.wait_for(lambda g: sms_to(g, first_phone) and sms_to(g, second_phone), timeout=15)
        assert master_id in sms_to(gateway, first_phone)[0]
        assert duplicate_id in sms_to(gateway, second_phone)[0]

        # the master's unit replies once: both enterprises get the reply and a rating invitation
        unit = order["unit_code"]
        for action, fields in (("sign", {}), ("reply", {"reply": "已增设左转专用信号并清理门前乱停车辆。", "resolved": True})):
            action_id = f"A-{uuid.uuid4().hex[:10]}"
            await publish(js, subjects.order_action_subject(unit, action),
                          {"action_id": action_id, "order_id": order["order_id"], "actor": "张科长", **fields},
                          msg_id=action_id)
        (reached,) = await wait_for(lambda: rec.on(subjects.APPEAL_FOLLOWER_REPLIED, appeal_id=duplicate_id),
                                    what="the reply reaching the duplicate")
        assert (reached["master_appeal_id"], reached["order_id"]) == (master_id, order["order_id"])

        def invitations(phone: str, appeal_id: str) -> list[str]:
            return [t for t in sms_to(gateway, phone) if appeal_id in t and "已增设左转专用信号" in t and "回复1满意" in t]

        await gateway.wait_for(lambda g: invitations(first_phone, master_id) and invitations(second_phone, duplicate_id),
                               timeout=15)

        # the lead unit splits the duplicate: it gets its own order, once
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=intake.http), base_url="http://intake") as c:
            split = await c.post(f"/appeals/{duplicate_id}/split", json={"reason": "另一车间的出入口"}, headers=LEAD)
            assert split.status_code == 200, split.text
            assert split.json()["master_appeal_id"] == master_id and split.json()["already_split"] is False
            again = await c.post(f"/appeals/{duplicate_id}/split", headers=LEAD)
            assert again.status_code == 200 and again.json()["already_split"] is True
            not_a_duplicate = await c.post(f"/appeals/{master_id}/split", headers=LEAD)
            assert not_a_duplicate.status_code == 409
            assert not_a_duplicate.headers["content-type"].startswith("application/problem+json")
            assert (await c.post("/appeals/CT-NO-SUCH/split", headers=LEAD)).status_code == 404
            assert (await c.post(f"/appeals/{duplicate_id}/split",
                                 headers={"Authorization": "Bearer token-traffic_police"})).status_code == 403

        (own,) = await wait_for(lambda: rec.on(subjects.ORDER_DISPATCHED, appeal_id=duplicate_id),
                                what="the split duplicate dispatched on its own")
        assert own["order_id"].startswith(duplicate_id)
        assert len(rec.on(subjects.APPEAL_SPLIT, appeal_id=duplicate_id)) == 1
        assert len(rec.on(subjects.ORDER_DISPATCHED, appeal_id=master_id)) == 1  # the master's units: one order
        # leave notify with nothing pending: the notify tests after this one start from idle
        await wait_for(lambda: idle(js, db), timeout=30, what="notify idle after the test")
