"""Follow-up visits (抽查回访): the month's draw, the calls' outcomes, and contradictions for the lead unit.

* :func:`draw_month` — a share of the month's closed appeals and every reopened one
  (:func:`domain.follow_ups.draw_follow_ups`), stored with its seed in
  ``follow_up_draws`` / ``follow_up_appeals`` and announced per appeal as
  ``ct.appeal.follow_up_drawn``. One draw per month: drawing it again gives the stored draw.
* :func:`record_follow_ups` — ``ct.in.feedback`` with ``via`` follow_up (or an
  ``outcome``: 回访未执行 / 不再回访 / 暂无评价), once per feedback id. A rating that
  contradicts the enterprise's own latest rating is flagged on the row (``GET
  /followups?contradicted=true``) and published as ``ct.appeal.follow_up_contradicted``
  for the lead unit. Dispatch ignores these messages: a follow-up neither closes nor reopens.
* :func:`unit_month_checks` — per unit and month, the follow-up and survey ratings the
  evaluation shows beside the enterprises' own (an appeal counts once: its latest rated call).

The enterprise's own rating is the latest of ``ratings`` (the closure's outcome, or
unsatisfied by a reopening). SQL lives here (schema ``escalation``), the rules in
:mod:`services.escalation.domain.follow_ups`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import datetime

import asyncpg
from pydantic import BaseModel, Field

from services.escalation.config import Context
from services.escalation.domain import stable_event_id
from services.escalation.domain.follow_ups import PLEASED, contradicts, draw_follow_ups, draw_id
from services.escalation.months import current_month, month_bounds, previous_month
from services.escalation.periodic import every
from shared import clock
from shared.bus import Delivery
from shared.contracts import Feedback, subjects
from shared.contracts import events as ev
from shared.contracts.common import SHANGHAI
from shared.district import UnitKind
from shared.service import Service

log = logging.getLogger("coffeetime.escalation.followups")

PUBLISHES = (subjects.APPEAL_FOLLOW_UP_DRAWN, subjects.APPEAL_FOLLOW_UP_CONTRADICTED)

MAX_SEED = 2**63 - 1


class DrawConflict(ValueError):
    """The month was drawn before with another share or seed (a draw is never replaced)."""


class FollowUpDraw(BaseModel):
    """A month's follow-up draw: its seed and share, and the appeals called."""

    draw_id: str
    month: str = Field(description="YYYY-MM.")
    seed: int = Field(description="The seed: the same month's candidates and seed give the same appeals.")
    share: float
    candidates: int = Field(description="The month's closed and reopened appeals the draw was made from.")
    drawn_at: datetime
    drawn_by: str
    appeals: list[dict] = Field(description="{appeal_id, reason: closed | reopened}, by appeal id.")
    created: bool = Field(False, description="True when this call made the draw (false: it was there already).")


class FollowUpItem(BaseModel):
    """One drawn appeal (or a follow-up of an appeal not drawn) and its latest call."""

    month: str | None
    appeal_id: str
    reason: str | None = Field(description="closed, reopened, or null: called without being drawn.")
    own_rating: str | None = Field(description="The enterprise's own latest rating.")
    outcome: str | None = Field(description="rated, not_done (回访未执行), no_further_visit (不再回访), "
                                            "no_rating_yet (暂无评价), or null: not called yet.")
    rating: str | None
    contradicts: bool = Field(description="The follow-up's rating contradicts the enterprise's own (for the lead unit).")
    feedback_id: str | None
    comment: str | None
    received_at: datetime | None


# --- SQL -----------------------------------------------------------------------------------------


async def candidates(conn: asyncpg.Connection, start: datetime, end: datetime) -> tuple[list[str], list[str]]:
    """The appeals closed in [start, end) and those reopened in it (重办)."""
    closed = await conn.fetch("SELECT DISTINCT appeal_id FROM closures WHERE kind = 'closed' "
                              "AND closed_at >= $1 AND closed_at < $2", start, end)
    reopened = await conn.fetch("SELECT DISTINCT appeal_id FROM ratings WHERE source = 'reopened' "
                                "AND rated_at >= $1 AND rated_at < $2", start, end)
    return [r["appeal_id"] for r in closed], [r["appeal_id"] for r in reopened]


async def stored_draw(conn: asyncpg.Connection, month: str) -> FollowUpDraw | None:
    """The month's draw, or None."""
    row = await conn.fetchrow("SELECT * FROM follow_up_draws WHERE month = $1", month)
    if row is None:
        return None
    appeals = await conn.fetch("SELECT appeal_id, reason FROM follow_up_appeals WHERE month = $1 ORDER BY appeal_id",
                               month)
    return FollowUpDraw(draw_id=row["draw_id"], month=month, seed=row["seed"], share=row["share"],
                        candidates=row["candidates"], drawn_at=row["drawn_at"], drawn_by=row["drawn_by"],
                        appeals=[dict(a) for a in appeals])


async def draws(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every draw, newest month first, with its number of appeals."""
    return await conn.fetch("SELECT d.*, (SELECT count(*) FROM follow_up_appeals a WHERE a.month = d.month) AS drawn "
                            "FROM follow_up_draws d ORDER BY month DESC")


async def source_refs(conn: asyncpg.Connection, appeal_ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch("SELECT DISTINCT ON (appeal_id) appeal_id, source_ref FROM orders "
                            "WHERE appeal_id = ANY($1::text[]) ORDER BY appeal_id, dispatched_at NULLS LAST",
                            list(appeal_ids))
    return {r["appeal_id"]: r["source_ref"] for r in rows}


async def appeal_units(conn: asyncpg.Connection, appeal_ids: Sequence[str]) -> dict[str, list[str]]:
    """The units that held each appeal's orders (a return the lead unit accepted is not holding it)."""
    rows = await conn.fetch("SELECT DISTINCT appeal_id, unit_code FROM orders WHERE appeal_id = ANY($1::text[]) "
                            "AND return_accepted_at IS NULL ORDER BY appeal_id, unit_code", list(appeal_ids))
    units: dict[str, list[str]] = {}
    for r in rows:
        units.setdefault(r["appeal_id"], []).append(r["unit_code"])
    return units


async def own_ratings(conn: asyncpg.Connection, appeal_ids: Sequence[str]) -> dict[str, str]:
    """Each appeal's latest own rating (the closure's outcome, or unsatisfied by a reopening)."""
    rows = await conn.fetch("SELECT DISTINCT ON (appeal_id) appeal_id, rating FROM ratings "
                            "WHERE appeal_id = ANY($1::text[]) ORDER BY appeal_id, rated_at DESC, event_id DESC",
                            list(appeal_ids))
    return {r["appeal_id"]: r["rating"] for r in rows}


async def draw_months(conn: asyncpg.Connection, appeal_ids: Sequence[str]) -> dict[str, str]:
    """The latest draw each appeal is in."""
    rows = await conn.fetch("SELECT appeal_id, max(month) AS month FROM follow_up_appeals "
                            "WHERE appeal_id = ANY($1::text[]) GROUP BY appeal_id", list(appeal_ids))
    return {r["appeal_id"]: r["month"] for r in rows}


async def listing(conn: asyncpg.Connection, month: str | None, contradicted: bool | None,
                  limit: int = 1000) -> list[FollowUpItem]:
    """The drawn appeals of ``month`` (every month: None) with their latest call, and calls of undrawn appeals."""
    rows = await conn.fetch(
        """
        WITH latest AS (
            SELECT DISTINCT ON (appeal_id, month) * FROM follow_ups
            ORDER BY appeal_id, month, (outcome = 'rated') DESC, received_at DESC, feedback_id DESC
        ), items AS (
            SELECT a.month, a.appeal_id, a.reason FROM follow_up_appeals a
            UNION ALL
            SELECT l.month, l.appeal_id, NULL FROM latest l
            WHERE NOT EXISTS (SELECT 1 FROM follow_up_appeals a WHERE a.month = l.month AND a.appeal_id = l.appeal_id)
        )
        SELECT i.month, i.appeal_id, i.reason, l.outcome, l.rating, l.own_rating, coalesce(l.contradicts, false)
               AS contradicts, l.feedback_id, l.comment, l.received_at,
               (SELECT r.rating FROM ratings r WHERE r.appeal_id = i.appeal_id
                ORDER BY r.rated_at DESC, r.event_id DESC LIMIT 1) AS current_own
        FROM items i LEFT JOIN latest l ON l.appeal_id = i.appeal_id AND l.month IS NOT DISTINCT FROM i.month
        WHERE ($1::text IS NULL OR i.month = $1) AND ($2::boolean IS NULL OR coalesce(l.contradicts, false) = $2)
        ORDER BY i.month DESC NULLS LAST, i.appeal_id LIMIT $3
        """, month, contradicted, limit)
    return [FollowUpItem(month=r["month"], appeal_id=r["appeal_id"], reason=r["reason"],
                         own_rating=r["own_rating"] or r["current_own"], outcome=r["outcome"], rating=r["rating"],
                         contradicts=r["contradicts"], feedback_id=r["feedback_id"], comment=r["comment"],
                         received_at=r["received_at"]) for r in rows]


async def unit_month_checks(conn: asyncpg.Connection, month: str) -> dict[str, dict[str, int]]:
    """Per unit: the month's follow-up and survey ratings (each appeal once: its latest rated call, its survey row)."""
    rows = await conn.fetch(
        """
        WITH fu AS (
            SELECT DISTINCT ON (appeal_id) appeal_id, rating, contradicts FROM follow_ups
            WHERE month = $1 AND outcome = 'rated' ORDER BY appeal_id, received_at DESC, feedback_id DESC
        ), sv AS (
            SELECT appeal_id, rating FROM survey_ratings WHERE month = $1
        ), held AS (
            SELECT DISTINCT appeal_id, unit_code FROM orders
            WHERE return_accepted_at IS NULL
              AND appeal_id IN (SELECT appeal_id FROM fu UNION SELECT appeal_id FROM sv)
        )
        SELECT h.unit_code,
               count(fu.appeal_id) AS follow_up_rated,
               count(fu.appeal_id) FILTER (WHERE fu.rating = ANY($2::text[])) AS follow_up_satisfied,
               count(fu.appeal_id) FILTER (WHERE fu.contradicts) AS follow_up_contradicted,
               count(sv.appeal_id) AS survey_rated,
               count(sv.appeal_id) FILTER (WHERE sv.rating = ANY($2::text[])) AS survey_satisfied
        FROM held h LEFT JOIN fu ON fu.appeal_id = h.appeal_id LEFT JOIN sv ON sv.appeal_id = h.appeal_id
        GROUP BY h.unit_code
        """, month, sorted(PLEASED))
    return {r["unit_code"]: {k: r[k] for k in r.keys() if k != "unit_code"} for r in rows}


# --- use cases -------------------------------------------------------------------------------------


async def draw_month(uow, ctx: Context, month: str, now: datetime, *, share: float | None = None,
                     seed: int | None = None, by: str = "command") -> FollowUpDraw:
    """Draw ``month`` for follow-up calls once; a second call gives the stored draw.

    ``share`` defaults to ``follow_ups.share`` of escalation.yaml, ``seed`` to a
    random one (recorded). Asking again with another share or seed than the
    stored draw's raises :class:`DrawConflict`: a draw is never replaced.
    """
    start, end = month_bounds(month)
    conn = uow.conn
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"coffeetime.follow_up_draw.{month}")
    existing = await stored_draw(conn, month)
    if existing is not None:
        if (share is not None and share != existing.share) or (seed is not None and seed != existing.seed):
            raise DrawConflict(f"{month} was drawn on {existing.drawn_at:%Y-%m-%d} with share {existing.share:g} and "
                               f"seed {existing.seed}; a draw is not replaced")
        return existing
    share = ctx.config.follow_ups.share if share is None else share
    if not 0 <= share <= 1:
        raise ValueError("share must be between 0 and 1")
    seed = secrets.randbelow(2**31) if seed is None else seed
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED}")
    closed, reopened = await candidates(conn, start, end)
    drawn = draw_follow_ups(closed, reopened, share, seed)
    the_id = draw_id(month)
    await conn.execute("INSERT INTO follow_up_draws (month, draw_id, seed, share, candidates, drawn_at, drawn_by) "
                       "VALUES ($1, $2, $3, $4, $5, $6, $7)", month, the_id, seed, share,
                       len(set(closed) | set(reopened)), now, by)
    await conn.executemany("INSERT INTO follow_up_appeals (month, appeal_id, reason) VALUES ($1, $2, $3)",
                           [(month, d.appeal_id, d.reason) for d in drawn])
    refs = await source_refs(conn, [d.appeal_id for d in drawn])
    for d in drawn:
        uow.publish(subjects.APPEAL_FOLLOW_UP_DRAWN, ev.FollowUpDrawn(
            event_id=stable_event_id("follow_up_drawn", month, d.appeal_id), occurred_at=now, appeal_id=d.appeal_id,
            source_ref=refs.get(d.appeal_id, ""), correlation_id=the_id, actor=by, draw_id=the_id, month=month,
            seed=seed, share=share, reason=d.reason))
    made = await stored_draw(conn, month)
    assert made is not None
    return made.model_copy(update={"created": True})


async def record_follow_ups(uow, ctx: Context, feedbacks: Sequence[Feedback], now: datetime) -> int:
    """Store each follow-up call once (by feedback id); flag and announce contradictions. Returns how many were new."""
    calls = [f for f in feedbacks if f.is_follow_up]
    if not calls:
        return 0
    conn = uow.conn
    ids = sorted({f.appeal_id for f in calls})
    own, months, units = await own_ratings(conn, ids), await draw_months(conn, ids), await appeal_units(conn, ids)
    refs = await source_refs(conn, ids)
    fresh = 0
    for f in sorted(calls, key=lambda f: f.feedback_id):
        rating = f.rating.value if f.rating is not None else None
        month = months.get(f.appeal_id) or current_month(now)
        flagged = contradicts(rating, own.get(f.appeal_id))
        inserted = await conn.fetchval(
            "INSERT INTO follow_ups (feedback_id, appeal_id, month, outcome, rating, own_rating, contradicts, comment, "
            "caller, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
            "ON CONFLICT (feedback_id) DO NOTHING RETURNING true",
            f.feedback_id, f.appeal_id, month, f.outcome or "rated", rating, own.get(f.appeal_id), flagged,
            f.comment, f.caller, now)
        if not inserted:
            continue  # redelivered or republished: counted once
        fresh += 1
        if flagged:
            lead = next((u.unit_code for u in ctx.district.units if u.kind == UnitKind.lead), None)
            uow.publish(subjects.APPEAL_FOLLOW_UP_CONTRADICTED, ev.FollowUpContradicted(
                event_id=stable_event_id("follow_up_contradicted", f.feedback_id), occurred_at=now,
                appeal_id=f.appeal_id, source_ref=refs.get(f.appeal_id, ""), correlation_id=f.feedback_id,
                actor=f.caller or "follow_up", feedback_id=f.feedback_id, month=months.get(f.appeal_id),
                follow_up_rating=rating or "", own_rating=own[f.appeal_id], unit_codes=units.get(f.appeal_id, []),
                lead_unit=lead, comment=f.comment))
            log.info("follow-up contradicts the enterprise's rating",
                     extra={"appeal_id": f.appeal_id, "follow_up": rating, "own": own[f.appeal_id]})
    return fresh


# --- wiring ------------------------------------------------------------------------------------------


def register(service: Service, ctx: Context) -> None:
    """Subscribe to ``ct.in.feedback`` (follow-ups only; dispatch answers the rest) and start the monthly draw."""
    service.publishes(*PUBLISHES)

    async def handle(batch: list[Delivery]) -> None:
        """Follow-up calls (via follow_up, or an outcome): stored once each, contradictions flagged."""
        feedbacks = [d.message for d in batch if d.message is not None]  # invalid ones: dispatch refuses them
        if any(f.is_follow_up for f in feedbacks):
            async with service.unit_of_work() as uow:
                await record_follow_ups(uow, ctx, feedbacks, clock.now())

    service.consumers.subscribe(subjects.IN_FEEDBACK, handle, invalid="reject")
    if ctx.config.follow_ups.auto_draw_day is not None:
        service.background.append(monthly_drawer(ctx))


def monthly_drawer(ctx: Context, period: float = 300.0):
    """Draw last month by itself from ``follow_ups.auto_draw_day`` on (once: replicas and restarts find it drawn)."""

    async def draw_last_month(service: Service) -> None:
        now = clock.now()
        month = previous_month(now)
        if now.astimezone(SHANGHAI).day < ctx.config.follow_ups.auto_draw_day:
            return
        async with service.pool.acquire() as conn:
            if await conn.fetchval("SELECT true FROM follow_up_draws WHERE month = $1", month):
                return
        async with service.unit_of_work() as uow:
            made = await draw_month(uow, ctx, month, now, by="monthly")
        log.info("follow-ups drawn", extra={"month": month, "appeals": len(made.appeals), "seed": made.seed})

    return every(period, draw_last_month, name="draw_last_month", failure="follow-ups not drawn", log=log)
