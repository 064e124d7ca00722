"""Quiet hours (免打扰时段): a daily window in which deferrable SMS to the enterprise wait until it ends."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.notify.domain.templates import TemplateKind

SHANGHAI = ZoneInfo("Asia/Shanghai")


DEFAULT_DEFER_KINDS: frozenset[TemplateKind] = frozenset(
    {TemplateKind.rating_invitation, TemplateKind.reminder, TemplateKind.closing}
)


@dataclass(frozen=True)
class QuietWindow:
    """A daily window of local time in which deferrable SMS wait (``start`` inclusive, ``end`` exclusive)."""

    start: time
    end: time

    @property
    def spans_midnight(self) -> bool:
        """Whether the window runs across midnight (``22:00-08:00``)."""
        return self.start > self.end

    def contains(self, t: time) -> bool:
        """Whether local time ``t`` falls in the window."""
        if self.spans_midnight:
            return t >= self.start or t < self.end
        return self.start <= t < self.end


_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_quiet_hours(value: str | None) -> QuietWindow | None:
    """``"22:00-08:00"`` → a :class:`QuietWindow`; an empty string or ``None`` → no quiet hours.

    Raises ``ValueError`` for anything else, naming the expected form.
    """
    if value is None or not value.strip():
        return None
    m = _WINDOW.match(value)
    if not m:
        raise ValueError(f"quiet hours {value!r}: expected HH:MM-HH:MM such as 22:00-08:00, or empty to turn them off")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f"quiet hours {value!r}: hours run 00-23 and minutes 00-59")
    if (h1, m1) == (h2, m2):
        raise ValueError(f"quiet hours {value!r}: start equals end; use an empty string to turn them off")
    return QuietWindow(time(h1, m1), time(h2, m2))


def next_send_time(
    now: datetime,
    quiet_hours: str | QuietWindow | None,
    template_kind: str | TemplateKind,
    urgent: bool,
    *,
    defer_kinds: frozenset[TemplateKind] | Sequence[TemplateKind] = DEFAULT_DEFER_KINDS,
    tz: ZoneInfo = SHANGHAI,
) -> datetime:
    """When an SMS of ``template_kind`` may go: ``now``, or the end of quiet hours.

    Only kinds in ``defer_kinds`` (rating invitations, reminders, closing notes by
    default) wait; a receipt or anything about an urgent appeal goes at once. A
    window across midnight (``22:00-08:00``) defers 23:00 to 08:00 the next morning
    and 01:30 to 08:00 the same morning. ``now`` must be timezone-aware; the
    deferred time is returned in ``tz``.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    window = parse_quiet_hours(quiet_hours) if quiet_hours is None or isinstance(quiet_hours, str) else quiet_hours
    if window is None or urgent or TemplateKind(template_kind) not in set(defer_kinds):
        return now
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    if not window.contains(t):
        return now
    end_day = local.date()
    if window.spans_midnight and t >= window.start:
        end_day += timedelta(days=1)
    return datetime.combine(end_day, window.end, tzinfo=tz)


class QuietHoursPolicy(BaseModel):
    """When deferrable SMS wait, in which time zone, and which template kinds wait."""

    model_config = ConfigDict(extra="forbid")
    window: str = Field("22:00-08:00", description="HH:MM-HH:MM local time; empty turns quiet hours off.")
    timezone: str = "Asia/Shanghai"
    defer: list[TemplateKind] = Field(default_factory=lambda: sorted(DEFAULT_DEFER_KINDS))

    @field_validator("window")
    @classmethod
    def _valid_window(cls, value: str) -> str:
        parse_quiet_hours(value)
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _valid_tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except Exception:
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def parsed(self) -> QuietWindow | None:
        """The window as a :class:`QuietWindow`; ``None`` when quiet hours are off."""
        return parse_quiet_hours(self.window)

    @property
    def tz(self) -> ZoneInfo:
        """The time zone the window is read in."""
        return ZoneInfo(self.timezone)
