"""Template variables: what each ``{placeholder}`` says for one event, in zh or en.

Labels (主办 / lead, 签收 / sign-for, levels, outcomes), times shown in Asia/Shanghai,
durations in days and hours, the lines of a monthly list, and the late units and orders
an escalation to the district leader or the supervision office names.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from services.notify.domain.facts import LateOrderLine
from services.notify.domain.quiet_hours import SHANGHAI
from services.notify.domain.ratings import RATING_INSTRUCTIONS
from shared.district import District

if TYPE_CHECKING:
    from services.notify.domain.contact import EnterpriseContact
    from services.notify.domain.facts import EventFacts

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
        "moved_later": "顺延{n}个工作日",
        "moved_earlier": "提前{n}个工作日",
        "moved_same": "工作日数不变",
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
        "moved_later": "{n} working day(s) later",
        "moved_earlier": "{n} working day(s) earlier",
        "moved_same": "the same number of working days",
    },
}


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


def _items(event: EventFacts, lang: str) -> str:
    lines = []
    for i, item in enumerate(event.items, start=1):
        head = f"{i}. {item.appeal_id} {item.unit}".rstrip()
        bits = []
        if item.enterprise:
            bits.append(item.enterprise)
        if item.summary:
            bits.append(item.summary)
        if item.due_at:
            bits.append(("due " if lang == "en" else "时限") + _fmt_time(item.due_at, lang))
        if item.overdue_seconds:
            late = _fmt_duration(item.overdue_seconds, lang)
            bits.append(f"{late} overdue" if lang == "en" else f"超期{late}")
        if item.level:
            bits.append(_label(lang, "level", item.level))
        sep = "; " if lang == "en" else "；"
        lines.append(head + (": " if lang == "en" else "：") + sep.join(bits) if bits else head)
    return "\n".join(lines)


def _unit_name(unit: str | None, unit_code: str | None, district: District) -> str:
    if unit:
        return unit
    if not unit_code:
        return ""
    try:
        return district.unit(unit_code).name
    except KeyError:
        return unit_code


def _late_orders(event: EventFacts) -> tuple[LateOrderLine, ...]:
    """The late orders the event names; an event without the list names its own order when it is late."""
    if event.late_orders:
        return event.late_orders
    if event.order_id and event.unit_code and event.overdue_seconds:
        return (LateOrderLine(order_id=event.order_id, unit_code=event.unit_code, unit=event.unit or "",
                              role=event.role, due_at=event.due_at, overdue_seconds=event.overdue_seconds),)
    return ()


def _late_units(late: tuple[LateOrderLine, ...], district: District, lang: str) -> str:
    """``区公安分局交警大队（主办，超期2天）、区交通运输局（协办，超期1天）``: short enough for an SMS."""
    parts = []
    for o in late:
        bits = [b for b in (_label(lang, "order_role", o.role) if o.role else "",
                            (f"{_fmt_duration(o.overdue_seconds, lang)} overdue" if lang == "en"
                             else f"超期{_fmt_duration(o.overdue_seconds, lang)}")) if b]
        name = _unit_name(o.unit, o.unit_code, district)
        parts.append(f"{name} ({', '.join(bits)})" if lang == "en" else f"{name}（{'，'.join(bits)}）")
    return ("; " if lang == "en" else "、").join(parts)


def _late_order_lines(late: tuple[LateOrderLine, ...], district: District, lang: str) -> str:
    """One line a late order: ``1. 工单CT-…-01 区公安分局交警大队（主办）：时限10月13日 17:30；超期7天``."""
    lines = []
    for i, o in enumerate(late, start=1):
        name = _unit_name(o.unit, o.unit_code, district)
        role = _label(lang, "order_role", o.role) if o.role else ""
        late_by = _fmt_duration(o.overdue_seconds, lang)
        if lang == "en":
            head = f"{i}. work order {o.order_id}, {name}" + (f" ({role})" if role else "")
            bits = ([f"due {_fmt_time(o.due_at, lang)}"] if o.due_at else []) + [f"{late_by} overdue"]
            lines.append(f"{head}: {'; '.join(bits)}")
        else:
            head = f"{i}. 工单{o.order_id} {name}" + (f"（{role}）" if role else "")
            bits = ([f"时限{_fmt_time(o.due_at, lang)}"] if o.due_at else []) + [f"超期{late_by}"]
            lines.append(f"{head}：{'；'.join(bits)}")
    return "\n".join(lines)


def template_variables(
    subject: str,
    event: EventFacts,
    district: District,
    lang: str,
    *,
    contact: EnterpriseContact | None = None,
    recipient_name: str = "",
    urgent: bool = False,
) -> dict[str, str]:
    """The values of every template variable for one event, in one language.

    Values come from the event first; the enterprise's name may also come from the
    contact stored at registration, and the unit's name from the district.
    """
    lang = "en" if lang == "en" else "zh"
    labels = _LABELS[lang]
    unit_name = _unit_name(event.unit, event.unit_code, district)
    late = _late_orders(event)
    if event.due_at is not None:
        deadline = _fmt_time(event.due_at, lang)
    elif event.deadline_days is not None:
        deadline = labels["working_days"].format(n=event.deadline_days)
    else:
        deadline = ""
    reason = event.reason or ("; " if lang == "en" else "；").join(event.reasons)
    enterprise = event.enterprise_name or (contact.enterprise_name if contact else None)
    return {
        "appeal_id": event.appeal_id or "",
        "order_id": event.order_id or "",
        "enterprise": enterprise or labels["no_enterprise"],
        "unit": unit_name,
        "order_role": _label(lang, "order_role", event.role),
        "summary": event.summary,
        "reply": event.reply or "",
        "resolved": labels["resolved"][event.resolved] if event.resolved is not None else "",
        "deadline": deadline,
        "deadline_days": _fmt_number(event.deadline_days),
        "sign_hours": _fmt_number(event.sign_hours),
        "clock": _label(lang, "clock", event.clock or ("handling" if subject.endswith("escalated") else None)),
        "level": _label(lang, "level", event.level),
        "reason": reason,
        "days": _fmt_number(event.days),
        "return_count": _fmt_number(event.return_count),
        "reopen_count": _fmt_number(event.reopen_count),
        "overdue": _fmt_duration(event.overdue_seconds, lang),
        "outcome": _label(lang, "outcome", event.outcome),
        "answer": event.answer or "",
        "comment": event.comment or "",
        "category": event.category or event.category_hint or "",
        "recipient": recipient_name,
        "district": district.name,
        "urgent_mark": labels["urgent_mark"] if urgent else "",
        "rating_instructions": RATING_INSTRUCTIONS[lang],
        "month": event.month or "",
        "items": _items(event, lang),
        "item_count": str(len(event.items)),
        "late_units": _late_units(late, district, lang),
        "late_orders": _late_order_lines(late, district, lang),
        "late_count": str(len(late)),
        "previous_deadline": _fmt_time(event.previous_due_at, lang) if event.previous_due_at else "",
        "moved_by": _moved_by(event.working_days, labels),
    }


def _moved_by(working_days: int | None, labels: dict[str, Any]) -> str:
    """How far a revised calendar moved a deadline, in working days: 顺延1个工作日 / 1 working day(s) later."""
    if working_days is None:
        return ""
    if working_days == 0:
        return labels["moved_same"]
    return labels["moved_later" if working_days > 0 else "moved_earlier"].format(n=abs(working_days))
