"""Test helpers: start services in-process on the real servers, publish, wait for conditions."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from shared.settings import Settings


async def wait_for(condition: Callable[[], Awaitable[Any] | Any], timeout: float = 10.0,
                   interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


def settings_for(env: dict[str, str], **overrides) -> Settings:
    values = {"nats_url": env["NATS_URL"], "database_url": env["DATABASE_URL"],
              "max_deliver": 3, "retry_backoff_s": "0.2,0.2,0.2", "demo_mode": True}
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running(factory, env: dict[str, str], **overrides):
    """A service started in this process against the real servers; stopped on exit."""
    service = factory(settings_for(env, **overrides))
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


class Recorder:
    """Collects every message on some subjects from JetStream (an ephemeral consumer from now on)."""

    def __init__(self, nc: nats.NATS) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.messages: list[tuple[str, dict, dict]] = []
        self._subs = []

    async def watch(self, *subjects: str) -> Recorder:
        for subject in subjects:
            sub = await self.js.subscribe(
                subject, cb=self._on, manual_ack=False,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
            )
            self._subs.append(sub)
        return self

    async def _on(self, msg) -> None:
        try:
            body = json.loads(msg.data)
        except ValueError:
            body = {"_raw": msg.data}
        self.messages.append((msg.subject, body, dict(msg.headers or {})))

    def on(self, subject: str, **match) -> list[dict]:
        return [b for s, b, _ in self.messages if s == subject and all(b.get(k) == v for k, v in match.items())]

    async def close(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001
                pass


async def publish(js, subject: str, body: Any, msg_id: str | None = None) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    await js.publish(subject, data, headers=headers)
