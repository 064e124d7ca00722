"""Start-up of the escalation service: ``python -m services.escalation`` or ``coffeetime run escalation``."""

from __future__ import annotations

from pathlib import Path

from services.escalation import api, evaluation, handlers, programme_api, revised_calendar
from services.escalation.config import context
from services.escalation.scanner import DeadlineScanner
from services.escalation.unit_of_work import EscalationUnitOfWork
from shared.service import Service, run
from shared.settings import Settings

NAME = "escalation"


def create_service(settings: Settings) -> Service:
    """The escalation service: its clock subscriptions, the scanner, the gauges, the monthly list and the report."""
    service = Service(NAME, settings, Path(__file__).with_name("migrations"), unit_of_work=EscalationUnitOfWork)
    ctx = context(settings.district_config)
    handlers.register(service, ctx)
    service.background.append(DeadlineScanner(ctx, interval=settings.scan_interval_s).run)
    service.background.append(evaluation.gauge_refresher(ctx))
    service.background.append(evaluation.monthly_list_publisher())
    service.background.append(revised_calendar.calendar_watch(ctx))  # the start-up re-plan, loaded years, gauges
    api.register(service, ctx)
    programme_api.register(service, ctx)  # follow-ups, survey, programme figures
    return service


def scanner_of(service: Service) -> DeadlineScanner:
    """The deadline scanner a service runs (for operations tools and tests)."""
    return service.background_owner(DeadlineScanner)


if __name__ == "__main__":
    run(create_service, NAME)
