"""The packaged rules file gives the same retry budget as the code's default (it once said 6 attempts)."""

from __future__ import annotations

from services.notify.config import OUTAGE_TO_RIDE_OUT_S, load_rules
from services.notify.domain import DeliveryPolicy


def test_the_packaged_rules_file_keeps_the_default_budget_of_20_attempts():
    delivery = load_rules(env={}).delivery
    assert delivery == DeliveryPolicy()
    assert delivery.max_attempts == 20
    assert delivery.outage_covered() >= OUTAGE_TO_RIDE_OUT_S
