"""Channel clients: SMS over an HTTP gateway, e-mail over SMTP, WeCom group-robot webhooks.

Each client has ``async def send(message) -> None`` and raises :class:`DeliveryError`
on failure, saying whether a retry may help. A message is anything with
``notification_id``, ``address``, ``text`` and ``subject`` (a
:class:`~services.notify.domain.PlannedNotification` or an :class:`OutboundMessage`).
The notification id travels with the message (the SMS gateway's ``id``, the
e-mail's ``Message-ID``), so a retry after a lost answer is harmless downstream.

The delivery workers send a round of messages at once with
:meth:`Channels.send_round`, which fills in one :class:`Attempt` per message: the
HTTP clients a bounded number at a time, the SMTP mailer over one session in one
worker thread (composing there too, off the event loop).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol

import aiohttp

from services.notify.domain import DeliveryPolicy, mask_address

log = logging.getLogger("coffeetime.notify.channels")

_JITTER = random.Random()
"""Back-off jitter for :func:`send_with_retries` when the caller passes no ``rng`` (the domain draws none itself)."""

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


@dataclass(eq=False)
class Attempt:
    """One message's attempt within a delivery round, filled in as the round goes.

    ``started`` is set once the message is handed to its channel (it may have
    arrived from then on); ``done`` once its outcome is known: ``error`` is ``None``
    when the channel accepted it. A round cut short leaves some attempts unstarted.
    """

    message: Outbound
    started: bool = False
    done: bool = False
    error: DeliveryError | None = None
    seconds: float = 0.0

    def finish(self, error: DeliveryError | None, seconds: float) -> None:
        self.error, self.seconds, self.done = error, seconds, True


Admit = Callable[[Attempt], Awaitable[bool]]
"""Asked before a message goes to its channel: True to send it now, False to leave it for another round."""
OnDone = Callable[[Attempt], None]
"""Told of an attempt once its outcome is known."""


def _http_status_error(status: int, what: str) -> DeliveryError:
    # 408 request timeout and 429 too many requests are worth another try; other 4xx are not
    retryable = status >= 500 or status in (408, 429)
    return DeliveryError(f"{what} answered HTTP {status}", retryable=retryable, status=status)


class JsonPoster:
    """POSTs JSON to one channel's HTTP endpoints over a pool of kept-alive connections (aiohttp).

    One per HTTP channel, so a channel never waits for connections another one
    holds; the pool has ``concurrency`` connections (the channel's delivery
    concurrency), created on the first post inside the running event loop and
    closed by :meth:`aclose`. aiohttp parses responses in C (llhttp): a post costs
    about 80 µs of CPU here, against 1.2 ms with httpx (issue 12, README
    "Performance"). Proxies come from the environment (``HTTPS_PROXY``,
    ``NO_PROXY``), as before. Transport failures and timeouts raise a retryable
    :class:`DeliveryError`, a malformed or non-HTTP URL a final one.
    """

    def __init__(self, *, concurrency: int, timeout: float) -> None:
        self.concurrency = concurrency
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=True,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def post_json(self, url: str, body: dict, timeout: float, what: str) -> tuple[int, bytes]:
        """POST ``body`` as UTF-8 JSON with an overall deadline; the answer's status and body."""
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            async with asyncio.timeout(timeout):
                async with self._open().post(url, data=data, headers=_JSON) as response:
                    return response.status, await response.read()
        except TimeoutError:
            raise DeliveryError(f"{what} timed out after {timeout:g} s", retryable=True) from None
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError, ValueError) as exc:
            raise DeliveryError(f"{what}: bad URL: {exc}", retryable=False) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(f"{what} unreachable: {type(exc).__name__}: {exc}", retryable=True) from None

    async def aclose(self) -> None:
        """Close the pool's connections (the service stops)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


_JSON = {"Content-Type": "application/json; charset=utf-8"}


class SmsGateway:
    """SMS through the HTTP gateway: ``POST url`` with JSON ``{"id", "to", "text"}``; 2xx means accepted.

    ``id`` is the notification id, the same on every retry, so the gateway drops
    duplicates. 5xx, 408, 429, timeouts and connection failures are retryable; other
    4xx are not.
    """

    def __init__(self, url: str, client: JsonPoster, timeout: float = 10.0) -> None:
        self.url = url
        self.client = client
        self.timeout = timeout

    async def send(self, message: Outbound) -> None:
        body = {"id": message.notification_id, "to": message.address, "text": message.text}
        to = mask_address("sms", message.address)
        try:
            status, _ = await self.client.post_json(self.url, body, self.timeout, "SMS gateway")
            if not 200 <= status < 300:
                raise _http_status_error(status, "SMS gateway")
        except DeliveryError as exc:
            log.warning("sms %s to %s failed: %s", message.notification_id, to, exc.reason,
                        extra={"notification_id": message.notification_id, "retryable": exc.retryable})
            raise
        log.info("sms %s to %s accepted", message.notification_id, to, extra={"notification_id": message.notification_id})


class SmtpMailer:
    """E-mail over SMTP (stdlib ``smtplib`` in a worker thread), UTF-8 subject and body.

    A delivery round's mails are composed and sent in one worker thread over one
    SMTP session (:meth:`send_round`); :meth:`send` is a round of one.

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

    def _connect(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    @staticmethod
    def _error(exc: BaseException) -> DeliveryError:
        """What an exception of composing or sending one mail means for its delivery."""
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in exc.recipients.values()]
            return DeliveryError(f"SMTP refused the recipient ({codes})", retryable=all(400 <= c < 500 for c in codes),
                                 status=codes[0] if codes else None)
        if isinstance(exc, smtplib.SMTPResponseException):
            return DeliveryError(f"SMTP answered {exc.smtp_code}", retryable=400 <= exc.smtp_code < 500,
                                 status=exc.smtp_code)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return DeliveryError(f"SMTP server lacks a needed extension: {exc}", retryable=False)
        if isinstance(exc, (smtplib.SMTPException, OSError, socket.timeout)):
            return DeliveryError(f"SMTP unreachable: {type(exc).__name__}: {exc}", retryable=True)
        if isinstance(exc, ValueError):  # a header the e-mail library refuses, e.g. a line break in the address
            return DeliveryError(f"cannot compose the e-mail: {exc}", retryable=False)
        return DeliveryError(f"SMTP client fault: {type(exc).__name__}: {exc}", retryable=True)

    def _send_round_blocking(self, attempts: Sequence[Attempt], abandon: threading.Event, lock: threading.Lock,
                             tick: Callable[[], None], admit: Callable[[Attempt], bool] = lambda a: True) -> None:
        """In a worker thread: compose and send the round's mails over one SMTP session.

        A mail refused by the server leaves the session usable (smtplib resets it); a
        broken session is closed and the next mail opens another. When connecting
        fails, every mail not sent yet gets that error (the server is down: one try
        per round). ``admit`` is asked before each mail (False: not sent this round).
        Stops starting mails once ``abandon`` is set; from then on writes no outcome
        (the event loop has given the round up).
        """
        smtp: smtplib.SMTP | None = None
        try:
            for i, attempt in enumerate(attempts):
                if not admit(attempt):
                    continue
                with lock:
                    if abandon.is_set():
                        return
                    attempt.started = True
                started = time.perf_counter()
                error: DeliveryError | None = None
                try:
                    mail = self.compose(attempt.message)
                except Exception as exc:  # noqa: BLE001 - this mail cannot be composed; the session stays
                    error = self._error(exc)
                else:
                    if smtp is None:
                        try:
                            smtp = self._connect()
                        except Exception as exc:  # noqa: BLE001 - the server is unreachable for this round
                            error = self._error(exc)
                            with lock:
                                if abandon.is_set():
                                    return
                                for rest in attempts[i:]:
                                    rest.started = True
                                    rest.finish(error, time.perf_counter() - started)
                            tick()
                            return
                    try:
                        smtp.send_message(mail)
                    except Exception as exc:  # noqa: BLE001 - classified; the session is kept only if still sound
                        error = self._error(exc)
                        sound = (isinstance(exc, (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException))
                                 and getattr(smtp, "sock", None) is not None)
                        if not sound:
                            smtp.close()
                            smtp = None
                with lock:
                    if abandon.is_set():
                        return
                    attempt.finish(error, time.perf_counter() - started)
                tick()
        finally:
            if smtp is not None:
                try:
                    smtp.quit()
                except Exception:  # noqa: BLE001 - every mail of the round is accepted already
                    smtp.close()

    async def send_round(self, attempts: Sequence[Attempt], stall_timeout: float, *,
                         admit: Admit | None = None, on_done: OnDone | None = None) -> None:
        """Send a round's mails over one SMTP session in one worker thread.

        ``admit`` is awaited (from the thread) before each mail is sent, ``on_done`` told
        of each outcome soon after it is known (see :meth:`Channels.send_round`). Gives up
        the round when no mail completes for ``stall_timeout`` seconds: the mail in flight
        counts as timed out (retryable); the others stay unstarted.
        """
        if not attempts:
            return
        loop = asyncio.get_running_loop()
        progress = asyncio.Event()
        abandon = threading.Event()
        lock = threading.Lock()
        reported: set[int] = set()

        def tick() -> None:
            try:
                loop.call_soon_threadsafe(progress.set)
            except RuntimeError:  # the loop closed meanwhile
                pass

        def admit_blocking(attempt: Attempt) -> bool:
            if admit is None:
                return True
            try:
                asked = asyncio.run_coroutine_threadsafe(admit(attempt), loop)
            except RuntimeError:  # the loop closed meanwhile
                return False
            while not abandon.is_set():
                try:
                    return bool(asked.result(timeout=0.5))
                except TimeoutError:
                    continue
                except Exception:  # noqa: BLE001 - not admitted: the mail waits for another round
                    return False
            asked.cancel()
            return False

        def report() -> None:
            if on_done is None:
                return
            with lock:
                fresh = [a for a in attempts if a.done and id(a) not in reported]
                reported.update(id(a) for a in fresh)
            for attempt in fresh:
                on_done(attempt)

        worker = asyncio.ensure_future(asyncio.to_thread(self._send_round_blocking, attempts, abandon, lock, tick,
                                                         admit_blocking))
        try:
            while not worker.done():
                report()
                progress.clear()
                waiter = asyncio.ensure_future(progress.wait())
                try:
                    done, _ = await asyncio.wait({worker, waiter}, timeout=stall_timeout,
                                                 return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                if not done:
                    with lock:
                        abandon.set()
                        for attempt in attempts:
                            if attempt.started and not attempt.done:
                                attempt.finish(DeliveryError(f"SMTP timed out after {stall_timeout:g} s",
                                                             retryable=True), stall_timeout)
                    break
        except asyncio.CancelledError:
            with lock:
                abandon.set()
            raise
        if worker.done() and not worker.cancelled() and worker.exception() is not None:
            exc = worker.exception()
            log.error("SMTP round failed unexpectedly", exc_info=exc)
            with lock:
                abandon.set()
                for attempt in attempts:
                    if attempt.started and not attempt.done:
                        attempt.finish(DeliveryError(f"SMTP client fault: {exc!r}", retryable=True), 0.0)
        report()
        for attempt in attempts:
            if attempt.done:
                self._log(attempt)

    def _log(self, attempt: Attempt) -> None:
        nid = attempt.message.notification_id
        to = mask_address("email", attempt.message.address)
        if attempt.error is None:
            log.info("email %s to %s accepted", nid, to, extra={"notification_id": nid})
        else:
            log.warning("email %s to %s failed: %s", nid, to, attempt.error.reason,
                        extra={"notification_id": nid, "retryable": attempt.error.retryable})

    async def send(self, message: Outbound) -> None:
        attempt = Attempt(message)
        await self.send_round([attempt], stall_timeout=self.timeout * 1.5)
        if not attempt.done:
            raise DeliveryError("SMTP round given up before this mail was sent", retryable=True)
        if attempt.error is not None:
            raise attempt.error


def _fit_bytes(text: str, limit: int) -> str:
    if len(text.encode("utf-8")) <= limit:
        return text
    budget = limit - len("…".encode())
    out = text.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return out + "…"


class WeComWebhook:
    """A WeCom-style group robot: ``POST <webhook URL>`` with ``{"msgtype": "text", "text": {"content": ...}}``.

    Success is HTTP 200 with ``{"errcode": 0}``; a non-zero errcode is a failure,
    retryable only for busy / rate-limit codes. Content beyond WeCom's 2048 bytes is
    cut with an ellipsis.
    """

    def __init__(self, client: JsonPoster, timeout: float = 10.0) -> None:
        self.client = client
        self.timeout = timeout

    async def send(self, message: Outbound) -> None:
        where = mask_address("wecom", message.address)
        body = {"msgtype": "text", "text": {"content": _fit_bytes(message.text, WECOM_MAX_BYTES)}}
        try:
            status, content = await self.client.post_json(message.address, body, self.timeout, "WeCom webhook")
            if status != 200:
                raise _http_status_error(status, "WeCom webhook")
            try:
                answer = json.loads(content)
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

    async def send_round(self, channel: str, attempts: Sequence[Attempt], *, concurrency: int,
                         attempt_timeout: float, admit: Admit | None = None, on_done: OnDone | None = None) -> None:
        """Send a round of one channel's messages, filling in each :class:`Attempt`.

        A client with a ``send_round`` of its own (SMTP: one session per round) sends
        the round itself; the others send up to ``concurrency`` messages at a time
        (kept near the HTTP pool's size), each attempt bounded by ``attempt_timeout``.
        ``admit(attempt)`` is awaited before a message is handed to its channel (the
        delivery worker logs the attempt durably there); False leaves it unstarted.
        ``on_done(attempt)`` is called once its outcome is known.
        """
        client = self.clients.get(channel)
        if client is None:
            for attempt in attempts:
                attempt.started = True
                attempt.finish(DeliveryError(f"no client configured for channel {channel!r}", retryable=False), 0.0)
                if on_done is not None:
                    on_done(attempt)
            return
        own_round = getattr(client, "send_round", None)
        if own_round is not None:
            await own_round(attempts, attempt_timeout, admit=admit, on_done=on_done)
            return
        queue = iter(attempts)

        async def sender() -> None:  # one of ``concurrency``: sends the next message until none is left
            for attempt in queue:
                if admit is not None and not await admit(attempt):
                    continue
                attempt.started = True
                started = time.perf_counter()
                error: DeliveryError | None = None
                try:
                    async with asyncio.timeout(attempt_timeout):
                        await client.send(attempt.message)
                except DeliveryError as exc:
                    error = exc
                except TimeoutError:
                    error = DeliveryError(f"{channel} timed out after {attempt_timeout:g} s", retryable=True)
                except Exception as exc:  # noqa: BLE001 - a client fault: bounded by max_attempts like any retryable error
                    log.exception("channel client raised unexpectedly",
                                  extra={"channel": channel, "notification_id": attempt.message.notification_id})
                    error = DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True)
                attempt.finish(error, time.perf_counter() - started)
                if on_done is not None:
                    on_done(attempt)

        senders = [asyncio.ensure_future(sender()) for _ in range(max(1, min(concurrency, len(attempts))))]
        try:
            await asyncio.gather(*senders)
        except BaseException:
            for task in senders:
                task.cancel()
            raise


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
            await sleep(policy.delay(attempt, rng or _JITTER))
