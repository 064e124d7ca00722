"""Raw speed of the same servers, without the services: what the pipeline is compared with.

- nats-py JetStream: own stream ``BENCH_RAW`` on ``bench.raw``, 1 KB messages;
  ``publish_async`` to fill it, then a durable pull consumer: ``fetch(100)`` and
  ``ack`` each message.
- asyncpg: own schema ``bench``; one row INSERTed per transaction (autocommit) on
  one connection, then from an 8-connection pool (commits overlap: group commit).

Both clean up after themselves (stream deleted, schema dropped).
"""

from __future__ import annotations

import asyncio
import os
import time

import asyncpg
import nats
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from nats.js.errors import NotFoundError

STREAM = "BENCH_RAW"
SUBJECT = "bench.raw"


async def nats_baseline(nats_url: str, messages: int, time_cap: float = 10.0) -> dict:
    nc = await nats.connect(nats_url, name="bench-raw")
    js = nc.jetstream(publish_async_max_pending=4000)
    try:
        try:
            await js.delete_stream(STREAM)
        except NotFoundError:
            pass
        await js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT], storage=StorageType.FILE))
        payload = os.urandom(512).hex().encode()  # 1,024 bytes

        t = time.perf_counter()
        deadline = time.monotonic() + time_cap
        sent = 0
        for sent in range(1, messages + 1):
            # no wait_stall: it wraps every call in asyncio.wait_for (a task each), a quarter of the speed
            await js.publish_async(SUBJECT, payload)
            if not sent % 500:
                await asyncio.sleep(0)
                if time.monotonic() > deadline:
                    break
        await asyncio.wait_for(js.publish_async_completed(), timeout=30)
        publish_s = time.perf_counter() - t

        psub = await js.pull_subscribe(SUBJECT, durable="bench-raw", stream=STREAM,
                                       config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=20_000))
        got = 0
        t = time.perf_counter()
        deadline = time.monotonic() + time_cap
        while got < sent and time.monotonic() < deadline:
            try:
                msgs = await psub.fetch(100, timeout=2)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for m in msgs:
                await m.ack()
            got += len(msgs)
        await nc.flush()
        consume_s = time.perf_counter() - t
        return {
            "messages": sent, "message_bytes": len(payload),
            "publish_async_per_s": round(sent / publish_s),
            "consume_ack_per_s": round(got / consume_s),
            "consumed": got,
        }
    finally:
        try:
            await js.delete_stream(STREAM)
        except Exception:  # noqa: BLE001
            pass
        await nc.close()


async def _insert_loop(conn: asyncpg.Connection, until: float) -> int:
    n = 0
    while time.monotonic() < until:
        await conn.execute("INSERT INTO bench.rows (payload) VALUES ($1)", "x" * 200)
        n += 1
    return n


async def postgres_baseline(dsn: str, seconds: float, pool_size: int = 8) -> dict:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS bench CASCADE")
        await conn.execute("CREATE SCHEMA bench")
        await conn.execute("CREATE TABLE bench.rows (id bigserial PRIMARY KEY, "
                           "at timestamptz NOT NULL DEFAULT now(), payload text NOT NULL)")
        t = time.perf_counter()
        single = await _insert_loop(conn, time.monotonic() + seconds)
        single_rate = single / (time.perf_counter() - t)

        pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
        try:
            async def worker(until: float) -> int:
                async with pool.acquire() as c:
                    return await _insert_loop(c, until)

            t = time.perf_counter()
            until = time.monotonic() + seconds
            counts = await asyncio.gather(*(worker(until) for _ in range(pool_size)))
            pool_rate = sum(counts) / (time.perf_counter() - t)
        finally:
            await pool.close()
        return {
            "single_connection_commits_per_s": round(single_rate),
            f"pool_{pool_size}_commits_per_s": round(pool_rate),
            "pool_size": pool_size,
            "seconds_each": seconds,
        }
    finally:
        try:
            await conn.execute("DROP SCHEMA IF EXISTS bench CASCADE")
        finally:
            await conn.close()
