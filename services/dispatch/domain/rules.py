"""The business rules of dispatch, as named objects: a refused action says which rule it broke.

Each rule names the ``reason`` code it is reported under; the codes are the public
contract (``ct.order.rejected``'s ``reason``, the HTTP status of a refusal), the
rule's ``name`` says more precisely what was wrong. Build a refusal from a rule:
``Refused.because(rules.OrderMustExist, "no such work order")``.
"""

from __future__ import annotations

from typing import ClassVar

UNKNOWN_ORDER = "unknown_order"
NOT_YOUR_ORDER = "not_your_order"
ILLEGAL_TRANSITION = "illegal_transition"
RETURN_LIMIT_REACHED = "return_limit_reached"
INVALID = "invalid"
REASONS = (UNKNOWN_ORDER, NOT_YOUR_ORDER, ILLEGAL_TRANSITION, RETURN_LIMIT_REACHED, INVALID)
"""Every reason code a refusal may carry."""

MAX_RETURNS = 2
"""Returns (退单) one appeal may have; after that the lead unit's decision is binding."""


class BusinessRule:
    """A rule an action must keep: its ``name`` (the class name), ``reason`` code and ``message``."""

    name: ClassVar[str] = "BusinessRule"
    reason: ClassVar[str]
    message: ClassVar[str]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.__name__


Rule = type[BusinessRule]


# --- who may act on which order --------------------------------------------------------------


class OrderMustExist(BusinessRule):
    """The action names a work order (or appeal) that dispatch knows."""

    reason = UNKNOWN_ORDER
    message = "the work order must exist"


class OrderMustBelongToAppeal(BusinessRule):
    """The order acted on is one of the appeal's orders."""

    reason = INVALID
    message = "the order must belong to the appeal acted on"


class OrderMustBeHeldByActingUnit(BusinessRule):
    """Only the unit holding an order signs, returns, reports on, extends, replies to or escalates it."""

    reason = NOT_YOUR_ORDER
    message = "the order must be held by the unit that acts"


class OnlyLeadUnitMayDecide(BusinessRule):
    """Only the lead unit (牵头单位) grants or denies extensions, decides returns, redispatches, dispatches by hand."""

    reason = NOT_YOUR_ORDER
    message = "only the lead unit may decide"


# --- the order's state ------------------------------------------------------------------------


class ActionMustBeLegalInState(BusinessRule):
    """An action applies only in the order states the life of a work order allows (see ``work_order``)."""

    reason = ILLEGAL_TRANSITION
    message = "the action must be legal in the order's state"


class OneExtensionRequestAtATime(BusinessRule):
    """A unit asks for one extension (延期) at a time: a second waits for the lead unit's decision."""

    reason = ILLEGAL_TRANSITION
    message = "an order may have one extension request waiting at a time"


class ExtensionMustBePending(BusinessRule):
    """The lead unit grants or denies only an extension request that is waiting."""

    reason = ILLEGAL_TRANSITION
    message = "an extension request must be waiting"


class OrderIsEscalatedOnce(BusinessRule):
    """An order is flagged difficult (疑难或重大) once; escalation then reports it to the district leader."""

    reason = ILLEGAL_TRANSITION
    message = "an order may be flagged difficult once"


class ClockIsPausedOnce(BusinessRule):
    """A handling clock is paused (待补充材料) once at a time: resume it before pausing again."""

    reason = ILLEGAL_TRANSITION
    message = "the clock is already paused"


class ClockMustBePausedToResume(BusinessRule):
    """Only a paused clock is resumed."""

    reason = ILLEGAL_TRANSITION
    message = "the clock must be paused to resume it"


class PausesMustNotExceedLimit(BusinessRule):
    """A work order's unit pauses its clock at most ``pauses.max_per_order`` times (district configuration)."""

    reason = ILLEGAL_TRANSITION
    message = "the order has paused its clock as often as the configuration allows"


class DispatchByHandTakesNoOrder(BusinessRule):
    """Dispatch by hand (人工派单) takes an appeal from the manual queue; an existing order is redispatched."""

    reason = ILLEGAL_TRANSITION
    message = "dispatch by hand names no order"


class AppealMustBeQueued(BusinessRule):
    """Only an appeal waiting in the manual queue is dispatched by hand."""

    reason = ILLEGAL_TRANSITION
    message = "the appeal must be waiting in the manual queue"


class OrderMustAwaitRating(BusinessRule):
    """Only the replied lead order of an open appeal is rated, or closes unrated."""

    reason = ILLEGAL_TRANSITION
    message = "the order must be the replied lead order of an open appeal"


class DuplicateIsRatedAfterItsMastersReply(BusinessRule):
    """A duplicate that follows its master (重复诉求) is rated once the master's reply reached it, while open."""

    reason = ILLEGAL_TRANSITION
    message = "the master's reply must have reached this duplicate, and it must be open"


class ReturnsMustNotExceedLimit(BusinessRule):
    """An appeal is returned (退单) at most :data:`MAX_RETURNS` times; then the lead unit's decision is binding."""

    reason = RETURN_LIMIT_REACHED
    message = f"an appeal may be returned at most {MAX_RETURNS} times"


# --- what the action carries ------------------------------------------------------------------


class ActionMustBeKnown(BusinessRule):
    """The action is one of ``ACTIONS``."""

    reason = INVALID
    message = "the action must be a known action"


class ActionMustBeWellFormed(BusinessRule):
    """The message parses into its command, with the fields its action needs (checked before the rules: ``UnitCommand``)."""

    reason = INVALID
    message = "the action must be well formed"


class RequiredFieldsMustBeGiven(BusinessRule):
    """An action carries the fields it needs: a return's or escalation's reason, a reply, a decision..."""

    reason = INVALID
    message = "the action's required fields must be given"


class ExtensionDaysMustBePositive(BusinessRule):
    """An extension asked for or granted is a positive number of working days."""

    reason = INVALID
    message = "extension days must be positive"


class RatingMustBeKnown(BusinessRule):
    """A rating is satisfied, basically_satisfied or unsatisfied."""

    reason = INVALID
    message = "the rating must be satisfied, basically_satisfied or unsatisfied"


class TargetUnitMustExist(BusinessRule):
    """A unit an order is sent to is a unit of the district."""

    reason = INVALID
    message = "the target unit must exist"


class TargetUnitMustHandleOrders(BusinessRule):
    """A unit an order is sent to can hold work orders (not the supervision office, 督查室)."""

    reason = INVALID
    message = "the target unit must handle work orders"


class OrderMustMoveToAnotherUnit(BusinessRule):
    """A redispatched order, or one whose return was accepted, goes to another unit than the one it leaves."""

    reason = INVALID
    message = "the order must move to another unit"


class CoUnitsMustBeNamedOnce(BusinessRule):
    """Each unit of a dispatch by hand is named once: the lead unit is not also a co-handler (协办)."""

    reason = INVALID
    message = "each unit must be named once"


RULES: tuple[Rule, ...] = tuple(BusinessRule.__subclasses__())
"""Every rule, in the order above."""

GENERAL_RULES: dict[str, Rule] = {
    UNKNOWN_ORDER: OrderMustExist,
    NOT_YOUR_ORDER: OrderMustBeHeldByActingUnit,
    ILLEGAL_TRANSITION: ActionMustBeLegalInState,
    RETURN_LIMIT_REACHED: ReturnsMustNotExceedLimit,
    INVALID: ActionMustBeWellFormed,
}
"""The rule a refusal built from a bare reason code names (``Refused(reason, detail)``); dispatch itself always names one."""
