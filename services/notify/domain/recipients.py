"""Recipients: who is addressed for a role, on which channel, at which address, in which language.

The roles: the enterprise (by SMS, from the event or the contact stored at
registration), a unit's liaisons (its head when it names none, plus its group
robot on WeCom), the unit head, the lead unit, district leaders (named by the
event, else by category, else the lead unit reports upward) and the supervision
office. Addresses come from the district configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from shared.district import Contact, District, Unit

if TYPE_CHECKING:
    from services.notify.domain.contact import EnterpriseContact
    from services.notify.domain.facts import EventFacts

ChannelName = Literal["sms", "email", "wecom"]
Lang = Literal["zh", "en"]
RecipientRole = Literal["enterprise", "liaisons", "unit_head", "lead_unit", "district_leader", "supervision_office"]


@dataclass(frozen=True)
class Recipient:
    """One addressee: the role it is reached in, its name, its address on the channel and its language."""

    role: RecipientRole
    name: str
    address: str
    lang: Lang


def _contacts_of(unit: Unit) -> list[Contact]:
    """A unit's fixed liaisons; its head when it names none."""
    if unit.liaisons:
        return list(unit.liaisons)
    return [unit.head] if unit.head else []


def _group_lang(contacts: Sequence[Contact]) -> Lang:
    return "en" if contacts and all(c.lang == "en" for c in contacts) else "zh"


def _contact_addresses(role: RecipientRole, contacts: Sequence[Contact], channel: ChannelName) -> list[Recipient]:
    out = []
    for c in contacts:
        address = {"sms": c.phone, "email": c.email, "wecom": c.wecom_webhook}[channel]
        if address:
            out.append(Recipient(role, c.name, address, c.lang))  # type: ignore[arg-type]
    return out


def _unit_recipients(role: RecipientRole, unit: Unit, channel: ChannelName) -> list[Recipient]:
    contacts = _contacts_of(unit)
    if channel != "wecom":
        return _contact_addresses(role, contacts, channel)
    out = [Recipient(role, unit.name, unit.wecom_webhook, _group_lang(contacts))] if unit.wecom_webhook else []
    return out + _contact_addresses(role, contacts, channel)


def _enterprise_recipient(event: EventFacts, contact: EnterpriseContact | None) -> Recipient | None:
    phone = event.contact_phone or (contact.phone if contact else None)
    if not phone:
        return None
    name = event.contact_name or (contact.name if contact else None) or ""
    lang: Lang = "en" if contact is not None and contact.lang == "en" else "zh"
    return Recipient("enterprise", name, phone, lang)


def _leaders(event: EventFacts, district: District, contact: EnterpriseContact | None) -> list[Contact]:
    chosen = [leader for leader in district.leaders
              if leader.name in event.leaders_named or leader.leader_id in event.leaders_named]
    if not chosen:
        category = event.category or (contact.category if contact else None)
        leader = district.leader_for(category or None)
        chosen = [leader] if leader else []
    return [leader.contact for leader in chosen]


def recipients_for(
    role: RecipientRole,
    channel: ChannelName,
    event: EventFacts,
    district: District,
    contact: EnterpriseContact | None,
    note: Callable[[str], object] | None = None,
) -> list[Recipient]:
    """Who a rule's ``role`` addresses on ``channel`` for this event, with their addresses.

    The enterprise is reached by SMS only. A unit code the district does not know
    gives nobody, and ``note`` (when given) hears of it.
    """
    if role == "enterprise":
        if channel != "sms":
            return []
        r = _enterprise_recipient(event, contact)
        return [r] if r else []
    if role in ("liaisons", "unit_head"):
        code = event.unit_code
        if not code:
            return []
        try:
            unit = district.unit(code)
        except KeyError:
            if note is not None:
                note(f"notify: unit {code} is not in the district configuration")
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
