"""The retry budget: how long an outage of a channel the default attempts and back-off ride out."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from services.notify.config import OUTAGE_TO_RIDE_OUT_S, warn_of_a_short_budget
from services.notify.domain import DeliveryPolicy, NotifyRules, after_attempt
from services.notify.domain.retries import backoff_ceiling


def test_the_default_budget_rides_out_a_30_minute_outage():
    policy = DeliveryPolicy()
    assert (policy.max_attempts, policy.backoff_base_seconds, policy.backoff_cap_seconds) == (20, 2.0, 300.0)
    # pauses 1, 2, 4 ... 128 s at the least, then 150 s eleven times: 31 min 45 s
    assert policy.outage_covered() == 255 + 11 * 150 == 1905
    assert policy.outage_covered() >= OUTAGE_TO_RIDE_OUT_S == 30 * 60
    assert policy.longest_retry_span() == 2 * policy.outage_covered() == 3810

def test_the_old_budget_of_six_attempts_rode_out_only_31_seconds():
    assert DeliveryPolicy(max_attempts=6).outage_covered() == 1 + 2 + 4 + 8 + 16

@pytest.mark.parametrize("seed", range(20))
def test_whatever_the_jitter_the_last_attempt_comes_after_the_outage_covered(seed):
    """Walk the domain's own decisions: retries until the budget ends, never sooner than outage_covered()."""

    policy, rng = DeliveryPolicy(), random.Random(seed)
    start = now = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    attempt = 1
    while True:
        outcome = after_attempt(attempt, now, policy, error="HTTP 503", retryable=True, rng=rng)
        if outcome.result == "failed":
            break
        assert outcome.result == "retried"
        now, attempt = outcome.retry_at, attempt + 1
    assert attempt == policy.max_attempts
    elapsed = (now - start).total_seconds()
    assert policy.outage_covered() <= elapsed <= policy.longest_retry_span()

def test_the_ceiling_doubles_up_to_the_cap():
    assert [backoff_ceiling(a, 2.0, 300.0) for a in range(1, 11)] == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert backoff_ceiling(1000, 2.0, 300.0) == 300.0  # no overflow far out

def test_a_budget_too_short_for_30_minutes_is_reported_at_start_up(caplog):
    short = NotifyRules.model_construct(delivery=DeliveryPolicy(max_attempts=6))
    with caplog.at_level("WARNING", logger="coffeetime.notify"):
        assert warn_of_a_short_budget(short) == 31
    assert "rides out a channel outage of only 31 s" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="coffeetime.notify"):
        assert warn_of_a_short_budget(NotifyRules.model_construct(delivery=DeliveryPolicy())) == 1905
    assert caplog.text == ""
