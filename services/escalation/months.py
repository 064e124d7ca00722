"""Months of the evaluation, in Asia/Shanghai: ``YYYY-MM``, its bounds, this month and the one before."""

from __future__ import annotations

from datetime import datetime

from shared import clock
from shared.contracts.common import MONTH, SHANGHAI

__all__ = ["MONTH", "current_month", "month_bounds", "previous_month"]


def current_month(now: datetime | None = None) -> str:
    """This month in Asia/Shanghai, ``YYYY-MM``."""
    return (now or clock.now()).astimezone(SHANGHAI).strftime("%Y-%m")


def previous_month(now: datetime | None = None) -> str:
    """The month before the current one in Asia/Shanghai, ``YYYY-MM``."""
    first = (now or clock.now()).astimezone(SHANGHAI).replace(day=1)
    year, month = (first.year, first.month - 1) if first.month > 1 else (first.year - 1, 12)
    return f"{year:04d}-{month:02d}"


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[first moment, first moment of the next month) of ``YYYY-MM`` in Asia/Shanghai."""
    if not MONTH.match(month):
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    year, mon = int(month[:4]), int(month[5:])
    start = datetime(year, mon, 1, tzinfo=SHANGHAI)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=SHANGHAI)
    return start, end
