"""Dead letters on a real nats-server with the deployable users: poison → CT_DLQ → `coffeetime dlq list` → replay, once.

dispatch's user consumes ct.in.feedback through the real ConsumerGroup (shared/bus.py)
with a handler that fails until the fault is "fixed"; the commands run as the CLI
does, in their own process, as the admin user.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid

import pytest
from faststream.nats import NatsBroker

from shared.bus import ConsumerGroup, broker_options, ensure_streams
from shared.contracts import subjects
from shared.settings import Settings
from tests.integration.nats_users import DeployedNats, password_of
from tests.support import wait_for
from tools.dlq import dead_letters

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    server = DeployedNats(tmp_path_factory.mktemp("nats-dlq")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def admin(deployed):
    nc = await deployed.connect("admin")
    await ensure_streams(nc.jetstream())
    yield nc
    await nc.drain()


class FlakyFeedbackHandler:
    """Fails every message while ``broken``; afterwards records each feedback id it handled."""

    def __init__(self) -> None:
        self.broken = True
        self.handled: list[str] = []

    async def __call__(self, batch) -> None:
        """Ratings, failing while broken."""
        if self.broken:
            raise RuntimeError("the database refused the rating (simulated fault)")
        self.handled.extend(d.message.feedback_id for d in batch)


@pytest.fixture(scope="module")
async def consumer(deployed, admin):
    """dispatch's ratings consumer as its own NATS user, dead-lettering after two deliveries."""
    settings = Settings(nats_url=deployed.url, nats_user="dispatch", nats_password=password_of("dispatch"))
    broker = NatsBroker(deployed.url, **broker_options(settings.nats_connect_options()))
    nc = await broker.connect()
    handler = FlakyFeedbackHandler()
    group = ConsumerGroup("dispatch", broker, fetch_timeout=1, max_deliver=2, backoff=[0.1], ack_wait=5)
    group.subscribe(subjects.IN_FEEDBACK, handler)
    await group.declare(nc.jetstream())
    await group.start(nc.jetstream())
    yield handler
    await group.stop()
    await broker.stop()


async def coffeetime(deployed, *args: str) -> str:
    """``coffeetime dlq ...`` in its own process, as the admin user."""
    env = {**os.environ, "NATS_URL": deployed.url, "NATS_USER": "admin", "NATS_PASSWORD": password_of("admin")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tools.cli", "dlq", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


def a_rating() -> dict:
    return {"feedback_id": f"FB-{uuid.uuid4().hex[:10]}", "appeal_id": "CT-20261202-000001", "rating": "satisfied"}


async def test_a_dead_letter_is_listed_and_replayed_once_under_a_fresh_id(deployed, admin, consumer):
    survey = await deployed.connect("survey")
    sjs = survey.jetstream()
    rating = a_rating()
    await sjs.publish(subjects.IN_FEEDBACK, json.dumps(rating).encode(), headers={"Nats-Msg-Id": rating["feedback_id"]})
    ajs = admin.jetstream()

    async def its_dead_letter():
        return [d for d in await dead_letters(ajs) if d.original_msg_id == rating["feedback_id"]]

    (letter,) = await wait_for(its_dead_letter, timeout=30, what="the rating in CT_DLQ")
    assert letter.service == "dispatch" and letter.original_subject == subjects.IN_FEEDBACK
    assert letter.deliveries == 2 and "simulated fault" in letter.error and letter.replays == []

    listed = json.loads(await coffeetime(deployed, "list", "--format", "json", "--subject", "ct.in.>"))
    assert [d["seq"] for d in listed if d["original_msg_id"] == rating["feedback_id"]] == [letter.seq]
    assert "dispatch" in await coffeetime(deployed, "list")
    assert json.loads(await coffeetime(deployed, "list", "--format", "json", "--subject", "ct.appeal.>")) == []

    # what the README used to say: republished with its original id, it is dropped as a duplicate
    ack = await ajs.publish(subjects.IN_FEEDBACK, letter.data, headers={"Nats-Msg-Id": rating["feedback_id"]})
    assert ack.duplicate

    consumer.broken = False
    out = await coffeetime(deployed, "replay", str(letter.seq))
    assert f"#{letter.seq}: replayed to {subjects.IN_FEEDBACK} as dlq-replay-{letter.seq}-1" in out
    await wait_for(lambda: rating["feedback_id"] in consumer.handled, timeout=30, what="the replayed rating handled")

    in_before = (await ajs.stream_info("CT_IN")).state.last_seq
    out = await coffeetime(deployed, "replay", str(letter.seq))
    assert "already replayed as dlq-replay" in out and "0 replayed, 1 skipped" in out
    out = await coffeetime(deployed, "replay", "--all")
    assert f"#{letter.seq}: already replayed" in out
    assert (await ajs.stream_info("CT_IN")).state.last_seq == in_before, "the second replay published nothing"
    # a rating published after the replays is handled: nothing of them is still on its way
    sentinel = a_rating()
    await sjs.publish(subjects.IN_FEEDBACK, json.dumps(sentinel).encode(), headers={"Nats-Msg-Id": sentinel["feedback_id"]})
    await wait_for(lambda: sentinel["feedback_id"] in consumer.handled, timeout=30, what="the rating after the replays")
    assert consumer.handled.count(rating["feedback_id"]) == 1

    (replayed,) = [d for d in json.loads(await coffeetime(deployed, "list", "--format", "json"))
                   if d["seq"] == letter.seq]
    assert [r["msg_id"] for r in replayed["replays"]] == [f"dlq-replay-{letter.seq}-1"]

    # --force replays it again, under the next fresh id
    out = await coffeetime(deployed, "replay", str(letter.seq), "--force")
    assert f"as dlq-replay-{letter.seq}-2" in out
    await wait_for(lambda: consumer.handled.count(rating["feedback_id"]) == 2, timeout=30, what="the forced replay")
    await survey.close()
    assert deployed.violations() == [], "dispatch, survey and admin needed nothing nats.conf denies them"
