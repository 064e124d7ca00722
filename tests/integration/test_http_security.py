"""HTTP least privilege on the real servers: the SMS gateway's signature, read API keys, the demo credentials.

- ``POST /sms/inbound`` (notify): a forged signature, a stale timestamp and a replayed request are
  refused (401, 401, 409), counted in ``coffeetime_http_refused_total``, and publish no rating; a
  properly signed reply is taken once.
- ``GET /appeals...``, ``/topics`` (intake) and ``/notifications...`` (notify) answer 401 without a
  read API key (or with an unknown one) and 200 with one; ``/healthz`` and ``/metrics`` stay open.
- Outside ``DEMO_MODE`` a service refuses to start with the demo unit tokens, read key or SMS
  secret (in this process and as ``python -m services.intake``), and starts with real hashes
  given by ``UNIT_TOKENS`` / ``READ_API_KEYS``.
- Tokens and keys are compared with ``hmac.compare_digest``, once per configured hash.
"""

from __future__ import annotations

import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from services.dispatch.__main__ import create_service as create_dispatch
from services.intake.__main__ import create_service as create_intake
from services.notify.__main__ import create_service as create_notify
from shared import metrics
from shared.access import (
    API_KEY_HEADER,
    DEMO_READ_KEY,
    DEMO_SMS_SECRET,
    DemoCredentialsRefused,
    demo_credentials,
    signed_headers,
)
from shared.contracts import subjects
from shared.district import demo_token, load_district, token_sha256
from shared.settings import Settings
from tests.integration.test_intake import a_call
from tests.support import Recorder, publish, running, settings_for, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
READ = {API_KEY_HEADER: DEMO_READ_KEY}


def refused(service: str, endpoint: str, reason: str) -> float:
    """coffeetime_http_refused_total for one endpoint and reason (this process's registry)."""
    return metrics.registry.get_sample_value(
        "coffeetime_http_refused_total", {"service": service, "endpoint": endpoint, "reason": reason}) or 0.0


def client(service, name: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.http), base_url=f"http://{name}")


def real_tokens() -> tuple[str, dict[str, str]]:
    """UNIT_TOKENS giving every unit of the default district a token of its own; the tokens by unit."""
    tokens = {u.unit_code: f"real-{u.unit_code}-{uuid.uuid4().hex}" for u in load_district().units}
    return ",".join(f"{code}={token_sha256(t)}" for code, t in tokens.items()), tokens


# --- the SMS gateway's signature -------------------------------------------------------------------------

@pytest.fixture
async def notify(servers):
    async with running(create_notify, servers) as service:
        yield service


@pytest.fixture
async def feedback(nc):
    recorder = await Recorder(nc).watch(subjects.IN_FEEDBACK)
    yield recorder
    await recorder.close()


async def invited_to_rate(db) -> tuple[str, str]:
    """A phone a rating invitation was delivered to, and its appeal (as notify records it)."""
    phone = "139" + f"{uuid.uuid4().int % 10**8:08d}"
    appeal_id = f"CT-20261126-S{uuid.uuid4().hex[:8]}"
    await db.execute(
        """
        INSERT INTO notify.notifications (notification_id, cause_event_id, cause_subject, appeal_id, channel,
            address, recipient_role, template, template_kind, lang, text, not_before, next_attempt_at,
            status, created_at, delivered_at)
        VALUES ($1, 'sec-invite', 'ct.order.replied', $2, 'sms', $3, 'enterprise', 'reply_rating_invitation',
                'rating_invitation', 'zh', '请回复1满意，2基本满意，3不满意', now(), now(), 'delivered', now(), now())
        """, uuid.uuid4().hex, appeal_id, phone)
    return phone, appeal_id


def reply(phone: str, text: str = "1") -> tuple[str, bytes]:
    message_id = f"MO-{uuid.uuid4().hex[:12]}"
    return message_id, json.dumps({"id": message_id, "from": phone, "text": text}).encode()


def signed_json(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", **signed_headers(DEMO_SMS_SECRET, body)}


async def stored_replies(db, *message_ids: str) -> int:
    return await db.fetchval("SELECT count(*) FROM notify.inbound_sms WHERE message_id = ANY($1::text[])",
                             list(message_ids))


async def test_forged_stale_and_replayed_sms_replies_are_refused_counted_and_rate_nothing(notify, db, feedback):
    phone, appeal_id = await invited_to_rate(db)
    window = notify.settings.sms_inbound_window_s
    endpoint = "/sms/inbound"
    before = {r: refused("notify", endpoint, r) for r in ("missing_signature", "bad_signature", "stale", "replayed")}
    json_type = {"Content-Type": "application/json"}
    async with client(notify, "notify") as http:
        unsigned_id, unsigned = reply(phone, "3")
        no_signature = await http.post(endpoint, content=unsigned, headers=json_type)

        forged_id, forged_body = reply(phone, "3")
        forged = await http.post(endpoint, content=forged_body,
                                 headers={**json_type, **signed_headers("not-the-secret", forged_body)})

        tampered_id, original = reply(phone, "1")
        tampered_body = original.replace(b'"text": "1"', b'"text": "3"')
        tampered = await http.post(endpoint, content=tampered_body,
                                   headers={**json_type, **signed_headers(DEMO_SMS_SECRET, original)})

        stale_id, stale_body = reply(phone, "3")
        stale = await http.post(endpoint, content=stale_body, headers={**json_type, **signed_headers(
            DEMO_SMS_SECRET, stale_body, timestamp=int(time.time() - window - 5))})
        future_id, future_body = reply(phone, "3")
        future = await http.post(endpoint, content=future_body, headers={**json_type, **signed_headers(
            DEMO_SMS_SECRET, future_body, timestamp=int(time.time() + window + 5))})

        good_id, good_body = reply(phone, "2")
        good_headers = {**json_type, **signed_headers(DEMO_SMS_SECRET, good_body)}
        good = await http.post(endpoint, content=good_body, headers=good_headers)
        replayed = await http.post(endpoint, content=good_body, headers=good_headers)  # the same bytes, again

        metrics_page = (await http.get("/metrics")).text

    for answer, reason in ((no_signature, "missing_signature"), (forged, "bad_signature"),
                           (tampered, "bad_signature"), (stale, "stale"), (future, "stale")):
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["reason"] == reason
    assert good.status_code == 200 and good.json()["accepted"] is True
    assert good.json()["rating"] == "basically_satisfied" and good.json()["appeal_id"] == appeal_id
    assert replayed.status_code == 409 and replayed.json()["reason"] == "replayed"

    # counted, by reason
    assert refused("notify", endpoint, "missing_signature") - before["missing_signature"] == 1
    assert refused("notify", endpoint, "bad_signature") - before["bad_signature"] == 2
    assert refused("notify", endpoint, "stale") - before["stale"] == 2
    assert refused("notify", endpoint, "replayed") - before["replayed"] == 1
    assert 'coffeetime_http_refused_total{endpoint="/sms/inbound",reason="replayed",service="notify"}' in metrics_page

    # one rating went on, the good one's; the refused ones left no trace
    await wait_for(lambda: feedback.on(subjects.IN_FEEDBACK, feedback_id=f"sms-{good_id}"), timeout=30,
                   what="the good rating")
    assert [b["feedback_id"] for b in feedback.on(subjects.IN_FEEDBACK, appeal_id=appeal_id)] == [f"sms-{good_id}"]
    assert await stored_replies(db, unsigned_id, forged_id, tampered_id, stale_id, future_id) == 0
    assert await stored_replies(db, good_id) == 1
    nonce = good_headers["X-Ct-Nonce"]
    assert await db.fetchval("SELECT count(*) FROM notify.inbound_nonces WHERE nonce = $1", nonce) == 1


async def test_a_gateway_retry_signed_anew_gets_the_first_answer_and_old_nonces_are_forgotten(notify, db, feedback):
    phone, appeal_id = await invited_to_rate(db)
    message_id, body = reply(phone, "1")
    old_nonce = f"old-{uuid.uuid4().hex}"
    long_ago = time.time() - 3 * notify.settings.sms_inbound_window_s
    await db.execute("INSERT INTO notify.inbound_nonces (nonce, signed_at) VALUES ($1, to_timestamp($2))",
                     old_nonce, long_ago)
    async with client(notify, "notify") as http:
        first = await http.post("/sms/inbound", content=body, headers=signed_json(body))
        retry = await http.post("/sms/inbound", content=body, headers=signed_json(body))
    assert first.status_code == 200 and first.json()["accepted"] is True and first.json()["duplicate"] is False
    assert retry.status_code == 200 and retry.json()["duplicate"] is True  # a new nonce: the id's first answer
    assert await db.fetchval("SELECT count(*) FROM notify.inbound_nonces WHERE nonce = $1", old_nonce) == 0
    await wait_for(lambda: feedback.on(subjects.IN_FEEDBACK, feedback_id=f"sms-{message_id}"), timeout=30,
                   what="the rating")
    assert len(feedback.on(subjects.IN_FEEDBACK, appeal_id=appeal_id)) == 1


async def test_without_a_secret_outside_demo_mode_every_inbound_sms_is_refused(servers, db):
    unit_tokens, _ = real_tokens()
    settings = {"demo_mode": False, "unit_tokens": unit_tokens}
    async with running(create_notify, servers, **settings) as service, client(service, "notify") as http:
        phone, _ = await invited_to_rate(db)
        message_id, body = reply(phone, "1")
        answer = await http.post("/sms/inbound", content=body, headers=signed_json(body))
        unread = await http.get("/notifications", params={"appeal_id": "CT-X"}, headers=READ)
    assert answer.status_code == 401 and answer.json()["reason"] == "not_configured"
    assert unread.status_code == 401 and unread.json()["reason"] == "unknown_key"  # no demo key outside demo mode
    assert await stored_replies(db, message_id) == 0


# --- read API keys -------------------------------------------------------------------------------------

async def test_read_routes_answer_401_without_a_key_and_200_with_one_while_health_and_metrics_stay_open(
        servers, js, nc):
    keys = {"app": f"app-{uuid.uuid4().hex}", "ops": f"ops-{uuid.uuid4().hex}"}
    read_api_keys = ",".join(f"{client}={token_sha256(k)}" for client, k in keys.items())
    recorder = await Recorder(nc).watch(subjects.APPEAL_REGISTERED)
    async with running(create_intake, servers, read_api_keys=read_api_keys) as intake, \
            running(create_notify, servers, read_api_keys=read_api_keys) as notify, \
            client(intake, "intake") as to_intake, client(notify, "notify") as to_notify:
        call = a_call()
        await publish(js, subjects.IN_HOTLINE, call, msg_id=call["call_id"])
        [event] = await wait_for(lambda: recorder.on(subjects.APPEAL_REGISTERED, source_id=call["call_id"]),
                                 timeout=60, what="the appeal registered")  # after what earlier tests left
        appeal_id = event["appeal_id"]
        reads = [(to_intake, f"/appeals/{appeal_id}", {}), (to_intake, "/appeals",
                                                            {"channel": "hotline", "source_id": call["call_id"]}),
                 (to_intake, "/topics", {}), (to_notify, "/notifications", {"appeal_id": appeal_id}),
                 (to_notify, "/notifications/no-such-notification", {})]
        for http, path, params in reads:
            endpoint = path.replace(appeal_id, "{appeal_id}").replace("no-such-notification", "{notification_id}")
            service = "intake" if http is to_intake else "notify"
            missing_before = refused(service, endpoint, "missing_key")
            unknown_before = refused(service, endpoint, "unknown_key")
            without = await http.get(path, params=params)
            unknown = await http.get(path, params=params, headers={API_KEY_HEADER: "guessed-key"})
            demo = await http.get(path, params=params, headers=READ)  # READ_API_KEYS set: the demo key is not one
            assert (without.status_code, unknown.status_code, demo.status_code) == (401, 401, 401), path
            assert without.json()["reason"] == "missing_key" and unknown.json()["reason"] == "unknown_key"
            assert without.headers["content-type"] == "application/problem+json"
            assert "enterprise_name" not in without.text and call["content"] not in unknown.text
            assert refused(service, endpoint, "missing_key") - missing_before == 1
            assert refused(service, endpoint, "unknown_key") - unknown_before == 2
            for key in keys.values():
                answer = await http.get(path, params=params, headers={API_KEY_HEADER: key})
                assert answer.status_code == (404 if "no-such" in path else 200), (path, answer.text)
        status = (await to_intake.get(f"/appeals/{appeal_id}", headers={API_KEY_HEADER: keys["app"]})).json()
        assert status["appeal_id"] == appeal_id and status["enterprise_name"] == call["enterprise_name"]
        for http in (to_intake, to_notify):
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/metrics")).status_code == 200
            assert (await http.get("/livez")).status_code == 200
    await recorder.close()


def test_http_binds_loopback_unless_configured_and_the_deploy_files_configure_it(monkeypatch):
    monkeypatch.delenv("HTTP_HOST", raising=False)
    assert Settings().http_host == "127.0.0.1"
    monkeypatch.setenv("HTTP_HOST", "0.0.0.0")
    assert Settings().http_host == "0.0.0.0"
    compose = yaml.safe_load((REPO / "deploy/compose.yaml").read_text(encoding="utf-8"))
    assert compose["x-service-env"]["HTTP_HOST"] == "0.0.0.0"
    k8s = yaml.safe_load((REPO / "deploy/k8s/config.yaml").read_text(encoding="utf-8"))
    assert k8s["data"]["HTTP_HOST"] == "0.0.0.0"


WANTED = {"intake": {"UNIT_TOKENS", "READ_API_KEYS"}, "dispatch": {"UNIT_TOKENS"}, "escalation": {"UNIT_TOKENS"},
          "notify": {"UNIT_TOKENS", "READ_API_KEYS", "SMS_INBOUND_SECRET"}}


def test_compose_and_kubernetes_supply_real_credentials_and_never_demo_mode():
    compose = yaml.safe_load((REPO / "deploy/compose.yaml").read_text(encoding="utf-8"))
    for name, wanted in WANTED.items():
        env = compose["services"][name]["environment"]
        for variable in wanted:  # required from deploy/.env: compose stops with the name when one is missing
            assert str(env[variable]).startswith(f"${{{variable}:?"), (name, variable)
        assert "DEMO_MODE" not in env, name
    for name, wanted in WANTED.items():
        deployment = next(yaml.safe_load_all((REPO / f"deploy/k8s/{name}.yaml").read_text(encoding="utf-8")))
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        from_secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
        for variable in wanted - {"SMS_INBOUND_SECRET"}:  # notify's secret is in its own Secret coffeetime-notify
            assert from_secrets[variable] == {"name": "coffeetime-access", "key": variable}, (name, variable)
        assert "DEMO_MODE" not in {e["name"] for e in container["env"]}, name
    config = yaml.safe_load((REPO / "deploy/k8s/config.yaml").read_text(encoding="utf-8"))
    assert "DEMO_MODE" not in config["data"]


# --- the demo credentials --------------------------------------------------------------------------------

async def test_outside_demo_mode_a_service_refuses_the_demo_tokens_and_starts_with_real_ones(servers):
    with pytest.raises(DemoCredentialsRefused) as refusal:
        async with running(create_dispatch, servers, demo_mode=False):
            pass
    message = str(refusal.value)
    assert "demo unit tokens (token-<unit_code>)" in message and "UNIT_TOKENS" in message and "DEMO_MODE" in message

    unit_tokens, tokens = real_tokens()
    lead = load_district().lead_unit.unit_code
    async with running(create_intake, servers, demo_mode=False, unit_tokens=unit_tokens) as intake, \
            client(intake, "intake") as http:
        demo = await http.post("/appeals/CT-NO-SUCH/split", headers={"Authorization": f"Bearer {demo_token(lead)}"})
        real = await http.post("/appeals/CT-NO-SUCH/split", headers={"Authorization": f"Bearer {tokens[lead]}"})
    assert demo.status_code == 401  # the demo token opens nothing
    assert real.status_code == 404  # the real token passes; there is no such appeal


def test_the_demo_read_key_and_sms_secret_are_refused_outside_demo_mode_too(servers):
    unit_tokens, _ = real_tokens()
    base = settings_for(servers, demo_mode=False, unit_tokens=unit_tokens)
    assert demo_credentials(base) == []
    demo_key = base.model_copy(update={"read_api_keys": f"someone={token_sha256(DEMO_READ_KEY)}"})
    assert demo_credentials(demo_key) == ["the demo read API key in READ_API_KEYS"]
    demo_secret = Settings(**{**base.model_dump(), "sms_inbound_secret": DEMO_SMS_SECRET})
    assert demo_credentials(demo_secret) == ["the demo SMS_INBOUND_SECRET"]
    half = unit_tokens.split(",")[0]  # one unit given a real token, the others keep the demo ones
    assert "the demo unit tokens" in demo_credentials(base.model_copy(update={"unit_tokens": half}))[0]


def test_a_service_process_without_demo_mode_exits_with_a_clear_message(servers):
    env = {**os.environ, **servers, "DEMO_MODE": "0", "LOG_LEVEL": "WARNING", "INTAKE_PORT": "0"}
    done = subprocess.run([sys.executable, "-m", "services.intake"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "refusing to start with the demo unit tokens" in done.stderr and "DEMO_MODE=1" in done.stderr


# --- constant-time comparison ------------------------------------------------------------------------------

async def test_tokens_and_keys_are_compared_in_constant_time_against_every_hash(servers, monkeypatch):
    district = load_district()
    with_tokens = sum(1 for u in district.units if u.token_sha256)
    calls: list[tuple[str, str]] = []
    original = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    keys = f"app={token_sha256('k-app')},ops={token_sha256('k-ops')},bi={token_sha256('k-bi')}"
    async with running(create_intake, servers, read_api_keys=keys) as intake, client(intake, "intake") as http:
        calls.clear()
        lead = district.lead_unit.unit_code
        first = district.units[0].unit_code  # a match early in the list: the loop still looks at every unit
        await http.post("/appeals/CT-NO-SUCH/split", headers={"Authorization": f"Bearer {demo_token(first)}"})
        assert len(calls) == with_tokens
        calls.clear()
        await http.post("/appeals/CT-NO-SUCH/split", headers={"Authorization": f"Bearer {demo_token(lead)}x"})
        assert len(calls) == with_tokens and all(len(a) == len(b) == 64 for a, b in calls)  # hashes, never tokens
        calls.clear()
        answer = await http.get("/topics", headers={API_KEY_HEADER: "k-app"})
        assert answer.status_code == 200 and len(calls) == 3  # every configured key's hash, no early exit
