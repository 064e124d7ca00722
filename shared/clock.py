"""The one source of "now" for the whole code base, so tests can move time.

Production reads the system clock. Tests and the accelerated demo call
:func:`set_clock` with a function returning an aware datetime.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

_source: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """The current time, always timezone-aware."""
    return _source()


def set_clock(source: Callable[[], datetime] | None) -> None:
    """Replace the clock (``None`` restores the system clock)."""
    global _source
    _source = source or (lambda: datetime.now(UTC))
