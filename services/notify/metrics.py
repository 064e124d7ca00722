"""Notify's metrics: delivery attempts by channel and outcome, send latency, resends, SMS replies.

Labels are bounded: three channels, three outcomes, four reply outcomes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import registry

NOTIFICATIONS = Counter(
    "coffeetime_notifications_total", "Delivery attempts by channel and outcome (delivered, failed, retried)",
    ["channel", "outcome"], registry=registry,
)
PLANNED = Counter("coffeetime_notifications_planned_total", "Notifications planned (new rows), by channel",
                  ["channel"], registry=registry)
SEND_SECONDS = Histogram(
    "coffeetime_notification_send_seconds", "Time one delivery attempt took, by channel", ["channel"],
    buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30), registry=registry,
)
SMS_REPLIES = Counter(
    "coffeetime_sms_replies_total", "SMS replies received (accepted, not_understood, unknown_phone, duplicate)",
    ["outcome"], registry=registry,
)
RESENDS = Counter(
    "coffeetime_notification_resends_total",
    "Sends of a message whose earlier send was cut short with its outcome unknown (a crash or a database outage "
    "mid-send), by channel: the recipient may get it twice when the gateway does not drop a repeated id",
    ["channel"], registry=registry,
)
UNRECORDED = Gauge(
    "coffeetime_notification_outcomes_unrecorded",
    "Send outcomes known but not yet recorded (kept in memory while PostgreSQL is unreachable), by channel",
    ["channel"], registry=registry,
)
