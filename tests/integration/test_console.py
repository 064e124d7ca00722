"""The web console (/console) on dispatch, against the real NATS and PostgreSQL: login, CSRF, expiry, language,
a unit's actions and the lead unit's queue and bulk decisions, all through dispatch's use cases."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.dispatch.__main__ import create_service as create_dispatch
from services.dispatch.console.sessions import COOKIE, CSRF_HEADER, LOGIN_COOKIE
from shared.contracts import AppealRegistered, Party, subjects
from tests.support import Recorder, publish, running, wait_for

pytestmark = pytest.mark.integration

TRAFFIC = "东航中心附近路口的左转车道通行不便，高峰时段通行缓慢；门口路段有车辆乱停乱放，容易造成拥堵。"


@pytest.fixture
async def dispatch(servers):
    async with running(create_dispatch, servers) as service:
        yield service


@pytest.fixture
async def rec(nc):
    recorder = await Recorder(nc).watch("ct.order.>", "ct.appeal.>")
    yield recorder
    await recorder.close()


def registered(content: str, category: str | None = None) -> AppealRegistered:
    appeal_id = f"CT-C-{uuid.uuid4().hex[:8]}"
    return AppealRegistered(
        event_id=f"con-{uuid.uuid4().hex}", occurred_at=datetime.now(UTC), appeal_id=appeal_id,
        source_ref=f"hotline:{appeal_id}", correlation_id=appeal_id, channel="hotline", source_id=appeal_id,
        enterprise=Party(name="四川东航投资有限公司"), contact=Party(name="潘星", phone="13800005678"),
        content=content, category_hint=category, kind="appeal", received_at=datetime.now(UTC) - timedelta(hours=1))


async def register(js, event: AppealRegistered) -> None:
    await publish(js, subjects.APPEAL_REGISTERED, event.model_dump(mode="json"), msg_id=event.event_id)


def console(service) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.http), base_url="http://dispatch")


async def log_in(http: httpx.AsyncClient, token: str, actor: str = "王科长") -> str:
    """Log in through the form; the session's CSRF token (read from the page, as a browser has it)."""
    form = await http.get("/console/login")
    login_token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
    answer = await http.post("/console/login", data={"login_token": login_token, "token": token, "actor": actor})
    assert answer.status_code == 303, answer.text
    page = await http.get(answer.headers["location"])
    assert page.status_code == 200
    return re.search(r'"X-CSRF-Token": "([^"]+)"', page.text).group(1)


async def order_status(db, order_id: str) -> str:
    return await db.fetchval("SELECT status FROM dispatch.orders WHERE order_id = $1", order_id)


async def test_a_unit_token_becomes_a_strict_http_only_session_and_a_wrong_one_opens_nothing(dispatch, db):
    async with console(dispatch) as http:
        assert (await http.get("/console/orders")).headers["location"] == "/console/login"
        form = await http.get("/console/login")
        assert form.status_code == 200 and "单位令牌" in form.text
        assert "HttpOnly" in form.headers["set-cookie"] and "SameSite=strict" in form.headers["set-cookie"]
        login_token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)

        wrong = await http.post("/console/login", data={"login_token": login_token, "token": "token-nobody",
                                                        "actor": "张三"})
        assert wrong.status_code == 401 and "令牌无效" in wrong.text and COOKIE not in http.cookies

        csrf = await log_in(http, "token-traffic_police", "张科长")
        session_id = http.cookies[COOKIE]
        stored = await db.fetchrow("SELECT * FROM dispatch.console_sessions WHERE session_sha256 = $1",
                                   hashlib.sha256(session_id.encode()).hexdigest())
        assert stored["unit_code"] == "traffic_police" and stored["actor"] == "张科长"
        assert stored["csrf_token"] == csrf
        assert not await db.fetchval("SELECT count(*) FROM dispatch.console_sessions WHERE session_sha256 = $1",
                                     session_id), "the id itself is never stored"
        page = await http.get("/console/orders")
        assert "区公安分局交警大队" in page.text and "本单位工单" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert (await http.get("/console/queue")).status_code == 403, "the queue is the lead unit's"
        assert (await http.get("/console/decisions/rows")).status_code == 403


async def test_the_session_cookie_flags(dispatch):
    async with console(dispatch) as http:
        form = await http.get("/console/login")
        login_token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
        answer = await http.post("/console/login", data={"login_token": login_token, "token": "token-sanitation",
                                                         "actor": "王所长"})
        cookie = next(v for v in answer.headers.get_list("set-cookie") if v.startswith(f"{COOKIE}="))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie, "plain http without CONSOLE_SECURE_COOKIE"
    async with running(create_dispatch, {"NATS_URL": dispatch.settings.nats_url,
                                         "DATABASE_URL": dispatch.settings.database_url},
                       console_secure_cookie=True, console_escalation_url="http://127.0.0.1:9") as secure:
        async with console(secure) as http:
            form = await http.get("/console/login")
            login_token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
            login_cookie = re.search(rf"{LOGIN_COOKIE}=([^;]+)", form.headers["set-cookie"]).group(1)
            assert "Secure" in form.headers["set-cookie"]  # so the client keeps it for https only: sent by hand
            answer = await http.post("/console/login", headers={"Cookie": f"{LOGIN_COOKIE}={login_cookie}"}, data={"login_token": login_token, "token": "token-sanitation", "actor": "王"})
            cookie = next(v for v in answer.headers.get_list("set-cookie") if v.startswith(f"{COOKIE}="))
            assert "Secure" in cookie
            session = re.search(rf"{COOKIE}=([^;]+)", cookie).group(1)
            ranking = await http.get("/console/ranking", headers={"Cookie": f"{COOKIE}={session}"})
            assert ranking.status_code == 200 and 'id="ranking-error"' in ranking.text, "escalation unreachable"
            assert 'id="figures"' in ranking.text, "dispatch's own figures still shown"


async def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(dispatch, js, db, rec):
    event = registered(TRAFFIC, "交通出行")
    await register(js, event)
    dispatched = await wait_for(lambda: rec.on(subjects.ORDER_DISPATCHED, appeal_id=event.appeal_id), timeout=60, what="order")
    order_id = dispatched[0]["order_id"]
    async with console(dispatch) as http:
        form = await http.get("/console/login")
        no_login_token = await http.post("/console/login", data={"token": "token-traffic_police", "actor": "张"})
        assert no_login_token.status_code == 403 and COOKIE not in http.cookies
        assert "login_token" in form.text
        csrf = await log_in(http, "token-traffic_police")
        sign = f"/console/orders/{order_id}/act/sign"
        missing = await http.post(sign, data={"action_id": "c-1"})
        wrong = await http.post(sign, data={"action_id": "c-2", "csrf_token": "not-the-token"},
                                headers={"HX-Request": "true"})
        assert missing.status_code == 403 and wrong.status_code == 403 and "校验码" in missing.text
        assert await order_status(db, order_id) == "dispatched"
        done = await http.post(sign, data={"action_id": "c-3"}, headers={CSRF_HEADER: csrf, "HX-Request": "true"})
        assert done.status_code == 200 and "已签收" in done.text
        assert await order_status(db, order_id) == "signed"
    await wait_for(lambda: rec.on(subjects.ORDER_SIGNED, order_id=order_id), what="ct.order.signed")
    signed = rec.on(subjects.ORDER_SIGNED, order_id=order_id)
    assert len(signed) == 1 and signed[0]["actor"] == "王科长"


async def test_a_unit_works_its_order_through_the_use_cases_and_a_refusal_names_its_rule(dispatch, js, db, rec):
    event = registered(TRAFFIC, "交通出行")
    await register(js, event)
    order_id = (await wait_for(lambda: rec.on(subjects.ORDER_DISPATCHED, appeal_id=event.appeal_id), timeout=60))[0]["order_id"]
    async with console(dispatch) as http:
        csrf = await log_in(http, "token-traffic_police")
        headers = {CSRF_HEADER: csrf, "HX-Request": "true"}
        page = await http.get(f"/console/orders/{order_id}")
        assert "左转车道" in page.text and 'id="do-sign"' in page.text and 'id="do-return"' in page.text
        assert (await http.post(f"/console/orders/{order_id}/act/sign", data={"action_id": "u-1"},
                                headers=headers)).status_code == 200
        again = await http.post(f"/console/orders/{order_id}/act/sign", data={"action_id": "u-1"}, headers=headers)
        assert "未重复执行" in again.text, "the form's action id: a second submit does nothing twice"
        bad = await http.post(f"/console/orders/{order_id}/act/extend", data={"action_id": "u-2"}, headers=headers)
        assert bad.status_code == 409 and "填写有误" in bad.text and "ActionMustBeWellFormed" in bad.text
        late = await http.post(f"/console/orders/{order_id}/act/return", data={"action_id": "u-3", "reason": "不是我们"},
                               headers=headers)
        assert late.status_code == 409 and "illegal_transition" not in late.text and "状态不允许" in late.text
        for action, fields in (("progress", {"note": "已到现场查看"}), ("extend", {"days": "3", "reason": "需协调"}),
                               ("reply", {"reply": "已增设左转待行区。", "resolved": "true"})):
            done = await http.post(f"/console/orders/{order_id}/act/{action}",
                                   data={"action_id": f"u-{action}", **fields}, headers=headers)
            assert done.status_code == 200, (action, done.text)
        assert await order_status(db, order_id) == "replied"
        detail = await http.get(f"/console/orders/{order_id}")
        assert "已增设左转待行区。" in detail.text
    async with console(dispatch) as other:
        await log_in(other, "token-hr_bureau")
        assert (await other.get(f"/console/orders/{order_id}")).status_code == 404, "another unit's order"
    await wait_for(lambda: rec.on(subjects.ORDER_REPLIED, order_id=order_id), what="replied")
    assert rec.on(subjects.ORDER_PROGRESSED, order_id=order_id) and rec.on(
        subjects.ORDER_EXTENSION_REQUESTED, order_id=order_id)


async def test_a_unit_pauses_its_signed_order_from_the_console_and_resumes_it(dispatch, js, db, rec):
    event = registered(TRAFFIC, "交通出行")
    await register(js, event)
    order_id = (await wait_for(lambda: rec.on(subjects.ORDER_DISPATCHED, appeal_id=event.appeal_id), timeout=60))[0]["order_id"]
    async with console(dispatch) as http:
        csrf = await log_in(http, "token-traffic_police", "张科长")
        headers = {CSRF_HEADER: csrf, "HX-Request": "true"}
        unsigned = await http.get(f"/console/orders/{order_id}")
        assert 'id="do-pause"' not in unsigned.text, "only a signed order pauses"
        await http.post(f"/console/orders/{order_id}/act/sign", data={"action_id": "p-sign"}, headers=headers)
        signed = await http.get(f"/console/orders/{order_id}")
        assert 'id="do-pause"' in signed.text and 'id="do-resume"' not in signed.text
        assert re.search(r'id="form-pause".*?<textarea name="reason"[^>]*required', signed.text, re.S)

        no_reason = await http.post(f"/console/orders/{order_id}/act/pause", data={"action_id": "p-0"}, headers=headers)
        assert no_reason.status_code == 409 and "填写有误" in no_reason.text and "reason" in no_reason.text
        assert await db.fetchval("SELECT paused_at FROM dispatch.orders WHERE order_id = $1", order_id) is None

        paused = await http.post(f"/console/orders/{order_id}/act/pause", headers=headers,
                                 data={"action_id": "p-1", "reason": "待企业补充营业执照副本"})
        assert paused.status_code == 200 and "已暂停计时（待补充材料）" in paused.text
        assert 'id="do-resume"' in paused.text and 'id="do-pause"' not in paused.text
        assert "待企业补充营业执照副本" in paused.text and 'id="order-paused-since"' in paused.text
        assert 'data-state="paused"' in paused.text
        row = await db.fetchrow("SELECT status, paused_at, pause_reason FROM dispatch.orders WHERE order_id = $1",
                                order_id)
        assert row["status"] == "signed" and row["paused_at"] is not None
        assert row["pause_reason"] == "待企业补充营业执照副本"

        listed = await http.get("/console/orders", params={"due": "paused"})
        assert order_id in listed.text and 'class="row-paused"' in listed.text
        assert order_id not in (await http.get("/console/orders", params={"due": "returned"})).text
        again = await http.post(f"/console/orders/{order_id}/act/pause", headers=headers,
                                data={"action_id": "p-2", "reason": "再等"})
        assert again.status_code == 409 and "ClockIsPausedOnce" in again.text

        resumed = await http.post(f"/console/orders/{order_id}/act/resume", headers=headers,
                                  data={"action_id": "p-3", "note": "营业执照副本已收到"})
        assert resumed.status_code == 200 and "已恢复计时" in resumed.text and 'id="do-pause"' in resumed.text
        assert await db.fetchval("SELECT paused_at FROM dispatch.orders WHERE order_id = $1", order_id) is None
        assert order_id not in (await http.get("/console/orders", params={"due": "paused"})).text
        bare = await http.post(f"/console/orders/{order_id}/act/pause", headers=headers,
                               data={"action_id": "p-4", "reason": "待现场踏勘"})
        assert bare.status_code == 200, "a second pause (at most 2 per order)"
        assert (await http.post(f"/console/orders/{order_id}/act/resume", headers=headers,
                                data={"action_id": "p-5"})).status_code == 200, "the note is optional"
    await wait_for(lambda: len(rec.on(subjects.ORDER_RESUMED, order_id=order_id)) == 2 or None, what="resumed")
    pauses = rec.on(subjects.ORDER_PAUSED, order_id=order_id)
    assert [p["pause"]["reason"] for p in pauses] == ["待企业补充营业执照副本", "待现场踏勘"]
    assert {p["actor"] for p in pauses} == {"张科长"}
    assert rec.on(subjects.ORDER_RESUMED, order_id=order_id)[0]["note"] == "营业执照副本已收到"


async def test_the_lead_unit_sees_returns_waiting_apart_from_paused_clocks(dispatch, js, db, rec):
    event = registered(TRAFFIC, "交通出行")
    await register(js, event)
    order_id = (await wait_for(lambda: rec.on(subjects.ORDER_DISPATCHED, appeal_id=event.appeal_id), timeout=60))[0]["order_id"]
    async with console(dispatch) as unit:
        csrf = await log_in(unit, "token-traffic_police")
        returned = await unit.post(f"/console/orders/{order_id}/act/return", headers={CSRF_HEADER: csrf},
                                   data={"action_id": "r-1", "reason": "不属于交警职责"})
        assert returned.status_code == 200 and await order_status(db, order_id) == "returned"
    async with console(dispatch) as lead:
        await log_in(lead, "token-approval_bureau")
        waiting = await lead.get("/console/orders", params={"due": "returned"})
        assert order_id in waiting.text and 'class="row-returned"' in waiting.text
        assert order_id not in (await lead.get("/console/orders", params={"due": "paused"})).text
        decisions = await lead.get("/console/decisions")
        assert order_id in decisions.text and "不属于交警职责" in decisions.text


async def test_an_expired_session_asks_for_the_token_again(dispatch, db):
    async with console(dispatch) as http:
        await log_in(http, "token-sanitation")
        digest = hashlib.sha256(http.cookies[COOKIE].encode()).hexdigest()
        await db.execute("UPDATE dispatch.console_sessions SET expires_at = now() - interval '1 second' "
                         "WHERE session_sha256 = $1", digest)
        htmx = await http.get("/console/orders/rows", headers={"HX-Request": "true"})
        assert htmx.headers["HX-Redirect"] == "/console/login?expired=1", "an htmx request redirects the page"
        assert COOKIE not in http.cookies, "the dead cookie is deleted"
        page = await http.get("/console/orders")
        assert page.status_code == 303 and page.headers["location"] == "/console/login"
        assert "登录已过期" in (await http.get("/console/login?expired=1")).text


async def test_logout_ends_the_session(dispatch, db):
    async with console(dispatch) as http:
        csrf = await log_in(http, "token-sanitation")
        session_id = http.cookies[COOKIE]
        assert (await http.post("/console/logout", data={})).status_code == 403, "logout needs the CSRF token too"
        out = await http.post("/console/logout", data={"csrf_token": csrf})
        assert out.status_code == 303
        assert not await db.fetchval("SELECT count(*) FROM dispatch.console_sessions WHERE session_sha256 = $1",
                                     hashlib.sha256(session_id.encode()).hexdigest())
    async with console(dispatch) as replay:
        replay.cookies.set(COOKIE, session_id, domain="dispatch.local", path="/console")
        assert (await replay.get("/console/orders")).status_code == 303


async def test_the_language_switch_is_kept_in_a_cookie(dispatch):
    async with console(dispatch) as http:
        assert "登录" in (await http.get("/console/login")).text
        english = await http.get("/console/login?lang=en")
        assert "Unit token" in english.text and "单位令牌" not in english.text
        assert "Unit token" in (await http.get("/console/login")).text, "kept by the cookie"
        await log_in(http, "token-sanitation")
        page = await http.get("/console/orders")
        assert "Our orders" in page.text and 'lang="en"' in page.text
        back = await http.get("/console/orders?lang=zh")
        assert "本单位工单" in back.text and 'href="/console/orders?lang=en"' in back.text


# unclear to the rules and the model, and used by no other test: the lead unit's dispatch below teaches the
# model this text, and a later test expecting the same text to queue would see it dispatched
UNCLEAR = "我们企业想反映一些发展中遇到的情况，希望有关部门能来企业坐坐，当面聊一聊。"


async def test_the_lead_unit_dispatches_from_the_queue_and_bulk_says_why_each_refusal(dispatch, js, db, rec):
    event = registered(UNCLEAR)
    await register(js, event)
    await wait_for(lambda: rec.on(subjects.APPEAL_QUEUED, appeal_id=event.appeal_id), timeout=60, what="queued")
    traffic = registered(TRAFFIC, "交通出行")
    await register(js, traffic)
    other = (await wait_for(lambda: rec.on(subjects.ORDER_DISPATCHED, appeal_id=traffic.appeal_id), timeout=60))[0]["order_id"]
    async with console(dispatch) as http:
        csrf = await log_in(http, "token-approval_bureau", "审批局李科长")
        headers = {CSRF_HEADER: csrf, "HX-Request": "true"}
        queue = await http.get("/console/queue")
        assert event.appeal_id in queue.text and "派给" in queue.text
        stamp = re.search(r'data-stamp="([^"]+)"', queue.text).group(1)
        assert (await http.get("/console/changes", params={"stamp": stamp})).status_code == 204

        done = await http.post(f"/console/appeals/{event.appeal_id}/dispatch",
                               data={"action_id": "l-1", "unit_code": "economy_bureau"}, headers=headers)
        assert done.status_code == 200 and "已派单" in done.text and event.appeal_id not in done.text
        order = (await wait_for(lambda: rec.on(subjects.ORDER_DISPATCHED, appeal_id=event.appeal_id)))[0]
        assert order["unit_code"] == "economy_bureau" and order["actor"] == "审批局李科长"
        changed = await wait_for(lambda: _changed(http, stamp), what="the change seen by /changes")
        assert changed.headers["HX-Trigger"] == "ct-changed"

        found = await http.get("/console/orders", params={"q": event.appeal_id})
        assert order["order_id"] in found.text and other not in found.text
        by_unit = await http.get("/console/orders", params={"unit": "traffic_police"})
        assert other in by_unit.text and order["order_id"] not in by_unit.text

        bulk = await http.post("/console/bulk", headers=headers, data={
            "bulk_action": "grant_extension", "batch_id": "b-1", "order_id": [order["order_id"], other, "WO-nope"]})
        assert bulk.status_code == 200
        rows = dict(re.findall(r'<tr data-order="([^"]+)" class="(ok|bad)"', bulk.text))
        assert rows == {order["order_id"]: "bad", other: "bad", "WO-nope": "bad"}
        assert bulk.text.count("工单当前状态不允许此操作") == 2 and "没有这个工单或诉求" in bulk.text
        decisions = await http.get("/console/decisions")
        assert decisions.status_code == 200 and 'id="bulk-form"' in decisions.text
        redispatch = await http.post("/console/bulk", headers=headers, data={
            "bulk_action": "redispatch", "batch_id": "b-2", "unit_code": "transport_bureau", "order_id": [other]})
        assert 'class="ok"' in redispatch.text
    moved = await wait_for(lambda: [o for o in rec.on(subjects.ORDER_DISPATCHED, appeal_id=traffic.appeal_id)
                                    if o["unit_code"] == "transport_bureau"], what="redispatched")
    assert moved and await order_status(db, other) == "cancelled"


async def _changed(http: httpx.AsyncClient, stamp: str) -> httpx.Response | None:
    answer = await http.get("/console/changes", params={"stamp": stamp})
    return answer if answer.status_code == 200 else None
