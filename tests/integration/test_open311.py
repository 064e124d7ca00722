"""Open311 GeoReport v2 at intake's /open311/v2, against the real NATS and PostgreSQL.

Two checks of the wire format: the documents' fields against the specification's field
lists written out below (GeoReport v2, wiki.open311.org/GeoReport_v2), in JSON and XML;
and the reads through a real GeoReport client, the ``georeport`` package from PyPI
(read-only: it has no POST, and sends no ``api_key`` on reads, so the test adds the key to
the query string of its ``requests.get`` as a deployment's client would).
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import georeport
import httpx
import pytest
import requests
import uvicorn

from services.dispatch.__main__ import create_service as create_dispatch
from services.escalation.__main__ import create_service as create_escalation
from services.intake.__main__ import create_service as create_intake
from shared.contracts import subjects
from shared.district import token_sha256
from tests.integration.test_intake import an_enterprise
from tests.support import Recorder, publish, running, wait_for

pytestmark = pytest.mark.integration

KEY_A, KEY_B = "open311-key-of-the-app", "open311-key-of-another-client"
KEYS = f"wuhou-app={token_sha256(KEY_A)},other-client={token_sha256(KEY_B)}"
V2 = "/open311/v2"

# --- the specification's fields (GeoReport v2) --------------------------------------------------
SERVICE_FIELDS = {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
DEFINITION_FIELDS = {"service_code", "attributes"}
ATTRIBUTE_FIELDS = {"variable", "code", "datatype", "required", "datatype_description", "order", "description",
                    "values"}
VALUE_FIELDS = {"key", "name"}
CREATED_FIELDS = {"service_request_id", "service_notice", "account_id"}  # or token, when no id is known yet
REQUEST_FIELDS = {"service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                  "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                  "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"}
ERROR_FIELDS = {"code", "description"}
DATATYPES = {"string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"}

TRAFFIC = "东航中心附近路口的左转车道通行不便，高峰时段通行缓慢；门口路段有车辆乱停乱放，容易造成拥堵。"


def a_request(**over) -> dict[str, str]:
    uscc, phone = an_enterprise()
    form = {"api_key": KEY_A, "service_code": "traffic", "description": TRAFFIC,
            "address_string": "双流区东升街道东航中心", "lat": "30.5728", "long": "103.9234",
            "first_name": "星", "last_name": "潘", "phone": phone, "email": "panxing@example.com",
            "attribute[enterprise_name]": "四川东航投资有限公司", "attribute[credit_code]": uscc,
            "attribute[request_id]": f"APP-{uuid.uuid4().hex[:12]}"}
    form.update(over)
    return {k: v for k, v in form.items() if v is not None}


def xml_items(body: bytes, root: str, item: str) -> list[dict[str, str | None]]:
    tree = ET.fromstring(body)
    assert tree.tag == root
    return [{child.tag: child.text for child in element} for element in tree.findall(item)]


@pytest.fixture
async def intake(servers):
    async with running(create_intake, servers, open311_api_keys=KEYS) as service:
        yield service


@pytest.fixture
async def http(intake):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=intake.http), base_url="http://intake") as client:
        yield client


@pytest.fixture
async def registered(nc):
    rec = await Recorder(nc).watch(subjects.APPEAL_REGISTERED, "ct.order.>", subjects.APPEAL_CLOSED)
    yield rec
    await rec.close()


async def appeals_of(db, source_prefix: str) -> list[str]:
    rows = await db.fetch("SELECT appeal_id FROM intake.appeals WHERE channel = 'app' AND source_id LIKE $1",
                          source_prefix + "%")
    return [r["appeal_id"] for r in rows]


async def test_the_services_are_the_districts_categories_in_json_and_xml(http):
    listed = (await http.get(f"{V2}/services.json")).json()
    assert {s["service_code"] for s in listed} >= {"traffic", "utilities", "other"}
    for service in listed:
        assert set(service) == SERVICE_FIELDS
        assert service["metadata"] is True and service["type"] == "realtime"
    traffic = next(s for s in listed if s["service_code"] == "traffic")
    assert traffic["service_name"] == "交通出行" and traffic["group"] == "交通运输"
    assert traffic["keywords"] == "交通, 道路交通"

    xml = await http.get(f"{V2}/services.xml")
    assert xml.headers["content-type"].startswith("text/xml")
    items = xml_items(xml.content, "services", "service")
    assert [set(i) for i in items] == [SERVICE_FIELDS] * len(listed)
    assert next(i for i in items if i["service_code"] == "traffic")["metadata"] == "true"

    definition = (await http.get(f"{V2}/services/traffic.json")).json()
    assert set(definition) == DEFINITION_FIELDS and definition["service_code"] == "traffic"
    codes = [a["code"] for a in definition["attributes"]]
    assert codes == ["enterprise_name", "credit_code", "kind", "request_id"]
    for attribute in definition["attributes"]:
        assert set(attribute) == ATTRIBUTE_FIELDS and attribute["datatype"] in DATATYPES
        assert all(set(v) == VALUE_FIELDS for v in attribute["values"])
    assert next(a for a in definition["attributes"] if a["code"] == "enterprise_name")["required"] is True
    tree = ET.fromstring((await http.get(f"{V2}/services/traffic.xml")).content)
    assert tree.tag == "service_definition"
    assert [a.findtext("code") for a in tree.find("attributes")] == codes
    assert {v.findtext("key") for v in tree.find("attributes")[2].find("values")} == {
        "appeal", "consultation", "complaint", "suggestion", "praise"}

    for path in ("/services/nothing.json", "/services.yaml", "/services/traffic.csv"):
        missing = await http.get(V2 + path)
        assert missing.status_code == 404
        assert [set(e) for e in missing.json()] == [ERROR_FIELDS] and missing.json()[0]["code"] == 404
    missing = await http.get(f"{V2}/services/nothing.xml")
    assert missing.status_code == 404 and xml_items(missing.content, "errors", "error")[0]["code"] == "404"


async def test_a_post_with_a_key_registers_one_appeal_and_the_same_request_again_answers_its_id(http, db, registered):
    form = a_request()
    first = await http.post(f"{V2}/requests.json", data=form)
    assert first.status_code == 201, first.text
    [created] = first.json()
    assert set(created) == CREATED_FIELDS
    appeal_id = created["service_request_id"]
    assert appeal_id.startswith("CT-") and "5 个工作日" in created["service_notice"]

    again = await http.post(f"{V2}/requests.xml", data=form)  # the same request, answered in XML
    assert again.status_code == 200
    assert xml_items(again.content, "service_requests", "request")[0]["service_request_id"] == appeal_id
    source = f"open311:wuhou-app:{form['attribute[request_id]']}"
    assert await appeals_of(db, source) == [appeal_id]

    row = await db.fetchrow("SELECT * FROM intake.appeals WHERE appeal_id = $1", appeal_id)
    assert row["content"] == TRAFFIC and row["category_hint"] == "交通出行"
    assert row["contact_name"] == "潘星" and row["enterprise_uscc"] == form["attribute[credit_code]"]
    assert row["address"] == "双流区东升街道东航中心"
    geo = await db.fetchrow("SELECT * FROM intake.open311_requests WHERE appeal_id = $1", appeal_id)
    assert (geo["client"], geo["lat"], geo["long"], geo["email"]) == ("wuhou-app", 30.5728, 103.9234,
                                                                      "panxing@example.com")
    event = await wait_for(lambda: registered.on(subjects.APPEAL_REGISTERED, appeal_id=appeal_id), what="registered")
    assert event[0]["channel"] == "app" and event[0]["source_id"] == source

    # without its own id, the request's fingerprint is the key: sent twice at once, one appeal
    anonymous = a_request(**{"attribute[request_id]": None})
    both = await asyncio.gather(*(http.post(f"{V2}/requests.json", data=anonymous) for _ in range(2)))
    assert sorted(r.status_code for r in both) == [200, 201]
    assert both[0].json()[0]["service_request_id"] == both[1].json()[0]["service_request_id"]
    changed = await http.post(f"{V2}/requests.json", data={**anonymous, "description": TRAFFIC + "（补充）"})
    assert changed.status_code == 201 and changed.json()[0]["service_request_id"] != both[0].json()[0]["service_request_id"]
    # another client's same id is its own request
    other = await http.post(f"{V2}/requests.json", data={**form, "api_key": KEY_B})
    assert other.status_code == 201 and other.json()[0]["service_request_id"] != appeal_id
    await wait_for(lambda: len(registered.on(subjects.APPEAL_REGISTERED, source_id=source)) == 1, what="one registration")


async def test_a_post_without_or_with_a_wrong_key_is_refused_and_stores_nothing(http, db):
    for key, fmt in ((None, "json"), ("", "xml"), ("not-a-key", "json"), (KEY_A + "x", "xml")):
        form = a_request(api_key=key)
        refused = await http.post(f"{V2}/requests.{fmt}", data=form)
        assert refused.status_code == 403
        errors = refused.json() if fmt == "json" else xml_items(refused.content, "errors", "error")
        assert len(errors) == 1 and set(errors[0]) == ERROR_FIELDS and str(errors[0]["code"]) == "403"
        assert "api_key" in errors[0]["description"]
        assert await appeals_of(db, f"open311:wuhou-app:{form['attribute[request_id]']}") == []
    for path in ("/requests.json", "/requests/CT-20261126-000001.json"):
        assert (await http.get(V2 + path)).status_code == 403
        assert (await http.get(V2 + path, params={"api_key": "wrong"})).status_code == 403
    metrics = (await http.get("/metrics")).text
    assert 'coffeetime_http_refused_total{endpoint="/open311/v2/requests",reason="unknown_key",service="intake"}' \
        in metrics


async def test_bad_parameters_get_one_spec_error_each_and_nothing_is_stored(http, db):
    form = a_request(phone="12345", **{"attribute[credit_code]": "914403001922038217"}, description="",
                     lat="91", long=None, address_string=None, email="not-mail", service_code="parking",
                     **{"attribute[colour]": "red", "attribute[kind]": "rumour"})
    bad = await http.post(f"{V2}/requests.json", data=form)
    assert bad.status_code == 400
    assert all(set(e) == ERROR_FIELDS and e["code"] == 400 for e in bad.json())
    named = {e["description"].split(":")[0] for e in bad.json()}
    assert named == {"phone", "attribute[credit_code]", "description", "lat", "email", "service_code",
                     "attribute[colour]", "attribute[kind]"}
    assert "check character" in next(e["description"] for e in bad.json() if e["description"].startswith("attr"
                                                                                                        "ibute[credit"))
    no_place = await http.post(f"{V2}/requests.xml", data=a_request(lat=None, long=None, address_string=None))
    assert no_place.status_code == 400
    assert [e["description"].split(":")[0] for e in xml_items(no_place.content, "errors", "error")] == [
        "address_string"]
    as_json = await http.post(f"{V2}/requests.json", json=a_request())
    assert as_json.status_code == 400 and "x-www-form-urlencoded" in as_json.json()[0]["description"]
    nul = await http.post(f"{V2}/requests.json", data=a_request(email="a\x00@example.com"))
    assert nul.status_code == 400 and nul.json()[0]["description"].startswith("email: contains")
    for f in (form, a_request(lat=None, long=None, address_string=None)):
        assert await appeals_of(db, f"open311:wuhou-app:{f['attribute[request_id]']}") == []
    assert (await http.get(f"{V2}/requests.json", params={"api_key": KEY_A, "status": "pending"})).status_code == 400
    span = await http.get(f"{V2}/requests.json", params={"api_key": KEY_A, "start_date": "2026-01-01",
                                                         "end_date": "2026-06-01"})
    assert span.status_code == 400 and "90 days" in span.json()[0]["description"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_request_follows_its_appeal_from_open_to_closed_through_a_georeport_client(
        servers, js, db, registered, monkeypatch):
    async with (running(create_intake, servers, open311_api_keys=KEYS) as intake,
                running(create_dispatch, servers), running(create_escalation, servers)):
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(intake.http, host="127.0.0.1", port=port, log_config=None,
                                               lifespan="off", access_log=False))
        serving = asyncio.create_task(server.serve())
        try:
            await wait_for(lambda: server.started, what="intake's HTTP server")
            await follow_a_request(f"http://127.0.0.1:{port}{V2}", js, registered, monkeypatch)
        finally:
            server.should_exit = True
            await serving


async def follow_a_request(base: str, js, rec, monkeypatch) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        posted = await http.post("/requests.json", data=a_request(media_url="https://example.com/photo.jpg"))
        appeal_id = posted.json()[0]["service_request_id"]
        other = (await http.post("/requests.json", data=a_request(service_code="utilities",
                                                                   description="园区近期频繁停电，影响生产。"))).json()
        other_id = other[0]["service_request_id"]

    # the georeport client reads; the key goes on the query string of its reads
    get = requests.get

    def keyed(url, params=None, **kw):
        return get(url, params={**(params or {}), "api_key": KEY_A}, timeout=10, **kw)

    monkeypatch.setattr(georeport.georeport.requests, "get", keyed)
    client = {fmt: georeport.GeoReport(base, output_format=fmt) for fmt in ("json", "xml")}

    # dispatch's first appeal waits for its routing model (trained at start, 2-8 s on a busy machine)
    order = (await wait_for(lambda: rec.on(subjects.ORDER_DISPATCHED, appeal_id=appeal_id), timeout=60,
                            what="dispatched"))[0]

    def view(fmt: str) -> dict:
        return client[fmt].get_service_request(appeal_id)

    async def deadline_known():
        seen = await asyncio.to_thread(view, "json")
        return seen if seen["expected_datetime"] and seen["agency_responsible"] else None

    seen = await wait_for(deadline_known, timeout=20, what="the deadline in the request")
    assert set(seen) == REQUEST_FIELDS
    assert seen["status"] == "open" and seen["agency_responsible"] == order["unit"] == "区公安分局交警大队"
    assert seen["status_notes"] == f"已派至{order['unit']}，等待签收。"
    assert seen["service_name"] == "交通出行" and seen["description"] == TRAFFIC
    assert (seen["lat"], seen["long"], seen["media_url"]) == (30.5728, 103.9234, "https://example.com/photo.jpg")
    assert datetime.fromisoformat(seen["expected_datetime"]) > datetime.fromisoformat(seen["requested_datetime"])
    as_xml = await asyncio.to_thread(view, "xml")
    assert set(as_xml) == REQUEST_FIELDS and as_xml["service_request_id"] == appeal_id
    assert as_xml["expected_datetime"] == seen["expected_datetime"] and as_xml["lat"] == "30.5728"

    for action, fields in (("sign", {}), ("reply", {"reply": "已设置禁停标志，增加左转放行时长。", "resolved": True})):
        action_id = f"A-{uuid.uuid4().hex[:10]}"
        await publish(js, subjects.order_action_subject("traffic_police", action),
                      {"action_id": action_id, "order_id": order["order_id"], "actor": "张科长", **fields},
                      msg_id=action_id)
    await wait_for(lambda: rec.on(subjects.ORDER_REPLIED, order_id=order["order_id"]), timeout=20, what="replied")
    await publish(js, subjects.IN_FEEDBACK, {"feedback_id": f"F-{uuid.uuid4().hex[:8]}", "appeal_id": appeal_id,
                                             "rating": "satisfied", "via": "app"})
    await wait_for(lambda: rec.on(subjects.APPEAL_CLOSED, appeal_id=appeal_id), timeout=20, what="closed")

    async def closed():
        seen = await asyncio.to_thread(view, "xml")
        return seen if seen["status"] == "closed" else None

    done = await wait_for(closed, timeout=20, what="closed in the request")
    assert done["status_notes"] == "已办结（企业评价满意）。答复：已设置禁停标志，增加左转放行时长。"
    assert done["updated_datetime"] > seen["updated_datetime"]

    # the list and its filters, in both formats
    def listed(fmt: str, **filters) -> list[dict]:
        found = client[fmt].get_service_requests(**filters)
        return [found] if isinstance(found, dict) else list(found or [])  # xmltodict: one item is no list

    def ids(fmt: str, **filters) -> list[str]:
        return [r["service_request_id"] for r in listed(fmt, **filters)]

    today = datetime.now(UTC)
    for fmt in ("json", "xml"):
        everything = await asyncio.to_thread(ids, fmt)
        assert {appeal_id, other_id} <= set(everything)
        assert everything.index(other_id) < everything.index(appeal_id)  # newest first
        assert await asyncio.to_thread(ids, fmt, status="closed", service_code="traffic") == [appeal_id]
        assert other_id in await asyncio.to_thread(ids, fmt, status="open")
        assert appeal_id not in await asyncio.to_thread(ids, fmt, status="open")
        assert await asyncio.to_thread(ids, fmt, service_request_id=f"{other_id},{appeal_id}") == [other_id, appeal_id]
        assert await asyncio.to_thread(ids, fmt, service_code="utilities",
                                       start_date=(today - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                       end_date=(today + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
                                       ) == [other_id]
        if fmt == "json":  # the client cannot read an empty XML list (xmltodict makes <service_requests/> None)
            assert await asyncio.to_thread(ids, fmt, start_date="2026-01-01", end_date="2026-01-31") == []
        assert all(set(r) == REQUEST_FIELDS for r in await asyncio.to_thread(listed, fmt))

    # another client sees none of it; an empty list in XML is the bare root
    async with httpx.AsyncClient(base_url=base) as http:
        empty = await http.get("/requests.xml", params={"api_key": KEY_A, "start_date": "2026-01-01",
                                                        "end_date": "2026-01-31"})
        assert empty.status_code == 200 and xml_items(empty.content, "service_requests", "request") == []
        assert (await http.get(f"/requests/{appeal_id}.json", params={"api_key": KEY_B})).status_code == 404
        assert appeal_id not in json.dumps((await http.get("/requests.json", params={"api_key": KEY_B})).json())
