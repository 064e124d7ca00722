"""The enterprise contact: what ``ct.appeal.registered`` leaves for later events, and when an event waits for it."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.contracts.events import AppealRegistered

CONTACT_WAIT = timedelta(minutes=30)
"""How long an event that needs the enterprise contact waits for ``ct.appeal.registered``.

Events of one appeal can arrive out of order (each subject family has its own
consumer). An event whose message needs the contact waits for it; after this long
it is planned without it (the enterprise then gets nothing, which is logged).
"""

CONTACT_ROLES = frozenset({"enterprise", "district_leader"})
"""Recipient roles whose address or choice depends on the contact stored at registration."""


class EnterpriseContact(BaseModel):
    """The contact kept per appeal from ``ct.appeal.registered``: what later events do not carry."""

    model_config = ConfigDict(frozen=True)
    name: str | None = None
    phone: str | None = None
    lang: Literal["zh", "en"] = "zh"
    """``zh`` unless told otherwise: the contract carries no language."""
    enterprise_name: str | None = None
    category: str | None = None
    """The sender's category hint."""
    urgent: bool = False


def contact_from_registered(event: AppealRegistered) -> EnterpriseContact:
    """The contact to keep from a registration: name, phone, enterprise, category hint, urgency."""
    return EnterpriseContact(
        name=event.contact.name or None,
        phone=event.contact.phone or None,
        enterprise_name=event.enterprise.name or None,
        category=event.category_hint or None,
        urgent=bool(event.urgent),
    )
