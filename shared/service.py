"""The shape every service shares: database, broker, outbox relay, HTTP, start and stop.

A service's ``__main__.py`` builds a :class:`Service`; its ``handlers.py``
declares what it consumes (``service.consumers.subscribe``) and what it publishes
(``service.publishes``), its ``api.py`` adds HTTP routes (``service.http``), and
background tasks go in ``service.background``; :func:`run` serves it. Building a
service does no I/O, so the AsyncAPI generator reads those declarations from the
same objects that run (``tools/asyncapi.py``).

One NATS connection per process: FastStream's broker owns it (the query
responders are FastStream subscribers); the consumers, the outbox relay and the
consumer statistics use its JetStream context.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import nats
import uvicorn
import uvloop
from fastapi import FastAPI, Response
from fastapi.responses import PlainTextResponse
from faststream.nats import NatsBroker
from faststream.nats.prometheus import NatsPrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from shared import metrics
from shared.access import DemoCredentialsRefused, check_at_start
from shared.bus import ConsumerGroup, broker_options, ensure_streams
from shared.db import create_pool, migrate
from shared.http import install_problem_handlers
from shared.logs import setup_logging
from shared.outbox import OutboxRelay
from shared.settings import Settings
from shared.unit_of_work import Publications, UnitOfWork

log = logging.getLogger("coffeetime.service")

BackgroundTask = Callable[["Service"], Awaitable[None]]


class Health(BaseModel):
    """What ``/livez``, ``/readyz`` and ``/healthz`` answer."""

    service: str
    ok: bool
    database: bool | None = None
    nats: bool | None = None


class Service:
    def __init__(self, name: str, settings: Settings, migrations: Path,
                 unit_of_work: type[UnitOfWork] = UnitOfWork) -> None:
        self.name = name
        self.settings = settings
        self.migrations = migrations
        self.broker = NatsBroker(
            (settings.nats_url or "nats://127.0.0.1:4222").split(","),
            name=f"coffeetime-{name}",
            reconnect_time_wait=0.5,
            middlewares=[NatsPrometheusMiddleware(registry=metrics.registry, app_name=name)],
            graceful_timeout=15,
            logger=logging.getLogger(f"coffeetime.{name}.faststream"),
            max_reconnect_attempts=-1,
            # its own NATS user and inbox prefix (deploy/nats/nats.conf), when configured
            **broker_options(settings.nats_connect_options()),
        )
        self.consumers = ConsumerGroup(
            name, self.broker, batch_size=settings.batch_size,
            max_deliver=settings.max_deliver, ack_wait=settings.ack_wait_s, backoff=settings.backoff(),
        )
        self.publications = Publications(name)
        self._unit_of_work = unit_of_work
        self.http = FastAPI(title=f"coffeetime {name}", version="1.0")
        install_problem_handlers(self.http)
        self.pool: asyncpg.Pool | None = None
        self.nc: nats.NATS | None = None
        self.js = None
        self.relay: OutboxRelay | None = None
        self.background: list[BackgroundTask] = []
        self._tasks: list[asyncio.Task] = []
        self._add_ops_routes()

    # --- wiring -------------------------------------------------------------------

    def _add_ops_routes(self) -> None:
        @self.http.get("/livez", tags=["operations"], summary="Liveness: the process serves (restart it if not)",
                       response_model=Health)
        async def livez() -> Health:
            # no dependency is checked here: a PostgreSQL or NATS outage must not restart every pod
            return Health(service=self.name, ok=True)

        @self.http.get("/readyz", tags=["operations"], response_model=Health, responses={503: {"model": Health}},
                       summary="Readiness: PostgreSQL and NATS answer (send traffic only then)")
        async def readyz(response: Response) -> Health:
            health = await self.health()
            response.status_code = 200 if health.ok else 503
            return health

        @self.http.get("/healthz", tags=["operations"], response_model=Health, responses={503: {"model": Health}},
                       summary="Readiness, under its older name")
        async def healthz(response: Response) -> Health:
            return await readyz(response)

        @self.http.get("/metrics", tags=["operations"], summary="Prometheus metrics",
                       response_class=PlainTextResponse)
        async def prometheus_metrics() -> Response:
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def health(self) -> Health:
        """Whether this process's database and NATS connection answer now."""
        database = False
        try:
            if self.pool:
                async with self.pool.acquire(timeout=2) as conn:
                    database = bool(await conn.fetchval("SELECT true"))
        except Exception:  # noqa: BLE001 - reported as not ready
            pass
        nats_ok = bool(self.nc and self.nc.is_connected)
        return Health(service=self.name, ok=database and nats_ok, database=database, nats=nats_ok)

    def publishes(self, *subjects: str) -> None:
        """Declare the subjects this service publishes (checked on every staged event, and documented)."""
        self.publications.declare(*subjects)

    def unit_of_work(self) -> UnitOfWork:
        """A new unit of work: one transaction whose events are relayed once it commits."""
        return self._unit_of_work(self.name, self.pool, self.publications, on_commit=self.wake_outbox)

    def background_owner(self, kind: type):
        """The object of type ``kind`` that owns one of the background tasks (its scanner, its context)."""
        for task in self.background:
            for owner in (getattr(task, "__self__", None), getattr(task, "ctx", None)):
                if isinstance(owner, kind):
                    return owner
        raise LookupError(f"{self.name} runs no background task of a {kind.__name__}")

    def wake_outbox(self) -> None:
        if self.relay:
            self.relay.wake()

    # --- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        if not s.nats_url or not s.database_url:
            raise RuntimeError("NATS_URL and DATABASE_URL must be set (coffeetime up starts embedded servers)")
        check_at_start(s, self.name)  # the demo credentials only in demo mode (shared/access.py)
        await migrate(s.database_url, self.name, self.migrations)
        self.pool = await create_pool(s.database_url, self.name, s.db_pool_size)
        self.nc = await self.broker.connect()  # the process's one NATS connection
        self.js = self.nc.jetstream()
        await ensure_streams(self.js, replicas=s.stream_replicas)
        await self.consumers.declare(self.js)
        if s.outbox_relay:
            self.relay = OutboxRelay(self.name, self.pool, self.js, batch=s.outbox_batch)
            self.relay.start()
        await self.broker.start()
        await self.consumers.start(self.js)
        for task in self.background:
            self._tasks.append(asyncio.create_task(task(self), name=f"{self.name}-{task.__name__}"))
        self._tasks.append(asyncio.create_task(self._watch_consumers(), name=f"{self.name}-consumer-stats"))
        log.info("service started", extra={"service_name": self.name})

    async def stop(self) -> None:
        await self.consumers.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.relay:
            await self.relay.stop()  # its last round still publishes on the connection
        try:
            await self.broker.stop()  # waits for in-flight responders (graceful_timeout), drains, closes
        except Exception as exc:  # noqa: BLE001
            log.warning("broker stop failed", extra={"error": repr(exc)})
        self.nc = None
        if self.pool:
            await self.pool.close()
        log.info("service stopped", extra={"service_name": self.name})

    async def _watch_consumers(self) -> None:
        while True:
            for sub in self.consumers.subscriptions:
                try:
                    info = await self.js.consumer_info(sub.stream, sub.durable)
                    metrics.CONSUMER_PENDING.labels(self.name, sub.durable).set(info.num_pending + info.num_ack_pending)
                except Exception:  # noqa: BLE001 - a gauge is not worth a crash
                    pass
            # stop() cancels this task; a cancel landing inside nats-py's request can be swallowed there (3.11's
            # wait_for when the reply arrives at once), and stop() then waited for this loop forever (seen in tests)
            if asyncio.current_task().cancelling():
                return
            await asyncio.sleep(10)

    async def serve(self) -> None:
        """Run until SIGINT/SIGTERM: the service and its HTTP endpoints."""
        await self.start()
        config = uvicorn.Config(self.http, host=self.settings.http_host, port=self.settings.port_of(self.name),
                                log_config=None, lifespan="off", access_log=False)
        server = uvicorn.Server(config)

        def request_exit(signum, frame) -> None:  # noqa: ARG001
            server.should_exit = True

        # uvicorn restores the handlers it found and re-raises the signal after its own
        # shutdown; with these in place that re-raise is harmless and the stop below runs
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, request_exit)
        try:
            await server.serve()
        finally:
            await self.stop()


def run(factory: Callable[[Settings], Service], name: str) -> None:
    """Entry point of ``python -m services.<name>`` and ``coffeetime run <name>``."""
    settings = Settings()
    setup_logging(name, settings.log_level)
    service = factory(settings)
    try:
        # uvloop: the same asyncio API on libuv, cheaper per callback, socket read and timer (README Performance)
        uvloop.run(service.serve())
    except KeyboardInterrupt:
        pass
    except DemoCredentialsRefused as refusal:
        log.error(str(refusal), extra={"service_name": name})
        raise SystemExit(2) from None
