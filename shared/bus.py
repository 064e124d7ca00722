"""NATS JetStream plumbing: streams, durable pull consumers and the idempotent consumer pattern.

A service declares each subscription once, with :meth:`ConsumerGroup.subscribe`:
subject, batch handler, and what to do with an invalid message. From that one
declaration come the durable consumer, the parsing of every message into its
contract model (``shared.contracts.subjects.contract_for``), the metrics'
labels, the FastStream subscriber of the wiring ring (:meth:`wiring_broker`)
and the AsyncAPI document (``tools/asyncapi.py``). The handler gets the fetched
messages as :class:`Delivery` objects (``d.message`` is the model) and handles
them in one unit of work; the pattern around it:

- acks each message only after the handler returned (its transaction committed);
- if the batch fails, retries each message on its own, so one poison message
  cannot hold back the others;
- a message that still fails is NAKed with a growing delay, and once it was
  delivered ``max_deliver`` times it goes to ``ct.dlq.<service>.<subject>``, is
  counted, and is acked: never lost, never blocking;
- a domain event that does not fit its contract is dead-lettered at once
  (parsing is deterministic: a retry would fail the same way).

Replicas share work through one durable pull consumer per (service, subject).

Why our own fetch loop and not FastStream's subscriber (measured with
``python -m bench.consumers``, ``bench/results/consumers-20261202T183240Z.json``;
faststream 0.7.8, nats-py 2.16, 2 cores). FastStream's ``PullSub(batch=True)``
keeps fetching until the batch is full or its timeout T has passed, so below a
full batch per T every message waits for the window, and T trades latency
against idle polling:

============================  ==================  ===============  ===================
consumer                      lone message p50    p50 / p99 at     idle CPU, 20 idle
                                                  200 msg/s        consumers (client +
                                                                   nats-server), s/s
============================  ==================  ===============  ===================
this loop, ``fetch(200, 5)``  1.8 ms              2.5 / 54 ms      0.001 + 0.003
FastStream, T = 0.01 s        13.5 ms             10.7 / 44 ms     0.46 + 0.18
FastStream, T = 0.05 s        31 ms               31 / 64 ms       0.18 + 0.09
FastStream, T = 0.5 s         481 ms              283 / 683 ms     0.04 + 0.02
FastStream, T = 5 s           4,704 ms            537 / 1,119 ms   0.004 + 0.006
============================  ==================  ===============  ===================

At T of 0.05 s or less, 5-10 % of the messages at 200/s were fetched but never
handled until ``ack_wait`` ran out: nats-py's ``fetch`` can raise the built-in
``TimeoutError``, which FastStream's loop does not catch, so the consume task
dies with the batch it held. FastStream also has no per-message retry after a
failed batch. nats-py's ``fetch`` returns as soon as any message is there, so
this loop gets batches that grow with the load at no idle cost. What FastStream
does well stays FastStream's: the broker owns the process's one connection,
serves the request-reply responders (``ct.q.appeal``) with its Prometheus
middleware, and its ``TestNatsBroker`` drives these very handlers in memory
through :meth:`ConsumerGroup.wiring_broker`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import nats
import nats.errors
from faststream import Context
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.message import NatsMessage
from nats.aio.msg import Msg
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError
from pydantic import BaseModel, ValidationError

from shared import metrics
from shared.contracts.common import FieldError, field_errors, printable
from shared.contracts.inbound import UnitAction
from shared.contracts.subjects import (
    STREAMS,
    StreamDef,
    contract_for,
    contracts_under,
    dead_letter_subject,
    stream_for,
)

log = logging.getLogger("coffeetime.bus")
M = TypeVar("M", bound=BaseModel)


#: the subject tokens a templated inbound subject names (``ct.in.order.<unit_code>.<action>``): ASCII codes
_SUBJECT_TOKEN = re.compile(r"[a-z][a-z0-9_]{1,47}")


def parse_body(model: type[M], data: bytes) -> tuple[M | None, list[FieldError]]:
    """``data`` as a ``model``, or None and one error per field; never raises, whatever the bytes.

    The fast path is pydantic's own JSON reader. When it refuses the body as a
    whole, the reason is told apart for the sender: not UTF-8 (and where), nested
    too deeply, not JSON at all; a body that Python's reader still takes (a lone
    surrogate such as ``"\\ud800"``, which pydantic's reader refuses) is validated
    from there, so its error names the field.
    """
    try:
        return model.model_validate_json(data), []
    except ValidationError as exc:
        refused = next((e for e in exc.errors() if e["type"] == "json_invalid"), None)
        if refused is None:
            return None, field_errors(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. a validator's own bug: still a rejection, never a crash
        return None, [FieldError(field="body", message=f"could not be read ({type(exc).__name__})")]
    return None, _unreadable_body(model, data, str((refused.get("ctx") or {}).get("error", "")))


def _unreadable_body(model: type[BaseModel], data: bytes, why: str) -> list[FieldError]:
    """The field-level reason why pydantic's JSON reader refused ``data`` (``why``: its words; see :func:`parse_body`)."""
    if why.startswith("recursion limit"):
        return [FieldError(field="body", message=f"JSON nested too deeply ({why})")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [FieldError(field="body", message=f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}")]
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return [FieldError(field="body", message="not a JSON object")]
    try:
        model.model_validate(body)
    except ValidationError as exc:
        return field_errors(exc)
    except Exception as exc:  # noqa: BLE001
        return [FieldError(field="body", message=f"could not be read ({type(exc).__name__})")]
    # Python's reader took what pydantic's refused: not JSON as the contract means it (RFC 8259)
    return [FieldError(field="body", message=printable(f"not valid JSON ({why})", 500))]


def subject_errors(subject: str, model: type[BaseModel]) -> list[FieldError]:
    """The errors of a templated inbound subject's own tokens (``ct.in.order.<unit_code>.<action>``)."""
    if model is not UnitAction:
        return []
    tokens = subject.split(".")
    if len(tokens) != 5 or not _SUBJECT_TOKEN.fullmatch(tokens[3]):
        return [FieldError(field="subject", message=printable(
            f"{subject}: the unit code in ct.in.order.<unit_code>.<action> is lower-case ASCII "
            "(a letter, then letters, digits, _), 2 to 48 characters", 500))]
    return []


def parse_message(subject: str, data: bytes) -> tuple[Any, list[FieldError]]:
    """What the consumers do to every fetched message: its subject's contract model, or the errors of each field.

    Never raises: a body that is not UTF-8, not JSON, too deep or wrong in any field
    gives a non-empty list of :class:`FieldError` (``field`` ``body`` for the body as
    a whole, ``subject`` for a subject no contract covers).
    """
    try:
        model = contract_for(subject)
    except KeyError:
        return None, [FieldError(field="subject", message=printable(f"no contract for {subject}", 500))]
    parsed, errors = parse_body(model, data)
    errors = subject_errors(subject, model) + errors
    return (None if errors else parsed), errors


@dataclass
class Delivery:
    """One fetched JetStream message, parsed into its contract model by the consumer before any handler.

    ``subject`` and ``msg_id`` are kept printable (:func:`~shared.contracts.common.printable`): they are
    echoed in rejections, inbox keys and correlation ids, which PostgreSQL and JSON must always take.
    """

    raw: Msg
    subject: str
    data: bytes
    msg_id: str | None
    num_delivered: int
    stream_seq: int
    parsed: Any = None
    errors: list[FieldError] = field(default_factory=list)

    @classmethod
    def of(cls, msg: Msg) -> Delivery:
        meta = msg.metadata
        msg_id = (msg.headers or {}).get("Nats-Msg-Id")
        return cls(raw=msg, subject=printable(msg.subject, 1000), data=msg.data,
                   msg_id=printable(msg_id, 200) if msg_id is not None else None,
                   num_delivered=meta.num_delivered, stream_seq=meta.sequence.stream)

    @property
    def message(self) -> Any:
        """The contract model of this message (None when it failed validation: see ``errors``)."""
        return self.parsed

    @property
    def key(self) -> str:
        """A key unique to this stored message, for an inbox of messages that carry no id of their own."""
        return f"{self.subject}#{self.stream_seq}"

    def parse(self, model: type[M]) -> M | None:
        """Validate the body against ``model``; on failure keep field errors and return None."""
        self.parsed, self.errors = parse_body(model, self.data)
        return self.parsed

    def json(self) -> Any:
        return json.loads(self.data)

    def readable_field(self, name: str) -> str | None:
        """A field read from a body that may be invalid, for error reports: printable, at most 160 characters."""
        try:
            body = json.loads(self.data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        value = body.get(name) if isinstance(body, dict) else None
        if value is None or isinstance(value, (dict, list)):
            return None
        return printable(str(value)[:160])


BatchHandler = Callable[[list[Delivery]], Awaitable[None]]


#: the stream fields coffeetime defines (shared/contracts/subjects.py); every other field (limits such as
#: max_msgs or max_bytes, placement, replicas above STREAM_REPLICAS...) is the operator's and start-up keeps it
OWNED_STREAM_FIELDS = ("subjects", "description", "retention", "storage", "max_age", "duplicate_window")


class StreamsNotManaged(RuntimeError):
    """A stream is missing or lacks a subject, and this NATS user may not fix it (``coffeetime migrate`` as admin)."""


def stream_config(s: StreamDef, replicas: int = 1, existing: StreamConfig | None = None) -> StreamConfig:
    """The configuration start-up wants for ``s``: the code's fields over what the server holds.

    Replicas are ``replicas`` on a new stream and never fewer than the server's on an
    existing one, so an operator's change to three survives every start.
    """
    wanted = StreamConfig(
        name=s.name, subjects=list(s.subjects), description=s.description,
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
        max_age=s.max_age_days * 86400, duplicate_window=s.duplicate_window_s, num_replicas=replicas,
    )
    if existing is None:
        return wanted
    return dataclasses.replace(existing, **{f: getattr(wanted, f) for f in OWNED_STREAM_FIELDS},
                               num_replicas=max(existing.num_replicas or 1, replicas))


def stream_changes(existing: StreamConfig, wanted: StreamConfig) -> dict[str, tuple[Any, Any]]:
    """The fields ``wanted`` changes on ``existing`` (field → (now, wanted)); empty when nothing is to update."""
    return {f: (getattr(existing, f), getattr(wanted, f)) for f in (*OWNED_STREAM_FIELDS, "num_replicas")
            if getattr(existing, f) != getattr(wanted, f)}


async def ensure_streams(js, streams: tuple[StreamDef, ...] = STREAMS, replicas: int = 1) -> None:
    """Create the streams, or bring their subjects and limits up to date. Safe with replicas.

    A stream already as wanted is only read (``$JS.API.STREAM.INFO``), so a service's
    NATS user needs no update permission (deploy/nats/nats.conf). When an update is
    needed and refused, start-up goes on if the stream still stores every subject
    (the admin applies the rest with ``coffeetime migrate``) and stops otherwise.
    """
    for s in streams:
        try:
            info = await js.stream_info(s.name)
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise StreamsNotManaged(f"stream {s.name} could not be read (no $JS.API.STREAM.INFO.{s.name} "
                                    "permission, or no answer)") from exc
        except NotFoundError:
            try:
                await js.add_stream(stream_config(s, replicas))
                continue
            except BadRequestError:
                info = await js.stream_info(s.name)  # another replica created it meanwhile
            except (TimeoutError, nats.errors.TimeoutError) as exc:
                raise StreamsNotManaged(
                    f"stream {s.name} is missing and could not be created (no $JS.API.STREAM.CREATE.{s.name} "
                    "permission, or no answer): run `coffeetime migrate` as the NATS admin user") from exc
        wanted = stream_config(s, replicas, info.config)
        changes = stream_changes(info.config, wanted)
        if not changes:
            continue
        try:
            await js.update_stream(wanted)
            log.info("stream updated", extra={"stream": s.name, "changes": sorted(changes)})
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            if not set(s.subjects) <= set(info.config.subjects or ()):
                raise StreamsNotManaged(
                    f"stream {s.name} lacks subjects {sorted(set(s.subjects) - set(info.config.subjects or ()))} "
                    "and this NATS user may not update it: run `coffeetime migrate` as the NATS admin user") from exc
            log.warning("stream differs from its definition and this NATS user may not update it; "
                        "run `coffeetime migrate` as the NATS admin user",
                        extra={"stream": s.name, "changes": {k: [str(v) for v in pair] for k, pair in changes.items()}})


async def ensure_consumer(js, stream: str, durable: str, subject: str, max_deliver: int, ack_wait: float) -> None:
    """Create the durable pull consumer, or update its limits (nats-py binds without updating)."""
    config = ConsumerConfig(
        durable_name=durable, filter_subject=subject, ack_policy=JsAckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL, ack_wait=ack_wait,
        # a backstop: the pattern dead-letters at max_deliver; the server never gives up first
        max_deliver=max_deliver + 3, max_ack_pending=20_000,
    )
    try:
        await js.add_consumer(stream, config)
    except BadRequestError as exc:
        log.warning("consumer exists with other settings; keeping them",
                    extra={"consumer": durable, "error": str(exc)})


class InvalidMessage(ValueError):
    """A message that does not fit its contract; raised for subjects whose invalid messages are dead-lettered."""


@dataclass(frozen=True)
class Subscription:
    """One declared subscription: everything about a consumer is read from here.

    The consumer loop, the metrics' labels and the AsyncAPI document
    (``tools/asyncapi.py``) all come from this one declaration.
    """

    service: str
    subject: str
    durable: str
    stream: str
    handler: BatchHandler
    #: "reject": the handler sees invalid messages (with field errors) and answers them;
    #: "dead_letter": an invalid message goes straight to the dead-letter subject (a producer's bug)
    invalid: Literal["reject", "dead_letter"] = "dead_letter"
    summary: str = ""

    @property
    def contracts(self) -> dict[str, type[BaseModel]]:
        """The contract model of each subject this subscription receives."""
        return contracts_under(self.subject)


class ConsumerGroup:
    """The subscriptions of one service, with the idempotent consumer pattern around each.

    Each subscription is a loop over a durable pull consumer: ``fetch`` returns as
    soon as messages are available (up to ``batch_size``), so batches grow with the
    load and an idle consumer costs one long poll every few seconds.
    """

    def __init__(self, service: str, broker: NatsBroker, *, batch_size: int = 200, fetch_timeout: float = 5.0,
                 max_deliver: int = 5, ack_wait: float = 30.0, backoff: list[float] | None = None) -> None:
        self.service = service
        self.broker = broker
        self.batch_size = batch_size
        self.fetch_timeout = fetch_timeout
        self.max_deliver = max_deliver
        self.ack_wait = ack_wait
        self.backoff = backoff or [1, 5, 15, 60]
        self.subscriptions: list[Subscription] = []
        self._loops: list[asyncio.Task] = []
        self._pull_subs: list = []
        self._in_flight: set[asyncio.Task] = set()
        self._stopping = False
        self.handled = 0  # messages this process acked, for tests and logs

    def durable_name(self, subject: str) -> str:
        return f"{self.service}-" + subject.replace(".", "_").replace("*", "any").replace(">", "all")

    def subscribe(self, subject: str, handler: BatchHandler, *, invalid: Literal["reject", "dead_letter"] = "dead_letter",
                  durable: str | None = None) -> Subscription:
        """Declare ``handler`` for ``subject`` on a durable pull consumer shared by all replicas.

        Every message is parsed into its contract model (``shared.contracts.subjects``)
        before the handler sees it.
        """
        if not contracts_under(subject):
            raise KeyError(f"{self.service}: no contract covers {subject}")
        if any(s.subject == subject for s in self.subscriptions):
            raise ValueError(f"{self.service} subscribes to {subject} twice")
        doc = (getattr(handler, "__doc__", None) or "").strip().splitlines()
        sub = Subscription(self.service, subject, durable or self.durable_name(subject), stream_for(subject).name,
                           handler, invalid, doc[0] if doc else "")
        self.subscriptions.append(sub)
        return sub

    def wiring_broker(self) -> NatsBroker:
        """Every subscription as a FastStream batch subscriber, on a broker of its own that production never starts.

        ``TestNatsBroker(group.wiring_broker())`` then drives the very handlers
        of this group in memory, through the same parsing, batch and retry code
        as the real consumers (:meth:`_handle`): the wiring ring of the tests.
        It proves routing and parsing, not delivery (STACK-NOTES.md, Testing).
        """
        broker = NatsBroker()
        for sub in self.subscriptions:
            self._bridge(broker, sub)
        return broker

    def _bridge(self, broker: NatsBroker, sub: Subscription) -> None:
        sequence = itertools.count(1)

        @broker.subscriber(sub.subject, stream=JStream(sub.stream, declare=False), durable=sub.durable,
                           pull_sub=PullSub(batch_size=self.batch_size, batch=True), ack_policy=AckPolicy.MANUAL,
                           title=f"{self.service}:{sub.subject}", description=sub.summary)
        async def bridged(body: list[Any], message: NatsMessage = Context("message")) -> None:  # noqa: ARG001
            await self._handle(sub, [
                Delivery(raw=m, subject=m.subject, data=m.data, msg_id=(m.headers or {}).get("Nats-Msg-Id"),
                         num_delivered=1, stream_seq=next(sequence))
                for m in message.raw_message])

    async def declare(self, js) -> None:
        for sub in self.subscriptions:
            await ensure_consumer(js, sub.stream, sub.durable, sub.subject, self.max_deliver, self.ack_wait)

    async def start(self, js) -> None:
        self._stopping = False
        for sub in self.subscriptions:
            psub = await js.pull_subscribe_bind(durable=sub.durable, stream=sub.stream)
            self._pull_subs.append(psub)
            self._loops.append(asyncio.create_task(self._consume(sub, psub), name=f"consume-{sub.durable}"))

    async def stop(self, timeout: float = 15.0) -> None:
        """Stop fetching; let the batches being handled finish (and ack) first."""
        self._stopping = True
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=timeout)
        # unacked fetched messages are redelivered after ack_wait; nothing is lost
        for psub in self._pull_subs:
            try:
                await psub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may be gone already
                pass
        self._pull_subs.clear()

    async def _consume(self, sub: Subscription, psub) -> None:
        while not self._stopping:
            try:
                msgs = await psub.fetch(self.batch_size, timeout=self.fetch_timeout)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - connection trouble: nats-py reconnects, we retry
                log.warning("fetch failed", extra={"consumer": sub.durable, "error": repr(exc)})
                await asyncio.sleep(0.5)
                continue
            # handled in its own task so that a stop does not cut a batch in half
            task = asyncio.create_task(self._handle(sub, [Delivery.of(m) for m in msgs]))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. the dead-letter publish failed: never stop consuming
                log.error("batch handling failed; its unacked messages will be redelivered",
                          extra={"consumer": sub.durable, "error": repr(exc)})

    async def _handle(self, sub: Subscription, batch: list[Delivery]) -> None:
        started = time.perf_counter()
        for d in batch:
            if d.num_delivered > 1:
                metrics.REDELIVERIES.labels(self.service, sub.subject).inc()
        batch = await self._parse(sub, batch)
        if not batch:
            return
        try:
            await sub.handler(batch)
        except Exception as exc:  # noqa: BLE001 - isolate the failing message below
            if len(batch) == 1:
                await self._failed(sub, batch[0], exc)
            else:
                log.warning("batch failed; handling its messages one by one",
                            extra={"subject": sub.subject, "size": len(batch), "error": repr(exc)})
                for d in batch:
                    try:
                        await sub.handler([d])
                    except Exception as one_exc:  # noqa: BLE001
                        await self._failed(sub, d, one_exc)
                    else:
                        await d.raw.ack()
                        self.handled += 1
                        metrics.MESSAGES.labels(self.service, sub.subject, "ok").inc()
        else:
            for d in batch:
                await d.raw.ack()
            self.handled += len(batch)
            metrics.MESSAGES.labels(self.service, sub.subject, "ok").inc(len(batch))
        metrics.HANDLER_SECONDS.labels(self.service, sub.subject).observe(time.perf_counter() - started)

    async def _parse(self, sub: Subscription, batch: list[Delivery]) -> list[Delivery]:
        """Each message into its contract model; what cannot be parsed is dead-lettered at once where declared so.

        Parsing is deterministic: retrying an invalid domain event would fail the same way.
        """
        kept = []
        for d in batch:
            d.parsed, d.errors = parse_message(d.subject, d.data)
            if d.parsed is None and sub.invalid == "dead_letter":
                await self.dead_letter(sub, d, InvalidMessage(
                    f"{d.subject}: " + "; ".join(f"{e.field}: {e.message}" for e in d.errors)))
            else:
                kept.append(d)
        return kept

    async def _failed(self, sub: Subscription, d: Delivery, exc: BaseException) -> None:
        if d.num_delivered >= self.max_deliver:
            await self.dead_letter(sub, d, exc)
            return
        delay = self.backoff[min(d.num_delivered - 1, len(self.backoff) - 1)]
        log.warning("handler failed; message will be redelivered",
                    extra={"subject": d.subject, "delivery": d.num_delivered, "delay_s": delay, "error": repr(exc)})
        metrics.MESSAGES.labels(self.service, sub.subject, "retried").inc()
        await d.raw.nak(delay=delay)

    async def dead_letter(self, sub: Subscription, d: Delivery, exc: BaseException) -> None:
        headers = {
            "Nats-Msg-Id": f"dlq-{sub.durable}-{d.stream_seq}",
            "Ct-Original-Subject": d.subject,
            "Ct-Original-Msg-Id": d.msg_id or "",
            "Ct-Deliveries": str(d.num_delivered),
            "Ct-Error": repr(exc)[:500],
        }
        await self.broker.publish(d.data, dead_letter_subject(self.service, d.subject), headers=headers,
                                  stream=stream_for(dead_letter_subject(self.service, d.subject)).name)
        await d.raw.term()
        metrics.DEAD_LETTERS.labels(self.service, sub.subject).inc()
        metrics.MESSAGES.labels(self.service, sub.subject, "dead_lettered").inc()
        log.error("message dead-lettered after %d deliveries", d.num_delivered,
                  extra={"subject": d.subject, "msg_id": d.msg_id, "error": repr(exc)})


async def connect(url: str, name: str, **options: Any) -> nats.NATS:
    """A plain nats-py connection (for tools, tests and the benchmark).

    ``options`` are passed on to ``nats.connect``: ``Settings.nats_connect_options()``
    gives the user, its password or creds and its inbox prefix.
    """
    return await nats.connect(url.split(","), name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                              **options)


def broker_options(options: dict[str, Any]) -> dict[str, Any]:
    """``nats.connect`` options (``Settings.nats_connect_options()``) as ``NatsBroker`` arguments.

    FastStream takes the user and password, or the creds file, as ``security``.
    """
    from faststream.nats.security import NatsCredentials, NatsUserPassword

    out: dict[str, Any] = {}
    if "inbox_prefix" in options:
        out["inbox_prefix"] = options["inbox_prefix"]
    if "user_credentials" in options:
        out["security"] = NatsCredentials(options["user_credentials"])
    elif "user" in options:
        out["security"] = NatsUserPassword(options["user"], options.get("password", ""))
    return out
