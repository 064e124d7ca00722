"""A short run of the chaos suite (``make chaos`` runs the long one): nothing lost, nothing done twice.

Each scenario starts servers of its own (tools/chaos.py), the four services as
processes, and counts every call's appeal, orders, deadlines and receipt from
PostgreSQL and from what the SMS gateway was posted, after the system settled.
"""

from __future__ import annotations

import pytest

from tools.chaos import SCENARIOS, Options, run_scenario

pytestmark = pytest.mark.integration


def assert_nothing_lost_or_doubled(result: dict, calls: int) -> None:
    assert "error" not in result, result.get("traceback")
    assert result["published"] == calls
    assert result["checks"]["settled"], result.get("unsettled")
    assert result["lost"] == 0, (result["lost_by_kind"], result["examples"])
    assert result["duplicated"] == 0, (result["duplicated_by_kind"], result["examples"])
    assert result["counts"]["appeals"] == calls
    assert result["counts"]["receipts"] == calls
    failed = [name for name, ok in result["checks"].items() if not ok]
    assert not failed, (failed, result["resent"], result.get("alerted_per_subject"))


async def test_kill_9_of_each_service_in_turn_loses_nothing_and_does_nothing_twice():
    result = await run_scenario(SCENARIOS["kill"], Options(calls=200, rate=20, kill_every_s=2.5, verbose=False))
    assert_nothing_lost_or_doubled(result, 200)
    assert set(result["kills"]) == {"intake", "dispatch", "escalation", "notify"}
    assert result["checks"]["no process exited by itself"], result["unexpected_exits"]
    # an SMS the gateway was posted again is a resend notify counted, of a message in flight at a kill of notify
    resent = result["resent"]
    assert resent["posts"] <= min(resent["counted"], resent["in_flight"]), resent
    assert len(resent["in_flight_by_fault"]) == result["kills"]["notify"]


async def test_a_poison_message_on_every_inbound_subject_is_refused_and_blocks_nothing_behind_it():
    result = await run_scenario(SCENARIOS["poison"], Options(calls=150, rate=20, verbose=False))
    assert_nothing_lost_or_doubled(result, 150)  # the valid calls published behind the poison all went through
    outcomes = result["poison_outcomes"]
    assert len(outcomes) == 24
    assert set(outcomes.values()) <= {"rejected", "dead-lettered"}, result["poison_unaccounted"]
    assert result["checks"]["every poison counted in an alert metric"], result["alerted_per_subject"]
    assert result["checks"]["no process exited by itself"], result["unexpected_exits"]
