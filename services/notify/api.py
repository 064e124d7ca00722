"""Notify's HTTP API: SMS replies from the gateway, and an appeal's notifications with their delivery log."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.notify import handlers, store
from services.notify.domain import mask_address
from shared.contracts.common import Phone, Rfc3339, mask_name
from shared.service import Service


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
    attempt: int = Field(description="The attempt's number (a gap: an attempt cut short by a crash).")
    at: datetime = Field(description="When its outcome was recorded.")
    outcome: str = Field(description="delivered, retried or failed.")
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
- `404`: no rating invitation was ever delivered to this phone.
- A repeated `id` changes nothing and gets the first answer again with `"duplicate": true`.
"""


def register(service: Service) -> None:
    router = APIRouter(tags=["notifications"])

    @router.post(
        "/sms/inbound", response_model=handlers.SmsReplyResult, summary="Receive an SMS reply (a rating)",
        description=SMS_INBOUND_DESCRIPTION,
        responses={404: {"model": handlers.SmsReplyResult,
                         "description": "No rating invitation was sent to this phone."}},
    )
    async def sms_inbound(message: InboundSms, response: Response) -> handlers.SmsReplyResult:
        status, result = await handlers.receive_sms_reply(service, message.id, message.from_, message.text,
                                                          message.received_at)
        if status != 200:
            return JSONResponse(status_code=status, content=result.model_dump(mode="json"))
        response.status_code = status
        return result

    @router.get("/notifications", response_model=list[NotificationView], summary="An appeal's notifications")
    async def list_notifications(appeal_id: str = Query(..., min_length=1, max_length=40,
                                                        description="The appeal id, as in the receipt.")):
        async with service.pool.acquire() as conn:
            rows = await store.notifications_of(conn, appeal_id)
        return [NotificationView.of(r) for r in rows]

    @router.get("/notifications/{notification_id}", response_model=NotificationView,
                summary="One notification with every delivery attempt")
    async def get_notification(notification_id: str) -> NotificationView:
        async with service.pool.acquire() as conn:
            row = await store.notification(conn, notification_id)
            if row is None:
                raise HTTPException(404, detail=f"没有该通知 / no notification {notification_id}")
            attempts = await store.attempts_of(conn, notification_id)
        return NotificationView.of(row, attempts)

    service.http.include_router(router)
