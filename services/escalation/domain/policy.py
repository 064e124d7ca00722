"""The escalation policy: when the steps of the handling ladder fire, by category and urgency.

:class:`EscalationPolicy` holds the timings; :class:`PolicyTable` (the policy
book, from configuration) layers category and urgent overrides
(:class:`PolicyOverride`, :class:`CategoryPolicy`) over the default;
:func:`resolve_policy` gives the policy snapshotted on a dispatched order (from the
table alone: dispatch's ``OrderPolicy`` snapshot carries no timings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.district import District


class EscalationPolicy(BaseModel):
    """When the steps of the handling ladder fire. Snapshotted on each order when dispatched.

    Defaults (normal appeals): ``warning_fraction=0.75`` (warn when 75 % of the
    working time allowed has passed), ``warning_days_before=1`` (warn when one
    working day is left; 0 switches this warning off), ``leader_after_days=2``
    (the district leader hears when the order is still overdue 2 working days
    after the deadline), ``supervision_after_days=3`` (the supervision office
    hears 3 working days after the leader step). Urgent appeals use
    :data:`URGENT_POLICY` unless configured otherwise.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    warning_fraction: float = Field(0.75, gt=0, lt=1, description="Share of the allowed working time after which the first warning fires.")
    warning_days_before: int = Field(1, ge=0, le=30, description="Warn when this many working days are left; 0 = no such warning.")
    leader_after_days: int = Field(2, ge=0, le=60, description="Working days after the deadline before the district leader is told.")
    supervision_after_days: int = Field(3, ge=0, le=60, description="Working days after the leader step before the supervision office is told.")

    def to_dict(self) -> dict[str, Any]:
        """The policy as a plain dict, as escalation snapshots it on the order (``orders.policy``)."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> EscalationPolicy:
        """A policy from its snapshot; an empty or missing snapshot gives the defaults."""
        return cls.model_validate(dict(data or {}))


#: Urgent appeals: warn at half time, the district leader after 1 working day
#: overdue, the supervision office 1 working day after that.
URGENT_POLICY = EscalationPolicy(warning_fraction=0.5, warning_days_before=1, leader_after_days=1, supervision_after_days=1)


class PolicyOverride(BaseModel):
    """Fields that replace those of the policy below it; unset fields are inherited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warning_fraction: float | None = Field(None, gt=0, lt=1)
    warning_days_before: int | None = Field(None, ge=0, le=30)
    leader_after_days: int | None = Field(None, ge=0, le=60)
    supervision_after_days: int | None = Field(None, ge=0, le=60)

    def apply(self, policy: EscalationPolicy) -> EscalationPolicy:
        """``policy`` with the fields this override sets replaced; the same policy when it sets none."""
        changes = self.model_dump(exclude_none=True)
        return policy.model_copy(update=changes) if changes else policy


class CategoryPolicy(PolicyOverride):
    """A category's override, with an optional further override for its urgent appeals."""

    urgent: PolicyOverride | None = None


class PolicyTable(BaseModel):
    """Escalation policies by category and urgency, from configuration.

    ``categories`` is keyed by category code or name (as dispatch routes it).
    Resolution, each layer replacing only the fields it sets:
    normal appeal → ``default`` ⊕ category override;
    urgent appeal → ``default`` ⊕ category override ⊕ ``urgent`` ⊕ the category's ``urgent`` override.
    So the urgent tightening wins over a category's normal setting unless the
    category says otherwise for its urgent appeals.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: EscalationPolicy = Field(default_factory=EscalationPolicy)
    urgent: PolicyOverride = Field(default_factory=lambda: PolicyOverride(**URGENT_POLICY.model_dump()))
    categories: dict[str, CategoryPolicy] = Field(default_factory=dict)

    def policy_for(self, category: str | None, urgent: bool, district: District | None = None) -> EscalationPolicy:
        """The policy for an appeal of ``category`` (code or name), urgent or not.

        With ``district``, a category given by name, code or alias finds an
        override keyed by either its code or its name.
        """
        override = self._category_override(category, district)
        policy = self.default
        if override is not None:
            policy = override.apply(policy)
        if urgent:
            policy = self.urgent.apply(policy)
            if override is not None and override.urgent is not None:
                policy = override.urgent.apply(policy)
        return policy

    def _category_override(self, category: str | None, district: District | None) -> CategoryPolicy | None:
        if not category:
            return None
        if category in self.categories:
            return self.categories[category]
        known = district.category(category) if district is not None else None
        if known is not None:
            for key in (known.code, known.name):
                if key in self.categories:
                    return self.categories[key]
        return None


def resolve_policy(
    table: PolicyTable,
    category: str | None,
    urgent: bool,
    district: District | None = None,
) -> EscalationPolicy:
    """The policy to snapshot on a dispatched order: the table's policy for its category and urgency.

    The ladder's timings are escalation's own: ``OrderDispatched.policy`` (an
    ``OrderPolicy``) carries none. What it does carry is not read here either:
    its ``deadline_days`` / ``sign_hours`` repeat the event's own fields, and
    who is told (``district_leader``, ``lead_unit``, ``supervision_office``) is
    resolved from the district configuration when a step fires
    (:mod:`.recipients`), which also gives the names the events carry, so the
    people in office when it fires are told.
    """
    return table.policy_for(category, urgent, district)
