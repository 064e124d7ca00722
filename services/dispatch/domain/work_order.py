"""The work order (工单) and what dispatch keeps about its appeal: states, roles, the action's payload.

States (:class:`OrderStatus`)::

    dispatched ─sign─> signed ─reply─> replied ─feedback satisfied─> closed
        │                │                    └─feedback unsatisfied─> reopened (+ a new order, same unit)
        └─return─> returned ─decide_return(reject)─> dispatched
                      └─decide_return(accept) / redispatch─> cancelled (+ a new order, or the manual queue)

``paused`` (待补充材料) is a flag on a signed order too (``paused_at``): the unit waits
for the enterprise and its handling clock stands still; ``resume``, a reply or the
order's end (redispatch) ends the pause. ``pauses`` keeps every pause of the
appeal's handling clock the order knows, its own and those of the orders it
replaces, so the enterprise's clock keeps them.

``extension requested`` is a flag on a signed order (``pending_extension_days``),
cleared by grant_extension, deny_extension or reply; ``escalated`` flags an order
the unit called difficult (疑难或重大). ``closed``, ``reopened`` and
``cancelled`` are final.

Who may act: the unit holding an order does sign / return / progress / extend /
reply / escalate on it; the lead unit (牵头单位, 区行政审批局) does dispatch /
redispatch / grant_extension / deny_extension / decide_return on any order.
An appeal may be returned at most :data:`~.rules.MAX_RETURNS` times; after that the lead
unit's decision is binding.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.dispatch.domain.routing import FALLBACK_CATEGORY
from shared.contracts.common import Rating
from shared.contracts.events import ClockPause
from shared.contracts.inbound import Command


class OrderStatus(StrEnum):
    """Where a work order stands."""

    dispatched = "dispatched"  # given to the unit, not yet signed for (派单)
    signed = "signed"  # accepted by the unit (签收); may carry an extension request
    returned = "returned"  # the unit says it is the wrong unit (退单); the lead unit decides
    replied = "replied"  # the unit answered; the enterprise is asked to rate it
    closed = "closed"  # finished (办结)
    reopened = "reopened"  # rated unsatisfied; a new order went to the same unit (重办)
    cancelled = "cancelled"  # superseded: return accepted or redispatched


LIVE_STATUSES = frozenset({OrderStatus.dispatched, OrderStatus.signed, OrderStatus.returned})
FINAL_STATUSES = frozenset({OrderStatus.closed, OrderStatus.reopened, OrderStatus.cancelled})


class AppealStatus(StrEnum):
    """Where the appeal stands, as dispatch sees it."""

    queued = "queued"  # waiting in the lead unit's manual queue
    in_progress = "in_progress"  # a lead order exists (live, or replied and awaiting the rating)
    following = "following"  # a likely duplicate: no order of its own, it follows its master (重复诉求并单)
    closed = "closed"


class Role(StrEnum):
    """A work order's role in its appeal."""

    lead = "lead"  # 主办
    co = "co"  # 协办


@dataclass(frozen=True)
class WorkOrder:
    """One work order (工单): an appeal given to one unit, lead or co-handling."""

    order_id: str
    appeal_id: str
    unit_code: str
    role: Role = Role.lead
    status: OrderStatus = OrderStatus.dispatched
    reopen_count: int = 0
    dispatched_at: datetime | None = None
    signed_at: datetime | None = None
    replied_at: datetime | None = None
    closed_at: datetime | None = None
    pending_extension_days: int | None = None
    pending_extension_reason: str | None = None
    extension_days_granted: int = 0
    escalated: bool = False
    return_reason: str | None = None
    reply: str | None = None
    resolved: bool | None = None
    replaces_order_id: str | None = None
    paused_at: datetime | None = None
    pause_reason: str | None = None
    pauses: tuple[ClockPause, ...] = ()

    @property
    def paused(self) -> bool:
        """The unit paused the handling clock (待补充材料) and has not resumed it."""
        return self.paused_at is not None

    @property
    def own_pauses(self) -> int:
        """How many pauses this order's unit made (the inherited ones not counted)."""
        return sum(1 for p in self.pauses if p.order_id == self.order_id)

    def pauses_ended(self, now: datetime) -> tuple[ClockPause, ...]:
        """The pauses with an open one ended at ``now`` (a reply, a redispatch, a resume)."""
        return tuple(p.model_copy(update={"ended_at": now}) if p.ended_at is None else p for p in self.pauses)

    @property
    def extension_requested(self) -> bool:
        """An extension (延期) was asked for and the lead unit has not decided yet."""
        return self.pending_extension_days is not None

    @property
    def is_live(self) -> bool:
        """Still with a unit: dispatched, signed or returned."""
        return self.status in LIVE_STATUSES

    @property
    def is_final(self) -> bool:
        """Closed, reopened or cancelled: nothing more happens to it."""
        return self.status in FINAL_STATUSES


WorkOrderState = WorkOrder
"""The name the handler's brief uses for :class:`WorkOrder`."""


@dataclass(frozen=True)
class AppealState:
    """What dispatch keeps about an appeal to act on its orders.

    ``return_count`` counts returns over all its orders; ``orders_issued`` numbers
    new orders (see :func:`order_id_for`); ``unit_codes`` lists every unit that held one.
    """

    appeal_id: str
    received_at: datetime
    category: str = FALLBACK_CATEGORY.name
    deadline_days: int = FALLBACK_CATEGORY.deadline_days
    sign_hours: float = FALLBACK_CATEGORY.sign_hours
    status: AppealStatus = AppealStatus.in_progress
    source_ref: str = ""
    correlation_id: str = ""
    urgent: bool = False
    summary: str = ""
    enterprise_name: str | None = None
    contact_phone: str | None = None
    return_count: int = 0
    orders_issued: int = 0
    unit_codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActionPayload:
    """The fields of a unit's, the lead unit's or the enterprise's action (a command of ``shared.contracts.inbound``)."""

    actor: str = ""
    action_id: str | None = None
    reason: str | None = None
    note: str | None = None
    days: int | None = None
    reply: str | None = None
    resolved: bool | None = None
    unit_code: str | None = None
    co_units: tuple[str, ...] = ()
    accept: bool | None = None
    rating: Rating | str | None = None
    comment: str | None = None
    via: str | None = None
    correlation_id: str | None = None

    @classmethod
    def of(cls, command: Command, correlation_id: str | None = None) -> ActionPayload:
        """The payload of a command (``shared.contracts.inbound``): the fields its action carries."""
        fields = command.model_dump(exclude={"action", "order_id", "appeal_id"})
        if "co_units" in fields:
            fields["co_units"] = tuple(fields["co_units"])
        return cls(**fields, correlation_id=correlation_id)


def order_id_for(appeal_id: str, number: int) -> str:
    """The id of an appeal's n-th work order, deterministic so a redelivered message makes the same order."""
    return f"{appeal_id}-W{number:02d}"
