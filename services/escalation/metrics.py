"""Escalation's business metrics: the units' rates this month, open and overdue work, escalations.

Labels are unit codes and ladder levels: bounded by the configuration. The
gauges are refreshed by a background task (:func:`services.escalation.handlers.refresh_unit_gauges`).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import registry

UNIT_CLOSURE_RATE = Gauge("coffeetime_unit_closure_rate", "Closed over due this month (办结率), per unit",
                          ["unit_code"], registry=registry)
UNIT_SATISFACTION_RATE = Gauge("coffeetime_unit_satisfaction_rate",
                               "Satisfied and basically satisfied over rated this month (满意率), per unit",
                               ["unit_code"], registry=registry)
UNIT_ON_TIME_RATE = Gauge("coffeetime_unit_on_time_rate", "Closed on time over due this month, per unit",
                          ["unit_code"], registry=registry)
OPEN_ORDERS = Gauge("coffeetime_open_orders", "Work orders whose handling clock runs, per unit",
                    ["unit_code"], registry=registry)
OVERDUE_ORDERS = Gauge("coffeetime_overdue_orders", "Open work orders past their handling deadline, per unit",
                       ["unit_code"], registry=registry)
ESCALATIONS = Counter("coffeetime_escalations_total", "Ladder steps fired (warnings and escalations), by level",
                      ["level"], registry=registry)
FIRING_LAG = Gauge("coffeetime_escalation_firing_lag_seconds",
                   "How late after its time the latest step fired was, in seconds", registry=registry)
STEP_LATENESS = Histogram(
    "coffeetime_escalation_step_lateness_seconds",
    "How long after its time each ladder step fired (0 in normal running; an outage's backlog shows here)",
    buckets=(1, 5, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400), registry=registry)
DEADLINES_IN_UNKNOWN_YEAR = Gauge(
    "coffeetime_deadlines_in_unknown_year",
    "Open handling deadlines falling in a year neither a loaded State Council schedule nor chinese-calendar "
    "knows (planned on the Monday-Friday guess), by year", ["year"], registry=registry)
DEADLINES_AHEAD = Gauge(
    "coffeetime_deadlines_due_ahead",
    "Open handling deadlines falling due per unit on each of the next seven days "
    "(day 0 = today, Asia/Shanghai; overdue ones are not counted)", ["unit_code", "day"], registry=registry)
DEADLINES_MOVED = Counter("coffeetime_deadlines_replanned_total",
                          "Running deadlines moved by a revised working-day calendar, by clock", ["clock"],
                          registry=registry)
