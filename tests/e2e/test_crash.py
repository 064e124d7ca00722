"""A service killed with SIGKILL in the middle of its work loses nothing and does nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import asyncpg
import nats
import pytest

from shared.bus import ensure_streams
from shared.contracts import subjects
from tests.integration.test_intake import a_call
from tests.support import Recorder, publish, wait_for
from tools.embedded import EmbeddedServers, free_port

pytestmark = pytest.mark.integration


def start_intake(servers) -> subprocess.Popen:
    # a short ack wait: what the killed process had fetched comes back in seconds
    env = {**os.environ, **servers, "INTAKE_PORT": str(free_port()), "LOG_LEVEL": "WARNING", "ACK_WAIT_S": "3"}
    return subprocess.Popen([sys.executable, "-m", "services.intake"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture
async def own_servers():
    """Servers of its own: 600 appeals in the shared stream would weigh on every later test."""
    with EmbeddedServers() as emb:
        nc = await nats.connect(emb.nats_url)
        await ensure_streams(nc.jetstream())
        db = await asyncpg.connect(emb.database_url)
        yield emb.env(), nc, db
        await db.close()
        await nc.close()


async def test_intake_killed_mid_stream_registers_every_call_exactly_once_after_restart(own_servers):
    servers, nc, db = own_servers
    js = nc.jetstream()
    rec = await Recorder(nc).watch(subjects.APPEAL_REGISTERED)
    tag = uuid.uuid4().hex[:8]
    calls = [a_call(call_id=f"K-{tag}-{i:04d}") for i in range(600)]

    def registered() -> list[str]:
        return [b["source_id"] for b in rec.on(subjects.APPEAL_REGISTERED) if b["source_id"].startswith(f"K-{tag}")]

    first = start_intake(servers)
    try:
        for call in calls:
            await publish(js, subjects.IN_HOTLINE, call, msg_id=call["call_id"])
        await wait_for(lambda: len(registered()) >= 30, timeout=30, what="intake at work")
        first.send_signal(signal.SIGKILL)  # no clean-up of any kind
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    killed_at = len(registered())
    second = start_intake(servers)
    try:
        await wait_for(lambda: len(set(registered())) >= 600, timeout=60, what="every call registered")

        async def settled() -> bool:
            info = await js.consumer_info("CT_IN", "intake-ct_in_appeal_hotline")
            backlog = await db.fetchval("SELECT count(*) FROM intake.outbox")
            return info.num_pending == 0 and info.num_ack_pending == 0 and backlog == 0

        await wait_for(settled, timeout=60, what="nothing left to redeliver or relay")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
    assert killed_at < 600, "the kill came too late to prove anything"
    assert sorted(registered()) == sorted(c["call_id"] for c in calls)  # each once: no loss, no double
    assert await db.fetchval("SELECT count(*) FROM intake.appeals WHERE source_id LIKE $1", f"K-{tag}-%") == 600
    await rec.close()
