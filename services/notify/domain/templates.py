"""Templates: the words of a message in zh and en, their ``{placeholders}``, and shortening an SMS to fit.

A template names its :class:`TemplateKind` (which decides whether quiet hours hold it
back) and may use only the variables of :data:`TEMPLATE_VARIABLES`. :func:`render` fills
them; for an SMS it trims the shortenable variables, never the protected ones.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ELLIPSIS = "…"


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
    "late_units": "The late units an escalation names, with their role and how late (the leader's SMS).",
    "late_orders": "The late work orders an escalation names, one a line: order, unit, deadline, how late.",
    "late_count": "How many late work orders an escalation names.",
    "previous_deadline": "The deadline before a revised calendar moved it (ct.deadline.moved).",
    "moved_by": "How far it moved, in working days (顺延1个工作日 / 1 working day(s) later).",
}

PROTECTED_VARIABLES = frozenset({"appeal_id", "order_id", "deadline", "rating_instructions", "urgent_mark"})
"""Never shortened to fit an SMS."""

DEFAULT_SHRINK_ORDER: tuple[str, ...] = (
    "summary", "reply", "answer", "comment", "reason", "items", "late_orders", "enterprise", "recipient", "unit",
    "late_units",
)


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
