"""The chaos suite (``make chaos``): faults injected into the whole stack, and what was lost or done twice.

``python -m tools.chaos [--scenario NAME ...] [--calls N] [--rate R] [--out FILE]``

Each scenario runs on servers of its own in a temporary folder (never the
system's NATS or PostgreSQL): PostgreSQL from ``tools/embedded.py``, nats-server
(one node, or a three-node cluster) from ``tools/cluster.py``, the four services
as processes this module starts, kills and restarts one by one, the SMS gateway
and the units' WeCom robots (``tools/sms_sink.py``, in this process) and an
SMTP server. The outside world publishes a steady stream of hotline calls and
app appeals (each from an enterprise of its own, every one routed automatically),
the fault is injected, the system is left to settle (every consumer with nothing
pending or unacked, every outbox empty, no notification pending, and the counts
unchanged for three polls; bounded), then everything is counted from PostgreSQL
and from what the gateway was posted:

- lost: a call without its appeal, work order(s), deadlines (the order's due
  times at dispatch and at escalation, and the ``ct.deadline.set`` events in the
  appeal's timeline) or receipt (the notification delivered and an SMS accepted
  by the gateway for the caller's phone);
- duplicated (must be 0): an appeal per source id, an order per appeal and
  unit, a ``ct.appeal.registered`` / ``ct.order.dispatched`` / ``ct.deadline.set``
  event per appeal / order / clock, a receipt notification per appeal, distinct
  SMS per caller, or an SMS id the gateway accepted again that notify did not
  know it resent (more posts than attempts it logged as cut short, 'unknown');
- resent (in flight, counted): the accepted posts of an SMS id after its first,
  any SMS (receipts and the units' liaisons alike), each one a resend notify
  logged. It is checked against what notify had marked 'sending' without an
  outcome at the faults (read from PostgreSQL at each fault: every id posted
  again must be one of those, and no more posts than those) and against
  ``coffeetime_notification_resends_total{channel="sms"}`` (read from every notify
  process every second and just before it is killed, summed over its lives).
  The local gateway drops a repeated id (the contract allows it), so no phone
  gets a message twice here; real gateways do not all do so, so the posts stay
  in the table.

Scenarios: ``kill`` (kill -9 of each service in turn, restarted shortly after),
``replicas`` (two of every service), ``postgres`` (stopped for 10 s), ``nats``
(nats-server killed and restarted on its store), ``cluster`` (three nodes,
streams of three replicas, the CT_IN leader killed), ``sms`` (the gateway
answers 503 for a minute), ``poison`` (a poison message of each kind on every
inbound subject). The table is printed and written as JSON
(``docs/chaos/latest.json`` unless ``--out``); the exit status is 1 when any
scenario lost or duplicated anything or failed one of its checks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "chaos" / "latest.json"
SERVICES = ("intake", "dispatch", "escalation", "notify")
PREFIX = "CHAOS"
PHONE_PREFIX = "137"
POISON_PREFIX = "POISON"
#: the unit whose order subject gets the poison action (any unit of the district would do)
POISON_UNIT = "traffic_police"

#: what every service process of a scenario gets, besides the servers' URLs; production defaults otherwise,
#: except a shorter ack wait, so that what a killed process had fetched comes back in seconds, not 30, and
#: DEMO_MODE (the demo district's unit tokens and the demo credentials, shared/access.py)
BASE_ENV = {"QUIET_HOURS": "", "LOG_LEVEL": "WARNING", "ACK_WAIT_S": "10", "DEMO_MODE": "1"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# --- the outside world's calls ------------------------------------------------------


def credit_code(i: int) -> str:
    """A valid unified social credit code of enterprise ``i`` (each call its own: no duplicates of one another)."""
    from shared.contracts.common import uscc_check_character

    first17 = f"915101{i:011d}"
    return first17 + uscc_check_character(first17)


class Load:
    """Call ``i``: a hotline call (even ``i``) or an app appeal (odd), source id ``CHAOS-<i>``, phone ``137<i>``."""

    def __init__(self) -> None:
        from bench.traffic import CONTENTS  # the bench's mix: each content routes to its unit without a human

        self.contents = CONTENTS

    @staticmethod
    def source_id(i: int) -> str:
        return f"{PREFIX}-{i:06d}"

    @staticmethod
    def phone(i: int) -> str:
        return f"{PHONE_PREFIX}{i:08d}"

    def message(self, i: int) -> tuple[str, bytes, str]:
        """(subject, body, Nats-Msg-Id) of call ``i``."""
        from shared.contracts import subjects

        content, hint = self.contents[i % len(self.contents)]
        common = {"enterprise_name": f"成都混沌测试第{i}号企业有限公司", "enterprise_uscc": credit_code(i),
                  "content": f"{content}（混沌测试第{i}号）", "category_hint": hint}
        if i % 2 == 0:
            subject = subjects.IN_HOTLINE
            body = {"call_id": self.source_id(i), "received_at": now_iso(), "caller_phone": self.phone(i),
                    "caller_name": "混沌测试来电人", "agent_id": "chaos", **common}
        else:
            subject = subjects.IN_APP
            body = {"submission_id": self.source_id(i), "submitted_at": now_iso(), "account_id": f"chaos-{i}",
                    "contact_phone": self.phone(i), "contact_name": "混沌测试联系人", "title": "混沌测试诉求", **common}
        return subject, json.dumps(body, ensure_ascii=False).encode(), self.source_id(i)


def poison_messages() -> list[dict[str, Any]]:
    """A poison message of each kind on every inbound subject, each with an id of its own where it can carry one.

    Kinds: not JSON at all; JSON nested 5,000 deep; a valid message whose text holds a
    NUL character (PostgreSQL refuses it in text); a valid message whose text holds
    bytes that are not UTF-8.
    """
    from shared.contracts import subjects

    order_subject = subjects.order_action_subject(POISON_UNIT, "sign")
    valid: dict[str, Callable[[str], dict]] = {
        subjects.IN_HOTLINE: lambda pid: {
            "call_id": pid, "received_at": now_iso(), "caller_phone": "13900000001", "content": "POISONTEXT"},
        subjects.IN_APP: lambda pid: {
            "submission_id": pid, "submitted_at": now_iso(), "account_id": "poison", "enterprise_name": "毒药测试公司",
            "contact_phone": "13900000002", "content": "POISONTEXT"},
        subjects.IN_RECEPTION: lambda pid: {
            "record_id": pid, "received_at": now_iso(), "channel": "reception_day", "officer": "毒药测试",
            "content": "POISONTEXT", "contact_phone": "13900000003"},
        subjects.IN_EVENT: lambda pid: {
            "event_id": pid, "kind": "sub", "date": date.today().isoformat(), "organizer_unit": "区行政审批局",
            "items": [{"item_no": 1, "enterprise_name": "毒药测试公司", "content": "POISONTEXT"}]},
        order_subject: lambda pid: {"action_id": pid, "actor": "POISONTEXT", "order_id": f"{pid}-order"},
        subjects.IN_FEEDBACK: lambda pid: {"feedback_id": pid, "appeal_id": f"{pid}-appeal", "rating": "satisfied",
                                           "comment": "POISONTEXT"},
    }
    out = []
    for subject, build in valid.items():
        short = subject.removeprefix("ct.in.").replace(".", "-")
        for kind in ("not_json", "deep_json", "nul", "invalid_utf8"):
            pid = f"{POISON_PREFIX}-{short}-{kind}"
            if kind == "not_json":
                data = b"\x00not json{"
            elif kind == "deep_json":
                data = b"[" * 5000 + b"]" * 5000
            else:
                raw = json.dumps(build(pid), ensure_ascii=False).encode()
                data = raw.replace(b"POISONTEXT", b"\\u0000nul" if kind == "nul" else b"\xff\xfe\xc3(")
            out.append({"subject": subject, "kind": kind, "msg_id": pid, "data": data,
                        "readable_id": kind in ("nul", "invalid_utf8")})
    return out


# --- the processes ------------------------------------------------------------------


class ServiceProcess:
    """One replica of a service: its own HTTP port and log; started, killed and restarted by the scenario."""

    def __init__(self, name: str, replica: int, env: dict[str, str], log_dir: Path) -> None:
        from tools.embedded import free_port

        self.name = name
        self.replica = replica
        self.port = free_port()
        self.env = {**env, f"{name.upper()}_PORT": str(self.port)}
        self.log = log_dir / f"{name}-{replica}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.kills = 0
        self.unexpected_exits: list[int] = []

    @property
    def label(self) -> str:
        return f"{self.name}#{self.replica}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen([sys.executable, "-m", f"services.{self.name}"], env=self.env, cwd=REPO,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """``kill -9``: nothing of the process's own clean-up runs."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.kills += 1

    def check_exit(self) -> None:
        """Note an exit this harness did not cause (once per exit)."""
        if self.proc is not None and self.proc.poll() is not None and self.proc.returncode != -signal.SIGKILL:
            if len(self.unexpected_exits) < self.starts:
                self.unexpected_exits.append(self.proc.returncode)

    def stop(self, timeout: float = 15) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# --- one scenario's world -------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    summary: str
    fault: Callable[[World], Awaitable[None]]
    calls: int = 1000
    replicas: int = 1
    cluster: bool = False
    env: dict[str, str] = field(default_factory=dict)
    settle_timeout: float = 240.0
    watch_health: bool = False
    restarts_by_design: bool = False


@dataclass
class Options:
    calls: int | None = None
    rate: float = 25.0
    kill_every_s: float = 3.0
    kill_down_s: float = 1.0
    pg_outage_s: float = 10.0
    nats_outage_s: float = 5.0
    sms_outage_s: float = 60.0
    seed: int = 11
    keep: bool = False
    verbose: bool = True


class World:
    """The servers, the services, the gateway and the load of one scenario, in a folder of its own."""

    def __init__(self, scenario: Scenario, options: Options) -> None:
        self.scenario = scenario
        self.options = options
        self.folder = Path(tempfile.mkdtemp(prefix=f"coffeetime-chaos-{scenario.name}-"))
        self.load = Load()
        self.n = options.calls or scenario.calls
        self.random = random.Random(options.seed)
        self.t0 = time.monotonic()
        self.published = 0
        self.publish_retries = 0
        self.unpublished: list[int] = []
        self.publishing_done = asyncio.Event()
        self.faults: list[dict[str, Any]] = []
        self.fault_window: list[float] = []  # [start, end] of the outage, seconds since t0
        self.health: list[tuple[float, str, int | str]] = []
        self.extra_checks: dict[str, bool] = {}
        self.details: dict[str, Any] = {}
        self.procs: list[ServiceProcess] = []
        self.nats = None
        self.servers = None
        self.sink = None
        self.mail = None
        self.district: Path | None = None
        self.nc = None
        self.js = None
        self._db = None
        self.resends_seen: dict[tuple[str, int], dict[str, float]] = {}
        """coffeetime_notification_resends_total per notify process life (replica, start) and channel, as last scraped."""
        self.in_flight: list[dict[str, Any]] = []
        """What notify had marked 'sending' without an outcome at each fault (:meth:`snapshot_in_flight`)."""

    # --- life cycle ------------------------------------------------------------------

    def wall_of(self, elapsed: float) -> datetime:
        """The wall-clock time of a moment given in seconds since the scenario began."""
        return datetime.now(UTC) - timedelta(seconds=time.monotonic() - self.t0 - elapsed)

    def elapsed(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def say(self, text: str) -> None:
        if self.options.verbose:
            print(f"  [{self.scenario.name} {self.elapsed():6.1f}s] {text}", flush=True)

    def note(self, what: str, **extra: Any) -> None:
        self.faults.append({"t": self.elapsed(), "what": what, **extra})
        self.say(what + (f" {extra}" if extra else ""))

    async def start(self) -> None:
        import nats

        from tools.cluster import NatsCluster, NatsNode
        from tools.demo import MailCatcher, demo_district
        from tools.embedded import EmbeddedServers
        from tools.sms_sink import LocalSmsSink

        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.folder))
        if self.scenario.cluster:
            self.nats = NatsCluster(self.folder)
            await asyncio.to_thread(self.nats.start)
            await self.nats.wait_ready()
        else:
            self.nats = NatsNode(self.folder, "n1")
            await asyncio.to_thread(self.nats.start)
        self.servers = EmbeddedServers(self.folder / "servers", nats_url=self.nats.url, database_url=None)
        await asyncio.to_thread(self.servers.start)
        self.sink = await LocalSmsSink().start()
        self.mail = MailCatcher()
        self.mail.start()
        self.district = demo_district(self.sink.webhook_url)
        async def quiet(exc: Exception) -> None:  # the outages are the point: no traceback per reconnect
            self.details.setdefault("harness_nats_errors", Counter())[type(exc).__name__] += 1

        self.nc = await nats.connect(self.nats.url.split(","), name="chaos", max_reconnect_attempts=-1,
                                     reconnect_time_wait=0.5, connect_timeout=2, error_cb=quiet)
        self.js = self.nc.jetstream(timeout=3)
        if self.scenario.cluster:
            await self._create_replicated_streams(3)
        env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
        env.update({
            "NATS_URL": self.nats.url, "DATABASE_URL": self.servers.database_url, "SMS_GATEWAY_URL": self.sink.url,
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.mail.port), "DISTRICT_CONFIG": str(self.district),
            **BASE_ENV, **self.scenario.env,
        })
        self.env = env
        log_dir = self.folder / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for replica in range(1, self.scenario.replicas + 1):
            for name in SERVICES:
                self.procs.append(ServiceProcess(name, replica, env, log_dir))
        for p in self.procs:
            p.start()
        await self.wait_ready(self.procs, timeout=120)
        self.say(f"{len(self.procs)} service processes ready")

    async def _create_replicated_streams(self, replicas: int) -> None:
        """The streams as an operator creates them for a cluster: with ``replicas`` copies each."""
        from nats.js.api import RetentionPolicy, StorageType, StreamConfig

        from shared.contracts.subjects import STREAMS

        for s in STREAMS:
            await self.js.add_stream(StreamConfig(
                name=s.name, subjects=list(s.subjects), description=s.description, retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE, max_age=s.max_age_days * 86400, duplicate_window=s.duplicate_window_s,
                num_replicas=replicas))

    async def stop(self, keep: bool) -> None:
        for p in self.procs:
            await asyncio.to_thread(p.stop)
        if self._db is not None:
            with contextlib.suppress(Exception):
                await self._db.close()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)
        if self.sink is not None:
            await self.sink.stop()
        if self.mail is not None:
            with contextlib.suppress(Exception):
                self.mail.stop()
        if self.servers is not None:
            await asyncio.to_thread(self.servers.stop)
        if self.nats is not None:
            await asyncio.to_thread(self.nats.stop)
        if self.district is not None:
            shutil.rmtree(self.district.parent, ignore_errors=True)
        if keep:
            print(f"  [{self.scenario.name}] kept {self.folder} (logs in {self.folder / 'logs'})", flush=True)
        else:
            shutil.rmtree(self.folder, ignore_errors=True)

    async def wait_ready(self, procs: list[ServiceProcess], timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        pending = {p.label: p for p in procs}
        async with httpx.AsyncClient(timeout=2) as client:
            while pending and time.monotonic() < deadline:
                for label, p in list(pending.items()):
                    if not p.alive:
                        raise RuntimeError(f"{label} exited with code {p.proc.returncode}:\n{p.log_tail()}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(p.url + "/readyz")).status_code == 200:
                            del pending[label]
                if pending:
                    await asyncio.sleep(0.3)
        if pending:
            raise TimeoutError(f"not ready after {timeout}s: {', '.join(sorted(pending))}")

    # --- the database, robust to its own outage -------------------------------------

    async def db(self):
        import asyncpg

        if self._db is None or self._db.is_closed():
            self._db = await asyncpg.connect(self.servers.database_url, timeout=5)
        return self._db

    async def query(self, sql: str, *args):
        try:
            return await (await self.db()).fetch(sql, *args)
        except Exception:
            with contextlib.suppress(Exception):
                await self._db.close()
            self._db = None
            raise

    # --- the load -------------------------------------------------------------------

    async def publish_load(self) -> None:
        """Publish the calls at a steady rate; a publish that fails is retried under the same Nats-Msg-Id."""
        rate = self.options.rate
        start = time.monotonic()
        try:
            for i in range(self.n):
                wait = start + i / rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # the rate of the outside world, not a synchronisation
                subject, data, msg_id = self.load.message(i)
                if await self.publish(subject, data, msg_id):
                    self.published = i + 1
                else:
                    self.unpublished.append(i)
                    self.published = i + 1
        finally:
            self.publishing_done.set()
            self.say(f"published {self.published - len(self.unpublished)} calls "
                     f"({self.publish_retries} publishes retried)")

    async def publish(self, subject: str, data: bytes, msg_id: str, give_up_s: float = 180) -> bool:
        deadline = time.monotonic() + give_up_s
        while True:
            try:
                await self.js.publish(subject, data, headers={"Nats-Msg-Id": msg_id}, timeout=2)
                return True
            except Exception:  # noqa: BLE001 - the server is down or electing: the sender tries again
                self.publish_retries += 1
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.5)

    async def published_at_least(self, fraction: float) -> None:
        """Until that share of the calls was published (the faults' cue)."""
        while self.published < self.n * fraction and not self.publishing_done.is_set():
            await asyncio.sleep(0.1)

    # --- watching -------------------------------------------------------------------

    async def watch_processes(self) -> None:
        while True:
            for p in self.procs:
                p.check_exit()
            await asyncio.sleep(0.5)

    async def watch_health(self) -> None:
        """Every replica's ``/healthz`` every half second: (time, replica, status or error)."""
        import httpx

        async with httpx.AsyncClient(timeout=1.5) as client:
            while True:
                async def one(p: ServiceProcess) -> None:
                    try:
                        status: int | str = (await client.get(p.url + "/healthz")).status_code
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    self.health.append((self.elapsed(), p.label, status))

                await asyncio.gather(*(one(p) for p in self.procs))
                await asyncio.sleep(0.5)

    def health_summary(self) -> dict[str, Any]:
        """Per replica: what /healthz answered during the outage, and when it said 200 again after it."""
        if len(self.fault_window) < 2:
            return {}
        start, end = self.fault_window
        out: dict[str, Any] = {}
        for p in self.procs:
            seen = [(t, s) for t, label, s in self.health if label == p.label]
            during = Counter(str(s) for t, s in seen if start <= t <= end)
            after_ok = next((t for t, s in seen if t > end and s == 200), None)
            last = seen[-1][1] if seen else None
            out[p.label] = {"during": dict(during), "first_200_after_s": round(after_ok - end, 1) if after_ok else None,
                            "last": last}
        return out

    # --- what notify resends, and what it had in flight ---------------------------------

    async def scrape_resends(self, procs: list[ServiceProcess] | None = None) -> None:
        """Read ``coffeetime_notification_resends_total`` of each live notify process (kept per process life).

        A killed process's counter dies with it, so the harness reads it every second and once
        more just before it kills notify; the sum over the lives is what Prometheus's
        ``increase()`` would make of the resets.
        """
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        procs = [p for p in (procs if procs is not None else self.procs) if p.name == "notify" and p.alive]
        async with httpx.AsyncClient(timeout=2) as client:
            for p in procs:
                try:
                    text = (await client.get(p.url + "/metrics")).text
                except httpx.HTTPError:
                    continue  # still starting, or going away: the last reading of this life stands
                counts = {s.labels.get("channel"): s.value for family in text_string_to_metric_families(text)
                          if family.name == "coffeetime_notification_resends"
                          for s in family.samples if s.name.endswith("_total")}
                self.resends_seen[(p.label, p.starts)] = counts

    async def watch_resends(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.scrape_resends()
            await asyncio.sleep(1.0)  # a scrape interval, as Prometheus would have

    def resends_counted(self) -> dict[str, float]:
        """The resends notify counted, per channel, summed over every process life."""
        out: Counter = Counter()
        for counts in self.resends_seen.values():
            out.update(counts)
        return dict(out)

    async def snapshot_in_flight(self, fault: str, since: datetime | None = None) -> None:
        """Note the messages marked 'sending' whose outcome is not recorded, at the moment of a fault.

        Those, and only those, may be sent again because of it. ``since``: the wall time the
        fault began when the snapshot is taken just before it (PostgreSQL's stop); a message
        marked between the two is taken from its attempt's mark time in the final count.
        """
        started = datetime.now(UTC)
        try:
            rows = await self.query(
                "SELECT a.notification_id, n.channel FROM notify.delivery_attempts a"
                " JOIN notify.notifications n USING (notification_id) WHERE a.outcome = 'sending'")
        except Exception as exc:  # noqa: BLE001 - recorded: the bound then cannot be checked for this fault
            self.in_flight.append({"t": self.elapsed(), "fault": fault, "error": repr(exc)[:200]})
            return
        ids: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            ids[r["channel"]].append(r["notification_id"])
        self.in_flight.append({"t": self.elapsed(), "fault": fault, "from": since or started,
                               "to": datetime.now(UTC), "ids": dict(ids)})

    # --- settling -------------------------------------------------------------------

    async def backlog(self) -> tuple[dict[str, int], tuple]:
        """What is still to do (consumers, outboxes, notifications) and a signature of the counts."""
        busy: dict[str, int] = {}
        for stream in ("CT_IN", "CT_EVENTS"):
            for info in await self.js.consumers_info(stream):
                pending = info.num_pending + info.num_ack_pending
                if pending:
                    busy[info.name] = pending
        rows = await self.query(
            "SELECT (SELECT count(*) FROM intake.outbox) AS intake, (SELECT count(*) FROM dispatch.outbox) AS dispatch,"
            " (SELECT count(*) FROM escalation.outbox) AS escalation, (SELECT count(*) FROM notify.outbox) AS notify,"
            " (SELECT count(*) FROM notify.notifications WHERE status = 'pending') AS pending_notifications,"
            " (SELECT count(*) FROM notify.waiting_events) AS waiting_events,"
            " (SELECT count(*) FROM intake.appeals) AS appeals, (SELECT count(*) FROM dispatch.orders) AS orders,"
            " (SELECT count(*) FROM intake.timeline) AS timeline,"
            " (SELECT count(*) FROM notify.notifications WHERE status <> 'pending') AS done_notifications")
        r = rows[0]
        for key in ("intake", "dispatch", "escalation", "notify"):
            if r[key]:
                busy[f"{key}.outbox"] = r[key]
        for key in ("pending_notifications", "waiting_events"):
            if r[key]:
                busy[key] = r[key]
        signature = (r["appeals"], r["orders"], r["timeline"], r["done_notifications"], len(self.sink.requests))
        return busy, signature

    async def settle(self, timeout: float) -> float | None:
        """Seconds until nothing is left to do and the counts hold still for three polls; None past ``timeout``."""
        start = time.monotonic()
        last, stable, busy = None, 0, {}
        while time.monotonic() - start < timeout:
            try:
                busy, signature = await self.backlog()
            except Exception as exc:  # noqa: BLE001 - a server still coming back: not settled
                busy, signature = {"error": repr(exc)[:200]}, None
            if not busy and signature == last:
                stable += 1
                if stable >= 3:
                    return round(time.monotonic() - start, 1)
            else:
                stable = 0
            last = signature
            await asyncio.sleep(0.5)  # a poll interval: the condition above is what is waited for
        self.details["unsettled"] = busy
        return None

    # --- counting -------------------------------------------------------------------

    async def dead_letters(self) -> list[dict[str, Any]]:
        """Every message of the CT_DLQ stream: subject, original subject and msg id, error."""
        from nats.js.errors import NotFoundError

        try:
            info = await self.js.stream_info("CT_DLQ")
        except NotFoundError:
            return []
        out = []
        if not info.state.messages:
            return out
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await self.js.get_msg("CT_DLQ", seq)
            except NotFoundError:
                continue
            headers = msg.headers or {}
            out.append({"subject": msg.subject, "original_subject": headers.get("Ct-Original-Subject"),
                        "msg_id": headers.get("Ct-Original-Msg-Id"), "error": (headers.get("Ct-Error") or "")[:200]})
        return out

    async def events(self, stream: str, subject: str) -> list[dict[str, Any]]:
        """The bodies of every message on ``subject`` in ``stream`` (an ephemeral consumer of its own)."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        psub = await self.js.pull_subscribe(subject, stream=stream, config=ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=60))
        out = []
        try:
            while True:
                try:
                    msgs = await psub.fetch(500, timeout=2)
                except Exception:  # noqa: BLE001 - nothing more
                    break
                for m in msgs:
                    with contextlib.suppress(ValueError):
                        out.append(json.loads(m.data))
                if (await psub.consumer_info()).num_pending == 0:
                    break
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()
        return out

    async def tally(self) -> dict[str, Any]:
        """Lost and duplicated, per call, from PostgreSQL and from what the gateway was posted."""
        appeals = await self.query("SELECT source_id, appeal_id FROM intake.appeals WHERE source_id LIKE $1", f"{PREFIX}-%")
        orders = await self.query("SELECT appeal_id, order_id, unit_code, due_at, sign_due_at FROM dispatch.orders")
        dispatch_status = {r["appeal_id"]: r["status"] for r in await self.query("SELECT appeal_id, status FROM dispatch.appeals")}
        clocks = {r["order_id"]: r for r in await self.query("SELECT order_id, handling_due, sign_due FROM escalation.orders")}
        timeline = await self.query(
            "SELECT subject, appeal_id, payload->>'order_id' AS order_id, payload->>'clock' AS clock,"
            " payload->>'level' AS level, count(*) AS n FROM intake.timeline"
            " WHERE subject IN ('ct.appeal.registered', 'ct.order.dispatched', 'ct.deadline.set',"
            " 'ct.appeal.escalated', 'ct.deadline.warning') GROUP BY 1, 2, 3, 4, 5")
        receipts = await self.query(
            "SELECT appeal_id, notification_id, status, attempts, claims, delivered_at FROM notify.notifications"
            " WHERE template_kind = 'receipt'")
        notification_status = Counter(r["status"] for r in await self.query("SELECT status FROM notify.notifications"))
        fired = (await self.query("SELECT count(*) AS n FROM escalation.firings WHERE fired_at IS NOT NULL"))[0]["n"]
        dlq = await self.dead_letters()
        # the attempts notify logged as cut short: 'sending' when a later claim found them, so sent again
        unknown = await self.query(
            "SELECT a.notification_id, n.channel, a.at FROM notify.delivery_attempts a"
            " JOIN notify.notifications n USING (notification_id) WHERE a.outcome = 'unknown'")

        by_source: dict[str, list[str]] = defaultdict(list)
        for r in appeals:
            by_source[r["source_id"]].append(r["appeal_id"])
        orders_of: dict[str, list] = defaultdict(list)
        for r in orders:
            orders_of[r["appeal_id"]].append(r)
        registered_events = Counter()
        dispatched_events = Counter()
        deadline_events = Counter()
        escalation_events = Counter()
        for r in timeline:
            if r["subject"] == "ct.appeal.registered":
                registered_events[r["appeal_id"]] += r["n"]
            elif r["subject"] == "ct.order.dispatched":
                dispatched_events[r["order_id"]] += r["n"]
            elif r["subject"] == "ct.deadline.set":
                deadline_events[(r["order_id"], r["clock"])] += r["n"]
            else:
                escalation_events[(r["subject"], r["appeal_id"], r["order_id"], r["clock"], r["level"])] += r["n"]
        receipts_of: dict[str, list] = defaultdict(list)
        for r in receipts:
            receipts_of[r["appeal_id"]].append(r)

        # the gateway: accepted posts per SMS id, distinct SMS per phone
        accepted_posts = Counter(r["id"] for r in self.sink.requests if r.get("path") == "/sms" and r.get("status") == 200)
        failed_posts = sum(1 for r in self.sink.requests if r.get("path") == "/sms" and r.get("status", 200) >= 400)
        sms_to: dict[str, set[str]] = defaultdict(set)
        for m in self.sink.messages:
            sms_to[m["to"]].add(m["id"])
        resent = self.account_resends(accepted_posts, unknown)
        unaccounted = resent["unaccounted_by_id"]
        dead_lettered_calls = {d["msg_id"] for d in dlq if (d["msg_id"] or "").startswith(PREFIX)}

        lost_kinds: Counter = Counter()
        dup_kinds: Counter = Counter()
        lost_calls: list[int] = []
        dup_calls: list[int] = []
        receipt_ids: set[str] = set()
        examples: dict[str, str] = {}
        for i in range(self.published):
            if i in self.unpublished:
                continue
            sid = self.load.source_id(i)
            lost, dup = set(), set()
            if sid in dead_lettered_calls:
                lost.add("dead_lettered")
            ids = by_source.get(sid, [])
            if not ids:
                lost.add("appeal")
            if len(ids) > 1:
                dup.add("appeal")
            for aid in ids[:1]:
                if registered_events[aid] == 0:
                    lost.add("registered_event")
                if registered_events[aid] > 1:
                    dup.add("registered_event")
                its_orders = orders_of.get(aid, [])
                if not its_orders:
                    lost.add(f"order ({dispatch_status.get(aid, 'not at dispatch')})")
                per_unit = Counter(o["unit_code"] for o in its_orders)
                if any(n > 1 for n in per_unit.values()):
                    dup.add("order")
                for o in its_orders:
                    oid = o["order_id"]
                    if dispatched_events[oid] == 0:
                        lost.add("dispatched_event")
                    if dispatched_events[oid] > 1:
                        dup.add("dispatched_event")
                    c = clocks.get(oid)
                    if o["due_at"] is None or o["sign_due_at"] is None:
                        lost.add("deadline at dispatch")
                    if c is None or c["handling_due"] is None or c["sign_due"] is None:
                        lost.add("deadline at escalation")
                    for clock_name in ("sign_for", "handling"):
                        n = deadline_events[(oid, clock_name)]
                        if n == 0:
                            lost.add("deadline_set_event")
                        if n > 1:
                            dup.add("deadline_set_event")
                rs = receipts_of.get(aid, [])
                if not rs:
                    lost.add("receipt notification")
                elif all(r["status"] != "delivered" for r in rs):
                    lost.add(f"receipt {rs[0]['status']}")
                if len(rs) > 1:
                    dup.add("receipt notification")
                receipt_ids.update(r["notification_id"] for r in rs)
                if any(unaccounted.get(r["notification_id"]) for r in rs):
                    dup.add("receipt posted again, not a counted resend")
            sms = sms_to.get(self.load.phone(i), set())
            if not sms:
                lost.add("receipt sms")
            if len(sms) > 1:
                dup.add("receipt sms")
            for kind in lost:
                lost_kinds[kind] += 1
                examples.setdefault(f"lost {kind}", sid)
            for kind in dup:
                dup_kinds[kind] += 1
                examples.setdefault(f"duplicated {kind}", sid)
            if lost:
                lost_calls.append(i)
            if dup:
                dup_calls.append(i)
        other_resent = sum(1 for nid in unaccounted if nid not in receipt_ids)
        if other_resent:
            dup_kinds["other sms posted again, not a counted resend"] = other_resent
        duplicated_escalations = sum(1 for n in escalation_events.values() if n > 1)
        if duplicated_escalations:
            dup_kinds["escalation event"] = duplicated_escalations
        return {
            "lost": len(lost_calls) + len(self.unpublished),
            "duplicated": len(dup_calls) + other_resent + duplicated_escalations,
            "resent": resent,
            "lost_by_kind": dict(lost_kinds) | ({"not published": len(self.unpublished)} if self.unpublished else {}),
            "duplicated_by_kind": dict(dup_kinds),
            "examples": examples,
            "counts": {
                "appeals": sum(len(v) for k, v in by_source.items()), "orders": len(orders),
                "deadline_events": sum(deadline_events.values()), "escalation_firings": fired,
                "escalation_events": sum(escalation_events.values()), "receipts": len(receipts),
                "notifications": dict(notification_status), "sms_accepted": len(self.sink.messages),
                "sms_posts_accepted": sum(accepted_posts.values()), "sms_posts_failed": failed_posts,
                "robot_posts": len(self.sink.robot_messages), "emails": len(self.mail.messages),
                "dead_letters": len(dlq),
                "receipt_attempts_max": max((r["attempts"] for r in receipts), default=0),
                "receipt_claims_max": max((r["claims"] for r in receipts), default=0),
                "last_receipt_delivered_at": max((r["delivered_at"] for r in receipts if r["delivered_at"]),
                                                 default=None),
            },
            "dead_letters": dlq,
        }


    def account_resends(self, accepted_posts: Counter, unknown: list) -> dict[str, Any]:
        """SMS ids the gateway accepted more than once, held against what notify knew and what was in flight.

        A repeated post of an id is a known resend when notify logged that many of its
        attempts as cut short ('unknown': the send was in flight at a fault, its outcome
        never recorded); any post beyond those is a duplicate nobody knew of
        (``unaccounted_by_id``, counted as duplicated). The known ones are checked against
        the metric (``coffeetime_notification_resends_total{channel="sms"}``, every process
        life) and against what notify had marked 'sending' at the faults (snapshots taken at
        each fault, plus the attempts marked within a second of one).
        """
        again = {nid: n - 1 for nid, n in accepted_posts.items() if n > 1}
        recorded = Counter(r["notification_id"] for r in unknown if r["channel"] == "sms")
        unaccounted = {nid: extra - recorded[nid] for nid, extra in again.items() if extra > recorded[nid]}
        in_flight_ids: set[str] = set()
        per_fault = []
        slack = timedelta(seconds=1)  # a mark committed as the snapshot read: its attempt's time is close
        for snap in self.in_flight:
            if "ids" not in snap:
                per_fault.append({"t": snap["t"], "fault": snap["fault"], "sms": None, "sms_new": 0,
                                  "error": snap["error"]})
                continue
            ids = set(snap["ids"].get("sms", ()))
            ids |= {r["notification_id"] for r in unknown if r["channel"] == "sms"
                    and snap["from"] - slack <= r["at"] <= snap["to"] + slack}
            # a message cut short at one kill waits for its lease (and the backlog) to run out, so a later
            # snapshot may find it still 'sending': it counts once, at the first fault that found it
            new = ids - in_flight_ids
            in_flight_ids |= ids
            per_fault.append({"t": snap["t"], "fault": snap["fault"], "sms": len(ids), "sms_new": len(new),
                              "sms_new_ids": sorted(new)[:50],
                              "other": {c: len(v) for c, v in snap["ids"].items() if c != "sms"}})
        counted = self.resends_counted()
        not_in_flight = sorted(set(again) - in_flight_ids)
        return {
            "posts": sum(again.values()), "ids": len(again),
            "counted": counted.get("sms", 0.0), "counted_by_channel": counted,
            "recorded": sum(recorded.values()),
            "in_flight": len(in_flight_ids), "in_flight_by_fault": per_fault,
            "not_in_flight": not_in_flight[:20], "not_in_flight_count": len(not_in_flight),
            "unaccounted_by_id": unaccounted, "example": next(iter(sorted(again)), None),
            "gateway_drops_repeated_ids": True,  # tools/sms_sink.py: a repeated id is accepted, not delivered again
        }


# --- the faults -------------------------------------------------------------------------


async def no_fault(world: World) -> None:
    await world.publishing_done.wait()


async def kill_rotation(world: World) -> None:
    """kill -9 of one service every few seconds, each of the four in turn, restarted shortly after."""
    o = world.options
    killed: Counter = Counter()
    while not (world.publishing_done.is_set() and all(killed[n] for n in SERVICES)):
        order = list(SERVICES)
        world.random.shuffle(order)
        for name in order:
            await asyncio.sleep(o.kill_every_s)  # the fault's schedule
            victims = [p for p in world.procs if p.name == name and p.alive]
            if not victims:
                continue
            victim = world.random.choice(victims)
            if name == "notify":
                await world.scrape_resends([victim])  # its counter dies with it
            victim.kill()
            killed[name] += 1
            world.note("kill -9", service=victim.label, published=world.published)
            if name == "notify":  # what it had marked 'sending' and not recorded: what may go again
                await world.snapshot_in_flight(f"kill -9 {victim.label}")
            await asyncio.sleep(o.kill_down_s)
            victim.start()
            if world.publishing_done.is_set() and all(killed[n] for n in SERVICES):
                break
    world.details["kills"] = dict(killed)
    await world.wait_ready(world.procs, timeout=120)


async def postgres_outage(world: World) -> None:
    """PostgreSQL stopped (fast: clients cut off) for a while, then started again on the same data."""
    from pgserver._commands import pg_ctl

    await world.published_at_least(1 / 3)
    pg = world.servers._pg
    world.fault_window.append(world.elapsed())
    await world.snapshot_in_flight("PostgreSQL stopped")  # read just before the stop ...
    await asyncio.to_thread(pg_ctl, ["-w", "-m", "fast", "stop"], pgdata=pg.pgdata, user=pg.system_user, timeout=30)
    world.in_flight[-1]["to"] = datetime.now(UTC)  # ... and what was marked until it took effect
    world.note("PostgreSQL stopped", published=world.published)
    await asyncio.sleep(world.options.pg_outage_s)  # the outage
    pg._postmaster_info = None
    await asyncio.to_thread(pg.ensure_postgres_running)
    world.note("PostgreSQL started", same_uri=pg.get_uri() == world.servers.database_url)
    world.fault_window.append(world.elapsed())
    await world.publishing_done.wait()


async def nats_outage(world: World) -> None:
    """nats-server killed (-9) and started again on its store."""
    await world.published_at_least(1 / 3)
    world.fault_window.append(world.elapsed())
    world.nats.kill()
    world.note("nats-server killed", published=world.published)
    await world.snapshot_in_flight("nats-server killed")
    await asyncio.sleep(world.options.nats_outage_s)  # the outage
    await asyncio.to_thread(world.nats.start)
    world.note("nats-server started on its store")
    world.fault_window.append(world.elapsed())
    await world.publishing_done.wait()


async def cluster_node_loss(world: World) -> None:
    """The node leading CT_IN killed (-9) mid-stream; the cluster goes on with two of three."""
    replicas = {}
    for s in ("CT_IN", "CT_EVENTS", "CT_DLQ"):
        info = await world.js.stream_info(s)
        replicas[s] = info.config.num_replicas
    world.details["stream_replicas_after_start"] = replicas
    world.extra_checks["streams keep 3 replicas after the services started"] = all(n == 3 for n in replicas.values())
    await world.published_at_least(1 / 3)
    leader = (await world.js.stream_info("CT_IN")).cluster.leader
    world.fault_window.append(world.elapsed())
    world.nats.node(leader).kill()
    world.note("cluster node killed", node=leader, published=world.published)
    await world.snapshot_in_flight(f"cluster node {leader} killed")
    await world.publishing_done.wait()
    world.fault_window.append(world.elapsed())


async def sms_outage(world: World) -> None:
    """The SMS gateway answers 503 to every post for a while."""
    await world.published_at_least(1 / 5)
    world.sink.fail_next(10**9, 503)
    world.fault_window.append(world.elapsed())
    world.note("gateway answers 503", published=world.published)
    await world.snapshot_in_flight("gateway answers 503")
    await asyncio.sleep(world.options.sms_outage_s)  # the outage
    world.sink.fail_next(0, 503)
    world.fault_window.append(world.elapsed())
    world.note("gateway accepts again")
    await world.publishing_done.wait()


async def poison(world: World) -> None:
    """A poison message of each kind on every inbound subject, published in the middle of the valid calls."""
    world.details["metrics_before"] = await alert_metrics(world)
    await world.published_at_least(1 / 3)
    messages = poison_messages()
    for m in messages:
        if not await world.publish(m["subject"], m["data"], m["msg_id"]):
            raise RuntimeError(f"could not publish the poison {m['msg_id']}")
    world.details["poison"] = [{k: v for k, v in m.items() if k != "data"} for m in messages]
    world.note("poison published", messages=len(messages), published=world.published)
    await world.publishing_done.wait()


async def alert_metrics(world: World) -> dict[str, float]:
    """``coffeetime_dead_letters_total`` and ``coffeetime_rejected_total`` of every replica, per service and subject."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = defaultdict(float)
    async with httpx.AsyncClient(timeout=3) as client:
        for p in world.procs:
            text = (await client.get(p.url + "/metrics")).text
            for family in text_string_to_metric_families(text):
                if family.name not in ("coffeetime_dead_letters", "coffeetime_rejected"):
                    continue
                for s in family.samples:
                    if s.name.endswith("_total"):
                        totals[f"{s.name}|{s.labels.get('service')}|{s.labels.get('subject')}"] += s.value
    return dict(totals)


async def check_poison(world: World) -> None:
    """Each poison rejected or dead-lettered (or, if it was valid after all, registered), and the alert metric up."""
    from shared.contracts import subjects

    dlq_ids = {d["msg_id"] for d in await world.dead_letters()}
    rejected_appeals = {e.get("msg_id") for e in await world.events("CT_EVENTS", subjects.APPEAL_REJECTED)}
    order_rejections = await world.events("CT_EVENTS", subjects.ORDER_REJECTED)
    rejected_actions = {e.get("action_id") for e in order_rejections}
    anonymous = Counter((e.get("unit_code"), e.get("action")) for e in order_rejections if not e.get("action_id"))
    registered = {r["source_id"] for r in await world.query(
        "SELECT source_id FROM intake.appeals WHERE source_id LIKE $1", f"{POISON_PREFIX}-%")}
    outcomes = {}
    for m in world.details["poison"]:
        pid, subject = m["msg_id"], m["subject"]
        if pid in dlq_ids:
            outcome = "dead-lettered"
        elif pid in rejected_appeals or pid in rejected_actions:
            outcome = "rejected"
        elif pid in registered:
            outcome = "registered (it was valid)"
        else:
            # a rejected unit action or feedback whose id could not be read: matched by unit and action
            key = ("enterprise", "feedback") if subject == subjects.IN_FEEDBACK else (POISON_UNIT, "sign")
            if anonymous[key] > 0:
                anonymous[key] -= 1
                outcome = "rejected"
            else:
                outcome = "unaccounted"
        outcomes[pid] = outcome
    world.details["poison_outcomes"] = outcomes
    unaccounted = [pid for pid, o in outcomes.items() if o == "unaccounted"]
    world.details["poison_unaccounted"] = unaccounted
    world.extra_checks["every poison rejected or dead-lettered"] = not unaccounted

    after = await alert_metrics(world)
    before = world.details.pop("metrics_before", {})
    rose = {k: after[k] - before.get(k, 0.0) for k in after if after[k] > before.get(k, 0.0)}
    world.details["alert_metrics_rose"] = rose
    # the subscription's subject is the metrics' label: ct.in.order.*.* for every unit action
    label = {m["subject"]: (subjects.IN_ORDER_ALL if m["subject"].startswith("ct.in.order.") else m["subject"])
             for m in world.details["poison"]}
    sent = Counter(label[m["subject"]] for m in world.details["poison"])
    counted = {s: sum(v for k, v in rose.items() if k.endswith(f"|{s}")) for s in sent}
    world.details["alerted_per_subject"] = {s: f"{counted[s]:g} of {n} counted" for s, n in sorted(sent.items())}
    world.extra_checks["every poison counted in an alert metric"] = all(counted[s] >= n for s, n in sent.items())


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("kill", "kill -9 of each service in turn every few seconds, restarted shortly after",
             kill_rotation, calls=2000, restarts_by_design=True),
    Scenario("replicas", "two replicas of every service at once, each relaying its outbox",
             no_fault, replicas=2),
    Scenario("postgres", "PostgreSQL stopped for 10 s and started again", postgres_outage, watch_health=True),
    Scenario("nats", "nats-server killed (-9) and restarted on its store", nats_outage, watch_health=True),
    Scenario("cluster", "three-node JetStream cluster, streams of 3 replicas, the CT_IN leader killed",
             cluster_node_loss, cluster=True, env={"STREAM_REPLICAS": "3"}, watch_health=True),
    Scenario("sms", "the SMS gateway answering 503 for a minute", sms_outage, settle_timeout=900),
    # short redelivery delays: a poison that fails in the handler reaches the dead letters in seconds
    Scenario("poison", "a poison message of each kind on every inbound subject", poison, calls=300,
             env={"RETRY_BACKOFF_S": "0.5,1,2,4"}),
)}


# --- running ----------------------------------------------------------------------------


async def run_scenario(scenario: Scenario, options: Options) -> dict[str, Any]:
    world = World(scenario, options)
    result: dict[str, Any] = {"scenario": scenario.name, "summary": scenario.summary, "calls": world.n}
    ok = False
    background: list[asyncio.Task] = []
    try:
        await world.start()
        background.append(asyncio.create_task(world.watch_processes()))
        background.append(asyncio.create_task(world.watch_resends()))
        if scenario.watch_health:
            background.append(asyncio.create_task(world.watch_health()))
        started = time.monotonic()
        await asyncio.gather(world.publish_load(), scenario.fault(world))
        for p in world.procs:  # nothing may stay dead: a process the harness did not kill is started again, and noted
            p.check_exit()
            if not p.alive:
                world.note("found dead, started again", service=p.label)
                p.start()
        quiet = time.monotonic()
        world.say("publishing and fault over; settling")
        settle_s = await world.settle(scenario.settle_timeout)
        world.say(f"settled in {settle_s} s" if settle_s is not None else "did not settle")
        if scenario.watch_health:
            await asyncio.sleep(1.0)  # one more round of /healthz after the settle, for the record
        if scenario.name == "poison":
            await check_poison(world)
        await world.scrape_resends()
        tally = await world.tally()
        for p in world.procs:
            p.check_exit()
        exits = {p.label: p.unexpected_exits for p in world.procs if p.unexpected_exits}
        restarted = any(p.starts > 1 for p in world.procs)
        health = world.health_summary()
        if scenario.name == "sms" and world.fault_window and tally["counts"]["last_receipt_delivered_at"]:
            over = world.wall_of(world.fault_window[-1])
            tally["counts"]["last_receipt_after_outage_s"] = round(
                (tally["counts"]["last_receipt_delivered_at"] - over).total_seconds(), 1)
        checks = dict(world.extra_checks)
        checks["settled"] = settle_s is not None
        resent = tally["resent"]
        checks["SMS posted again <= resends counted in the metric"] = resent["posts"] <= resent["counted"]
        checks["SMS posted again: each in flight at a fault"] = (
            resent["posts"] <= resent["in_flight"] and not resent["not_in_flight_count"])
        checks["no process exited by itself"] = not exits
        if scenario.watch_health and health:
            if not scenario.cluster:  # two nodes of three still serve: no outage to report
                checks["/healthz 503 during the outage"] = all(h["during"].get("503", 0) > 0 for h in health.values())
            checks["/healthz 200 after"] = all(h["last"] == 200 for h in health.values())
        recovered = None if scenario.restarts_by_design else (not restarted and not exits and settle_s is not None
                                                               and checks.get("/healthz 200 after", True))
        result.update({
            "published": world.published - len(world.unpublished),
            "lost": tally["lost"], "duplicated": tally["duplicated"],
            "recovered_without_restart": recovered,
            "settle_s": settle_s,
            "resent": resent,
            "run_s": round(quiet - started, 1),
            "checks": checks,
            "lost_by_kind": tally["lost_by_kind"], "duplicated_by_kind": tally["duplicated_by_kind"],
            "examples": tally["examples"], "counts": tally["counts"],
            "publish_retries": world.publish_retries,
            "faults": world.faults, "health": health, "unexpected_exits": exits,
            "env": {**BASE_ENV, **scenario.env}, "replicas": scenario.replicas,
            "dead_letters": tally["dead_letters"][:20],
            **world.details,
        })
        ok = result["lost"] == 0 and result["duplicated"] == 0 and all(checks.values())
    except Exception as exc:  # noqa: BLE001 - reported as a failed scenario, with the logs kept
        import traceback

        result.update({"error": repr(exc), "traceback": traceback.format_exc(limit=6), "lost": None, "duplicated": None, "faults": world.faults,
                       "logs": {p.label: p.log_tail() for p in world.procs}})
        print(f"  [{scenario.name}] failed: {result['traceback']}", flush=True)
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        result["ok"] = ok
        await world.stop(keep=options.keep or not ok)
        if not ok:
            result["folder"] = str(world.folder)
    return result


async def run(names: list[str], options: Options) -> list[dict[str, Any]]:
    results = []
    for name in names:
        print(f"== {name}: {SCENARIOS[name].summary}", flush=True)
        results.append(await run_scenario(SCENARIOS[name], options))
    return results


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "NO")


def resent_cell(resent: dict[str, Any] | None) -> str:
    """``posts (in flight, counted)``: SMS posts of an id already accepted, what was in flight at the faults, the metric."""
    if not resent:
        return "None"
    return f"{resent['posts']} ({resent['in_flight']}, {resent['counted']:g})"


def table(results: list[dict[str, Any]]) -> str:
    head = ("scenario", "calls", "lost", "duplicated", "resent (in flight, counted)", "recovered w/o restart",
            "settle s", "checks")
    rows = [head]
    for r in results:
        failed = [k for k, v in (r.get("checks") or {}).items() if not v]
        rows.append((r["scenario"], str(r.get("published", r["calls"])), str(r.get("lost")), str(r.get("duplicated")),
                     resent_cell(r.get("resent")), _yes(r.get("recovered_without_restart")), str(r.get("settle_s")),
                     "error: " + r["error"][:60] if "error" in r else ("ok" if not failed else "FAILED: " + "; ".join(failed))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.chaos [options]``: the same as ``coffeetime chaos [options]`` (tools/cli.py has them)."""
    from tools.cli import main as cli

    return cli(["chaos", *(sys.argv[1:] if argv is None else argv)])


def run_from_args(args: argparse.Namespace) -> int:
    """Run the scenarios ``args`` name, print the table, write the JSON; 1 if any scenario failed."""
    names = args.scenario or list(SCENARIOS)
    options = Options(calls=args.calls, rate=args.rate, kill_every_s=args.kill_every, pg_outage_s=args.pg_outage,
                      nats_outage_s=args.nats_outage, sms_outage_s=args.sms_outage, seed=args.seed, keep=args.keep)
    from bench.machine import host_info

    started = datetime.now(UTC)
    machine = host_info()
    results = asyncio.run(run(names, options))
    print()
    print(table(results))
    document = {
        "command": " ".join(["python -m tools.chaos", *sys.argv[1:]]).strip(),
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "rate_per_s": args.rate, "machine": machine, "results": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"\nwritten to {args.out}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
