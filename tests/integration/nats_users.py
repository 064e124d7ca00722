"""A real nats-server running the deployable ``deploy/nats/nats.conf``, for the permission and dead-letter tests.

The file is used as shipped; only what a test machine must change is changed in a
copy: the JetStream store (a temporary folder), the ports (free loopback ports, on
the command line) and the passwords (``$<USER>_PASSWORD``, given in the environment
as ``pw-<user>``).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import nats

from tools.embedded import _wait_for_port, free_port, nats_server_binary

ROOT = Path(__file__).parents[2]
NATS_CONF = ROOT / "deploy" / "nats" / "nats.conf"


def password_variables(conf: str) -> set[str]:
    """The variables the file reads its passwords from (``password: $NAME``)."""
    return set(re.findall(r"\bpassword:\s*\$([A-Z][A-Z0-9_]*)", conf))


def password_of(user: str) -> str:
    return f"pw-{user}"


class DeployedNats:
    """nats-server with the deployable accounts, on free ports, its store in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log = folder / "nats-server.log"
        self._proc: subprocess.Popen | None = None

    def start(self) -> DeployedNats:
        conf = NATS_CONF.read_text(encoding="utf-8")
        store = self.folder / "jetstream"
        variant, replaced = re.subn(r'(store_dir:\s*)"[^"]*"', lambda m: f'{m.group(1)}"{store}"', conf)
        assert replaced == 1, "nats.conf names one JetStream store_dir"
        path = self.folder / "nats.conf"
        path.write_text(variant, encoding="utf-8")
        env = {**os.environ, **{name: password_of(name.removesuffix("_PASSWORD").lower())
                                for name in password_variables(conf)}}
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                [nats_server_binary(), "-c", str(path), "-a", "127.0.0.1", "-p", str(self.port),
                 "-m", str(free_port())],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        _wait_for_port(self.port, 15, self._proc)
        return self

    def users(self) -> list[str]:
        """Every user of the COFFEETIME account in the file."""
        return [u.lower() for u in (n.removesuffix("_PASSWORD") for n in password_variables(NATS_CONF.read_text()))
                if u != "SYS"]

    def service_env(self, database_url: str) -> dict[str, str]:
        """The environment of ``tests.support.running`` against this server (the user comes in the overrides)."""
        return {"NATS_URL": self.url, "DATABASE_URL": database_url}

    def credentials(self, user: str) -> dict[str, str]:
        """Settings overrides that make a service connect as ``user`` (its inbox prefix follows by default)."""
        return {"nats_user": user, "nats_password": password_of(user)}

    async def connect(self, user: str, errors: list[Exception] | None = None, **options) -> nats.NATS:
        """A client connected as ``user`` on its own inbox prefix; server refusals are appended to ``errors``."""

        async def on_error(exc: Exception) -> None:
            if errors is not None:
                errors.append(exc)

        return await nats.connect(self.url, user=user, password=password_of(user), inbox_prefix=f"_INBOX_{user}",
                                  error_cb=on_error, max_reconnect_attempts=2, name=f"test-{user}", **options)

    def violations(self) -> list[str]:
        """The permission violations the server logged."""
        return [line for line in self.log.read_text(errors="replace").splitlines() if "Violation" in line]

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def refused(errors: list[Exception], subject: str, what: str = "publish") -> bool:
    """Whether the server refused ``what`` (publish or subscription) on ``subject`` to this client."""
    needle = f'permissions violation for {what} to "{subject.lower()}"'
    return any(needle in str(e).lower() for e in errors)
