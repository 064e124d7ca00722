"""Run a deployment's NATS nodes here: the very command lines of the Helm chart or compose file, on loopback.

A deployment names its nodes by DNS (``coffeetime-nats-0.coffeetime-nats-headless...``, ``nats-1``) and
gives each the same ``/etc/nats/nats.conf`` with its own disk at ``/data``. Here the nodes share one
machine, so :func:`localise` changes only where things are: each host name becomes 127.0.0.1 with a
port of that node's own, each node's ``store_dir`` a folder of its own, and the client and monitoring
ports are given as flags (``-p``, ``-m``, which override the file). Every other argument and every line
of the configuration are the deployment's.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tools.embedded import free_port, nats_server_binary

CONF_IN_CONTAINER = "/etc/nats/nats.conf"
STORE_DIR = re.compile(r'^(\s*store_dir:\s*)"[^"]*"', re.M)


def password_variables(conf: str) -> set[str]:
    """The ``$NAME_PASSWORD`` variables a nats.conf reads."""
    return set(re.findall(r"\$([A-Z][A-Z0-9_]*_PASSWORD)\b", conf))


@dataclass
class Node:
    name: str  # the server name the deployment gives it
    host: str  # the host name the routes and clients use for it
    args: list[str]  # its command line, as deployed (without the binary)
    client_port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def monitor(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}{path}", timeout=3) as response:
            return json.loads(response.read())


def localise(nodes: list[Node], conf: str, folder: Path) -> list[list[str]]:
    """Each node's command line with host names, ports, the config path and the store moved to this machine."""
    commands = []
    for node in nodes:
        store = folder / node.name
        store.mkdir(parents=True, exist_ok=True)
        path = folder / f"{node.name}.conf"
        text, count = STORE_DIR.subn(lambda m, s=store: f'{m.group(1)}"{s}"', conf)
        assert count == 1, "nats.conf has one store_dir"
        path.write_text(text, encoding="utf-8")
        args = []
        for arg in node.args:
            arg = arg.replace(CONF_IN_CONTAINER, str(path))
            arg = arg.replace("0.0.0.0:6222", f"127.0.0.1:{node.cluster_port}")
            arg = re.sub(r"^/var/run/nats/", f"{folder}/{node.name}-", arg)
            for other in nodes:  # routes to and addresses of every node
                arg = arg.replace(f"{other.host}:6222", f"127.0.0.1:{other.cluster_port}")
                arg = arg.replace(f"{other.host}:4222", f"127.0.0.1:{other.client_port}")
            args.append(arg)
        commands.append([nats_server_binary(), *args, "-a", "127.0.0.1", "-p", str(node.client_port),
                         "-m", str(node.monitor_port)])
    return commands


@contextlib.contextmanager
def running(nodes: list[Node], conf: str, env: dict[str, str], folder: Path, timeout: float = 30) -> Iterator[list[Node]]:
    """Start every node, wait until the JetStream meta group of all of them has a leader, stop them after."""
    logs = []
    try:
        for node, command in zip(nodes, localise(nodes, conf, folder), strict=True):
            logs.append(open(folder / f"{node.name}.log", "wb"))  # noqa: SIM115 - closed below
            node.proc = subprocess.Popen(command, stdout=logs[-1], stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while True:
            for node in nodes:
                assert node.proc.poll() is None, f"{node.name} stopped: {(folder / f'{node.name}.log').read_text()[-2000:]}"
            try:
                metas = [n.monitor("/jsz").get("meta_cluster", {}) for n in nodes]
                if all(m.get("leader") and m.get("cluster_size") == len(nodes) for m in metas):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no JetStream cluster of {len(nodes)} within {timeout} s"
            time.sleep(0.2)
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        for log in logs:
            log.close()
