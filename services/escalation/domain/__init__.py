"""Escalation rules, pure: the ladder of warnings and escalations, who hears each step, and the unit ranking.

One file a concept:

* :mod:`.policy` — :class:`EscalationPolicy` (when the steps fire), the overrides by
  category and urgency, the policy book :class:`PolicyTable`, :func:`resolve_policy`.
* :mod:`.ladder` — the clocks and their steps (warnings, overdue 督办, district
  leader, supervision 通报; difficult 疑难或重大), :class:`Firing`, :func:`plan_firings`,
  :func:`firings_due`, :func:`reason_for`.
* :mod:`.recipients` — who hears each step: :func:`targets_for`, :func:`targets_for_order`.
* :mod:`.clock_changes` — which events stop or re-plan which clocks: :func:`clock_change`.
* :mod:`.pauses` — paused clocks (待补充材料): :func:`counted_pauses`, :func:`shift`, :func:`merge_pauses`.
* :mod:`.order_clock` — one order's facts (:class:`OrderFacts`, :func:`merge_facts`,
  :func:`order_facts_from_event`), its deadlines (:func:`sign_for_due_at`,
  :func:`handling_due_at`), its plan (:func:`plan_order`) and :func:`reconcile`.
* :mod:`.appeal_steps` — the steps heard once per appeal (district leader, supervision), naming
  every late co-handling order: :class:`AppealStep`, :func:`appeal_step_of`, :func:`late_orders`.
* :mod:`.events` — the events escalation publishes, with stable ids: :func:`step_event`,
  :func:`appeal_step_event`, :func:`deadline_set_event`.
* :mod:`.ranking` — unit evaluation and ranking (考评排名): :func:`evaluate_unit`, :func:`rank_units`.
* :mod:`.calendar_year` — a year's State Council schedule as loaded, checked whole: :func:`parse_year`.
* :mod:`.replanning` — the deadlines a revised calendar moves (:func:`pending_moves`) and the notice.

Every name is re-exported here, so ``domain.X`` works whichever file holds ``X``.
"""

from services.escalation.domain.appeal_steps import APPEAL_LEVELS, AppealStep, appeal_step_of, late_orders
from services.escalation.domain.calendar_year import (
    ScheduleInvalid,
    ScheduleProblem,
    YearSchedule,
    document_of,
    loadable_problems,
    parse_year,
)
from services.escalation.domain.clock_changes import CLOCK_EVENTS, ClockChange, cancelled_levels, clock_change
from services.escalation.domain.events import (
    appeal_step_event,
    appeal_step_reason,
    deadline_set_event,
    stable_event_id,
    step_event,
    step_reason,
)
from services.escalation.domain.ladder import (
    CLOCKS,
    DIFFICULT_KEY,
    ESCALATION_LEVELS,
    LADDER,
    WARNING_LEVELS,
    Clock,
    Firing,
    Ladders,
    Level,
    TargetLevel,
    firings_due,
    overdue_seconds,
    plan_firings,
    reason_for,
)
from services.escalation.domain.order_clock import (
    DEADLINE_CLOCKS,
    ClosureKind,
    OrderFacts,
    OrderPlan,
    Reconciliation,
    StepState,
    appeal_stops,
    deadline_cause,
    deadlines_to_publish,
    handling_due_at,
    merge_facts,
    order_facts_from_event,
    plan_order,
    reconcile,
    sign_for_due_at,
    unit_due_at,
)
from services.escalation.domain.pauses import CountedPause, counted_pauses, merge_pauses, shift
from services.escalation.domain.policy import (
    URGENT_POLICY,
    CategoryPolicy,
    EscalationPolicy,
    PolicyOverride,
    PolicyTable,
    resolve_policy,
)
from services.escalation.domain.ranking import (
    EvaluationWeights,
    RankedUnit,
    Ranking,
    UnitEvaluation,
    UnitMonthStats,
    evaluate_unit,
    rank_units,
    rate,
)
from services.escalation.domain.recipients import targets_for, targets_for_order
from services.escalation.domain.replanning import DeadlineMove, deadline_moved_event, move_of, pending_moves

__all__ = [
    "APPEAL_LEVELS", "CLOCKS", "CLOCK_EVENTS", "DIFFICULT_KEY", "ESCALATION_LEVELS", "LADDER", "URGENT_POLICY", "WARNING_LEVELS",
    "AppealStep", "CategoryPolicy", "Clock", "ClockChange", "ClosureKind", "EscalationPolicy", "EvaluationWeights", "Firing",
    "Level", "OrderFacts", "OrderPlan", "PolicyOverride", "PolicyTable", "RankedUnit", "Ranking", "Reconciliation",
    "StepState", "TargetLevel", "UnitEvaluation", "UnitMonthStats",
    "appeal_step_event", "appeal_step_of", "appeal_step_reason", "appeal_stops", "cancelled_levels", "clock_change", "deadline_set_event", "deadlines_to_publish",
    "evaluate_unit", "firings_due", "handling_due_at", "late_orders", "merge_facts", "order_facts_from_event", "overdue_seconds",
    "Ladders", "plan_firings", "plan_order", "rank_units", "rate", "reason_for", "reconcile", "resolve_policy",
    "sign_for_due_at", "stable_event_id", "step_event", "step_reason", "targets_for", "targets_for_order",
    "DeadlineMove", "ScheduleInvalid", "ScheduleProblem", "YearSchedule", "deadline_moved_event", "document_of",
    "loadable_problems", "move_of", "parse_year", "pending_moves",
    "DEADLINE_CLOCKS", "CountedPause", "counted_pauses", "deadline_cause", "merge_pauses", "shift", "unit_due_at",
]
