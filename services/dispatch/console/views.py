"""The console's pure rules: a deadline's colour, the actions an order offers, the due-date filters, the month's
district figures.

No I/O here; ``tests/unit/test_console.py`` checks them without a server.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from services.dispatch.console.queries import OrderFilter
from shared.contracts.common import SHANGHAI

WARNING_WINDOW = timedelta(hours=24)
"""A live order due within this is shown as a warning (临期)."""

DEADLINE_STATES = ("on_time", "warning", "overdue", "paused", "returned", "done")
DUE_FILTERS = ("today", "tomorrow", "week", "overdue", "paused", "returned", "extension")
DONE = ("replied", "closed", "reopened", "cancelled")

UNIT_FORMS = {"dispatched": ("sign", "return"), "signed": ("progress", "extend", "reply", "escalate", "pause")}
"""The holding unit's actions a page offers by order status (the use case decides; these are the sensible ones)."""
PAUSED_FORMS = ("resume", "progress", "reply", "escalate")
"""A signed order whose clock is paused: resume it, report, reply (which ends the pause) or flag it difficult;
no extension while the clock stands still, and no second pause (``ClockIsPausedOnce``)."""


def deadline_state(order: dict[str, Any], now: datetime) -> str:
    """How an order stands against its deadline: on_time, warning, overdue, paused, returned or done.

    ``paused``: the unit paused the handling clock (待补充材料, ``paused_at`` set): a
    paused clock neither warns nor escalates, so it is not ``warning``; it is still
    ``overdue`` past its deadline, since a pause that begins after the deadline counts
    nothing (escalation's rule: an overdue unit cannot pause its way off the ladder).
    ``returned``: returned and waiting for the lead unit's decision (退单待审): out of
    the unit's hands, though no clock stops for it.
    A dispatched order past its sign-for deadline is overdue too (签收超时).
    """
    status = order.get("status")
    if status in DONE:
        return "done"
    if status == "returned":
        return "returned"
    due, sign_due = order.get("due_at"), order.get("sign_due_at")
    if status == "dispatched" and sign_due is not None and sign_due < now:
        return "overdue"
    if due is not None and due < now:
        return "overdue"
    if order.get("paused_at") is not None:
        return "paused"
    if due is None:
        return "on_time"
    return "warning" if due - now <= WARNING_WINDOW else "on_time"


def unit_forms(order: dict[str, Any], pausing_allowed: bool = True) -> tuple[str, ...]:
    """The actions the order's own unit is offered: by status, and for a signed order by its clock.

    ``pausing_allowed``: the district allows pauses at all (``pauses.max_per_order`` > 0).
    """
    if order.get("status") == "signed" and order.get("paused_at") is not None:
        return PAUSED_FORMS
    forms = UNIT_FORMS.get(order.get("status") or "", ())
    return forms if pausing_allowed else tuple(f for f in forms if f != "pause")


def day_start(day, tz=SHANGHAI) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


def order_filter(now: datetime, *, unit_code: str | None = None, status: str | None = None,
                 category: str | None = None, due: str | None = None, search: str | None = None) -> OrderFilter:
    """The list's filter from the page's choices; due dates are Asia/Shanghai calendar days.

    today / tomorrow: live orders due that day; week: due from today to the end of
    Sunday; overdue: live orders past their deadline now; paused: returned orders
    waiting for the lead unit; extension: an extension request waiting.
    """
    today = day_start(now.astimezone(SHANGHAI).date())
    window: tuple[datetime | None, datetime | None] = (None, None)
    if due == "today":
        window = (today, today + timedelta(days=1))
    elif due == "tomorrow":
        window = (today + timedelta(days=1), today + timedelta(days=2))
    elif due == "week":
        window = (today, today + timedelta(days=7 - today.weekday()))
    return OrderFilter(unit_code=unit_code or None, status=status or None, category=category or None,
                       due_from=window[0], due_to=window[1], overdue_at=now if due == "overdue" else None,
                       paused=due == "paused", returned=due == "returned", pending_extension=due == "extension",
                       search=(search or "").strip()[:100] or None)


def district_figures(units: list[dict[str, Any]]) -> dict[str, Any]:
    """The month's district totals from the ranking's rows, and the rates of those totals.

    The same definitions as escalation's per unit (closure = closed / due,
    satisfaction = (satisfied + basically) / rated, on time = closed on time / due),
    over the sums; None where the denominator is 0.
    """
    def total(name: str) -> int:
        return sum(int(u.get(name) or 0) for u in units)

    def rate(num: str, den: str) -> float | None:
        d = total(den)
        return total(num) / d if d else None

    return {
        "received": total("received"), "due": total("due"), "closed": total("closed"),
        "overdue": total("overdue"), "returned": total("returned"), "reopened": total("reopened"),
        "rated": total("rated"),
        "closure_rate": rate("closed", "due"), "satisfaction_rate": rate("satisfied_or_basically", "rated"),
        "on_time_rate": rate("closed_on_time", "due"), "sign_on_time_rate": rate("signed_on_time", "received"),
    }


def percent(value: float | None) -> str:
    """A rate as a percentage with one decimal, or a dash."""
    return "—" if value is None else f"{value * 100:.1f} %"
