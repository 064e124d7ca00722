"""Inbound messages: what outside systems and units send (the public contract).

Field names, required fields and values are exactly those of DESIGN.md's table;
add optional fields only. Each model names what the sender did.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, HttpUrl, model_validator

from shared.contracts.common import (
    AppealKind,
    Content,
    EventKind,
    Message,
    Phone,
    Rating,
    ReceivedTime,
    ReceptionChannel,
    ShortText,
    SourceId,
    UnitCode,
    Uscc,
)

OptText = ShortText | None


class HotlineCall(Message):
    """`ct.in.appeal.hotline`: one call to the 24-hour enterprise hotline."""

    call_id: SourceId = Field(description="The hotline system's id of the call; also the `Nats-Msg-Id`.")
    received_at: ReceivedTime = Field(description="When the call was taken, RFC 3339 with offset.")
    caller_phone: Phone = Field(description="Caller's mainland mobile, landline or 400/800 number.")
    content: Content = Field(description="The agent's summary of the appeal, 1 to 5,000 characters.")
    caller_name: OptText = Field(None, description="Caller's name.")
    enterprise_name: OptText = Field(None, description="The enterprise the caller speaks for.")
    enterprise_uscc: Uscc | None = Field(None, description="18-character unified social credit code (GB 32100-2015).")
    category_hint: OptText = Field(None, description="The agent's category, e.g. 交通出行.")
    address: OptText = Field(None, description="Where the problem is.")
    kind: AppealKind = Field(AppealKind.appeal, description="appeal, consultation, complaint, suggestion or praise.")
    urgent: bool = Field(False, description="Marked urgent by the agent.")
    agent_id: OptText = Field(None, description="The hotline agent who took the call.")
    recording_url: HttpUrl | None = Field(None, description="Where the call recording is kept.")


class AppAppeal(Message):
    """`ct.in.appeal.app`: an online appeal from a logged-in enterprise account."""

    submission_id: SourceId = Field(description="The app backend's id of the submission; also the `Nats-Msg-Id`.")
    submitted_at: ReceivedTime = Field(description="When it was submitted, RFC 3339 with offset.")
    account_id: ShortText = Field(description="The enterprise account in the app.")
    enterprise_name: ShortText = Field(description="The enterprise's registered name.")
    contact_phone: Phone = Field(description="Contact's mainland mobile or landline.")
    content: Content = Field(description="The appeal, 1 to 5,000 characters.")
    enterprise_uscc: Uscc | None = Field(None, description="18-character unified social credit code.")
    contact_name: OptText = Field(None, description="Contact person.")
    title: OptText = Field(None, description="Short title.")
    category_hint: OptText = Field(None, description="Category chosen in the app.")
    address: OptText = Field(None, description="Where the problem is.")
    kind: AppealKind = Field(AppealKind.appeal, description="appeal, consultation, complaint, suggestion or praise.")
    attachments: list[HttpUrl] = Field(default_factory=list, max_length=20, description="URLs of attached files.")


class ReceptionRecord(Message):
    """`ct.in.appeal.reception`: taken at a reception day, by a chief representative or at a tea talk."""

    record_id: SourceId = Field(description="The record's id; also the `Nats-Msg-Id`.")
    received_at: ReceivedTime = Field(description="When it was received, RFC 3339 with offset.")
    channel: ReceptionChannel = Field(description="reception_day (局长接访日), chief_rep (首席代表) or tea_talk (民生茶语吧).")
    officer: ShortText = Field(description="The official who received it.")
    content: Content = Field(description="The appeal, 1 to 5,000 characters.")
    contact_phone: Phone = Field(description="Contact's mainland mobile or landline.")
    enterprise_name: OptText = Field(None, description="The enterprise (absent for a citizen at a tea talk).")
    enterprise_uscc: Uscc | None = Field(None, description="18-character unified social credit code.")
    contact_name: OptText = Field(None, description="Contact person.")
    unit: OptText = Field(None, description="The officer's unit.")
    category_hint: OptText = Field(None, description="Category chosen by the officer.")
    address: OptText = Field(None, description="Where the problem is.")
    kind: AppealKind = Field(AppealKind.appeal, description="appeal, consultation, complaint, suggestion or praise.")


class EventItem(Message):
    """One appeal raised at a coffee event, as the organiser recorded it."""

    item_no: int = Field(ge=1, le=10_000, description="Position in the event record, from 1.")
    enterprise_name: ShortText = Field(description="The enterprise that raised it.")
    content: Content = Field(description="The appeal, 1 to 5,000 characters.")
    contact_name: OptText = Field(None, description="Contact person.")
    contact_phone: Phone | None = Field(None, description="Contact's mainland mobile or landline.")
    enterprise_uscc: Uscc | None = Field(None, description="18-character unified social credit code.")
    category_hint: OptText = Field(None, description="The organiser's classification.")
    proposed_unit: OptText = Field(None, description="The unit the organiser proposes (name or unit_code).")
    proposed_opinion: str | None = Field(None, max_length=2000, description="The organiser's proposed handling opinion.")
    proposed_deadline_days: int | None = Field(None, ge=1, le=365, description="Proposed deadline in working days (办理时限).")


class EventRecord(Message):
    """`ct.in.event`: the record of a coffee event (主活动 or 子活动), one appeal per item."""

    event_id: SourceId = Field(description="The event's id; also the `Nats-Msg-Id`.")
    kind: EventKind = Field(description="main (主活动) or sub (子活动).")
    date: dt.date = Field(description="The day the event took place (YYYY-MM-DD).")
    organizer_unit: ShortText = Field(description="The organising unit.")
    theme: OptText = Field(None, description="The event's theme, e.g. 企业发展之水电气保障.")
    attendees: list[ShortText] = Field(default_factory=list, max_length=500, description="Leaders and officials who attended.")
    items: list[EventItem] = Field(min_length=1, max_length=500, description="The appeals raised.")

    @model_validator(mode="after")
    def _unique_item_numbers(self) -> EventRecord:
        seen = [i.item_no for i in self.items]
        if len(seen) != len(set(seen)):
            raise ValueError("items: item_no values must be unique within an event")
        return self


# --- work-order actions: ct.in.order.<unit_code>.<action> ----------------------

UnitActionName = Literal[
    "sign", "return", "progress", "extend", "reply", "escalate",
    # the lead unit's own actions
    "dispatch", "redispatch", "grant_extension", "deny_extension", "decide_return",
]
UNIT_ACTIONS: tuple[str, ...] = ("sign", "return", "progress", "extend", "reply", "escalate")
LEAD_ACTIONS: tuple[str, ...] = ("dispatch", "redispatch", "grant_extension", "deny_extension", "decide_return")


class UnitAction(Message):
    """`ct.in.order.<unit_code>.<action>`: a unit acts on one of its work orders.

    The action comes from the subject; fields that the action does not use are ignored.
    """

    action_id: SourceId = Field(description="The unit's id of this action; acting twice with one id does it once.")
    order_id: SourceId | None = Field(None, description="The work order acted on (required for every action but `dispatch`).")
    actor: ShortText = Field(description="Who in the unit acted (a name or staff id).")
    reason: str | None = Field(None, min_length=1, max_length=2000, description="return, extend, escalate, deny_extension: why.")
    note: str | None = Field(None, min_length=1, max_length=5000, description="progress: what was done.")
    days: int | None = Field(None, ge=1, le=120, description="extend / grant_extension: extra working days.")
    reply: str | None = Field(None, min_length=1, max_length=5000, description="reply: the unit's answer to the enterprise.")
    resolved: bool | None = Field(None, description="reply: whether the problem is solved.")
    # lead unit only
    appeal_id: str | None = Field(None, max_length=40, description="dispatch: the appeal taken from the manual queue.")
    unit_code: UnitCode | None = Field(None, description="dispatch / redispatch / decide_return: the unit that gets the order.")
    co_units: list[UnitCode] = Field(default_factory=list, max_length=10, description="dispatch: co-handling units (协办).")
    accept: bool | None = Field(None, description="decide_return: true accepts the return, false sends the order back.")

    def missing_for(self, action: str) -> list[str]:
        """Names of the fields the given action needs but the message lacks."""
        need = {
            "sign": ["order_id"], "progress": ["order_id", "note"], "return": ["order_id", "reason"],
            "extend": ["order_id", "days", "reason"], "reply": ["order_id", "reply", "resolved"],
            "escalate": ["order_id", "reason"], "dispatch": ["appeal_id", "unit_code"],
            "redispatch": ["order_id", "unit_code"], "grant_extension": ["order_id"],
            "deny_extension": ["order_id", "reason"], "decide_return": ["order_id", "accept"],
        }[action]
        return [f for f in need if getattr(self, f) is None]


class Feedback(Message):
    """`ct.in.feedback`: the enterprise's rating of the reply (回访)."""

    feedback_id: SourceId = Field(description="The sender's id of this feedback; also the `Nats-Msg-Id`.")
    appeal_id: str = Field(min_length=1, max_length=40, description="The appeal rated.")
    rating: Rating = Field(description="satisfied, basically_satisfied or unsatisfied.")
    comment: str | None = Field(None, max_length=2000, description="Free text.")
    via: OptText = Field(None, description="app, sms, call, survey ...")


class AppealQuery(Message):
    """`ct.q.appeal` (request-reply): an appeal's status, by id or by channel + source id."""

    appeal_id: str | None = Field(None, max_length=40, description="The appeal id (as in the receipt).")
    channel: str | None = Field(None, max_length=32, description="With source_id: the channel the appeal came on.")
    source_id: str | None = Field(None, max_length=160, description="With channel: the sender's own id.")

    @model_validator(mode="after")
    def _one_key(self) -> AppealQuery:
        if not self.appeal_id and not (self.channel and self.source_id):
            raise ValueError("give appeal_id, or channel and source_id")
        return self
