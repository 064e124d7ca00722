"""Intake's rules, pure."""

from __future__ import annotations

from datetime import UTC, datetime

from services.intake import domain
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
