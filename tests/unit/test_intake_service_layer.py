"""Intake's use cases (services/intake/services.py) with a fake unit of work: no database, no broker."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from services.intake import use_cases
from services.intake.domain import InvalidMessage, NewAppeal, RegisteredAppeal, TimelineEntry
from services.intake.duplicates import Candidate, DuplicateLink
from services.intake.use_cases import Received
from shared import clock
from shared.contracts import (
    AppealQuery,
    AppealRegistered,
    AppealRejected,
    EventRecord,
    FieldError,
    HotlineCall,
    MonthlyList,
    OrderSigned,
    subjects,
)
from tests.unit.fakes import FakeUnitOfWork

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


class FakeAppeals:
    """Appeals in a dict, unique by (channel, source id) as the table is."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], RegisteredAppeal] = {}
        self.event_records: dict[str, EventRecord] = {}
        self.fail = False
        self.new: dict[str, NewAppeal] = {}  # appeal_id → what was registered (credit code, hint...)
        self.links: dict[str, DuplicateLink] = {}
        self.candidate_queries = 0

    async def add_new(self, appeals: list[NewAppeal], msg_ids) -> dict[tuple[str, str], str]:  # noqa: ARG002
        if self.fail:
            raise ConnectionError("database went away")
        new = {}
        for a in appeals:
            key = (a.channel.value, a.source_id)
            if key not in self.rows:
                appeal_id = f"CT-20261126-{len(self.rows) + 1:06d}"
                self.rows[key] = RegisteredAppeal(
                    appeal_id=appeal_id, channel=a.channel.value, source_id=a.source_id, content=a.content,
                    kind=a.kind.value, received_at=a.received_at, registered_at=NOW,
                    enterprise_name=a.enterprise_name, contact_phone=a.contact_phone)
                new[key] = appeal_id
                self.new[appeal_id] = a
                self.links[appeal_id] = DuplicateLink(appeal_id, a.source_ref)
        return new

    async def duplicate_candidates(self, usccs, phones, start, end, category_of=None):
        self.candidate_queries += 1
        out = []
        for appeal_id, a in self.new.items():
            if (a.enterprise_uscc in usccs or a.contact_phone in phones) and start <= a.received_at <= end:
                link = self.links[appeal_id]
                hint = a.category_hint
                out.append(Candidate(appeal_id, a.received_at, a.content, a.kind.value, a.enterprise_uscc,
                                     a.contact_phone, (category_of(hint) if category_of and hint else None) or hint,
                                     link.master_appeal_id if link.split_at is None else None))
        return out

    async def link_duplicates(self, links):
        for appeal_id, master, similarity in links:
            self.links[appeal_id] = dataclasses.replace(self.links[appeal_id], master_appeal_id=master,
                                                        similarity=similarity)

    async def lock_link(self, appeal_id):
        return self.links.get(appeal_id)

    async def mark_split(self, appeal_id, at, by):
        self.links[appeal_id] = dataclasses.replace(self.links[appeal_id], split_at=at, split_by=by)

    async def keep_event_records(self, records) -> None:
        for r in records:
            self.event_records.setdefault(r.event_id, r)

    async def find(self, appeal_id=None, channel=None, source_id=None) -> RegisteredAppeal | None:
        if appeal_id:
            return next((a for a in self.rows.values() if a.appeal_id == appeal_id), None)
        return self.rows.get((channel, source_id))


class FakeTimeline:
    """Timeline entries in a dict, unique by event id as the table is."""

    def __init__(self) -> None:
        self.entries: dict[str, TimelineEntry] = {}

    async def add(self, entries) -> int:
        new = [e for e in entries if e.event_id not in self.entries]
        for e in new:
            self.entries[e.event_id] = e
        return len(new)

    async def of(self, appeal_id: str) -> list[TimelineEntry]:
        return sorted((e for e in self.entries.values() if e.appeal_id == appeal_id),
                      key=lambda e: (e.occurred_at, e.subject))


class FakeIntakeUnitOfWork(FakeUnitOfWork):
    def __init__(self) -> None:
        super().__init__("intake", publishes=use_cases.PUBLISHES)
        self.appeals = FakeAppeals()
        self.timeline = FakeTimeline()


@pytest.fixture
def uow():
    clock.set_clock(lambda: NOW)
    yield FakeIntakeUnitOfWork()
    clock.set_clock(None)


def a_call(call_id: str = "C-1", **over) -> HotlineCall:
    return HotlineCall.model_validate({"call_id": call_id, "received_at": "2026-11-26T09:30:00+08:00",
                                       "caller_phone": "13812345678", "content": "路口左转车道通行不便",
                                       "enterprise_name": "四川东航投资有限公司", **over})


def an_invalid_call(seq: int = 7) -> InvalidMessage:
    return InvalidMessage(key=f"ct.in.appeal.hotline#{seq}", subject=subjects.IN_HOTLINE, source_id="C-bad",
                          msg_id="C-bad", errors=[FieldError(field="caller_phone", message="not a phone number")])


async def test_a_call_registers_one_appeal_and_stages_its_registration(uow):
    done = await use_cases.register_appeals(uow, [Received(a_call(), "C-1")])

    [event] = uow.published(subjects.APPEAL_REGISTERED)
    assert isinstance(event, AppealRegistered)
    assert done.registered == [event]
    assert event.appeal_id == "CT-20261126-000001"
    assert (event.channel.value, event.source_id, event.source_ref) == ("hotline", "C-1", "hotline:C-1")
    assert event.correlation_id == "C-1"
    assert event.contact.phone == "13812345678"
    assert event.occurred_at == NOW
    assert uow.commits == 1


async def test_a_call_received_again_under_another_message_id_registers_nothing_more(uow):
    await use_cases.register_appeals(uow, [Received(a_call(), "C-1")])
    again = await use_cases.register_appeals(uow, [Received(a_call(), "C-1-retry"), Received(a_call(), None)])

    assert again.registered == []
    assert len(uow.published(subjects.APPEAL_REGISTERED)) == 1
    assert len(uow.appeals.rows) == 1


async def test_an_appeal_without_a_message_id_is_correlated_by_its_source(uow):
    await use_cases.register_appeals(uow, [Received(a_call("C-2"), None)])
    assert uow.published(subjects.APPEAL_REGISTERED)[0].correlation_id == "hotline:C-2"


async def test_an_event_record_registers_one_appeal_per_item_and_keeps_the_record(uow):
    record = EventRecord.model_validate({
        "event_id": "EV-1", "kind": "sub", "date": "2026-11-20", "organizer_unit": "区行政审批局",
        "theme": "水电气保障",
        "items": [{"item_no": 1, "enterprise_name": "甲公司", "content": "垃圾清运", "proposed_unit": "区城管局"},
                  {"item_no": 2, "enterprise_name": "乙公司", "content": "招聘成本高"}]})
    await use_cases.register_appeals(uow, [Received(record, "EV-1")])

    registered = uow.published(subjects.APPEAL_REGISTERED)
    assert [e.source_id for e in registered] == ["EV-1#1", "EV-1#2"]
    assert registered[0].proposal.proposed_unit == "区城管局"
    assert uow.appeals.event_records["EV-1"].theme == "水电气保障"


async def test_an_invalid_message_is_rejected_once_with_its_field_errors(uow):
    first = await use_cases.register_appeals(uow, [], [an_invalid_call()])
    redelivered = await use_cases.register_appeals(uow, [], [an_invalid_call()])

    [rejection] = uow.published(subjects.APPEAL_REJECTED)
    assert isinstance(rejection, AppealRejected)
    assert first.rejected == [rejection] and redelivered.rejected == []
    assert (rejection.subject, rejection.source_id, rejection.msg_id) == (subjects.IN_HOTLINE, "C-bad", "C-bad")
    assert rejection.errors == [FieldError(field="caller_phone", message="not a phone number")]
    # the inbox, under the consumer name the rows of earlier releases carry, refused the repeat
    assert ("intake-rejections", "ct.in.appeal.hotline#7") in uow.handled
    # another stored message with the same body is another delivery: rejected too
    await use_cases.register_appeals(uow, [], [an_invalid_call(seq=8)])
    assert len(uow.published(subjects.APPEAL_REJECTED)) == 2


async def test_valid_and_invalid_messages_of_one_batch_commit_in_one_transaction(uow):
    done = await use_cases.register_appeals(uow, [Received(a_call("C-3"), "C-3"), Received(a_call("C-4"), "C-4")],
                                           [an_invalid_call()])
    assert uow.commits == 1
    assert [e.source_id for e in done.registered] == ["C-3", "C-4"]
    assert len(done.rejected) == 1
    assert [s for s, _ in uow.committed] == [subjects.APPEAL_REGISTERED] * 2 + [subjects.APPEAL_REJECTED]


async def test_a_batch_that_fails_rejects_nothing_so_the_retry_rejects_once(uow):
    uow.appeals.fail = True
    with pytest.raises(ConnectionError):
        await use_cases.register_appeals(uow, [Received(a_call(), "C-1")], [an_invalid_call()])
    assert uow.rollbacks == 1 and uow.committed == []

    uow.appeals.fail = False
    done = await use_cases.register_appeals(uow, [Received(a_call(), "C-1")], [an_invalid_call()])
    assert len(done.registered) == 1 and len(done.rejected) == 1


def signed(event_id: str, appeal_id: str = "CT-20261126-000001", hour: int = 3) -> OrderSigned:
    return OrderSigned(event_id=event_id, appeal_id=appeal_id, occurred_at=datetime(2026, 11, 26, hour, tzinfo=UTC),
                       actor="李四", order_id="WO-1", unit_code="hrss", unit="区人社局")


async def test_the_timeline_keeps_each_event_once_and_leaves_out_events_about_no_appeal(uow):
    monthly = MonthlyList(occurred_at=NOW, month="2026-11", items=[])
    added = await use_cases.record_timeline(uow, [(subjects.ORDER_SIGNED, signed("ev-1"), "ev-1"),
                                                 (subjects.DEADLINE_MONTHLY_LIST, monthly, "m-1")])
    again = await use_cases.record_timeline(uow, [(subjects.ORDER_SIGNED, signed("ev-1"), "ev-1")])

    assert (added, again) == (1, 0)
    assert [e.what for e in uow.timeline.entries.values()] == ["区人社局 signed for order WO-1"]
    assert uow.committed == []  # the timeline causes no event


async def test_a_batch_of_events_about_no_appeal_opens_no_transaction(uow):
    assert await use_cases.record_timeline(uow, [(subjects.DEADLINE_MONTHLY_LIST,
                                                 MonthlyList(occurred_at=NOW, month="2026-11", items=[]), None)]) == 0
    assert uow.commits == 0


async def test_the_status_shows_the_state_after_the_latest_event_and_masks_the_phone(uow):
    done = await use_cases.register_appeals(uow, [Received(a_call(), "C-1")])
    registration = done.registered[0]
    registration.event_id = "ev-0"
    await use_cases.record_timeline(uow, [(subjects.APPEAL_REGISTERED, registration, "C-1"),
                                         (subjects.ORDER_SIGNED, signed("ev-1"), "ev-1")])

    status = await use_cases.appeal_status(uow, AppealQuery(appeal_id=registration.appeal_id))
    assert status.found is True
    assert status.status == "in_progress"
    assert status.contact_phone == "138****5678"
    assert [t.subject for t in status.timeline] == [subjects.APPEAL_REGISTERED, subjects.ORDER_SIGNED]
    assert status.timeline[1].actor == "李四"

    by_source = await use_cases.appeal_status(uow, AppealQuery(channel="hotline", source_id="C-1"))
    assert by_source == status


async def test_the_status_of_an_unknown_appeal_says_so(uow):
    status = await use_cases.appeal_status(uow, AppealQuery(channel="hotline", source_id="nobody"))
    assert (status.found, status.error, status.source_id) == (False, "no such appeal", "nobody")
    assert status.timeline == []

