"""Who hears each step: the unit's liaisons, its head (督办), the lead unit, the district leader, the supervision office."""

from __future__ import annotations

from services.escalation.domain.ladder import WARNING_LEVELS, Clock, TargetLevel
from shared.district import Contact, District, Unit


def targets_for(
    level: TargetLevel,
    unit: str | Unit,
    district: District,
    category: str | None,
    clock: Clock = "handling",
) -> list[dict[str, str | None]]:
    """Who must hear a step, as ``Person`` dicts (``role``, ``name``, ``unit_code``).

    * ``warning_75`` / ``warning_1d`` → the unit's liaisons (the unit itself when it has none, for its group robot);
    * ``overdue`` on the handling clock → the unit's head (督办) and the lead unit;
    * ``overdue`` on the sign-for clock → the lead unit and the unit's liaisons (who must sign);
    * ``district_leader`` → the leader who coordinates ``category`` (``district.leader_for``),
      or the lead unit when no leader is configured;
    * ``supervision`` → the supervision office (督查室);
    * ``difficult`` (the unit flagged the appeal difficult or major) → at once the
      district leader, and the lead unit, which reports it.

    ``unit`` is a unit code or a :class:`Unit`; an unknown code raises ``KeyError``.
    A unit's head missing from the configuration is replaced by the unit itself.
    """
    handling_unit = unit if isinstance(unit, Unit) else district.unit(unit)
    lead = _organisation("lead_unit", district.lead_unit)
    if level in WARNING_LEVELS:
        return _liaisons(handling_unit)
    if level == "overdue":
        if clock == "sign_for":
            return [lead, *_liaisons(handling_unit)]
        head = handling_unit.head
        return [_person("unit_head", head, handling_unit) if head else _organisation("unit_head", handling_unit), lead]
    if level == "district_leader":
        return [_leader(district, category) or lead]
    if level == "supervision":
        return [_organisation("supervision_office", district.supervision_office)]
    if level == "difficult":
        leader = _leader(district, category)
        return [leader, lead] if leader else [lead]
    raise ValueError(f"unknown level {level!r}")


def _person(role: str, contact: Contact, unit: Unit | None) -> dict[str, str | None]:
    return {"role": role, "name": contact.name, "unit_code": unit.unit_code if unit else None}


def _organisation(role: str, unit: Unit) -> dict[str, str | None]:
    """A unit as a recipient: its head when configured, else its first liaison, else the unit by name."""
    contact = unit.head or (unit.liaisons[0] if unit.liaisons else None)
    return {"role": role, "name": contact.name if contact else unit.name, "unit_code": unit.unit_code}


def _liaisons(unit: Unit) -> list[dict[str, str | None]]:
    if not unit.liaisons:
        return [{"role": "liaison", "name": unit.name, "unit_code": unit.unit_code}]
    return [_person("liaison", c, unit) for c in unit.liaisons]


def _leader(district: District, category: str | None) -> dict[str, str | None] | None:
    leader = district.leader_for(category)
    if leader is None:
        return None
    return {"role": "district_leader", "name": leader.name, "unit_code": None}


def targets_for_order(
    level: TargetLevel, unit_code: str, district: District, category: str | None, clock: Clock = "handling",
) -> list[dict[str, str | None]]:
    """:func:`targets_for`, with a unit missing from the configuration told through the lead unit.

    An order of a unit no longer (or not yet) configured must still reach
    someone: the lead unit stands in for it.
    """
    try:
        return targets_for(level, unit_code, district, category, clock)
    except KeyError:
        return targets_for(level, district.lead_unit, district, category, clock)
