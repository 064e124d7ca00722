"""The system under test: the four services as separate processes, and the outside world they talk to.

- :class:`BenchStack`: :class:`tools.stack.Stack` on free HTTP ports, optionally with
  one service run under pyinstrument (``--profile SERVICE``);
- the SMS gateway and the units' WeCom robots: a :class:`LocalSmsSink` in this
  process (the district file points every robot at it, as the demo does);
- e-mail: an aiosmtpd server that discards what it gets, in its own process, so
  the notify service's mails cost this process nothing.

Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from shared.settings import SERVICES
from tools.embedded import free_port
from tools.stack import Stack


def use_free_service_ports() -> dict[str, int]:
    """Give each service a free HTTP port (the defaults 8101-8104 may be taken by a demo or a test run).

    Set in this process's environment before the stack is built, so ``Stack.urls()``
    (which reads the settings here) and the services (which inherit it) agree.
    """
    ports = {}
    for name in SERVICES:
        ports[name] = free_port()
        os.environ[f"{name.upper()}_PORT"] = str(ports[name])
    return ports


class BenchStack(Stack):
    """A :class:`Stack` whose ``profile`` service, if any, runs under ``python -m pyinstrument``."""

    def __init__(self, *, profile: str | None = None, profile_out: Path | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.profile = profile
        self.profile_out = profile_out
        self.replica_urls: dict[str, str] = {}

    def start(self) -> BenchStack:
        if not self.profile:
            super().start()
            return self
        everything = self.services
        self.services = tuple(s for s in everything if s != self.profile)
        try:
            super().start()
        finally:
            self.services = everything
        env = {**os.environ, **self.servers.env(), **self.extra_env}
        log_dir = self.servers.folder / "logs"
        out = open(log_dir / f"{self.profile}.log", "ab")  # noqa: SIM115 - owned by the process
        assert self.profile_out is not None
        self.procs[self.profile] = subprocess.Popen(
            [sys.executable, "-m", "pyinstrument", "-r", "pyisession", "-o", str(self._session_file()),
             "-m", f"services.{self.profile}"],
            env=env, stdout=out, stderr=out, start_new_session=True,
        )
        return self

    def _session_file(self) -> Path:
        assert self.profile_out is not None
        return self.profile_out.with_suffix(".pyisession")

    def stop(self, timeout: float = 15) -> None:
        super().stop(timeout)
        if self.profile and self._session_file().exists():
            self.render_profile()

    def render_profile(self) -> None:
        """The profiled service's session as HTML (``profile_out``) and as a text tree beside it (``.txt``)."""
        session = str(self._session_file())
        for renderer, out in (("html", self.profile_out), ("text", self.profile_out.with_suffix(".txt"))):
            subprocess.run([sys.executable, "-m", "pyinstrument", "--load", session, "-r", renderer,
                            "-p", "flat=true" if renderer == "text" else "timeline=false",
                            "-o", str(out)], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def add_replicas(self, name: str, extra: int, timeout: float = 120) -> list[str]:
        """Start ``extra`` more processes of service ``name`` (``name#2``, ``name#3``...), each on its own HTTP port.

        They bind the same durable consumers and relay the same outbox as the first
        (``SKIP LOCKED``): JetStream shares the messages among them. Returns their
        names once each answers ``/readyz``.
        """
        import httpx

        from tools.embedded import free_port

        env = {**os.environ, **self.servers.env(), **self.extra_env}
        log_dir = self.servers.folder / "logs"
        started: list[str] = []
        for k in range(2, 2 + extra):
            key = f"{name}#{k}"
            port = free_port()
            out = open(log_dir / f"{name}-{k}.log", "ab")  # noqa: SIM115 - owned by the process
            self.procs[key] = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"], env={**env, f"{name.upper()}_PORT": str(port)},
                stdout=out, stderr=out, start_new_session=True,
            )
            self.replica_urls[key] = f"http://{self.settings.http_host}:{port}"
            started.append(key)
        deadline = time.monotonic() + timeout
        pending = set(started)
        while pending and time.monotonic() < deadline:
            for key in list(pending):
                if self.procs[key].poll() is not None:
                    raise RuntimeError(f"{key} exited with code {self.procs[key].returncode}")
                try:
                    if httpx.get(self.replica_urls[key] + "/readyz", timeout=1).status_code == 200:
                        pending.discard(key)
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        if pending:
            raise TimeoutError(f"not ready after {timeout}s: {', '.join(sorted(pending))}")
        return started

    def remove_replicas(self, keys: list[str], timeout: float = 20) -> None:
        """Stop the extra processes started by :meth:`add_replicas` (SIGTERM: each finishes its batches)."""
        for key in keys:
            proc = self.procs.get(key)
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for key in keys:
            proc = self.procs.pop(key, None)
            self.replica_urls.pop(key, None)
            if proc is None:
                continue
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.servers.folder / "logs" / f"{name.replace('#', '-')}.log"
        try:
            return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def server_pids(self) -> dict[str, int]:
        """The embedded nats-server's pid, when this stack started it."""
        proc = getattr(self.servers, "_nats", None)
        return {"nats-server": proc.pid} if proc is not None and proc.poll() is None else {}


class MailSink:
    """An SMTP server (aiosmtpd's ``Sink`` handler: accept and discard) in its own process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15) -> MailSink:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-u", "-c", "aiosmtpd.handlers.Sink", "-l", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the mail sink exited with code {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError("the mail sink did not listen in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def bench_district(robot_url_for) -> Path:
    """The default district with every unit's WeCom robot pointed at the local sink (as the demo does)."""
    from tools.demo import demo_district

    return demo_district(robot_url_for)


def remove_district(path: Path) -> None:
    shutil.rmtree(path.parent, ignore_errors=True)
