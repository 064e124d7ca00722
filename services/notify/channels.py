"""Channel clients: SMS over an HTTP gateway, e-mail over SMTP, WeCom group-robot webhooks.

Each client has ``async def send(message) -> None`` and raises :class:`DeliveryError`
on failure, saying whether a retry may help. A message is anything with
``notification_id``, ``address``, ``text`` and ``subject`` (a
:class:`~services.notify.domain.PlannedNotification` or an :class:`OutboundMessage`).
The notification id travels with the message (the SMS gateway's ``id``, the
e-mail's ``Message-ID``), so a retry after a lost answer is harmless downstream.
"""

from __future__ import annotations

import asyncio
import logging
import random
import smtplib
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol

import httpx

from services.notify.domain import DeliveryPolicy, mask_address

log = logging.getLogger("coffeetime.notify.channels")

WECOM_MAX_BYTES = 2048  # a text message's content limit on WeCom group robots
# WeCom errcodes worth retrying: -1 system busy, 45009 / 45033 rate or concurrency limits
WECOM_RETRYABLE_ERRCODES = frozenset({-1, 45009, 45033})


class DeliveryError(Exception):
    """A channel did not accept a message; ``retryable`` says whether trying again may help."""

    def __init__(self, reason: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.attempts = 0  # set by send_with_retries

    def __repr__(self) -> str:
        return f"DeliveryError({self.reason!r}, retryable={self.retryable}, status={self.status})"


class Outbound(Protocol):
    """What a channel needs of a message."""

    @property
    def notification_id(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def subject(self) -> str | None: ...


@dataclass(frozen=True)
class OutboundMessage:
    """A message to send: its stable id, the address (phone, e-mail, webhook URL), the text and an e-mail subject."""

    notification_id: str
    address: str
    text: str
    subject: str | None = None


class Channel(Protocol):
    async def send(self, message: Outbound) -> None: ...


def _http_status_error(status: int, what: str) -> DeliveryError:
    # 408 request timeout and 429 too many requests are worth another try; other 4xx are not
    retryable = status >= 500 or status in (408, 429)
    return DeliveryError(f"{what} answered HTTP {status}", retryable=retryable, status=status)


async def _post_json(client: httpx.AsyncClient, url: str, body: dict, timeout: float, what: str) -> httpx.Response:
    """POST with an overall deadline; transport failures and timeouts are retryable."""
    try:
        async with asyncio.timeout(timeout):
            return await client.post(url, json=body, timeout=timeout)
    except (TimeoutError, httpx.TimeoutException):
        raise DeliveryError(f"{what} timed out after {timeout:g} s", retryable=True) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise DeliveryError(f"{what}: bad URL: {exc}", retryable=False) from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{what} unreachable: {type(exc).__name__}: {exc}", retryable=True) from None


class SmsGateway:
    """SMS through the HTTP gateway: ``POST url`` with JSON ``{"id", "to", "text"}``; 2xx means accepted.

    ``id`` is the notification id, the same on every retry, so the gateway drops
    duplicates. 5xx, 408, 429, timeouts and connection failures are retryable; other
    4xx are not.
    """

    def __init__(self, url: str, client: httpx.AsyncClient, timeout: float = 10.0) -> None:
        self.url = url
        self.client = client
        self.timeout = timeout

    async def send(self, message: Outbound) -> None:
        body = {"id": message.notification_id, "to": message.address, "text": message.text}
        to = mask_address("sms", message.address)
        try:
            response = await _post_json(self.client, self.url, body, self.timeout, "SMS gateway")
            if not 200 <= response.status_code < 300:
                raise _http_status_error(response.status_code, "SMS gateway")
        except DeliveryError as exc:
            log.warning("sms %s to %s failed: %s", message.notification_id, to, exc.reason,
                        extra={"notification_id": message.notification_id, "retryable": exc.retryable})
            raise
        log.info("sms %s to %s accepted", message.notification_id, to, extra={"notification_id": message.notification_id})


class SmtpMailer:
    """E-mail over SMTP (stdlib ``smtplib`` in a worker thread), UTF-8 subject and body.

    ``timeout`` bounds every socket operation. The notification id becomes the
    ``Message-ID``, so a retried mail can be recognised as the same one. SMTP 4xx
    answers and connection failures are retryable; 5xx answers are not.
    """

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        timeout: float = 10.0,
        *,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        message_id_domain: str = "coffeetime.notify",
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout = timeout
        self.starttls = starttls
        self.username = username
        self.password = password
        self.message_id_domain = message_id_domain

    def compose(self, message: Outbound) -> EmailMessage:
        """The e-mail for a message (UTF-8; plain text)."""
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.address
        mail["Subject"] = message.subject or message.text.split("\n", 1)[0][:60]
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = f"<{message.notification_id}@{self.message_id_domain}>"
        mail.set_content(message.text, charset="utf-8")
        return mail

    def _send_blocking(self, mail: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(mail)

    async def send(self, message: Outbound) -> None:
        to = mask_address("email", message.address)
        try:
            await asyncio.to_thread(self._send_blocking, self.compose(message))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            error = DeliveryError(f"SMTP refused the recipient ({codes})", retryable=all(400 <= c < 500 for c in codes),
                                  status=codes[0] if codes else None)
        except smtplib.SMTPResponseException as exc:
            error = DeliveryError(f"SMTP answered {exc.smtp_code}", retryable=400 <= exc.smtp_code < 500, status=exc.smtp_code)
        except smtplib.SMTPNotSupportedError as exc:
            error = DeliveryError(f"SMTP server lacks a needed extension: {exc}", retryable=False)
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            error = DeliveryError(f"SMTP unreachable: {type(exc).__name__}: {exc}", retryable=True)
        except ValueError as exc:  # a header the e-mail library refuses, e.g. a line break in the address
            error = DeliveryError(f"cannot compose the e-mail: {exc}", retryable=False)
        else:
            log.info("email %s to %s accepted", message.notification_id, to, extra={"notification_id": message.notification_id})
            return
        log.warning("email %s to %s failed: %s", message.notification_id, to, error.reason,
                    extra={"notification_id": message.notification_id, "retryable": error.retryable})
        raise error


def _fit_bytes(text: str, limit: int) -> str:
    if len(text.encode("utf-8")) <= limit:
        return text
    budget = limit - len("…".encode("utf-8"))
    out = text.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return out + "…"


class WeComWebhook:
    """A WeCom-style group robot: ``POST <webhook URL>`` with ``{"msgtype": "text", "text": {"content": ...}}``.

    Success is HTTP 200 with ``{"errcode": 0}``; a non-zero errcode is a failure,
    retryable only for busy / rate-limit codes. Content beyond WeCom's 2048 bytes is
    cut with an ellipsis.
    """

    def __init__(self, client: httpx.AsyncClient, timeout: float = 10.0) -> None:
        self.client = client
        self.timeout = timeout

    async def send(self, message: Outbound) -> None:
        where = mask_address("wecom", message.address)
        body = {"msgtype": "text", "text": {"content": _fit_bytes(message.text, WECOM_MAX_BYTES)}}
        try:
            response = await _post_json(self.client, message.address, body, self.timeout, "WeCom webhook")
            if response.status_code != 200:
                raise _http_status_error(response.status_code, "WeCom webhook")
            try:
                answer = response.json()
                errcode = int(answer.get("errcode"))
            except (ValueError, TypeError, AttributeError):
                raise DeliveryError("WeCom webhook answered without an errcode", retryable=False, status=200) from None
            if errcode != 0:
                raise DeliveryError(
                    f"WeCom errcode {errcode}: {answer.get('errmsg', '')}",
                    retryable=errcode in WECOM_RETRYABLE_ERRCODES,
                    status=200,
                )
        except DeliveryError as exc:
            log.warning("wecom %s to %s failed: %s", message.notification_id, where, exc.reason,
                        extra={"notification_id": message.notification_id, "retryable": exc.retryable})
            raise
        log.info("wecom %s to %s accepted", message.notification_id, where, extra={"notification_id": message.notification_id})


class UnconfiguredChannel:
    """A channel the deployment did not configure (e.g. no ``SMS_GATEWAY_URL``).

    Every message fails at once and for good with a clear reason, so it ends as
    ``ct.notify.failed`` instead of waiting unseen. The gap is logged once, at start-up.
    """

    def __init__(self, channel: str, reason: str) -> None:
        self.channel = channel
        self.reason = reason

    async def send(self, message: Outbound) -> None:
        raise DeliveryError(self.reason, retryable=False)


class Channels:
    """The clients by channel name (``sms``, ``email``, ``wecom``); sends a planned notification on its own."""

    def __init__(self, clients: Mapping[str, Channel]) -> None:
        self.clients = dict(clients)

    async def send(self, notification: Outbound) -> None:
        channel = getattr(notification, "channel", None)
        client = self.clients.get(channel) if channel else None
        if client is None:
            raise DeliveryError(f"no client configured for channel {channel!r}", retryable=False)
        await client.send(notification)


async def send_with_retries(
    channel: Channel,
    message: Outbound,
    policy: DeliveryPolicy,
    *,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> int:
    """Send, retrying retryable failures with back-off and jitter, up to ``policy.max_attempts``.

    Returns the number of attempts made. Raises the last :class:`DeliveryError` (with
    an ``attempts`` attribute) when the failure is not retryable or attempts run out.
    Every attempt carries the same notification id.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            await channel.send(message)
            return attempt
        except DeliveryError as exc:
            exc.attempts = attempt
            if not exc.retryable or attempt >= policy.max_attempts:
                raise
            await sleep(policy.delay(attempt, rng))
