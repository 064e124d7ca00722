"""Follow-up visits, the third-party survey and the programme figures on the real NATS and PostgreSQL.

The clock is frozen in 2031 (before the 3rd of a month, so the monthly draw does
not run by itself) and every test uses months of its own, so other tests' rows
are not drawn or counted.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.escalation import figures as programme_figures
from services.escalation.__main__ import create_service
from services.escalation.config import context
from services.escalation.domain.follow_ups import draw_follow_ups
from services.intake.__main__ import create_service as create_intake
from shared import clock
from shared.contracts import events as ev
from shared.contracts import subjects
from tests.support import Recorder, publish, running, wait_for
from tools import programme

pytestmark = pytest.mark.integration

SH = ZoneInfo("Asia/Shanghai")
UNIT = "traffic_police"
LEAD = {"Authorization": "Bearer token-approval_bureau"}


def at(y: int, mo: int, d: int, h: int = 10) -> datetime:
    return datetime(y, mo, d, h, tzinfo=SH)


@pytest.fixture
def frozen():
    clock.set_clock(lambda: at(2031, 7, 2))
    try:
        yield
    finally:
        clock.set_clock(None)


@pytest.fixture
async def escalation(servers, frozen):
    async with running(create_service, servers, scan_interval_s=0.2) as service:
        yield service


@pytest.fixture
async def http(escalation):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=escalation.http), base_url="http://esc") as client:
        yield client


def _ids() -> str:
    return uuid.uuid4().hex[:10]


async def dispatch_and_close(js, appeal_id: str, closed_on: datetime | None, outcome: str = "satisfied") -> None:
    """What dispatch would publish: the lead order to UNIT, and the appeal's closure with the enterprise's rating."""
    order = ev.OrderDispatched(
        event_id=f"dsp-{uuid.uuid4().hex}", occurred_at=at(2031, 5, 2), appeal_id=appeal_id, source_ref="hotline:T",
        order_id=f"{appeal_id}-1", unit_code=UNIT, unit="区公安分局交警大队", role="lead", category="交通出行",
        received_at=at(2031, 5, 2), deadline_days=5, sign_hours=4, policy=ev.OrderPolicy(deadline_days=5))
    await publish(js, subjects.ORDER_DISPATCHED, order.model_dump_json().encode(), order.event_id)
    if closed_on is not None:
        closure = ev.AppealClosed(event_id=f"dsp-{uuid.uuid4().hex}", occurred_at=closed_on, appeal_id=appeal_id,
                                  outcome=outcome, unit_codes=[UNIT])
        await publish(js, subjects.APPEAL_CLOSED, closure.model_dump_json().encode(), closure.event_id)


async def reopen(js, appeal_id: str, on: datetime) -> None:
    event = ev.AppealReopened(event_id=f"dsp-{uuid.uuid4().hex}", occurred_at=on, appeal_id=appeal_id,
                              order_id=f"{appeal_id}-2", unit_code=UNIT, unit="区公安分局交警大队", reopen_count=1)
    await publish(js, subjects.APPEAL_REOPENED, event.model_dump_json().encode(), event.event_id)


async def test_a_draw_is_reproducible_its_calls_count_once_and_a_contradiction_is_flagged(escalation, http, js, db, nc):
    tag = _ids()
    closed = [f"CT-F{tag}{n}" for n in range(5)]
    again = f"CT-F{tag}R"
    recorder = await Recorder(nc).watch(subjects.APPEAL_FOLLOW_UP_DRAWN, subjects.APPEAL_FOLLOW_UP_CONTRADICTED)
    try:
        for n, appeal_id in enumerate(closed):
            await dispatch_and_close(js, appeal_id, at(2031, 5, 10 + n))
        await dispatch_and_close(js, again, None)
        await reopen(js, again, at(2031, 5, 12))
        await wait_for(lambda: db.fetchval(
            "SELECT (SELECT count(*) FROM escalation.closures WHERE appeal_id = ANY($1::text[])) = 5 AND "
            "(SELECT count(*) FROM escalation.ratings WHERE appeal_id = $2) = 1", closed, again), what="closures")

        unauthorised = await http.post("/followups/draws", json={"month": "2031-05", "share": 0.2, "seed": 7})
        assert unauthorised.status_code == 401
        drawn = await http.post("/followups/draws", json={"month": "2031-05", "share": 0.2, "seed": 7}, headers=LEAD)
        assert drawn.status_code == 200, drawn.text
        draw = drawn.json()
        expected = draw_follow_ups(closed, [again], 0.2, 7)
        assert [(a["appeal_id"], a["reason"]) for a in draw["appeals"]] == [(d.appeal_id, d.reason) for d in expected]
        assert (draw["seed"], draw["share"], draw["created"], draw["candidates"]) == (7, 0.2, True, 6)
        assert len(draw["appeals"]) == 2  # every reopened appeal, and ceil(20 % of 5) closed ones

        # the same month again gives the same draw; another seed is refused; the command shows the same
        same = await http.post("/followups/draws", json={"month": "2031-05", "seed": 7}, headers=LEAD)
        assert same.status_code == 200 and same.json()["appeals"] == draw["appeals"] and not same.json()["created"]
        assert (await http.post("/followups/draws", json={"month": "2031-05", "seed": 8}, headers=LEAD)).status_code == 409
        await wait_for(lambda: len(recorder.on(subjects.APPEAL_FOLLOW_UP_DRAWN, month="2031-05")) == 2,
                       what="one ct.appeal.follow_up_drawn per drawn appeal")

        called = next(a["appeal_id"] for a in draw["appeals"] if a["reason"] == "closed")
        call = {"feedback_id": f"FU-{tag}-1", "appeal_id": called, "rating": "unsatisfied", "via": "follow_up",
                "comment": "问题其实没有解决", "caller": "回访员07"}
        await publish(js, subjects.IN_FEEDBACK, call, f"FU-{tag}-1")
        await publish(js, subjects.IN_FEEDBACK, call, f"FU-{tag}-1-again")  # republished under another msg id
        await publish(js, subjects.IN_FEEDBACK, {"feedback_id": f"FU-{tag}-2", "appeal_id": again,
                                                 "outcome": "not_done", "via": "follow_up"}, f"FU-{tag}-2")
        await wait_for(lambda: db.fetchval("SELECT count(*) = 2 FROM escalation.follow_ups "
                                           "WHERE appeal_id = ANY($1::text[])", [called, again]), what="both calls")
        await wait_for(lambda: recorder.on(subjects.APPEAL_FOLLOW_UP_CONTRADICTED, appeal_id=called),
                       what="the contradiction announced")

        flagged = (await http.get("/followups", params={"month": "2031-05", "contradicted": "true"})).json()
        assert [(i["appeal_id"], i["rating"], i["own_rating"]) for i in flagged] == [(called, "unsatisfied", "satisfied")]
        listed = {i["appeal_id"]: i for i in (await http.get("/followups", params={"month": "2031-05"})).json()}
        assert listed[again]["outcome"] == "not_done" and not listed[again]["contradicts"]

        report = (await http.get("/report", params={"month": "2031-05"})).json()
        row = next(u for u in report["units"] if u["unit_code"] == UNIT)
        assert (row["follow_up_rated"], row["follow_up_satisfied"], row["follow_up_contradicted"]) == (1, 0, 1)
        # the enterprises' own: five satisfied closures and one reopening (unsatisfied), beside the follow-up's 0 of 1
        assert row["follow_up_satisfaction_rate"] == 0.0 and abs(row["satisfaction_rate"] - 5 / 6) < 1e-9
        contradicted = recorder.on(subjects.APPEAL_FOLLOW_UP_CONTRADICTED, appeal_id=called)
        assert len(contradicted) == 1 and contradicted[0]["lead_unit"] == "approval_bureau"
    finally:
        await recorder.close()


async def test_a_survey_file_is_imported_whole_or_not_at_all_and_once(escalation, http, js, db, servers, monkeypatch,
                                                                       tmp_path, capsys):
    tag = _ids()
    appeals = [f"CT-S{tag}{n}" for n in range(3)]
    for n, appeal_id in enumerate(appeals):
        await dispatch_and_close(js, appeal_id, at(2031, 4, 3 + n))
    await wait_for(lambda: db.fetchval("SELECT count(*) = 3 FROM escalation.closures WHERE appeal_id = ANY($1::text[])",
                                       appeals), what="closures")
    bad = ("appeal_id,rating,comment,surveyor\n"
           f"{appeals[0]},满意,,测评公司A\n"
           f"CT-NOSUCH{tag},satisfied,,测评公司A\n"
           f"{appeals[1]},great,,测评公司A\n"
           f"{appeals[2]},unsatisfied,等了很久,\n").encode()
    answer = await http.post("/survey/imports", params={"month": "2031-04"}, content=bad, headers=LEAD)
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["line 3: appeal_id", "line 4: rating", "line 5: surveyor"]
    assert await db.fetchval("SELECT count(*) FROM escalation.survey_ratings WHERE month = '2031-04'") == 0

    good = ("appeal_id,rating,comment,surveyor\n"
            f"{appeals[0]},满意,,测评公司A\n"
            f"{appeals[1]},basically_satisfied,,测评公司A\n"
            f"{appeals[2]},不满意,等了很久,测评公司A\n").encode()
    made = await http.post("/survey/imports", params={"month": "2031-04", "filename": "2031-04.csv"}, content=good,
                           headers=LEAD)
    assert made.status_code == 200 and made.json()["rows"] == 3 and made.json()["created"]
    again = await http.post("/survey/imports", params={"month": "2031-04"}, content=good, headers=LEAD)
    assert again.status_code == 200 and not again.json()["created"]

    # by command: the same file again imports nothing more; a bad file prints each error with its line
    monkeypatch.setenv("DATABASE_URL", servers["DATABASE_URL"])
    (tmp_path / "good.csv").write_bytes(good)
    (tmp_path / "bad.csv").write_bytes(bad)
    def command(name: str, month: str) -> int:
        return programme.main(argparse.Namespace(command="survey", survey_command="import", file=str(tmp_path / name),
                                                 month=month))

    assert await asyncio.to_thread(command, "good.csv", "2031-04") == 0
    assert await asyncio.to_thread(command, "bad.csv", "2031-03") == 1
    out = capsys.readouterr()
    assert "(imported before)" in out.out and "bad.csv:4: rating:" in out.err and "nothing was imported" in out.err
    assert await db.fetchval("SELECT count(*) FROM escalation.survey_ratings WHERE month = '2031-04'") == 3
    assert await db.fetchval("SELECT count(*) FROM escalation.survey_ratings WHERE month = '2031-03'") == 0

    row = next(u for u in (await http.get("/report", params={"month": "2031-04"})).json()["units"]
               if u["unit_code"] == UNIT)
    assert (row["survey_rated"], row["survey_satisfied"]) == (3, 2)
    assert abs(row["survey_satisfaction_rate"] - 2 / 3) < 1e-9
    table = (await http.get("/report", params={"month": "2031-04", "format": "table"})).text
    assert "survey" in table and "follow-up" in table
    assert "第三方测评满意率" in (await http.get("/report", params={"month": "2031-04", "format": "csv"})).text
    assert "Survey satisfaction rate" in (await http.get("/report", params={"month": "2031-04", "format": "csv",
                                                                             "lang": "en"})).text


async def test_the_programme_figures_count_events_attendances_and_their_appeals(escalation, http, js, db, servers,
                                                                                  nc):
    tag = _ids()
    recorder = await Recorder(nc).watch(subjects.APPEAL_REGISTERED)
    main_event = {"event_id": f"EV-{tag}-main", "kind": "main", "date": "2031-02-05", "organizer_unit": "区行政审批局",
                  "theme": "企业发展之水电气保障",
                  "attendees": ["区委副书记", "区行政审批局局长", "刘建国",
                                {"name": "王建军", "role": "department_head", "unit": UNIT}, "记者甲"],
                  "items": [{"item_no": 1, "enterprise_name": f"甲公司{tag}", "content": f"路口左转车道通行不便 {tag}"},
                            {"item_no": 2, "enterprise_name": f"乙公司{tag}", "content": f"园区生活垃圾清运不及时 {tag}"}]}
    sub_event = {"event_id": f"EV-{tag}-sub", "kind": "sub", "date": "2031-02-20", "organizer_unit": "区人社局",
                 "attendees": ["区人社局局长"],
                 "items": [{"item_no": 1, "enterprise_name": f"甲公司{tag}", "content": f"招聘人才成本高 {tag}"}]}
    try:
        async with running(create_intake, servers):
            for record in (main_event, sub_event):
                await publish(js, subjects.IN_EVENT, record, record["event_id"])
            registered = await wait_for(lambda: [e for e in recorder.on(subjects.APPEAL_REGISTERED)
                                                 if e["source_id"].startswith(f"EV-{tag}")]
                                        if len([e for e in recorder.on(subjects.APPEAL_REGISTERED)
                                                if e["source_id"].startswith(f"EV-{tag}")]) == 3 else None,
                                        what="the three items registered")
        by_source = {e["source_id"]: e["appeal_id"] for e in registered}
        await wait_for(lambda: db.fetchval("SELECT count(*) = 3 FROM escalation.programme_appeals WHERE event_id LIKE $1",
                                           f"EV-{tag}%"), what="escalation keeps the items")
        await dispatch_and_close(js, by_source[f"EV-{tag}-main#1"], at(2031, 2, 10), "satisfied")
        await dispatch_and_close(js, by_source[f"EV-{tag}-sub#1"], at(2031, 2, 25), "basically_satisfied")
        await wait_for(lambda: db.fetchval("SELECT count(*) = 2 FROM escalation.closures WHERE appeal_id = ANY($1::text[])",
                                           list(by_source.values())), what="closures")

        figures = (await http.get("/figures", params={"from": "2031-02-01", "to": "2031-02-28"})).json()
        assert (figures["events_main"], figures["events_sub"], figures["enterprises"]) == (1, 1, 2)
        assert (figures["district_leader_attendances"], figures["department_head_attendances"]) == (2, 3)
        assert figures["units"] == ["approval_bureau", "hr_bureau", UNIT]
        assert figures["main"] == {"collected": 2, "closed": 1, "closure_rate": 0.5, "rated": 1, "satisfied": 1,
                                   "satisfaction_rate": 1.0}
        assert (figures["all"]["collected"], figures["all"]["closed"], figures["all"]["satisfaction_rate"]) == (3, 2, 1.0)
        assert figures["unit_participation_rate"] == round(3 / figures["member_units"], 6)
        # a period ending before the closures: collected, not yet closed
        early = (await http.get("/figures", params={"from": "2031-02-01", "to": "2031-02-06"})).json()
        assert (early["events_main"], early["events_sub"], early["main"]["closed"]) == (1, 0, 0)
        table = (await http.get("/figures", params={"from": "2031-02-01", "to": "2031-02-28", "format": "table"})).text
        assert "1 main, 1 sub" in table and "办结率" in table
        assert (await http.get("/figures", params={"from": "2031-03-01", "to": "2031-02-01"})).status_code == 422

        # the gauges: the year to date of the frozen clock (2031-07-02)
        year = await programme_figures.refresh_gauges(escalation.pool, context())
        assert year.events_main >= 1 and year.main.collected >= 2
        metrics = (await http.get("/metrics")).text
        assert f'coffeetime_programme_events{{kind="main"}} {float(year.events_main)}' in metrics
        assert f'coffeetime_programme_appeals{{kind="main",state="closed"}} {float(year.main.closed)}' in metrics
        assert 'coffeetime_programme_closure_rate{kind="main"}' in metrics
    finally:
        await recorder.close()
