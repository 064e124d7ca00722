"""The rules book (``rules.yaml``): event subject, condition, recipients, channels and template.

:func:`rules_from_document` validates a document already loaded into a dict; reading
the file and applying the environment's overrides is ``services/notify/config.py``'s
job. A bad document is refused with a :class:`RulesError` naming the source and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from services.notify.domain.quiet_hours import QuietHoursPolicy
from services.notify.domain.ratings import RATING_INSTRUCTIONS
from services.notify.domain.recipients import ChannelName, RecipientRole
from services.notify.domain.retries import DeliveryPolicy
from services.notify.domain.templates import ELLIPSIS, TEMPLATE_VARIABLES, SmsPolicy, Template, render
from shared.contracts import subjects
from shared.contracts.subjects import subject_matches

MONTHLY_LIST_SUBJECT = subjects.DEADLINE_MONTHLY_LIST
"""The monthly list for the supervision office (``shared.contracts.events.MonthlyList``, from escalation)."""


class RulesError(ValueError):
    """The rules file is missing or invalid; the message names the file and the field."""


Scalar = str | int | float | bool | None


class Rule(BaseModel):
    """Event subject → recipients → channels → template."""

    model_config = ConfigDict(extra="forbid")
    subject: str = Field(pattern=r"^[A-Za-z0-9_\-*>]+(\.[A-Za-z0-9_\-*>]+)*$")
    when: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    recipients: list[RecipientRole] = Field(min_length=1)
    channels: list[ChannelName] = Field(min_length=1)
    template: str

    def applies(self, event: BaseModel) -> bool:
        """Whether every ``when`` field of the event has an accepted value (its subject is matched by the caller,
        :meth:`NotifyRules.matching`).

        ``when`` names fields of the event's contract model (``outcome``, ``level``,
        ``accepted``; a dotted path reaches into a nested model).
        """
        for path, expected in self.when.items():
            actual = _lookup(event, path)
            accepted = expected if isinstance(expected, list) else [expected]
            if not any(_same(actual, a) for a in accepted):
                return False
        return True


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
    "late_units": "区经济科技和信息化局（主办，超期10天23小时）、区住房和城乡建设局（协办，超期9天）",
    "late_orders": "",
    "late_count": "2",
    "previous_deadline": "1月1日 17:30",
    "moved_by": "顺延1个工作日",
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
    _by_subject: dict[str, tuple[Rule, ...]] = PrivateAttr(default_factory=dict)
    """The rules whose subject pattern matches each subject seen, for the list ``_by_subject_of``."""
    _by_subject_of: list[Rule] | None = PrivateAttr(default=None)

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

    def matching(self, subject: str, event: BaseModel) -> list[Rule]:
        """The rules that apply to an event, in file order (those of its subject found once per subject)."""
        if self._by_subject_of is not self.rules:  # a copy with other rules (model_copy) starts afresh
            self._by_subject, self._by_subject_of = {}, self.rules
        of_subject = self._by_subject.get(subject)
        if of_subject is None:
            of_subject = self._by_subject[subject] = tuple(r for r in self.rules if subject_matches(r.subject, subject))
        return [r for r in of_subject if r.applies(event)]


def _lookup(event: BaseModel, path: str) -> Any:
    value: Any = event
    for part in path.split("."):
        if isinstance(value, BaseModel):
            value = getattr(value, part, None)
        elif isinstance(value, Mapping):  # a field the contract types as a plain mapping
            value = value.get(part)
        else:
            return None
    return value


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual is expected
    if isinstance(actual, StrEnum):
        actual = actual.value
    return actual == expected


def rules_from_document(document: object, source: str = "rules") -> NotifyRules:
    """Validate a rules document already loaded into a dict (``rules.yaml`` parsed, overrides applied).

    Raises :class:`RulesError` naming ``source`` (the file) and the field.
    """
    if not isinstance(document, dict):
        raise RulesError(f"{source}: expected a mapping at the top level")
    try:
        return NotifyRules.model_validate(document)
    except ValidationError as exc:
        raise RulesError(f"{source}: {exc}") from exc
