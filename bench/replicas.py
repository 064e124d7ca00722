"""``--replicas notify=2,dispatch=2``: one service at a time run as N processes on its durable consumers.

In one run, after the other phases: a reference phase with one process of every
service, then, for each service named, a phase with N processes of that service
(the extra ones started beside the first, each on its own HTTP port, sharing the
same durable pull consumers and the outbox with ``SKIP LOCKED``), stopped again
before the next service. Every phase is the same full-load throughput phase.

Per phase and service it reports the messages that service's durable consumers
acked per second (the JetStream ack floors, so every replica counts, whichever
one acked), the SMS the gateway accepted per second (notify's own work), the
pipeline's dispatched rate (appeals of any phase: the backlog of the earlier
phases is dispatched first), and the service's CPU-ms per appeal dispatched in
the phase, summed over its processes. The speed-up of a service is its rate with N
processes over its rate in the reference phase of the same run.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from shared.contracts.subjects import STREAM_EVENTS, STREAM_IN


def parse_spec(text: str | None, services: tuple[str, ...]) -> dict[str, int]:
    """``"notify=2,dispatch=2"`` → ``{"notify": 2, "dispatch": 2}``; a service alone means 2."""
    out: dict[str, int] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, _, n = part.partition("=")
        name = name.strip()
        if name not in services:
            raise ValueError(f"--replicas: {name!r} is not one of the services run ({', '.join(services)})")
        count = int(n) if n.strip() else 2
        if count < 2:
            raise ValueError(f"--replicas: {name}={count}: at least 2 (the reference phase runs 1)")
        out[name] = count
    return out


async def acked_per_service(js, services: tuple[str, ...]) -> dict[str, int]:
    """Messages acked so far by each service's durable consumers (the sum of their ack floors)."""
    out = dict.fromkeys(services, 0)
    for stream in (STREAM_IN.name, STREAM_EVENTS.name):
        try:
            infos = await js.consumers_info(stream)
        except Exception:  # noqa: BLE001 - a stream not there yet
            continue
        for info in infos:
            service = (info.name or "").split("-", 1)[0]
            if service in out and info.ack_floor is not None:
                out[service] += info.ack_floor.consumer_seq or 0
    return out


def cpu_by_service(cpu: dict, services: tuple[str, ...]) -> dict[str, float | None]:
    """CPU-ms per dispatched appeal of each service, summed over its processes (``notify``, ``notify#2``...)."""
    out: dict[str, float | None] = {}
    for service in services:
        parts = [p["cpu_ms_per_appeal"] for name, p in cpu["per_process"].items()
                 if (name == service or name.startswith(service + "#")) and p["cpu_ms_per_appeal"] is not None]
        out[service] = round(sum(parts), 2) if parts else None
    return out


def phase_summary(label: str, replicas: dict[str, int], throughput: dict, acked: dict[str, int],
                  seconds: float, cpu: dict, services: tuple[str, ...]) -> dict:
    return {
        "label": label,
        "replicas": {s: replicas.get(s, 1) for s in services},
        "seconds": round(seconds, 1),
        "dispatched_per_s": throughput.get("dispatched_any_per_s", throughput["steady_rate"]["dispatched"]),
        "sms_any_per_s": throughput["steady_rate"]["sms_any"],
        "acked_per_s": {s: round(n / seconds, 1) if seconds else None for s, n in acked.items()},
        "cpu_ms_per_appeal": cpu_by_service(cpu, services),
        "cpu_ms_per_appeal_stack": round(sum(p["cpu_ms_per_appeal"] or 0 for p in cpu["per_process"].values()), 2),
        "consumer_backlog_at_stop": throughput["consumer_backlog_at_stop"],
        "machine_busy": cpu["machine_busy"],
    }


def speedups(reference: dict, phases: list[dict]) -> dict[str, dict]:
    """Per service named in ``--replicas``: its acked rate (and notify's SMS rate) with N processes over one."""
    out = {}
    for phase in phases:
        service = next(s for s, n in phase["replicas"].items() if n > 1)
        n = phase["replicas"][service]
        one, many = reference["acked_per_s"].get(service), phase["acked_per_s"].get(service)
        row = {"replicas": n, "acked_per_s_1": one, f"acked_per_s_{n}": many,
               "speedup": round(many / one, 2) if one and many is not None else None,
               "dispatched_per_s_1": reference["dispatched_per_s"], f"dispatched_per_s_{n}": phase["dispatched_per_s"],
               "cpu_ms_per_appeal_1": reference["cpu_ms_per_appeal"].get(service),
               f"cpu_ms_per_appeal_{n}": phase["cpu_ms_per_appeal"].get(service)}
        if service == "notify":
            s1, sn = reference["sms_any_per_s"], phase["sms_any_per_s"]
            row |= {"sms_per_s_1": s1, f"sms_per_s_{n}": sn, "sms_speedup": round(sn / s1, 2) if s1 else None}
        out[service] = row
    return out


async def replicas_phases(spec: dict[str, int], stack, run_phase: Callable[[str], Awaitable[tuple[dict, dict]]],
                          js, services: tuple[str, ...], say: Callable[[str], None]) -> dict:
    """The reference phase, then one phase per service of ``spec`` with its extra processes running.

    ``run_phase(label)`` runs one throughput phase and returns (its result, its CPU meter result)
    over the processes running at that moment.
    """

    async def one(label: str, replicas: dict[str, int]) -> dict:
        before = await acked_per_service(js, services)
        t0 = time.monotonic()
        throughput, cpu = await run_phase(label)
        seconds = time.monotonic() - t0
        after = await acked_per_service(js, services)
        # over the whole phase (load, a short drain, the publisher's settling): acks and seconds alike
        acked = {s: after[s] - before[s] for s in services}
        summary = phase_summary(label, replicas, throughput, acked, seconds, cpu, services)
        say(f"  {label}: dispatched {summary['dispatched_per_s']}/s, SMS {summary['sms_any_per_s']}/s, acked/s "
            + ", ".join(f"{s} {v}" for s, v in summary["acked_per_s"].items()))
        return summary

    reference = await one("1 process each", {})
    phases = []
    for service, n in spec.items():
        started = stack.add_replicas(service, n - 1)
        try:
            phases.append(await one(f"{service} x{n}", {service: n}))
        finally:
            stack.remove_replicas(started)
    return {"reference": reference, "phases": phases, "speedup": speedups(reference, phases)}
