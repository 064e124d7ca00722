"""Escalation's configuration and the per-process context: calendar, district, policies, weights.

``escalation.yaml`` beside this file (or the file named by ``ESCALATION_CONFIG``)
holds the ladder policies, the evaluation weights and local calendar overrides.
It is validated at start-up: a bad file stops the service naming the field.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from services.escalation.domain import EvaluationWeights, PolicyTable
from services.escalation.domain.follow_ups import FollowUpPolicy
from shared.district import District, district
from shared.workcalendar import WorkCalendar

DEFAULT_PATH = Path(__file__).with_name("escalation.yaml")

SCAN_BATCH = 500
"""Firings the scanner claims per transaction."""

GAUGE_REFRESH_S = 15.0
"""Period of the business gauges (closure, satisfaction, on-time rates; open and overdue orders)."""

CALENDAR_POLL_S = 5.0
"""How often a replica looks whether another loaded a State Council year (it also looks in every clock batch)."""

log = logging.getLogger("coffeetime.escalation.calendar")


class EvaluationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_orders: int = Field(5, ge=0, description="Units with fewer orders received in the month are listed, not ranked.")
    weights: EvaluationWeights = Field(default_factory=EvaluationWeights)


class EscalationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    policies: PolicyTable = Field(default_factory=PolicyTable)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    calendar_overrides: dict[date, bool] = Field(default_factory=dict)
    follow_ups: FollowUpPolicy = Field(default_factory=FollowUpPolicy)


def load_config(path: str | Path | None = None) -> EscalationConfig:
    path = Path(path or os.environ.get("ESCALATION_CONFIG") or DEFAULT_PATH)
    return EscalationConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


class CalendarSync:
    """Which loaded State Council years this process's calendar holds, and bringing it up to date.

    ``refresh`` reads the signature of the stored years (one small query) and,
    when it differs from the one the calendar was built from, reads the years and
    swaps them into the calendar. The clock handler calls it after locking its
    appeals, so an order re-planned under a newly loaded year is never planned
    again under the old calendar by a replica that has not noticed yet.
    """

    def __init__(self) -> None:
        self.signature: str | None = None
        self.changes = 0
        self.replans = 0  # re-plans finished (not dry runs), the start-up one included

    async def refresh(self, repository, calendar: WorkCalendar) -> bool:
        """Bring ``calendar`` up to date with the stored years (``repository``: a ``CalendarRepository``)."""
        signature = await repository.signature()
        if signature == self.signature:
            return False
        years = await repository.years() if signature else []
        changed = calendar.set_loaded_years(years)
        self.signature = signature
        if changed:
            self.changes += 1
            log.info("State Council years loaded into the work calendar",
                     extra={"years": sorted(calendar.loaded_years)})
        return changed

    @staticmethod
    def reason(calendar: WorkCalendar) -> str:
        """Why a deadline moved, in English: the calendar the process plans with now."""
        loaded = ", ".join(str(y) for y in sorted(calendar.loaded_years)) or "none"
        return (f"working-day calendar revised (State Council years loaded: {loaded}; "
                f"local overrides: {len(calendar.overrides)})")


@dataclass(frozen=True)
class Context:
    """What every part of the service shares in a process: one calendar, the district, the configuration."""

    calendar: WorkCalendar
    district: District
    config: EscalationConfig
    calendar_sync: CalendarSync = field(default_factory=CalendarSync, compare=False)

    @property
    def policies(self) -> PolicyTable:
        return self.config.policies

    @property
    def weights(self) -> EvaluationWeights:
        return self.config.evaluation.weights

    @property
    def min_orders(self) -> int:
        return self.config.evaluation.min_orders

    def unit_name(self, unit_code: str) -> str:
        try:
            return self.district.unit(unit_code).name
        except KeyError:
            return unit_code


def build_context(district_config: str | None = None, config_path: str | None = None) -> Context:
    """A new context: its own calendar (a command line tool builds one; a service shares :func:`context`)."""
    config = load_config(config_path)
    return Context(calendar=WorkCalendar(config.calendar_overrides), district=district(district_config), config=config)


@lru_cache(maxsize=4)
def context(district_config: str | None = None, config_path: str | None = None) -> Context:
    """The process's context, built once (one :class:`WorkCalendar` per process)."""
    return build_context(district_config, config_path)
