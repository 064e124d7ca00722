"""The deployment files: alert rules, scrape config, dashboard, compose, Kubernetes, NATS accounts.

promtool and nats-server check their own files when they are installed (nats-server
comes with the project, promtool usually not); the structural checks below run
always and hold the files to what coffeetime exports, listens on and publishes.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from shared.contracts import subjects
from shared.settings import SERVICES, Settings
from tools import asyncapi

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "coffeetime.json"
COMPOSE = DEPLOY / "compose.yaml"
NATS_CONF = DEPLOY / "nats" / "nats.conf"
K8S = DEPLOY / "k8s"

# modules defining metrics; those not written yet are skipped
METRIC_MODULES = ("shared.metrics", "shared.workcalendar", "shared.http", *(f"services.{name}.metrics" for name in SERVICES))
# metrics the services define in their own modules (name → type), known even before a module exists
OTHER_SERVICE_METRICS: dict[str, str] = {
    "coffeetime_overdue_orders": "gauge",  # escalation, {unit_code}
    "coffeetime_open_orders": "gauge",
    "coffeetime_unit_closure_rate": "gauge",
    "coffeetime_unit_satisfaction_rate": "gauge",
    "coffeetime_unit_on_time_rate": "gauge",
    "coffeetime_escalations_total": "counter",  # escalation, {level}
    "coffeetime_notifications_total": "counter",  # notify, {channel, outcome}
    "coffeetime_calendar_fallback_total": "counter",
}
SEVERITIES = {"critical", "warning", "info"}
DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan", "Inf", "NaN",
}
DEFAULT_PORTS = {name: Settings.model_fields[f"{name}_port"].default for name in SERVICES}


# --- helpers ----------------------------------------------------------------------------


def _sample_names(name: str, kind: str) -> set[str]:
    """The series names a metric family exposes (prometheus_client drops ``_total`` from a counter's name)."""
    base = name.removesuffix("_total")
    if kind == "counter":
        return {f"{base}_total", f"{base}_created"}
    if kind == "histogram":
        return {f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"}
    if kind == "summary":
        return {base, f"{base}_sum", f"{base}_count", f"{base}_created"}
    return {base}


def _module_metrics(module_name: str) -> set[str]:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return set()
    names = set()
    for obj in vars(module).values():
        if isinstance(obj, MetricWrapperBase):
            for family in obj.describe():
                names |= _sample_names(family.name, family.type)
    return names


def known_metrics() -> set[str]:
    names = {"up"}
    for module_name in METRIC_MODULES:
        names |= _module_metrics(module_name)
    for name, kind in OTHER_SERVICE_METRICS.items():
        names |= _sample_names(name, kind)
    # FastStream's Prometheus middleware (shared/service.py), under its default prefix
    from faststream.prometheus.container import MetricsContainer

    container = MetricsContainer(CollectorRegistry(), custom_label_names=())
    for slot in MetricsContainer.__slots__:
        obj = getattr(container, slot, None)
        if isinstance(obj, MetricWrapperBase):
            for family in obj.describe():
                names |= _sample_names(family.name, family.type)
    return names


def _strip_promql(expr: str) -> str:
    """The expression without strings, Grafana variables, label matchers, ranges and grouping labels."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    expr = re.sub(r"\$\{[^}]*\}|\$\w+", "", expr)
    expr = re.sub(r"\{[^{}]*\}", "", expr)
    expr = re.sub(r"\[[^\[\]]*\]", "", expr)
    return re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", "", expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and numbers left out)."""
    names = set()
    stripped = _strip_promql(expr)
    for m in re.finditer(r"(?<![\w:.])[A-Za-z_:][\w:]*", stripped):
        rest = stripped[m.end():].lstrip()
        if rest.startswith("(") or m.group() in PROMQL_WORDS:
            continue
        names.add(m.group())
    return names


def balanced(expr: str) -> bool:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for ch in text:
        if ch in "([{":
            stack.append(ch)
        elif ch in ")]}" and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # panels of a collapsed row
    return out


def test_the_expression_parser_finds_metrics_and_only_them():
    expr = ('histogram_quantile(0.95, sum by (service, le) (rate(coffeetime_batch_handler_seconds_bucket'
            '{service=~"$service"}[$__rate_interval]))) > 1e3 or up offset 5m unless on (job) '
            'delta((max by (unit_code) (coffeetime_overdue_orders))[1h:5m])')
    assert metric_names(expr) == {"coffeetime_batch_handler_seconds_bucket", "up", "coffeetime_overdue_orders"}
    assert balanced(expr)
    assert not balanced("sum(rate(x[5m])")
    known = known_metrics()
    assert {"coffeetime_messages_handled_total", "coffeetime_batch_handler_seconds_bucket",
            "coffeetime_outbox_backlog", "faststream_received_messages_total", "up"} <= known
    shared_metrics = _module_metrics("shared.metrics")
    assert {"coffeetime_dead_letters_total", "coffeetime_outbox_oldest_age_seconds"} <= shared_metrics


# --- Prometheus ----------------------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed; the structure is checked below")
def test_promtool_accepts_the_rules_the_config_and_the_rule_tests():
    promtool = shutil.which("promtool")
    for args in (["check", "rules", str(ALERTS)], ["check", "config", str(PROMETHEUS)],
                 ["test", "rules", str(ALERTS.with_name("alerts_test.yml"))]):
        result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60,
                                cwd=ALERTS.parent)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


def test_alert_rules_have_the_expected_structure():
    document = yaml.safe_load(ALERTS.read_text())
    assert isinstance(document["groups"], list) and document["groups"]
    names = []
    for group in document["groups"]:
        assert group.get("name"), "every group has a name"
        assert isinstance(group.get("rules"), list) and group["rules"], group["name"]
        for rule in group["rules"]:
            names.append(rule.get("alert"))
            assert rule.get("alert"), f"{group['name']}: a rule without alert (recording rules belong elsewhere)"
            assert isinstance(rule.get("expr"), str) and rule["expr"].strip(), rule["alert"]
            assert DURATION.match(str(rule.get("for", ""))), f"{rule['alert']}: for must be a duration"
            assert rule.get("labels", {}).get("severity") in SEVERITIES, rule["alert"]
            assert rule.get("annotations", {}).get("summary"), rule["alert"]
            assert rule["annotations"].get("description"), rule["alert"]
            assert balanced(rule["expr"]), f"{rule['alert']}: unbalanced brackets"
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule["alert"]
    assert len(names) == len(set(names)), "alert names are unique"


def test_alert_rules_use_only_metrics_coffeetime_exports():
    known = known_metrics()
    used = set()
    for rule in _rules():
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']}: no metric found"
        assert names <= known, f"{rule['alert']}: unknown metrics {sorted(names - known)}"
        used |= names
    # what operations must hear about
    assert {"up", "coffeetime_dead_letters_total", "coffeetime_outbox_oldest_age_seconds",
            "coffeetime_consumer_pending_messages", "coffeetime_overdue_orders", "coffeetime_notifications_total",
            "coffeetime_messages_handled_total"} <= used


def test_the_service_down_alert_matches_the_scrape_jobs():
    (rule,) = [r for r in _rules() if metric_names(r["expr"]) == {"up"}]
    assert 'job=~"coffeetime-.*"' in rule["expr"]
    assert rule["labels"]["severity"] == "critical"


def test_prometheus_scrapes_every_service_and_loads_the_rules():
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert "alerts.yml" in config["rule_files"]
    assert (PROMETHEUS.parent / "alerts.yml").exists()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in SERVICES:
        job = jobs[f"coffeetime-{name}"]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        # every replica: compose's DNS gives a service's name all its containers' addresses
        (dns,) = job["dns_sd_configs"]
        assert dns == {"names": [name], "type": "A", "port": DEFAULT_PORTS[name]}, name
        assert "static_configs" not in job, f"{name}: a static target would scrape one replica at random"


# --- Grafana -------------------------------------------------------------------------------


def test_the_dashboard_is_valid_and_queries_known_metrics():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    known = known_metrics()
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    for var in variables.values():
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
            assert match and match.group(1) in known, f"variable {var['name']}: {query}"
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert len(rows) == 2, rows
    used = set()
    for panel in panels:
        assert panel.get("title"), f"panel {panel['id']} has no title"
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel.get("targets"), f"{panel['title']}: no targets"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            expr = target.get("expr", "")
            assert expr.strip(), f"{panel['title']}: a target without expr"
            assert balanced(expr), f"{panel['title']}: unbalanced brackets in {expr}"
            names = metric_names(expr)
            assert names and names <= known, f"{panel['title']}: unknown metrics {sorted(names - known)}"
            used |= names
    for name in ("coffeetime_messages_handled_total", "coffeetime_batch_handler_seconds_bucket",
                 "faststream_received_messages_total", "coffeetime_outbox_backlog",
                 "coffeetime_outbox_oldest_age_seconds", "coffeetime_consumer_pending_messages",
                 "coffeetime_dead_letters_total", "coffeetime_redeliveries_total", "coffeetime_notifications_total",
                 "coffeetime_escalations_total", "coffeetime_open_orders", "coffeetime_overdue_orders",
                 "coffeetime_unit_closure_rate", "coffeetime_unit_satisfaction_rate", "coffeetime_unit_on_time_rate"):
        assert name in used, f"the dashboard shows {name}"


# --- compose, Dockerfile, Kubernetes -----------------------------------------------------------


def _healthcheck_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


NATS_NODES = ("nats-1", "nats-2", "nats-3")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_runs_two_replicas_of_every_service_with_its_command_and_health_check():
    services = _compose()["services"]
    host_ranges = []
    for name in SERVICES:
        service = services[name]
        port = DEFAULT_PORTS[name]
        assert service["command"] == ["coffeetime", "run", name]
        assert service["deploy"]["replicas"] == 2, name
        assert "container_name" not in service, f"{name}: a fixed container name allows one replica"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).exists()
        check = _healthcheck_command(service)
        assert f"127.0.0.1:{port}/readyz" in check, name
        env = service["environment"]
        # its own NATS user on every node of the cluster
        assert env["NATS_URL"] == ",".join(f"nats://{node}:4222" for node in NATS_NODES)
        assert env["NATS_USER"] == name
        assert env["NATS_PASSWORD"].startswith(f"${{{name.upper()}_PASSWORD:?"), name
        assert env["NATS_INBOX_PREFIX"] == f"_INBOX_{name}"
        assert str(env["STREAM_REPLICAS"]) == "3"
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["HTTP_HOST"] == "0.0.0.0", "the HTTP server must listen beyond the container's loopback"
        # a host port per replica: a range of host ports onto the one container port
        (mapping,) = [str(p) for p in service["ports"]]
        match = re.fullmatch(rf"(\d+)-(\d+):{port}", mapping)
        assert match, f"{name}: {mapping} gives its replicas no host port each"
        low, high = int(match.group(1)), int(match.group(2))
        assert high - low + 1 >= service["deploy"]["replicas"], name
        host_ranges.append(range(low, high + 1))
        assert set(NATS_NODES) | {"postgres"} <= set(service["depends_on"])
        assert all(c["condition"] == "service_healthy" for c in service["depends_on"].values()), name
    assert all(not set(a) & set(b) for i, a in enumerate(host_ranges) for b in host_ranges[i + 1:]), host_ranges
    assert "SMS_GATEWAY_URL" in services["notify"]["environment"]
    assert all("SMS_GATEWAY_URL" not in services[n]["environment"] for n in SERVICES if n != "notify")


def _flags(command: list[str]) -> dict[str, str]:
    assert command[:3] == ["-js", "-c", "/etc/nats/nats.conf"], command
    assert len(command[3:]) % 2 == 0, command
    return dict(zip(command[3::2], command[4::2], strict=True))


def test_compose_runs_a_three_node_nats_cluster_with_jetstream_each_on_its_own_store():
    compose = _compose()
    services = compose["services"]
    assert "nats" not in services, "the single node gave way to the cluster"
    wanted = _environment_variables()
    routes, stores, client_ports = set(), set(), set()
    for node in NATS_NODES:
        nats = services[node]
        assert nats["image"].startswith("nats:2.10")
        flags = _flags(nats["command"])
        assert flags["--name"] == node, "a unique server name per node"
        assert flags["--cluster_name"] == "coffeetime"
        assert flags["--cluster"] == "nats://0.0.0.0:6222"
        routes.add(flags["--routes"])
        assert flags["--routes"].split(",") == [f"nats://{n}:6222" for n in NATS_NODES]
        volumes = dict(v.rsplit(":", 1)[0].split(":", 1) if v.endswith(":ro") else v.split(":", 1)
                       for v in nats["volumes"])
        assert volumes["./nats/nats.conf"] == "/etc/nats/nats.conf"
        store = next(src for src, target in volumes.items() if target == "/data")
        assert store in compose["volumes"], f"{node}: {store} is a named volume"
        stores.add(store)
        ports = {str(p).split("#")[0].strip() for p in nats["ports"]}
        client = next(p for p in ports if p.endswith(":4222"))
        assert any(p.startswith("127.0.0.1:") and p.endswith(":8222") for p in ports), f"{node}: monitoring local"
        client_ports.add(client.split(":")[0])
        assert "wget" in _healthcheck_command(nats) and "8222/healthz" in _healthcheck_command(nats)
        # every password nats.conf reads is handed to each node
        assert wanted <= set(nats["environment"]), sorted(wanted - set(nats["environment"]))
    assert len(routes) == 1 and len(stores) == 3 and len(client_ports) == 3
    assert "nats-data" not in compose["volumes"]


def test_compose_runs_postgres_prometheus_and_grafana_with_the_files_here():
    services = _compose()["services"]
    assert services["postgres"]["image"] == "postgres:16"
    for service in ("postgres", *NATS_NODES, *SERVICES):
        assert "healthcheck" in services[service], service
    mounted = {}
    for service in (*NATS_NODES, "prometheus", "grafana"):
        for volume in services[service]["volumes"]:
            source, _, target = volume.partition(":")
            if source.startswith("./"):
                assert (COMPOSE.parent / source).exists(), f"{service} mounts missing {source}"
                mounted[source] = target.removesuffix(":ro")
    assert mounted["./nats/nats.conf"] == "/etc/nats/nats.conf"
    assert mounted["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounted["./prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"
    assert "./grafana/coffeetime.json" in mounted


def test_the_dockerfile_builds_one_image_for_the_four_services():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "pip install ." in text
    assert re.search(r'^CMD \["coffeetime", "run", "\w+"\]', text, re.M)
    assert re.search(r"^USER \d+", text, re.M), "the services run as a non-root user"


def test_the_image_holds_every_package_the_install_names():
    """`pip install .` in the image packages what pyproject's find includes: each must be copied and not ignored
    (the `coffeetime` entry point is tools.cli:main)."""
    text = (DEPLOY / "Dockerfile").read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    script = pyproject["project"]["scripts"]["coffeetime"]
    assert script.split(".")[0] in packages
    for package in packages:
        assert re.search(rf"^COPY {package} \./{package}$", text, re.M), f"the image does not copy {package}/"
        assert f"!{package}/" in ignore, f"{package}/ is left out of the build context"
    assert "fonts-noto-cjk" in text, "the chart's Chinese names need a CJK font"


def _k8s_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        objects.extend(o for o in yaml.safe_load_all(path.read_text()) if o)
    return objects


def test_kubernetes_runs_every_service_with_probes_scraping_and_secrets():
    objects = _k8s_objects()
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    k8s_services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert set(deployments) == set(SERVICES)
    for name in SERVICES:
        port = DEFAULT_PORTS[name]
        spec = deployments[name]["spec"]
        assert spec["replicas"] == 2
        template = spec["template"]
        assert spec["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"
        (container,) = template["spec"]["containers"]
        assert container["command"] == ["coffeetime", "run", name]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": port}
        # a PostgreSQL or NATS outage makes a pod unready, never restarts it
        for probe, path in (("startupProbe", "/livez"), ("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
            http = container[probe]["httpGet"]
            assert http["path"] == path and http["port"] in ("http", port), f"{name} {probe}"
        secrets = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
        assert secrets == [f"coffeetime-{name}"]
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
        service = k8s_services[name]
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(port, "http")]
    configmap = next(o for o in objects if o["kind"] == "ConfigMap")
    assert configmap["data"]["HTTP_HOST"] == "0.0.0.0"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


# --- NATS accounts -------------------------------------------------------------------------


def _user_block(conf: str, user: str) -> str:
    """The text of one user's entry, ``{user: "<user>", ...}``, matched brace by brace."""
    match = re.search(rf'\buser:\s*"?{re.escape(user)}"?[\s,]', conf)
    assert match, f"nats.conf has no user {user}"
    start = conf.rindex("{", 0, match.start())
    depth = 0
    for i in range(start, len(conf)):
        depth += {"{": 1, "}": -1}.get(conf[i], 0)
        if depth == 0:
            return conf[start:i + 1]
    raise AssertionError(f"unbalanced entry of {user}")


def _allowed(block: str, direction: str) -> set[str]:
    match = re.search(rf"\b{direction}:\s*\{{\s*allow:\s*\[(.*?)\]", block, re.S)
    assert match, f"no {direction} allow list in {block[:60]}"
    return set(re.findall(r'"([^"]+)"', match.group(1)))


def _conf_without_comments() -> str:
    return "\n".join(line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
                     for line in NATS_CONF.read_text(encoding="utf-8").splitlines())


def _environment_variables() -> set[str]:
    """The variables nats.conf reads from the environment (``$NAME`` outside quotes and comments)."""
    return set(re.findall(r"\$([A-Z][A-Z0-9_]*)", re.sub(r'"[^"]*"', '""', _conf_without_comments())))


def test_nats_gives_the_hotline_only_its_own_subject():
    conf = _conf_without_comments()
    hotline = _user_block(conf, "hotline")
    assert _allowed(hotline, "publish") == {"ct.in.appeal.hotline"}
    assert _allowed(hotline, "subscribe") == {"_INBOX_hotline.>"}  # its own inbox only
    app = _user_block(conf, "app")
    assert _allowed(app, "publish") == {"ct.in.appeal.app", "ct.in.feedback", "ct.q.appeal"}
    assert _allowed(app, "subscribe") == {"_INBOX_app.>"}


def test_nats_lets_each_unit_act_only_under_its_own_code():
    conf = _conf_without_comments()
    district = yaml.safe_load((ROOT / "shared" / "district.yaml").read_text(encoding="utf-8"))
    for unit in district["units"]:
        if unit["kind"] == "supervision":
            assert f'"unit_{unit["unit_code"]}"' not in conf
            continue
        block = _user_block(conf, f"unit_{unit['unit_code']}")
        assert _allowed(block, "publish") == {f"ct.in.order.{unit['unit_code']}.>"}, unit["unit_code"]


def test_nats_gives_each_service_what_it_publishes_and_consumes():
    conf = _conf_without_comments()

    def covered(subject: str, patterns: set[str]) -> bool:
        return any(asyncapi.subject_matches(p, subject) for p in patterns)

    for name in SERVICES:
        block = _user_block(conf, name)
        publish, subscribe = _allowed(block, "publish"), _allowed(block, "subscribe")
        assert f"ct.dlq.{name}.>" in publish, name
        # only its own consumers' API calls and inbox (tests/unit/test_nats_conf.py has the full list)
        assert not {"$JS.API.>", "$JS.ACK.>"} & publish, name
        assert f"_INBOX_{name}.>" in subscribe and "_INBOX.>" not in subscribe, name
        for subject in subjects.EVENTS:
            owner = asyncapi.producer_of(subject)
            assert covered(subject, publish) == (owner == name), f"{name} and {subject} (produced by {owner})"
            if name in asyncapi.consumers_of(subject):
                assert covered(subject, subscribe), f"{name} consumes {subject}"
        for subject in asyncapi.INBOUND_SENDERS:
            concrete = subjects.order_action_subject("tax_bureau", "sign") if subject == subjects.IN_ORDER else subject
            consumes = name in asyncapi.consumers_of(subject)
            assert covered(concrete, subscribe) == consumes, f"{name} and {subject}"
            allowed = name in asyncapi.producers_of(subject)
            assert covered(concrete, publish) == allowed, f"{name} and publishing {subject}"
    assert "allow_responses" in _user_block(conf, "intake"), "intake answers ct.q.appeal"


def test_nats_enables_jetstream_and_reads_passwords_from_the_environment():
    conf = _conf_without_comments()
    assert re.search(r"^jetstream\s*\{", conf, re.M)
    assert re.search(r"\bjetstream:\s*enabled\b", conf)
    passwords = re.findall(r"\bpassword:\s*([^,}\s]+)", conf)
    assert passwords and all(re.fullmatch(r"\$[A-Z][A-Z0-9_]*", p) for p in passwords), passwords


def test_nats_server_accepts_the_configuration():
    from tools.embedded import nats_server_binary

    try:
        binary = nats_server_binary()
    except RuntimeError:
        pytest.skip("nats-server is not installed")
    env = {**os.environ, **{name: f"test-{name.lower()}" for name in _environment_variables()}}
    result = subprocess.run([binary, "-t", "-c", str(NATS_CONF)], capture_output=True, text=True, env=env,
                            timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
