"""The services' own view of a phase, from their /metrics: where the time went.

Two snapshots (before and after a phase) give, per service and subject, the
batches handled, the messages acked and the mean time per batch; for notify, the
attempts and the mean send time per channel; for each outbox relay, the events
relayed and the mean commit → PubAck lag.
"""

from __future__ import annotations

from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families

WANTED = {
    "coffeetime_batch_handler_seconds_sum", "coffeetime_batch_handler_seconds_count",
    "coffeetime_messages_handled_total",
    "coffeetime_outbox_published_total", "coffeetime_outbox_relay_lag_seconds_sum",
    "coffeetime_outbox_relay_lag_seconds_count",
    "coffeetime_notifications_total", "coffeetime_notification_send_seconds_sum",
    "coffeetime_notification_send_seconds_count", "coffeetime_notifications_planned_total",
}


async def snapshot(urls: dict[str, str]) -> dict[tuple, float]:
    out: dict[tuple, float] = {}
    async with httpx.AsyncClient(timeout=5) as client:
        for service, url in urls.items():
            try:
                text = (await client.get(url + "/metrics")).text
            except httpx.HTTPError:
                continue
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    if s.name in WANTED:
                        out[(service, s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def summarize(before: dict[tuple, float], after: dict[tuple, float]) -> dict:
    d = defaultdict(float)
    for key, value in after.items():
        d[key] = value - before.get(key, 0.0)
    handlers: dict[str, dict] = {}
    for (service, name, labels), value in d.items():
        lab = dict(labels)
        if name == "coffeetime_batch_handler_seconds_count" and value:
            key = f"{service} {lab.get('subject')}"
            total_s = d[(service, "coffeetime_batch_handler_seconds_sum", labels)]
            ok = d[(service, "coffeetime_messages_handled_total",
                    tuple(sorted({"service": lab.get("service"), "subject": lab.get("subject"), "outcome": "ok"}.items())))]
            handlers[key] = {"batches": int(value), "messages": int(ok), "busy_s": round(total_s, 2),
                             "ms_per_batch": round(total_s / value * 1000, 1),
                             "messages_per_batch": round(ok / value, 1) if value else None,
                             "ms_per_message": round(total_s / ok * 1000, 2) if ok else None}
    outbox = {}
    for (service, name, labels), value in d.items():
        if name == "coffeetime_outbox_relay_lag_seconds_count" and value:
            lag = d[(service, "coffeetime_outbox_relay_lag_seconds_sum", labels)]
            outbox[service] = {"relayed": int(value), "mean_lag_ms": round(lag / value * 1000, 1)}
    channels: dict[str, dict] = defaultdict(dict)
    for (service, name, labels), value in d.items():
        lab = dict(labels)
        if name == "coffeetime_notifications_total" and value:
            channels[lab["channel"]][lab["outcome"]] = int(value)
        elif name == "coffeetime_notifications_planned_total" and value:
            channels[lab["channel"]]["planned"] = int(value)
        elif name == "coffeetime_notification_send_seconds_count" and value:
            total = d[(service, "coffeetime_notification_send_seconds_sum", labels)]
            channels[lab["channel"]]["mean_send_ms"] = round(total / value * 1000, 1)
    return {"handlers": dict(sorted(handlers.items(), key=lambda kv: -kv[1]["busy_s"])), "outbox": outbox,
            "notify_channels": dict(channels)}
