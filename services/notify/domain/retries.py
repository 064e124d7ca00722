"""Retries: the attempt budget, back-off with jitter, and what one delivery attempt leads to.

Jitter comes from a source the caller passes in (a ``random.Random``, seeded in tests),
so the same inputs give the same delays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field


class RandomSource(Protocol):
    """Where jitter comes from: anything with ``random() -> float`` in ``[0, 1)``, such as ``random.Random``."""

    def random(self) -> float:
        """A number in ``[0, 1)``."""
        ...


def backoff(attempt: int, base: float = 2.0, cap: float = 300.0, *, rng: RandomSource) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 = the first attempt).

    Exponential with "equal jitter": the ceiling is ``min(cap, base * 2**(attempt-1))``
    and the delay lies in ``[ceiling/2, ceiling]``, so retries spread out but never
    come at once. ``rng`` supplies the jitter (``random.Random``; seed it to repeat).
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if base <= 0 or cap <= 0:
        raise ValueError("base and cap must be positive")
    ceiling = backoff_ceiling(attempt, base, cap)
    r = rng.random()
    return ceiling / 2 + r * ceiling / 2


def backoff_ceiling(attempt: int, base: float, cap: float) -> float:
    """The longest pause after failed attempt ``attempt``: ``min(cap, base * 2**(attempt-1))``."""
    return cap if attempt > 64 else min(cap, base * 2 ** (attempt - 1))


class DeliveryPolicy(BaseModel):
    """Attempts, back-off and the per-attempt timeout of every channel.

    The default budget, 20 attempts with pauses doubling from 2 s up to 300 s, keeps
    a message trying for at least 31 min 45 s (every jitter at its low end) and at
    most 63 min 30 s: a channel outage of 30 minutes loses nothing.
    """

    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(20, ge=1, le=50)
    backoff_base_seconds: float = Field(2.0, gt=0)
    backoff_cap_seconds: float = Field(300.0, gt=0)
    timeout_seconds: float = Field(10.0, gt=0, le=120)

    def delay(self, attempt: int, rng: RandomSource) -> float:
        """Seconds before the retry that follows failed attempt ``attempt``, its jitter drawn from ``rng``."""
        return backoff(attempt, self.backoff_base_seconds, self.backoff_cap_seconds, rng=rng)

    def outage_covered(self) -> float:
        """The longest channel outage the budget rides out, in seconds, whatever the jitter.

        A message whose first attempt fails as the outage begins makes its last attempt
        no sooner than the sum of the shortest pauses (half of each ceiling) after it;
        an outage shorter than that ends before the budget does. Time spent in the
        attempts themselves only lengthens it, and is not counted.
        """
        return sum(backoff_ceiling(a, self.backoff_base_seconds, self.backoff_cap_seconds) / 2
                   for a in range(1, self.max_attempts))

    def longest_retry_span(self) -> float:
        """The longest time from a message's first attempt to its last, in seconds (every jitter at its top)."""
        return sum(backoff_ceiling(a, self.backoff_base_seconds, self.backoff_cap_seconds)
                   for a in range(1, self.max_attempts))


AttemptResult = Literal["delivered", "retried", "failed"]


@dataclass(frozen=True)
class AttemptOutcome:
    """What one delivery attempt leads to: delivered, a retry at ``retry_at``, or a final failure."""

    result: AttemptResult
    retry_at: datetime | None = None
    error: str | None = None


def after_attempt(
    attempt: int,
    now: datetime,
    policy: DeliveryPolicy,
    *,
    error: str | None = None,
    retryable: bool = False,
    rng: RandomSource,
) -> AttemptOutcome:
    """The outcome of attempt number ``attempt`` (from 1): no error is delivered; a retryable
    error is retried after back-off with jitter (drawn from ``rng``) until ``policy.max_attempts``;
    anything else fails."""
    if error is None:
        return AttemptOutcome("delivered")
    if retryable and attempt < policy.max_attempts:
        return AttemptOutcome("retried", now + timedelta(seconds=policy.delay(attempt, rng)), error)
    if retryable:
        error = f"{error} (gave up after {attempt} attempts)"
    return AttemptOutcome("failed", None, error)


def outcome_event_id(notification_id: str, result: AttemptResult) -> str:
    """The stable id of a notification's outcome event (one per notification and result)."""
    return f"ntf-{notification_id}-{result}"
