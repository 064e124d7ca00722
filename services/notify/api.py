"""Notify's HTTP API: SMS replies from the gateway, and an appeal's notifications with their delivery log.

Every route answers a response model; errors are problem+json (``shared.http``): 404
for a phone never invited to rate or an unknown notification, 422 for bad input.
An appeal's notifications come a page at a time, with a cursor.

``POST /sms/inbound`` takes only requests the gateway signed (``shared.access``: HMAC-SHA256
of timestamp, nonce and raw body with ``SMS_INBOUND_SECRET``): a forged or stale one is a
401, a replayed one (its nonce seen, kept in ``notify.inbound_nonces``) a 409; each is
counted in ``coffeetime_http_refused_total`` and changes nothing. The notification routes
need a read API key (``X-API-Key``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.notify import store, use_cases
from services.notify.domain import mask_address
from services.notify.store import ListPosition
from services.notify.use_cases import UNKNOWN_PHONE_RULE, SmsReply, SmsReplyResult
from shared.access import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReadKeys,
    signature_problem,
    sms_inbound_secret,
)
from shared.contracts.common import FieldError, Phone, Rfc3339, mask_name
from shared.http import (
    CURSOR,
    LIMIT,
    READ_KEY_REFUSED,
    REFUSED,
    Page,
    ProblemError,
    decode_cursor,
    page_of,
    problems,
    read_key_required,
    refuse,
)
from shared.service import Service

SMS_INBOUND = "/sms/inbound"
SIGNATURE_REFUSALS = {
    "not_configured": "SMS_INBOUND_SECRET is not set: inbound SMS are refused",
    "missing_signature": f"{TIMESTAMP_HEADER}, {NONCE_HEADER} and {SIGNATURE_HEADER} required",
    "bad_signature": "the signature does not match the body",
    "stale": "the signed timestamp is outside the replay window",
}
REPLAYED = "replayed"


class InboundSms(BaseModel):
    """An SMS received by the gateway (上行短信), as the gateway posts it."""

    model_config = ConfigDict(
        populate_by_name=True, extra="ignore", str_strip_whitespace=True,
        json_schema_extra={"examples": [{"id": "MO-20261126-000042", "from": "13912345678", "text": "3",
                                         "received_at": "2026-11-26T10:05:00+08:00"}]},
    )
    id: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9._:\-]+$",
                    description="The gateway's id of the received message; a repeated id is handled once.")
    from_: Phone = Field(alias="from", description="The sender's phone (mainland mobile, landline or 400/800 number).")
    text: str = Field(max_length=1000, description="The reply: `1` satisfied, `2` basically satisfied, "
                                                   "`3` unsatisfied, or the words (满意, 基本满意, 不满意).")
    received_at: Rfc3339 | None = Field(None, description="When the gateway received it, RFC 3339 with offset.")


class AttemptView(BaseModel):
    """One delivery attempt of a notification."""

    attempt: int = Field(description="The attempt's number (a gap: an attempt cut short by a crash).")
    at: datetime = Field(description="When its outcome was recorded.")
    outcome: str = Field(description="delivered, retried or failed; sending (marked before the send, no outcome yet) "
                                     "or unknown (cut short by a crash or a lost database: sent again, counted).")
    error: str | None = Field(None, description="What went wrong.")
    duration_ms: int = Field(description="How long the channel took.")


class NotificationView(BaseModel):
    """One message: to whom (masked), on which channel, in which words, and how its delivery went."""

    notification_id: str = Field(description="Stable id of (cause event, recipient, channel); the SMS gateway's `id`.")
    cause_subject: str = Field(description="The event that caused it.")
    cause_event_id: str = Field(description="That event's id.")
    appeal_id: str | None = Field(None, description="The appeal.")
    channel: str = Field(description="sms, email or wecom.")
    recipient: str = Field(description="The address, masked.")
    recipient_name: str = Field(description="The recipient's name, masked.")
    recipient_role: str = Field(
        description="enterprise, liaisons, unit_head, lead_unit, district_leader or supervision_office.")
    template: str = Field(description="The template used.")
    lang: str = Field(description="zh or en.")
    text: str = Field(description="The message as sent.")
    subject: str | None = Field(None, description="E-mail subject.")
    status: str = Field(description="pending, delivered or failed.")
    attempts: int = Field(description="Attempts with a known outcome.")
    not_before: datetime = Field(description="Not sent earlier (quiet hours).")
    next_attempt_at: datetime | None = Field(None, description="When the next attempt is due (pending only).")
    last_error: str | None = Field(None, description="The last error.")
    delivered_at: datetime | None = Field(None, description="When the channel accepted it.")
    failed_at: datetime | None = Field(None, description="When it was given up.")
    created_at: datetime = Field(description="When it was planned.")
    delivery_attempts: list[AttemptView] | None = Field(None, description="Every attempt (single notification only).")

    @classmethod
    def of(cls, row, attempts=None) -> NotificationView:
        """The view of a stored notification (and of its attempts, for a single one); addresses masked."""
        return cls(
            notification_id=row["notification_id"], cause_subject=row["cause_subject"],
            cause_event_id=row["cause_event_id"], appeal_id=row["appeal_id"], channel=row["channel"],
            recipient=mask_address(row["channel"], row["address"]),
            recipient_name=mask_name(row["recipient_name"]) if row["recipient_name"] else "",
            recipient_role=row["recipient_role"], template=row["template"], lang=row["lang"], text=row["text"],
            subject=row["subject"], status=row["status"], attempts=row["attempts"], not_before=row["not_before"],
            next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
            last_error=row["last_error"], delivered_at=row["delivered_at"], failed_at=row["failed_at"],
            created_at=row["created_at"],
            delivery_attempts=[AttemptView(**dict(a)) for a in attempts] if attempts is not None else None,
        )


SMS_INBOUND_DESCRIPTION = """\
The SMS gateway posts every reply it receives here. The reply is read as a rating
(`1` 满意 satisfied, `2` 基本满意 basically satisfied, `3` 不满意 unsatisfied, or the
words) of the **latest rating invitation delivered to the sender's phone**, and
sent on as `ct.in.feedback` (`feedback_id` = `sms-<id>`, `via` = `sms`, `comment` =
the text) through notify's outbox. Dispatch closes or reopens the appeal.

- `200` `{"accepted": true, ...}`: the rating was taken.
- `200` `{"accepted": false, "reason": ...}`: the text is not a rating (or is ambiguous);
  nothing is sent on.
- `404` (problem+json, `reason` `unknown_phone`): no rating invitation was ever delivered
  to this phone.
- A repeated `id` changes nothing and gets the first answer again with `"duplicate": true`.

**Signed by the gateway.** Every post carries `X-Ct-Timestamp` (Unix seconds), `X-Ct-Nonce`
(16-64 of `A-Z a-z 0-9 _ -`, new for every post, retries included) and
`X-Ct-Signature: sha256=<hex>`, the HMAC-SHA256 with the shared secret (`SMS_INBOUND_SECRET`)
of `<timestamp>.<nonce>.` followed by the raw body, byte for byte.

- `401` (problem+json, `reason` `missing_signature`, `bad_signature`, `stale` (the timestamp is more
  than `SMS_INBOUND_WINDOW_S`, default 300 s, from now) or `not_configured`): nothing read, nothing sent on.
- `409` (`reason` `replayed`): this nonce was received before; nothing changes. A gateway that retries
  signs the post again; the repeated `id` then gets its first answer.

Refusals are counted in `coffeetime_http_refused_total{service="notify",endpoint="/sms/inbound",reason}`.
"""


def _cursor_of(view: NotificationView) -> dict:
    """The keyset position of a listed notification: the list's sort key."""
    return {"created_at": view.created_at.isoformat(), "cause_subject": view.cause_subject,
            "channel": view.channel, "notification_id": view.notification_id}


def _position(cursor: str | None) -> ListPosition | None:
    """The keyset position of a cursor of this list, or a 422 problem."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    try:
        return ListPosition(datetime.fromisoformat(position["created_at"]), str(position["cause_subject"]),
                            str(position["channel"]), str(position["notification_id"]))
    except (KeyError, TypeError, ValueError):
        raise ProblemError(422, "invalid cursor", errors=[
            FieldError(field="cursor", message="not a cursor of this list")]) from None


def register(service: Service) -> None:
    """Add notify's routes to the service's HTTP app."""
    router = APIRouter(tags=["notifications"])
    secret = sms_inbound_secret(service.settings)
    window = service.settings.sms_inbound_window_s
    keys = ReadKeys.of(service.settings)
    for reason in (*SIGNATURE_REFUSALS, REPLAYED):
        REFUSED.labels(service.name, SMS_INBOUND, reason)  # exported at 0 from the start

    async def signed_by_gateway(
        request: Request,
        timestamp: str | None = Header(None, alias=TIMESTAMP_HEADER, description="Unix seconds of the signature."),
        nonce: str | None = Header(None, alias=NONCE_HEADER, description="New for every post (16-64 characters)."),
        signature: str | None = Header(None, alias=SIGNATURE_HEADER,
                                       description="sha256=<hex>: HMAC-SHA256 of `<timestamp>.<nonce>.` + body."),
    ) -> None:
        """Only a request the gateway signed, within the window, never seen before, gets through."""
        now = time.time()
        reason = "not_configured" if secret is None else signature_problem(
            secret, await request.body(), timestamp, nonce, signature, now, window)
        if reason:
            raise refuse(service.name, SMS_INBOUND, reason, 401, SIGNATURE_REFUSALS[reason],
                         {"WWW-Authenticate": SIGNATURE_HEADER})
        assert timestamp is not None and nonce is not None
        async with service.pool.acquire() as conn:
            fresh = await store.remember_nonce(conn, nonce, datetime.fromtimestamp(int(timestamp), UTC),
                                               datetime.fromtimestamp(now - 2 * window, UTC))
        if not fresh:
            raise refuse(service.name, SMS_INBOUND, REPLAYED, 409, "this signed request was received before")

    @router.post(
        SMS_INBOUND, response_model=SmsReplyResult, summary="Receive an SMS reply (a rating)",
        description=SMS_INBOUND_DESCRIPTION, dependencies=[Depends(signed_by_gateway)],
        responses=problems(401, 404, 409, 422, d401="Not signed by the gateway, or stale",
                           d409="Replayed: this signed request was received before"),
    )
    async def sms_inbound(message: InboundSms) -> SmsReplyResult:
        answer = await use_cases.receive_sms_reply(service.unit_of_work(), SmsReply(
            message.id, message.from_, message.text, message.received_at))
        if answer.unknown_phone:
            raise ProblemError(404, answer.result.reason or use_cases.UNKNOWN_PHONE, reason="unknown_phone",
                               rule=UNKNOWN_PHONE_RULE)
        return answer.result

    @router.get("/notifications", response_model=Page[NotificationView],
                responses=problems(401, 422, d401=READ_KEY_REFUSED),
                summary="An appeal's notifications, a page at a time, in the order they were planned",
                dependencies=[read_key_required(service.name, keys, "/notifications")])
    async def list_notifications(
        appeal_id: str = Query(..., min_length=1, max_length=40, description="The appeal id, as in the receipt."),
        limit: int = LIMIT, cursor: str | None = CURSOR,
    ) -> Page[NotificationView]:
        rows = await use_cases.notifications_page(service.unit_of_work(), appeal_id, limit, _position(cursor))
        return page_of([NotificationView.of(r) for r in rows], limit, _cursor_of)

    @router.get("/notifications/{notification_id}", response_model=NotificationView,
                responses=problems(401, 404, d401=READ_KEY_REFUSED), summary="One notification with every delivery attempt",
                dependencies=[read_key_required(service.name, keys, "/notifications/{notification_id}")])
    async def get_notification(notification_id: str) -> NotificationView:
        found = await use_cases.notification_detail(service.unit_of_work(), notification_id)
        if found is None:
            raise ProblemError(404, f"没有该通知 / no notification {notification_id}", reason="unknown_notification")
        row, attempts = found
        return NotificationView.of(row, attempts)

    service.http.include_router(router)
