"""deploy/helm/coffeetime rendered and linted by Helm itself, then held to the code and to deploy/nats.

Helm comes as a library: ``helm-python-sdk`` (test extras) bundles Helm v4's official Go SDK, so
``Chart.render`` is ``helm template`` and ``lint`` is ``helm lint``, with no helm binary and no
cluster. Kubernetes' JSON schemas cannot be fetched here, so the kinds' required fields are checked
by :data:`REQUIRED` below (a minimal schema of what the API server would refuse without).
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from shared.contracts.subjects import STREAMS
from shared.settings import SERVICES, Settings
from tests.nats_cluster import password_variables
from tests.unit.test_nats_conf import durables_of

ROOT = Path(__file__).parents[2]
CHART = ROOT / "deploy" / "helm" / "coffeetime"
NATS_CONF = ROOT / "deploy" / "nats" / "nats.conf"
RELEASE, NAMESPACE = "coffeetime", "coffeetime"
PASSWORDS = sorted(password_variables(NATS_CONF.read_text(encoding="utf-8")))
DATABASE = "postgresql://coffeetime@postgres.db.svc:5432/coffeetime"
# what an operator gives at least: every NATS password, where PostgreSQL is
UNIT_TOKENS = "tax_bureau=" + "ab" * 32
VALUES: dict[str, Any] = {
    "natsCredentials": {"passwords": {key: f"pw-{key.lower()}" for key in PASSWORDS}},
    "postgresql": {"url": DATABASE},
    "access": {"unitTokens": UNIT_TOKENS},
    "services": {"notify": {"secret": {"env": {"SMS_GATEWAY_URL": "https://sms.example/send", "SMTP_HOST": "smtp",
                                               "SMS_INBOUND_SECRET": "s3cret"}}}},
}
# the HTTP credentials each service reads from <release>-access (as deploy/k8s's coffeetime-access)
ACCESS = {"intake": {"UNIT_TOKENS", "READ_API_KEYS"}, "dispatch": {"UNIT_TOKENS"}, "escalation": {"UNIT_TOKENS"},
          "notify": {"UNIT_TOKENS", "READ_API_KEYS"}}
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}
# variables that are no coffeetime setting: asyncpg's password, the pod's own name (NATS server name)
OTHER_ENV = {"PGPASSWORD", "POD_NAME"}

# the fields without which the API server refuses an object, per kind (dotted paths; [] a non-empty list)
REQUIRED: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec.selector.matchLabels", "spec.template.metadata.labels", "spec.template.spec.containers[]"),
    "StatefulSet": ("spec.selector.matchLabels", "spec.serviceName", "spec.template.metadata.labels",
                    "spec.template.spec.containers[]"),
    "Service": ("spec.ports[]",),
    "PodDisruptionBudget": ("spec.selector.matchLabels",),
    "ConfigMap": ("data",),
    "Secret": (),
    "Job": ("spec.template.spec.containers[]", "spec.template.spec.restartPolicy"),
    "ScaledObject": ("spec.scaleTargetRef.name", "spec.triggers[]"),
    "ServiceMonitor": ("spec.selector.matchLabels", "spec.endpoints[]"),
}
API_VERSIONS = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Service": "v1", "ConfigMap": "v1",
                "Secret": "v1", "PodDisruptionBudget": "policy/v1", "Job": "batch/v1",
                "ScaledObject": "keda.sh/v1alpha1", "ServiceMonitor": "monitoring.coreos.com/v1"}
CONTAINER_REQUIRED = ("name", "image")


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """The layers deep-merged into a new dict, later ones winning (as Helm merges -f files)."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``helm template coffeetime deploy/helm/coffeetime -n coffeetime`` with VALUES (and ``values`` over them)."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(merged(VALUES, values or {}), name=RELEASE, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(o for o in yaml.safe_load_all(text) if o)
    return objects


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render()


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def by_component(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["labels"]["app.kubernetes.io/component"]: o for o in objects if o["kind"] == kind}


def dig(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj.get(part.removesuffix("[]")) if isinstance(obj, dict) else None
    return obj


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


# --- Helm itself -------------------------------------------------------------------------------


def test_helm_lints_the_chart_without_errors_or_warnings():
    report = helm.lint(CHART, merged(VALUES), strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert report["total_charts_linted"] == 1
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error; 1 is advice
    assert not problems and not report["errors"], report


def test_every_rendered_object_has_the_fields_its_kind_requires(objects):
    assert {o["kind"] for o in objects} == set(REQUIRED) - {"ServiceMonitor"}
    names = Counter((o["kind"], o["metadata"]["name"]) for o in objects)
    assert all(n == 1 for n in names.values()), [k for k, n in names.items() if n > 1]
    for obj in render({"metrics": {"serviceMonitor": {"enabled": True}}}):
        kind, name = obj["kind"], obj["metadata"]["name"]
        assert obj["apiVersion"] == API_VERSIONS[kind], name
        assert len(name) <= 63 and name == name.lower(), name
        for path in REQUIRED[kind]:
            value = dig(obj, path)
            assert value, f"{kind} {name}: {path} is missing"
            assert not path.endswith("[]") or isinstance(value, list), f"{kind} {name}: {path} is not a list"
        pod = dig(obj, "spec.jobTemplate.spec.template") or dig(obj, "spec.template")
        if kind in ("Deployment", "StatefulSet", "Job"):
            assert selects(dig(obj, "spec.selector.matchLabels") or {}, pod["metadata"]["labels"]), name
            for container in pod["spec"]["containers"]:
                assert all(container.get(f) for f in CONTAINER_REQUIRED), f"{name}: {container}"
                assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert pod["spec"]["securityContext"]["runAsNonRoot"] is True, name
        if kind == "Secret":
            assert all(isinstance(v, str) for v in (obj.get("stringData") or {}).values()), name


# --- the services --------------------------------------------------------------------------------


def test_each_service_runs_with_the_k8s_manifests_probes_ports_and_settings(objects):
    deployments, services = by_component(objects, "Deployment"), by_component(objects, "Service")
    assert set(deployments) == set(SERVICES)
    configmap = of_kind(objects, "ConfigMap")[RELEASE]
    assert configmap["data"]["STREAM_REPLICAS"] == "3"
    assert configmap["data"]["HTTP_HOST"] == "0.0.0.0"
    assert set(configmap["data"]) <= SETTINGS_ENV, sorted(set(configmap["data"]) - SETTINGS_ENV)
    for name in SERVICES:
        port = Settings.model_fields[f"{name}_port"].default
        template = deployments[name]["spec"]["template"]
        (container,) = template["spec"]["containers"]
        assert container["command"] == ["coffeetime", "run", name]
        assert container["image"] == "coffeetime:0.1.0"
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": port}
        for probe, path in (("startupProbe", "/livez"), ("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}, f"{name} {probe}"
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        env = env_of(container)
        assert set(env) <= SETTINGS_ENV | OTHER_ENV, sorted(set(env) - SETTINGS_ENV - OTHER_ENV)
        # its own NATS user, its own password key of the shared credentials, its own inbox
        assert env["NATS_USER"] == name and env["NATS_INBOX_PREFIX"] == f"_INBOX_{name}"
        assert env["NATS_PASSWORD"]["secretKeyRef"] == {"name": f"{RELEASE}-nats-credentials",
                                                         "key": f"{name.upper()}_PASSWORD"}
        urls = env["NATS_URL"].split(",")
        assert urls == [f"nats://{RELEASE}-nats-{i}.{RELEASE}-nats-headless.{NAMESPACE}.svc.cluster.local:4222"
                        for i in range(3)]
        assert env["DATABASE_URL"] == DATABASE
        refs = [e.get("configMapRef", e.get("secretRef"))["name"] for e in container["envFrom"]]
        assert refs == [RELEASE, f"{RELEASE}-{name}"]
        service = services[name]
        assert selects(service["spec"]["selector"], template["metadata"]["labels"])
        assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(port, "http")]
        assert container["resources"]["requests"]["memory"], name


def test_keda_scales_each_service_on_the_lag_of_its_own_durables_as_the_code_names_them(objects):
    scaled, deployments = by_component(objects, "ScaledObject"), by_component(objects, "Deployment")
    assert set(scaled) == set(SERVICES)
    streams = {s.name for s in STREAMS}
    endpoint = f"{RELEASE}-nats-headless.{NAMESPACE}.svc.cluster.local:8222"
    for name in SERVICES:
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"]["name"] == deployments[name]["metadata"]["name"]
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        # the HPA owns the replica count; a replicas field would reset it at every upgrade
        assert "replicas" not in deployments[name]["spec"]
        triggers = spec["triggers"]
        assert {t["type"] for t in triggers} == {"nats-jetstream"}
        watched = {(t["metadata"]["stream"], t["metadata"]["consumer"]) for t in triggers}
        assert len(watched) == len(triggers)
        code = durables_of(name)
        assert watched == code, (f"{name}: deploy/helm/coffeetime/values.yaml services.{name}.consumers lacks "
                                 f"{sorted(code - watched)}, names no consumer {sorted(watched - code)}")
        for t in triggers:
            meta = t["metadata"]
            assert meta["stream"] in streams
            assert meta["natsServerMonitoringEndpoint"] == endpoint
            assert meta["account"] == "COFFEETIME"
            assert int(meta["lagThreshold"]) > 0
            assert all(isinstance(v, str) for v in meta.values()), "KEDA's metadata values are strings"


def test_the_account_keda_watches_is_the_one_holding_the_streams_and_the_services(objects):
    from tests.unit.test_deploy import _conf_without_comments

    (account,) = {t["metadata"]["account"] for o in of_kind(objects, "ScaledObject").values()
                  for t in o["spec"]["triggers"]}
    conf = _conf_without_comments()
    match = re.search(rf"\b{account}\s*\{{\s*jetstream:\s*enabled\s+users:\s*\[(.*?)\n\s*\]\n", conf, re.S)
    assert match, f"nats.conf has no account {account} with JetStream"
    assert set(SERVICES) <= set(re.findall(r'user:\s*"([^"]+)"', match.group(1)))


def test_without_keda_the_deployments_keep_their_replicas():
    objects = render({"keda": {"enabled": False}, "services": {"notify": {"replicas": 3}}})
    assert not of_kind(objects, "ScaledObject")
    replicas = {n: d["spec"]["replicas"] for n, d in by_component(objects, "Deployment").items()}
    assert replicas == {"intake": 2, "dispatch": 2, "escalation": 2, "notify": 3}


def test_every_deployment_and_the_nats_cluster_have_a_disruption_budget(objects):
    budgets = list(of_kind(objects, "PodDisruptionBudget").values())
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(workloads) == len(SERVICES) + 1
    for workload in workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(matching) == 1, workload["metadata"]["name"]
        spec = matching[0]["spec"]
        if workload["kind"] == "StatefulSet":
            assert spec == {"maxUnavailable": 1, "selector": spec["selector"]}, "two of three nodes keep the quorum"
        else:
            assert spec["minAvailable"] == 1


def test_a_service_monitor_per_service_is_optional_and_names_the_alerts_job():
    assert not of_kind(render(), "ServiceMonitor")
    monitors = by_component(render({"metrics": {"serviceMonitor": {"enabled": True}}}), "ServiceMonitor")
    assert set(monitors) == set(SERVICES)
    for name, monitor in monitors.items():
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
        assert {"targetLabel": "job", "replacement": f"coffeetime-{name}"} in endpoint["relabelings"]


# --- secrets -------------------------------------------------------------------------------------


def test_the_nats_credentials_secret_holds_every_password_nats_conf_reads(objects):
    secret = of_kind(objects, "Secret")[f"{RELEASE}-nats-credentials"]
    assert sorted(secret["stringData"]) == PASSWORDS
    assert {"INTAKE_PASSWORD", "ADMIN_PASSWORD", "SYS_PASSWORD", "UNIT_TAX_BUREAU_PASSWORD"} <= set(PASSWORDS)


def test_a_missing_password_stops_the_rendering_with_its_name():
    values = merged(VALUES)
    del values["natsCredentials"]["passwords"]["UNIT_GAS_SUPPLY_PASSWORD"]
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match="UNIT_GAS_SUPPLY_PASSWORD"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_a_service_without_a_database_stops_the_rendering():
    values = merged(VALUES, {"postgresql": {"url": ""}})
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match="no database"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    # each service's own secret may hold its DSN (a role per schema) instead
    per_service = {name: {"secret": {"env": {"DATABASE_URL": f"postgresql://ct_{name}:pw@pg/ct"}}} for name in SERVICES}
    objects = render({"postgresql": {"url": ""}, "services": per_service,
                      "migrate": {"secret": {"env": {"DATABASE_URL": "postgresql://ct_admin:pw@pg/ct"}}}})
    for name, deployment in by_component(objects, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert "DATABASE_URL" not in env_of(container), "the Secret's DSN is not overridden"
        assert of_kind(objects, "Secret")[f"{RELEASE}-{name}"]["stringData"]["DATABASE_URL"].startswith(f"postgresql://ct_{name}:")


def test_existing_secrets_are_read_and_none_is_made():
    objects = render({
        "natsCredentials": {"existingSecret": "nats-users", "passwords": None},
        "services": {name: {"secret": {"existingSecret": f"ct-{name}"}} for name in SERVICES},
        "migrate": {"secret": {"existingSecret": "ct-admin"}},
        "district": {"existingSecret": "ct-district"},
        "access": {"existingSecret": "ct-access", "unitTokens": ""},
    })
    assert not of_kind(objects, "Secret")
    for name, deployment in by_component(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert env_of(container)["NATS_PASSWORD"]["secretKeyRef"]["name"] == "nats-users"
        assert env_of(container)["UNIT_TOKENS"]["secretKeyRef"]["name"] == "ct-access"
        assert container["envFrom"][1]["secretRef"]["name"] == f"ct-{name}"
        # the district file (units, routing, token hashes) from its Secret
        assert env_of(container)["DISTRICT_CONFIG"] == "/etc/coffeetime/district.yaml"
        assert {"name": "district", "mountPath": "/etc/coffeetime", "readOnly": True} in container["volumeMounts"]
        assert any(v.get("secret", {}).get("secretName") == "ct-district" for v in pod["volumes"])
    statefulset = next(iter(of_kind(objects, "StatefulSet").values()))
    (nats,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert nats["envFrom"] == [{"secretRef": {"name": "nats-users"}}]


def test_the_http_credentials_come_from_the_access_secret_and_never_demo_mode(objects):
    access = of_kind(objects, "Secret")[f"{RELEASE}-access"]
    assert access["stringData"] == {"UNIT_TOKENS": UNIT_TOKENS}
    for name, deployment in by_component(objects, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = env_of(container)
        from_access = {k for k, v in env.items() if isinstance(v, dict)
                       and v.get("secretKeyRef", {}).get("name") == f"{RELEASE}-access"}
        assert from_access == ACCESS[name], name
        assert all(env[k]["secretKeyRef"]["key"] == k for k in from_access)
        assert "optional" not in env["UNIT_TOKENS"]["secretKeyRef"], "no service starts on the demo hashes"
        assert "DEMO_MODE" not in env, name
    assert "DEMO_MODE" not in of_kind(objects, "ConfigMap")[RELEASE]["data"]
    with_keys = render({"access": {"readApiKeys": "app=" + "cd" * 32}})
    assert of_kind(with_keys, "Secret")[f"{RELEASE}-access"]["stringData"]["READ_API_KEYS"] == "app=" + "cd" * 32


def test_without_unit_tokens_or_notifys_gateway_secret_the_rendering_stops():
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmError, match="access.unitTokens"):
            chart.render(merged(VALUES, {"access": {"unitTokens": ""}}), name=RELEASE, namespace=NAMESPACE)
        values = merged(VALUES)
        del values["services"]["notify"]["secret"]["env"]["SMS_INBOUND_SECRET"]
        with pytest.raises(helm.HelmError, match="services.notify.secret.env lacks SMS_INBOUND_SECRET"):
            chart.render(values, name=RELEASE, namespace=NAMESPACE)
    # a district file of the deployment's own may hold the hashes instead
    objects = render({"access": {"unitTokens": ""}, "district": {"config": "units: []\n"}})
    (container,) = by_component(objects, "Deployment")["dispatch"]["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["UNIT_TOKENS"]["secretKeyRef"]["optional"] is True
    assert of_kind(objects, "Secret")[f"{RELEASE}-district"]["stringData"] == {"district.yaml": "units: []\n"}


def test_a_services_own_secret_holds_what_its_values_give():
    objects = render({"services": {"intake": {"secret": {"env": {"OPEN311_API_KEYS": "city=ab12", "PGPASSWORD": "x"}}}}})
    secrets = of_kind(objects, "Secret")
    assert secrets[f"{RELEASE}-intake"]["stringData"] == {"OPEN311_API_KEYS": "city=ab12", "PGPASSWORD": "x"}
    assert secrets[f"{RELEASE}-dispatch"]["stringData"] == {}
    assert secrets[f"{RELEASE}-notify"]["stringData"]["SMS_INBOUND_SECRET"] == "s3cret"
    configmap = of_kind(objects, "ConfigMap")[RELEASE]
    secret_keys = {"OPEN311_API_KEYS", "PGPASSWORD", "UNIT_TOKENS", "READ_API_KEYS", "SMS_INBOUND_SECRET"}
    assert not secret_keys & set(configmap["data"]), "no secret in the ConfigMap"


# --- migrate -------------------------------------------------------------------------------------


def test_migrate_runs_as_the_nats_admin_before_each_upgrade(objects):
    (job,) = of_kind(objects, "Job").values()
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"post-install", "pre-upgrade"}
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["coffeetime", "migrate"]
    env = env_of(container)
    assert env["NATS_USER"] == "admin" and env["NATS_INBOX_PREFIX"] == "_INBOX_admin"
    assert env["NATS_PASSWORD"]["secretKeyRef"]["key"] == "ADMIN_PASSWORD"
    assert env["STREAM_REPLICAS"] == "3" and env["DATABASE_URL"] == DATABASE
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    hooked = render({"migrate": {"hook": "pre-install,pre-upgrade"}})
    assert next(iter(of_kind(hooked, "Job").values()))["metadata"]["annotations"]["helm.sh/hook"] == \
        "pre-install,pre-upgrade"


# --- NATS ----------------------------------------------------------------------------------------


def test_the_charts_nats_config_is_deploy_nats_conf(objects):
    linked = CHART / "files" / "nats.conf"
    if linked.is_symlink():
        assert linked.resolve() == NATS_CONF.resolve()
    else:  # a checkout without symlinks holds a copy: it must be the same text
        assert linked.read_bytes() == NATS_CONF.read_bytes(), "files/nats.conf differs from deploy/nats/nats.conf"
    configmap = of_kind(objects, "ConfigMap")[f"{RELEASE}-nats-config"]
    assert configmap["data"] == {"nats.conf": NATS_CONF.read_text(encoding="utf-8")}


def nats_statefulset(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (statefulset,) = of_kind(objects, "StatefulSet").values()
    return statefulset


def test_nats_is_three_routed_jetstream_nodes_behind_a_headless_service(objects):
    statefulset = nats_statefulset(objects)
    spec = statefulset["spec"]
    assert spec["replicas"] == 3 and spec["podManagementPolicy"] == "Parallel"
    headless = of_kind(objects, "Service")[spec["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["name"]: p["port"] for p in headless["spec"]["ports"]} == {"client": 4222, "cluster": 6222,
                                                                         "monitor": 8222}
    assert selects(headless["spec"]["selector"], spec["template"]["metadata"]["labels"])
    (container,) = spec["template"]["spec"]["containers"]
    args = container["args"]
    assert args[:3] == ["-js", "-c", "/etc/nats/nats.conf"]
    flags = dict(zip(args[3::2], args[4::2], strict=True))
    assert flags["--name"] == "$(POD_NAME)", "each node's server name is its pod's (KEDA finds leaders by it)"
    assert env_of(container)["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    hosts = [f"{statefulset['metadata']['name']}-{i}.{spec['serviceName']}.{NAMESPACE}.svc.cluster.local"
             for i in range(3)]
    assert flags["--routes"].split(",") == [f"nats://{h}:6222" for h in hosts]
    assert flags["--cluster"] == "nats://0.0.0.0:6222" and flags["--cluster_name"]
    assert flags["--client_advertise"] == f"$(POD_NAME).{spec['serviceName']}.{NAMESPACE}.svc.cluster.local:4222"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["config"] == "/etc/nats" and mounts["data"] == "/data", "nats.conf stores JetStream in /data"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"]
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == f"{RELEASE}-nats-config"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"client": 4222, "cluster": 6222, "monitor": 8222}
    assert container["livenessProbe"]["httpGet"]["port"] == "monitor"


def test_nats_server_accepts_the_charts_config_and_command_line(objects, tmp_path):
    from tools.embedded import nats_server_binary

    (container,) = nats_statefulset(objects)["spec"]["template"]["spec"]["containers"]
    conf = tmp_path / "nats.conf"
    conf.write_text(of_kind(objects, "ConfigMap")[f"{RELEASE}-nats-config"]["data"]["nats.conf"], encoding="utf-8")
    args = [a.replace("/etc/nats/nats.conf", str(conf)).replace("$(POD_NAME)", f"{RELEASE}-nats-0")
            for a in container["args"]]
    env = {**os.environ, **{key: "pw" for key in PASSWORDS}}
    result = subprocess.run([nats_server_binary(), "-t", *args], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_its_own_nats_the_chart_needs_the_urls_and_the_monitoring_endpoint():
    outside = {"nats": {"enabled": False}, "natsUrls": ["nats://nats-a:4222", "nats://nats-b:4222"],
               "keda": {"natsServerMonitoringEndpoint": "nats-headless.nats.svc.cluster.local:8222"},
               "natsCredentials": {"passwords": None}}
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match="ADMIN_PASSWORD"):
        chart.render(merged(VALUES, outside), name=RELEASE, namespace=NAMESPACE)
    clients = {f"{n.upper()}_PASSWORD": "pw" for n in (*SERVICES, "admin")}
    objects = render(merged(outside, {"natsCredentials": {"passwords": clients}}))
    assert not of_kind(objects, "StatefulSet") and f"{RELEASE}-nats-config" not in of_kind(objects, "ConfigMap")
    (container,) = by_component(objects, "Deployment")["notify"]["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["NATS_URL"] == "nats://nats-a:4222,nats://nats-b:4222"
    trigger = by_component(objects, "ScaledObject")["notify"]["spec"]["triggers"][0]
    assert trigger["metadata"]["natsServerMonitoringEndpoint"] == "nats-headless.nats.svc.cluster.local:8222"
