"""The load and what is seen of it: hotline calls, a bounded JetStream publisher, the observers.

Call ``i`` of a run has the call id ``BENCH-<tag>-<i>`` (also its ``Nats-Msg-Id``)
and the caller phone ``137`` + ``i`` on eight digits, so every observation maps
back to its call without a lookup: ``ct.appeal.registered`` carries the call id as
``source_id``, ``ct.order.dispatched`` carries ``source_ref`` = ``hotline:<call id>``,
and the receipt SMS goes to the caller's phone (the units' liaisons have 138/139
numbers). All times are ``time.time()`` in this process; the sink stamps
``received_at`` with the same clock when it accepts an SMS.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Iterable
from datetime import datetime
from functools import partial

from shared.contracts import SHANGHAI, subjects

# A realistic mix: each routes to one unit (one also to a co-handling unit), none is queued by hand.
CONTENTS: tuple[tuple[str, str | None], ...] = (
    ("公司门前路口左转车道早晚高峰拥堵严重，货车通行困难，希望优化信号灯配时。", "交通出行"),
    ("园区内生活垃圾清运不及时，垃圾站周边异味明显，希望增加清运频次。", "市容环卫"),
    ("厂区近期频繁跳闸断电，变压器容量不足，申请配电增容。", "水电气保障"),
    ("企业扩产缺工严重，希望协助组织专场招聘会并提供技能培训。", "人才招聘"),
    ("增值税留抵退税申请已提交一个月，希望加快办理进度。", None),
    ("厂区附近工地夜间施工噪音扰民，扬尘较大。", "环境保护"),
    ("园区停水三天，水压不足影响生产，请自来水公司尽快抢修。", "水电气保障"),
)
PHONE_PREFIX = "137"


class Calls:
    """Hotline calls (``ct.in.appeal.hotline``) numbered by ``i``."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.prefix = f"BENCH-{tag}-"
        self.next_index = 0

    def call_id(self, i: int) -> str:
        return f"{self.prefix}{i}"

    def payload(self, i: int) -> bytes:
        content, hint = CONTENTS[i % len(CONTENTS)]
        body = {
            "call_id": self.call_id(i),
            "received_at": datetime.now(SHANGHAI).isoformat(timespec="milliseconds"),
            "caller_phone": f"{PHONE_PREFIX}{i:08d}",
            "caller_name": "测试来电人",
            "enterprise_name": f"成都双流基准测试企业{i % 997}有限公司",
            "content": f"{content}（基准测试第{i}号）",
            "category_hint": hint,
            "agent_id": "bench",
        }
        return json.dumps(body, ensure_ascii=False).encode()


class Observer:
    """What the bench saw of each call: published, acked, registered, dispatched, receipt SMS accepted.

    Registered and dispatched come from core subscriptions (no JetStream consumer:
    the bench does not compete with the services); the SMS from the local sink.
    Counters cover the calls of the current phase (index ``>= phase_lo``).
    """

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        esc = re.escape(calls.prefix.encode())
        self._registered_re = re.compile(rb'"source_id":"' + esc + rb'(\d+)"')
        self._dispatched_re = re.compile(rb'"source_ref":"hotline:' + esc + rb'(\d+)"')
        self.published: dict[int, float] = {}
        self.acked: dict[int, float] = {}
        self.registered: dict[int, float] = {}
        self.dispatched: dict[int, float] = {}
        self.sms: dict[int, float] = {}
        self.sms_any_times: list[float] = []  # every SMS the sink accepted (receipts of any phase, liaisons)
        self.orders = 0  # ct.order.dispatched events of bench calls (lead and co)
        self.phase_lo = 0
        self.n_registered = self.n_dispatched = self.n_sms = 0
        # the sink's view of everything notify sent
        self.sms_total = self.sms_other = self.robot_total = 0
        self.sink_requests = self.sink_duplicates = self.sink_errors = 0
        self.last_activity = time.time()
        self.unparsed = 0

    def start_phase(self, lo: int) -> None:
        self.phase_lo = lo
        self.n_registered = self.n_dispatched = self.n_sms = 0

    async def subscribe(self, nc) -> None:
        # generous pending limits: the callbacks are cheap, but the loop is busy publishing
        limits = {"pending_msgs_limit": 1_000_000, "pending_bytes_limit": 1 << 30}
        await nc.subscribe(subjects.APPEAL_REGISTERED, cb=self._on_registered, **limits)
        await nc.subscribe(subjects.ORDER_DISPATCHED, cb=self._on_dispatched, **limits)

    def _index(self, pattern: re.Pattern, data: bytes, key: str) -> int | None:
        m = pattern.search(data)
        if m:
            return int(m.group(1))
        try:  # another JSON layout than pydantic's compact one
            value = str(json.loads(data).get(key, ""))
        except ValueError:
            self.unparsed += 1
            return None
        value = value.removeprefix("hotline:")
        return int(value[len(self.calls.prefix):]) if value.startswith(self.calls.prefix) else None

    async def _on_registered(self, msg) -> None:
        now = time.time()
        self.last_activity = now
        i = self._index(self._registered_re, msg.data, "source_id")
        if i is not None and i not in self.registered:
            self.registered[i] = now
            if i >= self.phase_lo:
                self.n_registered += 1

    async def _on_dispatched(self, msg) -> None:
        now = time.time()
        self.last_activity = now
        i = self._index(self._dispatched_re, msg.data, "source_ref")
        if i is None:
            return
        self.orders += 1
        if i not in self.dispatched:
            self.dispatched[i] = now
            if i >= self.phase_lo:
                self.n_dispatched += 1

    def take_from_sink(self, sink) -> None:
        """Move what the sink recorded into the observer, and empty its lists (bounded memory)."""
        messages = sink.messages[:]
        del sink.messages[: len(messages)]
        requests = sink.requests[:]
        del sink.requests[: len(requests)]
        robots = len(sink.robot_messages)
        del sink.robot_messages[:robots]
        if messages or requests or robots:
            self.last_activity = time.time()
        self.robot_total += robots
        self.sink_requests += len(requests)
        for r in requests:
            if r.get("duplicate"):
                self.sink_duplicates += 1
            if r.get("status", 200) >= 400:
                self.sink_errors += 1
        for m in messages:
            self.sms_total += 1
            if len(self.sms_any_times) < 2_000_000:
                self.sms_any_times.append(datetime.fromisoformat(m["received_at"]).timestamp())
            to = m.get("to", "")
            if not to.startswith(PHONE_PREFIX):
                self.sms_other += 1
                continue
            i = int(to[len(PHONE_PREFIX):])
            if i not in self.sms:
                self.sms[i] = datetime.fromisoformat(m["received_at"]).timestamp()
                if i >= self.phase_lo:
                    self.n_sms += 1


async def drain_sink_forever(sink, observer: Observer, period: float = 0.05) -> None:
    while True:
        observer.take_from_sink(sink)
        await asyncio.sleep(period)


class Publisher:
    """JetStream publishes with up to ``max_pending`` PubAcks outstanding (``publish_async``).

    A publish that fails or is not acked is published again under the same
    ``Nats-Msg-Id`` (JetStream drops the duplicate); its latency still counts from
    the first attempt.
    """

    def __init__(self, js, calls: Calls, observer: Observer, max_pending: int = 2000, stall_s: float = 10.0) -> None:
        self.js = js
        self.max_pending = max_pending
        self.stall_s = stall_s
        self.calls = calls
        self.observer = observer
        self.futures: dict[int, asyncio.Future] = {}
        self.failed: list[int] = []
        self.errors = 0
        self.republished = 0

    async def publish(self, i: int) -> None:
        if self.js.publish_async_pending() >= self.max_pending:
            # wait for PubAcks here, bounded (publish_async's own wait_stall costs a task per call)
            stalled = time.monotonic() + self.stall_s
            while self.js.publish_async_pending() >= self.max_pending:
                if time.monotonic() > stalled:
                    raise TimeoutError(f"no PubAck for {self.stall_s:g} s with {self.max_pending} publishes pending")
                await asyncio.sleep(0.001)
        if i not in self.observer.published:
            self.observer.published[i] = time.time()
        fut = await self.js.publish_async(subjects.IN_HOTLINE, self.calls.payload(i),
                                          headers={"Nats-Msg-Id": self.calls.call_id(i)})
        self.futures[i] = fut
        fut.add_done_callback(partial(self._done, i))

    def _done(self, i: int, fut: asyncio.Future) -> None:
        self.futures.pop(i, None)
        if fut.cancelled() or fut.exception() is not None:
            self.errors += 1
            self.failed.append(i)
        else:
            self.observer.acked.setdefault(i, time.time())

    async def settle(self, timeout: float = 15.0, rounds: int = 3) -> int:
        """Wait for the outstanding PubAcks; publish the failed ones again. Returns how many stay unacked."""
        for _ in range(rounds):
            pending = list(self.futures.values())
            if pending:
                await asyncio.wait(pending, timeout=timeout)
            lost = [i for i, f in list(self.futures.items()) if not f.done()]
            for i in lost:
                self.futures.pop(i, None)
            retry, self.failed = self.failed + lost, []
            if not retry:
                return 0
            for i in retry:
                self.republished += 1
                await self.publish(i)
        return len(self.futures) + len(self.failed)


def percentiles(values: Iterable[float], ps: Iterable[float] = (50, 95, 99)) -> dict[str, float | None]:
    """Nearest-rank percentiles and the max, in milliseconds of the given seconds."""
    data = sorted(values)
    out: dict[str, float | None] = {}
    for p in ps:
        if not data:
            out[f"p{p:g}"] = None
            continue
        k = max(0, min(len(data) - 1, math.ceil(p / 100 * len(data)) - 1))
        out[f"p{p:g}"] = round(data[k] * 1000, 1)
    out["max"] = round(data[-1] * 1000, 1) if data else None
    out["n"] = len(data)
    return out
