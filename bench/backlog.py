"""The backlog phase: a stock of hotline calls waiting in JetStream, and how fast the stack drains it.

The services are paused (``SIGSTOP``: the processes keep their connections, their
durable consumers simply stop fetching), the calls are published as fast as
JetStream acknowledges them, and the services are resumed (``SIGCONT``): the rate at
which the stock is registered and dispatched, from the resume to the last one, is
the drain rate, set beside the steady rate of the throughput phase of the same run
(the issue's target: at least twice it, since a stock lets every batch fill).
The receipts of the stock go on after the dispatch; their count at the end of the
wait is reported, not waited for.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from bench.traffic import Calls, Observer, Publisher


async def backlog_phase(publisher: Publisher, observer: Observer, calls: Calls, pids: list[int], *, n: int,
                        drain_timeout: float, steady_dispatched: float | None, say=print) -> dict:
    """Publish ``n`` calls while the services (``pids``) are paused, resume them, measure the drain."""
    lo = calls.next_index
    observer.start_phase(lo)
    t_publish = time.time()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        for i in range(lo, lo + n):
            await publisher.publish(i)
            if not i & 255:
                await asyncio.sleep(0)  # let the PubAcks in
        unacked = await publisher.settle()
    finally:
        t_resume = time.time()
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    calls.next_index = lo + n
    say(f"  {n:,} calls published in {t_resume - t_publish:.1f} s with the services paused; draining ...")
    deadline = time.monotonic() + drain_timeout
    while time.monotonic() < deadline and observer.n_dispatched < n:
        await asyncio.sleep(0.1)
    ids = range(lo, lo + n)

    def drained(stamps: dict[int, float]) -> dict:
        done = [stamps[i] for i in ids if i in stamps]
        if not done:
            return {"count": 0, "seconds": None, "per_s": None}
        seconds = max(done) - t_resume
        return {"count": len(done), "seconds": round(seconds, 1), "per_s": round(len(done) / max(seconds, 1e-9), 1)}

    out = {
        "calls": n,
        "unacked": unacked,
        "published_s": round(t_resume - t_publish, 1),
        "published_per_s": round(n / max(t_resume - t_publish, 1e-9), 1),
        "registered": drained(observer.registered),
        "dispatched": drained(observer.dispatched),
        "receipts_by_then": sum(1 for i in ids if i in observer.sms),
        "complete": observer.n_dispatched >= n,
        "steady_dispatched_per_s": steady_dispatched,
    }
    rate = out["dispatched"]["per_s"]
    out["drain_vs_steady"] = round(rate / steady_dispatched, 2) if rate and steady_dispatched else None
    return out
