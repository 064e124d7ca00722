"""``coffeetime notify failed|retry-failed``: the messages that failed for good, and a new retry budget for them.

A message fails for good (``ct.notify.failed``, ``coffeetime_notifications_total{outcome="failed"}``)
on a final error or when its retry budget runs out (``NOTIFY_MAX_ATTEMPTS`` attempts,
by default riding out a 30-minute outage of its channel). Once the cause is fixed,
``retry-failed`` makes them pending again under the same notification id with a
whole new budget; the running delivery workers send them within a poll. Without
``--yes`` it only lists what it would retry.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import asyncpg

from services.notify import store
from services.notify.domain import mask_address
from shared import clock
from shared.settings import Settings


async def _run(args: argparse.Namespace) -> int:
    conn = await asyncpg.connect(Settings().database_url, server_settings={"search_path": "notify"})
    try:
        rows = await store.failed(conn, channel=args.channel, since=args.since, ids=args.ids, limit=args.limit)
        retried: list[str] = []
        if args.notify_command == "retry-failed" and args.yes and rows:
            retried = await store.retry_failed(conn, [r["notification_id"] for r in rows], clock.now())
    finally:
        await conn.close()
    listed = [{"notification_id": r["notification_id"], "channel": r["channel"],
               "recipient": mask_address(r["channel"], r["address"]), "template": r["template"],
               "appeal_id": r["appeal_id"], "attempts": r["attempts"], "error": r["last_error"],
               "failed_at": r["failed_at"].isoformat() if r["failed_at"] else None} for r in rows]
    if args.json:
        print(json.dumps({"failed": listed, "retried": retried}, ensure_ascii=False, indent=2))
    else:
        for item in listed:
            print(f"{item['failed_at']}  {item['channel']:5}  {item['notification_id']}  {item['recipient']}  "
                  f"{item['template']}  {item['attempts']} attempts  {item['error']}")
        if args.notify_command == "retry-failed":
            print(f"{len(retried)} sent again with a new retry budget" if args.yes
                  else f"{len(listed)} would be sent again: add --yes")
    return 0


def main(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
