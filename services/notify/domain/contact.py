"""The enterprise contact: what ``ct.appeal.registered`` leaves for later events, and when an event waits for it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.notify.domain.rules import NotifyRules


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
