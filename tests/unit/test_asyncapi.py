"""The AsyncAPI document: complete, consistent, and the committed copy up to date."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest

from shared.contracts import inbound, subjects
from shared.settings import SERVICES
from tools import asyncapi

COMMITTED = Path(__file__).parents[2] / "docs" / "asyncapi.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # through JSON, as the committed file is: tuples become lists, keys become strings
    return json.loads(asyncapi.render(asyncapi.build_document()))


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
        node = node[part]
    return node


def _channel_of(document: dict[str, Any], subject: str) -> dict[str, Any]:
    found = [c for c in document["channels"].values() if c.get("address") == subject]
    assert len(found) == 1, f"{subject}: {len(found)} channels"
    return found[0]


def _payload_schema(document: dict[str, Any], subject: str) -> dict[str, Any]:
    channel = _channel_of(document, subject)
    (message,) = channel["messages"].values()
    message = _resolve(document, message["$ref"]) if "$ref" in message else message
    payload = message["payload"]
    return _resolve(document, payload["$ref"]) if "$ref" in payload else payload


def test_the_committed_document_is_up_to_date(document):
    assert COMMITTED.exists(), "docs/asyncapi.json is missing: run `make docs` and commit it"
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert committed == document, (
        "docs/asyncapi.json is out of date with the contracts in shared/contracts/: run `make docs` and commit it"
    )


def test_the_committed_file_is_rendered_deterministically(document):
    assert COMMITTED.read_text(encoding="utf-8") == asyncapi.render(document), (
        "docs/asyncapi.json was not written by `coffeetime docs`: run `make docs`"
    )
    assert asyncapi.render(asyncapi.build_document()) == asyncapi.render(asyncapi.build_document())


def test_it_is_an_asyncapi_3_document_with_the_production_server(document):
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "coffeetime"
    assert document["info"]["version"]
    assert "Nats-Msg-Id" in document["info"]["description"]
    server = document["servers"]["production"]
    assert (server["host"], server["protocol"]) == ("nats:4222", "nats")


def test_every_subject_has_a_channel(document):
    addresses = {c["address"] for c in document["channels"].values()}
    missing = (set(subjects.INBOUND) | set(subjects.EVENTS)) - addresses
    assert not missing, f"subjects without a channel: {sorted(missing)}"
    assert f"{subjects.DLQ_PREFIX}.{{service}}.{{subject}}" in addresses


def test_coffeetime_receives_inbound_messages_and_sends_events(document):
    by_channel: dict[str, set[str]] = {}
    for operation in document["operations"].values():
        address = _resolve(document, operation["channel"]["$ref"])["address"]
        by_channel.setdefault(address, set()).add(operation["action"])
        assert operation["tags"], "every operation names the service that runs it"
        assert {t["name"] for t in operation["tags"]} <= set(SERVICES)
    for subject in subjects.INBOUND:
        # a service may also publish an inbound subject (notify: ratings sent as SMS replies)
        expected = {"receive", "send"} if asyncapi.producers_of(subject) else {"receive"}
        assert by_channel.get(subject) == expected, subject
    for subject in subjects.EVENTS:
        assert by_channel.get(subject) == {"send"}, subject
        assert _channel_of(document, subject)["x-producer"] in SERVICES


def test_every_required_field_of_every_inbound_model_is_required_in_its_schema(document):
    for subject, model in subjects.INBOUND.items():
        schema = _payload_schema(document, subject)
        required = {f.alias or name for name, f in model.model_fields.items() if f.is_required()}
        assert required <= set(schema.get("required", [])), f"{subject}: {required - set(schema.get('required', []))}"
        assert set(model.model_fields) <= set(schema["properties"]), subject


def test_every_event_field_is_documented(document):
    for subject, model in subjects.EVENTS.items():
        schema = _payload_schema(document, subject)
        assert set(model.model_fields) <= set(schema["properties"]), subject
        assert all(schema["properties"][name].get("description") for name in model.model_fields), (
            f"{subject}: every field has a description"
        )


def test_no_reference_dangles(document):
    refs = _refs(document)
    assert refs
    for ref in refs:
        _resolve(document, ref)
    schemas = document["components"]["schemas"]
    for ref in refs:
        if ref.startswith("#/components/schemas/"):
            assert ref.removeprefix("#/components/schemas/") in schemas, ref
    assert "$defs" not in json.dumps(document), "every $defs was hoisted into components/schemas"


def test_operations_reference_messages_of_their_own_channel(document):
    for name, operation in document["operations"].items():
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel + "/messages/"), name
        if "reply" in operation:
            for message in operation["reply"]["messages"]:
                assert message["$ref"].startswith(operation["reply"]["channel"]["$ref"] + "/messages/"), name


def test_the_status_query_is_request_reply_with_the_appeal_status(document):
    operation = next(op for op in document["operations"].values()
                     if _resolve(document, op["channel"]["$ref"])["address"] == subjects.Q_APPEAL)
    (reply,) = operation["reply"]["messages"]
    message = _resolve(document, _resolve(document, reply["$ref"])["$ref"])
    assert message["name"] == "AppealStatus"
    assert "timeline" in _resolve(document, message["payload"]["$ref"])["properties"]


def test_the_order_channel_has_its_parameters(document):
    channel = _channel_of(document, subjects.IN_ORDER)
    assert set(channel["parameters"]) == {"unit_code", "action"}
    assert channel["parameters"]["action"]["enum"] == list(get_args(inbound.UnitActionName))


def test_messages_carry_the_nats_msg_id_header(document):
    for subject in [*subjects.INBOUND, *subjects.EVENTS]:
        if subject == subjects.Q_APPEAL:
            continue  # plain request-reply: no JetStream deduplication
        (message,) = _channel_of(document, subject)["messages"].values()
        headers = _resolve(document, message["$ref"])["headers"]
        assert "Nats-Msg-Id" in headers["properties"] and "Nats-Msg-Id" in headers["required"], subject


def test_dead_letters_document_their_headers(document):
    channel = _channel_of(document, f"{subjects.DLQ_PREFIX}.{{service}}.{{subject}}")
    assert channel["parameters"]["service"]["enum"] == list(SERVICES)
    (message,) = channel["messages"].values()
    headers = _resolve(document, message["$ref"])["headers"]["properties"]
    assert {"Ct-Original-Subject", "Ct-Original-Msg-Id", "Ct-Deliveries", "Ct-Error", "Nats-Msg-Id"} <= set(headers)


def test_every_event_has_a_producer_and_consumers_match_nats_wildcards():
    for subject in subjects.EVENTS:
        assert asyncapi.producer_of(subject) in SERVICES
    assert asyncapi.subject_matches("ct.order.>", "ct.order.signed")
    assert not asyncapi.subject_matches("ct.order.>", "ct.order")
    assert asyncapi.subject_matches("ct.in.order.*.*", "ct.in.order.tax_bureau.sign")
    assert not asyncapi.subject_matches("ct.in.order.*", "ct.in.order.tax_bureau.sign")
    assert asyncapi.consumers_of(subjects.ORDER_DISPATCHED) == ["intake", "escalation", "notify"]


def test_who_consumes_and_publishes_what_is_read_from_the_services_declarations():
    declared = asyncapi.declarations()
    assert [s.subject for s in declared["dispatch"].subscriptions if s.subject == subjects.IN_ORDER_ALL]
    assert asyncapi.producers_of(subjects.IN_FEEDBACK) == ["notify"]
    assert asyncapi.consumers_of(subjects.Q_APPEAL) == ["intake"]  # a FastStream responder, not a durable
    durables = {s.durable for d in declared.values() for s in d.subscriptions}
    assert len(durables) == sum(len(d.subscriptions) for d in declared.values()), "one durable per subscription"


def test_write_document_creates_the_folder(tmp_path):
    path = asyncapi.write_document(tmp_path / "docs" / "asyncapi.json")
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert json.loads(text)["asyncapi"] == "3.0.0"
