"""The ``coffeetime`` command: run the services, migrate, the demo, reports and docs."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
import time
from pathlib import Path

from shared.settings import SERVICES
from tools.stack import Stack

HELP = """coffeetime: enterprise appeals (企业咖啡时) as services on NATS JetStream and PostgreSQL.

Without NATS_URL / DATABASE_URL, `up`, `migrate`, `demo`, `report` and `topics` start an embedded
nats-server and PostgreSQL in a temporary folder."""


def _service_module(name: str):
    return importlib.import_module(f"services.{name}.__main__")


def cmd_run(args: argparse.Namespace) -> int:
    """One service in the foreground, as a container runs it."""
    from shared.service import run

    run(_service_module(args.service).create_service, args.service)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from shared.db import migrate
    from tools.embedded import EmbeddedServers

    with EmbeddedServers.from_env() as servers:
        for name in args.services or SERVICES:
            folder = Path(__file__).parents[1] / "services" / name / "migrations"
            applied = asyncio.run(migrate(servers.database_url, name, folder))
            print(f"{name}: {len(applied)} migration(s) applied" + (f" ({', '.join(applied)})" if applied else ""))
        asyncio.run(_migrate_streams(servers.nats_url))
    return 0


async def _migrate_streams(nats_url: str) -> None:
    """The streams created or updated (replicas raised to STREAM_REPLICAS): the admin's part (deploy/nats/nats.conf)."""
    from shared.bus import connect, ensure_streams
    from shared.settings import Settings

    settings = Settings()
    nc = await connect(nats_url, "coffeetime-migrate", **settings.nats_connect_options())
    try:
        await ensure_streams(nc.jetstream(), replicas=settings.stream_replicas)
    finally:
        await nc.close()
    print(f"NATS: streams up to date (replicas at least {settings.stream_replicas})")


def cmd_up(args: argparse.Namespace) -> int:
    stack = Stack()
    stopping = {"flag": False}

    def on_signal(signum, frame):  # noqa: ARG001
        stopping["flag"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        print(f"NATS        {stack.servers.nats_url}")
        print(f"PostgreSQL  {stack.servers.database_url}")
        stack.wait_healthy()
        for name, url in stack.urls().items():
            print(f"{name:<11} {url}/healthz  {url}/metrics  {url}/docs")
        print("all services up; Ctrl-C stops everything", flush=True)
        while not stopping["flag"]:
            for name, proc in stack.procs.items():
                if proc.poll() is not None:
                    print(f"{name} exited with code {proc.returncode}; stopping", file=sys.stderr)
                    stopping["flag"] = True
            time.sleep(0.2)
    finally:
        print("stopping ...", flush=True)
        stack.stop()
        print("stopped")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tools.demo import main as demo_main

    return demo_main(args)


def cmd_report(args: argparse.Namespace) -> int:
    from tools.report import main as report_main

    return report_main(args)


def cmd_topics(args: argparse.Namespace) -> int:
    from tools.topics import main as topics_main

    return topics_main(args)


def cmd_routing_eval(args: argparse.Namespace) -> int:
    from tools.routing_eval import main as routing_eval_main

    return routing_eval_main(args)


def cmd_dlq(args: argparse.Namespace) -> int:
    from tools.dlq import main as dlq_main

    return dlq_main(args)


def cmd_docs(args: argparse.Namespace) -> int:
    from tools.asyncapi import write_document

    path = write_document(Path(args.out))
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coffeetime", description=HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="start every service as its own process (and the embedded servers)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("run", help="run one service in the foreground, as a container would")
    p.add_argument("service", choices=SERVICES)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("migrate", help="apply each service's database migrations")
    p.add_argument("services", nargs="*", choices=[*SERVICES, []], help="default: all")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("demo", help="run the published cases through the whole stack")
    p.add_argument("--keep", action="store_true",
                   help="leave the stack and the web console running after the demo, until Ctrl-C")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="the month's evaluation and ranking of the units")
    p.add_argument("--month", help="YYYY-MM (default: this month)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--min-orders", type=int, default=None, dest="min_orders",
                   help="units with fewer orders are listed but not ranked (default: the configuration's)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("topics", help="the month's hot topics (热点研判): themes, growth, repeated appeals, 每月一题")
    p.add_argument("--month", help="YYYY-MM (default: this month)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--months-back", type=int, default=3, dest="months_back",
                   help="previous months to compare with (default 3)")
    p.add_argument("--out", help="write to this file instead of the terminal (e.g. topics.csv for Excel)")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("routing-eval", help="measure routing on appeals it never saw: k-fold, held-out, the curve")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--config", help="the district configuration (default: DISTRICT_CONFIG or shared/district.yaml)")
    p.add_argument("--unseen", help="one held-out file to measure (default: every tests/data/unseen_appeals*.yaml)")
    p.add_argument("--tune", action="store_true",
                   help="choose model_weight and model_min_probability on the folds (never on the held-out set)")
    p.set_defaults(func=cmd_routing_eval)

    p = sub.add_parser("dlq", help="dead letters: list them, replay them to their subject under a fresh id, once")
    importlib.import_module("tools.dlq").add_arguments(p)
    p.set_defaults(func=cmd_dlq)

    p = sub.add_parser("notify", help="messages that failed for good: list them, send them again with a new budget")
    importlib.import_module("tools.notify_ops").add_arguments(p)
    p.set_defaults(func=lambda a: importlib.import_module("tools.notify_ops").main(a))

    p = sub.add_parser("calendar", help="the State Council's schedule for a year: load, show; re-plan open deadlines")
    importlib.import_module("tools.calendar").add_arguments(p)
    p.set_defaults(func=lambda a: importlib.import_module("tools.calendar").main(a))

    p = sub.add_parser("chaos", help="the fault scenarios (make chaos): what kill -9, outages and poison lose or double")
    importlib.import_module("tools.chaos").add_arguments(p)
    p.set_defaults(func=lambda a: importlib.import_module("tools.chaos").run_from_args(a))

    for name, text in (("followups", "follow-up visits (抽查回访): draw a month, list the calls and contradictions"),
                       ("survey", "third-party survey (第三方测评): import a CSV for a month, all rows or none"),
                       ("figures", "the programme's headline figures over a period (events, attendances, 办结率, 满意率)")):
        p = sub.add_parser(name, help=text)
        getattr(importlib.import_module("tools.programme"), f"add_{name}_arguments")(p)
        p.set_defaults(func=lambda a: importlib.import_module("tools.programme").main(a))

    p = sub.add_parser("docs", help="write the AsyncAPI document of the contract")
    p.add_argument("--out", default="docs/asyncapi.json")
    p.set_defaults(func=cmd_docs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
