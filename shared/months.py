"""Months of reports and evaluations, in Asia/Shanghai: ``YYYY-MM``, its bounds, shifts, this month and the one before.

:data:`MONTH` is what a caller may ask for (years 2000-2999, the years times may lie in); the arithmetic takes
any four-digit year, so a window reaching back before 2000 from 2000-01 still has its bounds."""

from __future__ import annotations

import re
from datetime import datetime

from shared import clock
from shared.contracts.common import SHANGHAI

MONTH = re.compile(r"^2[0-9]{3}-(0[1-9]|1[0-2])$", re.ASCII)
"""A month a caller may ask for: ``YYYY-MM`` in 2000-2999."""
_ANY_MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$", re.ASCII)


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
    if not isinstance(month, str) or not _ANY_MONTH.match(month):
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    year, mon = int(month[:4]), int(month[5:])
    start = datetime(year, mon, 1, tzinfo=SHANGHAI)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=SHANGHAI)
    return start, end


def shift_month(month: str, by: int) -> str:
    """``month`` moved by ``by`` months (negative: earlier)."""
    month_bounds(month)
    index = int(month[:4]) * 12 + int(month[5:]) - 1 + by
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_of(at: datetime) -> str:
    """The month (Asia/Shanghai) of a moment."""
    return at.astimezone(SHANGHAI).strftime("%Y-%m")
