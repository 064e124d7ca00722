"""Notify's per-process context: the rules, the district, the HTTP clients and the channel clients.

Everything notify reads from files or the environment is read here (the rules file and
its overrides included), so the domain gets loaded objects and stays pure. Built once
at start-up from :class:`~shared.settings.Settings`; a bad rules file or district file
stops the service naming the field. The SMS gateway and the WeCom
robots each have an HTTP client of their own, its pool sized to the channel's
delivery concurrency; both are closed when the service stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from services.notify.channels import Channels, JsonPoster, SmsGateway, SmtpMailer, UnconfiguredChannel, WeComWebhook
from services.notify.domain import NotifyRules, RulesError, rules_from_document
from shared.district import District, load_district
from shared.settings import Settings

log = logging.getLogger("coffeetime.notify")

CHANNELS: tuple[str, ...] = ("sms", "email", "wecom")
HTTP_CHANNELS: tuple[str, ...] = ("sms", "wecom")
LANES: tuple[bool, ...] = (True, False)
"""Each channel's delivery workers, by ``receipts_only``: its receipts, and every message (receipts first). A
receipt never waits behind a round of liaison messages in flight."""

HTTP_CONCURRENCY = 16
"""Requests one delivery worker of an HTTP channel has in flight at once. The channel's own connection pool
(all kept alive) holds its workers' together (:data:`LANES`), so requests never queue for a connection, and a
channel of its own pool never waits for connections another channel holds."""

DEFAULT_RULES_PATH = Path(__file__).with_name("rules.yaml")

OUTAGE_TO_RIDE_OUT_S = 30 * 60.0
"""The channel outage the retry budget (``NOTIFY_MAX_ATTEMPTS``, ``NOTIFY_BACKOFF_*``) should ride out without a
message failing for good; a smaller budget is reported at start-up."""

NO_GATEWAY = "未配置短信网关 / no SMS gateway configured (set SMS_GATEWAY_URL)"


@dataclass
class Context:
    """What the subscribers, the delivery workers and the HTTP API of one process share."""

    settings: Settings
    rules: NotifyRules
    district: District
    http: dict[str, JsonPoster]
    """The HTTP client of each HTTP channel (``sms``, ``wecom``), each with its own connection pool."""
    channels: Channels
    wake_events: dict[str, list[asyncio.Event]] = field(default_factory=dict)
    """The wake-up events of each channel's delivery workers (its receipt lane and the rest)."""

    def wake_event(self, channel: str) -> asyncio.Event:
        """A new wake-up event, for one delivery worker of ``channel``."""
        event = asyncio.Event()
        self.wake_events.setdefault(channel, []).append(event)
        return event

    def wake(self, channels: Iterable[str] = CHANNELS) -> None:
        """Tell the delivery workers of these channels that new messages wait (after a commit)."""
        for channel in set(channels):
            for event in self.wake_events.get(channel, ()):
                event.set()


def load_rules(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> NotifyRules:
    """Read and validate the rules file.

    The path is ``path``, else ``NOTIFY_RULES``, else the packaged ``rules.yaml``.
    ``QUIET_HOURS`` (empty turns them off), ``SMS_MAX_LENGTH``, ``NOTIFY_MAX_ATTEMPTS``,
    ``NOTIFY_BACKOFF_BASE_SECONDS`` and ``NOTIFY_BACKOFF_CAP_SECONDS`` override the file. Raises :class:`RulesError` naming the file and the field.
    """
    env = os.environ if env is None else env
    file = Path(path or env.get("NOTIFY_RULES") or DEFAULT_RULES_PATH)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"{file}: cannot read the rules: {exc}") from exc
    if isinstance(raw, dict):  # anything else is refused by rules_from_document, naming the file
        if "QUIET_HOURS" in env:
            raw.setdefault("quiet_hours", {})["window"] = env["QUIET_HOURS"]
        if env.get("SMS_MAX_LENGTH"):
            raw.setdefault("sms", {})["max_length"] = env["SMS_MAX_LENGTH"]
        if env.get("NOTIFY_MAX_ATTEMPTS"):
            raw.setdefault("delivery", {})["max_attempts"] = env["NOTIFY_MAX_ATTEMPTS"]
        if env.get("NOTIFY_BACKOFF_BASE_SECONDS"):
            raw.setdefault("delivery", {})["backoff_base_seconds"] = env["NOTIFY_BACKOFF_BASE_SECONDS"]
        if env.get("NOTIFY_BACKOFF_CAP_SECONDS"):
            raw.setdefault("delivery", {})["backoff_cap_seconds"] = env["NOTIFY_BACKOFF_CAP_SECONDS"]
    return rules_from_document(raw, str(file))


def rules_for(settings: Settings) -> NotifyRules:
    """The rules file with the environment's overrides; ``QUIET_HOURS`` from the settings when set there."""
    env = dict(os.environ)
    if "quiet_hours" in settings.model_fields_set:
        env["QUIET_HOURS"] = settings.quiet_hours
    return load_rules(env=env)


def warn_of_a_short_budget(rules: NotifyRules) -> float:
    """Log a warning when the retry budget rides out less than :data:`OUTAGE_TO_RIDE_OUT_S`; the seconds it covers."""
    policy = rules.delivery
    covered = policy.outage_covered()
    if covered < OUTAGE_TO_RIDE_OUT_S:
        log.warning("the retry budget rides out a channel outage of only %.0f s (%d attempts, back-off %g-%g s): "
                    "a longer outage fails messages for good (ct.notify.failed); %.0f s are advised", covered,
                    policy.max_attempts, policy.backoff_base_seconds, policy.backoff_cap_seconds, OUTAGE_TO_RIDE_OUT_S,
                    extra={"outage_covered_s": covered, "max_attempts": policy.max_attempts})
    return covered


def build_context(settings: Settings, *, rules: NotifyRules | None = None,
                  district: District | None = None) -> Context:
    """The context of one process; ``rules`` and ``district`` replace the configured files (tests, tools)."""
    rules = rules or rules_for(settings)
    district = district or load_district(settings.district_config)
    warn_of_a_short_budget(rules)
    timeout = rules.delivery.timeout_seconds
    concurrency = settings.notify_http_concurrency  # NOTIFY_HTTP_CONCURRENCY, default HTTP_CONCURRENCY
    # two workers of ``concurrency`` each per channel (receipts, the rest): the pool holds both, so neither waits
    http = {channel: JsonPoster(concurrency=concurrency * len(LANES), timeout=timeout) for channel in HTTP_CHANNELS}
    if settings.sms_gateway_url:
        sms = SmsGateway(settings.sms_gateway_url, http["sms"], timeout=timeout)
    else:
        # fail fast and visibly: every SMS ends as ct.notify.failed with this reason
        log.warning("SMS_GATEWAY_URL is not set: every SMS will fail with %r", NO_GATEWAY)
        sms = UnconfiguredChannel("sms", NO_GATEWAY)
    channels = Channels({
        "sms": sms,
        "email": SmtpMailer(settings.smtp_host, settings.smtp_port, settings.smtp_sender, timeout=timeout),
        "wecom": WeComWebhook(http["wecom"], timeout=timeout),
    })
    return Context(settings=settings, rules=rules, district=district, http=http, channels=channels)


def http_client_closer(ctx: Context):
    """A background task that holds the HTTP clients open while the service runs and closes them at stop."""

    async def close_http_client_at_stop(service) -> None:  # noqa: ARG001 - the background task signature
        try:
            await asyncio.Event().wait()
        finally:
            for poster in ctx.http.values():
                await poster.aclose()

    return close_http_client_at_stop
