"""The NATS cluster of the Helm chart and of compose, run for real: three nats-server processes here.

Each node gets the command line the chart's StatefulSet (rendered by Helm) or compose gives it and the
deploy/nats/nats.conf they mount; only host names, ports and store folders are moved to this machine
(tests/nats_cluster.py). Then, on that cluster: the admin creates the streams with STREAM_REPLICAS=3
and each lands on three nodes; a service's durable gets the lag KEDA's nats-jetstream scaler reads
(account, stream, consumer in /jsz of the consumer's leader); a node stops and publishing and
fetching go on.
"""

from __future__ import annotations

import time
from pathlib import Path

import nats
import pytest
import yaml

from shared.bus import ensure_consumer, ensure_streams
from shared.contracts.subjects import STREAMS
from tests.nats_cluster import Node, password_variables, running

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
NATS_CONF = (ROOT / "deploy" / "nats" / "nats.conf").read_text(encoding="utf-8")
PASSWORDS = {key: f"pw-{key.lower()}" for key in password_variables(NATS_CONF)}
DURABLE, SUBJECT = "intake-ct_in_appeal_hotline", "ct.in.appeal.hotline"


def chart_nodes() -> tuple[list[Node], int]:
    """The chart's nodes and STREAM_REPLICAS."""
    from tests.unit.test_helm import NAMESPACE, RELEASE, nats_statefulset, of_kind, render

    objects = render()
    statefulset = nats_statefulset(objects)
    name, headless = statefulset["metadata"]["name"], statefulset["spec"]["serviceName"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    nodes = []
    for i in range(statefulset["spec"]["replicas"]):
        pod = f"{name}-{i}"
        args = [a.replace("$(POD_NAME)", pod) for a in container["args"]]
        nodes.append(Node(pod, f"{pod}.{headless}.{NAMESPACE}.svc.cluster.local", args))
    return nodes, int(of_kind(objects, "ConfigMap")[RELEASE]["data"]["STREAM_REPLICAS"])


def compose_nodes() -> tuple[list[Node], int]:
    """Compose's nodes and the services' STREAM_REPLICAS."""
    services = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    nodes = [Node(name, name, list(service["command"])) for name, service in services.items()
             if name.startswith("nats-")]
    return nodes, int(services["intake"]["environment"]["STREAM_REPLICAS"])


async def connect(nodes: list[Node], user: str) -> nats.NATS:
    return await nats.connect([n.url for n in nodes if n.proc and n.proc.poll() is None], user=user,
                              password=PASSWORDS[f"{user.upper()}_PASSWORD"], inbox_prefix=f"_INBOX_{user}",
                              max_reconnect_attempts=5, reconnect_time_wait=0.2)


def lag_as_keda_reads_it(nodes: list[Node], account: str, stream: str, consumer: str) -> tuple[str, int]:
    """The consumer's leader and pending + unacknowledged messages, from the leader's /jsz (KEDA's query)."""
    query = f"/jsz?acc={account}&consumers=true&config=true"
    for node in nodes:
        if node.proc is None or node.proc.poll() is not None:
            continue
        for detail in node.monitor(query).get("account_details", []):
            if detail["name"] != account:
                continue
            for s in detail.get("stream_detail", []):
                for c in s.get("consumer_detail", []) if s["name"] == stream else ():
                    # during an election a consumer's cluster shows no leader yet
                    if c["name"] == consumer and c.get("cluster", {}).get("leader") == node.name:
                        return node.name, c["num_pending"] + c["num_ack_pending"]
    raise AssertionError(f"no node leads {stream}/{consumer} in account {account}")


def wait_for_lag(nodes: list[Node], wanted: int, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            leader, lag = lag_as_keda_reads_it(nodes, "COFFEETIME", "CT_IN", DURABLE)
        except AssertionError:  # no leader at this moment (an election): ask again until the deadline
            if time.monotonic() >= deadline:
                raise
            leader, lag = "", None
        if lag == wanted:
            return leader
        assert time.monotonic() < deadline, f"lag {lag}, wanted {wanted}"
        time.sleep(0.1)


async def publish_until_acked(nc: nats.NATS, msg_id: str, timeout: float = 20):
    """Publish as a sender does while a stream elects a new leader: again under the same id until acked."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await nc.jetstream().publish(SUBJECT, b"{}", headers={"Nats-Msg-Id": msg_id}, timeout=2)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
            assert time.monotonic() < deadline, f"{msg_id} not acknowledged within {timeout} s"


@pytest.mark.parametrize("deployment", [chart_nodes, compose_nodes], ids=["helm", "compose"])
async def test_the_deployed_nats_cluster_keeps_three_copies_and_shows_keda_the_lag(deployment, tmp_path):
    nodes, stream_replicas = deployment()
    assert len(nodes) == 3 and stream_replicas == 3
    with running(nodes, NATS_CONF, PASSWORDS, tmp_path):
        for node in nodes:
            varz = node.monitor("/varz")
            assert varz["server_name"] == node.name, "each node is named as KEDA and the routes expect"
            peers = {r["remote_name"] for r in node.monitor("/routez")["routes"]}
            assert peers == {n.name for n in nodes} - {node.name}, node.name

        # JetStream answers once the nodes have elected their meta leader (the routes come up first)
        deadline = time.monotonic() + 30
        while not all(node.monitor("/jsz").get("meta_cluster", {}).get("leader") for node in nodes):
            assert time.monotonic() < deadline, "no JetStream meta leader elected within 30 s"
            time.sleep(0.1)
        admin = await connect(nodes, "admin")
        try:
            # what `coffeetime migrate` (and a service's start-up) does with the deployment's STREAM_REPLICAS
            await ensure_streams(admin.jetstream(), replicas=stream_replicas)
            for s in STREAMS:
                info = await admin.jetstream().stream_info(s.name)
                assert info.config.num_replicas == 3, s.name
                assert {info.cluster.leader, *(r.name for r in info.cluster.replicas)} == {n.name for n in nodes}
        finally:
            await admin.close()

        intake = await connect(nodes, "intake")
        hotline = await connect(nodes, "hotline")
        try:
            await ensure_consumer(intake.jetstream(), "CT_IN", DURABLE, SUBJECT, max_deliver=5, ack_wait=30)
            for i in range(5):
                await hotline.jetstream().publish(SUBJECT, b"{}", headers={"Nats-Msg-Id": f"call-{i}"})
            leader = wait_for_lag(nodes, 5)

            # the consumer's leader stops: the stream and the consumer go on with two of three
            next(n for n in nodes if n.name == leader).stop()
            ack = await publish_until_acked(hotline, "call-5")
            assert ack.stream == "CT_IN" and ack.seq == 6
            sub = await intake.jetstream().pull_subscribe_bind(DURABLE, "CT_IN")
            fetched = []
            deadline = time.monotonic() + 20
            while len(fetched) < 6 and time.monotonic() < deadline:
                try:
                    fetched += await sub.fetch(6 - len(fetched), timeout=2)
                except nats.errors.TimeoutError:
                    continue
            assert [m.headers["Nats-Msg-Id"] for m in fetched] == [f"call-{i}" for i in range(6)]
            for m in fetched[:4]:
                await m.ack_sync()
            assert wait_for_lag(nodes, 2, timeout=20) != leader, "a surviving node leads the consumer now"
        finally:
            await hotline.close()
            await intake.close()
