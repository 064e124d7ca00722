"""Notify's use cases with a fake unit of work: what is planned, parked, staged and refused, without servers.

The fake repository keeps contacts, waiting events, notifications, delivery outcomes and
SMS replies in memory; the fake unit of work checks every staged event against what
notify declares it publishes (``handlers.PUBLISHES``), as the real one does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.notify import handlers, store, use_cases
from services.notify.config import load_rules
from services.notify.domain import AttemptOutcome, EnterpriseContact, NotifyRules, PlannedNotification
from services.notify.use_cases import NOT_UNDERSTOOD, UNKNOWN_PHONE, Received, SmsReply
from shared.bus import Delivery
from shared.contracts import events as ev
from shared.contracts import subjects
from shared.contracts.inbound import Feedback
from shared.district import District, load_district
from tests.unit.fakes import FakeUnitOfWork

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=SH)
PHONE = "13912345678"
APPEAL = "CT-20261126-0001"


# --- fakes --------------------------------------------------------------------------------------------


class FakeNotifyRepository:
    """Notify's repository in memory, with the same methods as ``NotifyRepository``."""

    def __init__(self) -> None:
        self.locked: list[set[str]] = []
        self.contacts: dict[str, EnterpriseContact] = {}
        self.waiting: dict[str, tuple[store.WaitingEvent, datetime]] = {}
        self.notifications: dict[str, tuple[PlannedNotification, str]] = {}
        self.held_claims: set[str] = set()
        self.outcomes: list[store.Recorded] = []
        self.attempts: list[store.Recorded] = []
        self.released: list[tuple[str, bool]] = []
        self.invitations: dict[str, str] = {}
        self.sms: dict[str, dict] = {}

    async def lock_appeals(self, appeal_ids) -> None:
        self.locked.append(set(appeal_ids))

    async def save_contacts(self, contacts) -> None:
        for appeal_id, (contact, _) in contacts.items():
            self.contacts.setdefault(appeal_id, contact)

    async def contacts_of(self, appeal_ids) -> dict[str, EnterpriseContact]:
        return {a: self.contacts[a] for a in appeal_ids if a in self.contacts}

    async def park(self, events, now) -> None:
        for w in events:
            self.waiting.setdefault(w.event_id, (w, now))

    async def take_waiting_for(self, appeal_ids) -> list[store.WaitingEvent]:
        taken = [k for k, (w, _) in self.waiting.items() if w.appeal_id in set(appeal_ids)]
        return [self.waiting.pop(k)[0] for k in taken]

    async def waiting_to_release(self, cutoff, limit) -> list[tuple[str, str]]:
        return [(k, w.appeal_id) for k, (w, since) in self.waiting.items()
                if since <= cutoff or w.appeal_id in self.contacts][:limit]

    async def take_waiting(self, event_ids) -> list[store.WaitingEvent]:
        return [self.waiting.pop(k)[0] for k in event_ids if k in self.waiting]

    async def add_notifications(self, planned) -> list[str]:
        fresh = [(p, c) for p, c in planned if p.notification_id not in self.notifications]
        for p, c in fresh:
            self.notifications[p.notification_id] = (p, c)
        return [p.channel for p, _ in fresh]

    async def record_outcomes(self, recorded, now) -> set[str]:  # noqa: ARG002
        self.outcomes += recorded
        return {r.claim.notification_id for r in recorded} & self.held_claims

    async def add_attempts(self, recorded, at) -> None:  # noqa: ARG002
        self.attempts += recorded

    async def release(self, claims, now, *, unsent: bool = False) -> None:  # noqa: ARG002
        self.released += [(c.notification_id, unsent) for c in claims]

    async def appeal_invited_to_rate(self, phone: str) -> str | None:
        return self.invitations.get(phone)

    async def save_inbound_sms(self, **reply) -> bool:
        if reply["message_id"] in self.sms:
            return False
        self.sms[reply["message_id"]] = reply
        return True

    async def inbound_sms(self, message_id: str) -> dict | None:
        return self.sms.get(message_id)


class FakeNotifyUnitOfWork(FakeUnitOfWork):
    """One fake unit of work for a whole test: its repository keeps its state from one transaction to the next."""

    def __init__(self) -> None:
        super().__init__("notify", publishes=handlers.PUBLISHES)
        self.repository = FakeNotifyRepository()

    def open_repositories(self, conn) -> None:  # noqa: ARG002
        self.notifications = self.repository


@dataclass
class FakePlanner:
    """The rules, the district and a record of the channels whose delivery workers were woken."""

    rules: NotifyRules
    district: District
    woken: list[set[str]] = field(default_factory=list)

    def wake(self, channels) -> None:
        self.woken.append(set(channels))


@pytest.fixture(scope="module")
def rules() -> NotifyRules:
    return load_rules(env={"QUIET_HOURS": ""})


@pytest.fixture(scope="module")
def district() -> District:
    return load_district()


@pytest.fixture
def planner(rules, district) -> FakePlanner:
    return FakePlanner(rules, district)


@pytest.fixture
def uow() -> FakeNotifyUnitOfWork:
    return FakeNotifyUnitOfWork()


# --- events ----------------------------------------------------------------------------------------------


def base(event_id: str, appeal_id: str = APPEAL) -> dict:
    return {"event_id": event_id, "occurred_at": NOW, "appeal_id": appeal_id, "correlation_id": f"corr-{appeal_id}"}


def registered(event_id: str = "int-reg-1", phone: str = PHONE) -> Received:
    return Received(subjects.APPEAL_REGISTERED, ev.AppealRegistered(
        **base(event_id), channel="hotline", source_id="call-1", enterprise={"name": "成都川开电气有限公司"},
        contact={"name": "潘星", "phone": phone}, content="园区道路缺少左转车道。", category_hint="交通出行",
        kind="appeal", received_at=NOW))


def replied(event_id: str = "dis-reply-1") -> Received:
    return Received(subjects.ORDER_REPLIED, ev.OrderReplied(
        **base(event_id), order_id="WO-1", unit_code="traffic_police", unit="交警大队",
        reply="已增设左转车道。", resolved=True))


def difficult(event_id: str = "esc-difficult-1") -> Received:
    return Received(subjects.APPEAL_ESCALATED, ev.AppealEscalated(
        **base(event_id), order_id="WO-1", unit_code="traffic_police", unit="交警大队", level="difficult",
        reason="涉及多部门", summary="左转车道"))


# --- planning -----------------------------------------------------------------------------------------------


async def test_a_registration_keeps_the_contact_and_plans_the_receipt_in_one_transaction(uow, planner):
    result = await use_cases.plan_events(uow, planner, [registered()], now=NOW)
    repo = uow.repository
    assert uow.commits == 1 and repo.locked == [{APPEAL}]
    assert repo.contacts[APPEAL] == EnterpriseContact(name="潘星", phone=PHONE, enterprise_name="成都川开电气有限公司",
                                                     category="交通出行")
    [(receipt, correlation)] = repo.notifications.values()
    assert (receipt.channel, receipt.address, receipt.template) == ("sms", PHONE, "receipt")
    assert correlation == f"corr-{APPEAL}" and APPEAL in receipt.text
    assert (result.planned, result.channels, planner.woken) == (1, {"sms"}, [{"sms"}])
    assert uow.committed == []  # planning publishes nothing: the delivery workers do


async def test_a_redelivered_event_plans_nothing_twice_and_wakes_no_worker(uow, planner):
    await use_cases.plan_events(uow, planner, [registered()], now=NOW)
    again = await use_cases.plan_events(uow, planner, [registered()], now=NOW + timedelta(minutes=5))
    assert again.planned == 0 and len(uow.repository.notifications) == 1
    assert planner.woken == [{"sms"}, set()]


async def test_a_reply_before_the_registration_waits_for_the_contact_then_is_planned_with_it(uow, planner):
    first = await use_cases.plan_events(uow, planner, [replied()], now=NOW)
    repo = uow.repository
    assert (first.parked, first.planned) == (1, 0) and list(repo.waiting) == ["dis-reply-1"]
    assert repo.notifications == {}

    then = await use_cases.plan_events(uow, planner, [registered()], now=NOW)
    assert (then.released, then.planned) == (1, 2) and repo.waiting == {}
    by_template = {p.template: p for p, _ in repo.notifications.values()}
    assert set(by_template) == {"receipt", "reply_rating_invitation"}
    assert by_template["reply_rating_invitation"].address == PHONE
    assert by_template["reply_rating_invitation"].cause_event_id == "dis-reply-1"


async def test_events_no_rule_names_are_ignored_without_a_transaction(uow, planner):
    signed = Received(subjects.ORDER_SIGNED, ev.OrderSigned(**base("dis-signed-1"), order_id="WO-1",
                                                              unit_code="traffic_police", unit="交警大队"))
    result = await use_cases.plan_events(uow, planner, [signed], now=NOW)
    assert result.planned == 0 and uow.commits == 0 and planner.woken == []


async def test_an_event_without_an_id_is_refused_before_anything_is_stored(uow, planner):
    with pytest.raises(ValueError, match="without event_id"):
        await use_cases.plan_events(uow, planner, [registered(event_id="")], now=NOW)
    assert uow.commits == 0 and uow.repository.contacts == {}


def test_the_handler_gives_an_event_without_its_own_id_the_nats_msg_id():
    model = ev.OrderReplied(**base(""), order_id="WO-1", unit_code="traffic_police", unit="交警大队",
                            reply="好", resolved=True)
    delivery = Delivery(raw=None, subject=subjects.ORDER_REPLIED, data=b"", msg_id="dis-outbox-7", num_delivered=1,
                        stream_seq=7, parsed=model)
    r = handlers.received(delivery)
    assert (r.subject, r.event.event_id) == (subjects.ORDER_REPLIED, "dis-outbox-7")
    assert isinstance(r.event, ev.OrderReplied) and model.event_id == ""  # the delivered model is left alone


async def test_a_waiting_event_whose_contact_never_comes_is_planned_without_it_after_the_wait(uow, planner, district):
    await use_cases.plan_events(uow, planner, [difficult()], now=NOW)
    assert list(uow.repository.waiting) == ["esc-difficult-1"]
    assert await use_cases.release_waiting(uow, planner, now=NOW + timedelta(minutes=5)) == 0  # still waiting

    released = await use_cases.release_waiting(uow, planner, now=NOW + timedelta(minutes=31))
    assert released == 1 and uow.repository.waiting == {}
    leader = district.leader_for(None)
    assert {(p.recipient_role, p.address) for p, _ in uow.repository.notifications.values()} == {
        ("district_leader", a) for a in (leader.contact.phone, leader.contact.email) if a}


# --- delivery outcomes ------------------------------------------------------------------------------------


def claim(nid: str, attempt: int = 1) -> store.Claim:
    return store.Claim(notification_id=nid, channel="sms", address=PHONE, text="…", subject=None, appeal_id=APPEAL,
                       cause_event_id="int-reg-1", correlation_id=f"corr-{APPEAL}", template="receipt",
                       claim_no=attempt, attempt=attempt)


async def test_a_round_stages_one_outcome_event_per_final_outcome_whose_claim_held(uow):
    repo = uow.repository
    repo.held_claims = {"n-delivered", "n-failed", "n-retried"}
    recorded = [
        store.Recorded(claim("n-delivered"), AttemptOutcome("delivered"), 12),
        store.Recorded(claim("n-failed", 3), AttemptOutcome("failed", error="HTTP 400"), 8),
        store.Recorded(claim("n-retried"), AttemptOutcome("retried", error="timeout", retry_at=NOW), 5000),
        store.Recorded(claim("n-expired"), AttemptOutcome("delivered"), 9),  # another worker holds it now
    ]
    current = await use_cases.record_round(uow, recorded, NOW, interrupted=[claim("n-cut")], unsent=[claim("n-idle")])
    assert current == {"n-delivered", "n-failed", "n-retried"} and uow.commits == 1
    [delivered] = uow.published(subjects.NOTIFY_DELIVERED)
    [failed] = uow.published(subjects.NOTIFY_FAILED)
    assert (delivered.notification_id, delivered.recipient, delivered.attempts) == ("n-delivered", "139****5678", 1)
    assert delivered.correlation_id == f"corr-{APPEAL}" and delivered.event_id
    assert (failed.notification_id, failed.error, failed.attempts) == ("n-failed", "HTTP 400", 3)
    assert len(uow.committed) == 2  # nothing for the retried one nor the expired claim
    assert len(repo.attempts) == 4  # every attempt is logged, the expired one too
    assert repo.released == [("n-cut", False), ("n-idle", True)]


async def test_the_same_outcome_recorded_twice_has_the_same_event_id(uow):
    uow.repository.held_claims = {"n-1"}
    for _ in range(2):
        await use_cases.record_round(uow, [store.Recorded(claim("n-1"), AttemptOutcome("delivered"), 1)], NOW)
    first, again = uow.published(subjects.NOTIFY_DELIVERED)
    assert first.event_id == again.event_id  # the outbox id: JetStream drops the repeat


# --- SMS replies -------------------------------------------------------------------------------------------


async def test_an_sms_reply_3_stages_unsatisfied_feedback_once_per_gateway_id(uow):
    uow.repository.invitations[PHONE] = APPEAL
    reply = SmsReply("MO-42", PHONE, " 3 ")
    answer = await use_cases.receive_sms_reply(uow, reply)
    assert not answer.unknown_phone
    assert answer.result.model_dump(mode="json") == {
        "accepted": True, "duplicate": False, "appeal_id": APPEAL, "rating": "unsatisfied",
        "feedback_id": "sms-MO-42", "reason": None}
    [feedback] = uow.published(subjects.IN_FEEDBACK)
    assert isinstance(feedback, Feedback) and feedback.event_id == "sms-MO-42"  # the Nats-Msg-Id
    assert feedback.model_dump(mode="json") == {"feedback_id": "sms-MO-42", "appeal_id": APPEAL,
                                                "rating": "unsatisfied", "comment": "3", "via": "sms",
                                                "outcome": None, "caller": None}

    again = await use_cases.receive_sms_reply(uow, reply)  # the gateway retries its post
    assert again.result.duplicate and again.result.rating == "unsatisfied"
    assert len(uow.published(subjects.IN_FEEDBACK)) == 1


async def test_an_sms_reply_that_is_no_rating_is_answered_and_sends_nothing_on(uow):
    uow.repository.invitations[PHONE] = APPEAL
    answer = await use_cases.receive_sms_reply(uow, SmsReply("MO-43", PHONE, "好的谢谢"))
    assert not answer.result.accepted and answer.result.reason == NOT_UNDERSTOOD
    assert answer.result.appeal_id == APPEAL and uow.committed == []
    assert uow.repository.sms["MO-43"]["status_code"] == 200


async def test_an_sms_reply_from_a_phone_never_invited_is_refused_and_stays_refused_on_a_repeat(uow):
    reply = SmsReply("MO-44", "13700000000", "3")
    answer = await use_cases.receive_sms_reply(uow, reply)
    assert answer.unknown_phone and answer.result.reason == UNKNOWN_PHONE and uow.committed == []
    repeat = await use_cases.receive_sms_reply(uow, reply)
    assert repeat.unknown_phone and repeat.result.duplicate
    assert uow.repository.sms["MO-44"]["status_code"] == 404
