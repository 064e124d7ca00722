"""Which events stop, re-plan or escalate an order's clocks (:func:`clock_change`)."""

from __future__ import annotations

from dataclasses import dataclass

from services.escalation.domain.ladder import CLOCKS, LADDER, Clock, Level, TargetLevel


@dataclass(frozen=True)
class ClockChange:
    """What an event does to an order's clocks.

    ``stops``: clocks whose pending firings are cancelled for good.
    ``replans``: clocks whose pending firings are cancelled and planned anew
    (a new deadline or a new order). ``escalate_now``: a level to fire at once.
    Firings that already fired stay in the record either way.
    """

    stops: frozenset[Clock] = frozenset()
    replans: frozenset[Clock] = frozenset()
    escalate_now: TargetLevel | None = None

    def cancels(self, clock: Clock) -> bool:
        """Whether the pending firings of ``clock`` are cancelled by the event."""
        return clock in self.stops or clock in self.replans


_BOTH: frozenset[Clock] = frozenset(CLOCKS)
_CLOCK_CHANGES: dict[str, ClockChange] = {
    # a new work order: both clocks start
    "order.dispatched": ClockChange(replans=_BOTH),
    # signing for it stops the sign-for clock; the handling clock runs on
    "order.signed": ClockChange(stops=frozenset({"sign_for"})),
    # a return answers the dispatch in time; the lead unit decides next
    "order.returned": ClockChange(stops=frozenset({"sign_for"})),
    # an accepted return ends this order (the appeal is re-dispatched as a new order)
    "order.return_decided.accepted": ClockChange(stops=_BOTH),
    # a reply stops the handling clock (the enterprise now rates it), and a
    # sign-for clock still running: replying is more than signing
    "order.replied": ClockChange(stops=_BOTH),
    # a granted extension moves the handling deadline
    "order.extension_granted": ClockChange(replans=frozenset({"handling"})),
    # the unit pauses its handling clock (待补充材料) or resumes it: the deadline and the steps move
    "order.paused": ClockChange(replans=frozenset({"handling"})),
    "order.resumed": ClockChange(replans=frozenset({"handling"})),
    # the unit flags the appeal difficult: the district leader hears at once, clocks run on
    "order.escalation_requested": ClockChange(escalate_now="difficult"),
    # the appeal is finished, or follows a master appeal from now on
    "appeal.closed": ClockChange(stops=_BOTH),
    "appeal.merged": ClockChange(stops=_BOTH),
    # unsatisfied: the reopened order gets a new handling clock, counted from the reopening
    "appeal.reopened": ClockChange(replans=frozenset({"handling"})),
}

#: The events that change clocks, by their subject without ``ct.``.
CLOCK_EVENTS: frozenset[str] = frozenset(_CLOCK_CHANGES)


def clock_change(event: str, accepted: bool | None = None) -> ClockChange:
    """What ``event`` (``ct.order.signed`` or ``order.signed``) does to the order's clocks.

    For ``order.return_decided`` pass ``accepted``: an accepted return ends the
    order's clocks, a refused one changes nothing (the handling clock never
    stopped). Any other event changes nothing.
    """
    name = event.removeprefix("ct.")
    if name == "order.return_decided" and accepted:
        name = "order.return_decided.accepted"
    return _CLOCK_CHANGES.get(name, ClockChange())


def cancelled_levels(event: str, clock: Clock, accepted: bool | None = None) -> set[Level]:
    """The pending levels of ``clock`` that ``event`` cancels (all of them, or none)."""
    return set(LADDER) if clock_change(event, accepted).cancels(clock) else set()
