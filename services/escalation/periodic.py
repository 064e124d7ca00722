"""Escalation's background rounds: one step every ``period`` seconds, a failed round logged and tried again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shared.service import Service


def every(period: float, step: Callable[[Service], Awaitable[object]], *, name: str, failure: str,
          log: logging.Logger) -> Callable[[Service], Awaitable[None]]:
    """The background task running ``step(service)`` every ``period`` seconds; a failure is logged as ``failure``.

    Nothing a round does is worth stopping the service for: the next round tries again.
    """

    async def run(service: Service) -> None:
        while True:
            try:
                await step(service)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - tried again next round
                log.warning(failure, extra={"error": repr(exc)})
            await asyncio.sleep(period)

    run.__name__ = run.__qualname__ = name
    return run
