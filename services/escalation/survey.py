"""Third-party survey (第三方测评): importing a survey firm's CSV for a month, all or nothing.

:func:`import_survey` checks every row (:func:`domain.survey.parse_survey`), then that
each appeal is one escalation knows (it had a work order or a closure) and was not
rated by another file of the same month; with any error nothing is stored and
:class:`SurveyInvalid` lists one error per bad field with its line. A valid file is
stored in one transaction (``survey_imports``, ``survey_ratings``); the same file
again for the same month is recognised by its SHA-256 and stores nothing more.
The evaluation counts the month's rows per unit (:func:`followups.unit_month_checks`).
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel, Field

from services.escalation.domain.survey import RowError, digest, parse_survey
from services.escalation.months import month_bounds


class SurveyInvalid(ValueError):
    """The file has bad rows; nothing was stored."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} error(s); nothing was imported")
        self.errors = errors


class SurveyImport(BaseModel):
    """What an import stored, or found stored before."""

    import_id: str
    month: str
    sha256: str
    filename: str | None
    rows: int
    imported_at: datetime
    imported_by: str
    created: bool = Field(description="False: the same file was imported for this month before; nothing more stored.")


def import_id(month: str, sha256: str) -> str:
    return f"SV-{month}-{sha256[:16]}"


async def import_survey(conn: asyncpg.Connection, month: str, data: bytes, now: datetime, *,
                        filename: str | None = None, by: str = "command") -> SurveyImport:
    """Import a survey file for ``month`` in the caller's transaction; :class:`SurveyInvalid` stores nothing."""
    month_bounds(month)  # ValueError on a bad month
    sha = digest(data)
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"coffeetime.survey.{month}")
    before = await conn.fetchrow("SELECT * FROM survey_imports WHERE month = $1 AND sha256 = $2", month, sha)
    if before is not None:
        return SurveyImport(**dict(before), created=False)
    rows, errors = parse_survey(data)
    ids = [r.appeal_id for r in rows]
    known = {r["appeal_id"] for r in await conn.fetch(
        "SELECT appeal_id FROM orders WHERE appeal_id = ANY($1::text[]) UNION "
        "SELECT appeal_id FROM closures WHERE appeal_id = ANY($1::text[])", ids)}
    rated = {r["appeal_id"]: r["import_id"] for r in await conn.fetch(
        "SELECT appeal_id, import_id FROM survey_ratings WHERE month = $1 AND appeal_id = ANY($2::text[])", month, ids)}
    for r in rows:
        if r.appeal_id not in known:
            errors.append(RowError(line=r.line, field="appeal_id", message=f"{r.appeal_id}: no such appeal "
                                                                           "(no work order or closure known)"))
        elif r.appeal_id in rated:
            errors.append(RowError(line=r.line, field="appeal_id",
                                   message=f"{r.appeal_id}: already rated for {month} by import {rated[r.appeal_id]}"))
    if not rows and not errors:
        errors.append(RowError(line=2, field="file", message="no rows"))
    if errors:
        raise SurveyInvalid(sorted(errors, key=lambda e: (e.line, e.field)))
    the_id = import_id(month, sha)
    await conn.execute("INSERT INTO survey_imports (import_id, month, sha256, filename, rows, imported_at, imported_by) "
                       "VALUES ($1, $2, $3, $4, $5, $6, $7)", the_id, month, sha, filename, len(rows), now, by)
    await conn.executemany(
        "INSERT INTO survey_ratings (month, appeal_id, import_id, line, rating, comment, surveyor) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [(month, r.appeal_id, the_id, r.line, r.rating, r.comment, r.surveyor) for r in rows])
    return SurveyImport(import_id=the_id, month=month, sha256=sha, filename=filename, rows=len(rows),
                        imported_at=now, imported_by=by, created=True)


async def imports(conn: asyncpg.Connection, month: str | None = None) -> list[SurveyImport]:
    """The imports (of ``month``), newest first."""
    rows = await conn.fetch("SELECT * FROM survey_imports WHERE $1::text IS NULL OR month = $1 "
                            "ORDER BY imported_at DESC", month)
    return [SurveyImport(**dict(r), created=False) for r in rows]
