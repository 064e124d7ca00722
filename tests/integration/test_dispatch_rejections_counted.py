"""Dispatch counts the invalid unit actions and feedback it refuses, so a poison message there is alerted on.

``coffeetime_rejected_total{service="dispatch"}`` is what the alert CoffeetimeInboundRejections reads
(deploy/prometheus/alerts.yml); intake counts its own subjects the same way.
"""

from __future__ import annotations

import uuid

import pytest

from services.dispatch.__main__ import create_service as create_dispatch
from shared import metrics
from shared.contracts import subjects
from tests.support import Recorder, publish, running, wait_for

pytestmark = pytest.mark.integration


def rejected(subject: str) -> float:
    return metrics.registry.get_sample_value("coffeetime_rejected_total",
                                             {"service": "dispatch", "subject": subject}) or 0.0


async def test_each_invalid_unit_action_and_feedback_is_refused_and_counted_once(servers, js, nc):
    rec = await Recorder(nc).watch(subjects.ORDER_REJECTED)
    tag = uuid.uuid4().hex[:8]
    try:
        async with running(create_dispatch, servers):
            actions, feedback = rejected(subjects.IN_ORDER_ALL), rejected(subjects.IN_FEEDBACK)
            await publish(js, subjects.order_action_subject("traffic_police", "sign"), b"\x00not json{",
                          msg_id=f"poison-action-{tag}")
            await publish(js, subjects.order_action_subject("traffic_police", "reply"),
                          {"action_id": f"A-{tag}", "order_id": f"O-{tag}", "actor": "张科长"},  # no reply, resolved
                          msg_id=f"A-{tag}")
            await publish(js, subjects.IN_FEEDBACK, b"\xff\xfe{", msg_id=f"poison-feedback-{tag}")
            await wait_for(lambda: len(rec.on(subjects.ORDER_REJECTED, order_id=f"O-{tag}")) == 1
                           and len([r for r in rec.on(subjects.ORDER_REJECTED) if r.get("action") == "feedback"]) >= 1,
                           what="the rejections")
            await wait_for(lambda: rejected(subjects.IN_ORDER_ALL) - actions == 2
                           and rejected(subjects.IN_FEEDBACK) - feedback == 1, what="the counts")
            # the same message published again is dropped by its id: nothing refused or counted twice
            await publish(js, subjects.IN_FEEDBACK, b"\xff\xfe{", msg_id=f"poison-feedback-{tag}")
            await publish(js, subjects.order_action_subject("traffic_police", "reply"),
                          {"action_id": f"A2-{tag}", "order_id": f"O2-{tag}", "actor": "张科长"}, msg_id=f"A2-{tag}")
            await wait_for(lambda: rec.on(subjects.ORDER_REJECTED, order_id=f"O2-{tag}"), what="the later one")
            await wait_for(lambda: rejected(subjects.IN_ORDER_ALL) - actions == 3, what="its count")
            assert rejected(subjects.IN_FEEDBACK) - feedback == 1
    finally:
        await rec.close()
    assert all(r["reason"] == "invalid" for r in rec.on(subjects.ORDER_REJECTED)
               if r.get("order_id") in (f"O-{tag}", f"O2-{tag}"))
