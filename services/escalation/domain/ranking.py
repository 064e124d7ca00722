"""Unit evaluation (考评排名): one unit's monthly counts into rates, and the scored ranking.

:func:`evaluate_unit` turns one unit's monthly counts (:class:`UnitMonthStats`)
into rates: closure rate 办结率, satisfaction rate 满意率 and the others;
:func:`rank_units` scores and ranks them with configurable
:class:`EvaluationWeights` whose :meth:`EvaluationWeights.formula` is printed
with the ranking.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, model_validator


class UnitMonthStats(BaseModel):
    """One unit's counts for one month, as the store gathers them.

    ``received``: orders dispatched to the unit in the month; ``signed_on_time``:
    of those, signed within the sign-for limit; ``due``: orders whose handling
    deadline fell in the month; ``closed`` / ``closed_on_time``: of those, closed
    (办结) at all / by the deadline; ``replied``: replies given in the month;
    ``rated``, ``satisfied``, ``basically_satisfied``: ratings received in the
    month; ``returned``: orders returned (退单); ``reopened``: replies rejected
    by the enterprise (重办); ``overdue``: orders that went overdue; ``noticed``:
    public notices (通报) by the supervision office. ``follow_up_*``: the month's
    follow-up calls (抽查回访) with a rating, of appeals the unit held (each appeal
    once), the satisfied or basically satisfied ones and those contradicting the
    enterprise's own rating; ``survey_*``: the same of the third-party survey (第三方测评).
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
    follow_up_rated: int = Field(0, ge=0)
    follow_up_satisfied: int = Field(0, ge=0)
    follow_up_contradicted: int = Field(0, ge=0)
    survey_rated: int = Field(0, ge=0)
    survey_satisfied: int = Field(0, ge=0)

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
        if max(self.follow_up_satisfied, self.follow_up_contradicted) > self.follow_up_rated:
            raise ValueError("follow_up_satisfied and follow_up_contradicted cannot exceed follow_up_rated")
        if self.survey_satisfied > self.survey_rated:
            raise ValueError("survey_satisfied cannot exceed survey_rated")
        return self


class UnitEvaluation(BaseModel):
    """One unit's month: the counts and the rates (``None`` where the denominator is 0).

    closure_rate 办结率 = closed / due; satisfaction_rate 满意率 = (satisfied +
    basically_satisfied) / rated; on_time_rate = closed_on_time / due;
    sign_on_time_rate = signed_on_time / received; return_rate 回退率 =
    returned / received; reopen_rate 重办率 = reopened / replied;
    follow_up_satisfaction_rate = follow_up_satisfied / follow_up_rated (抽查回访);
    survey_satisfaction_rate = survey_satisfied / survey_rated (第三方测评). ``score``
    is the weighted score under the weights it was evaluated with (the follow-up
    and survey rates are shown beside it, not weighted in it).
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
    follow_up_rated: int = 0
    follow_up_satisfied: int = 0
    follow_up_contradicted: int = 0
    follow_up_satisfaction_rate: float | None = None
    survey_rated: int = 0
    survey_satisfied: int = 0
    survey_satisfaction_rate: float | None = None


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
        follow_up_rated=s.follow_up_rated,
        follow_up_satisfied=s.follow_up_satisfied,
        follow_up_contradicted=s.follow_up_contradicted,
        follow_up_satisfaction_rate=rate(s.follow_up_satisfied, s.follow_up_rated),
        survey_rated=s.survey_rated,
        survey_satisfied=s.survey_satisfied,
        survey_satisfaction_rate=rate(s.survey_satisfied, s.survey_rated),
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
        header = (f"{'rank':>4}  {'unit':<24} {'score':>7} {'recv':>5} {'closure':>8} {'satisf.':>8}"
                  f" {'follow-up':>9} {'survey':>8} {'on time':>8} {'overdue':>7} {'notices':>7}")
        lines = [header]
        for row in self.rows:
            e = row.evaluation
            lines.append(
                f"{row.rank if row.rank is not None else '-':>4}  {e.unit_code:<24} {_fmt(row.score, 7)}"
                f" {e.received:>5} {_pct(e.closure_rate)} {_pct(e.satisfaction_rate)}"
                f" {_pct(e.follow_up_satisfaction_rate, 9)} {_pct(e.survey_satisfaction_rate)} {_pct(e.on_time_rate)}"
                f" {e.overdue:>7} {e.noticed:>7}" + (f"  ({row.note})" if row.note else "")
            )
        lines.append(self.formula)
        lines.append(f"units with fewer than {self.min_orders} orders received are listed but not ranked")
        lines.append("satisf.: the enterprises' own ratings; follow-up: the month's follow-up calls (抽查回访); "
                     "survey: the third-party survey (第三方测评); shown, not weighted in the score")
        return "\n".join(lines)


def _fmt(value: float | None, width: int) -> str:
    return f"{value:>{width}.2f}" if value is not None else f"{'-':>{width}}"


def _pct(value: float | None, width: int = 8) -> str:
    return f"{value * 100:>{width - 1}.1f}%" if value is not None else f"{'-':>{width}}"


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
