"""The results: one JSON file per run and a table on screen, each figure beside its target."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).with_name("results")

TARGETS = {
    "throughput_appeals_per_s": 2000,
    "latency_p99_publish_to_dispatched_ms": 50,
    "escalation_lateness_p99_ms": 1000,
    "service_rss_mb": 150,
}


def write_json(results: dict, stamp: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{stamp}.json"
    path.write_text(json.dumps(results, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return path


def _n(x, unit: str = "", digits: int = 0) -> str:
    if x is None:
        return "-"
    if isinstance(x, (int, float)):
        return f"{x:,.{digits}f}{unit}"
    return str(x)


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("met" if ok else "NOT met")


def render(r: dict) -> str:
    out: list[str] = []
    line = out.append
    m = r.get("machine", {})
    line("=" * 100)
    line(f"coffeetime benchmark  {r.get('stamp')}  {'(--quick) ' if r.get('args', {}).get('quick') else ''}"
         f"{'profile: ' + r['args']['profile'] if r.get('args', {}).get('profile') else ''}")
    line("=" * 100)
    line(f"machine     {m.get('cpu_model')}, {m.get('cores')} cores ({m.get('cores_usable')} usable), "
         f"{_n((m.get('ram_mb') or 0) / 1024, ' GB', 1)} RAM, load average at start {m.get('load_average_at_start')}, at end {m.get('load_average_at_end')}")
    line(f"software    Python {m.get('python')}, nats-server {m.get('nats_server')}, PostgreSQL {m.get('postgresql')} "
         f"(synchronous_commit={m.get('synchronous_commit')}, fsync={m.get('fsync')}, autovacuum_naptime={m.get('autovacuum_naptime')}), "
         f"git {m.get('git_commit')} (+{m.get('git_dirty_files')} changed files)")
    line(f"servers     {r.get('servers')}; services each its own process; LOG_LEVEL=WARNING, quiet hours off, "
         f"SCAN_INTERVAL_S={r.get('scan_interval_s')}")

    t = r.get("throughput")
    if t:
        line("")
        line(f"THROUGHPUT  full load for {t['duration_s']} s (≤ {t['max_backlog']:,} calls waiting for dispatch), "
             f"{t['calls']:,} calls")
        line(f"  {'':44} {'measured':>14}   {'target':>14}")
        tgt = r["targets"]["throughput_appeals_per_s"]
        line(f"  {'hotline published (JetStream acked)':44} {_n(t['rate_published'], ' /s'):>14}")
        line(f"  {'publish → ct.appeal.registered, steady':44} {_n(t['steady_rate']['registered'], ' /s'):>14}")
        d = t["steady_rate"]["dispatched"]
        line(f"  {'publish → ct.order.dispatched, steady':44} {_n(d, ' /s'):>14}   {'≥ ' + format(tgt, ','):>12} /s  "
             f"{_verdict(d >= tgt)}")
        s = t["steady_rate"]["sms"]
        line(f"  {'publish → receipt SMS accepted, steady':44} {_n(s, ' /s'):>14}   {'≥ ' + format(tgt, ','):>12} /s  "
             f"{_verdict(s >= tgt)}")
        line(f"  {'every SMS the gateway accepted, steady':44} {_n(t['steady_rate'].get('sms_any'), ' /s'):>14}"
             "   (receipts of earlier calls, liaisons: notify's own rate)")
        o = t["overall_rate_incl_drain"]
        line(f"  {'incl. the drain: dispatched / SMS':44} {_n(o['dispatched'], ' /s'):>14} / {_n(o['sms'], ' /s')}")
        b = t["backlog_at_stop"]
        line(f"  {'backlog at stop: registered/dispatched/SMS':44} {b['registered']:>14,} / {b['dispatched']:,} / {b['sms']:,}")
        dr = t["drain_s"]
        line(f"  {'drain after stop: registered/dispatched/SMS':44} "
             f"{_n(dr['registered'], ' s', 1):>14} / {_n(dr['dispatched'], ' s', 1)} / {_n(dr['sms'], ' s', 1)}"
             f"   (- = not drained in {r['args']['drain_timeout']:g} s)")
        line(f"  {'publisher held back by the backlog cap':44} {_n(t['publisher_throttled_s'], ' s', 1):>14}")
        cb = t.get("consumer_backlog_at_stop") or {}
        if cb:
            top = ", ".join(f"{k} {v:,}" for k, v in list(cb.items())[:6])
            line(f"  consumers behind at stop: {top}")
        ob = {k: v for k, v in (t.get("outbox_backlog_at_stop") or {}).items() if v}
        if ob:
            line("  outbox / notify rows waiting at stop: " + ", ".join(f"{k} {v:,}" for k, v in ob.items()))
        sm = t.get("service_metrics") or {}
        if sm.get("handlers"):
            line(f"  {'busiest handlers (phase and drain)':44} {'busy s':>8} {'batches':>8} {'msg/batch':>9} "
                 f"{'ms/batch':>9} {'ms/msg':>7}")
            for key, h in list(sm["handlers"].items())[:8]:
                line(f"    {key:42} {h['busy_s']:>8.1f} {h['batches']:>8,} {_n(h['messages_per_batch'], '', 1):>9} "
                     f"{h['ms_per_batch']:>9.1f} {_n(h['ms_per_message'], '', 2):>7}")
        for channel, c in (sm.get("notify_channels") or {}).items():
            line(f"    notify {channel:8} planned {c.get('planned', 0):>7,}  delivered {c.get('delivered', 0):>7,}  "
                 f"retried {c.get('retried', 0):>5,}  failed {c.get('failed', 0):>5,}  "
                 f"mean send {_n(c.get('mean_send_ms'), ' ms', 1)}")

    for key, label in (("latency", "latency phase and its drain"), ("throughput", "throughput phase and its drain")):
        cpu = (r.get(key) or {}).get("cpu")
        if cpu:
            line("")
            line(f"CPU  {label}: {cpu['cpu_s_total']} CPU-s in {cpu['wall_s']} s "
                 f"({cpu['machine_busy'] * 100:.0f}% of the machine; other processes used "
                 f"{cpu.get('cpu_s_other_processes', '-')} CPU-s), per appeal dispatched ({cpu['units']:,}):")
            line("  " + ", ".join(f"{name} {p['cpu_ms_per_appeal']} ms ({p['share'] * 100:.0f}%)"
                                  for name, p in cpu["per_process"].items() if p["cpu_s"] > 0))
    pg = (r.get("throughput") or {}).get("postgres")
    if pg:
        db = pg["database"]
        line("")
        line(f"POSTGRESQL  throughput phase and its drain, per appeal dispatched ({pg['appeals']:,}): "
             f"{db['xact_commit']} commits, {pg['rows_written']} rows written ({db['tup_inserted']} inserted, "
             f"{db['tup_updated']} updated, {db['tup_deleted']} deleted), {db['tup_fetched']} fetched")
        for t in pg["tables"]:
            line(f"  {t['table']:40} written {t['rows']:>6} (ins {t['inserted']}, upd {t['updated']}, "
                 f"del {t['deleted']}), read {t.get('read', '-')} ({t.get('read_by_seq_scans', '-')} by seq scans)")
        for i in pg.get("indexes", []):
            line(f"  index {i['index']:50} {i['scans']:>6} scans, {i['read']:>7} entries read")
    bl = r.get("backlog")
    if bl:
        line("")
        line(f"BACKLOG  {bl['calls']:,} calls published with the services paused ({bl['published_s']} s), then resumed")
        for key in ("registered", "dispatched"):
            d = bl[key]
            line(f"  {key:12} {d['count']:>9,} in {_n(d['seconds'], ' s', 1):>9}  {_n(d['per_s'], ' /s', 1):>12}")
        line(f"  drain / steady dispatch rate of the throughput phase: {_n(bl.get('drain_vs_steady'), 'x', 2)} "
             f"(target ≥ 2x); receipts sent by the last dispatch: {bl['receipts_by_then']:,}"
             + ("" if bl["complete"] else "  (NOT drained in the wait)"))
        cpu = bl.get("cpu")
        if cpu:
            line("  CPU per appeal dispatched: " + ", ".join(
                f"{name} {p['cpu_ms_per_appeal']} ms" for name, p in cpu["per_process"].items() if p["cpu_s"] > 0))
    lat = r.get("latency")
    if lat:
        line("")
        line(f"LATENCY  {lat['calls']:,} calls at {lat['rate_target']:g}/s (achieved {lat['rate_achieved']:g}/s), "
             f"complete: {lat['complete']}")
        line(f"  {'ms':30} {'p50':>9} {'p95':>9} {'p99':>9} {'max':>9} {'n':>7}   target")
        tgt = r["targets"]["latency_p99_publish_to_dispatched_ms"]
        for key, label in (("publish_to_puback", "publish → PubAck"), ("publish_to_registered", "publish → registered"),
                           ("publish_to_dispatched", "publish → dispatched"), ("publish_to_sms", "publish → SMS accepted"),
                           ("registered_to_dispatched", "registered → dispatched"),
                           ("registered_to_sms", "registered → SMS accepted")):
            p = lat["ms"][key]
            extra = ""
            if key == "publish_to_dispatched" and p["p99"] is not None:
                extra = f"   p99 ≤ {tgt} ms  {_verdict(p['p99'] <= tgt)}"
            line(f"  {label:30} {_n(p['p50'], '', 1):>9} {_n(p['p95'], '', 1):>9} {_n(p['p99'], '', 1):>9} "
                 f"{_n(p['max'], '', 1):>9} {p['n']:>7,}{extra}")

    rep = r.get("replicas")
    if rep:
        line("")
        line("REPLICAS  full load per phase; acked/s = messages the service's durable consumers acked, all processes")
        line(f"  {'phase':18} {'dispatched/s':>12} {'SMS/s':>7}   acked/s and CPU-ms per appeal by service")
        for ph in (rep["reference"], *rep["phases"]):
            line(f"  {ph['label']:18} {_n(ph['dispatched_per_s'], '', 1):>12} {_n(ph['sms_any_per_s'], '', 1):>7}   "
                 + ", ".join(f"{s} {_n(v, '', 1)} ({_n(ph['cpu_ms_per_appeal'].get(s), ' ms', 2)})"
                             for s, v in ph["acked_per_s"].items()))
        for service, row in rep["speedup"].items():
            n = row["replicas"]
            line(f"  speed-up {service} x{n}: {_n(row['speedup'], '', 2)} in acked/s "
                 f"({_n(row['acked_per_s_1'], '', 1)} → {_n(row[f'acked_per_s_{n}'], '', 1)})"
                 + (f", {_n(row['sms_speedup'], '', 2)} in SMS/s" if "sms_speedup" in row else "")
                 + f"; its CPU-ms per appeal {_n(row['cpu_ms_per_appeal_1'], '', 2)} → "
                   f"{_n(row[f'cpu_ms_per_appeal_{n}'], '', 2)}")

    base = r.get("baselines")
    if base:
        line("")
        line("BASELINES  the same servers, no services in the path")
        n = base.get("nats") or {}
        pg = base.get("postgres") or {}
        ratios = r.get("ratios") or {}
        line(f"  {'nats-py JetStream publish_async (1 KB)':44} {_n(n.get('publish_async_per_s'), ' msg/s'):>16}")
        line(f"  {'nats-py pull fetch(100) + ack (1 KB)':44} {_n(n.get('consume_ack_per_s'), ' msg/s'):>16}"
             f"   pipeline = {_n(ratios.get('dispatched_vs_nats_consume'), '', 3)} of it")
        line(f"  {'asyncpg 1-row commits, 1 connection':44} {_n(pg.get('single_connection_commits_per_s'), ' /s'):>16}"
             f"   pipeline = {_n(ratios.get('dispatched_vs_pg_single'), '', 3)} of it")
        key = f"pool_{pg.get('pool_size', 8)}_commits_per_s"
        line(f"  {'asyncpg 1-row commits, 8-connection pool':44} {_n(pg.get(key), ' /s'):>16}"
             f"   pipeline = {_n(ratios.get('dispatched_vs_pg_pool'), '', 3)} of it")

    e = r.get("escalation")
    if e:
        line("")
        line(f"ESCALATION  {e['total_open']:,} open deadlines, {e['due']:,} due over {e['spread_s']:g} s "
             f"(scanner batch {e['scan_batch']})")
        line(f"  {'COPY into escalation.firings':44} {_n(e.get('copy_rows_per_s'), ' rows/s'):>16}   ({e.get('copy_s')} s)")
        ld = e.get("lateness_db_ms") or {}
        tgt = r["targets"]["escalation_lateness_p99_ms"]
        ok = ld.get("p99") is not None and e.get("fired") == e["due"] and ld["p99"] <= tgt
        line(f"  {'lateness fired_at - fire_at p50 / p99 / max':44} "
             f"{_n(ld.get('p50'), '', 0):>6} / {_n(ld.get('p99'), '', 0)} / {_n(ld.get('max'), ' ms', 0)}"
             f"   p99 ≤ {tgt:,} ms  {_verdict(ok)}")
        lb = e.get("lateness_bus_ms") or {}
        line(f"  {'lateness to ct.deadline.warning p50 / p99':44} {_n(lb.get('p50'), '', 0):>6} / {_n(lb.get('p99'), ' ms', 0)}")
        line(f"  {'fired / events seen':44} {e.get('fired', 0):>6,} / {e.get('events_seen', 0):,} in "
             f"{(e.get('rounds') or {}).get('count')} rounds (largest {(e.get('rounds') or {}).get('largest')})")
        cn = e.get("claim_nothing_due") or {}
        ex0 = e.get("explain_nothing_due") or {}
        ex1 = e.get("explain_batch_due") or {}
        line(f"  {'claim query, nothing due: median / EXPLAIN':44} {_n(cn.get('median_ms'), '', 2):>6} / "
             f"{_n(ex0.get('execution_ms'), ' ms', 2)}")
        line(f"  {'claim query, a batch due: EXPLAIN':44} {_n(ex1.get('execution_ms'), ' ms', 2):>6}")
        for text in (ex1.get("plan") or ex0.get("plan") or [])[:6]:
            line(f"      {text}")
        cpu = e.get("cpu")
        if cpu:
            line(f"  the stack used {cpu['machine_busy'] * 100:.0f}% of the machine (others "
                 f"{cpu.get('cpu_s_other_processes', '-')} CPU-s); CPU-s: " + ", ".join(
                f"{name} {p['cpu_s']}" for name, p in list(cpu["per_process"].items())[:5]))
        if e.get("cleanup_error"):
            line(f"  cleanup failed: {e['cleanup_error']}")

    mem = r.get("memory")
    if mem:
        line("")
        tgt = r["targets"]["service_rss_mb"]
        line(f"MEMORY  peak resident set (process and children, MB)   {'throughput':>10} {'whole run':>10}   target")
        for name, whole in mem["whole_run"].items():
            during = mem["throughput"].get(name)
            verdict = f"≤ {tgt} MB  {_verdict(whole <= tgt)}" if name != "nats-server" else ""
            line(f"  {name:52} {_n(during, '', 1):>10} {_n(whole, '', 1):>10}   {verdict}")

    if r.get("errors"):
        line("")
        line("ERRORS")
        for err in r["errors"]:
            line(f"  {err}")
    if r.get("profile_file"):
        line("")
        line(f"profile of {r['args']['profile']}: {r['profile_file']}")
    line("=" * 100)
    return "\n".join(out)
