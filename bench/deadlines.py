"""The escalation scanner under a million open deadlines.

Loads ``total`` pending ladder steps into ``escalation.firings`` with COPY: all
but ``due`` of them fire a month from now, and ``due`` fire in the next seconds
(``lead_s`` from now, spread evenly over ``spread_s``), so the running escalation
service's scanner picks them up. Then it measures:

- the lateness of each firing, ``fired_at - fire_at`` (the scanner stamps
  ``fired_at`` with the time its round started), and the lateness of its
  ``ct.deadline.warning`` on the bus (a core subscription; includes the commit
  and the outbox relay);
- the rounds that fired them (one ``fired_at`` per round) and their sizes;
- the scanner's claim query (:data:`services.escalation.store.CLAIM_DUE_FIRINGS`)
  with ``EXPLAIN (ANALYZE, BUFFERS)`` on the loaded table, with nothing due and
  with a full batch due, and its plain execution time.

No ``orders`` rows are needed: the scanner falls back to the firing's own order,
appeal and unit when escalation knows nothing more of the order. The steps are
``warning_75`` warnings of known units (notify sends each unit's liaisons an SMS
and a robot post, both to the local sink). Everything loaded is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from services.escalation.config import SCAN_BATCH
from services.escalation.store import CLAIM_DUE_FIRINGS
from shared.contracts import subjects

COLUMNS = ["order_id", "appeal_id", "unit_code", "clock", "level", "step_key", "due_at", "fire_at", "planned_at"]
CHUNK = 100_000


async def _explain_rolled_back(conn: asyncpg.Connection, at: datetime) -> dict:
    tr = conn.transaction()
    await tr.start()
    try:
        await conn.execute("SET LOCAL search_path TO escalation")
        lines = [r[0] for r in await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + CLAIM_DUE_FIRINGS, at, SCAN_BATCH)]
    finally:
        await tr.rollback()  # the claim locked rows: release them at once
    ms = next((float(line.split(":")[1].split()[0]) for line in lines if line.startswith("Execution Time")), None)
    return {"execution_ms": ms, "plan": lines}


async def _claim_ms(conn: asyncpg.Connection, at: datetime, runs: int = 15) -> dict:
    times, rows = [], 0
    for _ in range(runs):
        tr = conn.transaction()
        await tr.start()
        try:
            await conn.execute("SET LOCAL search_path TO escalation")
            t = time.perf_counter()
            rows = len(await conn.fetch(CLAIM_DUE_FIRINGS, at, SCAN_BATCH))
            times.append((time.perf_counter() - t) * 1000)
        finally:
            await tr.rollback()
    return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2), "rows": rows,
            "runs": runs}


async def escalation_phase(dsn: str, nc, *, tag: str, total: int, due: int, unit_codes: list[str],
                           lead_s: float = 6.0, spread_s: float = 5.0, wait_s: float = 45.0) -> dict:
    conn = await asyncpg.connect(dsn)
    appeal = f"bench-{tag}"
    prefix = f"b{tag}d"
    observed: dict[int, float] = {}
    pattern = re.compile(rb'"order_id":"' + re.escape(prefix.encode()) + rb'(\d+)"')

    async def on_warning(msg) -> None:
        m = pattern.search(msg.data)
        if m:
            observed.setdefault(int(m.group(1)), time.time())

    sub = await nc.subscribe(subjects.DEADLINE_WARNING, cb=on_warning, pending_msgs_limit=1_000_000)
    result: dict = {"total_open": total, "due": due, "lead_s": lead_s, "spread_s": spread_s,
                    "scan_batch": SCAN_BATCH}
    try:
        # --- load ------------------------------------------------------------------------------
        now = datetime.now(UTC)
        far = now + timedelta(days=30)
        day = timedelta(days=1)
        units = unit_codes
        far_count = total - due
        t = time.perf_counter()
        for lo in range(0, far_count, CHUNK):
            records = []
            for i in range(lo, min(lo + CHUNK, far_count)):
                fire = far + timedelta(seconds=i)
                records.append((f"b{tag}f{i}", appeal, units[i % len(units)], "handling", "warning_75",
                                f"w75:{i}", fire + day, fire, now))
            await conn.copy_records_to_table("firings", schema_name="escalation", records=records, columns=COLUMNS)
        copy_s = time.perf_counter() - t
        result["copy_s"] = round(copy_s, 1)
        result["copy_rows_per_s"] = round(far_count / copy_s) if copy_s else None
        t = time.perf_counter()
        await conn.execute("ANALYZE escalation.firings")
        result["analyze_s"] = round(time.perf_counter() - t, 1)

        t_due0 = datetime.now(UTC) + timedelta(seconds=lead_s)
        fire_at = [t_due0 + timedelta(seconds=spread_s * k / due) for k in range(due)]
        order_ids = [f"{prefix}{k}" for k in range(due)]
        await conn.copy_records_to_table("firings", schema_name="escalation", columns=COLUMNS, records=[
            (order_ids[k], appeal, units[k % len(units)], "handling", "warning_75", f"w75:{k}",
             fire_at[k] + day, fire_at[k], now) for k in range(due)])
        result["pending_in_index"] = await conn.fetchval(
            "SELECT count(*) FROM escalation.firings WHERE fired_at IS NULL AND cancelled_at IS NULL")

        # --- the claim query, before anything is due (it must not touch the due rows late) ----
        result["explain_nothing_due"] = await _explain_rolled_back(conn, datetime.now(UTC))
        result["claim_nothing_due"] = await _claim_ms(conn, datetime.now(UTC))
        if datetime.now(UTC) < t_due0 - timedelta(seconds=0.5):
            result["explain_batch_due"] = await _explain_rolled_back(conn, fire_at[-1])
        else:
            result["explain_batch_due"] = {"skipped": "the due rows were about to fire"}

        # --- the scanner fires them ---------------------------------------------------------------
        deadline = time.monotonic() + lead_s + spread_s + wait_s
        while time.monotonic() < deadline:
            if len(observed) >= due:
                break
            await asyncio.sleep(0.5)
        stats = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE fired_at IS NOT NULL) AS fired,
                   percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
                     (ORDER BY extract(epoch FROM fired_at - fire_at)) AS p,
                   max(extract(epoch FROM fired_at - fire_at)) AS max,
                   count(DISTINCT fired_at) AS rounds,
                   count(DISTINCT fired_by) AS replicas
            FROM escalation.firings WHERE order_id = ANY($1::text[])
            """,
            order_ids,
        )
        fired = stats["fired"]
        p = stats["p"] or [None, None, None]
        result["fired"] = fired
        result["lateness_db_ms"] = {"p50": _ms(p[0]), "p95": _ms(p[1]), "p99": _ms(p[2]), "max": _ms(stats["max"])}
        sizes = [r["n"] for r in await conn.fetch(
            "SELECT count(*) AS n FROM escalation.firings WHERE order_id = ANY($1::text[]) AND fired_at IS NOT NULL "
            "GROUP BY fired_at ORDER BY fired_at", order_ids)]
        result["rounds"] = {"count": stats["rounds"], "replicas": stats["replicas"],
                            "batch_sizes": sizes[:50], "largest": max(sizes, default=0)}
        bus = sorted(observed[k] - fire_at[k].timestamp() for k in observed)
        result["events_seen"] = len(observed)
        result["lateness_bus_ms"] = _percentiles(bus)
    finally:
        await sub.unsubscribe()
        # --- clean up -------------------------------------------------------------------------------
        t = time.perf_counter()
        try:
            deleted = await conn.execute("DELETE FROM escalation.firings WHERE appeal_id = $1", appeal)
            result["deleted"] = int(deleted.split()[-1])
            await conn.execute("VACUUM ANALYZE escalation.firings")
        except Exception as exc:  # noqa: BLE001 - reported; the rows are tagged for a manual delete
            result["cleanup_error"] = f"{exc!r}: DELETE FROM escalation.firings WHERE appeal_id = '{appeal}'"
        result["cleanup_s"] = round(time.perf_counter() - t, 1)
        await conn.close()
    return result


def _ms(seconds) -> float | None:
    return round(float(seconds) * 1000, 1) if seconds is not None else None


def _percentiles(data: list[float]) -> dict:
    from bench.traffic import percentiles

    return percentiles(data)
