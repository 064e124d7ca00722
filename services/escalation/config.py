"""Escalation's configuration and the per-process context: calendar, district, policies, weights.

``escalation.yaml`` beside this file (or the file named by ``ESCALATION_CONFIG``)
holds the ladder policies, the evaluation weights and local calendar overrides.
It is validated at start-up: a bad file stops the service naming the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from services.escalation.domain import EvaluationWeights, PolicyTable
from shared.district import District, district
from shared.workcalendar import WorkCalendar

DEFAULT_PATH = Path(__file__).with_name("escalation.yaml")

SCAN_BATCH = 500
"""Firings the scanner claims per transaction."""

GAUGE_REFRESH_S = 15.0
"""Period of the business gauges (closure, satisfaction, on-time rates; open and overdue orders)."""


class EvaluationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_orders: int = Field(5, ge=0, description="Units with fewer orders received in the month are listed, not ranked.")
    weights: EvaluationWeights = Field(default_factory=EvaluationWeights)


class EscalationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    policies: PolicyTable = Field(default_factory=PolicyTable)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    calendar_overrides: dict[date, bool] = Field(default_factory=dict)


def load_config(path: str | Path | None = None) -> EscalationConfig:
    path = Path(path or os.environ.get("ESCALATION_CONFIG") or DEFAULT_PATH)
    return EscalationConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


@dataclass(frozen=True)
class Context:
    """What every part of the service shares in a process: one calendar, the district, the configuration."""

    calendar: WorkCalendar
    district: District
    config: EscalationConfig

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


@lru_cache(maxsize=4)
def context(district_config: str | None = None, config_path: str | None = None) -> Context:
    """The process's context, built once (one :class:`WorkCalendar` per process)."""
    config = load_config(config_path)
    return Context(calendar=WorkCalendar(config.calendar_overrides), district=district(district_config), config=config)
