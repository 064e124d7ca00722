"""The command line: `coffeetime up` runs every service as its own process and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tools.embedded import free_port

pytestmark = pytest.mark.integration
COFFEETIME = str(Path(sys.executable).with_name("coffeetime"))


def _children(pid: int) -> set[int]:
    """Every descendant process of ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _processes_mentioning(text: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(entry.name))
            except OSError:
                continue
    return [pid for pid in out if _alive(pid)]


def test_up_starts_every_service_and_sigterm_stops_everything_within_20_seconds(tmp_path):
    ports = {name: free_port() for name in ("intake", "dispatch", "escalation", "notify")}
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env.update({f"{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env["LOG_LEVEL"] = "WARNING"
    proc = subprocess.Popen([COFFEETIME, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
            if "all services up" in line:
                break
        assert any("all services up" in line for line in lines), "".join(lines)
        for name, port in ports.items():
            assert any(f"127.0.0.1:{port}/healthz" in line for line in lines), name
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert health.status_code == 200 and health.json()["ok"], name
            assert "coffeetime_" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        family = _children(proc.pid)
        assert len(family) >= 5  # four services, nats-server and PostgreSQL's processes

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=25)
        took = time.monotonic() - started
        assert took < 20, f"took {took:.1f}s to stop"
        assert proc.returncode == 0
        still = [pid for pid in family if _alive(pid)]
        assert still == [], f"left running: {still}"
        # PostgreSQL daemonises (pg_ctl), so look for any process still using the embedded folder
        folder = next(line for line in lines if line.startswith("PostgreSQL")).split("host=")[1].strip()
        assert _processes_mentioning(folder) == [], "the embedded PostgreSQL is still running"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
