"""Notify's rules, pure: who hears about an event, on which channel, in which words, and when.

Nothing here does I/O. The handler gives :func:`plan_notifications` an event, the
district configuration and the rules file; it gets back the messages to send, each
with a stable identity (cause event, recipient, channel) so a redelivered event
never sends a message twice. The channel clients live in ``channels.py``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.contracts import subjects
from shared.contracts.common import Rating, mask_name, mask_phone
from shared.contracts.subjects import subject_matches
from shared.district import Contact, District, Unit

log = logging.getLogger("coffeetime.notify.domain")

DEFAULT_RULES_PATH = Path(__file__).with_name("rules.yaml")
SHANGHAI = ZoneInfo("Asia/Shanghai")
ELLIPSIS = "…"

MONTHLY_LIST_SUBJECT = subjects.DEADLINE_MONTHLY_LIST
"""The monthly list for the supervision office (``shared.contracts.events.MonthlyList``, from escalation)."""

ChannelName = Literal["sms", "email", "wecom"]
Lang = Literal["zh", "en"]
RecipientRole = Literal["enterprise", "liaisons", "unit_head", "lead_unit", "district_leader", "supervision_office"]


class TemplateKind(StrEnum):
    """What a message is, which decides whether quiet hours hold it back."""

    receipt = "receipt"  # answers the enterprise's own call: at once
    answer = "answer"  # a consultation answered at once: at once
    reopening = "reopening"  # follows the enterprise's own "unsatisfied": at once
    rating_invitation = "rating_invitation"  # the reply and the request to rate it (回访)
    reminder = "reminder"
    closing = "closing"
    work_notice = "work_notice"  # to units and the lead unit
    escalation = "escalation"  # overdue, leaders, supervision
    report = "report"  # periodic lists


DEFAULT_DEFER_KINDS: frozenset[TemplateKind] = frozenset(
    {TemplateKind.rating_invitation, TemplateKind.reminder, TemplateKind.closing}
)

RATING_INSTRUCTIONS: dict[str, str] = {
    "zh": "回复1满意，2基本满意，3不满意",
    "en": "reply 1 satisfied, 2 basically satisfied, 3 unsatisfied",
}

TEMPLATE_VARIABLES: dict[str, str] = {
    "appeal_id": "The appeal id, as in the receipt (never shortened).",
    "order_id": "The work order (never shortened).",
    "enterprise": "The enterprise's name.",
    "unit": "The handling unit's name.",
    "order_role": "主办 / 协办 (lead / co-handling).",
    "summary": "Short summary of the appeal.",
    "reply": "The unit's reply.",
    "resolved": "Whether the unit says the problem is solved.",
    "deadline": "The due time (RFC 3339 in the event, shown in Asia/Shanghai), else the deadline in working days.",
    "deadline_days": "Handling deadline in working days.",
    "sign_hours": "Sign-for limit in working hours.",
    "clock": "签收 / 办理 (sign-for / handling).",
    "level": "The escalation level, in words.",
    "reason": "The reason given in the event (returns, extensions, escalations, queue).",
    "days": "Extension days asked for.",
    "return_count": "Returns of this appeal so far.",
    "reopen_count": "Reopenings for this unit.",
    "overdue": "How late, in days and hours.",
    "outcome": "How the appeal was closed, in words.",
    "answer": "The answer to a consultation.",
    "comment": "The enterprise's comment.",
    "category": "The appeal's category.",
    "recipient": "The recipient's name (or the unit's, for a group).",
    "district": "The district's name.",
    "urgent_mark": "【紧急】 / [URGENT] for an urgent appeal, else empty.",
    "rating_instructions": "回复1满意，2基本满意，3不满意 (never shortened).",
    "month": "The month of a monthly list.",
    "items": "The lines of a monthly list.",
    "item_count": "The number of lines of a monthly list.",
}

PROTECTED_VARIABLES = frozenset({"appeal_id", "order_id", "deadline", "rating_instructions", "urgent_mark"})
"""Never shortened to fit an SMS."""

DEFAULT_SHRINK_ORDER: tuple[str, ...] = (
    "summary", "reply", "answer", "comment", "reason", "items", "enterprise", "recipient", "unit",
)

_LABELS: dict[str, dict[str, Any]] = {
    "zh": {
        "order_role": {"lead": "主办", "co": "协办"},
        "clock": {"sign_for": "签收", "handling": "办理"},
        "level": {
            "overdue": "超期督办",
            "district_leader": "超期未办结",
            "supervision": "超期通报",
            "difficult": "疑难或重大问题",
            "warning_75": "已用去75%时限",
            "warning_1d": "距到期不足1个工作日",
        },
        "outcome": {
            "satisfied": "满意",
            "basically_satisfied": "基本满意",
            "not_rated": "未评价",
            "answered": "已答复",
        },
        "resolved": {True: "已解决", False: "未完全解决"},
        "urgent_mark": "【紧急】",
        "no_enterprise": "未具名企业",
        "working_days": "{n}个工作日",
    },
    "en": {
        "order_role": {"lead": "lead", "co": "co-handling"},
        "clock": {"sign_for": "sign-for", "handling": "handling"},
        "level": {
            "overdue": "overdue",
            "district_leader": "overdue and still open",
            "supervision": "overdue, for public notice",
            "difficult": "difficult or major",
            "warning_75": "75% of the time used",
            "warning_1d": "due within one working day",
        },
        "outcome": {
            "satisfied": "satisfied",
            "basically_satisfied": "basically satisfied",
            "not_rated": "not rated",
            "answered": "answered",
        },
        "resolved": {True: "solved", False: "not fully solved"},
        "urgent_mark": "[URGENT] ",
        "no_enterprise": "enterprise not named",
        "working_days": "{n} working days",
    },
}


class RulesError(ValueError):
    """The rules file is missing or invalid; the message names the file and the field."""


# --- quiet hours -------------------------------------------------------------------


@dataclass(frozen=True)
class QuietWindow:
    """A daily window of local time in which deferrable SMS wait (``start`` inclusive, ``end`` exclusive)."""

    start: time
    end: time

    @property
    def spans_midnight(self) -> bool:
        return self.start > self.end

    def contains(self, t: time) -> bool:
        if self.spans_midnight:
            return t >= self.start or t < self.end
        return self.start <= t < self.end


_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_quiet_hours(value: str | None) -> QuietWindow | None:
    """``"22:00-08:00"`` → a :class:`QuietWindow`; an empty string or ``None`` → no quiet hours.

    Raises ``ValueError`` for anything else, naming the expected form.
    """
    if value is None or not value.strip():
        return None
    m = _WINDOW.match(value)
    if not m:
        raise ValueError(f"quiet hours {value!r}: expected HH:MM-HH:MM such as 22:00-08:00, or empty to turn them off")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f"quiet hours {value!r}: hours run 00-23 and minutes 00-59")
    if (h1, m1) == (h2, m2):
        raise ValueError(f"quiet hours {value!r}: start equals end; use an empty string to turn them off")
    return QuietWindow(time(h1, m1), time(h2, m2))


def next_send_time(
    now: datetime,
    quiet_hours: str | QuietWindow | None,
    template_kind: str | TemplateKind,
    urgent: bool,
    *,
    defer_kinds: frozenset[TemplateKind] | Sequence[TemplateKind] = DEFAULT_DEFER_KINDS,
    tz: ZoneInfo = SHANGHAI,
) -> datetime:
    """When an SMS of ``template_kind`` may go: ``now``, or the end of quiet hours.

    Only kinds in ``defer_kinds`` (rating invitations, reminders, closing notes by
    default) wait; a receipt or anything about an urgent appeal goes at once. A
    window across midnight (``22:00-08:00``) defers 23:00 to 08:00 the next morning
    and 01:30 to 08:00 the same morning. ``now`` must be timezone-aware; the
    deferred time is returned in ``tz``.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    window = parse_quiet_hours(quiet_hours) if quiet_hours is None or isinstance(quiet_hours, str) else quiet_hours
    if window is None or urgent or TemplateKind(template_kind) not in set(defer_kinds):
        return now
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    if not window.contains(t):
        return now
    end_day = local.date()
    if window.spans_midnight and t >= window.start:
        end_day += timedelta(days=1)
    return datetime.combine(end_day, window.end, tzinfo=tz)


# --- retries ------------------------------------------------------------------------


def backoff(attempt: int, base: float = 2.0, cap: float = 300.0, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 = the first attempt).

    Exponential with "equal jitter": the ceiling is ``min(cap, base * 2**(attempt-1))``
    and the delay lies in ``[ceiling/2, ceiling]``, so retries spread out but never
    come at once.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if base <= 0 or cap <= 0:
        raise ValueError("base and cap must be positive")
    ceiling = cap if attempt > 64 else min(cap, base * 2 ** (attempt - 1))
    r = (rng or random).random()
    return ceiling / 2 + r * ceiling / 2


# --- identity ---------------------------------------------------------------------


def notification_id(event_id: str, recipient: str, channel: str) -> str:
    """The stable identity of one message: a 32-hex-digit SHA-256 of (cause event id, recipient, channel).

    ``recipient`` is the address (phone, e-mail, webhook URL). The same inputs always
    give the same id; it is also the SMS gateway's ``id``, so a retried message is
    dropped as a duplicate there.
    """
    if not event_id:
        raise ValueError("a notification needs the id of the event that caused it")
    key = "\x1f".join((event_id.strip(), recipient.strip(), channel.strip().lower()))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def mask_address(channel: str, address: str) -> str:
    """An address fit for logs and outcome events: phones and e-mail local parts masked, webhook keys hidden."""
    if channel == "sms":
        return mask_phone(address)
    if channel == "email":
        local, _, domain = address.partition("@")
        return f"{mask_name(local)}@{domain}" if domain else mask_name(address)
    m = re.search(r"([?&]key=)([^&]+)", address)
    if m:
        key = m.group(2)
        return address[: m.start(2)] + key[:4] + "****" + address[m.end(2) :]
    return address.split("?", 1)[0]


# --- rating replies -------------------------------------------------------------------

_UNSATISFIED = re.compile(r"不\S{0,3}满意|unsatisfied|dissatisfied|not\s+(?:\w+\s+){0,2}satisfied", re.I)
_BASIC = re.compile(r"基本满意|比较满意|还算满意|basically\s+satisfied|mostly\s+satisfied", re.I)
_SATISFIED = re.compile(r"满意|satisfied", re.I)
_DIGIT_RATING = {"1": Rating.satisfied, "2": Rating.basically_satisfied, "3": Rating.unsatisfied}
_NUMERAL_ONLY = {"一": Rating.satisfied, "二": Rating.basically_satisfied, "三": Rating.unsatisfied}


def parse_rating_reply(text: str | None) -> Rating | None:
    """The rating in an SMS reply, or ``None`` when it is absent or ambiguous.

    Understands the digits asked for (``1`` satisfied, ``2`` basically satisfied,
    ``3`` unsatisfied, full-width digits too), the words (``满意``, ``基本满意``,
    ``不满意``, and English) and both together (``3 不满意``). Digits and words that
    disagree (``1 不满意``), other numbers (``4``, ``12``) or several ratings give
    ``None``: the enterprise is then asked again rather than misread.
    """
    if not text:
        return None
    s = unicodedata.normalize("NFKC", text).strip()
    if not s:
        return None
    bare = s.strip(" .。!！,，、:：;；~～")
    if bare in _NUMERAL_ONLY:
        return _NUMERAL_ONLY[bare]
    found: set[Rating] = set()
    digit_runs = re.findall(r"\d+", s)
    if digit_runs:
        if len(digit_runs) != 1 or digit_runs[0] not in _DIGIT_RATING:
            return None
        found.add(_DIGIT_RATING[digit_runs[0]])
    rest = s
    for pattern, rating in ((_UNSATISFIED, Rating.unsatisfied), (_BASIC, Rating.basically_satisfied), (_SATISFIED, Rating.satisfied)):
        if pattern.search(rest):
            found.add(rating)
            rest = pattern.sub(" ", rest)
    return found.pop() if len(found) == 1 else None


def rating_invitation_text(lang: str = "zh") -> str:
    """The rating instructions sent with a reply: ``回复1满意，2基本满意，3不满意``."""
    return RATING_INSTRUCTIONS["en" if lang == "en" else "zh"]


# --- rendering ----------------------------------------------------------------------


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def placeholders(text: str) -> list[str]:
    """The ``{names}`` a template text uses, in order (duplicates kept)."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def _clip(value: str, keep: int) -> str:
    if keep <= 0:
        return ELLIPSIS
    return value[:keep].rstrip(" \t，,、。.;；:：") + ELLIPSIS


def render(
    text: str,
    variables: Mapping[str, object],
    *,
    max_length: int | None = None,
    shrink_order: Sequence[str] = DEFAULT_SHRINK_ORDER,
) -> str:
    """Fill a template's ``{placeholders}``; a missing variable renders empty.

    With ``max_length`` (SMS), a text that is too long is shortened by trimming the
    variables in ``shrink_order`` one after the other, each ending with ``…``, until
    it fits. Protected variables (appeal id, order id, deadline, rating instructions)
    and the template's own words are never cut, so the result can still exceed
    ``max_length`` when a template is too long by itself (the rules loader refuses such
    templates).
    """
    values = {k: "" if v is None else str(v) for k, v in variables.items()}
    out = text.format_map(_Blank(values))
    if max_length is None or len(out) <= max_length:
        return out
    used = placeholders(text)
    for name in shrink_order:
        if name in PROTECTED_VARIABLES or not values.get(name) or name not in used:
            continue
        original = values[name]
        occurrences = used.count(name)
        keep = len(original)
        while len(out) > max_length and keep > 0:
            excess = len(out) - max_length
            # the ellipsis costs one character the first time this value is cut
            keep = max(0, keep - math.ceil(excess / occurrences) - (1 if keep == len(original) else 0))
            values[name] = _clip(original, keep)
            out = text.format_map(_Blank(values))
        if len(out) <= max_length:
            break
    return out


# --- the rules file -------------------------------------------------------------------


class TemplateText(BaseModel):
    """One language of a template."""

    model_config = ConfigDict(extra="forbid")
    subject: str = Field(min_length=1, description="E-mail subject.")
    text: str = Field(min_length=1, description="SMS / WeCom / e-mail body.")

    @field_validator("subject", "text")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"malformed placeholder: {exc}") from None
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if name not in TEMPLATE_VARIABLES:
                raise ValueError(f"unknown placeholder {{{name}}}; known: {', '.join(sorted(TEMPLATE_VARIABLES))}")
            if spec or conversion:
                raise ValueError(f"placeholder {{{name}}} takes no format spec or conversion")
        return value


class Template(BaseModel):
    """A message in Chinese and English."""

    model_config = ConfigDict(extra="forbid")
    kind: TemplateKind
    zh: TemplateText
    en: TemplateText

    def text_for(self, lang: str) -> TemplateText:
        """The words for a recipient's language (Chinese unless ``en``)."""
        return self.en if lang == "en" else self.zh

    @model_validator(mode="after")
    def _rating_instructions_present(self) -> Template:
        if self.kind == TemplateKind.rating_invitation:
            for lang in ("zh", "en"):
                if "rating_instructions" not in placeholders(getattr(self, lang).text):
                    raise ValueError(f"{lang}.text: a rating invitation must contain {{rating_instructions}}")
        return self


Scalar = str | int | float | bool | None


class Rule(BaseModel):
    """Event subject → recipients → channels → template."""

    model_config = ConfigDict(extra="forbid")
    subject: str = Field(pattern=r"^[A-Za-z0-9_\-*>]+(\.[A-Za-z0-9_\-*>]+)*$")
    when: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    recipients: list[RecipientRole] = Field(min_length=1)
    channels: list[ChannelName] = Field(min_length=1)
    template: str

    def matches(self, subject: str, event: Mapping[str, Any]) -> bool:
        """Whether the rule applies: the subject matches and every ``when`` field has an accepted value."""
        if not subject_matches(self.subject, subject):
            return False
        for path, expected in self.when.items():
            actual = _lookup(event, path)
            accepted = expected if isinstance(expected, list) else [expected]
            if not any(_same(actual, a) for a in accepted):
                return False
        return True


class QuietHoursPolicy(BaseModel):
    """When deferrable SMS wait, in which time zone, and which template kinds wait."""

    model_config = ConfigDict(extra="forbid")
    window: str = Field("22:00-08:00", description="HH:MM-HH:MM local time; empty turns quiet hours off.")
    timezone: str = "Asia/Shanghai"
    defer: list[TemplateKind] = Field(default_factory=lambda: sorted(DEFAULT_DEFER_KINDS))

    @field_validator("window")
    @classmethod
    def _valid_window(cls, value: str) -> str:
        parse_quiet_hours(value)
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _valid_tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except Exception:
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def parsed(self) -> QuietWindow | None:
        return parse_quiet_hours(self.window)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class SmsPolicy(BaseModel):
    """How long an SMS may be and which variables give way when it is too long."""

    model_config = ConfigDict(extra="forbid")
    max_length: int = Field(200, ge=40, le=1000, description="Characters an SMS may have.")
    shrink_order: list[str] = Field(default_factory=lambda: list(DEFAULT_SHRINK_ORDER))

    @field_validator("shrink_order")
    @classmethod
    def _shrinkable(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in TEMPLATE_VARIABLES:
                raise ValueError(f"unknown variable {name!r}")
            if name in PROTECTED_VARIABLES:
                raise ValueError(f"{name!r} is never shortened")
        return value


class DeliveryPolicy(BaseModel):
    """Attempts, back-off and the per-attempt timeout of every channel."""

    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(6, ge=1, le=50)
    backoff_base_seconds: float = Field(2.0, gt=0)
    backoff_cap_seconds: float = Field(300.0, gt=0)
    timeout_seconds: float = Field(10.0, gt=0, le=120)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds before the retry that follows failed attempt ``attempt``."""
        return backoff(attempt, self.backoff_base_seconds, self.backoff_cap_seconds, rng)


# realistic long values of every variable, for the check that every SMS template fits
_SAMPLE_VALUES = {
    "appeal_id": "CT-20261126-000123",
    "order_id": "WO-20261126-000123-1",
    "enterprise": "成都某某航空科技有限公司",
    "unit": "区经济科技和信息化局",
    "order_role": "协办",
    "summary": "",
    "reply": "",
    "resolved": "未完全解决",
    "deadline": "12月31日 17:30",
    "deadline_days": "20",
    "sign_hours": "24",
    "clock": "签收",
    "level": "疑难或重大问题",
    "reason": "",
    "days": "10",
    "return_count": "2",
    "reopen_count": "2",
    "overdue": "10天23小时",
    "outcome": "基本满意",
    "answer": "",
    "comment": "",
    "category": "水电气保障",
    "recipient": "王洪涛",
    "district": "成都市双流区",
    "urgent_mark": "【紧急】",
    "rating_instructions": RATING_INSTRUCTIONS["zh"],
    "month": "2026-12",
    "items": "",
    "item_count": "100",
}


class NotifyRules(BaseModel):
    """The whole rules file (``rules.yaml``)."""

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    quiet_hours: QuietHoursPolicy = Field(default_factory=QuietHoursPolicy)
    sms: SmsPolicy = Field(default_factory=SmsPolicy)
    delivery: DeliveryPolicy = Field(default_factory=DeliveryPolicy)
    rules: list[Rule]
    templates: dict[str, Template]

    @model_validator(mode="after")
    def _consistent(self) -> NotifyRules:
        for i, rule in enumerate(self.rules):
            if rule.template not in self.templates:
                raise ValueError(f"rules.{i}.template: unknown template {rule.template!r}")
            if "enterprise" in rule.recipients and set(rule.channels) - {"sms"}:
                raise ValueError(f"rules.{i}.channels: the enterprise contact is reached by SMS only")
        sms_templates = {r.template for r in self.rules if "sms" in r.channels}
        for name in sorted(sms_templates):
            for lang in ("zh", "en"):
                text = self.templates[name].text_for(lang).text
                # shortenable variables at their shortest, the others at a realistic length
                sample = {v: ELLIPSIS if v in self.sms.shrink_order else _SAMPLE_VALUES[v] for v in TEMPLATE_VARIABLES}
                sample["rating_instructions"] = RATING_INSTRUCTIONS[lang]
                rendered = render(text, sample)
                if len(rendered) > self.sms.max_length:
                    raise ValueError(
                        f"templates.{name}.{lang}.text: {len(rendered)} characters even with every shortenable "
                        f"variable cut, more than sms.max_length {self.sms.max_length}"
                    )
        return self

    def matching(self, subject: str, event: Mapping[str, Any]) -> list[Rule]:
        """The rules that apply to an event, in file order."""
        return [r for r in self.rules if r.matches(subject, event)]


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
    if not isinstance(raw, dict):
        raise RulesError(f"{file}: expected a mapping at the top level")
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
    try:
        return NotifyRules.model_validate(raw)
    except ValidationError as exc:
        raise RulesError(f"{file}: {exc}") from exc


# --- planning -------------------------------------------------------------------------


class PlannedNotification(BaseModel):
    """One message to send: where, in which words, not before when."""

    model_config = ConfigDict(frozen=True)
    notification_id: str = Field(description="Stable id of (cause event, recipient address, channel).")
    cause_event_id: str
    cause_subject: str
    appeal_id: str | None
    channel: ChannelName
    address: str = Field(description="Phone, e-mail address or webhook URL.")
    recipient_role: RecipientRole
    recipient_name: str
    lang: Lang
    template: str
    template_kind: TemplateKind
    text: str
    subject: str | None = Field(None, description="E-mail subject (e-mail only).")
    not_before: datetime = Field(description="Quiet-hours deferral: do not send earlier.")
    urgent: bool = False

    @property
    def masked_address(self) -> str:
        """The address as logs and outcome events show it."""
        return mask_address(self.channel, self.address)


@dataclass(frozen=True)
class _Recipient:
    role: RecipientRole
    name: str
    address: str
    lang: Lang


def _lookup(event: Mapping[str, Any], path: str) -> Any:
    value: Any = event
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual is expected
    if isinstance(actual, StrEnum):
        actual = actual.value
    return actual == expected


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
    return None


def _fmt_time(value: datetime, lang: str) -> str:
    local = value.astimezone(SHANGHAI) if value.tzinfo else value
    if lang == "en":
        return local.strftime("%Y-%m-%d %H:%M")
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def _fmt_duration(seconds: int, lang: str) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if lang == "en":
        parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes and not days else ""]
        return " ".join(p for p in parts if p) or "0 min"
    parts = [f"{days}天" if days else "", f"{hours}小时" if hours else "", f"{minutes}分钟" if minutes and not days else ""]
    return "".join(parts) or "0分钟"


def _fmt_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def _label(lang: str, group: str, key: Any) -> str:
    if isinstance(key, StrEnum):
        key = key.value
    return _LABELS[lang][group].get(key, "" if key is None else str(key))


def _enterprise_name(event: Mapping[str, Any], contact: Mapping[str, Any] | None) -> str:
    enterprise = event.get("enterprise")
    if isinstance(enterprise, Mapping) and enterprise.get("name"):
        return str(enterprise["name"])
    for source in (event, contact or {}):
        for key in ("enterprise_name", "enterprise"):
            if isinstance(source.get(key), str) and source[key]:
                return source[key]
    return ""


def _items(event: Mapping[str, Any], lang: str) -> str:
    lines = []
    for i, item in enumerate(event.get("items") or [], start=1):
        if not isinstance(item, Mapping):
            continue
        head = f"{i}. {item.get('appeal_id', '')} {item.get('unit', '')}".rstrip()
        bits = []
        if item.get("enterprise"):
            bits.append(str(item["enterprise"]))
        if item.get("summary"):
            bits.append(str(item["summary"]))
        due = _as_datetime(item.get("due_at"))
        if due:
            bits.append(("due " if lang == "en" else "时限") + _fmt_time(due, lang))
        if item.get("overdue_seconds"):
            late = _fmt_duration(item["overdue_seconds"], lang)
            bits.append(f"{late} overdue" if lang == "en" else f"超期{late}")
        if item.get("level"):
            bits.append(_label(lang, "level", item["level"]))
        sep = "; " if lang == "en" else "；"
        lines.append(head + (": " if lang == "en" else "：") + sep.join(bits) if bits else head)
    return "\n".join(lines)


def template_variables(
    subject: str,
    event: Mapping[str, Any],
    district: District,
    lang: str,
    *,
    contact: Mapping[str, Any] | None = None,
    recipient_name: str = "",
    urgent: bool = False,
) -> dict[str, str]:
    """The values of every template variable for one event, in one language.

    Values come from the event first; the enterprise's name may also come from the
    contact stored at registration, and the unit's name from the district.
    """
    lang = "en" if lang == "en" else "zh"
    labels = _LABELS[lang]
    unit_name = str(event.get("unit") or "")
    if not unit_name and event.get("unit_code"):
        try:
            unit_name = district.unit(str(event["unit_code"])).name
        except KeyError:
            unit_name = str(event["unit_code"])
    due = _as_datetime(event.get("due_at"))
    if due is not None:
        deadline = _fmt_time(due, lang)
    elif event.get("deadline_days") is not None:
        deadline = labels["working_days"].format(n=event["deadline_days"])
    else:
        deadline = ""
    reasons = event.get("reasons")
    reason = str(event.get("reason") or "")
    if not reason and isinstance(reasons, list):
        reason = ("; " if lang == "en" else "；").join(str(r) for r in reasons)
    summary = str(event.get("summary") or event.get("title") or event.get("content") or "")
    items = event.get("items") if isinstance(event.get("items"), list) else []
    return {
        "appeal_id": str(event.get("appeal_id") or ""),
        "order_id": str(event.get("order_id") or ""),
        "enterprise": _enterprise_name(event, contact) or labels["no_enterprise"],
        "unit": unit_name,
        "order_role": _label(lang, "order_role", event.get("role")),
        "summary": summary,
        "reply": str(event.get("reply") or ""),
        "resolved": labels["resolved"][bool(event.get("resolved"))] if "resolved" in event else "",
        "deadline": deadline,
        "deadline_days": _fmt_number(event.get("deadline_days")),
        "sign_hours": _fmt_number(event.get("sign_hours")),
        "clock": _label(lang, "clock", event.get("clock") or ("handling" if subject.endswith("escalated") else None)),
        "level": _label(lang, "level", event.get("level")),
        "reason": reason,
        "days": _fmt_number(event.get("days")),
        "return_count": _fmt_number(event.get("return_count")),
        "reopen_count": _fmt_number(event.get("reopen_count")),
        "overdue": _fmt_duration(event.get("overdue_seconds") or 0, lang),
        "outcome": _label(lang, "outcome", event.get("outcome")),
        "answer": str(event.get("answer") or ""),
        "comment": str(event.get("comment") or ""),
        "category": str(event.get("category") or event.get("category_hint") or ""),
        "recipient": recipient_name,
        "district": district.name,
        "urgent_mark": labels["urgent_mark"] if urgent else "",
        "rating_instructions": RATING_INSTRUCTIONS[lang],
        "month": str(event.get("month") or ""),
        "items": _items(event, lang),
        "item_count": str(len(items)),
    }


def _contacts_of(unit: Unit) -> list[Contact]:
    """A unit's fixed liaisons; its head when it names none."""
    if unit.liaisons:
        return list(unit.liaisons)
    return [unit.head] if unit.head else []


def _group_lang(contacts: Sequence[Contact]) -> Lang:
    return "en" if contacts and all(c.lang == "en" for c in contacts) else "zh"


def _contact_addresses(role: RecipientRole, contacts: Sequence[Contact], channel: ChannelName) -> list[_Recipient]:
    out = []
    for c in contacts:
        address = {"sms": c.phone, "email": c.email, "wecom": c.wecom_webhook}[channel]
        if address:
            out.append(_Recipient(role, c.name, address, c.lang))  # type: ignore[arg-type]
    return out


def _unit_recipients(role: RecipientRole, unit: Unit, channel: ChannelName) -> list[_Recipient]:
    contacts = _contacts_of(unit)
    if channel != "wecom":
        return _contact_addresses(role, contacts, channel)
    out = [_Recipient(role, unit.name, unit.wecom_webhook, _group_lang(contacts))] if unit.wecom_webhook else []
    return out + _contact_addresses(role, contacts, channel)


def _enterprise_recipient(event: Mapping[str, Any], contact: Mapping[str, Any] | None) -> _Recipient | None:
    stored = dict(contact or {})
    in_event = event.get("contact") if isinstance(event.get("contact"), Mapping) else {}
    phone = in_event.get("phone") or event.get("contact_phone") or stored.get("phone")
    if not phone:
        return None
    name = in_event.get("name") or stored.get("name") or ""
    lang: Lang = "en" if stored.get("lang") == "en" or in_event.get("lang") == "en" else "zh"
    return _Recipient("enterprise", str(name), str(phone), lang)


def _leaders(event: Mapping[str, Any], district: District, contact: Mapping[str, Any] | None) -> list[Contact]:
    named = [
        t.get("name")
        for t in event.get("targets") or []
        if isinstance(t, Mapping) and t.get("role") == "district_leader" and t.get("name")
    ]
    chosen = [leader for leader in district.leaders if leader.name in named or leader.leader_id in named]
    if not chosen:
        category = event.get("category") or (contact or {}).get("category")
        leader = district.leader_for(str(category) if category else None)
        chosen = [leader] if leader else []
    return [leader.contact for leader in chosen]


def _recipients(
    role: RecipientRole,
    channel: ChannelName,
    event: Mapping[str, Any],
    district: District,
    contact: Mapping[str, Any] | None,
) -> list[_Recipient]:
    if role == "enterprise":
        if channel != "sms":
            return []
        r = _enterprise_recipient(event, contact)
        return [r] if r else []
    if role in ("liaisons", "unit_head"):
        code = event.get("unit_code")
        if not code:
            return []
        try:
            unit = district.unit(str(code))
        except KeyError:
            log.warning("notify: unit %s is not in the district configuration", code)
            return []
        if role == "liaisons":
            return _unit_recipients(role, unit, channel)
        return _contact_addresses(role, [unit.head] if unit.head else [], channel)
    if role == "lead_unit":
        return _unit_recipients(role, district.lead_unit, channel)
    if role == "supervision_office":
        return _unit_recipients(role, district.supervision_office, channel)
    if role == "district_leader":
        leaders = _leaders(event, district, contact)
        if not leaders:
            # no leader configured: the lead unit reports upward, as escalation's targets say
            return _unit_recipients("lead_unit", district.lead_unit, channel)
        return _contact_addresses(role, leaders, channel)
    raise ValueError(f"unknown recipient role {role!r}")


def plan_notifications(
    subject: str,
    event: Mapping[str, Any],
    district: District,
    rules: NotifyRules,
    now: datetime,
    contact: Mapping[str, Any] | None = None,
    *,
    urgent: bool = False,
) -> list[PlannedNotification]:
    """The messages an event causes, per the rules: recipients, channel, rendered text and send time.

    ``event`` is the event as JSON (or ``model_dump()``), ``now`` an aware time.
    ``contact`` is the enterprise contact stored at registration (``name``, ``phone``,
    ``lang``, optionally ``enterprise_name`` and ``category``) for events that do not
    carry it; ``urgent`` marks an urgent appeal for events that do not say so
    themselves. Each (channel, address) gets at most one message per event, from
    the first matching rule. SMS texts are shortened to ``rules.sms.max_length``;
    deferrable SMS get ``not_before`` at the end of quiet hours.
    """
    event_id = str(event.get("event_id") or "")
    if not event_id:
        raise ValueError(f"{subject}: the event has no event_id; a notification's identity needs it")
    is_urgent = bool(urgent or event.get("urgent") or (contact or {}).get("urgent"))
    appeal_id = str(event["appeal_id"]) if event.get("appeal_id") else None
    planned: list[PlannedNotification] = []
    seen: set[tuple[str, str]] = set()
    for rule in rules.matching(subject, event):
        template = rules.templates[rule.template]
        for role in rule.recipients:
            reached = False
            for channel in rule.channels:
                recipients = _recipients(role, channel, event, district, contact)
                reached = reached or bool(recipients)
                for r in recipients:
                    if (channel, r.address) in seen:
                        continue
                    seen.add((channel, r.address))
                    planned.append(
                        _plan_one(subject, event, district, rules, now, contact, template, rule.template, channel, r, is_urgent, event_id, appeal_id)
                    )
            if not reached:
                # configuration gap (a unit without liaisons, an appeal without a phone): say so, send the rest
                log.warning("notify: %s %s: no %s address for role %s", subject, event_id, "/".join(rule.channels), role)
    return planned


def _plan_one(
    subject: str,
    event: Mapping[str, Any],
    district: District,
    rules: NotifyRules,
    now: datetime,
    contact: Mapping[str, Any] | None,
    template: Template,
    template_name: str,
    channel: ChannelName,
    recipient: _Recipient,
    urgent: bool,
    event_id: str,
    appeal_id: str | None,
) -> PlannedNotification:
    words = template.text_for(recipient.lang)
    variables = template_variables(
        subject, event, district, recipient.lang, contact=contact, recipient_name=recipient.name, urgent=urgent
    )
    if channel == "sms":
        # an SMS is one paragraph: no line breaks or runs of spaces from free text
        variables = {k: " ".join(v.split()) for k, v in variables.items()}
        text = render(words.text, variables, max_length=rules.sms.max_length, shrink_order=rules.sms.shrink_order)
        not_before = next_send_time(
            now, rules.quiet_hours.parsed, template.kind, urgent, defer_kinds=rules.quiet_hours.defer, tz=rules.quiet_hours.tz
        )
    else:
        text = render(words.text, variables)
        not_before = now
    return PlannedNotification(
        notification_id=notification_id(event_id, recipient.address, channel),
        cause_event_id=event_id,
        cause_subject=subject,
        appeal_id=appeal_id,
        channel=channel,
        address=recipient.address,
        recipient_role=recipient.role,
        recipient_name=recipient.name,
        lang=recipient.lang,
        template=template_name,
        template_kind=template.kind,
        text=text,
        subject=" ".join(render(words.subject, variables).split()) if channel == "email" else None,
        not_before=not_before,
        urgent=urgent,
    )


# --- the enterprise contact ---------------------------------------------------------------

CONTACT_WAIT = timedelta(minutes=30)
"""How long an event that needs the enterprise contact waits for ``ct.appeal.registered``.

Events of one appeal can arrive out of order (each subject family has its own
consumer). An event whose message needs the contact waits for it; after this long
it is planned without it (the enterprise then gets nothing, which is logged).
"""

CONTACT_ROLES = frozenset({"enterprise", "district_leader"})
"""Recipient roles whose address or choice depends on the contact stored at registration."""


def contact_from_registered(event: Mapping[str, Any]) -> dict[str, Any]:
    """The contact kept per appeal from ``ct.appeal.registered``: what later events do not carry.

    Keys: ``name``, ``phone``, ``lang`` (``zh``: the contract carries no language),
    ``enterprise_name``, ``category`` (the sender's category hint) and ``urgent``.
    """
    contact = event.get("contact") if isinstance(event.get("contact"), Mapping) else {}
    enterprise = event.get("enterprise") if isinstance(event.get("enterprise"), Mapping) else {}
    lang = contact.get("lang") if contact.get("lang") in ("zh", "en") else "zh"
    return {
        "name": contact.get("name") or None,
        "phone": contact.get("phone") or None,
        "lang": lang,
        "enterprise_name": enterprise.get("name") or None,
        "category": event.get("category_hint") or None,
        "urgent": bool(event.get("urgent")),
    }


def needs_contact(subject: str, event: Mapping[str, Any], rules: NotifyRules) -> bool:
    """Whether planning this event must wait for the appeal's stored contact.

    True when a matching rule addresses the enterprise and the event carries no
    phone of its own, or addresses a district leader that neither the event's
    targets nor its category name.
    """
    if not event.get("appeal_id"):
        return False
    roles = {role for rule in rules.matching(subject, event) for role in rule.recipients} & CONTACT_ROLES
    if "enterprise" in roles:
        in_event = event.get("contact") if isinstance(event.get("contact"), Mapping) else {}
        if not (in_event.get("phone") or event.get("contact_phone")):
            return True
    if "district_leader" in roles:
        named = any(
            isinstance(t, Mapping) and t.get("role") == "district_leader" and t.get("name")
            for t in event.get("targets") or []
        )
        if not named and not event.get("category"):
            return True
    return False


# --- delivery attempts ------------------------------------------------------------------------

AttemptResult = Literal["delivered", "retried", "failed"]


@dataclass(frozen=True)
class AttemptOutcome:
    """What one delivery attempt leads to: delivered, a retry at ``retry_at``, or a final failure."""

    result: AttemptResult
    retry_at: datetime | None = None
    error: str | None = None


def after_attempt(
    attempt: int,
    now: datetime,
    policy: DeliveryPolicy,
    *,
    error: str | None = None,
    retryable: bool = False,
    rng: random.Random | None = None,
) -> AttemptOutcome:
    """The outcome of attempt number ``attempt`` (from 1): no error is delivered; a retryable
    error is retried after back-off with jitter until ``policy.max_attempts``; anything else fails."""
    if error is None:
        return AttemptOutcome("delivered")
    if retryable and attempt < policy.max_attempts:
        return AttemptOutcome("retried", now + timedelta(seconds=policy.delay(attempt, rng)), error)
    if retryable:
        error = f"{error} (gave up after {attempt} attempts)"
    return AttemptOutcome("failed", None, error)


def outcome_event_id(notification_id: str, result: AttemptResult) -> str:
    """The stable id of a notification's outcome event (one per notification and result)."""
    return f"ntf-{notification_id}-{result}"


# --- SMS replies ----------------------------------------------------------------------------------


def feedback_id_for_sms(message_id: str) -> str:
    """The ``feedback_id`` of a rating sent by SMS: ``sms-`` + the gateway's message id."""
    return f"sms-{message_id}"
