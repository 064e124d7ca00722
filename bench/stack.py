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
            [sys.executable, "-m", "pyinstrument", "-r", "html", "-o", str(self.profile_out),
             "-m", f"services.{self.profile}"],
            env=env, stdout=out, stderr=out, start_new_session=True,
        )
        return self

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.servers.folder / "logs" / f"{name}.log"
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
