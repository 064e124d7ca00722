"""Planning: an event → the notifications it causes, each with a stable identity.

The planning use case gives :func:`plan_notifications` an event (its contract model),
the district configuration and the rules; it gets back the messages to send, each
identified by (cause event, recipient, channel) so a redelivered event never sends a
message twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.notify.domain.contact import CONTACT_ROLES, EnterpriseContact
from services.notify.domain.facts import EventFacts, facts_of
from services.notify.domain.masking import mask_address
from services.notify.domain.quiet_hours import next_send_time
from services.notify.domain.recipients import ChannelName, Lang, Recipient, RecipientRole, recipients_for
from services.notify.domain.rules import NotifyRules
from services.notify.domain.templates import Template, TemplateKind, render
from services.notify.domain.variables import template_variables
from shared.district import District


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


def plan_notifications(
    subject: str,
    event: BaseModel | EventFacts,
    district: District,
    rules: NotifyRules,
    now: datetime,
    contact: EnterpriseContact | None = None,
    *,
    urgent: bool = False,
    note: Callable[[str], object] | None = None,
) -> list[PlannedNotification]:
    """The messages an event causes, per the rules: recipients, channel, rendered text and send time.

    ``event`` is the event's contract model (``shared.contracts.events``) or its
    :class:`~services.notify.domain.facts.EventFacts`; ``now`` an aware time.
    ``contact`` is the enterprise contact stored at registration for events that do
    not carry it; ``urgent`` marks an urgent appeal for events that do not say so
    themselves. Each (channel, address) gets at most one message per event, from
    the first matching rule. SMS texts are shortened to ``rules.sms.max_length``;
    deferrable SMS get ``not_before`` at the end of quiet hours. ``note`` (for instance
    a logger's ``warning``) hears of configuration gaps: a unit the district does not
    know, a role with no address on the rule's channels; the other messages are planned.
    """
    facts = event if isinstance(event, EventFacts) else facts_of(subject, event)
    event_id = facts.event_id
    if not event_id:
        raise ValueError(f"{subject}: the event has no event_id; a notification's identity needs it")
    is_urgent = bool(urgent or facts.urgent or (contact is not None and contact.urgent))
    planned: list[PlannedNotification] = []
    seen: set[tuple[str, str]] = set()
    for rule in rules.matching(subject, facts.event):
        template = rules.templates[rule.template]
        for role in rule.recipients:
            reached = False
            for channel in rule.channels:
                recipients = recipients_for(role, channel, facts, district, contact, note)
                reached = reached or bool(recipients)
                for r in recipients:
                    if (channel, r.address) in seen:
                        continue
                    seen.add((channel, r.address))
                    planned.append(_plan_one(facts, district, rules, now, contact, template, rule.template,
                                             channel, r, is_urgent))
            if not reached:
                # configuration gap (a unit without liaisons, an appeal without a phone): say so, send the rest
                if note is not None:
                    note(f"notify: {subject} {event_id}: no {'/'.join(rule.channels)} address for role {role}")
    return planned


def _plan_one(
    event: EventFacts,
    district: District,
    rules: NotifyRules,
    now: datetime,
    contact: EnterpriseContact | None,
    template: Template,
    template_name: str,
    channel: ChannelName,
    recipient: Recipient,
    urgent: bool,
) -> PlannedNotification:
    words = template.text_for(recipient.lang)
    variables = template_variables(
        event.subject, event, district, recipient.lang, contact=contact, recipient_name=recipient.name, urgent=urgent
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
        notification_id=notification_id(event.event_id, recipient.address, channel),
        cause_event_id=event.event_id,
        cause_subject=event.subject,
        appeal_id=event.appeal_id,
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


def needs_contact(subject: str, event: BaseModel | EventFacts, rules: NotifyRules) -> bool:
    """Whether planning this event must wait for the appeal's stored contact.

    True when a matching rule addresses the enterprise and the event carries no
    phone of its own, or addresses a district leader that neither the event's
    targets nor its category name.
    """
    facts = event if isinstance(event, EventFacts) else facts_of(subject, event)
    if not facts.appeal_id:
        return False
    roles = {role for rule in rules.matching(subject, facts.event) for role in rule.recipients} & CONTACT_ROLES
    if "enterprise" in roles and not facts.contact_phone:
        return True
    return "district_leader" in roles and not facts.leaders_named and not facts.category
