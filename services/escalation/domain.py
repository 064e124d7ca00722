"""Escalation rules, pure: the ladder of warnings and escalations, who hears each step, and the unit ranking.

Two clocks run on every work order (see :mod:`shared.workcalendar`):

* ``sign_for`` — working hours from dispatch until the unit signs for the order
  (签收). Its ladder is only ``overdue``: sign-for limits are a few working
  hours, and the liaisons were already told at dispatch, so a warning would be
  noise. A late signature is reported to the lead unit (and the unit's
  liaisons, who must sign).
* ``handling`` — working days from receipt until the unit replies (办理时限).
  Its ladder, with the default policy::

      warning_75        75 % of the working time allowed has passed
      warning_1d        one working day is left (the opening of the last day)
      overdue           the deadline passed: unit head and lead unit (督办)
      district_leader   still overdue 2 working days after the deadline
      supervision       still overdue 3 more working days after that (通报)

A backlog appeal whose ladder lies wholly in the past escalates as soon as it is
dispatched: every level whose time has passed fires, in ladder order, each
exactly once (:func:`firings_due`). Levels are not collapsed to the highest one:
every step has its own recipients and its own record in the timeline.

One order's clocks (:class:`OrderFacts`, :func:`plan_order`, :func:`reconcile`):
its events may arrive in any order and more than once, so what they tell is
merged commutatively (:func:`merge_facts`), the ladder is a function of the
merged facts alone, and the stored firings are brought in line with it. A clock
stopped at time S keeps the steps due before S (they applied) and drops the
rest. :func:`deadline_set_event` and :func:`step_event` build the published
events, with ids stable per fact so a repeat is harmless.

Unit evaluation (考评排名): :func:`evaluate_unit` turns one unit's monthly counts
into rates, :func:`rank_units` scores and ranks them with configurable
:class:`EvaluationWeights` whose :meth:`EvaluationWeights.formula` is printed
with the ranking.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.contracts.common import SHANGHAI
from shared.contracts.events import AppealEscalated, DeadlineSet, DeadlineWarning, Person
from shared.contracts.subjects import APPEAL_ESCALATED, DEADLINE_WARNING
from shared.district import Contact, District, Unit
from shared.workcalendar import WorkCalendar

Clock = Literal["sign_for", "handling"]
Level = Literal["warning_75", "warning_1d", "overdue", "district_leader", "supervision"]
TargetLevel = Literal["warning_75", "warning_1d", "overdue", "district_leader", "supervision", "difficult"]

CLOCKS: tuple[Clock, ...] = get_args(Clock)
#: The ladder, lowest step first; also the order in which simultaneous firings fire.
LADDER: tuple[Level, ...] = get_args(Level)
WARNING_LEVELS: frozenset[str] = frozenset({"warning_75", "warning_1d"})
ESCALATION_LEVELS: frozenset[str] = frozenset({"overdue", "district_leader", "supervision", "difficult"})


# --- policy -------------------------------------------------------------------------


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
        """The policy as a plain dict, as snapshotted on ``OrderDispatched.policy``."""
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


# --- deadlines ----------------------------------------------------------------------


def handling_due_at(received_at: datetime, deadline_days: int, cal: WorkCalendar, extension_days: int = 0) -> datetime:
    """The handling deadline: ``deadline_days`` plus all granted extension days, counted from receipt.

    Pass the *total* of granted extension days (``ExtensionGranted.total_extension_days``),
    so a redelivered grant cannot move the deadline twice.
    """
    return cal.add_working_days(received_at, deadline_days + extension_days)


def sign_for_due_at(dispatched_at: datetime, sign_hours: float, cal: WorkCalendar) -> datetime:
    """The sign-for deadline: ``sign_hours`` working hours after dispatch."""
    return cal.add_working_hours(dispatched_at, sign_hours)


# --- the ladder ---------------------------------------------------------------------


@dataclass(frozen=True)
class Firing:
    """One planned step of a clock's ladder: ``level`` fires at ``fire_at`` for the deadline ``due_at``."""

    level: Level
    fire_at: datetime
    clock: Clock
    due_at: datetime

    @property
    def key(self) -> str:
        """Identity of this firing for a unique key: a step fires once per clock and deadline."""
        return f"{self.clock}:{self.level}:{self.due_at.isoformat()}"

    @property
    def is_warning(self) -> bool:
        """A warning (``ct.deadline.warning``) rather than an escalation (``ct.appeal.escalated``)."""
        return self.level in WARNING_LEVELS

    def to_dict(self) -> dict[str, str]:
        return {"level": self.level, "fire_at": self.fire_at.isoformat(), "clock": self.clock, "due_at": self.due_at.isoformat()}


def plan_firings(
    clock: Clock,
    started_at: datetime,
    due_at: datetime,
    policy: EscalationPolicy,
    cal: WorkCalendar,
) -> list[Firing]:
    """The ladder of one clock as a plan, in firing order.

    ``sign_for``: only ``overdue`` at ``due_at``.

    ``handling`` (``started_at`` is the receipt; the receipt day is not
    counted, so the allowed time runs from the opening of the next working
    day to ``due_at``):

    * ``warning_75`` when ``policy.warning_fraction`` of the allowed working time has passed;
    * ``warning_1d`` when ``policy.warning_days_before`` working days are left
      (for a deadline at 17:30 on day D and one day: 09:00 on D). Skipped when
      it would not lie after the start of the allowed time, or when it
      coincides in working time with ``warning_75`` (no working time between them);
    * ``overdue`` at ``due_at``;
    * ``district_leader`` at close of business ``leader_after_days`` working days after ``due_at``;
    * ``supervision`` at close of business ``supervision_after_days`` working days after that.

    Times are in the calendar's zone. Firings at the same moment keep ladder order.
    A re-plan (an extension moved the deadline, a reopened order got a new
    clock) is simply a new plan; its firings have new keys.
    """
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}: one of {', '.join(CLOCKS)}")
    due = _in_zone(due_at, cal)
    started = _in_zone(started_at, cal)
    if clock == "sign_for":
        return [Firing("overdue", due, clock, due)]

    firings: list[Firing] = []
    origin = cal.first_counted_moment(started)
    if origin >= due:
        origin = started
    allowed = cal.working_seconds_between(origin, due)
    warning_75: datetime | None = None
    if allowed > 0:
        warning_75 = cal.add_working_hours(origin, round(policy.warning_fraction * allowed) / 3600)
        if warning_75 < due:
            firings.append(Firing("warning_75", warning_75, clock, due))
        else:
            warning_75 = None
    if policy.warning_days_before and allowed > 0:
        one_day_left = cal.add_working_hours(due, -policy.warning_days_before * cal.working_day_seconds / 3600)
        after_start = cal.working_seconds_between(origin, one_day_left) > 0
        coincides = warning_75 is not None and cal.working_seconds_between(warning_75, one_day_left) == 0
        if after_start and not coincides:
            firings.append(Firing("warning_1d", one_day_left, clock, due))
    firings.append(Firing("overdue", due, clock, due))
    leader_at = cal.add_working_days(due, policy.leader_after_days) if policy.leader_after_days else due
    firings.append(Firing("district_leader", leader_at, clock, due))
    supervision_at = cal.add_working_days(leader_at, policy.supervision_after_days) if policy.supervision_after_days else leader_at
    firings.append(Firing("supervision", supervision_at, clock, due))
    return sorted(firings, key=lambda f: (f.fire_at, LADDER.index(f.level)))


def firings_due(plan: Iterable[Firing], now: datetime, already_fired: Iterable[str] = ()) -> list[Firing]:
    """The firings whose time has come (``fire_at <= now``) and that have not fired, in ladder order.

    ``already_fired`` holds :attr:`Firing.key` values. A backlog order whose
    whole ladder lies in the past gets every level at once, lowest first.
    """
    done = set(already_fired)
    return sorted(
        (f for f in plan if f.fire_at <= now and f.key not in done),
        key=lambda f: (f.fire_at, LADDER.index(f.level)),
    )


def overdue_seconds(due_at: datetime, now: datetime) -> int:
    """How late, in seconds of wall time (0 when not late)."""
    return max(0, int((now - due_at).total_seconds()))


def reason_for(firing: Firing) -> str:
    """A short English reason for the event the firing produces."""
    due = firing.due_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    what = "sign-for" if firing.clock == "sign_for" else "handling"
    return {
        "warning_75": f"most of the {what} time used; due {due}",
        "warning_1d": f"one working day left; {what} deadline {due}",
        "overdue": f"{what} deadline {due} missed",
        "district_leader": f"{what} deadline {due} missed; still open, reported to the district leader",
        "supervision": f"{what} deadline {due} missed; still open, reported to the supervision office for notice",
    }[firing.level]


# --- who hears each step ------------------------------------------------------------


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


# --- which events stop which clocks -----------------------------------------------


@dataclass(frozen=True)
class ClockChange:
    """What an event does to an order's clocks.

    ``stops``: clocks whose pending firings are cancelled for good.
    ``replans``: clocks whose pending firings are cancelled and planned anew
    (a new deadline or a new order). ``escalate_now``: a level to fire at once.
    Firings that already fired stay in the record either way.
    """

    stops: frozenset[Clock] = frozenset()
    replans: frozenset[Clock] = frozenset()
    escalate_now: TargetLevel | None = None

    def cancels(self, clock: Clock) -> bool:
        """Whether the pending firings of ``clock`` are cancelled by the event."""
        return clock in self.stops or clock in self.replans


_BOTH: frozenset[Clock] = frozenset(CLOCKS)
_CLOCK_CHANGES: dict[str, ClockChange] = {
    # a new work order: both clocks start
    "order.dispatched": ClockChange(replans=_BOTH),
    # signing for it stops the sign-for clock; the handling clock runs on
    "order.signed": ClockChange(stops=frozenset({"sign_for"})),
    # a return answers the dispatch in time; the lead unit decides next
    "order.returned": ClockChange(stops=frozenset({"sign_for"})),
    # an accepted return ends this order (the appeal is re-dispatched as a new order)
    "order.return_decided.accepted": ClockChange(stops=_BOTH),
    # a reply stops the handling clock (the enterprise now rates it), and a
    # sign-for clock still running: replying is more than signing
    "order.replied": ClockChange(stops=_BOTH),
    # a granted extension moves the handling deadline
    "order.extension_granted": ClockChange(replans=frozenset({"handling"})),
    # the unit flags the appeal difficult: the district leader hears at once, clocks run on
    "order.escalation_requested": ClockChange(escalate_now="difficult"),
    # the appeal is finished, or follows a master appeal from now on
    "appeal.closed": ClockChange(stops=_BOTH),
    "appeal.merged": ClockChange(stops=_BOTH),
    # unsatisfied: the reopened order gets a new handling clock, counted from the reopening
    "appeal.reopened": ClockChange(replans=frozenset({"handling"})),
}

#: The events that change clocks, by their subject without ``ct.``.
CLOCK_EVENTS: frozenset[str] = frozenset(_CLOCK_CHANGES)


def clock_change(event: str, accepted: bool | None = None) -> ClockChange:
    """What ``event`` (``ct.order.signed`` or ``order.signed``) does to the order's clocks.

    For ``order.return_decided`` pass ``accepted``: an accepted return ends the
    order's clocks, a refused one changes nothing (the handling clock never
    stopped). Any other event changes nothing.
    """
    name = event.removeprefix("ct.")
    if name == "order.return_decided" and accepted:
        name = "order.return_decided.accepted"
    return _CLOCK_CHANGES.get(name, ClockChange())


def cancelled_levels(event: str, clock: Clock, accepted: bool | None = None) -> set[Level]:
    """The pending levels of ``clock`` that ``event`` cancels (all of them, or none)."""
    return set(LADDER) if clock_change(event, accepted).cancels(clock) else set()


# --- evaluation and ranking ---------------------------------------------------------


class UnitMonthStats(BaseModel):
    """One unit's counts for one month, as the store gathers them.

    ``received``: orders dispatched to the unit in the month; ``signed_on_time``:
    of those, signed within the sign-for limit; ``due``: orders whose handling
    deadline fell in the month; ``closed`` / ``closed_on_time``: of those, closed
    (办结) at all / by the deadline; ``replied``: replies given in the month;
    ``rated``, ``satisfied``, ``basically_satisfied``: ratings received in the
    month; ``returned``: orders returned (退单); ``reopened``: replies rejected
    by the enterprise (重办); ``overdue``: orders that went overdue; ``noticed``:
    public notices (通报) by the supervision office.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit_code: str
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM.")
    received: int = Field(0, ge=0)
    signed_on_time: int = Field(0, ge=0)
    due: int = Field(0, ge=0)
    closed: int = Field(0, ge=0)
    closed_on_time: int = Field(0, ge=0)
    replied: int = Field(0, ge=0)
    rated: int = Field(0, ge=0)
    satisfied: int = Field(0, ge=0)
    basically_satisfied: int = Field(0, ge=0)
    returned: int = Field(0, ge=0)
    reopened: int = Field(0, ge=0)
    overdue: int = Field(0, ge=0)
    noticed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _parts_within_wholes(self) -> UnitMonthStats:
        if self.signed_on_time > self.received:
            raise ValueError("signed_on_time cannot exceed received")
        if self.closed > self.due:
            raise ValueError("closed cannot exceed due")
        if self.closed_on_time > self.closed:
            raise ValueError("closed_on_time cannot exceed closed")
        if self.satisfied + self.basically_satisfied > self.rated:
            raise ValueError("satisfied + basically_satisfied cannot exceed rated")
        return self


class UnitEvaluation(BaseModel):
    """One unit's month: the counts and the rates (``None`` where the denominator is 0).

    closure_rate 办结率 = closed / due; satisfaction_rate 满意率 = (satisfied +
    basically_satisfied) / rated; on_time_rate = closed_on_time / due;
    sign_on_time_rate = signed_on_time / received; return_rate 回退率 =
    returned / received; reopen_rate 重办率 = reopened / replied. ``score`` is
    the weighted score under the weights it was evaluated with.
    """

    model_config = ConfigDict(frozen=True)

    unit_code: str
    month: str
    received: int
    signed_on_time: int
    due: int
    closed: int
    closed_on_time: int
    rated: int
    satisfied_or_basically: int
    returned: int
    reopened: int
    overdue: int
    noticed: int
    closure_rate: float | None
    satisfaction_rate: float | None
    on_time_rate: float | None
    sign_on_time_rate: float | None
    return_rate: float | None
    reopen_rate: float | None
    score: float | None


class EvaluationWeights(BaseModel):
    """Weights of the monthly score, from configuration. See :meth:`formula`.

    Defaults: closure 0.35, satisfaction 0.35, on-time closure 0.20, on-time
    signing 0.10; penalties: 5 points for a 100 % return rate, 10 points for a
    100 % reopen rate, 2 points per public notice.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    closure: float = Field(0.35, ge=0)
    satisfaction: float = Field(0.35, ge=0)
    on_time: float = Field(0.20, ge=0)
    sign_on_time: float = Field(0.10, ge=0)
    return_penalty: float = Field(5.0, ge=0, description="Points off at a 100 % return rate.")
    reopen_penalty: float = Field(10.0, ge=0, description="Points off at a 100 % reopen rate.")
    notice_penalty: float = Field(2.0, ge=0, description="Points off per public notice (通报).")

    @model_validator(mode="after")
    def _some_weight(self) -> EvaluationWeights:
        if self.closure + self.satisfaction + self.on_time + self.sign_on_time <= 0:
            raise ValueError("at least one of closure, satisfaction, on_time, sign_on_time must be positive")
        return self

    def formula(self) -> str:
        """The score formula with these weights, in words, for printing with the ranking."""
        return (
            "score = 100 × (Σ wᵢ·rateᵢ) / (Σ wᵢ over the rates that are defined)"
            f" − {self.return_penalty:g} × return_rate − {self.reopen_penalty:g} × reopen_rate"
            f" − {self.notice_penalty:g} × notices;"
            f" weights: closure_rate (closed/due) {self.closure:g},"
            f" satisfaction_rate ((satisfied+basically satisfied)/rated) {self.satisfaction:g},"
            f" on_time_rate (closed on time/due) {self.on_time:g},"
            f" sign_on_time_rate (signed on time/received) {self.sign_on_time:g};"
            " rates are fractions 0-1; a rate whose denominator is 0 is left out and the other weights are rescaled;"
            " no defined rate → no score; an undefined penalty rate counts 0"
        )

    def score(self, evaluation: UnitEvaluation) -> float | None:
        """The weighted score of ``evaluation`` (see :meth:`formula`), rounded to 2 decimals."""
        parts = [
            (self.closure, evaluation.closure_rate),
            (self.satisfaction, evaluation.satisfaction_rate),
            (self.on_time, evaluation.on_time_rate),
            (self.sign_on_time, evaluation.sign_on_time_rate),
        ]
        defined = [(w, r) for w, r in parts if r is not None and w > 0]
        weight = sum(w for w, _ in defined)
        if weight <= 0:
            return None
        base = 100 * sum(w * r for w, r in defined) / weight
        penalty = (
            self.return_penalty * (evaluation.return_rate or 0.0)
            + self.reopen_penalty * (evaluation.reopen_rate or 0.0)
            + self.notice_penalty * evaluation.noticed
        )
        return round(base - penalty, 2)


def rate(numerator: int, denominator: int) -> float | None:
    """``numerator / denominator``, or ``None`` when the denominator is 0."""
    return numerator / denominator if denominator else None


def evaluate_unit(month_stats: UnitMonthStats, weights: EvaluationWeights | None = None) -> UnitEvaluation:
    """The rates and score of one unit's month (rates ``None`` where nothing was there to count)."""
    s = month_stats
    pleased = s.satisfied + s.basically_satisfied
    evaluation = UnitEvaluation(
        unit_code=s.unit_code,
        month=s.month,
        received=s.received,
        signed_on_time=s.signed_on_time,
        due=s.due,
        closed=s.closed,
        closed_on_time=s.closed_on_time,
        rated=s.rated,
        satisfied_or_basically=pleased,
        returned=s.returned,
        reopened=s.reopened,
        overdue=s.overdue,
        noticed=s.noticed,
        closure_rate=rate(s.closed, s.due),
        satisfaction_rate=rate(pleased, s.rated),
        on_time_rate=rate(s.closed_on_time, s.due),
        sign_on_time_rate=rate(s.signed_on_time, s.received),
        return_rate=rate(s.returned, s.received),
        reopen_rate=rate(s.reopened, s.replied),
        score=None,
    )
    return evaluation.model_copy(update={"score": (weights or EvaluationWeights()).score(evaluation)})


@dataclass(frozen=True)
class RankedUnit:
    """One row of the ranking: ``rank`` is ``None`` for a unit listed but not ranked."""

    rank: int | None
    evaluation: UnitEvaluation
    score: float | None
    note: str = ""


@dataclass(frozen=True)
class Ranking:
    """The month's ranking: ranked units by rank, then the units listed without a rank."""

    rows: list[RankedUnit]
    formula: str
    min_orders: int
    weights: EvaluationWeights = field(default_factory=EvaluationWeights)

    def render(self) -> str:
        """The ranking as a text table, with the formula and the min_orders rule under it."""
        header = f"{'rank':>4}  {'unit':<24} {'score':>7} {'recv':>5} {'closure':>8} {'satisf.':>8} {'on time':>8} {'overdue':>7} {'notices':>7}"
        lines = [header]
        for row in self.rows:
            e = row.evaluation
            lines.append(
                f"{row.rank if row.rank is not None else '-':>4}  {e.unit_code:<24} {_fmt(row.score, 7)}"
                f" {e.received:>5} {_pct(e.closure_rate)} {_pct(e.satisfaction_rate)} {_pct(e.on_time_rate)}"
                f" {e.overdue:>7} {e.noticed:>7}" + (f"  ({row.note})" if row.note else "")
            )
        lines.append(self.formula)
        lines.append(f"units with fewer than {self.min_orders} orders received are listed but not ranked")
        return "\n".join(lines)


def _fmt(value: float | None, width: int) -> str:
    return f"{value:>{width}.2f}" if value is not None else f"{'-':>{width}}"


def _pct(value: float | None) -> str:
    return f"{value * 100:>7.1f}%" if value is not None else f"{'-':>8}"


def rank_units(
    evaluations: Iterable[UnitEvaluation],
    weights: EvaluationWeights | None = None,
    min_orders: int = 5,
) -> Ranking:
    """Score every unit with ``weights`` and rank them, best first.

    A unit with fewer than ``min_orders`` orders received in the month, or
    with no score (no rate defined), is listed after the ranked units with
    rank ``None``. Equal scores share a rank and the next rank is skipped
    (1, 2, 2, 4); within a rank and among the unranked, units are listed by
    unit code.
    """
    weights = weights or EvaluationWeights()
    scored = [(e, weights.score(e)) for e in evaluations]
    rankable = [(e, s) for e, s in scored if s is not None and e.received >= min_orders]
    unranked = [(e, s) for e, s in scored if not (s is not None and e.received >= min_orders)]
    rankable.sort(key=lambda pair: (-pair[1], pair[0].unit_code))
    rows: list[RankedUnit] = []
    previous: float | None = None
    rank = 0
    for position, (evaluation, score) in enumerate(rankable, start=1):
        if score != previous:
            rank = position
            previous = score
        rows.append(RankedUnit(rank, evaluation.model_copy(update={"score": score}), score))
    for evaluation, score in sorted(unranked, key=lambda pair: pair[0].unit_code):
        note = f"fewer than {min_orders} orders" if evaluation.received < min_orders else "nothing to rate"
        rows.append(RankedUnit(None, evaluation.model_copy(update={"score": score}), score, note))
    return Ranking(rows=rows, formula=weights.formula(), min_orders=min_orders, weights=weights)


def _in_zone(value: datetime, cal: WorkCalendar) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"times must be timezone-aware, got the naive {value.isoformat()}")
    return value.astimezone(cal.tz)


# --- one order's clocks, whatever order its events arrived in -------------------------
#
# Escalation keeps, per work order, the facts its events told (``OrderFacts``).
# Events of one order may arrive in any order and more than once, so facts are
# merged commutatively (:func:`merge_facts`): the earliest time of each stop,
# the largest extension and reopening count, the dispatch details from whichever
# event carried them. The order's ladder is then a function of its facts alone
# (:func:`plan_order`), and the stored firings are brought in line with it
# (:func:`reconcile`): the same facts give the same plan, whichever event came last.

DIFFICULT_KEY = "difficult"
"""Step key of the one ``difficult`` escalation an order can have (the unit's own request)."""

#: Fact fields that record when something happened: the earliest report wins.
_EARLIEST_FIELDS = frozenset({
    "signed_at", "returned_at", "return_accepted_at", "replied_at", "reopened_at", "difficult_at",
    "closed_at", "merged_at",
})
#: Fact fields that only grow: the largest report wins.
_LARGEST_FIELDS = frozenset({"reopen_count", "extension_days"})

#: Which fact stops which clocks: the names of :data:`_CLOCK_CHANGES`.
_STOP_FACTS: tuple[tuple[str, str], ...] = (
    ("signed_at", "order.signed"),
    ("returned_at", "order.returned"),
    ("return_accepted_at", "order.return_decided.accepted"),
    ("replied_at", "order.replied"),
    ("closed_at", "appeal.closed"),
    ("merged_at", "appeal.merged"),
)


@dataclass(frozen=True)
class OrderFacts:
    """What escalation knows of one work order; ``None`` where no event told it yet.

    The dispatch details (``received_at`` ... ``policy``) come from
    ``ct.order.dispatched``; without them no clock can be planned. ``policy``
    is the resolved :class:`EscalationPolicy` snapshot (:func:`resolve_policy`).
    ``closed_at`` / ``merged_at`` are the appeal's closure or merge that ends
    this order (:func:`appeal_stops`); the other times are the order's own.
    """

    order_id: str
    appeal_id: str
    unit_code: str
    unit: str = ""
    role: str | None = None
    category: str | None = None
    urgent: bool = False
    summary: str = ""
    source_ref: str = ""
    correlation_id: str = ""
    received_at: datetime | None = None
    dispatched_at: datetime | None = None
    deadline_days: int | None = None
    sign_hours: float | None = None
    policy: dict[str, Any] | None = None
    reopen_count: int = 0
    extension_days: int = 0
    signed_at: datetime | None = None
    returned_at: datetime | None = None
    return_accepted_at: datetime | None = None
    replied_at: datetime | None = None
    reopened_at: datetime | None = None
    difficult_at: datetime | None = None
    closed_at: datetime | None = None
    merged_at: datetime | None = None

    @property
    def dispatched(self) -> bool:
        """Whether ``ct.order.dispatched`` arrived: the clocks can be planned."""
        return None not in (self.received_at, self.dispatched_at, self.deadline_days, self.sign_hours)

    @property
    def handling_started_at(self) -> datetime | None:
        """Where the handling clock counts from: the receipt, or the reopening for a reopened order (重办)."""
        return self.dispatched_at if self.reopen_count > 0 else self.received_at

    def stopped_at(self, clock: Clock) -> datetime | None:
        """When ``clock`` stopped: the earliest fact that stops it (:func:`clock_change`); ``None`` while it runs."""
        times = [
            at for name, event in _STOP_FACTS
            if (at := getattr(self, name)) is not None and clock in _CLOCK_CHANGES[event].stops
        ]
        return min(times, default=None)

    @property
    def is_open(self) -> bool:
        """Dispatched and its handling clock still running."""
        return self.dispatched and self.stopped_at("handling") is None


def merge_facts(a: OrderFacts, b: OrderFacts) -> OrderFacts:
    """The facts of ``a`` and ``b`` together; commutative and idempotent.

    Times of events take the earliest report, counts the largest, ``urgent``
    either; any other field keeps the value known (the dispatch details come
    from one event only, and every event of an order carries the same ids).
    """
    if a.order_id != b.order_id:
        raise ValueError(f"cannot merge the facts of orders {a.order_id!r} and {b.order_id!r}")
    merged: dict[str, Any] = {}
    for f in dataclasses.fields(OrderFacts):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name in _EARLIEST_FIELDS:
            merged[f.name] = min((t for t in (x, y) if t is not None), default=None)
        elif f.name in _LARGEST_FIELDS:
            merged[f.name] = max(x, y)
        elif f.name == "urgent":
            merged[f.name] = x or y
        else:
            merged[f.name] = x if x not in (None, "") else y
    return OrderFacts(**merged)


def resolve_policy(
    snapshot: Mapping[str, Any] | None,
    table: PolicyTable,
    category: str | None,
    urgent: bool,
    district: District | None = None,
) -> EscalationPolicy:
    """The policy to snapshot on a dispatched order.

    The table's policy for the category and urgency, with the fields of
    ``OrderDispatched.policy`` that are :class:`EscalationPolicy` fields laid
    over it. Other keys of the snapshot (dispatch also records the deadline
    and who is told) are not policy and are ignored; a snapshot whose policy
    fields are invalid is ignored as a whole.
    """
    base = table.policy_for(category, urgent, district)
    given = {k: v for k, v in (snapshot or {}).items() if k in EscalationPolicy.model_fields}
    if not given:
        return base
    try:
        return EscalationPolicy.model_validate({**base.to_dict(), **given})
    except ValueError:
        return base


def order_facts_from_event(
    subject: str,
    event: Any,
    policies: PolicyTable,
    district: District | None = None,
) -> OrderFacts | None:
    """The facts one event tells about its work order; ``None`` for an event about no single order.

    ``event`` is the parsed model of ``subject`` (``shared.contracts.events``).
    ``ct.appeal.closed`` / ``ct.appeal.merged`` concern the appeal: see :func:`appeal_stops`.
    """
    name = subject.removeprefix("ct.")
    ids = {"order_id": getattr(event, "order_id", None), "appeal_id": event.appeal_id,
           "unit_code": getattr(event, "unit_code", None)}
    if not ids["order_id"] or not ids["unit_code"]:
        return None
    at = event.occurred_at
    common = {**ids, "unit": getattr(event, "unit", "") or ""}
    if name == "order.dispatched":
        policy = resolve_policy(event.policy, policies, event.category, event.urgent, district)
        return OrderFacts(
            **common, role=event.role, category=event.category, urgent=event.urgent, summary=event.summary,
            source_ref=event.source_ref, correlation_id=event.correlation_id, received_at=event.received_at,
            dispatched_at=at, deadline_days=event.deadline_days, sign_hours=event.sign_hours,
            policy=policy.to_dict(), reopen_count=event.reopen_count,
        )
    if name == "order.signed":
        return OrderFacts(**common, signed_at=at)
    if name == "order.returned":
        return OrderFacts(**common, returned_at=at)
    if name == "order.return_decided":
        return OrderFacts(**common, return_accepted_at=at if event.accepted else None)
    if name == "order.extension_granted":
        return OrderFacts(**common, extension_days=event.total_extension_days)
    if name == "order.replied":
        return OrderFacts(**common, replied_at=at)
    if name == "order.escalation_requested":
        return OrderFacts(**common, difficult_at=at)
    if name == "appeal.reopened":
        return OrderFacts(**common, reopen_count=event.reopen_count, reopened_at=at)
    return OrderFacts(**common)


ClosureKind = Literal["closed", "merged"]


def appeal_stops(
    closures: Iterable[tuple[datetime, ClosureKind]],
    dispatched_at: datetime | None,
) -> tuple[datetime | None, datetime | None]:
    """``(closed_at, merged_at)`` for an order of an appeal with these closures.

    A closure ends the orders dispatched before it (an appeal closed, later
    reopened and re-dispatched, is not closed for the new order); while the
    order's dispatch is unknown, any closure counts.
    """
    earliest: dict[str, datetime] = {}
    for at, kind in closures:
        if dispatched_at is not None and at < dispatched_at:
            continue
        if kind not in earliest or at < earliest[kind]:
            earliest[kind] = at
    return earliest.get("closed"), earliest.get("merged")


@dataclass(frozen=True)
class OrderPlan:
    """An order's clocks as its facts make them.

    ``steps``: every ladder step that applies, in firing order: the whole
    ladder of a running clock, and, of a stopped one, the steps whose time
    had come before it stopped (they applied; if not fired yet they still fire).
    """

    sign_due: datetime | None = None
    handling_due: datetime | None = None
    running: frozenset[Clock] = frozenset()
    steps: tuple[Firing, ...] = ()

    def due(self, clock: Clock) -> datetime | None:
        return self.sign_due if clock == "sign_for" else self.handling_due


def plan_order(facts: OrderFacts, cal: WorkCalendar) -> OrderPlan:
    """The deadlines and the ladder of an order; empty until it was dispatched.

    sign-for: ``sign_hours`` working hours from dispatch. handling:
    ``deadline_days`` plus the extension days granted, in working days from
    receipt, or from the reopening for a reopened order (``reopen_count`` > 0).
    """
    if not facts.dispatched:
        return OrderPlan()
    assert facts.dispatched_at and facts.sign_hours is not None and facts.deadline_days is not None
    start = facts.handling_started_at
    assert start is not None
    policy = EscalationPolicy.from_dict(facts.policy)
    sign_due = sign_for_due_at(facts.dispatched_at, facts.sign_hours, cal)
    handling_due = handling_due_at(start, facts.deadline_days, cal, facts.extension_days)
    running: set[Clock] = set()
    steps: list[Firing] = []
    for clock, started, due in (("sign_for", facts.dispatched_at, sign_due), ("handling", start, handling_due)):
        # a warning planned before the order existed is moot: a backlog order starts at "overdue"
        ladder = [f for f in plan_firings(clock, started, due, policy, cal)
                  if not (f.is_warning and f.fire_at < facts.dispatched_at)]
        stopped = facts.stopped_at(clock)
        if stopped is None:
            running.add(clock)
            steps.extend(ladder)
        else:
            steps.extend(f for f in ladder if f.fire_at <= stopped)
    steps.sort(key=lambda f: (f.fire_at, LADDER.index(f.level)))
    return OrderPlan(sign_due, handling_due, frozenset(running), tuple(steps))


StepState = Literal["pending", "fired", "cancelled"]


@dataclass(frozen=True)
class Reconciliation:
    """What to change in an order's stored firings: the steps to add and the pending keys to cancel."""

    add: tuple[Firing, ...] = ()
    cancel: tuple[str, ...] = ()


def reconcile(plan: OrderPlan, stored: Mapping[str, StepState]) -> Reconciliation:
    """Bring the stored firings (``step_key`` → state) in line with ``plan``.

    Steps of the plan not stored yet are added; pending steps the plan no
    longer has (the clock stopped before them, or the deadline moved) are
    cancelled. Fired and cancelled steps stay as they are; the ``difficult``
    step is the unit's request and no clock cancels it.
    """
    wanted = {f.key: f for f in plan.steps}
    add = tuple(f for key, f in wanted.items() if key not in stored)
    cancel = tuple(sorted(
        key for key, state in stored.items() if state == "pending" and key not in wanted and key != DIFFICULT_KEY
    ))
    return Reconciliation(add, cancel)


def deadlines_to_publish(plan: OrderPlan, published: Mapping[Clock, datetime | None]) -> list[tuple[Clock, datetime]]:
    """The running clocks whose deadline was not published yet, or moved since (``ct.deadline.set``)."""
    out: list[tuple[Clock, datetime]] = []
    for clock in CLOCKS:
        due = plan.due(clock)
        if clock in plan.running and due is not None and published.get(clock) != due:
            out.append((clock, due))
    return out


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


def step_reason(level: str, clock: Clock, due_at: datetime | None, requested_reason: str | None = None) -> str:
    """The reason an event of a step gives: :func:`reason_for`, or the unit's own for ``difficult``."""
    if level == "difficult":
        return f"flagged difficult or major by the unit: {requested_reason}" if requested_reason else "flagged difficult or major by the unit"
    if due_at is None:
        raise ValueError(f"a {level} step needs its deadline")
    return reason_for(Firing(level, due_at, clock, due_at))  # type: ignore[arg-type]


# --- the events escalation publishes -------------------------------------------------

_EVENT_NAMESPACE = uuid.UUID("5b0f3a8e-7c1d-4e44-9a51-2f6c0d7e9b13")


def stable_event_id(*parts: str) -> str:
    """An event id that is the same for the same fact, so a repeat is dropped by JetStream's window.

    ``esc-`` and a UUID 5 of the parts (e.g. order id and step key).
    """
    return "esc-" + uuid.uuid5(_EVENT_NAMESPACE, "\x1f".join(parts)).hex


def _base(facts: OrderFacts, now: datetime, event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id, "occurred_at": now.astimezone(SHANGHAI), "appeal_id": facts.appeal_id,
        "source_ref": facts.source_ref, "correlation_id": facts.correlation_id, "actor": "system",
        "order_id": facts.order_id, "unit_code": facts.unit_code,
    }


def deadline_set_event(facts: OrderFacts, clock: Clock, due_at: datetime, now: datetime) -> DeadlineSet:
    """``ct.deadline.set`` for a clock started or moved; ``due_at`` in +08:00."""
    event_id = stable_event_id(facts.order_id, "deadline", clock, due_at.isoformat())
    return DeadlineSet(**_base(facts, now, event_id), clock=clock, due_at=due_at.astimezone(SHANGHAI))


def step_event(
    facts: OrderFacts,
    level: TargetLevel,
    clock: Clock,
    due_at: datetime | None,
    step_key: str,
    targets: list[dict[str, str | None]],
    now: datetime,
    requested_reason: str | None = None,
) -> tuple[str, DeadlineWarning | AppealEscalated]:
    """The (subject, event) a fired step publishes: a warning, or an escalation of the appeal.

    Its id is stable for (order, step), so the same step never makes two events.
    """
    event_id = stable_event_id(facts.order_id, "step", step_key)
    base = _base(facts, now, event_id)
    due = due_at.astimezone(SHANGHAI) if due_at is not None else None
    reason = step_reason(level, clock, due_at, requested_reason)
    people = [Person.model_validate(t) for t in targets]
    if level in WARNING_LEVELS:
        assert due is not None
        return DEADLINE_WARNING, DeadlineWarning(**base, unit=facts.unit, clock=clock, due_at=due, level=level,
                                               targets=people, reason=reason, summary=facts.summary)
    return APPEAL_ESCALATED, AppealEscalated(
        **base, unit=facts.unit, level=level, reason=reason, clock=clock, due_at=due,
        overdue_seconds=overdue_seconds(due_at, now) if due_at is not None else 0,
        targets=people, summary=facts.summary,
    )
