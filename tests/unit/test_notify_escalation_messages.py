"""Notify's messages for an appeal's escalation to the district leader and the supervision office.

Escalation publishes one ``ct.appeal.escalated`` per appeal and level, naming every late
co-handling order (``late_orders``); each recipient gets one message naming every late
unit, Chinese first. Each unit's own overdue notice (督办) stays per order.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from services.notify.config import load_rules
from services.notify.domain import EnterpriseContact, plan_notifications, render
from services.notify.domain.facts import facts_of
from services.notify.domain.variables import template_variables
from shared.contracts import events as ev
from shared.contracts import subjects
from shared.district import District, load_district

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 10, 15, 17, 31, tzinfo=SH)
LEAD, CO = "traffic_police", "transport_bureau"
DISTRICT = load_district()
RULES = load_rules(env={})
CONTACT = EnterpriseContact(name="潘星", phone="13912345678", lang="zh", enterprise_name="四川东航投资有限公司")


def late(district: District, unit_code: str, suffix: str, role: str, due: datetime, seconds: int) -> ev.LateOrder:
    return ev.LateOrder(order_id=f"CT-20260930-0001-{suffix}", unit_code=unit_code, unit=district.unit(unit_code).name,
                        role=role, due_at=due, overdue_seconds=seconds)


def escalated(district: District, level: str, *late_orders: ev.LateOrder) -> ev.AppealEscalated:
    first = late_orders[0]
    return ev.AppealEscalated(
        event_id=f"esc-{level}", occurred_at=NOW, appeal_id="CT-20260930-0001", order_id=first.order_id,
        unit_code=first.unit_code, unit=first.unit, level=level, reason="2 work orders past their handling deadlines",
        due_at=first.due_at, overdue_seconds=first.overdue_seconds, summary="东航中心路口左转车道通行不便",
        targets=[{"role": "district_leader", "name": "刘建国"}] if level == "district_leader" else [],
        late_orders=list(late_orders),
    )


def two_late(district: District) -> tuple[ev.LateOrder, ev.LateOrder]:
    return (late(district, LEAD, "01", "lead", datetime(2026, 10, 13, 17, 30, tzinfo=SH), 2 * 86400 + 60),
            late(district, CO, "02", "co", datetime(2026, 10, 14, 17, 30, tzinfo=SH), 86400 + 60))


def test_the_leader_gets_one_sms_and_one_email_naming_both_late_units():
    district, rules = DISTRICT, RULES
    event = escalated(district, "district_leader", *two_late(district))
    planned = plan_notifications(subjects.APPEAL_ESCALATED, event, district, rules, NOW, contact=CONTACT)
    leader = next(x for x in district.leaders if x.name == "刘建国")
    assert sorted((p.channel, p.address) for p in planned) == sorted(
        (ch, a) for ch, a in (("sms", leader.contact.phone), ("email", leader.contact.email)) if a)
    lead_name, co_name = district.unit(LEAD).name, district.unit(CO).name
    sms = next(p for p in planned if p.channel == "sms")
    assert sms.template == "leader_overdue" and sms.lang == "zh"
    assert f"超期单位：{lead_name}（主办，超期2天）、{co_name}（协办，超期1天）" in sms.text
    assert "提请您协调（超期未办结）" in sms.text and "四川东航投资有限公司" in sms.text
    assert len(sms.text) <= rules.sms.max_length
    email = next(p for p in planned if p.channel == "email")
    assert "2个工单超期" in email.subject and lead_name in email.text and co_name in email.text


def test_the_supervision_office_gets_each_late_order_on_a_line():
    district, rules = DISTRICT, RULES
    event = escalated(district, "supervision", *two_late(district))
    planned = plan_notifications(subjects.APPEAL_ESCALATED, event, district, rules, NOW, contact=CONTACT)
    assert planned and {p.recipient_role for p in planned} == {"supervision_office"}
    assert {p.template for p in planned} == {"supervision_notice"}
    for p in planned:
        assert "2个工单超期" in p.text
        assert f"1. 工单CT-20260930-0001-01 {district.unit(LEAD).name}（主办）：时限10月13日 17:30；超期2天" in p.text
        assert f"2. 工单CT-20260930-0001-02 {district.unit(CO).name}（协办）：时限10月14日 17:30；超期1天" in p.text


def test_many_late_units_still_fit_an_sms_by_shortening_the_summary_first():
    district, rules = DISTRICT, RULES
    units = [u for u in district.units if u.kind.value not in ("lead", "supervision")][:9]
    many = [late(district, u.unit_code, f"{i:02d}", "co", datetime(2026, 10, 13, 17, 30, tzinfo=SH), 86400)
            for i, u in enumerate(units, start=1)]
    planned = plan_notifications(subjects.APPEAL_ESCALATED, escalated(district, "district_leader", *many), district,
                                 rules, NOW, contact=CONTACT)
    sms = next(p for p in planned if p.channel == "sms")
    assert len(sms.text) <= rules.sms.max_length
    assert units[0].name in sms.text  # the units are cut last, after the summary and the enterprise
    assert "东航中心路口左转车道通行不便" not in sms.text


def test_an_event_without_the_list_names_its_own_order():
    district, rules = DISTRICT, RULES
    lead = late(district, LEAD, "01", "lead", datetime(2026, 10, 13, 17, 30, tzinfo=SH), 2 * 86400)
    event = escalated(district, "district_leader", lead).model_copy(update={"late_orders": []})
    planned = plan_notifications(subjects.APPEAL_ESCALATED, event, district, rules, NOW, contact=CONTACT)
    sms = next(p for p in planned if p.channel == "sms")
    assert f"超期单位：{district.unit(LEAD).name}（超期2天）" in sms.text


def test_a_units_overdue_notice_stays_its_own():
    district, rules = DISTRICT, RULES
    lead = late(district, LEAD, "01", "lead", datetime(2026, 10, 13, 17, 30, tzinfo=SH), 60)
    event = escalated(district, "overdue", lead).model_copy(update={"late_orders": []})
    planned = plan_notifications(subjects.APPEAL_ESCALATED, event, district, rules, NOW, contact=CONTACT)
    assert {p.template for p in planned} == {"overdue"}
    assert not {p.recipient_role for p in planned} & {"district_leader", "supervision_office"}
    assert all(lead.order_id in p.text for p in planned if p.lang == "zh")


def test_the_english_leader_message_names_the_late_units_too():
    district, rules = DISTRICT, RULES
    event = escalated(district, "district_leader", *two_late(district))
    facts = facts_of(subjects.APPEAL_ESCALATED, event)
    variables = template_variables(subjects.APPEAL_ESCALATED, facts, district, "en")
    text = render(rules.templates["leader_overdue"].en.text, variables)
    assert f"Late units: {district.unit(LEAD).name} (lead, 2 d overdue); {district.unit(CO).name} (co-handling, 1 d overdue)" in text
