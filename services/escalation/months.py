"""The evaluation's months: :mod:`shared.months` (one definition, shared with intake's hot topics)."""

from shared.months import MONTH, current_month, month_bounds, previous_month

__all__ = ["MONTH", "current_month", "month_bounds", "previous_month"]
