"""Start-up of the notify service: ``python -m services.notify`` or ``coffeetime run notify``."""

from __future__ import annotations

from pathlib import Path

from services.notify import api, delivery, handlers
from services.notify.config import Context, build_context, http_client_closer
from services.notify.domain import NotifyRules
from services.notify.unit_of_work import NotifyUnitOfWork
from shared.district import District
from shared.service import Service, run
from shared.settings import Settings

NAME = "notify"


def create_service(settings: Settings, *, rules: NotifyRules | None = None,
                   district: District | None = None) -> Service:
    """The notify service; ``rules`` and ``district`` replace the configured files (tests, tools)."""
    service = Service(NAME, settings, Path(__file__).with_name("migrations"), unit_of_work=NotifyUnitOfWork)
    ctx = build_context(settings, rules=rules, district=district)
    handlers.register(service, ctx)
    delivery.register(service, ctx)
    api.register(service)
    service.background.append(http_client_closer(ctx))
    return service


def context_of(service: Service) -> Context:
    """The context a notify service runs with (for operations tools and tests)."""
    return service.background_owner(Context)


if __name__ == "__main__":
    run(create_service, NAME)
