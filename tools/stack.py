"""The whole stack as processes: the embedded servers the environment lacks, and every service as its own process.

Used by ``coffeetime up``, the demo, the end-to-end tests and the benchmark.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from shared.settings import SERVICES, Settings


class Stack:
    """Every service as its own process, plus the embedded servers the environment lacks."""

    def __init__(self, services=SERVICES, extra_env: dict[str, str] | None = None, quiet: bool = False,
                 demo: bool = True) -> None:
        from tools.embedded import EmbeddedServers

        self.servers = EmbeddedServers.from_env()
        self.services = services
        # a local stack (up, the demo, the benchmark) accepts the demo credentials (shared/access.py);
        # production runs each service with `coffeetime run`, without DEMO_MODE
        self.extra_env = {**({"DEMO_MODE": "1"} if demo else {}), **(extra_env or {})}
        self.quiet = quiet
        self.procs: dict[str, subprocess.Popen] = {}
        self.settings = Settings()

    def start(self) -> Stack:
        self.servers.start()
        env = {**os.environ, **self.servers.env(), **self.extra_env}
        log_dir = self.servers.folder / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.services:
            out = open(log_dir / f"{name}.log", "ab") if self.quiet else None  # noqa: SIM115
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"], env=env, stdout=out, stderr=out,
                start_new_session=True,
            )
        return self

    def urls(self) -> dict[str, str]:
        host = self.settings.http_host
        return {name: f"http://{host}:{self.settings.port_of(name)}" for name in self.services}

    def wait_healthy(self, timeout: float = 60, on_ready: Callable[[str], None] | None = None) -> None:
        """Wait until every service answers /readyz (``on_ready(name)`` as each does)."""
        import httpx

        deadline = time.monotonic() + timeout
        pending = set(self.services)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited with code {self.procs[name].returncode}")
                try:
                    if httpx.get(self.urls()[name] + "/readyz", timeout=1).status_code == 200:
                        pending.discard(name)
                        if on_ready is not None:
                            on_ready(name)
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        if pending:
            raise TimeoutError(f"not healthy after {timeout}s: {', '.join(sorted(pending))}")

    def stop(self, timeout: float = 15) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.servers.stop()
