"""The AsyncAPI 3.0.0 document of the contract, generated from the message models.

Every subject of :data:`shared.contracts.subjects.INBOUND` and ``EVENTS`` becomes a
channel, the request-reply subject ``ct.q.appeal`` gets its reply, and the
dead-letter subjects ``ct.dlq.<service>.<subject>`` are documented with their
headers. Payload schemas are pydantic's JSON schemas (validation mode for what
coffeetime receives, serialization mode for what it sends), their ``$defs``
hoisted into ``components/schemas``.

``coffeetime docs`` (``make docs``) writes the document to ``docs/asyncapi.json``;
a unit test fails when the committed file is out of date.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.bus import Subscription
from shared.contracts import events as ev
from shared.contracts import inbound as inb
from shared.contracts import subjects as sj
from shared.contracts.subjects import subject_matches
from shared.settings import SERVICES, Settings

ASYNCAPI_VERSION = "3.0.0"
SCHEMA_REF = "#/components/schemas/{model}"
FALLBACK_VERSION = "0.1.0"
SERVER = "production"

SERVICE_ROLES: dict[str, str] = {
    "intake": "Owns the appeal record, its timeline, duplicate merging and the public status API "
              "(HTTP, NATS request-reply `ct.q.appeal`, Open311 GeoReport v2).",
    "dispatch": "Owns the routing rules, work orders and their lifecycle, and the unit work API.",
    "escalation": "Owns deadlines on the official working-day calendar, warnings, the escalation chain "
                  "and the monthly evaluation of units.",
    "notify": "Owns recipients, templates, channels (SMS, e-mail, WeCom), retries and the delivery log.",
}

# --- who sends and who receives what --------------------------------------------------
#
# Senders outside coffeetime are described here; which service consumes or publishes a
# subject is read from the services themselves (their declared subscriptions and
# publications), never typed a second time.

# inbound subject → (its external senders, the field holding the sender's id)
INBOUND_SENDERS: dict[str, tuple[str, str | None]] = {
    sj.IN_HOTLINE: ("the hotline system", "call_id"),
    sj.IN_APP: ("the app backend", "submission_id"),
    sj.IN_RECEPTION: ("the reception desk, chief representatives and tea talks", "record_id"),
    sj.IN_EVENT: ("coffee-event organisers", "event_id"),
    sj.IN_ORDER: ("handling units and the lead unit", "action_id"),
    sj.IN_FEEDBACK: ("the app, follow-up calls, third-party surveys and notify (ratings sent as SMS replies)",
                     "feedback_id"),
    sj.Q_APPEAL: ("the app backend", None),
}

_SPEC_SETTINGS = {"nats_url": "nats://declarations.invalid:4222", "database_url": "postgresql://declarations.invalid/ct"}


@dataclass(frozen=True)
class Declared:
    """What one service declared: its durable subscriptions, its responders and what it publishes."""

    subscriptions: tuple[Subscription, ...]
    responders: tuple[str, ...]
    publications: tuple[str, ...]


@lru_cache(maxsize=1)
def declarations() -> dict[str, Declared]:
    """Each service's declarations, read from the service objects that run (building one does no I/O)."""
    settings = Settings(**_SPEC_SETTINGS)
    found = {}
    for name in SERVICES:
        service = importlib.import_module(f"services.{name}.__main__").create_service(settings)
        found[name] = Declared(
            subscriptions=tuple(service.consumers.subscriptions),
            responders=tuple(str(sub.subject.broker_address) for sub in service.broker.subscribers),
            publications=tuple(service.publications.subjects),
        )
    return found


def _filter(subject: str) -> str:
    return sj.IN_ORDER_ALL if subject == sj.IN_ORDER else subject


def producers_of(subject: str) -> list[str]:
    """The services that publish ``subject``."""
    return [name for name, d in declarations().items() if _filter(subject) in map(_filter, d.publications)]


def producer_of(subject: str) -> str:
    """The one service that publishes the domain event ``subject``."""
    producers = producers_of(subject)
    if len(producers) != 1:
        raise KeyError(f"{subject} is published by {producers or 'no service'}: each event has one producer")
    return producers[0]


def subscriptions_of(subject: str) -> list[Subscription]:
    """The durable subscriptions that receive ``subject``, in the order of the service table."""
    pattern = _filter(subject)
    return [sub for d in declarations().values() for sub in d.subscriptions
            if subject_matches(sub.subject, pattern) or subject_matches(pattern, sub.subject)]


def consumers_of(subject: str) -> list[str]:
    """The services consuming ``subject`` (durably, or answering it as a responder)."""
    durable = {sub.service for sub in subscriptions_of(subject)}
    return [name for name, d in declarations().items() if name in durable or subject in d.responders]


DEAD_LETTER_HEADERS: dict[str, str] = {
    "Nats-Msg-Id": "`dlq-<durable consumer>-<stream sequence>`: the same failed delivery is stored once.",
    "Ct-Original-Subject": "The subject the message arrived on.",
    "Ct-Original-Msg-Id": "The original message's `Nats-Msg-Id` header (empty when it had none).",
    "Ct-Deliveries": "How many times it was delivered before it was dead-lettered (a decimal number).",
    "Ct-Error": "The last error, as the handler raised it (at most 500 characters).",
}


# --- names ------------------------------------------------------------------------------


_TOKEN_WORDS = {"in": "inbound", "q": "query"}


def channel_id(subject: str) -> str:
    """``ct.order.return_decided`` → ``orderReturnDecided``, ``ct.q.appeal`` → ``queryAppeal``.

    Parameters (``{unit_code}``) are left out of the name.
    """
    tokens = [_TOKEN_WORDS.get(t, t) for t in subject.split(".")[1:] if not t.startswith("{")]
    words = [w for token in tokens for w in token.split("_") if w]
    return words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:])


def _doc(model: type[BaseModel]) -> tuple[str, str]:
    """(summary, description) from a model's docstring, without the leading ```subject`:``."""
    text = (model.__doc__ or model.__name__).strip()
    text = re.sub(r"^`[^`]+`(?: \(request-reply\))?:\s*", "", text)
    first, _, rest = text.partition("\n")
    summary = first.strip()
    summary = summary[:1].upper() + summary[1:]
    return summary, (summary + ("\n\n" + " ".join(rest.split()) if rest.strip() else ""))


def _title(model: type[BaseModel]) -> str:
    """``OrderReturnDecided`` → ``Order return decided``."""
    words = re.findall(r"[A-Z][a-z0-9]*", model.__name__)
    return " ".join([words[0], *(w.lower() for w in words[1:])])


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path)}


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# --- the document -----------------------------------------------------------------------


def document_version() -> str:
    try:
        return importlib.metadata.version("coffeetime")
    except importlib.metadata.PackageNotFoundError:
        return FALLBACK_VERSION


def _info() -> dict[str, Any]:
    window_min = sj.STREAM_IN.duplicate_window_s // 60
    max_deliver = Settings.model_fields["max_deliver"].default
    streams = "\n".join(
        f"- `{s.name}` ({', '.join(f'`{p}`' for p in s.subjects)}): {s.description.lower()}, "
        f"kept {s.max_age_days} days."
        for s in sj.STREAMS
    )
    description = f"""\
The messaging contract of **coffeetime**, which runs the 企业咖啡时 (Enterprise Coffee Time) appeal
programme: the inbound subjects outside systems and handling units publish to (`ct.in.*`), the
status query (`ct.q.appeal`), the domain events the services publish (`ct.appeal.*`, `ct.order.*`,
`ct.deadline.*`, `ct.notify.*`) and the dead-letter subjects (`ct.dlq.*`). Generated from the
pydantic models in `shared/contracts/`; do not edit by hand (`make docs`).

## Rules of the contract

- **JSON, UTF-8.** Times are RFC 3339 with their UTC offset (`2026-11-26T09:30:00+08:00`);
  outbound times are given in +08:00.
- **Idempotency.** Every inbound message carries its sender's own id (`call_id`,
  `submission_id`, `record_id`, `event_id`, `action_id`, `feedback_id`) and sends the same id as
  the `Nats-Msg-Id` header. JetStream drops a repeat within its {window_min}-minute duplicate window
  and the services' unique keys in PostgreSQL make any later repeat harmless: publishing a message
  twice creates nothing twice.
- **Events are at least once.** A domain event is published from its producer's transactional outbox
  with `Nats-Msg-Id` = `event_id` (the outbox id); it may arrive more than once and consumers
  must be idempotent on `event_id`. Every event about an appeal carries `appeal_id`, `source_ref`
  (`<channel>:<source id>`) and `correlation_id`; work-order events add `order_id`, `unit_code`
  and the unit's name `unit`.
- **Compatibility.** Subjects and fields are stable. Changes only add optional fields; receivers
  ignore fields they do not know, so senders may send more. A breaking change gets a new subject
  with a version suffix.
- **Validation.** Every edge validates sizes, credit codes (GB 32100-2015 check character), phone
  formats and dates. An invalid message is never half-stored: it is answered with
  `ct.appeal.rejected` (or `ct.order.rejected` for a unit action) carrying field-level errors,
  acked and counted. A body that is not JSON is rejected the same way.
- **Failures.** A message is acked only after its transaction commits. One that keeps failing is
  dead-lettered after {max_deliver} deliveries to `ct.dlq.<service>.<original subject>`, counted and
  alerted on; it never blocks the messages behind it.
- **Least privilege.** Each service and each external client has its own NATS user limited to its
  subjects; a handling unit may publish only to `ct.in.order.<its unit_code>.>`.

## Streams

{streams}

`ct.q.appeal` is plain NATS request-reply and is never stored in a stream.
"""
    return {
        "title": "coffeetime",
        "version": document_version(),
        "description": description,
        "tags": [{"name": name, "description": role} for name, role in SERVICE_ROLES.items()],
    }


def _schemas() -> tuple[dict[type, dict[str, str]], dict[type, dict[str, str]], dict[str, Any]]:
    """The payload refs of inbound models, of outbound models, and every schema, keyed by name."""
    inbound = list(dict.fromkeys(sj.INBOUND.values()))
    outbound = list(dict.fromkeys([*sj.EVENTS.values(), ev.AppealStatus]))
    keys, top = models_json_schema(
        [(m, "validation") for m in inbound] + [(m, "serialization") for m in outbound],
        ref_template=SCHEMA_REF,
    )
    schemas = _hoist(top)
    return ({m: keys[(m, "validation")] for m in inbound}, {m: keys[(m, "serialization")] for m in outbound},
            schemas)


def _hoist(schema: dict[str, Any]) -> dict[str, Any]:
    """Every ``$defs`` entry, at any depth, moved up to one flat mapping; refs point at components."""
    found: dict[str, Any] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            for name, sub in node.pop("$defs", {}).items():
                found[name] = walk(sub)
            return {k: (_component_ref(v) if k == "$ref" else walk(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    rest = walk(schema)
    if rest:
        raise ValueError(f"unexpected top-level schema keys: {sorted(rest)}")
    return found


def _component_ref(ref: str) -> str:
    if ref.startswith("#/$defs/"):
        return SCHEMA_REF.format(model=ref.removeprefix("#/$defs/"))
    return ref


def _headers(description: str, msg_id: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {"Nats-Msg-Id": {"type": "string", "description": msg_id}},
        "required": ["Nats-Msg-Id"],
    }


def _message(model: type[BaseModel], payload: dict[str, str], headers: dict[str, Any] | None) -> dict[str, Any]:
    summary, description = _doc(model)
    message: dict[str, Any] = {
        "name": model.__name__,
        "title": _title(model),
        "summary": summary,
        "description": description,
        "contentType": "application/json",
        "payload": payload,
    }
    if headers:
        message["headers"] = headers
    if "correlation_id" in model.model_fields:
        message["correlationId"] = {
            "description": "Ties together everything caused by one inbound message.",
            "location": "$message.payload#/correlation_id",
        }
    return message


def build_document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of every subject, as a JSON-ready dict."""
    inbound_refs, outbound_refs, schemas = _schemas()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    def add_message(model: type[BaseModel], message: dict[str, Any]) -> str:
        name = model.__name__
        if name in messages:
            raise ValueError(f"{name} is the message of more than one subject")
        messages[name] = message
        return name

    def add_channel(cid: str, channel: dict[str, Any]) -> None:
        if cid in channels:
            raise ValueError(f"two channels are named {cid}")
        channels[cid] = channel

    # inbound: what coffeetime receives
    for subject, model in sj.INBOUND.items():
        if subject == sj.Q_APPEAL:
            continue  # request-reply: below
        senders, id_field = INBOUND_SENDERS[subject]
        consumer = _and(consumers_of(subject))
        durables = ", ".join(f"`{sub.durable}`" for sub in subscriptions_of(subject))
        cid = channel_id(subject)
        summary, _ = _doc(model)
        headers = _headers(
            f"Set by {senders}.",
            f"The sender's own id, the same as the payload's `{id_field}`. JetStream drops a repeat "
            f"within the duplicate window; {consumer}'s unique keys make any later repeat harmless.",
        )
        name = add_message(model, _message(model, inbound_refs[model], headers))
        stream = sj.stream_for(subject).name
        channel: dict[str, Any] = {
            "address": subject,
            "title": subject,
            "summary": summary,
            "description": f"Published by {senders}; consumed by {consumer} from the JetStream stream `{stream}`.",
            "messages": {name: _ref("components", "messages", name)},
            "x-stream": stream,
            "x-senders": senders,
            "x-consumers": consumers_of(subject),
        }
        if producers_of(subject):
            channel["x-producer"] = _and(producers_of(subject))
        if subject == sj.IN_ORDER:
            channel["parameters"] = {
                "unit_code": {
                    "description": "The acting unit's ASCII code from the routing configuration "
                                   "(`^[a-z][a-z0-9_]*$`, e.g. `traffic_police`); a unit's NATS user may publish "
                                   "only under its own code. The lead unit's own actions use the lead unit's code.",
                },
                "action": {
                    "description": f"What the unit does: {', '.join(f'`{a}`' for a in inb.UNIT_ACTIONS)}; "
                                   f"the lead unit also {', '.join(f'`{a}`' for a in inb.LEAD_ACTIONS)}. "
                                   "A refused or invalid action is answered with `ct.order.rejected`.",
                    "enum": list(get_args(inb.UnitActionName)),
                },
            }
        add_channel(cid, channel)
        operations[f"receive{model.__name__}"] = {
            "action": "receive",
            "channel": _ref("channels", cid),
            "messages": [_ref("channels", cid, "messages", name)],
            "title": f"{consumer} receives {subject}",
            "summary": f"{consumer.capitalize()} consumes {summary[:1].lower() + summary[1:]}",
            "description": f"The durable pull consumer {durables} of {consumer}, shared by its replicas. The message is acked "
                           f"after its transaction commits; a message that keeps failing is dead-lettered to "
                           f"`{sj.dead_letter_subject(consumer, subject)}`.",
            "tags": [{"name": c} for c in consumers_of(subject)],
            "x-consumers": consumers_of(subject),
        }
        for producer in producers_of(subject):
            operations[f"send{model.__name__}"] = {
                "action": "send",
                "channel": _ref("channels", cid),
                "messages": [_ref("channels", cid, "messages", name)],
                "title": f"{producer} publishes {subject}",
                "summary": f"{producer.capitalize()} publishes {summary[:1].lower() + summary[1:]}",
                "description": f"{producer.capitalize()} publishes it as any other sender does, through its "
                               f"transactional outbox, with `Nats-Msg-Id` = `{id_field}`.",
                "tags": [{"name": producer}],
                "x-producer": producer,
                "x-consumers": consumers_of(subject),
            }

    # the status query: request-reply on plain NATS
    query, reply = sj.INBOUND[sj.Q_APPEAL], ev.AppealStatus
    senders, _ = INBOUND_SENDERS[sj.Q_APPEAL]
    consumer = _and(consumers_of(sj.Q_APPEAL))
    qid, rid = channel_id(sj.Q_APPEAL), channel_id(sj.Q_APPEAL) + "Reply"
    qname = add_message(query, _message(query, inbound_refs[query], None))
    rname = add_message(reply, _message(reply, outbound_refs[reply], None))
    add_channel(qid, {
        "address": sj.Q_APPEAL,
        "title": sj.Q_APPEAL,
        "summary": _doc(query)[0],
        "description": f"Request-reply on plain NATS (no stream): {senders} sends the query with a reply subject; "
                       f"one {consumer} replica (queue group `{consumer}`) answers with the appeal's status.",
        "messages": {qname: _ref("components", "messages", qname)},
        "x-senders": senders,
        "x-consumers": consumers_of(sj.Q_APPEAL),
    })
    add_channel(rid, {
        "address": None,
        "title": f"{sj.Q_APPEAL} reply",
        "summary": "The requester's reply subject.",
        "description": "The reply goes to the reply subject of the request (the requester's inbox, `_INBOX.>` "
                       "by default); it is not known before the request is made.",
        "messages": {rname: _ref("components", "messages", rname)},
    })
    operations[f"receive{query.__name__}"] = {
        "action": "receive",
        "channel": _ref("channels", qid),
        "messages": [_ref("channels", qid, "messages", qname)],
        "title": f"{consumer} answers {sj.Q_APPEAL}",
        "summary": "Answer a status query with the appeal's status and timeline.",
        "description": "A query that is not valid (neither `appeal_id` nor `channel` + `source_id`) is answered "
                       "with `found: false` and `error`; an unknown appeal with `found: false`.",
        "reply": {
            "channel": _ref("channels", rid),
            "messages": [_ref("channels", rid, "messages", rname)],
        },
        "bindings": {"nats": {"queue": consumer, "bindingVersion": "0.1.0"}},
        "tags": [{"name": consumer}],
        "x-consumers": consumers_of(sj.Q_APPEAL),
    }

    # domain events: what coffeetime sends
    for subject, model in sj.EVENTS.items():
        producer, consumers = producer_of(subject), consumers_of(subject)
        cid = channel_id(subject)
        summary, _ = _doc(model)
        headers = _headers(f"Set by {producer}'s outbox relay.",
                           "The outbox id, the same as the payload's `event_id`: a relay that publishes the "
                           "event again after a crash publishes it under the same id.")
        name = add_message(model, _message(model, outbound_refs[model], headers))
        stream = sj.stream_for(subject).name
        heard_by = f"consumed by {_and(consumers)}" if consumers else "consumed by no coffeetime service"
        add_channel(cid, {
            "address": subject,
            "title": subject,
            "summary": summary,
            "description": f"Published by {producer}; {heard_by}. JetStream stream `{stream}`.",
            "messages": {name: _ref("components", "messages", name)},
            "x-stream": stream,
            "x-producer": producer,
            "x-consumers": consumers,
        })
        operations[f"send{model.__name__}"] = {
            "action": "send",
            "channel": _ref("channels", cid),
            "messages": [_ref("channels", cid, "messages", name)],
            "title": f"{producer} publishes {subject}",
            "summary": f"{producer.capitalize()} publishes: {summary[:1].lower() + summary[1:]}",
            "description": f"Staged in {producer}'s transactional outbox with the state change that caused it and "
                           f"relayed to JetStream after the commit. "
                           f"Consumers: {_and(consumers) if consumers else 'none'}.",
            "tags": [{"name": producer}],
            "x-producer": producer,
            "x-consumers": consumers,
        }

    # dead letters
    dlq_subject = f"{sj.DLQ_PREFIX}.{{service}}.{{subject}}"
    dlq_cid = "deadLetter"
    max_deliver = Settings.model_fields["max_deliver"].default
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "title": "Dead letter",
        "summary": "A message that kept failing, byte for byte as it arrived.",
        "description": f"A consumer dead-letters a message once it was delivered {max_deliver} times (`MAX_DELIVER`) "
                       "and its handler still failed, then terminates the original delivery. The body is the original "
                       "body, unchanged; the headers say where it came from and why it failed.",
        "contentType": "application/octet-stream",
        "payload": {
            "type": "string",
            "format": "binary",
            "description": "The original message body, unchanged (usually the JSON of the original subject's message).",
        },
        "headers": {
            "type": "object",
            "description": "Set by the consumer that gave up on the message.",
            "properties": {name: {"type": "string", "description": text} for name, text in DEAD_LETTER_HEADERS.items()},
            "required": list(DEAD_LETTER_HEADERS),
        },
    }
    add_channel(dlq_cid, {
        "address": dlq_subject,
        "title": dlq_subject,
        "summary": "Messages that kept failing, per consuming service and original subject.",
        "description": f"JetStream stream `{sj.STREAM_DLQ.name}`, kept {sj.STREAM_DLQ.max_age_days} days. Counted by "
                       "`coffeetime_dead_letters_total` and alerted on. To replay a message, publish its body to "
                       "`Ct-Original-Subject` with `Nats-Msg-Id` = `Ct-Original-Msg-Id`, after fixing the cause.",
        "messages": {"DeadLetter": _ref("components", "messages", "DeadLetter")},
        "parameters": {
            "service": {"description": "The service whose consumer gave up.", "enum": list(SERVICES)},
            "subject": {"description": "The subject the message arrived on, dots included "
                                       "(e.g. `ct.in.appeal.hotline` gives `ct.dlq.intake.ct.in.appeal.hotline`)."},
        },
        "x-stream": sj.STREAM_DLQ.name,
        "x-producer": "every service",
    })
    operations["sendDeadLetter"] = {
        "action": "send",
        "channel": _ref("channels", dlq_cid),
        "messages": [_ref("channels", dlq_cid, "messages", "DeadLetter")],
        "title": "a service dead-letters a message",
        "summary": "Any service moves a message that keeps failing out of the way.",
        "description": "Published by the consumer of any service (intake, dispatch, escalation, notify); no coffeetime "
                       "service consumes it. Operators inspect and replay dead letters.",
        "tags": [{"name": name} for name in SERVICES],
        "x-producer": "every service",
        "x-consumers": [],
    }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:coffeetime",
        "info": _info(),
        "defaultContentType": "application/json",
        "servers": {
            SERVER: {
                "host": "nats:4222",
                "protocol": "nats",
                "title": "NATS with JetStream",
                "description": "The production NATS cluster (`nats://nats:4222`), JetStream enabled. Each service and "
                               "each external client connects as its own user (deploy/nats/nats.conf).",
                "security": [_ref("components", "securitySchemes", "natsUser")],
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "natsUser": {
                    "type": "userPassword",
                    "description": "A NATS user and password per service and per external client; each user may "
                                   "publish and subscribe only to its own subjects.",
                },
            },
        },
    }


def render(document: dict[str, Any]) -> str:
    """Deterministic JSON: sorted keys, two-space indent, UTF-8 text as is, a trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_document(path: Path) -> Path:
    """Write the document to ``path`` (creating its folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(build_document()), encoding="utf-8")
    return path
