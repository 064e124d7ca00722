"""What PostgreSQL did per appeal: transactions committed and rows written, per table.

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
SELECT schemaname || '.' || relname AS name, n_tup_ins AS ins, n_tup_upd AS upd, n_tup_del AS del
FROM pg_stat_user_tables
"""
_DATABASE = """
SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_returned, tup_fetched
FROM pg_stat_database WHERE datname = current_database()
"""


async def snapshot(conn: asyncpg.Connection) -> dict:
    """The cumulative counters now (this connection's own statistics flushed first)."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    tables = {r["name"]: (r["ins"], r["upd"], r["del"]) for r in await conn.fetch(_TABLES)}
    return {"database": dict(await conn.fetchrow(_DATABASE)), "tables": tables}


def per_appeal(before: dict, after: dict, appeals: int, top: int = 12) -> dict:
    """Commits and rows written per appeal in all, and the tables with the most rows written per appeal."""
    n = max(1, appeals)
    db = {k: round((after["database"][k] - before["database"][k]) / n, 2) for k in after["database"]}
    tables = []
    for name, (ins, upd, dele) in after["tables"].items():
        b = before["tables"].get(name, (0, 0, 0))
        d = (ins - b[0], upd - b[1], dele - b[2])
        if any(d):
            tables.append({"table": name, "inserted": round(d[0] / n, 2), "updated": round(d[1] / n, 2),
                           "deleted": round(d[2] / n, 2), "rows": round(sum(d) / n, 2)})
    tables.sort(key=lambda t: -t["rows"])
    return {"appeals": appeals, "database": db,
            "rows_written": round(sum(t["rows"] for t in tables), 2), "tables": tables[:top]}
