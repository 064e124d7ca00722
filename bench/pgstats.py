"""What PostgreSQL did per appeal: transactions committed, rows written and read, per table.

Read from the cumulative statistics views (``pg_stat_database``, ``pg_stat_user_tables``:
no extension needed) before and after a phase, on the bench's own connection. A
backend reports its counters when its transaction ends, at most once a second, and
an idle one within about ten seconds, so the last second of a phase may be missing:
the figures are a little low, never high. They say where the writes go (which
tables, how many rows per appeal), which is what batching and fewer events change.
"""

from __future__ import annotations

import asyncpg

_TABLES = """
SELECT schemaname || '.' || relname AS name, n_tup_ins AS ins, n_tup_upd AS upd, n_tup_del AS del,
       coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0) AS read, coalesce(seq_tup_read, 0) AS seq_read
FROM pg_stat_user_tables
"""
_INDEXES = """
SELECT schemaname || '.' || indexrelname AS name, idx_scan AS scans, idx_tup_read AS read FROM pg_stat_user_indexes
"""
_DATABASE = """
SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_returned, tup_fetched
FROM pg_stat_database WHERE datname = current_database()
"""


async def keep_statistics_current(conn: asyncpg.Connection, every_s: float = 1.0) -> None:
    """Let autovacuum look at the tables every ``every_s`` seconds (the embedded server only: never someone else's).

    A run starts on empty tables that grow to tens of thousands of rows within a
    minute, before the default ``autovacuum_naptime`` (60 s) ever analyses them, so the
    services' prepared statements keep the plans made for empty tables (sequential
    scans of every notification on each claim). A production database has its
    history and is analysed as it grows; analysing every second is the closer model of
    it than statistics a minute stale.
    """
    await conn.execute(f"ALTER SYSTEM SET autovacuum_naptime = '{max(1, round(every_s))}s'")
    await conn.execute("SELECT pg_reload_conf()")


async def snapshot(conn: asyncpg.Connection) -> dict:
    """The cumulative counters now (this connection's own statistics flushed first)."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    tables = {r["name"]: (r["ins"], r["upd"], r["del"], r["read"], r["seq_read"]) for r in await conn.fetch(_TABLES)}
    indexes = {r["name"]: (r["scans"], r["read"]) for r in await conn.fetch(_INDEXES)}
    return {"database": dict(await conn.fetchrow(_DATABASE)), "tables": tables, "indexes": indexes}


def per_appeal(before: dict, after: dict, appeals: int, top: int = 12) -> dict:
    """Commits and rows written per appeal in all, and the busiest tables: rows written and read per appeal."""
    n = max(1, appeals)
    db = {k: round((after["database"][k] - before["database"][k]) / n, 2) for k in after["database"]}
    tables = []
    for name, now in after["tables"].items():
        b = before["tables"].get(name, (0, 0, 0, 0, 0))
        ins, upd, dele, read, seq_read = (x - y for x, y in zip(now, b, strict=True))
        if ins or upd or dele or read:
            tables.append({"table": name, "inserted": round(ins / n, 2), "updated": round(upd / n, 2),
                           "deleted": round(dele / n, 2), "rows": round((ins + upd + dele) / n, 2),
                           "read": round(read / n, 1), "read_by_seq_scans": round(seq_read / n, 1)})
    written = round(sum(t["rows"] for t in tables), 2)
    tables.sort(key=lambda t: -(t["rows"] + t["read"] / 10))
    indexes = []
    for name, (scans, read) in after.get("indexes", {}).items():
        b = before.get("indexes", {}).get(name, (0, 0))
        if read - b[1] > 0:
            indexes.append({"index": name, "scans": round((scans - b[0]) / n, 2), "read": round((read - b[1]) / n, 1)})
    indexes.sort(key=lambda i: -i["read"])
    return {"appeals": appeals, "database": db, "rows_written": written, "tables": tables[:top],
            "indexes": indexes[:top // 2]}
