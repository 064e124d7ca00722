"""What the numbers were measured on: CPU, cores, RAM, Python, nats-server, PostgreSQL, the code."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def nats_server_binary_version() -> str | None:
    try:
        from tools.embedded import nats_server_binary

        out = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, timeout=5)
        return (out.stdout or out.stderr).strip() or None
    except Exception:  # noqa: BLE001 - informative only
        return None


def host_info() -> dict:
    """The machine and the code, before anything starts (the load average shows other work running)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    status = _git("status", "--porcelain")
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "ram_mb": _ram_mb(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "nats_server_binary": nats_server_binary_version(),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty_files": len(status.splitlines()) if status else 0,
    }


async def server_info(nc, conn) -> dict:
    """The versions and settings of the servers actually used."""
    pg = {
        "postgresql": await conn.fetchval("SHOW server_version"),
        "synchronous_commit": await conn.fetchval("SHOW synchronous_commit"),
        "fsync": await conn.fetchval("SHOW fsync"),
        "shared_buffers": await conn.fetchval("SHOW shared_buffers"),
        "max_connections": await conn.fetchval("SHOW max_connections"),
        "autovacuum_naptime": await conn.fetchval("SHOW autovacuum_naptime"),
    }
    version = getattr(nc, "_server_info", {}).get("version")
    return {"nats_server": version, **pg}
