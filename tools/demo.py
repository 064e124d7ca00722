"""``make demo``: the published cases of 企业咖啡时 through the whole stack, as separate processes.

The embedded NATS and PostgreSQL, the four services (each its own process), a
local SMS gateway and WeCom robot sink, and a local SMTP server. The demo plays
the outside world: the hotline and the coffee-event organisers publish, the units
sign, ask for time and reply, the enterprises rate (one by SMS reply, unsatisfied,
so the appeal is reopened), and case B's record is replayed a month late, so its
order is overdue the moment it is dispatched and climbs the whole escalation
ladder at once. Then it prints the timelines, every message sent, and the month's
ranking, and stops everything.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import nats
import yaml

from shared.access import DEMO_SMS_SECRET, GatewaySignature
from shared.contracts import SHANGHAI, subjects
from shared.contracts.common import USCC_CHARSET, mask_phone, uscc_check_character
from shared.district import DEFAULT_PATH
from tools import term
from tools.seed import PUBLISHED_UNITS, seed

T0 = time.monotonic()
TAG = datetime.now(SHANGHAI).strftime("%m%d%H%M%S")


def say(text: str = "") -> None:
    print(f"[{time.monotonic() - T0:5.1f}s] {text}" if text else "", flush=True)


STEPS = 10  # start-up, the eight numbered steps, the closing notes
_advance = [lambda: None]  # the progress bar's, while the demo runs at a terminal (tools/term.py)


def step(text: str) -> None:
    """A numbered step of the demo begins: the bar moves on, the step's title is printed."""
    _advance[0]()
    say(text)


def made_up_uscc(n: int) -> str:
    """A valid credit code for a seed enterprise (the published cases give none)."""
    first17 = f"9151011{n:02d}MA6C5Y2K"[:17]
    first17 = "".join(c if c in USCC_CHARSET else "0" for c in first17)
    return first17 + uscc_check_character(first17)


class MailCatcher:
    """A real SMTP server (aiosmtpd) that keeps what it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        from tools.embedded import free_port

        self.messages: list[dict] = []
        catcher = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
                import email
                from email.header import decode_header, make_header

                msg = email.message_from_bytes(envelope.content)
                subject = " ".join(str(make_header(decode_header(msg["Subject"] or ""))).split())
                catcher.messages.append({"to": envelope.rcpt_tos, "subject": subject})
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


class Watch:
    """Every domain event as it is published (a core subscription on ct.>)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    async def start(self, nc) -> None:
        await nc.subscribe("ct.>", cb=self._on)

    async def _on(self, msg) -> None:
        if msg.subject.startswith(("ct.q.", "ct.in.")):
            return
        try:
            self.events.append((msg.subject, json.loads(msg.data)))
        except ValueError:
            pass

    def on(self, subject: str, **match) -> list[dict]:
        return [b for s, b in self.events if s == subject and all(b.get(k) == v for k, v in match.items())]

    async def wait(self, what: str, condition, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = condition()
            if result:
                return result
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the demo waited {timeout}s for {what}")


def demo_district(sink_url_for) -> Path:
    """The default district with the units' WeCom robots pointed at the local sink."""
    data = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    for unit in data["units"]:
        if unit.get("wecom_webhook"):
            unit["wecom_webhook"] = sink_url_for(unit["unit_code"])
    path = Path(tempfile.mkdtemp(prefix="coffeetime-demo-")) / "district.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def main(args=None) -> int:
    try:
        return asyncio.run(run(keep=bool(getattr(args, "keep", False))))
    except KeyboardInterrupt:
        print("\ninterrupted: everything was stopped", file=sys.stderr)
        return 130


async def run(keep: bool = False) -> int:
    from tools.sms_sink import LocalSmsSink
    from tools.stack import Stack

    say("coffeetime demo: the published cases of 企业咖啡时 (Shuangliu, Chengdu)")
    sink = await LocalSmsSink().start()
    mail = MailCatcher()
    mail.start()
    district_file = demo_district(sink.webhook_url)
    stack = Stack(extra_env={
        "SMS_GATEWAY_URL": sink.url, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mail.port),
        "DISTRICT_CONFIG": str(district_file), "QUIET_HOURS": "", "LOG_LEVEL": "WARNING",
        "SCAN_INTERVAL_S": "0.5",
    }, quiet=True)
    nc = None
    try:
        with term.progress() as bar:
            task = bar.add_task("demo 演示", total=STEPS)
            _advance[0] = lambda: bar.advance(task)
            say("starting the embedded NATS and PostgreSQL and the four services, each its own process ...")
            await asyncio.to_thread(stack.start)
            await asyncio.to_thread(stack.wait_healthy, 90)
            for name, url in stack.urls().items():
                say(f"  {name:<11} {url}  (/healthz /metrics /docs)")
            say(console_address(stack))
            say("note: quiet hours are off for the demo, and case B is replayed 5 weeks late, so its deadline")
            say("      has passed when it is dispatched: that is how it climbs the ladder without waiting weeks.")
            nc = await nats.connect(stack.servers.nats_url)
            watch = Watch()
            await watch.start(nc)
            async with httpx.AsyncClient(timeout=10) as http:
                appeal_ids, phones = await play(nc, watch, stack, sink, http)
                _advance[0]()
                await report(nc, stack, sink, mail, http, appeal_ids, phones)
            bar.update(task, completed=STEPS)
        _advance[0] = lambda: None
        print()
        say(console_address(stack))
        if keep:
            await keep_running(stack)
        return 0
    finally:
        say("stopping everything ...")
        if nc is not None:
            await nc.close()
        await asyncio.to_thread(stack.stop)
        await sink.stop()
        mail.stop()
        say("stopped; nothing left running")


async def keep_running(stack) -> None:
    """--keep: wait for Ctrl-C or SIGTERM (or a service's exit), then let the caller stop everything."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)  # also where the shell started the demo with SIGINT ignored
    say("--keep: everything stays up (the console too) until Ctrl-C")
    while not stop.is_set():
        exited = [n for n, p in stack.procs.items() if p.poll() is not None]
        if exited:
            say("a service exited: " + ", ".join(exited))
            break
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.5)
        except TimeoutError:
            pass


def console_address(stack) -> str:
    """Where the web console is, and how to log in to it (the demo tokens)."""
    return (f"web console: {stack.urls()['dispatch']}/console  (token token-<unit_code>: token-traffic_police, "
            "token-sanitation ...; the lead unit: token-approval_bureau)")


async def play(nc, watch: Watch, stack, sink, http: httpx.AsyncClient) -> tuple[dict[str, str], dict[str, str]]:
    js = nc.jetstream()
    cases = {c["key"]: c for c in seed()["cases"]}
    today = datetime.now(SHANGHAI).date()
    phones = {key: f"1380000{n:04d}" for n, key in enumerate("ABCDE", start=1)}
    refs: dict[str, str] = {}

    say()
    step("1. the channels: coffee-event minutes for A, B, C, E; a hotline call for D")
    for n, (key, c) in enumerate(cases.items(), start=1):
        contact = c.get("contact", {}).get("name")
        if c["channel"] == "coffee_event":
            event_date = today - timedelta(days=35) if key == "B" else today
            event_id = f"{c['event']}-{TAG}"
            refs[key] = f"coffee_event:{event_id}#1"
            event = next(e for e in seed()["events"] if e["key"] == c["event"])
            record = {"event_id": event_id, "kind": event["kind"], "date": event_date.isoformat(),
                      "organizer_unit": "区行政审批局", "theme": event.get("theme"),
                      "attendees": ["区委副书记", "区行政审批局局长"],
                      "items": [{"item_no": 1, "enterprise_name": c["enterprise"], "content": c["content"],
                                 "category_hint": c["category_hint"], "proposed_unit": c["handling_unit"],
                                 "contact_name": contact, "contact_phone": phones[key],
                                 "enterprise_uscc": made_up_uscc(n)}]}
            await js.publish(subjects.IN_EVENT, json.dumps(record, ensure_ascii=False).encode(),
                             headers={"Nats-Msg-Id": event_id})
            say(f"   {key}: event {c['event']} ({event_date}) → {c['enterprise']}")
        else:
            call_id = f"CALL-{TAG}-D"
            refs[key] = f"hotline:{call_id}"
            call = {"call_id": call_id, "received_at": datetime.now(SHANGHAI).isoformat(),
                    "caller_phone": phones[key], "enterprise_name": c["enterprise"],
                    "enterprise_uscc": made_up_uscc(n), "content": c["content"],
                    "category_hint": c["category_hint"], "agent_id": "hotline-07"}
            await js.publish(subjects.IN_HOTLINE, json.dumps(call, ensure_ascii=False).encode(),
                             headers={"Nats-Msg-Id": call_id})
            say(f"   {key}: hotline call {call_id} → {c['enterprise']}")

    say()
    step("2. intake registers each once; dispatch routes it (reasons kept with the order)")
    orders: dict[str, dict] = {}
    appeal_ids: dict[str, str] = {}
    for key in cases:
        reg = await watch.wait(f"{key} registered", lambda k=key: next(
            (e for e in watch.on(subjects.APPEAL_REGISTERED) if e["source_ref"] == refs[k]), None))
        appeal_ids[key] = reg["appeal_id"]
        lead = await watch.wait(f"{key} dispatched", lambda k=key: next(
            (e for e in watch.on(subjects.ORDER_DISPATCHED, appeal_id=appeal_ids[k]) if e["role"] == "lead"), None))
        orders[key] = lead
        ok = "✓" if lead["unit_code"] == PUBLISHED_UNITS[key] else "✗ (published: " + PUBLISHED_UNITS[key] + ")"
        say(f"   {key} {reg['appeal_id']} → {lead['unit']} {ok}")
        say(f"      {lead['reasons'][0] if lead['reasons'] else ''}")
    co = await watch.wait("D's co-handling units", lambda: [
        e for e in watch.on(subjects.ORDER_DISPATCHED, appeal_id=appeal_ids["D"]) if e["role"] == "co"]
        if len([e for e in watch.on(subjects.ORDER_DISPATCHED, appeal_id=appeal_ids["D"]) if e["role"] == "co"]) >= 2
        else None)
    say(f"   D co-handled by {', '.join(e['unit'] for e in co)}")

    async def act(unit: str, action: str, order_id: str, **fields) -> None:
        body = {"action_id": f"{action}-{order_id}-{uuid.uuid4().hex[:6]}", "order_id": order_id,
                "actor": f"{unit} liaison", **fields}
        await js.publish(subjects.order_action_subject(unit, action), json.dumps(body, ensure_ascii=False).encode(),
                         headers={"Nats-Msg-Id": body["action_id"]})

    say()
    step("3. the units sign for their orders (C over the HTTP API with its token, the others over NATS)")
    dispatch_url = stack.urls()["dispatch"]
    for key, order in orders.items():
        if key == "C":
            r = await http.post(f"{dispatch_url}/orders/{order['order_id']}/sign",
                                headers={"Authorization": "Bearer token-sanitation"},
                                json={"action_id": f"sign-{order['order_id']}", "actor": "环卫所王所长"})
            r.raise_for_status()
        else:
            await act(order["unit_code"], "sign", order["order_id"])
    for e in co:
        await act(e["unit_code"], "sign", e["order_id"])
        await act(e["unit_code"], "progress", e["order_id"], note="已派专员上门对接供电方案")
    for key, order in orders.items():
        await watch.wait(f"{key} signed", lambda o=order: watch.on(subjects.ORDER_SIGNED, order_id=o["order_id"]))
    say("   all five signed")

    say()
    step("4. case B's order is overdue on arrival: the escalation ladder")
    levels = await watch.wait("B escalated to the supervision office", lambda: (
        {e["level"] for e in watch.on(subjects.APPEAL_ESCALATED, appeal_id=appeal_ids["B"])}
        if "supervision" in {e["level"] for e in watch.on(subjects.APPEAL_ESCALATED, appeal_id=appeal_ids["B"])}
        else None), timeout=30)
    for e in sorted(watch.on(subjects.APPEAL_ESCALATED, appeal_id=appeal_ids["B"]), key=lambda e: e["occurred_at"]):
        who = ", ".join(t.get("name") or t.get("role") for t in e.get("targets", []))
        say(f"   {e['level']:<16} {e['reason']}  → {who}")
    assert {"overdue", "district_leader", "supervision"} <= levels

    say()
    step("5. case D is long-running: 黄水镇 asks for 20 more working days; the lead unit grants them")
    d = orders["D"]["order_id"]
    await act("huangshui_town", "extend", d, days=20, reason="户外箱式配电站建设需要约四个月，分阶段推进")
    await watch.wait("D's extension request", lambda: watch.on(subjects.ORDER_EXTENSION_REQUESTED, order_id=d))
    await act("approval_bureau", "grant_extension", d, days=20)
    await watch.wait("D's extension granted", lambda: watch.on(subjects.ORDER_EXTENSION_GRANTED, order_id=d))
    moved = await watch.wait("D's deadline moved", lambda: [
        e for e in watch.on(subjects.DEADLINE_SET, order_id=d) if e["clock"] == "handling"][1:])
    say(f"   D's handling deadline is now {moved[-1]['due_at']}")

    say()
    step("6. the units reply with the published outcomes; the enterprises are asked to rate")
    for key, order in orders.items():
        await act(order["unit_code"], "reply", order["order_id"], reply=cases[key]["outcome"], resolved=True)
    for key, order in orders.items():
        await watch.wait(f"{key} replied", lambda o=order: watch.on(subjects.ORDER_REPLIED, order_id=o["order_id"]))
    say("   five replies sent; rating invitations go out by SMS")

    say()
    step("7. A's enterprise answers the SMS with '3' (unsatisfied): the appeal is reopened to the same unit (重办)")
    await watch.wait("A's rating invitation delivered", lambda: [
        e for e in watch.on(subjects.NOTIFY_DELIVERED, appeal_id=appeal_ids["A"]) if "rating" in e["template"]])
    r = await http.post(f"{stack.urls()['notify']}/sms/inbound", auth=GatewaySignature(DEMO_SMS_SECRET),
                        json={"id": f"MO-{TAG}-A", "from": phones["A"], "text": "3"})
    r.raise_for_status()
    reopened = await watch.wait("A reopened", lambda: watch.on(subjects.APPEAL_REOPENED, appeal_id=appeal_ids["A"]))
    new_a = reopened[0]["order_id"]
    say(f"   reopened as {new_a}; the traffic police sign and reply again")
    await watch.wait("A's new order", lambda: watch.on(subjects.ORDER_DISPATCHED, order_id=new_a))
    await act("traffic_police", "sign", new_a)
    await act("traffic_police", "reply", new_a, reply="高峰时段增派警力现场疏导，左转放行时长再延长15秒。", resolved=True)
    await watch.wait("A's second reply", lambda: watch.on(subjects.ORDER_REPLIED, order_id=new_a))

    say()
    step("8. the ratings: A satisfied now, B satisfied (a silk banner), C satisfied, D basically satisfied, E satisfied")
    ratings = {"A": "satisfied", "B": "satisfied", "C": "satisfied", "D": "basically_satisfied", "E": "satisfied"}
    for key, rating in ratings.items():
        feedback = {"feedback_id": f"FB-{TAG}-{key}", "appeal_id": appeal_ids[key], "rating": rating,
                    "via": "follow-up call"}
        await js.publish(subjects.IN_FEEDBACK, json.dumps(feedback).encode(),
                         headers={"Nats-Msg-Id": feedback["feedback_id"]})
    for key in cases:
        closed = await watch.wait(f"{key} closed", lambda k=key: watch.on(subjects.APPEAL_CLOSED, appeal_id=appeal_ids[k]))
        say(f"   {key} {appeal_ids[key]} closed: {closed[0]['outcome']}")
    return appeal_ids, phones


async def report(nc, stack, sink, mail: MailCatcher, http: httpx.AsyncClient, appeal_ids: dict[str, str],
                 phones: dict[str, str]) -> None:
    say()
    say("waiting for the closing notes to reach the enterprises ...")
    await sink.wait_for(lambda s: all(any(m["to"] == phones[k] and appeal_ids[k] in m["text"] and
                                          ("办结" in m["text"] or "closed" in m["text"]) for m in s.messages)
                                      for k in appeal_ids), timeout=30)

    print()
    print("=" * 100)
    print("TIMELINES (from intake, over ct.q.appeal)")
    print("=" * 100)
    for key, appeal_id in appeal_ids.items():
        reply = await nc.request(subjects.Q_APPEAL, json.dumps({"appeal_id": appeal_id}).encode(), timeout=5)
        status = json.loads(reply.data)
        print(f"\n{key}  {appeal_id}  {status['enterprise_name']}  status: {status['status']}")
        for item in status["timeline"]:
            at = datetime.fromisoformat(item["at"]).astimezone(SHANGHAI).strftime("%m-%d %H:%M:%S")
            what = item["what"] if len(item["what"]) <= 110 else item["what"][:109] + "…"
            print(f"  {at}  {item['actor'][:18]:<18}  {what}")

    print()
    print("=" * 100)
    print(f"MESSAGES SENT: {len(sink.messages)} SMS, {len(sink.robot_messages)} WeCom robot posts, "
          f"{len(mail.messages)} e-mails (local sinks)")
    print("=" * 100)
    for m in sink.messages:
        print(f"  SMS   {mask_phone(m['to']):<12} {m['text']}")
    for m in sink.robot_messages[:12]:
        text = " ".join(m["content"].split())
        print(f"  WeCom {m['key']:<18} {text[:100]}")
    if len(sink.robot_messages) > 12:
        print(f"  ... and {len(sink.robot_messages) - 12} more robot posts")
    for m in mail.messages[:10]:
        print(f"  Mail  {','.join(m['to'])[:30]:<30} {m['subject']}")
    if len(mail.messages) > 10:
        print(f"  ... and {len(mail.messages) - 10} more e-mails")

    print()
    print("=" * 100)
    month = datetime.now(SHANGHAI).strftime("%Y-%m")
    print(f"THE MONTH'S KPIs AND UNIT RANKING ({month}, from escalation; the demo ranks units with 1 order or more)")
    print("=" * 100)
    ranking = await http.get(f"{stack.urls()['escalation']}/report", params={"month": month, "format": "table", "min_orders": 1})
    print(ranking.text)
