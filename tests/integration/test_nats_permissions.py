"""Least privilege on a real nats-server running deploy/nats/nats.conf: each refusal, and each allowed path.

The server is started here from the deployable file (tests/integration/nats_users.py);
the services run against it as their own users, on their own inbox prefixes.
"""

from __future__ import annotations

import json
import uuid

import nats.errors
import pytest
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from services.intake.__main__ import create_service as create_intake
from shared.bus import ensure_consumer, ensure_streams
from shared.contracts import subjects
from tests.integration.nats_users import DeployedNats, password_of, refused
from tests.integration.test_intake import a_call
from tests.support import running, wait_for

pytestmark = pytest.mark.integration

# a refused request gets no answer (the refusal comes to the error callback): keep its wait short
SHORT = 1.0


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    server = DeployedNats(tmp_path_factory.mktemp("nats-deployed")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def admin(deployed):
    """The operators' user; it creates the streams, as ``coffeetime migrate`` does."""
    nc = await deployed.connect("admin")
    await ensure_streams(nc.jetstream())
    yield nc
    await nc.drain()


@pytest.fixture
async def client(deployed):
    """``await client(user)`` → (connection, the server's refusals to it); all closed at the end."""
    opened = []

    async def connect(user: str):
        errors: list[Exception] = []
        nc = await deployed.connect(user, errors)
        opened.append(nc)
        return nc, errors

    yield connect
    for nc in opened:
        await nc.close()


async def last_seq(admin, stream: str) -> int:
    return (await admin.jetstream().stream_info(stream)).state.last_seq


async def events_of(admin, subject: str, appeal_id: str) -> list[dict]:
    """The stored events on ``subject`` about ``appeal_id``, read by the admin (an ordered consumer)."""
    sub = await admin.jetstream().subscribe(subject, ordered_consumer=True)
    found = []
    try:
        while True:
            body = json.loads((await sub.next_msg(timeout=1)).data)
            if body.get("appeal_id") == appeal_id:
                found.append(body)
    except nats.errors.TimeoutError:
        return found
    finally:
        await sub.unsubscribe()


async def test_every_user_of_the_file_connects_with_its_password(deployed, client):
    users = deployed.users()
    assert {"intake", "dispatch", "escalation", "notify", "hotline", "app", "admin", "unit_sanitation"} <= set(users)
    for user in users:
        nc, errors = await client(user)
        await nc.flush()
        assert nc.is_connected and not errors, user


async def test_the_hotline_publishes_its_calls_and_no_domain_event(admin, client):
    nc, errors = await client("hotline")
    js = nc.jetstream(timeout=SHORT)
    ack = await js.publish(subjects.IN_HOTLINE, json.dumps(a_call()).encode())
    assert ack.stream == "CT_IN"  # the PubAck came back on _INBOX_hotline
    events_before = await last_seq(admin, "CT_EVENTS")

    await nc.publish(subjects.APPEAL_REGISTERED, b'{"appeal_id": "forged"}')
    await wait_for(lambda: refused(errors, subjects.APPEAL_REGISTERED), what="the server's refusal")
    await nc.flush()
    assert await last_seq(admin, "CT_EVENTS") == events_before
    with pytest.raises(TimeoutError):  # a JetStream publish of it gets no PubAck either
        await js.publish(subjects.APPEAL_REGISTERED, b'{"appeal_id": "forged"}')
    assert await last_seq(admin, "CT_EVENTS") == events_before


async def test_a_unit_acts_only_under_its_own_code(admin, client):
    nc, errors = await client("unit_sanitation")
    js = nc.jetstream(timeout=SHORT)
    own = subjects.order_action_subject("sanitation", "sign")
    body = json.dumps({"action_id": uuid.uuid4().hex, "order_id": "WO-1", "actor": "张三"}).encode()
    assert (await js.publish(own, body)).stream == "CT_IN"
    in_before = await last_seq(admin, "CT_IN")

    other = subjects.order_action_subject("tax_bureau", "reply")
    await nc.publish(other, body)
    await wait_for(lambda: refused(errors, other), what="the refusal of another unit's subject")
    await nc.flush()
    assert await last_seq(admin, "CT_IN") == in_before


async def test_a_service_consumes_its_own_durable_and_not_another_services(admin, client):
    feedback = subjects.IN_FEEDBACK
    dispatch, dispatch_errors = await client("dispatch")
    await ensure_consumer(dispatch.jetstream(), "CT_IN", "dispatch-ct_in_feedback", feedback, 5, 30)
    intake, errors = await client("intake")
    ijs = intake.jetstream(timeout=SHORT)

    stolen = await ijs.pull_subscribe_bind(durable="dispatch-ct_in_feedback", stream="CT_IN")
    with pytest.raises(TimeoutError):
        await stolen.fetch(1, timeout=SHORT)
    await wait_for(lambda: refused(errors, "$JS.API.CONSUMER.MSG.NEXT.CT_IN.dispatch-ct_in_feedback"),
                   what="the refused fetch")
    for forbidden in (ijs.consumer_info("CT_IN", "dispatch-ct_in_feedback"),
                      ijs.delete_consumer("CT_IN", "dispatch-ct_in_feedback")):
        with pytest.raises(TimeoutError):
            await forbidden
    assert refused(errors, "$JS.API.CONSUMER.DELETE.CT_IN.dispatch-ct_in_feedback")
    # the consumer is untouched, and dispatch reads it
    djs = dispatch.jetstream(timeout=5)
    assert (await djs.consumer_info("CT_IN", "dispatch-ct_in_feedback")).name == "dispatch-ct_in_feedback"

    # intake fetches from its own durable, on its own inbox
    await ensure_consumer(ijs, "CT_IN", "intake-ct_in_appeal_hotline", subjects.IN_HOTLINE, 5, 30)
    hotline, _ = await client("hotline")
    await hotline.jetstream().publish(subjects.IN_HOTLINE, json.dumps(a_call()).encode())
    own = await intake.jetstream(timeout=5).pull_subscribe_bind(durable="intake-ct_in_appeal_hotline", stream="CT_IN")
    (msg, *_) = await own.fetch(1, timeout=5)
    assert msg.subject == subjects.IN_HOTLINE and msg.reply.startswith("$JS.ACK.CT_IN.intake-ct_in_appeal_hotline.")
    await msg.ack()
    await own.unsubscribe()
    assert not dispatch_errors


async def test_no_unit_reads_a_services_fetches_or_another_users_inbox(admin, client):
    """Found from outside: a unit subscribed to _INBOX.> received a whole hotline call (phone, content)."""
    unit, errors = await client("unit_sanitation")
    seen = []

    async def sniff(msg) -> None:
        seen.append(msg)

    for subject in ("_INBOX.>", "_INBOX_intake.>", "_INBOX_hotline.>", subjects.IN_HOTLINE, ">"):
        await unit.subscribe(subject, cb=sniff)
        await wait_for(lambda s=subject: refused(errors, s, "subscription"), what=f"the refused subscription {subject}")

    intake, _ = await client("intake")
    ijs = intake.jetstream(timeout=5)
    await ensure_consumer(ijs, "CT_IN", "intake-ct_in_appeal_hotline", subjects.IN_HOTLINE, 5, 30)
    call = a_call()
    hotline, _ = await client("hotline")
    await hotline.jetstream().publish(subjects.IN_HOTLINE, json.dumps(call).encode())
    fetcher = await ijs.pull_subscribe_bind(durable="intake-ct_in_appeal_hotline", stream="CT_IN")
    fetched = []
    while not any(json.loads(m.data).get("call_id") == call["call_id"] for m in fetched):
        batch = await fetcher.fetch(100, timeout=5)
        for m in batch:
            await m.ack()
        fetched.extend(batch)
    await fetcher.unsubscribe()
    await unit.flush()  # anything routed to the unit arrived before this round trip's answer
    assert seen == []


async def test_a_service_cannot_delete_purge_or_update_a_stream(admin, client):
    intake, errors = await client("intake")
    ijs = intake.jetstream(timeout=SHORT)
    before = await admin.jetstream().stream_info("CT_IN")
    for forbidden in (ijs.delete_stream("CT_IN"), ijs.purge_stream("CT_IN"),
                      ijs.update_stream(StreamConfig(name="CT_IN", subjects=["ct.in.>"], max_msgs=1))):
        with pytest.raises(TimeoutError):
            await forbidden
    for api in ("DELETE", "PURGE", "UPDATE"):
        assert refused(errors, f"$JS.API.STREAM.{api}.CT_IN"), api
    after = await admin.jetstream().stream_info("CT_IN")
    assert after.state.messages == before.state.messages and after.config.max_msgs == before.config.max_msgs


async def test_an_operators_stream_change_survives_start_up(deployed, admin, client, monkeypatch):
    """Start-up only reads a stream that is as wanted, and never undoes a field it does not own."""
    ajs = admin.jetstream()
    config = (await ajs.stream_info("CT_EVENTS")).config
    config.max_msgs = 5_000_000
    config.max_bytes = 40 * 2**30
    await ajs.update_stream(config)

    intake, errors = await client("intake")
    await ensure_streams(intake.jetstream(timeout=SHORT), replicas=1)
    # `coffeetime migrate` as the admin, with every permission
    from tools.cli import _migrate_streams

    for name, value in {"NATS_USER": "admin", "NATS_PASSWORD": password_of("admin"), "STREAM_REPLICAS": "1"}.items():
        monkeypatch.setenv(name, value)
    await _migrate_streams(deployed.url)
    kept = (await ajs.stream_info("CT_EVENTS")).config
    assert (kept.max_msgs, kept.max_bytes, kept.num_replicas) == (5_000_000, 40 * 2**30, 1)
    assert not errors, "an up-to-date stream needs no update permission"


async def test_start_up_without_update_permission_goes_on_only_if_every_subject_is_stored(admin, client):
    from shared.bus import StreamsNotManaged
    from shared.contracts.subjects import STREAM_IN, StreamDef

    ajs = admin.jetstream()
    intake, errors = await client("intake")
    ijs = intake.jetstream(timeout=SHORT)
    with pytest.raises(StreamsNotManaged):  # a stream of another name: intake may neither read nor create it
        await ensure_streams(ijs, (StreamDef("CT_PROBE", ("probe.>",), "probe"),))
    with pytest.raises(StreamsNotManaged, match="lacks subjects"):  # a newer definition with a subject more
        await ensure_streams(ijs, (StreamDef("CT_IN", (*STREAM_IN.subjects, "probe.>"), STREAM_IN.description),))
    # only a limit differs: warned, and start-up goes on; the admin applies it later
    longer = StreamDef("CT_IN", STREAM_IN.subjects, STREAM_IN.description, max_age_days=STREAM_IN.max_age_days + 1)
    await ensure_streams(ijs, (longer,))
    assert refused(errors, "$JS.API.STREAM.UPDATE.CT_IN")
    assert (await ajs.stream_info("CT_IN")).config.max_age == STREAM_IN.max_age_days * 86400
    with pytest.raises(NotFoundError):
        await ajs.stream_info("CT_PROBE")


async def test_intake_runs_as_its_own_user_and_registers_a_call_end_to_end(deployed, admin, client, servers, db):
    env = deployed.service_env(servers["DATABASE_URL"])
    call = a_call()
    violations_before = len(deployed.violations())
    async with running(create_intake, env, **deployed.credentials("intake")) as intake:
        assert intake.nc.is_connected
        hotline, _ = await client("hotline")
        await hotline.jetstream().publish(subjects.IN_HOTLINE, json.dumps(call).encode(),
                                          headers={"Nats-Msg-Id": call["call_id"]})
        appeal_id = await wait_for(lambda: db.fetchval(
            "SELECT appeal_id FROM intake.appeals WHERE channel='hotline' AND source_id=$1", call["call_id"]),
            timeout=30, what="the appeal stored by intake")

        assert await wait_for(lambda: events_of(admin, subjects.APPEAL_REGISTERED, appeal_id), timeout=30,
                              what="ct.appeal.registered published by intake")
        # the app's status query is answered on the app's own inbox (intake's allow_responses)
        app, app_errors = await client("app")
        reply = await app.request(subjects.Q_APPEAL, json.dumps({"appeal_id": appeal_id}).encode(), timeout=10)
        assert appeal_id in reply.data.decode() and not app_errors
    assert deployed.violations()[violations_before:] == [], "intake and its clients needed nothing nats.conf denies"


async def test_the_four_services_run_as_their_own_users_from_a_call_to_a_signed_order(deployed, admin, client,
                                                                                      servers, db):
    from services.dispatch.__main__ import create_service as create_dispatch
    from services.escalation.__main__ import create_service as create_escalation
    from services.notify.__main__ import create_service as create_notify

    env = deployed.service_env(servers["DATABASE_URL"])
    violations_before = len(deployed.violations())
    call = a_call(content="东航中心附近路口的左转车道通行不便，高峰时段通行缓慢；门口路段有车辆乱停乱放，容易造成拥堵。",
                  category_hint="交通出行")
    async with running(create_intake, env, **deployed.credentials("intake")), \
            running(create_dispatch, env, **deployed.credentials("dispatch")), \
            running(create_escalation, env, **deployed.credentials("escalation")), \
            running(create_notify, env, **deployed.credentials("notify")):
        hotline, _ = await client("hotline")
        await hotline.jetstream().publish(subjects.IN_HOTLINE, json.dumps(call).encode(),
                                          headers={"Nats-Msg-Id": call["call_id"]})
        appeal_id = await wait_for(lambda: db.fetchval(
            "SELECT appeal_id FROM intake.appeals WHERE channel='hotline' AND source_id=$1", call["call_id"]),
            timeout=30, what="the appeal")
        (order, *_) = await wait_for(lambda: events_of(admin, subjects.ORDER_DISPATCHED, appeal_id), timeout=30,
                                     what="the order dispatch published")
        await wait_for(lambda: events_of(admin, subjects.DEADLINE_SET, appeal_id), timeout=30,
                       what="the deadline escalation published")
        unit, unit_errors = await client(f"unit_{order['unit_code']}")
        await unit.jetstream().publish(
            subjects.order_action_subject(order["unit_code"], "sign"),
            json.dumps({"action_id": uuid.uuid4().hex, "order_id": order["order_id"], "actor": "值班员"}).encode())
        await wait_for(lambda: events_of(admin, subjects.ORDER_SIGNED, appeal_id), timeout=30,
                       what="the order signed by its unit")
        assert not unit_errors
    assert deployed.violations()[violations_before:] == [], "no service needed anything nats.conf denies it"
