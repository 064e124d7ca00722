"""Resident memory of each service process (and its children), sampled from /proc in a thread.

A thread, not a task: the event loop is saturated during the throughput phase
and the samples must keep their period.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children() -> dict[int, list[int]]:
    """ppid → pids, from /proc/<pid>/stat."""
    out: dict[int, list[int]] = defaultdict(list)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
            # the command may hold spaces and parentheses: the fields follow the last ')'
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out[ppid].append(int(name))
    return out


def _tree_sum(pid: int, value, children: dict[int, list[int]] | None = None) -> float:
    """``value(p)`` summed over ``pid`` and every process below it."""
    children = children if children is not None else _children()
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += value(p)
        todo.extend(children.get(p, ()))
    return total


def tree_rss_mb(pid: int, children: dict[int, list[int]] | None = None) -> float:
    return _tree_sum(pid, _rss_kb, children) / 1024


class RssSampler:
    """Samples every ``interval`` seconds; keeps the peak per process and phase, and a short series."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5) -> None:
        self.pids = pids
        self.interval = interval
        self.phase = "start-up"
        self.peaks: dict[str, dict[str, float]] = defaultdict(dict)  # phase → name → MB
        self.series: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._t0 = time.time()

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def set_phase(self, phase: str) -> None:
        self.phase = phase

    def sample(self) -> dict[str, float]:
        children = _children()
        now = {name: round(tree_rss_mb(pid, children), 1) for name, pid in self.pids.items()}
        peaks = self.peaks[self.phase]
        for name, mb in now.items():
            if mb > peaks.get(name, 0.0):
                peaks[name] = mb
        if len(self.series) < 2000:
            self.series.append({"t": round(time.time() - self._t0, 1), "phase": self.phase, **now})
        return now

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def peak(self, phase: str | None = None) -> dict[str, float]:
        """The peak per process in one phase, or over the whole run."""
        if phase is not None:
            return dict(self.peaks.get(phase, {}))
        out: dict[str, float] = {}
        for per_phase in self.peaks.values():
            for name, mb in per_phase.items():
                out[name] = max(out.get(name, 0.0), mb)
        return out


# --- CPU time -------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_ticks(pid: int) -> int:
    """utime + stime of the process and of its children already reaped (cutime + cstime)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15])
    except (OSError, ValueError, IndexError):
        return 0


def cpu_seconds(pid: int, tree: bool = True) -> float:
    """CPU seconds used so far by ``pid`` (and, with ``tree``, every process below it, live or reaped)."""
    if not tree:
        return _cpu_ticks(pid) / _TICK
    return _tree_sum(pid, _cpu_ticks) / _TICK


def find_process(needle: str, name: str) -> int | None:
    """The oldest process whose command line contains ``needle`` and whose name is ``name`` (e.g. the postmaster)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/comm", encoding="ascii", errors="replace") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if needle in cmd and comm == name:
            found.append(int(entry))
    return min(found) if found else None


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (all cores; /proc/stat, idle and iowait excluded)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _TICK


class CpuMeter:
    """CPU seconds per process between two points: where a phase's work went."""

    def __init__(self, pids: dict[str, tuple[int, bool]]) -> None:
        self.pids = pids  # name → (pid, whole tree?)
        self._start: dict[str, float] = {}
        self._t = 0.0

    def start(self) -> None:
        self._t = time.monotonic()
        self._machine = machine_busy_seconds()
        self._start = {name: cpu_seconds(pid, tree) for name, (pid, tree) in self.pids.items()}

    def stop(self, units: int) -> dict:
        wall = time.monotonic() - self._t
        used = {name: cpu_seconds(pid, tree) - self._start.get(name, 0.0) for name, (pid, tree) in self.pids.items()}
        total = sum(used.values())
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        machine = machine_busy_seconds() - self._machine
        return {
            "wall_s": round(wall, 1),
            "cpu_s_total": round(total, 1),
            # CPU the rest of the machine used meanwhile (other users' tests...): it makes a run slower
            "cpu_s_other_processes": round(max(0.0, machine - total), 1),
            "machine_busy": round(total / (wall * cores), 3) if wall else None,
            "units": units,
            "per_process": {
                name: {"cpu_s": round(s, 1), "share": round(s / total, 3) if total else None,
                       "cpu_ms_per_appeal": round(s / units * 1000, 2) if units else None}
                for name, s in sorted(used.items(), key=lambda kv: -kv[1])
            },
        }
