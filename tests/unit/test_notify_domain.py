"""Notify's rules: who hears what, in which language, how long an SMS may be, when it may go.

Recipients come from the district configuration (``shared/district.yaml``); the
expectations are read from it rather than copied, so the tests follow the file.
"""

from __future__ import annotations

import ast
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notify.config import DEFAULT_RULES_PATH, load_rules
from services.notify.domain import (
    ELLIPSIS,
    RATING_INSTRUCTIONS,
    TEMPLATE_VARIABLES,
    DeliveryPolicy,
    EnterpriseContact,
    NotifyRules,
    PlannedNotification,
    QuietWindow,
    RulesError,
    TemplateKind,
    after_attempt,
    backoff,
    mask_address,
    next_send_time,
    notification_id,
    parse_quiet_hours,
    parse_rating_reply,
    plan_notifications,
    rating_invitation_text,
    render,
    rules_from_document,
)
from shared.contracts import events as ev
from shared.contracts import subjects as subj
from shared.contracts.common import Rating
from shared.district import Contact, District, Unit, UnitKind, load_district

SH = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 11, 26, 10, 0, tzinfo=SH)  # a Thursday morning
NIGHT = datetime(2026, 11, 26, 23, 0, tzinfo=SH)
ENTERPRISE_PHONE = "13912345678"
CONTACT = EnterpriseContact(name="潘星", phone=ENTERPRISE_PHONE, lang="zh", enterprise_name="成都川开电气有限公司")


# --- fixtures and builders -----------------------------------------------------------


@pytest.fixture(scope="module")
def district() -> District:
    return load_district()


@pytest.fixture(scope="module")
def rules() -> NotifyRules:
    return load_rules(env={})


@pytest.fixture(scope="module")
def unit(district: District) -> Unit:
    """A handling unit (not the lead unit or the supervision office) with liaisons and a group robot."""
    return next(
        u
        for u in district.units
        if u.kind not in (UnitKind.lead, UnitKind.supervision) and u.liaisons and u.wecom_webhook and u.head
    )


def event(model: type, **fields):
    """An event as the bus hands it over: its contract model."""
    fields.setdefault("event_id", "evt-0001")
    fields.setdefault("occurred_at", "2026-11-26T10:00:00+08:00")
    fields.setdefault("appeal_id", "CT-20261126-0001")
    return model(**fields)


def order_fields(unit: Unit, **more) -> dict:
    return {"order_id": "WO-20261126-0001-1", "unit_code": unit.unit_code, "unit": unit.name, **more}


def registered(**more) -> ev.AppealRegistered:
    fields = dict(
        channel="hotline",
        source_id="call-1",
        enterprise={"name": "成都川开电气有限公司"},
        contact={"name": "潘星", "phone": ENTERPRISE_PHONE},
        content="园区道路缺少左转车道，货车进出困难，上下班高峰常有违停。",
        kind="appeal",
        received_at="2026-11-26T09:30:00+08:00",
    )
    fields.update(more)
    return event(ev.AppealRegistered, **fields)


def replied(unit: Unit, reply: str = "已在园区路口增设左转车道并加强违停巡查。", **more) -> ev.OrderReplied:
    return event(ev.OrderReplied, **order_fields(unit), reply=reply, resolved=True, **more)


def escalated(unit: Unit, level: str, **more) -> ev.AppealEscalated:
    return event(
        ev.AppealEscalated,
        **order_fields(unit),
        level=level,
        reason="办理时限已过仍未答复",
        due_at="2026-11-24T17:30:00+08:00",
        overdue_seconds=2 * 86400 + 3 * 3600,
        summary="园区道路缺少左转车道，货车进出困难",
        **more,
    )


def plan(subject: str, evt, district: District, rules: NotifyRules, now: datetime = DAY, **kw) -> list[PlannedNotification]:
    return plan_notifications(subject, evt, district, rules, now, **kw)


def addresses(planned: list[PlannedNotification]) -> set[tuple[str, str, str]]:
    return {(p.recipient_role, p.channel, p.address) for p in planned}


def unit_addresses(role: str, unit: Unit, channels: tuple[str, ...]) -> set[tuple[str, str, str]]:
    out = set()
    for c in unit.liaisons or ([unit.head] if unit.head else []):
        if "sms" in channels and c.phone:
            out.add((role, "sms", c.phone))
        if "email" in channels and c.email:
            out.add((role, "email", c.email))
    if "wecom" in channels and unit.wecom_webhook:
        out.add((role, "wecom", unit.wecom_webhook))
    return out


# --- the rules file ----------------------------------------------------------------------


def test_default_rules_file_validates_with_zh_and_en_for_every_template(rules: NotifyRules):
    assert rules.templates
    for name, template in rules.templates.items():
        for lang in ("zh", "en"):
            words = template.text_for(lang)
            assert words.text and words.subject, (name, lang)
    assert {r.template for r in rules.rules} <= set(rules.templates)
    assert rules.quiet_hours.parsed == QuietWindow(datetime(1, 1, 1, 22).time(), datetime(1, 1, 1, 8).time())


def test_rules_path_comes_from_notify_rules(tmp_path: Path):
    custom = tmp_path / "rules.yaml"
    custom.write_text(
        "rules:\n"
        "  - {subject: ct.appeal.registered, recipients: [enterprise], channels: [sms], template: hello}\n"
        "templates:\n"
        "  hello:\n"
        "    kind: receipt\n"
        "    zh: {subject: '你好', text: '收到{appeal_id}'}\n"
        "    en: {subject: 'Hello', text: 'Got {appeal_id}'}\n",
        encoding="utf-8",
    )
    loaded = load_rules(env={"NOTIFY_RULES": str(custom)})
    assert list(loaded.templates) == ["hello"]


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (lambda raw: raw["rules"][0].update(template="nope"), "unknown template 'nope'"),
        (lambda raw: raw["templates"]["receipt"]["zh"].update(text="编号{appeal_no}"), "unknown placeholder {appeal_no}"),
        (lambda raw: raw["templates"]["receipt"]["zh"].update(text="编号{appeal_id!r}"), "no format spec"),
        (lambda raw: raw["rules"][0].update(channels=["email"]), "SMS only"),
        (lambda raw: raw["templates"]["receipt"]["zh"].update(text="【企业咖啡时】" + "很长的固定文字" * 40 + "{appeal_id}"), "sms.max_length"),
        (lambda raw: raw["templates"]["reply_rating_invitation"]["en"].update(text="{reply}"), "rating_instructions"),
        (lambda raw: raw["quiet_hours"].update(window="22-8"), "HH:MM-HH:MM"),
        (lambda raw: raw["sms"].update(shrink_order=["appeal_id"]), "never shortened"),
    ],
)
def test_an_invalid_rules_file_is_refused_naming_the_field(tmp_path: Path, edit, complaint: str):
    import yaml

    raw = yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    edit(raw)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RulesError, match="bad.yaml") as info:
        load_rules(bad, env={})
    assert complaint in str(info.value)


# --- the enterprise ------------------------------------------------------------------------


def test_receipt_goes_to_the_enterprise_at_once_with_the_appeal_id_even_at_night(district, rules):
    planned = plan(subj.APPEAL_REGISTERED, registered(), district, rules, now=NIGHT)
    assert len(planned) == 1
    p = planned[0]
    assert (p.recipient_role, p.channel, p.address, p.template, p.lang) == ("enterprise", "sms", ENTERPRISE_PHONE, "receipt", "zh")
    assert "CT-20261126-0001" in p.text and p.text.startswith("【企业咖啡时】")
    assert p.not_before == NIGHT
    assert p.cause_event_id == "evt-0001" and p.appeal_id == "CT-20261126-0001"


def test_receipt_in_english_for_a_contact_who_prefers_english(district, rules):
    planned = plan(subj.APPEAL_REGISTERED, registered(), district, rules, contact=EnterpriseContact(lang="en"))
    assert planned[0].lang == "en"
    assert planned[0].text.startswith("[Coffee Time]") and "CT-20261126-0001" in planned[0].text


def test_reply_reaches_the_enterprise_with_the_rating_invitation(district, rules, unit):
    planned = plan(subj.ORDER_REPLIED, replied(unit), district, rules, contact=CONTACT)
    assert addresses(planned) == {("enterprise", "sms", ENTERPRISE_PHONE)}
    text = planned[0].text
    assert "已在园区路口增设左转车道" in text and unit.name in text and "CT-20261126-0001" in text
    assert "回复1满意，2基本满意，3不满意" in text
    assert planned[0].template_kind == TemplateKind.rating_invitation


def test_reply_prefers_the_contact_phone_the_event_names(district, rules, unit):
    planned = plan(subj.ORDER_REPLIED, replied(unit, contact_phone="13700001111"), district, rules, contact=CONTACT)
    assert [p.address for p in planned] == ["13700001111"]


def test_reply_without_any_enterprise_phone_sends_nothing(district, rules, unit):
    assert plan(subj.ORDER_REPLIED, replied(unit), district, rules) == []


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_long_reply_is_shortened_but_keeps_the_appeal_id_and_the_rating_digits(district, rules, unit, lang):
    long_reply = "经现场勘查，" + "我单位已协调规划、交警、城管等部门多次会商并制定整改方案，" * 20 + "最终完成。"
    planned = plan(subj.ORDER_REPLIED, replied(unit, reply=long_reply), district, rules, contact=CONTACT.model_copy(update={"lang": lang}))
    text = planned[0].text
    assert len(text) <= rules.sms.max_length
    assert "CT-20261126-0001" in text
    assert RATING_INSTRUCTIONS[lang] in text
    assert ELLIPSIS in text
    assert "经现场勘查" in text  # the start of the reply survives


def test_sms_length_is_configurable(district, rules, unit):
    short = load_rules(env={"SMS_MAX_LENGTH": "170"})
    for lang in ("zh", "en"):
        planned = plan(subj.ORDER_REPLIED, replied(unit, reply="答复内容" * 80), district, short, contact=CONTACT.model_copy(update={"lang": lang}))
        assert len(planned[0].text) <= 170
        assert RATING_INSTRUCTIONS[lang] in planned[0].text


def test_a_length_no_template_can_keep_is_refused_at_load():
    with pytest.raises(RulesError, match="more than sms.max_length 90"):
        load_rules(env={"SMS_MAX_LENGTH": "90"})


def test_reopening_reaches_the_enterprise(district, rules, unit):
    evt = event(ev.AppealReopened, order_id="WO-2", unit_code=unit.unit_code, unit=unit.name, reopen_count=1)
    planned = plan(subj.APPEAL_REOPENED, evt, district, rules, contact=CONTACT, now=NIGHT)
    assert addresses(planned) == {("enterprise", "sms", ENTERPRISE_PHONE)}
    assert "重新交" in planned[0].text and unit.name in planned[0].text
    assert planned[0].not_before == NIGHT  # the enterprise just caused it by rating 3


def test_closing_reaches_the_enterprise_with_the_outcome(district, rules):
    evt = event(ev.AppealClosed, outcome="basically_satisfied")
    planned = plan(subj.APPEAL_CLOSED, evt, district, rules, contact=CONTACT)
    assert addresses(planned) == {("enterprise", "sms", ENTERPRISE_PHONE)}
    assert planned[0].template == "closed" and "已办结（基本满意）" in planned[0].text


def test_a_consultation_answered_at_once_sends_the_answer(district, rules):
    evt = event(ev.AppealClosed, outcome="answered", answer="可登录天府通办办理。")
    planned = plan(subj.APPEAL_CLOSED, evt, district, rules, contact=CONTACT, now=NIGHT)
    assert [p.template for p in planned] == ["consultation_answered"]
    assert "可登录天府通办办理。" in planned[0].text and planned[0].not_before == NIGHT


# --- the handling unit ---------------------------------------------------------------------------


def test_a_new_order_reaches_every_liaison_by_sms_and_email_and_the_unit_robot(district, rules, unit):
    evt = event(
        ev.OrderDispatched,
        **order_fields(unit),
        role="lead",
        category="交通出行",
        received_at="2026-11-26T09:30:00+08:00",
        deadline_days=5,
        sign_hours=2.0,
        summary="园区道路缺少左转车道",
        enterprise_name="成都川开电气有限公司",
    )
    planned = plan(subj.ORDER_DISPATCHED, evt, district, rules)
    assert addresses(planned) == unit_addresses("liaisons", unit, ("sms", "email", "wecom"))
    sms = next(p for p in planned if p.channel == "sms")
    assert "WO-20261126-0001-1" in sms.text and "5个工作日" in sms.text and "2个工作小时" in sms.text
    assert "成都川开电气有限公司" in sms.text and "主办" in sms.text
    email = next(p for p in planned if p.channel == "email")
    assert email.subject and "WO-20261126-0001-1" in email.subject
    assert all(p.subject is None for p in planned if p.channel != "email")


def test_an_urgent_order_is_marked_urgent(district, rules, unit):
    evt = event(
        ev.OrderDispatched, **order_fields(unit), role="co", category="交通出行", received_at="2026-11-26T09:30:00+08:00",
        deadline_days=1, sign_hours=1, urgent=True,
    )
    planned = plan(subj.ORDER_DISPATCHED, evt, district, rules)
    assert all(p.urgent for p in planned)
    assert all("【紧急】" in p.text and "协办" in p.text for p in planned if p.lang == "zh")


def test_a_refused_return_reaches_the_liaisons_and_an_accepted_one_nobody(district, rules, unit):
    refused = plan(subj.ORDER_RETURN_DECIDED, event(ev.ReturnDecided, **order_fields(unit), accepted=False), district, rules)
    assert addresses(refused) == unit_addresses("liaisons", unit, ("sms", "wecom"))
    assert all("退单申请未获同意" in p.text for p in refused if p.lang == "zh")
    accepted = plan(subj.ORDER_RETURN_DECIDED, event(ev.ReturnDecided, **order_fields(unit), accepted=True), district, rules)
    assert accepted == []


def test_a_deadline_warning_reaches_the_liaisons_with_the_due_time(district, rules, unit):
    evt = event(ev.DeadlineWarning, **order_fields(unit), clock="handling", due_at="2026-11-27T09:30:00Z", level="warning_1d")
    planned = plan(subj.DEADLINE_WARNING, evt, district, rules, now=NIGHT)
    assert addresses(planned) == unit_addresses("liaisons", unit, ("sms", "wecom"))
    zh = next(p for p in planned if p.channel == "sms" and p.lang == "zh")
    assert "11月27日 17:30" in zh.text and "办理时限" in zh.text  # shown in Asia/Shanghai
    assert all(p.not_before == NIGHT for p in planned)  # work notices are not held back


def test_overdue_reaches_the_liaisons_the_unit_head_and_the_lead_unit(district, rules, unit):
    planned = plan(subj.APPEAL_ESCALATED, escalated(unit, "overdue"), district, rules)
    expected = (
        unit_addresses("liaisons", unit, ("sms", "email", "wecom"))
        | {("unit_head", "sms", unit.head.phone), ("unit_head", "email", unit.head.email)}
        | unit_addresses("lead_unit", district.lead_unit, ("sms", "email", "wecom"))
    )
    assert addresses(planned) == expected
    sms = next(p for p in planned if p.channel == "sms" and p.lang == "zh")
    assert "超期2天3小时" in sms.text and "督办" in sms.text
    assert not any(p.recipient_role in ("district_leader", "supervision_office") for p in planned)


# --- the lead unit -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "model", "fields", "words"),
    [
        (subj.ORDER_RETURNED, ev.OrderReturned, {"reason": "不属于本单位职责", "return_count": 1}, "申请退回"),
        (subj.ORDER_EXTENSION_REQUESTED, ev.ExtensionRequested, {"days": 5, "reason": "需协调供电公司"}, "延期5个工作日"),
    ],
)
def test_the_lead_unit_hears_returns_and_extension_requests(district, rules, unit, subject, model, fields, words):
    planned = plan(subject, event(model, **order_fields(unit), **fields), district, rules)
    assert addresses(planned) == unit_addresses("lead_unit", district.lead_unit, ("wecom", "email"))
    assert all(words in p.text and fields["reason"] in p.text for p in planned if p.lang == "zh")


def test_the_lead_unit_hears_the_manual_queue(district, rules):
    evt = event(ev.AppealQueued, reasons=["交警大队 2.0 vs 城管局 1.5"], summary="路口乱停车")
    planned = plan(subj.APPEAL_QUEUED, evt, district, rules, contact=CONTACT)
    assert addresses(planned) == unit_addresses("lead_unit", district.lead_unit, ("wecom", "email"))
    assert all("人工派单" in p.text and "路口乱停车" in p.text for p in planned)


# --- district leaders and the supervision office ----------------------------------------------------------


def test_a_leader_escalation_goes_to_the_leader_the_event_names_with_the_summary(district, rules, unit):
    leader = district.leaders[-1]
    evt = escalated(unit, "district_leader", targets=[{"role": "district_leader", "name": leader.name}])
    planned = plan(subj.APPEAL_ESCALATED, evt, district, rules)
    assert addresses(planned) == {
        ("district_leader", ch, addr)
        for ch, addr in (("sms", leader.contact.phone), ("email", leader.contact.email))
        if addr
    }
    assert all("园区道路缺少左转车道" in p.text and "提请您协调（超期未办结）" in p.text for p in planned)


def test_a_difficult_appeal_goes_to_the_leader_for_its_category(district, rules, unit):
    category = next(c for c in district.categories if district.leader_for(c.name) and district.leader_for(c.name).categories)
    leader = district.leader_for(category.name)
    planned = plan(subj.APPEAL_ESCALATED, escalated(unit, "difficult"), district, rules, contact=CONTACT.model_copy(update={"category": category.name}))
    assert {p.address for p in planned} == {a for a in (leader.contact.phone, leader.contact.email) if a}
    assert all(p.recipient_role == "district_leader" for p in planned)


def test_a_supervision_escalation_goes_to_the_supervision_office(district, rules, unit):
    planned = plan(subj.APPEAL_ESCALATED, escalated(unit, "supervision"), district, rules)
    assert addresses(planned) == unit_addresses("supervision_office", district.supervision_office, ("email", "wecom"))
    assert all("通报" in p.text for p in planned if p.lang == "zh")


def test_the_monthly_list_goes_to_the_supervision_office_by_email(district, rules, unit):
    from services.notify.domain import MONTHLY_LIST_SUBJECT

    # how late an item is: from its missed deadline to its public notice (通报)
    evt = ev.MonthlyList(
        event_id="month-2026-11",
        occurred_at="2026-12-01T09:00:00+08:00",
        month="2026-11",
        items=[
            ev.MonthlyListItem(appeal_id="CT-1", order_id="WO-1", unit_code=unit.unit_code, unit=unit.name,
                               summary="路口违停", due_at="2026-11-17T17:30:00+08:00",
                               noticed_at="2026-11-20T17:30:00+08:00", level="supervision"),
            ev.MonthlyListItem(appeal_id="CT-2", order_id="WO-2", unit_code=unit.unit_code, unit=unit.name,
                               due_at="2026-11-20T17:30:00+08:00", noticed_at="2026-11-20T17:30:00+08:00",
                               level="supervision"),
        ],
    )
    planned = plan(MONTHLY_LIST_SUBJECT, evt, district, rules)
    assert addresses(planned) == unit_addresses("supervision_office", district.supervision_office, ("email",))
    mail = planned[0]
    assert mail.appeal_id is None and "2026-11" in mail.subject and "（2件）" in mail.subject
    assert "1. CT-1" in mail.text and "超期3天" in mail.text and "2. CT-2" in mail.text


def test_events_without_a_rule_tell_nobody(district, rules, unit):
    assert plan(subj.ORDER_SIGNED, event(ev.OrderSigned, **order_fields(unit)), district, rules) == []


# --- languages, duplicates, identity ------------------------------------------------------------------------


def test_an_english_liaison_reads_english_and_the_group_robot_stays_chinese(district, rules, unit):
    custom = district.model_copy(deep=True)
    target = custom.unit(unit.unit_code)
    target.liaisons = [
        Contact(name="Grace Chen", phone="13800009999", email="grace@example.gov.cn", lang="en"),
        Contact(name="张伟", phone="13800008888", lang="zh"),
    ]
    planned = plan(subj.ORDER_RETURN_DECIDED, event(ev.ReturnDecided, **order_fields(unit), accepted=False), custom, rules)
    by_address = {p.address: p for p in planned}
    assert by_address["13800009999"].lang == "en" and "refused" in by_address["13800009999"].text
    assert by_address["13800008888"].lang == "zh" and "未获同意" in by_address["13800008888"].text
    assert by_address[target.wecom_webhook].lang == "zh"


def test_one_message_per_channel_and_address_when_the_lead_unit_handles_the_order(district, rules):
    lead = district.lead_unit
    planned = plan(subj.APPEAL_ESCALATED, escalated(lead, "overdue"), district, rules)
    keys = [(p.channel, p.address) for p in planned]
    assert len(keys) == len(set(keys))
    assert len({p.notification_id for p in planned}) == len(planned)
    # the lead unit's liaisons appear once, in their first role
    assert {p.recipient_role for p in planned if p.address == lead.wecom_webhook} == {"liaisons"}


def test_planning_the_same_event_twice_gives_the_same_notification_ids(district, rules, unit):
    first = plan(subj.APPEAL_ESCALATED, escalated(unit, "overdue"), district, rules, now=DAY)
    again = plan(subj.APPEAL_ESCALATED, escalated(unit, "overdue"), district, rules, now=DAY + timedelta(hours=3))
    assert [p.notification_id for p in first] == [p.notification_id for p in again]
    other = plan(subj.APPEAL_ESCALATED, escalated(unit, "overdue", event_id="evt-0002"), district, rules)
    assert not {p.notification_id for p in first} & {p.notification_id for p in other}


def test_notification_id_is_a_stable_short_hash_of_event_recipient_and_channel():
    nid = notification_id("evt-1", "13800000000", "sms")
    assert nid == notification_id("evt-1", "13800000000", "sms")
    assert len(nid) == 32 and int(nid, 16) >= 0
    assert nid != notification_id("evt-2", "13800000000", "sms")
    assert nid != notification_id("evt-1", "13800000001", "sms")
    assert nid != notification_id("evt-1", "13800000000", "email")
    with pytest.raises(ValueError):
        notification_id("", "13800000000", "sms")


def test_an_event_without_an_id_is_refused(district, rules):
    evt = registered(event_id="")
    with pytest.raises(ValueError, match="event_id"):
        plan(subj.APPEAL_REGISTERED, evt, district, rules)


def test_addresses_are_masked_for_logs():
    assert mask_address("sms", "13812345678") == "138****5678"
    assert mask_address("email", "zhaomin@example.gov.cn") == "z*****n@example.gov.cn"
    masked = mask_address("wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4")
    assert "693a****" in masked and "7xxx" not in masked


# --- quiet hours ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local_now", "expected"),
    [
        (datetime(2026, 11, 26, 23, 0, tzinfo=SH), datetime(2026, 11, 27, 8, 0, tzinfo=SH)),
        (datetime(2026, 11, 26, 22, 0, tzinfo=SH), datetime(2026, 11, 27, 8, 0, tzinfo=SH)),
        (datetime(2026, 11, 27, 1, 30, tzinfo=SH), datetime(2026, 11, 27, 8, 0, tzinfo=SH)),
        (datetime(2026, 11, 27, 7, 59, tzinfo=SH), datetime(2026, 11, 27, 8, 0, tzinfo=SH)),
        (datetime(2026, 12, 31, 23, 30, tzinfo=SH), datetime(2027, 1, 1, 8, 0, tzinfo=SH)),
        (datetime(2026, 11, 27, 8, 0, tzinfo=SH), None),
        (datetime(2026, 11, 26, 21, 59, tzinfo=SH), None),
        (datetime(2026, 11, 26, 12, 0, tzinfo=SH), None),
    ],
)
def test_a_rating_invitation_in_quiet_hours_waits_until_eight(local_now, expected):
    got = next_send_time(local_now, "22:00-08:00", "rating_invitation", urgent=False)
    assert got == (expected or local_now)


def test_quiet_hours_are_read_in_shanghai_whatever_the_zone_of_now():
    utc_night = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    got = next_send_time(utc_night, "22:00-08:00", TemplateKind.closing, urgent=False)
    assert got == datetime(2026, 11, 27, 8, 0, tzinfo=SH)
    assert got.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize("kind", ["receipt", "answer", "reopening", "work_notice", "escalation"])
def test_messages_the_enterprise_just_caused_and_work_notices_go_at_once(kind):
    assert next_send_time(NIGHT, "22:00-08:00", kind, urgent=False) == NIGHT


@pytest.mark.parametrize("kind", ["rating_invitation", "reminder", "closing"])
def test_anything_about_an_urgent_appeal_goes_at_once(kind):
    assert next_send_time(NIGHT, "22:00-08:00", kind, urgent=True) == NIGHT


def test_a_same_day_window_defers_to_its_end():
    noon = datetime(2026, 11, 26, 12, 30, tzinfo=SH)
    assert next_send_time(noon, "12:00-14:00", "reminder", urgent=False) == datetime(2026, 11, 26, 14, 0, tzinfo=SH)


@pytest.mark.parametrize("window", ["", "  ", None])
def test_empty_quiet_hours_send_everything_at_once(window):
    assert next_send_time(NIGHT, window, "rating_invitation", urgent=False) == NIGHT


def test_empty_quiet_hours_env_turns_deferral_off(district, unit):
    rules = load_rules(env={"QUIET_HOURS": ""})
    assert rules.quiet_hours.parsed is None
    planned = plan(subj.ORDER_REPLIED, replied(unit), district, rules, now=NIGHT, contact=CONTACT)
    assert planned[0].not_before == NIGHT


def test_quiet_hours_env_overrides_the_file(district, unit):
    rules = load_rules(env={"QUIET_HOURS": "21:00-07:30"})
    nine_pm = datetime(2026, 11, 26, 21, 15, tzinfo=SH)
    planned = plan(subj.ORDER_REPLIED, replied(unit), district, rules, now=nine_pm, contact=CONTACT)
    assert planned[0].not_before == datetime(2026, 11, 27, 7, 30, tzinfo=SH)


def test_a_night_reply_waits_until_eight_unless_the_appeal_is_urgent(district, rules, unit):
    planned = plan(subj.ORDER_REPLIED, replied(unit), district, rules, now=NIGHT, contact=CONTACT)
    assert planned[0].not_before == datetime(2026, 11, 27, 8, 0, tzinfo=SH)
    urgent = plan(subj.ORDER_REPLIED, replied(unit), district, rules, now=NIGHT, contact=CONTACT, urgent=True)
    assert urgent[0].not_before == NIGHT and urgent[0].urgent


@pytest.mark.parametrize("bad", ["22:00", "22:00-08", "25:00-08:00", "22:00-22:00", "ten-eight"])
def test_malformed_quiet_hours_are_refused(bad):
    with pytest.raises(ValueError):
        parse_quiet_hours(bad)


def test_now_must_carry_its_zone():
    with pytest.raises(ValueError):
        next_send_time(datetime(2026, 11, 26, 23, 0), "22:00-08:00", "closing", urgent=False)


# --- rating replies ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("1", Rating.satisfied),
        ("１", Rating.satisfied),
        (" 2 ", Rating.basically_satisfied),
        ("3", Rating.unsatisfied),
        ("３。", Rating.unsatisfied),
        ("满意", Rating.satisfied),
        ("非常满意！谢谢", Rating.satisfied),
        ("基本满意", Rating.basically_satisfied),
        ("不满意", Rating.unsatisfied),
        ("不太满意，路口还是堵", Rating.unsatisfied),
        ("3 不满意", Rating.unsatisfied),
        ("1满意", Rating.satisfied),
        ("2、基本满意", Rating.basically_satisfied),
        ("一", Rating.satisfied),
        ("Satisfied", Rating.satisfied),
        ("basically satisfied", Rating.basically_satisfied),
        ("not satisfied", Rating.unsatisfied),
        ("", None),
        ("   ", None),
        (None, None),
        ("4", None),
        ("12", None),
        ("0", None),
        ("1 不满意", None),
        ("满意 不满意", None),
        ("请给我回电话 13812345678", None),
        ("你好", None),
        ("TD", None),
    ],
)
def test_rating_replies_are_read(text, rating):
    assert parse_rating_reply(text) == rating


@given(st.text(max_size=60))
def test_rating_parser_never_raises(text):
    result = parse_rating_reply(text)
    assert result is None or isinstance(result, Rating)


def test_the_rating_invitation_text():
    assert rating_invitation_text() == "回复1满意，2基本满意，3不满意"
    assert rating_invitation_text("en") == "reply 1 satisfied, 2 basically satisfied, 3 unsatisfied"


# --- rendering and back-off --------------------------------------------------------------------------------


def test_render_fills_placeholders_and_leaves_missing_ones_empty():
    assert render("诉求{appeal_id}：{reply}", {"appeal_id": "CT-1"}) == "诉求CT-1："
    assert set(TEMPLATE_VARIABLES) >= {"appeal_id", "enterprise", "unit", "deadline", "reply"}


def test_render_shortens_the_first_shrinkable_variable_to_fit():
    text = render("编号{appeal_id}，{summary}。{rating_instructions}",
                  {"appeal_id": "CT-1", "summary": "很长的内容" * 30, "rating_instructions": RATING_INSTRUCTIONS["zh"]},
                  max_length=50)
    assert len(text) == 50
    assert text.startswith("编号CT-1，很长的内容") and text.endswith("…。回复1满意，2基本满意，3不满意")


@given(attempt=st.integers(min_value=1, max_value=200), base=st.floats(0.01, 10), cap=st.floats(0.01, 3600), seed=st.integers())
def test_backoff_stays_between_half_and_the_full_capped_ceiling(attempt, base, cap, seed):
    delay = backoff(attempt, base, cap, rng=random.Random(seed))
    ceiling = min(cap, base * 2 ** min(attempt - 1, 64))
    assert ceiling / 2 - 1e-9 <= delay <= ceiling + 1e-9


def test_backoff_grows_then_stops_at_the_cap():
    lowest = random.Random(0)
    lowest.random = lambda: 0.0  # type: ignore[method-assign]
    assert [backoff(a, 1.0, 10.0, rng=lowest) for a in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    highest = random.Random(0)
    highest.random = lambda: 1.0  # type: ignore[method-assign]
    assert [backoff(a, 1.0, 10.0, rng=highest) for a in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    with pytest.raises(ValueError):
        backoff(0, 1.0, 10.0, rng=random.Random(0))


def test_delivery_policy_max_attempts_is_configurable():
    assert load_rules(env={"NOTIFY_MAX_ATTEMPTS": "3"}).delivery.max_attempts == 3
    policy = DeliveryPolicy(backoff_base_seconds=1, backoff_cap_seconds=4)
    assert 2.0 <= policy.delay(3, random.Random(1)) <= 4.0


def test_after_attempt_retries_with_the_jitter_it_is_given_and_gives_up_at_the_budget():
    policy = DeliveryPolicy(max_attempts=3, backoff_base_seconds=1, backoff_cap_seconds=4)
    first = after_attempt(1, DAY, policy, error="timeout", retryable=True, rng=random.Random(7))
    again = after_attempt(1, DAY, policy, error="timeout", retryable=True, rng=random.Random(7))
    assert first == again and first.result == "retried"
    assert DAY + timedelta(seconds=0.5) <= first.retry_at <= DAY + timedelta(seconds=1)
    last = after_attempt(3, DAY, policy, error="timeout", retryable=True, rng=random.Random(7))
    assert last.result == "failed" and "gave up after 3 attempts" in last.error
    assert after_attempt(1, DAY, policy, rng=random.Random(7)).result == "delivered"


# --- the rules document without its file, and the gaps planning reports ------------------------------------


def test_a_rules_document_already_loaded_validates_without_any_file():
    loaded = rules_from_document({
        "rules": [{"subject": "ct.appeal.registered", "recipients": ["enterprise"], "channels": ["sms"], "template": "hi"}],
        "templates": {"hi": {"kind": "receipt", "zh": {"subject": "你好", "text": "收到{appeal_id}"},
                             "en": {"subject": "Hello", "text": "Got {appeal_id}"}}},
    })
    assert list(loaded.templates) == ["hi"]
    with pytest.raises(RulesError, match="inline: expected a mapping"):
        rules_from_document(["not", "a", "mapping"], "inline")


def test_planning_tells_the_caller_of_a_role_it_cannot_reach_and_plans_the_rest(district, rules, unit):
    gaps: list[str] = []
    assert plan(subj.ORDER_REPLIED, replied(unit), district, rules, note=gaps.append) == []
    assert gaps == ["notify: ct.order.replied evt-0001: no sms address for role enterprise"]
    gaps.clear()
    stranger = event(ev.ReturnDecided, order_id="WO-9", unit_code="no-such-unit", unit="某单位", accepted=False)
    assert plan(subj.ORDER_RETURN_DECIDED, stranger, district, rules, note=gaps.append) == []
    assert "notify: unit no-such-unit is not in the district configuration" in gaps


def test_the_package_names_the_concepts_and_reading_files_lives_in_config_only():
    from services.notify import domain

    assert not hasattr(domain, "load_rules") and not hasattr(domain, "DEFAULT_RULES_PATH")
    assert domain.plan_notifications is plan_notifications and domain.subject_matches("ct.>", "ct.appeal.registered")


# --- the domain stays pure ------------------------------------------------------------------------------------

DOMAIN_PACKAGE = Path(__file__).resolve().parents[2] / "services" / "notify" / "domain"
IMPURE_MODULES = frozenset({
    "os", "sys", "io", "pathlib", "shutil", "logging", "random", "time", "yaml", "socket", "subprocess",
    "httpx", "asyncpg", "nats", "faststream",
})
IMPURE_CALLS = frozenset({"open", "getenv", "read_text", "read_bytes", "write_text", "write_bytes", "safe_load", "load"})


@pytest.mark.parametrize("path", sorted(DOMAIN_PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_the_domain_reads_no_file_no_environment_no_clock_and_draws_no_random_numbers(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in IMPURE_MODULES]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in IMPURE_MODULES:
                found.append(f"from {module} import ...")
            elif module.startswith("services") and not module.startswith("services.notify.domain"):
                found.append(f"from {module} import ... (outside the domain)")
        elif isinstance(node, ast.Attribute) and node.attr == "environ":
            found.append("os.environ")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in IMPURE_CALLS:
                found.append(f"{name}(...) at line {node.lineno}")
    assert found == [], f"{path.name} is not pure: {found}"
