"""nats-server processes the chaos suite can kill: one node, or a three-node JetStream cluster on loopback.

:class:`NatsNode` is one ``nats-server -js`` on a fixed port and store folder, so
it can be killed (``SIGKILL``) and started again on the same port and store.
:class:`NatsCluster` is three such nodes joined by cluster routes (JetStream
clustering: every node names the others in ``--routes``); its :attr:`url` lists
all three, as ``NATS_URL`` does for the services.

Used by ``tools/chaos.py``; the embedded single server of the tests and the demo
stays in ``tools/embedded.py``.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

from tools.embedded import _wait_for_port, free_port, nats_server_binary


class NatsNode:
    """One nats-server with JetStream on a port and store folder that survive a restart."""

    def __init__(self, folder: Path, name: str = "n1", *, port: int | None = None, cluster_name: str | None = None,
                 cluster_port: int | None = None, routes: tuple[int, ...] = ()) -> None:
        self.folder = Path(folder)
        self.name = name
        self.port = port or free_port()
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = routes
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def store(self) -> Path:
        return self.folder / f"nats-{self.name}"

    def command(self) -> list[str]:
        cmd = [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store),
               "-n", self.name]
        if self.cluster_name:
            cmd += ["--cluster_name", self.cluster_name, "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
                    "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        return cmd

    def start(self, timeout: float = 15) -> NatsNode:
        """Start (again) on the same port and store; returns once the client port listens."""
        self.store.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / f"nats-{self.name}.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.starts += 1
        _wait_for_port(self.port, timeout, self.proc)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.alive else None

    def kill(self) -> None:
        """``kill -9``: no flush, no goodbye to the cluster."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10) -> None:
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class NatsCluster:
    """``size`` nats-server nodes on loopback, each routing to all the others: one JetStream cluster."""

    def __init__(self, folder: Path, size: int = 3, name: str = "ct-chaos") -> None:
        client_ports = [free_port() for _ in range(size)]
        cluster_ports = [free_port() for _ in range(size)]
        self.nodes = [
            NatsNode(folder, f"n{i + 1}", port=client_ports[i], cluster_name=name, cluster_port=cluster_ports[i],
                     routes=tuple(p for j, p in enumerate(cluster_ports) if j != i))
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        """Every node's URL, comma separated (the form of ``NATS_URL``)."""
        return ",".join(n.url for n in self.nodes)

    def start(self, timeout: float = 30) -> NatsCluster:
        for node in self.nodes:
            node.start(timeout)
        return self

    async def wait_ready(self, timeout: float = 60) -> None:
        """Until JetStream answers through the cluster (a meta leader was elected)."""
        import nats

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                nc = await nats.connect(self.url.split(","), connect_timeout=2, max_reconnect_attempts=1)
                try:
                    await nc.jetstream().account_info()
                    return
                finally:
                    await nc.close()
            except Exception as exc:  # noqa: BLE001 - not elected yet
                last = exc
                await asyncio.sleep(0.5)
        raise TimeoutError(f"the JetStream cluster did not elect a leader within {timeout}s: {last!r}")

    def node(self, name: str) -> NatsNode:
        return next(n for n in self.nodes if n.name == name)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
