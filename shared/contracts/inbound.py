"""Inbound messages: what outside systems and units send (the public contract).

Field names, required fields and values are exactly those of DESIGN.md's table;
add optional fields only. Each model names what the sender did.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

from pydantic import AfterValidator, ConfigDict, Field, HttpUrl, TypeAdapter, ValidationError, model_validator

from shared.contracts.common import (
    AppealKind,
    Content,
    EventKind,
    FieldError,
    Inbound,
    Phone,
    Rating,
    ReceivedTime,
    ReceptionChannel,
    ShortText,
    SourceId,
    UnitCode,
    Uscc,
    error_message,
    past_date,
    printable,
)

OptText = ShortText | None


class HotlineCall(Inbound):
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


class AppAppeal(Inbound):
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


class ReceptionRecord(Inbound):
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


class EventItem(Inbound):
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


class Attendee(Inbound):
    """Someone who attended a coffee event as a "waiter" (服务生), with the role the programme counts."""

    name: ShortText = Field(description="The person's name (or title).")
    role: Literal["district_leader", "department_head", "other"] | None = Field(
        None, description="district_leader (区领导), department_head (部门负责人) or other; absent: looked up by name.")
    unit: OptText = Field(None, description="The unit a department head represents (unit_code, name or alias).")


class EventRecord(Inbound):
    """`ct.in.event`: the record of a coffee event (主活动 or 子活动), one appeal per item."""

    event_id: SourceId = Field(description="The event's id; also the `Nats-Msg-Id`.")
    kind: EventKind = Field(description="main (主活动) or sub (子活动).")
    date: Annotated[dt.date, AfterValidator(past_date)] = Field(
        description="The day the event took place (YYYY-MM-DD), not in the future.")
    organizer_unit: ShortText = Field(description="The organising unit.")
    theme: OptText = Field(None, description="The event's theme, e.g. 企业发展之水电气保障.")
    attendees: list[ShortText | Attendee] = Field(
        default_factory=list, max_length=500,
        description="Leaders and officials who attended: a name (or title) as text, or {name, role, unit}. "
                    "For a text, the programme figures look the role up in the district configuration.")
    items: list[EventItem] = Field(min_length=1, max_length=500, description="The appeals raised.")

    @model_validator(mode="after")
    def _unique_item_numbers(self) -> EventRecord:
        seen = [i.item_no for i in self.items]
        if len(seen) != len(set(seen)):
            raise ValueError("items: item_no values must be unique within an event")
        return self


# --- work-order actions: ct.in.order.<unit_code>.<action> ----------------------
#
# The commands (cosmicpython's domain/commands.py): one class per action, named by
# what it asks for, with exactly the fields that action needs. The action's name is
# the ``action`` literal of its class and exists nowhere else: UnitActionName, the
# domain's ACTIONS, the HTTP route's path enum and the AsyncAPI parameter enum are
# all read from the union below.


class Command(Inbound):
    """A unit's, the lead unit's or the enterprise's request to dispatch; ``action`` names it."""

    #: who may give the command: the unit holding the order, the lead unit (牵头单位), or the enterprise
    given_by: ClassVar[Literal["holding unit", "lead unit", "enterprise"]] = "holding unit"

    action_id: SourceId = Field(description="The sender's id of this action; acting twice with one id does it once.")
    actor: ShortText = Field(description="Who acted (a name or staff id).")

    @classmethod
    def action_name(cls) -> str:
        """The action this command class stands for (its ``action`` literal)."""
        return get_args(cls.model_fields["action"].annotation)[0]


class OrderCommand(Command):
    """A command about one existing work order."""

    order_id: SourceId = Field(description="The work order acted on.")


class SignFor(OrderCommand):
    """签收: the holding unit accepts a dispatched order."""

    action: Literal["sign"] = "sign"


class ReturnOrder(OrderCommand):
    """退单: the holding unit says it is the wrong unit, before signing."""

    action: Literal["return"] = "return"
    reason: str = Field(min_length=1, max_length=2000, description="Why the order is not this unit's.")


class ReportProgress(OrderCommand):
    """The holding unit reports what it did on a signed order."""

    action: Literal["progress"] = "progress"
    note: str = Field(min_length=1, max_length=5000, description="What was done.")


class RequestExtension(OrderCommand):
    """延期: the holding unit asks the lead unit for more working days."""

    action: Literal["extend"] = "extend"
    days: int = Field(ge=1, le=120, description="Extra working days asked for.")
    reason: str = Field(min_length=1, max_length=2000, description="Why.")


class Reply(OrderCommand):
    """答复: the holding unit answers the enterprise."""

    action: Literal["reply"] = "reply"
    reply: str = Field(min_length=1, max_length=5000, description="The unit's answer to the enterprise.")
    resolved: bool = Field(description="Whether the problem is solved.")


class RequestEscalation(OrderCommand):
    """疑难或重大: the holding unit flags the order difficult or major."""

    action: Literal["escalate"] = "escalate"
    reason: str = Field(min_length=1, max_length=2000, description="Why.")


class PauseClock(OrderCommand):
    """待补充材料: the holding unit pauses its handling clock while it waits for the enterprise.

    Only a signed order, one pause at a time, at most ``pauses.max_per_order``
    (district configuration) per order; a pause lasts at most
    ``pauses.max_working_days``, after which the clock runs again by itself.
    """

    action: Literal["pause"] = "pause"
    reason: str = Field(min_length=1, max_length=2000, description="What the unit waits for from the enterprise.")


class ResumeClock(OrderCommand):
    """The holding unit resumes a paused handling clock (the enterprise's materials arrived)."""

    action: Literal["resume"] = "resume"
    note: str | None = Field(None, min_length=1, max_length=5000, description="What arrived.")


class DispatchByHand(Command):
    """人工派单: the lead unit dispatches an appeal waiting in the manual queue."""

    given_by: ClassVar = "lead unit"
    action: Literal["dispatch"] = "dispatch"
    order_id: SourceId | None = Field(None, description="Must be absent: an existing order is redispatched.")
    appeal_id: str = Field(min_length=1, max_length=40, description="The appeal taken from the manual queue.")
    unit_code: UnitCode = Field(description="The lead handling unit (主办).")
    co_units: list[UnitCode] = Field(default_factory=list, max_length=10, description="Co-handling units (协办).")


class Redispatch(OrderCommand):
    """改派: the lead unit moves a live order to another unit."""

    given_by: ClassVar = "lead unit"
    action: Literal["redispatch"] = "redispatch"
    unit_code: UnitCode = Field(description="The unit that gets the order.")


class GrantExtension(OrderCommand):
    """The lead unit grants a waiting extension request."""

    given_by: ClassVar = "lead unit"
    action: Literal["grant_extension"] = "grant_extension"
    days: int | None = Field(None, ge=1, le=120, description="Days granted; the days asked for when absent.")


class DenyExtension(OrderCommand):
    """The lead unit denies a waiting extension request; the deadline stands."""

    given_by: ClassVar = "lead unit"
    action: Literal["deny_extension"] = "deny_extension"
    reason: str = Field(min_length=1, max_length=2000, description="Why.")


class DecideReturn(OrderCommand):
    """退单审核: the lead unit accepts a return (optionally naming the next unit) or sends the order back."""

    given_by: ClassVar = "lead unit"
    action: Literal["decide_return"] = "decide_return"
    accept: bool = Field(description="true accepts the return, false sends the order back to its unit.")
    unit_code: UnitCode | None = Field(None, description="With accept: the unit that gets a new order "
                                                         "(absent: a lead order's appeal waits in the manual queue).")


class Rate(Command):
    """回访: the enterprise rates the reply (from ``ct.in.feedback``, see :meth:`from_feedback`)."""

    given_by: ClassVar = "enterprise"
    action: Literal["feedback"] = "feedback"
    actor: ShortText = Field("enterprise", description="Who rated.")
    appeal_id: str = Field(min_length=1, max_length=40, description="The appeal rated.")
    rating: Rating = Field(description="satisfied, basically_satisfied or unsatisfied.")
    comment: str | None = Field(None, max_length=2000, description="Free text.")
    via: OptText = Field(None, description="app, sms, call, survey ...")

    @classmethod
    def from_feedback(cls, feedback: Feedback) -> Rate:
        """The command of one ``ct.in.feedback`` message (its feedback id is the action id)."""
        return cls(action_id=feedback.feedback_id, actor=feedback.via or "enterprise", appeal_id=feedback.appeal_id,
                   rating=feedback.rating, comment=feedback.comment, via=feedback.via)


UNIT_COMMANDS: tuple[type[Command], ...] = (
    SignFor, ReturnOrder, ReportProgress, RequestExtension, Reply, RequestEscalation, PauseClock, ResumeClock,
    DispatchByHand, Redispatch, GrantExtension, DenyExtension, DecideReturn,
)
"""The commands of ``ct.in.order.<unit_code>.<action>``, in the order the contract lists them."""

UnitCommand = Annotated[Union[UNIT_COMMANDS], Field(discriminator="action")]  # noqa: UP007 - a tuple of classes
"""One unit action, told apart by ``action`` (from the subject, or the HTTP path)."""

AnyCommand = Annotated[Union[(*UNIT_COMMANDS, Rate)], Field(discriminator="action")]  # noqa: UP007
"""Any command dispatch acts on: a unit action or the enterprise's rating."""

UNIT_COMMAND = TypeAdapter(UnitCommand)
COMMAND_OF: dict[str, type[Command]] = {c.action_name(): c for c in (*UNIT_COMMANDS, Rate)}
"""Action name → its command class (the unit actions and ``feedback``)."""

UnitActionName = Literal[tuple(c.action_name() for c in UNIT_COMMANDS)]  # type: ignore[valid-type]
"""The last token of ``ct.in.order.<unit_code>.<action>``, read from the commands."""
UNIT_ACTIONS: tuple[str, ...] = tuple(c.action_name() for c in UNIT_COMMANDS if c.given_by == "holding unit")
LEAD_ACTIONS: tuple[str, ...] = tuple(c.action_name() for c in UNIT_COMMANDS if c.given_by == "lead unit")
ORDER_ACTIONS: tuple[str, ...] = tuple(c.action_name() for c in UNIT_COMMANDS if issubclass(c, OrderCommand))
"""The actions on an existing order (every one but ``dispatch``)."""


def unit_command(action: str, body: dict[str, Any]) -> Command:
    """The command of ``action`` with the fields of ``body``; raises ``ValidationError`` naming each bad field.

    ``action`` wins over any ``action`` in the body (it comes from the subject or
    the path). :func:`command_errors` turns the error into one entry per field.
    """
    return UNIT_COMMAND.validate_python({**body, "action": action})


def parse_unit_command(action: str, body: dict[str, Any]) -> tuple[Command | None, list[FieldError]]:
    """:func:`unit_command`, or None and one error per field (an unknown action is an error of ``action``)."""
    try:
        return unit_command(action, body), []
    except ValidationError as exc:
        return None, command_errors(exc)


def command_errors(exc: ValidationError) -> list[FieldError]:
    """One error per field of a failed :func:`unit_command`, named as in the body (``days``, not ``extend.days``)."""
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        if err["type"] == "union_tag_invalid":
            out.append(FieldError(field="action", message=printable(f"unknown action {err['ctx']['tag']!r}")))
            continue
        loc = list(err["loc"])
        if loc and loc[0] in COMMAND_OF:
            loc = loc[1:]  # the union's tag
        out.append(FieldError(field=printable(".".join(str(p) for p in loc) or "body", 200), message=error_message(err)))
    return out


class UnitAction(Inbound):
    """`ct.in.order.<unit_code>.<action>`: a unit acts on one of its work orders.

    The action comes from the subject; fields that the action does not use are ignored.
    """

    action_id: SourceId = Field(description="The unit's id of this action; acting twice with one id does it once.")
    order_id: SourceId | None = Field(None, description="The work order acted on (required for every action but `dispatch`).")
    actor: ShortText = Field(description="Who in the unit acted (a name or staff id).")
    reason: str | None = Field(None, min_length=1, max_length=2000,
                               description="return, extend, escalate, pause, deny_extension: why.")
    note: str | None = Field(None, min_length=1, max_length=5000, description="progress: what was done; resume: what arrived.")
    days: int | None = Field(None, ge=1, le=120, description="extend / grant_extension: extra working days.")
    reply: str | None = Field(None, min_length=1, max_length=5000, description="reply: the unit's answer to the enterprise.")
    resolved: bool | None = Field(None, description="reply: whether the problem is solved.")
    # lead unit only
    appeal_id: str | None = Field(None, max_length=40, description="dispatch: the appeal taken from the manual queue.")
    unit_code: UnitCode | None = Field(None, description="dispatch / redispatch / decide_return: the unit that gets the order.")
    co_units: list[UnitCode] = Field(default_factory=list, max_length=10, description="dispatch: co-handling units (协办).")
    accept: bool | None = Field(None, description="decide_return: true accepts the return, false sends the order back.")

    def command(self, action: str) -> tuple[Command | None, list[FieldError]]:
        """This message as the command of ``action`` (from its subject), or the errors of each field it lacks.

        The wire model is permissive (one schema for every action); the command has
        exactly the fields ``action`` needs, required ones required.
        """
        return parse_unit_command(action, self.model_dump(exclude_unset=True, exclude_none=True))


FOLLOW_UP = "follow_up"
"""``via`` of a follow-up call (抽查回访) of a drawn appeal: escalation's, it neither closes nor reopens."""

FollowUpOutcome = Literal["not_done", "no_further_visit", "no_rating_yet"]
"""A follow-up call without a rating: 回访未执行 (not done), 不再回访 (no further visit), 暂无评价 (no rating yet)."""


class Feedback(Inbound):
    """`ct.in.feedback`: the enterprise's rating of the reply (回访), or a follow-up call's outcome (抽查回访).

    ``rating`` is required unless ``outcome`` says the follow-up call gave none;
    a message valid before ``outcome`` existed is valid and means the same.
    """

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["rating"]}, {"required": ["outcome"]}]})

    feedback_id: SourceId = Field(description="The sender's id of this feedback; also the `Nats-Msg-Id`.")
    appeal_id: str = Field(min_length=1, max_length=40, description="The appeal rated.")
    rating: Rating | None = Field(None, description="satisfied, basically_satisfied or unsatisfied; required "
                                                    "unless `outcome` is given.")
    comment: str | None = Field(None, max_length=2000, description="Free text.")
    via: OptText = Field(None, description="app, sms, call, survey ...; `follow_up` for a follow-up call of a "
                                           "drawn appeal (抽查回访), which neither closes nor reopens the appeal.")
    outcome: FollowUpOutcome | None = Field(
        None, description="A follow-up call without a rating (via follow_up): not_done (回访未执行), "
                          "no_further_visit (不再回访) or no_rating_yet (暂无评价). Absent: the call gave `rating`.")
    caller: OptText = Field(None, description="Follow-up: who made the call (staff id or name).")

    @model_validator(mode="after")
    def _rating_or_outcome(self) -> Feedback:
        if self.outcome is None and self.rating is None:
            raise ValueError("rating: required (satisfied, basically_satisfied or unsatisfied) unless outcome is given")
        if self.outcome is not None and self.rating is not None:
            raise ValueError("outcome: a follow-up outcome without a rating; give rating or outcome, not both")
        if self.outcome is not None and self.via not in (None, FOLLOW_UP):
            raise ValueError(f"via: an outcome comes from a follow-up call (via {FOLLOW_UP})")
        return self

    @property
    def is_follow_up(self) -> bool:
        """A follow-up call of a drawn appeal (抽查回访): counted by escalation, not a rating of the reply."""
        return self.via == FOLLOW_UP or self.outcome is not None


class AppealQuery(Inbound):
    """`ct.q.appeal` (request-reply): an appeal's status, by id or by channel + source id."""

    appeal_id: str | None = Field(None, max_length=40, description="The appeal id (as in the receipt).")
    channel: str | None = Field(None, max_length=32, description="With source_id: the channel the appeal came on.")
    source_id: str | None = Field(None, max_length=160, description="With channel: the sender's own id.")

    @model_validator(mode="after")
    def _one_key(self) -> AppealQuery:
        if not self.appeal_id and not (self.channel and self.source_id):
            raise ValueError("give appeal_id, or channel and source_id")
        return self
