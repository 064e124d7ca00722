"""Intake's unit of work: the shared one (transaction, outbox, inbox) with intake's repositories on it."""

from __future__ import annotations

import asyncpg

from services.intake.store import Appeals, Timeline
from shared.unit_of_work import UnitOfWork


class IntakeUnitOfWork(UnitOfWork):
    """One transaction of intake: ``uow.appeals`` and ``uow.timeline`` work on its connection."""

    appeals: Appeals
    timeline: Timeline

    def open_repositories(self, conn: asyncpg.Connection) -> None:
        """Bind intake's repositories to this transaction's connection."""
        self.appeals = Appeals(conn)
        self.timeline = Timeline(conn)
