"""Intake's rules, pure."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake import domain
from services.intake.duplicates import Candidate, DuplicateSettings, find_master, match_batch
from shared.contracts import (
    AppealKind,
    AppealRejected,
    Channel,
    DeadlineSet,
    EventRecord,
    HotlineCall,
    OrderSigned,
    ReceptionRecord,
)


def test_an_appeal_is_identified_by_channel_and_source_id_not_by_message_id():
    call = HotlineCall.model_validate({"call_id": "C-9", "received_at": "2026-11-26T09:30:00+08:00",
                                       "caller_phone": "13812345678", "content": "停电"})
    a, b = domain.from_hotline(call), domain.from_hotline(call)
    assert (a.channel, a.source_id) == (b.channel, b.source_id) == (Channel.hotline, "C-9")
    assert a.source_ref == "hotline:C-9"


def test_a_reception_record_keeps_its_own_channel():
    rec = ReceptionRecord.model_validate({"record_id": "R-1", "received_at": "2026-11-26T09:30:00+08:00",
                                          "channel": "chief_rep", "officer": "首席代表", "content": "用地问题",
                                          "contact_phone": "028-85551234"})
    assert domain.from_reception(rec).channel == Channel.chief_rep


def test_an_event_registers_one_appeal_per_item_received_on_the_event_day():
    record = EventRecord.model_validate({
        "event_id": "E-2019-06-24", "kind": "sub", "date": "2019-06-24", "organizer_unit": "区行政审批局",
        "items": [{"item_no": 1, "enterprise_name": "通威太阳能(成都)有限公司", "content": "招聘成本高",
                   "proposed_unit": "区人社局", "proposed_deadline_days": 10},
                  {"item_no": 2, "enterprise_name": "甲公司", "content": "用电"}]})
    appeals = domain.from_event(record)
    assert [a.source_id for a in appeals] == ["E-2019-06-24#1", "E-2019-06-24#2"]
    assert appeals[0].received_at.isoformat() == "2019-06-24T00:00:00+08:00"
    assert appeals[0].proposal.proposed_unit == "区人社局"
    assert appeals[0].proposal.proposed_deadline_days == 10
    assert appeals[0].kind == AppealKind.appeal


def test_the_status_follows_the_latest_status_bearing_event():
    assert domain.status_of([]) == "registered"
    assert domain.status_of(["ct.appeal.registered", "ct.order.dispatched", "ct.deadline.set"]) == "dispatched"
    assert domain.status_of(["ct.appeal.registered", "ct.order.dispatched", "ct.order.signed",
                             "ct.order.replied", "ct.appeal.closed", "ct.notify.delivered"]) == "closed"


def test_events_without_an_appeal_do_not_enter_a_timeline():
    rejected = AppealRejected.model_validate({"occurred_at": "2026-11-26T09:00:00+08:00",
                                              "subject": "ct.in.appeal.hotline", "errors": []})
    assert domain.timeline_entry("ct.appeal.rejected", rejected, "m1") is None
    signed = OrderSigned.model_validate({
        "event_id": "e1", "appeal_id": "CT-1", "occurred_at": "2026-11-26T09:00:00+08:00",
        "actor": "李四", "unit": "区人社局", "unit_code": "hrss", "order_id": "WO-1"})
    entry = domain.timeline_entry("ct.order.signed", signed, None)
    assert entry.what == "区人社局 signed for order WO-1"
    assert entry.occurred_at == datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    assert (entry.event_id, entry.appeal_id, entry.actor) == ("e1", "CT-1", "李四")


def test_a_timeline_entry_falls_back_to_the_message_id_and_keeps_times_as_sent():
    due = DeadlineSet.model_validate({
        "appeal_id": "CT-1", "occurred_at": "2026-11-26T09:00:00+08:00", "order_id": "WO-1",
        "unit_code": "hrss", "clock": "handling", "due_at": "2026-12-03T17:30:00+08:00"})
    entry = domain.timeline_entry("ct.deadline.set", due, "msg-7")
    assert entry.event_id == "msg-7"
    assert entry.actor == "system"
    assert entry.what == "handling deadline for hrss: 2026-12-03T17:30:00+08:00"
    assert entry.payload is due


def test_every_inbound_appeal_model_has_a_source_id_field_and_registers_appeals():
    call = HotlineCall.model_validate({"call_id": "C-9", "received_at": "2026-11-26T09:30:00+08:00",
                                       "caller_phone": "13812345678", "content": "停电"})
    assert [a.source_id for a in domain.appeals_from(call)] == ["C-9"]
    assert getattr(call, domain.SOURCE_ID_FIELD[HotlineCall]) == "C-9"


# --- duplicates: the batch finds what comparing each appeal with all before it finds -----------------------

_TEXTS = ("门口路灯坏了，晚上很黑，请尽快修。", "门口路灯坏了一个多月还没修，晚上员工下班太黑。", "增值税留抵退税申请已提交一个月。",
          "留抵退税一个月了还没到账，请加快。", "园区停水三天，水压不足影响生产。", "停水三天了，水压不足。")
_T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


def _candidates(draw_list, prefix: str) -> list[Candidate]:
    return [Candidate(appeal_id=f"{prefix}{i}", received_at=_T0 + timedelta(hours=h), content=_TEXTS[t],
                      kind=kind, enterprise_uscc=uscc, contact_phone=phone, category=category, master_appeal_id=master)
            for i, (h, t, kind, uscc, phone, category, master) in enumerate(draw_list)]


_CANDIDATE = st.tuples(st.integers(-800, 48), st.integers(0, len(_TEXTS) - 1), st.sampled_from(["appeal", "consultation"]),
                       st.sampled_from([None, "U1", "U2"]), st.sampled_from([None, "P1", "P2"]),
                       st.sampled_from([None, "城市管理", "税费"]), st.sampled_from([None, "E0", "E1", "N0"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(_CANDIDATE, max_size=8), st.lists(_CANDIDATE, min_size=1, max_size=12))
def test_a_batch_finds_the_masters_that_comparing_each_new_appeal_with_every_appeal_before_it_finds(earlier, new):
    earlier_c = [dataclasses.replace(c, master_appeal_id=None if c.master_appeal_id and c.master_appeal_id[0] == "N"
                                     else c.master_appeal_id) for c in _candidates(earlier, "E")]
    new_c = [dataclasses.replace(c, master_appeal_id=None) for c in _candidates(new, "N")]
    rule = DuplicateSettings(min_similarity=0.2)
    # the rule as the module states it: each new appeal, oldest first, against everything known before it
    known = {c.appeal_id: c for c in earlier_c}
    expected = {}
    for appeal in sorted(new_c, key=lambda c: (c.received_at, c.appeal_id)):
        match = find_master(appeal, list(known.values()), rule)
        if match is not None:
            expected[appeal.appeal_id] = match
        known[appeal.appeal_id] = dataclasses.replace(appeal, master_appeal_id=match and match.master_appeal_id)
    assert match_batch(new_c, earlier_c, rule) == expected
