"""Types and validators shared by every contract: credit codes, phones, times, sizes.

Every edge validates with these, so a bad value gets the same field-level error
whichever subject it arrived on.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from shared import clock

SHANGHAI = ZoneInfo("Asia/Shanghai")

# --- unified social credit code (统一社会信用代码, GB 32100-2015) -------------

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, S, V, Z
_USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]  # 1, 3, 9, 27, 19, 26, ...
_USCC_SHAPE = re.compile(r"[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}")


def uscc_check_character(first17: str) -> str:
    """The 18th character of a credit code, computed from the first 17 (mod 31)."""
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def validate_uscc(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 18:
        raise ValueError(f"a unified social credit code has 18 characters, got {len(code)}")
    if not _USCC_SHAPE.fullmatch(code):
        raise ValueError(
            "a unified social credit code uses digits and the letters A-Y without I, O, S, V, Z, "
            "with a 6-digit administrative division code in positions 3-8"
        )
    expected = uscc_check_character(code[:17])
    if code[17] != expected:
        raise ValueError(f"check character is {code[17]!r} but should be {expected!r}")
    return code


# --- phones -----------------------------------------------------------------

# re.ASCII: \d and \s are ASCII only, so full-width or other scripts' digits are not a phone
_MOBILE = re.compile(r"(?:\+?86)?(1[3-9]\d{9})", re.ASCII)
_SERVICE = re.compile(r"((?:400|800)\d{7})", re.ASCII)


def normalize_phone(value: str) -> str:
    """A mainland mobile (11 digits), landline (area code + 7-8 digits) or 400/800 number.

    Spaces, dots and parentheses are ignored; landlines come back as ``028-88886666``.
    """
    raw = re.sub(r"[\s().]", "", value, flags=re.ASCII)
    compact = raw.replace("-", "")
    if m := _MOBILE.fullmatch(compact):
        return m.group(1)
    if m := _SERVICE.fullmatch(compact):
        return m.group(1)
    # a landline: area codes starting 01/02 have 3 digits (010, 028), the others 4 (0755)
    parts = [p for p in re.split(r"(?:ext|转|#|-)", raw) if p]
    if parts and parts[0].startswith("0") and len(parts[0]) in (3, 4) and len(parts) in (2, 3):
        area, number, ext = parts[0], parts[1], (parts[2] if len(parts) == 3 else "")
    elif parts and len(parts) <= 2 and parts[0].startswith("0"):
        size = 3 if parts[0][1:2] in ("1", "2") else 4  # "0" alone has no second digit
        area, number, ext = parts[0][:size], parts[0][size:], (parts[1] if len(parts) == 2 else "")
    else:
        area = number = ext = ""
    if (area and re.fullmatch(r"0[0-9]{2,3}", area) and re.fullmatch(r"[0-9]{7,8}", number)
            and re.fullmatch(r"[0-9]{0,6}", ext) and number[0] != "0"):
        return f"{area}-{number}" + (f"-{ext}" if ext else "")
    raise ValueError("not a mainland mobile (1[3-9] and 9 digits), landline (0 + area code + 7-8 digits) or 400/800 number")


def mask_phone(phone: str) -> str:
    """``13812345678`` → ``138****5678``; keeps only what an operator needs to tell numbers apart."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "****" + digits[-4:]


def mask_name(name: str) -> str:
    """``潘星`` → ``潘*``, ``王洪涛`` → ``王*涛``, ``Alice`` → ``A***e``."""
    name = name.strip()
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


# --- times --------------------------------------------------------------------

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_LONG_FRACTION = re.compile(r"(\.[0-9]{6})[0-9]+")
FUTURE_TOLERANCE = timedelta(minutes=5)
#: the earliest time or date an inbound message may name: the programme is younger, and a year-1 time
#: with a positive offset cannot even be converted to UTC (PostgreSQL's driver raises OverflowError)
EARLIEST = date(2000, 1, 1)


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a time must carry its UTC offset (RFC 3339), e.g. 2026-11-26T09:30:00+08:00")
        return _in_range(value)
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("not an RFC 3339 time with offset, e.g. 2026-11-26T09:30:00+08:00")
    if "." in value:  # Python's fromisoformat takes at most 6 fractional digits
        value = _LONG_FRACTION.sub(r"\1", value)
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError as exc:  # month 13, hour 25, offset +99:00 ...
        raise ValueError(f"not a valid RFC 3339 time ({str(exc).split(',')[0]}), "
                         "e.g. 2026-11-26T09:30:00+08:00") from None
    return _in_range(parsed)


def _in_range(value: datetime) -> datetime:
    # compared on the local date first: comparing or subtracting aware times near year 1 or 9999 overflows
    if value.date() < EARLIEST or value.year >= 9999:
        raise ValueError(f"lies before {EARLIEST.isoformat()} or after 9998-12-31")
    return value


def _not_in_future(value: datetime) -> datetime:
    if value - clock.now() > FUTURE_TOLERANCE:
        raise ValueError("lies more than 5 minutes in the future")
    return value


def past_date(value: date) -> date:
    """A day that has been: not before 2000-01-01 (:data:`EARLIEST`), not after today in Shanghai (one day's skew)."""
    if value < EARLIEST:
        raise ValueError(f"lies before {EARLIEST.isoformat()}")
    if value > clock.now().astimezone(SHANGHAI).date() + timedelta(days=1):
        raise ValueError("lies in the future")
    return value


Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339)]
"""An aware time, RFC 3339 on the wire."""

ReceivedTime = Annotated[datetime, BeforeValidator(_rfc3339), AfterValidator(_not_in_future)]
"""An RFC 3339 time that is not more than 5 minutes in the future (clock skew allowed)."""

Uscc = Annotated[str, AfterValidator(validate_uscc), WithJsonSchema({
    "type": "string", "pattern": "^[0-9A-HJ-NPQRTUWXYa-hj-npqrtuwxy]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXYa-hj-npqrtuwxy]{10}$",
    "description": "18-character unified social credit code; the last character is the GB 32100-2015 check character.",
    "examples": ["914403001922038216"]})]
Phone = Annotated[str, AfterValidator(normalize_phone), WithJsonSchema({
    "type": "string", "description": "Mainland mobile (13812345678, +86 allowed), landline with area code "
    "(028-85551234, extension after a hyphen) or 400/800 number; normalised on receipt.",
    "examples": ["13812345678", "028-85551234"]})]
Content = Annotated[str, Field(min_length=1, max_length=5000), AfterValidator(lambda s: _not_blank(s))]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
SourceId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
UnitCode = Annotated[str, Field(min_length=2, max_length=48, pattern=r"^[a-z][a-z0-9_]*$")]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def to_shanghai(value: datetime) -> str:
    """RFC 3339 in +08:00, the form every outbound time takes."""
    return value.astimezone(SHANGHAI).isoformat()


# --- enumerations -------------------------------------------------------------


class AppealKind(StrEnum):
    appeal = "appeal"
    consultation = "consultation"
    complaint = "complaint"
    suggestion = "suggestion"
    praise = "praise"


class Channel(StrEnum):
    """Where an appeal came from; part of its identity with the source id."""

    hotline = "hotline"
    app = "app"
    reception_day = "reception_day"
    chief_rep = "chief_rep"
    tea_talk = "tea_talk"
    coffee_event = "coffee_event"


class ReceptionChannel(StrEnum):
    reception_day = "reception_day"
    chief_rep = "chief_rep"
    tea_talk = "tea_talk"


class EventKind(StrEnum):
    main = "main"
    sub = "sub"


class Rating(StrEnum):
    satisfied = "satisfied"
    basically_satisfied = "basically_satisfied"
    unsatisfied = "unsatisfied"


# --- base model and errors ------------------------------------------------------


class Message(BaseModel):
    """Base of every contract: unknown fields are ignored (senders may add optional ones)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, use_enum_values=False)


#: what no text field may hold: C0 and C1 control characters but tab, line feed and carriage return (PostgreSQL
#: text cannot store NUL at all), and lone UTF-16 surrogates (JSON's "\\ud800" parses to one; it has no UTF-8)
_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def check_text(value: str) -> str:
    """``value`` unchanged, or a ``ValueError`` naming the first control character or lone surrogate in it."""
    if m := _UNSAFE.search(value):
        ch = m.group()
        what = "a lone surrogate" if "\ud800" <= ch <= "\udfff" else "the control character"
        raise ValueError(f"contains {what} U+{ord(ch):04X} at position {m.start()}; text may hold no control "
                         "characters other than tab and line breaks, and no lone surrogates")
    return value


def printable(value: str, limit: int = 160) -> str:
    """``value`` fit to echo in a rejection, a header or a log: at most ``limit`` characters, each control
    character and lone surrogate written as its ``\\uXXXX`` escape, so it always encodes and PostgreSQL takes it."""
    value = value[:limit]
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", value) if _UNSAFE.search(value) else value


class Inbound(Message):
    """Base of what outside systems and units send: every text field, in lists too, passes :func:`check_text`."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        if isinstance(value, str):
            check_text(value)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str) and _UNSAFE.search(item):
                    try:
                        check_text(item)
                    except ValueError as exc:
                        raise ValueError(f"item {i} {exc}") from None
        return value


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. `items.0.contact_phone`.")
    message: str = Field(description="What is wrong with it, in English.")


def error_message(err: Any) -> str:
    """The message of one pydantic error (an item of ``exc.errors()``), in our words where pydantic's are obscure,
    safe to echo (:func:`printable`: a message may quote the input)."""
    if err["type"] == "string_unicode":  # pydantic's words for a str holding a lone surrogate
        return "contains a lone surrogate (such as \\ud800), which is not a character and has no UTF-8 form"
    return printable(err["msg"].removeprefix("Value error, "), 500)


_NAMED = re.compile(r"([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*): .+", re.ASCII | re.DOTALL)


def field_errors(exc: ValidationError) -> list[FieldError]:
    """One error per field, named by its dotted path, from a pydantic error.

    A rule over several fields (a model validator) names its field by starting its message with it
    (``"rating: required unless outcome is given"``): the error is that field's, not the body's (the message
    keeps its words whole)."""
    out = []
    for err in exc.errors(include_url=False):
        field, message = ".".join(str(p) for p in err["loc"]), error_message(err)
        if not field and (named := _NAMED.fullmatch(message)):
            field = named.group(1)
        out.append(FieldError(field=printable(field or "body", 200), message=message))
    return out


def parse_date(value: str) -> date:
    return date.fromisoformat(value)


def utcnow() -> datetime:
    return datetime.now(UTC)
