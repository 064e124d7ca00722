"""Which consumer loop: our nats-py fetch loop, or FastStream's ``PullSub(batch=True)``?

``python -m bench.consumers [--quick]`` starts its own nats-server (JetStream, a
temporary folder, a free loopback port) and measures each contender on a file
stream with a durable pull consumer (explicit ack, ``max_ack_pending`` 20,000,
created by this script the way ``shared.bus.ensure_consumer`` creates it, so
both contenders bind to the same consumer configuration):

- ``A``: our loop, as ``shared.bus.ConsumerGroup._consume`` without its
  retry/dead-letter wrapper: ``pull_subscribe_bind``, ``fetch(200, timeout=5)``,
  the handler gets the list of bodies, then each message is acked.
- ``B-<T>``: FastStream ``@broker.subscriber(..., durable=...,
  pull_sub=PullSub(batch_size=200, timeout=T, batch=True), ack_policy=AckPolicy.ACK)``
  with a handler taking ``list[bytes]``; the broker has no middleware and no
  logger (``logger=None``), so this is the subscriber itself, not our logging.
  FastStream keeps fetching until the batch is full or ``T`` has passed
  (``BatchPullStreamSubscriber._consume_pull``); nats-py's ``fetch`` returns as
  soon as it has *some* messages (``_fetch_n``).

Figures, each from a fresh subprocess (own connection, own stream, own consumers):

1. ``lone``: one message at a time to an idle consumer, the next one 20 ms after
   the handler saw it; publish → handler entry. Capped by a time budget, so the
   slow contenders have few samples (``n`` is reported). For ``B`` this is near
   the worst case, ``T``: its collection window restarts after each batch. A
   message arriving at a random moment waits somewhere in (0, T].
2. ``steady``: 200 msg/s for a few seconds; publish → handler entry.
3. ``throughput``: 20,000 messages of 1 KB published first; from starting the
   consumer to the server counting every message acked (the best of two runs).
4. ``idle``: 20 idle consumers; CPU seconds per wall second of the consumer
   process (``time.process_time``) and of nats-server (utime+stime from
   ``/proc/<pid>/stat``). Before the contenders, nats-server's own idle cost with
   no consumer is measured too.

Messages the server delivered but the handler did not get within ``T`` + a
grace are reported as ``not_handled`` (with the consumer's ``ack_pending``): they
wait for ``ack_wait`` (30 s) and a redelivery. Seen with ``B`` at small ``T``:
nats-py's ``_fetch_n`` can raise the builtin ``TimeoutError`` when the remaining
time runs out, FastStream's loop only catches ``nats.errors.TimeoutError``, so
the consume task dies with the batch it had collected and is restarted.

Publisher and consumer share one process and one event loop (timestamps from one
clock); latencies therefore include a little scheduling noise, the same for all.
Writes ``bench/results/consumers-<UTC time>.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import nats
import nats.errors
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from bench.machine import host_info
from tools.embedded import free_port, nats_server_binary

RESULTS = Path(__file__).with_name("results")
BATCH = 200
OUR_FETCH_TIMEOUT = 5.0
FASTSTREAM_TIMEOUTS = (0.01, 0.05, 0.5, 5.0)
CONTENDERS: dict[str, float | None] = {"A": None} | {f"B-{t:g}": t for t in FASTSTREAM_TIMEOUTS}
PHASES = ("lone", "steady", "throughput", "idle")
PAYLOAD_BYTES = 1024


@dataclass(frozen=True)
class Plan:
    lone_max: int = 50          # messages in the lone-message test...
    lone_budget_s: float = 5.0  # ...or fewer, once this much time has gone
    lone_min: int = 2           # but at least this many
    steady_rate: int = 200
    steady_s: float = 5.0
    throughput_messages: int = 20_000
    throughput_runs: int = 2    # the machine is shared: the best run is the least disturbed
    idle_consumers: int = 20
    idle_s: float = 8.0
    server_baseline_s: float = 3.0
    grace_s: float = 2.0        # waited beyond T for the last messages of a test to be handled


FULL = Plan()
QUICK = Plan(lone_max=10, lone_budget_s=0.5, lone_min=1, steady_s=1.0, throughput_messages=5_000,
             throughput_runs=1, idle_s=2.0, server_baseline_s=1.0, grace_s=0.5)
# one subprocess for the latency and throughput tests (each with its own connection, stream and
# consumer), one more for the idle test, so that its CPU figure counts nothing but idle consumers
WORKERS = (("lone", "steady", "throughput"), ("idle",))


def label(contender: str) -> str:
    t = CONTENDERS[contender]
    if t is None:
        return f"A our loop fetch({BATCH}, timeout={OUR_FETCH_TIMEOUT:g})"
    return f"B FastStream PullSub({BATCH}, timeout={t:g}, batch=True)"


# ---------------------------------------------------------------- measuring helpers

def server_cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # fields 14 and 15 of stat(5)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (no interpolation: with few samples p99 is the maximum)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency_summary(latencies_s: list[float]) -> dict:
    ms = [x * 1000 for x in latencies_s]
    return {"n": len(ms), "p50_ms": percentile(ms, 0.50), "p99_ms": percentile(ms, 0.99),
            "max_ms": max(ms) if ms else None}


def payload() -> bytes:
    """1 KB, starting with the publish time: ``b"<perf_counter> ......"``."""
    return f"{time.perf_counter():.9f} ".encode().ljust(PAYLOAD_BYTES, b".")


class Recorder:
    """The handler both contenders call: latency of each body, batch sizes, a count to wait on."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.batches: list[int] = []
        self.count = 0
        self._changed = asyncio.Event()

    async def handle(self, bodies: list[bytes]) -> None:
        now = time.perf_counter()
        self.latencies.extend(now - float(b[:b.index(b" ")]) for b in bodies)
        self.batches.append(len(bodies))
        self.count += len(bodies)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.count < count:
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return False
        return True

    def mean_batch(self) -> float | None:
        return round(sum(self.batches) / len(self.batches), 1) if self.batches else None


# ---------------------------------------------------------------- the contenders

Handler = Callable[[list[bytes]], Awaitable[None]]


class OurLoop:
    """Contender A: the loop of ``shared.bus.ConsumerGroup._consume``, minus retries and dead letters."""

    def __init__(self, nc: nats.NATS, stream: str) -> None:
        self.nc, self.stream = nc, stream
        self.tasks: list[asyncio.Task] = []

    async def connect(self) -> None:
        pass  # the connection is the worker's

    async def start(self, bindings: list[tuple[str, str]], handler: Handler) -> None:
        js = self.nc.jetstream()
        for _subject, durable in bindings:
            psub = await js.pull_subscribe_bind(durable=durable, stream=self.stream)
            self.tasks.append(asyncio.create_task(self._consume(psub, handler)))

    @staticmethod
    async def _consume(psub, handler: Handler) -> None:
        while True:
            try:
                msgs = await psub.fetch(BATCH, timeout=OUR_FETCH_TIMEOUT)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            await handler([m.data for m in msgs])
            for m in msgs:
                await m.ack()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class FastStreamBatch:
    """Contender B: FastStream's batch pull subscriber with a given collection timeout."""

    def __init__(self, url: str, stream: str, timeout: float) -> None:
        from faststream.nats import NatsBroker  # imported here: contender A never loads FastStream

        self.broker = NatsBroker(url, logger=None)
        self.stream, self.timeout = stream, timeout

    async def connect(self) -> None:
        await self.broker.connect()

    async def start(self, bindings: list[tuple[str, str]], handler: Handler) -> None:
        from faststream import AckPolicy
        from faststream.nats import JStream, PullSub

        for subject, durable in bindings:
            async def on_batch(bodies: list[bytes]) -> None:
                await handler(bodies)

            self.broker.subscriber(
                subject, stream=JStream(self.stream, declare=False), durable=durable,
                pull_sub=PullSub(batch_size=BATCH, timeout=self.timeout, batch=True),
                ack_policy=AckPolicy.ACK,
            )(on_batch)
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()


# ---------------------------------------------------------------- one contender, one phase (a subprocess)

async def declare(js, stream: str, bindings: list[tuple[str, str]]) -> None:
    try:
        await js.delete_stream(stream)
    except NotFoundError:
        pass
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream.lower()}.>"], storage=StorageType.FILE))
    for subject, durable in bindings:
        await js.add_consumer(stream, ConsumerConfig(
            durable_name=durable, filter_subject=subject, ack_policy=JsAckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL, ack_wait=30, max_ack_pending=20_000,
        ))


async def all_acked(js, stream: str, durable: str, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await js.consumer_info(stream, durable)
        if info.ack_floor.stream_seq >= count and info.num_ack_pending == 0:
            return True
        await asyncio.sleep(0.01)
    return False


async def consumer_state(js, stream: str, durable: str) -> dict:
    """What the server knows: unacked deliveries, redeliveries, pull requests waiting."""
    info = await js.consumer_info(stream, durable)
    return {"delivered": info.delivered.consumer_seq, "ack_pending": info.num_ack_pending,
            "redelivered": info.num_redelivered, "pull_requests_waiting": info.num_waiting}


async def run_phase(contender: str, phase: str, url: str, server_pid: int, plan: Plan) -> dict:
    fs_timeout = CONTENDERS[contender]
    stream = f"BENCH_CONS_{phase.upper()}"
    consumers = plan.idle_consumers if phase == "idle" else 1
    bindings = [(f"{stream.lower()}.s{i}", f"bench-{i}") for i in range(consumers)]
    subject, durable = bindings[0]
    slack = (fs_timeout or 0) + plan.grace_s  # longest a batch may legitimately wait, plus margin

    nc = await nats.connect(url, name=f"bench-consumers-{contender}-{phase}")
    js = nc.jetstream(publish_async_max_pending=4000)
    await declare(js, stream, bindings)
    consumer = OurLoop(nc, stream) if fs_timeout is None else FastStreamBatch(url, stream, fs_timeout)
    rec = Recorder()
    out: dict = {}
    try:
        if phase == "throughput":
            body = payload()
            for i in range(plan.throughput_messages):
                await js.publish_async(subject, body)
                if not i % 500:
                    await asyncio.sleep(0)
            await asyncio.wait_for(js.publish_async_completed(), timeout=60)
            await consumer.connect()
            t0 = time.perf_counter()
            await consumer.start(bindings, rec.handle)
            handled = await rec.wait_for(plan.throughput_messages, timeout=60)
            t_handled = time.perf_counter() - t0
            acked = handled and await all_acked(js, stream, durable, plan.throughput_messages, timeout=30)
            t_acked = time.perf_counter() - t0
            out = {"messages": plan.throughput_messages, "complete": acked,
                   "handled_s": round(t_handled, 3), "acked_s": round(t_acked, 3),
                   "msg_per_s": round(plan.throughput_messages / t_acked) if acked else None,
                   "mean_batch": rec.mean_batch()}
            return out

        await consumer.connect()
        await consumer.start(bindings, rec.handle)
        await asyncio.sleep(0.3)  # let the first fetch requests reach the server

        if phase == "lone":
            started = time.monotonic()
            sent = stuck = 0
            while sent < plan.lone_max and (sent < plan.lone_min or time.monotonic() - started < plan.lone_budget_s):
                await js.publish(subject, payload())
                sent += 1
                if not await rec.wait_for(rec.count + 1, timeout=slack):
                    stuck += 1  # delivered (see "server") but not handed to the handler in time
                await asyncio.sleep(0.02)  # the consumer is back waiting before the next one
            out = latency_summary(rec.latencies) | {"sent": sent, "not_handled": stuck, "waited_s": slack,
                                                    "mean_batch": rec.mean_batch(),
                                                    "server": await consumer_state(js, stream, durable)}

        elif phase == "steady":
            total = int(plan.steady_rate * plan.steady_s)
            t0 = time.perf_counter()
            for i in range(total):
                delay = t0 + i / plan.steady_rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await js.publish(subject, payload())
            achieved = total / (time.perf_counter() - t0)
            complete = await rec.wait_for(total, timeout=slack)
            out = latency_summary(rec.latencies) | {
                "sent": total, "complete": complete, "not_handled": total - rec.count, "waited_s": slack,
                "publish_rate": round(achieved), "mean_batch": rec.mean_batch(),
                "server": await consumer_state(js, stream, durable)}

        elif phase == "idle":
            await asyncio.sleep(0.5)  # past start-up, into the idle rhythm
            wall0, cpu0, srv0 = time.perf_counter(), time.process_time(), server_cpu_s(server_pid)
            await asyncio.sleep(plan.idle_s)
            wall = time.perf_counter() - wall0
            out = {"consumers": consumers, "wall_s": round(wall, 2),
                   "client_cpu_per_s": round((time.process_time() - cpu0) / wall, 4),
                   "server_cpu_per_s": round((server_cpu_s(server_pid) - srv0) / wall, 4),
                   "server": await consumer_state(js, stream, durable)}
        return out
    finally:
        try:  # a graceful stop waits for the fetch in flight (up to T): not worth the time here
            await asyncio.wait_for(consumer.stop(), 1.0)
        except TimeoutError:
            pass
        try:
            await js.delete_stream(stream)
        except Exception:  # noqa: BLE001 - the run goes on; the server is thrown away at the end
            pass
        await nc.close()


# ---------------------------------------------------------------- the run

def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(folder / "nats-server.log", "ab")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen([nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port),
                             "-sd", str(folder / "js")], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise TimeoutError("nats-server did not start")


async def run_phases(contender: str, phases: tuple[str, ...], url: str, server_pid: int, plan: Plan) -> dict:
    """The worker subprocess: the given tests one after the other, throughput the best of a few runs."""
    results = {}
    for phase in phases:
        if phase == "throughput":
            runs = [await run_phase(contender, phase, url, server_pid, plan) for _ in range(plan.throughput_runs)]
            best = max(runs, key=lambda r: r.get("msg_per_s") or 0)
            results[phase] = best | {"runs_msg_per_s": [r.get("msg_per_s") for r in runs]}
        else:
            results[phase] = await run_phase(contender, phase, url, server_pid, plan)
    return results


def run_worker(contender: str, phases: tuple[str, ...], url: str, server_pid: int, quick: bool) -> dict:
    cmd = [sys.executable, "-m", "bench.consumers", "--worker", contender, "--phases", ",".join(phases),
           "--url", url, "--server-pid", str(server_pid)] + (["--quick"] if quick else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=170, cwd=Path(__file__).parent.parent)
    if done.returncode != 0:
        error = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {phase: {"error": error} for phase in phases}
    results = json.loads(done.stdout.strip().splitlines()[-1])
    if done.stderr.strip():
        for phase in phases:
            results[phase]["stderr"] = done.stderr.strip()[-2000:]
    return results


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def render(results: dict, baseline: float) -> str:
    head = (f"{'contender':<52} {'lone p50/p99 ms (n)':>22} {'200/s p50/p99 ms':>18} {'batch':>6} "
            f"{'not handled':>12} {'drain msg/s':>12} {'idle CPU s/s client':>20} {'server':>7}")
    lines = [head, "-" * len(head)]
    for contender, r in results.items():
        lone, steady, thr, idle = (r.get(p, {}) for p in PHASES)
        lone_s = f"{fmt(lone.get('p50_ms'))}/{fmt(lone.get('p99_ms'))} ({lone.get('n', '-')})"
        steady_s = f"{fmt(steady.get('p50_ms'))}/{fmt(steady.get('p99_ms'))}"
        stuck = f"{lone.get('not_handled', '-')}/{lone.get('sent', '-')} {steady.get('not_handled', '-')}/{steady.get('sent', '-')}"
        lines.append(f"{label(contender):<52} {lone_s:>22} {steady_s:>18} {fmt(steady.get('mean_batch')):>6} "
                     f"{stuck:>12} {fmt(thr.get('msg_per_s')):>12} {fmt(idle.get('client_cpu_per_s'), 4):>20} "
                     f"{fmt(idle.get('server_cpu_per_s'), 4):>7}")
        for phase in PHASES:
            if "error" in r.get(phase, {}):
                lines.append(f"    {phase}: ERROR {r[phase]['error']}")
    lines.append(f"nats-server alone, no consumer: {baseline:.4f} CPU s/s; "
                 f"idle figures are with {FULL.idle_consumers} consumers; batch = mean batch at 200/s;\n"
                 "not handled = lone, 200/s: delivered by the server, not handed to the handler within T + grace")
    return "\n".join(lines)


def main_run(quick: bool) -> None:
    plan = QUICK if quick else FULL
    started = datetime.now(UTC)
    host = host_info()
    folder = Path(tempfile.mkdtemp(prefix="bench-consumers-"))
    server, url = start_server(folder)
    try:
        time.sleep(0.5)
        srv0 = server_cpu_s(server.pid)
        time.sleep(plan.server_baseline_s)
        baseline = (server_cpu_s(server.pid) - srv0) / plan.server_baseline_s
        results: dict[str, dict] = {}
        for contender in CONTENDERS:
            results[contender] = {}
            for phases in WORKERS:
                t = time.monotonic()
                results[contender] |= run_worker(contender, phases, url, server.pid, quick)
                print(f"  {contender:<7} {','.join(phases):<24} {time.monotonic() - t:5.1f}s", flush=True)
        version = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True).stdout.strip()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)

    print()
    print(render(results, baseline))
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    doc = {
        "benchmark": "consumers", "started": started.isoformat(), "quick": quick,
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "plan": asdict(plan), "host": host, "nats_server": version,
        "versions": {m: _version(m) for m in ("faststream", "nats-py")},
        "contenders": {c: {"label": label(c)} | results[c] for c in CONTENDERS},
        "server_idle_cpu_per_s_no_consumers": round(baseline, 4),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],  # other work on the machine
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"consumers-{stamp}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwritten {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases: under a minute")
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--phases", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        plan = QUICK if args.quick else FULL
        phases = tuple(args.phases.split(","))
        print(json.dumps(asyncio.run(run_phases(args.worker, phases, args.url, args.server_pid, plan))))
    else:
        main_run(args.quick)


if __name__ == "__main__":
    main()
