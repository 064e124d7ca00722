"""Domain events: what happened, in the past tense. One definition, used by producer and consumer.

Every event carries `event_id` (the outbox id, also its `Nats-Msg-Id`), `occurred_at`,
`appeal_id` (except a rejection that never became an appeal), `source_ref`
(`<channel>:<source id>`) and `correlation_id`. Work-order events add `order_id`,
`unit_code` and the unit's name `unit`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.contracts.common import AppealKind, Channel, FieldError, Message, Rfc3339


class DomainEvent(Message):
    event_id: str = Field("", description="Unique id of this event (the outbox id); also its `Nats-Msg-Id`.")
    occurred_at: Rfc3339 = Field(description="When it happened, RFC 3339.")
    appeal_id: str = Field(description="The appeal concerned.")
    source_ref: str = Field("", description="`<channel>:<source id>` of the message that started the appeal.")
    correlation_id: str = Field("", description="Ties together everything caused by one inbound message.")
    actor: str = Field("system", description="Who did it: a person, a unit or `system`.")


# --- intake ---------------------------------------------------------------------


class Party(Message):
    name: str | None = Field(None, description="Name.")
    phone: str | None = Field(None, description="Normalised phone.")
    uscc: str | None = Field(None, description="Credit code (enterprises only).")


class EventProposal(Message):
    """What the organiser of a coffee event proposed for one item."""

    event_id: str = Field(description="The event record.")
    event_kind: str = Field(description="main or sub.")
    event_date: str = Field(description="YYYY-MM-DD.")
    theme: str | None = Field(None, description="The event's theme.")
    organizer_unit: str = Field(description="The organising unit.")
    item_no: int = Field(description="The item within the event.")
    proposed_unit: str | None = Field(None, description="The unit proposed (name or unit_code).")
    proposed_opinion: str | None = Field(None, description="The proposed handling opinion.")
    proposed_deadline_days: int | None = Field(None, description="The proposed deadline in working days.")


class AppealRegistered(DomainEvent):
    """`ct.appeal.registered`: an appeal was registered once, whatever the number of deliveries."""

    channel: Channel = Field(description="hotline, app, reception_day, chief_rep, tea_talk or coffee_event.")
    source_id: str = Field(description="The sender's own id (for an event item: `<event_id>#<item_no>`).")
    enterprise: Party = Field(description="The enterprise: name and credit code.")
    contact: Party = Field(description="Who to tell: name and phone.")
    content: str = Field(description="The appeal.")
    title: str | None = Field(None, description="Short title, when the sender gave one.")
    category_hint: str | None = Field(None, description="The sender's category.")
    address: str | None = Field(None, description="Where the problem is.")
    kind: AppealKind = Field(description="appeal, consultation, complaint, suggestion or praise.")
    urgent: bool = Field(False, description="Marked urgent.")
    received_at: Rfc3339 = Field(description="When the appeal was received at the source; deadlines count from here.")
    proposal: EventProposal | None = Field(None, description="The coffee event's proposals, for an event item.")
    duplicate_of: str | None = Field(
        None, description="A likely duplicate (重复诉求): the master appeal it follows; dispatch sends it no order of "
                          "its own. `ct.appeal.merged` says the same to everyone else.")
    similarity: float | None = Field(None, description="For a duplicate: its text similarity to the master (0-1).")


class AppealRejected(Message):
    """`ct.appeal.rejected`: an inbound message was invalid; nothing was stored."""

    event_id: str = Field("", description="Unique id of this event.")
    occurred_at: Rfc3339 = Field(description="When it was rejected.")
    subject: str = Field(description="The subject the message arrived on.")
    source_id: str | None = Field(None, description="The sender's id, where it could be read.")
    msg_id: str | None = Field(None, description="The message's `Nats-Msg-Id` header.")
    errors: list[FieldError] = Field(description="One error per field, each naming its field.")


class AppealMerged(DomainEvent):
    """`ct.appeal.merged`: a duplicate appeal now follows its master."""

    master_appeal_id: str = Field(description="The appeal it follows.")
    similarity: float | None = Field(None, description="The text similarity that made it a duplicate (0-1).")


class AppealSplit(DomainEvent):
    """`ct.appeal.split`: a duplicate no longer follows its master (拆单); dispatch routes it on its own."""

    master_appeal_id: str = Field(description="The appeal it followed.")
    reason: str | None = Field(None, description="Why it was split.")


class FollowerReplied(DomainEvent):
    """`ct.appeal.follower_replied`: the master's reply reached a duplicate that follows it; its enterprise is
    asked to rate it. The order and the unit are the master's; the rating closes or reopens the duplicate only."""

    master_appeal_id: str = Field(description="The master appeal whose lead order was replied.")
    order_id: str = Field(description="The master's replied work order.")
    unit_code: str = Field(description="ASCII code of the unit that replied.")
    unit: str = Field(description="The unit's name.")
    reply: str = Field(description="The answer.")
    resolved: bool = Field(description="Whether the problem is solved.")
    contact_phone: str | None = Field(None, description="Who to ask for the rating (the duplicate's contact).")


# --- dispatch -------------------------------------------------------------------


class OrderEvent(DomainEvent):
    order_id: str = Field(description="The work order.")
    unit_code: str = Field(description="ASCII code of the unit holding the order.")
    unit: str = Field(description="The unit's name.")


class OrderPolicy(Message):
    """What dispatch snapshots on an order: its limits and who answers for it up the ladder.

    The ladder's timings (warnings, when the district leader and the supervision
    office are told) are escalation's own policy, not part of this snapshot.
    """

    deadline_days: int | None = Field(None, description="Handling deadline in working days (as on the order).")
    sign_hours: float | None = Field(None, description="Sign-for limit in working hours (as on the order).")
    district_leader: str | None = Field(None, description="`leader_id` of the district leader coordinating the category.")
    lead_unit: str | None = Field(None, description="`unit_code` of the lead unit (区行政审批局).")
    supervision_office: str | None = Field(None, description="`unit_code` of the supervision office (督查室).")


class ClockPause(Message):
    """One pause (待补充材料) of a handling clock: wall times; escalation counts its working time.

    The pause is data on the clock, not derived from the category or the policy:
    a re-dispatched order carries the pauses of the orders it replaces (see
    `OrderDispatched.pauses`), so the enterprise's clock keeps them.
    """

    pause_id: str = Field(description="`<order_id>:P<n>`: the pause's id, stable over redeliveries.")
    order_id: str = Field(description="The order whose unit paused the clock.")
    started_at: Rfc3339 = Field(description="When the clock was paused.")
    ended_at: Rfc3339 | None = Field(None, description="When it was resumed (or the order ended); null while paused.")
    max_working_days: int = Field(description="The longest this pause counts, in working days (the configuration "
                                              "when it began): past it, the clock runs again by itself.")
    reason: str = Field("", description="What the unit waits for from the enterprise.")


class OrderDispatched(OrderEvent):
    """`ct.order.dispatched`: a work order was given to a unit (派单)."""

    role: Literal["lead", "co"] = Field(description="lead (主办) or co-handling (协办).")
    category: str = Field(description="The category the appeal was routed as.")
    reasons: list[str] = Field(default_factory=list, description="Why this unit, e.g. `matched 左转车道, 违停 → traffic police`.")
    received_at: Rfc3339 = Field(description="When the appeal was received; the handling clock counts from here.")
    deadline_days: int = Field(description="Handling deadline in working days.")
    sign_hours: float = Field(description="Sign-for limit in working hours.")
    urgent: bool = Field(False, description="Urgent appeal.")
    reopen_count: int = Field(0, description="How often the appeal was reopened for this unit (重办).")
    policy: OrderPolicy = Field(default_factory=OrderPolicy,
                                description="Who is responsible for this order, as dispatch saw it when it dispatched.")
    summary: str = Field("", description="Short summary of the appeal, for notifications.")
    enterprise_name: str | None = Field(None, description="The enterprise.")
    replaces_order_id: str | None = Field(None, description="The order this one replaces (re-dispatch, reopening).")
    pauses: list[ClockPause] = Field(
        default_factory=list,
        description="The pauses (待补充材料) of the appeal's handling clock so far, from the orders this one replaces "
                    "(a re-dispatch or an accepted return): the enterprise's clock keeps them. Empty otherwise.")
    routing_version: str | None = Field(
        None, description="The routing model's version that routed it automatically (`<config hash>-<last example id>`); "
                          "None when a person chose the unit or the rules decided alone.")


class OrderSigned(OrderEvent):
    """`ct.order.signed`: the unit accepted the order (签收)."""


class OrderReturned(OrderEvent):
    """`ct.order.returned`: the unit says it is the wrong unit (退单); the lead unit decides."""

    reason: str = Field(description="Why.")
    return_count: int = Field(description="Returns of this appeal so far.")


class ReturnDecided(OrderEvent):
    """`ct.order.return_decided`: the lead unit accepted a return or sent the order back."""

    accepted: bool = Field(description="True: the return stands and the appeal is re-dispatched.")


class OrderProgressed(OrderEvent):
    """`ct.order.progressed`: the unit reported progress."""

    note: str = Field(description="What was done.")


class ExtensionRequested(OrderEvent):
    """`ct.order.extension_requested`: the unit asks for more working days (延期)."""

    days: int = Field(description="Extra working days asked for.")
    reason: str = Field(description="Why.")


class ExtensionGranted(OrderEvent):
    """`ct.order.extension_granted`: the lead unit granted the extension; the deadline moves."""

    days: int = Field(description="Extra working days granted.")
    total_extension_days: int = Field(description="All extension days granted on this order.")


class ExtensionDenied(OrderEvent):
    """`ct.order.extension_denied`: the lead unit denied the extension."""

    reason: str = Field(description="Why.")


class OrderPaused(OrderEvent):
    """`ct.order.paused`: the unit paused its handling clock while it waits for the enterprise (待补充材料)."""

    pause: ClockPause = Field(description="The pause (ended_at null).")


class OrderResumed(OrderEvent):
    """`ct.order.resumed`: the unit resumed its paused handling clock; the deadline moves by the paused working time."""

    pause: ClockPause = Field(description="The pause, with ended_at.")
    note: str | None = Field(None, description="What arrived.")


class OrderReplied(OrderEvent):
    """`ct.order.replied`: the unit answered; the enterprise is asked to rate it."""

    reply: str = Field(description="The answer.")
    resolved: bool = Field(description="Whether the problem is solved.")
    contact_phone: str | None = Field(None, description="Who to ask for the rating.")


class EscalationRequested(OrderEvent):
    """`ct.order.escalation_requested`: the unit flags the appeal difficult or major (疑难或重大)."""

    reason: str = Field(description="Why.")


class OrderRejected(Message):
    """`ct.order.rejected`: a unit action was refused and changed nothing."""

    event_id: str = Field("", description="Unique id of this event.")
    occurred_at: Rfc3339 = Field(description="When.")
    action_id: str | None = Field(None, description="The refused action.")
    action: str = Field(description="sign, return, ...")
    unit_code: str = Field(description="The unit that acted.")
    order_id: str | None = Field(None, description="The order named.")
    appeal_id: str | None = Field(None, description="The appeal, when the order is known.")
    reason: str = Field(description="not_your_order, illegal_transition, unknown_order, invalid, return_limit_reached ...")
    rule: str | None = Field(None, description="The business rule the action broke, e.g. OrderMustBeHeldByActingUnit.")
    detail: str = Field("", description="Human-readable explanation.")
    errors: list[FieldError] = Field(default_factory=list, description="Field errors for an invalid action.")


class RoutingCandidate(Message):
    """A unit routing considered for a queued appeal, with its score and why."""

    unit_code: str = Field(description="The unit's code.")
    unit: str = Field(description="The unit's name.")
    score: float = Field(description="Its routing score (the rules' points plus the routing model's).")
    confidence: float | None = Field(None, description="The routing model's probability for it, where a model counted.")
    reasons: list[str] = Field(default_factory=list, description="Why, e.g. `similar to past appeals of 区市场监管局 (p=0.83)`.")


class AppealQueued(DomainEvent):
    """`ct.appeal.queued`: routing was not clear; the appeal waits in the lead unit's manual queue."""

    reasons: list[str] = Field(default_factory=list, description="The candidates and why none was clear.")
    summary: str = Field("", description="Short summary.")
    candidates: list[RoutingCandidate] = Field(
        default_factory=list, description="The three best candidates, best first, so the lead unit dispatches in one click.")
    routing_version: str | None = Field(None, description="The routing model's version that scored the candidates.")


class AppealClosed(DomainEvent):
    """`ct.appeal.closed`: the appeal is finished (办结)."""

    outcome: Literal["satisfied", "basically_satisfied", "not_rated", "answered"] = Field(
        description="The enterprise's rating, `not_rated` when no answer came in time, `answered` for a consultation answered at once."
    )
    answer: str | None = Field(None, description="For an answered consultation: the answer.")
    unit_codes: list[str] = Field(default_factory=list, description="Units that held orders.")


class AppealReopened(DomainEvent):
    """`ct.appeal.reopened`: the enterprise was unsatisfied; the appeal goes back to the same unit (重办)."""

    order_id: str = Field(description="The new work order.")
    unit_code: str = Field(description="The unit.")
    unit: str = Field(description="The unit's name.")
    reopen_count: int = Field(description="Reopenings for this unit.")
    comment: str | None = Field(None, description="The enterprise's comment.")


# --- escalation -------------------------------------------------------------------

Clock = Literal["sign_for", "handling"]
DeadlineClock = Literal["sign_for", "handling", "unit"]
DeadlineCause = Literal["started", "extension", "paused", "resumed", "calendar_revised", "reopened", "replanned"]


class DeadlineSet(DomainEvent):
    """`ct.deadline.set`: a clock was started or moved.

    `handling` is the appeal's clock (the enterprise's deadline, from receipt, or from
    the reopening for a reopened order); the ladder climbs on it. `unit` is the unit's own
    clock of a re-dispatched order: from its sign-for, the category's working days; the
    unit's on-time rate counts by it. No ladder step fires on `unit`.
    """

    order_id: str = Field(description="The work order.")
    unit_code: str = Field(description="The unit.")
    clock: DeadlineClock = Field(description="sign_for (working hours), handling (working days, the appeal's clock) "
                                             "or unit (a re-dispatched order's own clock, from its sign-for).")
    due_at: Rfc3339 = Field(description="When it falls due, RFC 3339 +08:00. While paused: the deadline should the "
                                        "pause run its full length (`resumes_by`).")
    cause: DeadlineCause | None = Field(None, description="Why it was set: started, extension, paused, resumed, "
                                                          "calendar_revised, reopened, replanned.")
    paused_since: Rfc3339 | None = Field(None, description="The clock is paused (待补充材料) since then.")
    resumes_by: Rfc3339 | None = Field(None, description="While paused: when the clock runs again by itself.")
    paused_working_seconds: int = Field(0, description="Working seconds this clock was paused so far (ended pauses).")


class DeadlineMoved(DomainEvent):
    """`ct.deadline.moved`: a revised official calendar moved a running deadline (its unit is told).

    Published with the `ct.deadline.set` of the new deadline, in the same transaction,
    when a loaded State Council schedule or a local calendar override re-planned the order.
    """

    order_id: str = Field(description="The work order.")
    unit_code: str = Field(description="The unit.")
    unit: str = Field("", description="The unit's name.")
    clock: Clock = Field(description="sign_for or handling.")
    previous_due_at: Rfc3339 = Field(description="The deadline the unit was told before, RFC 3339 +08:00.")
    due_at: Rfc3339 = Field(description="The new deadline, RFC 3339 +08:00.")
    working_days: int = Field(description="Working days moved on the revised calendar (negative: earlier).")
    calendar_days: int = Field(description="Calendar days moved (negative: earlier).")
    cause: Literal["calendar_revised"] = Field("calendar_revised", description="Why it moved.")
    reason: str = Field("", description="Why, in English (which calendar change).")
    summary: str = Field("", description="The appeal summary.")


class Person(Message):
    role: str = Field(description="liaison, unit_head, lead_unit, district_leader, supervision_office.")
    name: str | None = Field(None, description="Name.")
    unit_code: str | None = Field(None, description="Their unit.")


class DeadlineWarning(DomainEvent):
    """`ct.deadline.warning`: a deadline is near."""

    order_id: str = Field(description="The work order.")
    unit_code: str = Field(description="The unit.")
    unit: str = Field("", description="The unit's name.")
    clock: Clock = Field(description="Which clock.")
    due_at: Rfc3339 = Field(description="When it falls due.")
    level: str = Field(description="warning_75 or warning_1d.")
    targets: list[Person] = Field(default_factory=list, description="Who must hear.")
    reason: str = Field("", description="Why, in English.")
    summary: str = Field("", description="The appeal summary.")
    fire_at: Rfc3339 | None = Field(None, description="When the step was due to fire.")
    late_seconds: int = Field(0, description="How long after `fire_at` it fired (an outage, a backlog), seconds.")


class LateOrder(Message):
    """One work order named by an appeal's escalation to the district leader or the supervision office."""

    order_id: str = Field(description="The work order.")
    unit_code: str = Field(description="Its unit.")
    unit: str = Field("", description="The unit's name.")
    role: str | None = Field(None, description="lead (主办) or co (协办).")
    due_at: Rfc3339 | None = Field(None, description="Its handling deadline.")
    overdue_seconds: int = Field(0, description="How late it was when the step fired, in seconds of wall time.")


class AppealEscalated(DomainEvent):
    """`ct.appeal.escalated`: the appeal climbed a step of the ladder.

    `overdue` (督办) and `difficult` concern one work order: one event per order.
    `district_leader` and `supervision` concern the appeal: one event per appeal and
    level (and reopening round), however many co-handling orders (协办) are late;
    `late_orders` names every order of the appeal late when it fired, and
    `order_id`, `unit_code`, `unit`, `due_at` and `overdue_seconds` repeat the
    first of them (the earliest deadline).
    """

    order_id: str = Field(description="The work order (district_leader, supervision: the first of `late_orders`).")
    unit_code: str = Field(description="The unit (district_leader, supervision: the first of `late_orders`).")
    unit: str = Field("", description="The unit's name.")
    level: Literal["overdue", "district_leader", "supervision", "difficult"] = Field(
        description="overdue (督办: unit head and lead unit), district_leader, supervision (通报), difficult (at the unit's request)."
    )
    reason: str = Field(description="Why.")
    clock: str = Field("handling", description="The clock that ran out.")
    due_at: Rfc3339 | None = Field(None, description="The missed deadline.")
    overdue_seconds: int = Field(0, description="How late, in seconds of wall time.")
    targets: list[Person] = Field(default_factory=list, description="Who must hear.")
    summary: str = Field("", description="The appeal summary.")
    fire_at: Rfc3339 | None = Field(None, description="When the step was due to fire (difficult: the request).")
    late_seconds: int = Field(0, description="How long after `fire_at` it fired (an outage, a backlog), seconds.")
    late_orders: list[LateOrder] = Field(
        default_factory=list,
        description="district_leader, supervision: every order of the appeal late when the step fired (those whose "
                    "step at this level fired, and every one still open past its handling deadline), earliest "
                    "deadline first. Empty for overdue and difficult.",
    )


class MonthlyListItem(Message):
    appeal_id: str = Field(description="The appeal.")
    order_id: str = Field(description="The work order.")
    unit_code: str = Field(description="The unit.")
    unit: str = Field(description="The unit's name.")
    summary: str = Field("", description="The appeal summary.")
    due_at: Rfc3339 | None = Field(None, description="The missed deadline.")
    level: str = Field(description="The highest step reached (supervision: publicly noticed).")
    noticed_at: Rfc3339 = Field(description="When it was reported to the supervision office.")


class MonthlyList(Message):
    """`ct.deadline.monthly_list`: the month's publicly noticed (通报) orders, for the supervision office.

    Published once per month, early in the next month; a month without any is not published.
    """

    event_id: str = Field("", description="Unique id of this event; also its `Nats-Msg-Id`.")
    occurred_at: Rfc3339 = Field(description="When it was compiled.")
    month: str = Field(description="YYYY-MM.")
    items: list[MonthlyListItem] = Field(description="The orders reported to the supervision office that month.")


class FollowUpDrawn(DomainEvent):
    """`ct.appeal.follow_up_drawn`: the appeal was drawn for a follow-up call (抽查回访) of its month.

    One event per drawn appeal; the draw (month, seed, share) is reproducible:
    the same month's candidates and seed give the same appeals.
    """

    draw_id: str = Field(description="The month's draw, `FU-<YYYY-MM>`.")
    month: str = Field(description="YYYY-MM whose closed (and reopened) appeals were drawn from.")
    seed: int = Field(description="The seed of the draw (recorded with it).")
    share: float = Field(description="The share of the month's closed appeals drawn (0-1).")
    reason: Literal["closed", "reopened"] = Field(
        description="closed: drawn among the month's closed appeals; reopened: every reopened appeal is called.")


class FollowUpContradicted(DomainEvent):
    """`ct.appeal.follow_up_contradicted`: a follow-up call's rating contradicts the enterprise's own rating.

    For the lead unit (牵头单位) to look into: satisfied or basically satisfied on one
    side, unsatisfied on the other. The appeal is neither closed nor reopened by it.
    """

    feedback_id: str = Field(description="The follow-up's feedback id.")
    month: str | None = Field(None, description="The draw's month, when the appeal was drawn.")
    follow_up_rating: str = Field(description="What the follow-up call heard.")
    own_rating: str = Field(description="The enterprise's own latest rating of the reply.")
    unit_codes: list[str] = Field(default_factory=list, description="Units that held the appeal's orders.")
    lead_unit: str | None = Field(None, description="`unit_code` of the lead unit that is to look into it.")
    comment: str | None = Field(None, description="The follow-up's comment.")


# --- notify ---------------------------------------------------------------------


class NotificationOutcome(DomainEvent):
    notification_id: str = Field(description="(event, recipient, channel) identity of the notification.")
    cause_event_id: str = Field(description="The event that caused it.")
    channel: Literal["sms", "email", "wecom"] = Field(description="sms, email or wecom.")
    recipient: str = Field(description="Masked recipient.")
    template: str = Field(description="Template used.")
    attempts: int = Field(description="Attempts made.")


class NotificationDelivered(NotificationOutcome):
    """`ct.notify.delivered`: the channel accepted the message."""


class NotificationFailed(NotificationOutcome):
    """`ct.notify.failed`: every attempt failed."""

    error: str = Field(description="The last error.")


def iso(value: datetime) -> str:
    return value.isoformat()


# --- query replies (ct.q.appeal and GET /appeals/{appeal_id}) ----------------------


class TimelineItem(Message):
    at: Rfc3339 = Field(description="When it happened.")
    subject: str = Field(description="The event's subject.")
    actor: str = Field(description="Who.")
    what: str = Field(description="What.")


class ClockEntry(Message):
    """One change of an appeal's clocks, with its cause: start, pause, resume, extension, warning, escalation ..."""

    at: Rfc3339 = Field(description="When.")
    kind: Literal["started", "deadline", "paused", "resumed", "extension", "moved", "warning", "escalation",
                  "stopped"] = Field(description="What happened to the clock.")
    clock: str | None = Field(None, description="sign_for, handling (the appeal's clock) or unit (the unit's own).")
    order_id: str | None = Field(None, description="The work order.")
    unit_code: str | None = Field(None, description="Its unit.")
    due_at: Rfc3339 | None = Field(None, description="The deadline after it (deadline, extension, moved, resumed ...).")
    level: str | None = Field(None, description="warning / escalation: the ladder step.")
    cause: str = Field("", description="Why, in words (the event that caused it, the reason given).")
    late_seconds: int | None = Field(None, description="warning / escalation: how long after its time it fired.")


class AppealStatus(Message):
    """The reply to `ct.q.appeal`: the appeal's status and its timeline. Phones are masked."""

    found: bool = Field(True, description="False when no appeal matches.")
    appeal_id: str | None = Field(None, description="The appeal id.")
    channel: str | None = Field(None, description="Its channel.")
    source_id: str | None = Field(None, description="The sender's own id.")
    status: str | None = Field(None, description="registered, awaiting_dispatch, dispatched, in_progress, returned, replied, reopened, closed.")
    enterprise_name: str | None = Field(None, description="The enterprise.")
    contact_phone: str | None = Field(None, description="Masked contact phone.")
    kind: str | None = Field(None, description="appeal, consultation, ...")
    content: str | None = Field(None, description="The appeal.")
    received_at: Rfc3339 | None = Field(None, description="When it was received.")
    registered_at: Rfc3339 | None = Field(None, description="When intake registered it.")
    timeline: list[TimelineItem] = Field(default_factory=list, description="Everything that happened, oldest first.")
    clock: list[ClockEntry] = Field(default_factory=list,
                                    description="The clock timeline, oldest first: each start, deadline set, pause, "
                                                "resume, extension, move, warning and escalation with its cause.")
    paused: bool = Field(False, description="A handling clock of the appeal is paused (待补充材料) now.")
    error: str | None = Field(None, description="Why the query could not be answered.")
    errors: list[FieldError] = Field(default_factory=list,
                                     description="An invalid query's errors, one per field (found is false).")
