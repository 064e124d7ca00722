"""Start-up of the intake service: ``python -m services.intake`` or ``coffeetime run intake``."""

from __future__ import annotations

from pathlib import Path

from services.intake import api, handlers
from services.intake.unit_of_work import IntakeUnitOfWork
from shared.service import Service, run
from shared.settings import Settings

NAME = "intake"


def create_service(settings: Settings) -> Service:
    """Intake, wired: its unit of work, subscriptions, publications and HTTP routes (no I/O yet)."""
    service = Service(NAME, settings, Path(__file__).with_name("migrations"), unit_of_work=IntakeUnitOfWork)
    handlers.register(service)
    api.register(service)
    return service


if __name__ == "__main__":
    run(create_service, NAME)
