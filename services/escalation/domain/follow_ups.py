"""Follow-up visits (抽查回访): which appeals a month's draw calls back, and when a call contradicts a rating.

* :func:`draw_follow_ups` — a share of the month's closed appeals, at random but
  reproducibly (the same candidates and seed give the same draw), and every
  reopened one (重办).
* :func:`contradicts` — a follow-up rating that says the opposite of the
  enterprise's own rating (pleased against unsatisfied), flagged for the lead unit.
* :func:`draw_size` — how many closed appeals a share draws.

Pure: no I/O; the service layer is :mod:`services.escalation.followups`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PLEASED = frozenset({"satisfied", "basically_satisfied"})
"""Ratings that count as satisfied in the satisfaction rate (满意率)."""

Reason = Literal["closed", "reopened"]


class FollowUpPolicy(BaseModel):
    """``follow_ups`` in escalation.yaml: the share drawn and when the month's draw is made by itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    share: float = Field(0.2, ge=0, le=1, description="Share of the month's closed appeals drawn (0-1).")
    auto_draw_day: int | None = Field(
        3, ge=1, le=28,
        description="From this day of a month, last month is drawn by itself (random seed, recorded); "
                    "null: only by command or HTTP.")


@dataclass(frozen=True)
class DrawnAppeal:
    """One appeal of a draw and why it is there."""

    appeal_id: str
    reason: Reason


def draw_id(month: str) -> str:
    """The id of a month's draw: ``FU-<YYYY-MM>`` (one draw per month)."""
    return f"FU-{month}"


def draw_size(closed: int, share: float) -> int:
    """How many of ``closed`` appeals a ``share`` draws: rounded up, so any share above 0 calls at least one."""
    if closed <= 0 or share <= 0:
        return 0
    return min(closed, math.ceil(round(closed * share, 9)))


def draw_follow_ups(closed: Iterable[str], reopened: Iterable[str], share: float, seed: int) -> list[DrawnAppeal]:
    """The appeals a month's follow-up calls go to, by appeal id.

    Every ``reopened`` appeal is drawn (reason ``reopened``); of the ``closed``
    ones not reopened, :func:`draw_size` are sampled with ``random.Random(seed)``
    from the sorted ids (reason ``closed``). The input order does not matter:
    the same ids and seed give the same draw.
    """
    again = sorted(set(reopened))
    pool = sorted(set(closed) - set(again))
    picked = random.Random(seed).sample(pool, draw_size(len(pool), share))
    drawn = [DrawnAppeal(a, "reopened") for a in again] + [DrawnAppeal(a, "closed") for a in picked]
    return sorted(drawn, key=lambda d: d.appeal_id)


def contradicts(follow_up_rating: str | None, own_rating: str | None) -> bool:
    """Whether a follow-up rating says the opposite of the enterprise's own (flagged for the lead unit).

    Satisfied and basically satisfied agree with each other; either against
    unsatisfied contradicts. No rating on either side contradicts nothing.
    """
    if follow_up_rating is None or own_rating is None:
        return False
    sides = {follow_up_rating in PLEASED, own_rating in PLEASED}
    known = {follow_up_rating, own_rating} <= PLEASED | {"unsatisfied"}
    return known and len(sides) == 2
