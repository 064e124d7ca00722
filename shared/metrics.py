"""Prometheus metrics shared by the services (one process = one service; `service` label).

Label values are bounded: services, subjects, channels, levels, unit codes. Never an appeal id.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

registry = REGISTRY

MESSAGES = Counter("coffeetime_messages_handled_total", "Inbound messages by outcome",
                   ["service", "subject", "outcome"])  # outcome: ok, rejected, duplicate, retried, dead_lettered
DEAD_LETTERS = Counter("coffeetime_dead_letters_total", "Messages sent to the dead-letter subject",
                       ["service", "subject"])
REDELIVERIES = Counter("coffeetime_redeliveries_total", "Messages delivered more than once", ["service", "subject"])
HANDLER_SECONDS = Histogram("coffeetime_batch_handler_seconds", "Time to handle one fetched batch",
                            ["service", "subject"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
OUTBOX_BACKLOG = Gauge("coffeetime_outbox_backlog", "Events staged but not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge("coffeetime_outbox_oldest_age_seconds", "Age of the oldest unpublished event", ["service"])
OUTBOX_PUBLISHED = Counter("coffeetime_outbox_published_total", "Events relayed to JetStream", ["service"])
OUTBOX_RELAY_LAG = Histogram("coffeetime_outbox_relay_lag_seconds", "Commit to JetStream ack, per event", ["service"],
                             buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30))
CONSUMER_PENDING = Gauge("coffeetime_consumer_pending_messages", "Messages waiting for a durable consumer",
                         ["service", "consumer"])
REJECTED = Counter("coffeetime_rejected_total", "Invalid inbound messages rejected", ["service", "subject"])
