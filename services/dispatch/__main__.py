"""Start-up of the dispatch service: ``python -m services.dispatch`` or ``coffeetime run dispatch``."""

from __future__ import annotations

from pathlib import Path

from services.dispatch import api, console, handlers
from services.dispatch.unit_of_work import DispatchUnitOfWork
from shared.district import load_district
from shared.service import Service, run
from shared.settings import Settings

NAME = "dispatch"


def create_service(settings: Settings) -> Service:
    district = load_district(settings.district_config, settings.unit_tokens)
    service = Service(NAME, settings, Path(__file__).with_name("migrations"), unit_of_work=DispatchUnitOfWork)
    handlers.register(service, district)
    api.register(service, district)
    console.register(service, district)  # the web console at /console (services/dispatch/console/)
    return service


if __name__ == "__main__":
    run(create_service, NAME)
