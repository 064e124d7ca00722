"""The pipeline phases: latency at a fixed rate, throughput at full load.

Full load is a closed loop: the publisher keeps up to ``max_pending`` PubAcks in
flight (set on the JetStream context) and stops adding calls while more than
``max_backlog`` published calls wait for their ``ct.order.dispatched`` (or
``3 x max_backlog`` for their receipt SMS). So the pipeline always has work
queued, and what is left to drain when publishing stops is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bench.traffic import Calls, Observer, Publisher, percentiles
from shared.contracts.subjects import STREAM_EVENTS, STREAM_IN
from shared.settings import SERVICES


async def wait_until(condition: Callable[[], bool], timeout: float, period: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(period)
    return condition()


async def wait_for_quiet(observer: Observer, quiet_s: float = 2.0, timeout: float = 30.0) -> float:
    """Wait until nothing reached the observer (events, SMS, robot posts) for ``quiet_s``; returns the wait."""
    started = time.monotonic()
    await wait_until(lambda: time.time() - observer.last_activity >= quiet_s, timeout, period=0.2)
    return round(time.monotonic() - started, 1)


async def consumer_backlog(js) -> dict[str, int]:
    """Messages each durable consumer of the pipeline has not acked yet (pending + in flight)."""
    out: dict[str, int] = {}
    for stream in (STREAM_IN.name, STREAM_EVENTS.name):
        try:
            for info in await js.consumers_info(stream):
                n = (info.num_pending or 0) + (info.num_ack_pending or 0)
                if n:
                    out[info.name] = n
        except Exception:  # noqa: BLE001 - diagnostics only
            pass
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


async def outbox_backlog(conn) -> dict[str, int]:
    out = {}
    for name in SERVICES:
        try:
            out[name] = await conn.fetchval(f'SELECT count(*) FROM "{name}".outbox')
        except Exception:  # noqa: BLE001 - a schema not migrated yet
            pass
    try:
        out["notify.notifications pending"] = await conn.fetchval(
            "SELECT count(*) FROM notify.notifications WHERE status = 'pending'")
    except Exception:  # noqa: BLE001
        pass
    return out


def _stage(observer: Observer, ids: range, start: dict[int, float], end: dict[int, float]) -> dict:
    return percentiles(end[i] - start[i] for i in ids if i in start and i in end)


async def latency_phase(publisher: Publisher, observer: Observer, calls: Calls, *, rate: float, duration: float,
                        drain_timeout: float, expect_sms: bool = True) -> dict:
    """Calls at a fixed rate; publish → registered → dispatched → receipt SMS per call."""
    n = max(1, int(rate * duration))
    lo = calls.next_index
    calls.next_index += n
    ids = range(lo, lo + n)
    observer.start_phase(lo)
    start = time.monotonic()
    late = 0
    for k in range(n):
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            late += 1
        await publisher.publish(lo + k)
    published_s = time.monotonic() - start
    unacked = await publisher.settle()
    complete = await wait_until(lambda: observer.n_dispatched >= n and (observer.n_sms >= n or not expect_sms) and
                                observer.n_registered >= n, drain_timeout)
    o = observer
    return {
        "rate_target": rate,
        "rate_achieved": round(n / published_s, 1),
        "calls": n,
        "published_late_by_50ms": late,
        "unacked": unacked,
        "complete": complete,
        "registered": o.n_registered, "dispatched": o.n_dispatched, "sms": o.n_sms,
        "ms": {
            "publish_to_puback": _stage(o, ids, o.published, o.acked),
            "publish_to_registered": _stage(o, ids, o.published, o.registered),
            "publish_to_dispatched": _stage(o, ids, o.published, o.dispatched),
            "publish_to_sms": _stage(o, ids, o.published, o.sms),
            "registered_to_dispatched": _stage(o, ids, o.registered, o.dispatched),
            "registered_to_sms": _stage(o, ids, o.registered, o.sms),
        },
    }


def _per_second(times, t0: float, seconds: int) -> list[int]:
    counts = [0] * seconds
    for t in times:
        k = int(t - t0)
        if 0 <= k < seconds:
            counts[k] += 1
    return counts


async def throughput_phase(publisher: Publisher, observer: Observer, calls: Calls, js, conn, *, duration: float,
                           max_backlog: int, drain_timeout: float, on_stop: Callable[[], None] | None = None,
                           expect_sms: bool = True) -> dict:
    """As many calls as the pipeline takes for ``duration`` seconds, then the drain."""
    lo = calls.next_index
    observer.start_phase(lo)
    i = lo
    throttled = 0.0
    sms_backlog = 3 * max_backlog
    t_start = time.time()
    end = time.monotonic() + duration
    while time.monotonic() < end:
        sent = i - lo
        if sent - observer.n_dispatched >= max_backlog or (expect_sms and sent - observer.n_sms >= sms_backlog):
            t = time.monotonic()
            await asyncio.sleep(0.005)
            throttled += time.monotonic() - t
            continue
        await publisher.publish(i)
        i += 1
        if not i & 63:
            await asyncio.sleep(0)  # let the observers and the sink run
    t_stop = time.time()
    n = i - lo
    calls.next_index = i
    at_stop = {"registered": observer.n_registered, "dispatched": observer.n_dispatched, "sms": observer.n_sms}
    backlog = await consumer_backlog(js)
    outboxes = await outbox_backlog(conn)
    if on_stop:
        on_stop()
    unacked = await publisher.settle()

    drained: dict[str, float | None] = {"registered": None, "dispatched": None, "sms": None}
    expected = {"registered", "dispatched"} | ({"sms"} if expect_sms else set())
    deadline = time.monotonic() + drain_timeout
    while time.monotonic() < deadline and any(drained[k] is None for k in expected):
        for key, count in (("registered", observer.n_registered), ("dispatched", observer.n_dispatched),
                           ("sms", observer.n_sms)):
            if drained[key] is None and count >= n:
                drained[key] = round(time.time() - t_stop, 1)
        await asyncio.sleep(0.05)

    ids = range(lo, lo + n)
    warmup = min(5.0, duration * 0.2)
    window = (t_start + warmup, t_stop)
    span = window[1] - window[0]

    def steady(d: dict[int, float]) -> float:
        return round(sum(1 for i in ids if i in d and window[0] <= d[i] < window[1]) / span, 1)

    seconds = int(t_stop - t_start + drain_timeout) + 2
    series = {name: _per_second((d[i] for i in ids if i in d), t_start, seconds)
              for name, d in (("published", observer.published), ("registered", observer.registered),
                              ("dispatched", observer.dispatched), ("sms", observer.sms))}
    # trim the empty tail
    last = max((k for s in series.values() for k, c in enumerate(s) if c), default=0)
    series = {name: s[: last + 1] for name, s in series.items()}

    def overall(d: dict[int, float]) -> float | None:
        done = [d[i] for i in ids if i in d]
        return round(len(done) / (max(done) - t_start), 1) if done else None

    return {
        "duration_s": round(t_stop - t_start, 1),
        "warmup_s": warmup,
        "calls": n,
        "max_backlog": max_backlog,
        "publisher_throttled_s": round(throttled, 1),
        "unacked": unacked,
        "rate_published": round(n / (t_stop - t_start), 1),
        "steady_rate": {"registered": steady(observer.registered), "dispatched": steady(observer.dispatched),
                        "sms": steady(observer.sms),
                        # what notify got out, whoever it was for (earlier phases' receipts, the units' liaisons)
                        "sms_any": round(sum(1 for t in observer.sms_any_times if window[0] <= t < window[1]) / span, 1)},
        "overall_rate_incl_drain": {"dispatched": overall(observer.dispatched), "sms": overall(observer.sms)},
        "done_at_stop": at_stop,
        "backlog_at_stop": {k: n - v for k, v in at_stop.items()},
        "consumer_backlog_at_stop": backlog,
        "outbox_backlog_at_stop": outboxes,
        "drain_s": drained,
        "done_after_drain": {"registered": observer.n_registered, "dispatched": observer.n_dispatched,
                             "sms": observer.n_sms},
        "orders_dispatched_total": observer.orders,
        "per_second": series,
    }
