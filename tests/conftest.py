"""Session fixtures: the real NATS and PostgreSQL servers (embedded unless NATS_URL / DATABASE_URL are set)."""

from __future__ import annotations

import os

import asyncpg
import nats
import pytest

from shared.bus import ensure_streams
from shared.contracts.subjects import STREAMS
from shared.settings import SERVICES
from tools.embedded import EmbeddedServers

# Every service the suite starts, in this process or as a process of its own, runs in demo mode: it
# accepts the demo district's tokens (token-<unit_code>), the demo read key and the demo SMS secret
# (shared/access.py). The tests of the refusal outside demo mode say demo_mode=False.
os.environ.setdefault("DEMO_MODE", "1")


@pytest.fixture(scope="session")
def servers():
    """The servers every integration test uses. Given servers are wiped of coffeetime's streams and schemas first."""
    given = bool(os.environ.get("NATS_URL") or os.environ.get("DATABASE_URL"))
    emb = EmbeddedServers.from_env().start()
    if given:
        import asyncio

        asyncio.run(_reset(emb.nats_url, emb.database_url))
    yield emb.env()
    emb.stop()


async def _reset(nats_url: str, dsn: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for s in STREAMS:
        try:
            await js.delete_stream(s.name)
        except Exception:  # noqa: BLE001 - not there yet
            pass
    await nc.close()
    conn = await asyncpg.connect(dsn)
    for schema in SERVICES:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


@pytest.fixture(scope="session")
async def nc(servers):
    conn = await nats.connect(servers["NATS_URL"])
    await ensure_streams(conn.jetstream())
    yield conn
    await conn.drain()


@pytest.fixture(scope="session")
def js(nc):
    return nc.jetstream()


@pytest.fixture(scope="session")
async def db(servers):
    conn = await asyncpg.connect(servers["DATABASE_URL"])
    yield conn
    await conn.close()
