"""Notify's rules, pure: who hears about an event, on which channel, in which words, and when.

Nothing here does I/O, reads the environment, logs or draws random numbers of its own:
the rules arrive as a validated :class:`NotifyRules` (``services/notify/config.py`` reads
``rules.yaml`` and the overrides), jitter comes from a ``random.Random`` the caller
passes, and configuration gaps go to a ``note`` callback. Which file holds what:

- ``rules.py``: the rules book (subject, condition, recipients, channels, template)
  and :func:`rules_from_document`, which validates a loaded document;
- ``templates.py``: template kinds and texts in zh/en, :func:`render` and SMS shortening;
- ``variables.py``: what each template variable says for one event, in zh or en;
- ``quiet_hours.py``: the quiet window and when a deferrable SMS may go;
- ``recipients.py``: who a role addresses (enterprise, liaisons, unit head, lead unit,
  district leaders, supervision office) and at which address;
- ``facts.py``: what notify reads from an event, one typed view built from its contract model;
- ``planning.py``: event → planned notifications, each with a stable id, and whether an event waits for the contact;
- ``contact.py``: the enterprise contact kept from registration, and how long an event may wait for it;
- ``retries.py``: the attempt budget, back-off with jitter, the outcome of an attempt;
- ``ratings.py``: the rating instructions and reading an SMS reply's rating;
- ``masking.py``: addresses as logs and outcome events show them.

The channel clients live in ``services/notify/channels.py``.
"""

from __future__ import annotations

from services.notify.domain.contact import (
    CONTACT_ROLES,
    CONTACT_WAIT,
    EnterpriseContact,
    contact_from_registered,
)
from services.notify.domain.facts import EventFacts, ListItem, facts_of
from services.notify.domain.masking import mask_address
from services.notify.domain.planning import PlannedNotification, needs_contact, notification_id, plan_notifications
from services.notify.domain.quiet_hours import (
    DEFAULT_DEFER_KINDS,
    SHANGHAI,
    QuietHoursPolicy,
    QuietWindow,
    next_send_time,
    parse_quiet_hours,
)
from services.notify.domain.ratings import (
    RATING_INSTRUCTIONS,
    feedback_id_for_sms,
    parse_rating_reply,
    rating_invitation_text,
)
from services.notify.domain.recipients import ChannelName, Lang, Recipient, RecipientRole, recipients_for
from services.notify.domain.retries import (
    AttemptOutcome,
    AttemptResult,
    DeliveryPolicy,
    RandomSource,
    after_attempt,
    backoff,
    outcome_event_id,
)
from services.notify.domain.rules import (
    MONTHLY_LIST_SUBJECT,
    NotifyRules,
    Rule,
    RulesError,
    Scalar,
    rules_from_document,
    subject_matches,
)
from services.notify.domain.templates import (
    DEFAULT_SHRINK_ORDER,
    ELLIPSIS,
    PROTECTED_VARIABLES,
    TEMPLATE_VARIABLES,
    SmsPolicy,
    Template,
    TemplateKind,
    TemplateText,
    placeholders,
    render,
)
from services.notify.domain.variables import template_variables

__all__ = [
    "CONTACT_ROLES", "CONTACT_WAIT", "DEFAULT_DEFER_KINDS", "DEFAULT_SHRINK_ORDER", "ELLIPSIS",
    "MONTHLY_LIST_SUBJECT", "PROTECTED_VARIABLES", "RATING_INSTRUCTIONS", "SHANGHAI", "TEMPLATE_VARIABLES",
    "AttemptOutcome", "AttemptResult", "ChannelName", "DeliveryPolicy", "EnterpriseContact", "EventFacts", "Lang",
    "ListItem", "NotifyRules", "PlannedNotification",
    "QuietHoursPolicy", "QuietWindow", "RandomSource", "Recipient", "RecipientRole", "Rule", "RulesError", "Scalar",
    "SmsPolicy", "Template", "TemplateKind", "TemplateText",
    "after_attempt", "backoff", "contact_from_registered", "facts_of", "feedback_id_for_sms", "mask_address",
    "needs_contact", "next_send_time", "notification_id", "outcome_event_id", "parse_quiet_hours",
    "parse_rating_reply", "placeholders", "plan_notifications", "rating_invitation_text", "recipients_for",
    "render", "rules_from_document", "subject_matches", "template_variables",
]
