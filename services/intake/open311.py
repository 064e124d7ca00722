"""Intake's Open311 GeoReport v2 API at ``/open311/v2/``: JSON or XML by the suffix, as the specification has it.

- ``GET services.{json|xml}`` and ``GET services/{service_code}.{json|xml}``: the district's
  categories and their (common) definition; public.
- ``POST requests.{json|xml}`` (``application/x-www-form-urlencoded``, ``api_key`` required):
  registers an appeal through :func:`services.intake.use_cases.register_appeals`, the use
  case of the app channel, as the :class:`~shared.contracts.AppAppeal` that
  :func:`services.intake.georeport.parse_submission` makes of the parameters; the GeoReport
  row (client, service code, location, e-mail) is written in the appeal's transaction by
  :class:`GeoReportUnitOfWork`. 201 with the appeal id; the same client posting the same
  request again gets 200 and the same id.
- ``GET requests.{json|xml}`` and ``GET requests/{id}.{json|xml}`` (``api_key`` required): the
  client's own requests only (another client's, or an appeal of another channel, is 404 /
  absent), with their state from the timeline (:func:`services.intake.georeport.request_view`).

Keys: ``OPEN311_API_KEYS`` (``client=sha256hex``), checked by :class:`shared.access.ReadKeys`
(constant time, every hash compared). Errors are the specification's list of ``{code,
description}`` (400 bad parameter, 403 api_key, 404 not found, 503 the database away), in
the format asked for; refused keys are counted in ``coffeetime_http_refused_total``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
from fastapi import APIRouter, Query, Request, Response

from services.intake import georeport, store, use_cases
from services.intake.georeport import GeoError, Step, Submission, TrackedRequest
from services.intake.handlers import duplicate_rules
from services.intake.store import Appeals
from services.intake.unit_of_work import IntakeUnitOfWork
from shared import clock
from shared.access import ReadKeys
from shared.contracts import Channel
from shared.contracts.common import check_text, printable
from shared.district import load_district, parse_token_hashes
from shared.http import REFUSED
from shared.service import Service

log = logging.getLogger("coffeetime.intake.open311")

PREFIX = "/open311/v2"
MAX_BODY = 256 * 1024
FORM = "application/x-www-form-urlencoded"
#: how many of a client's requests one round of a filtered list reads
CHUNK = 1000


def open311_keys(settings) -> ReadKeys:
    """The Open311 clients' keys (``OPEN311_API_KEYS``); none when unset."""
    pairs = parse_token_hashes(settings.open311_api_keys, "OPEN311_API_KEYS") if settings.open311_api_keys else {}
    return ReadKeys({name: digest for name, digest in pairs.items() if digest})


class GeoReportError(Exception):
    """Answer with the specification's error list."""

    def __init__(self, status: int, *errors: GeoError | str) -> None:
        super().__init__(status)
        self.status = status
        self.errors = [e if isinstance(e, GeoError) else GeoError(code=status, description=e) for e in errors]


def answer(document: Any, fmt: str, status: int = 200) -> Response:
    body, media_type = georeport.render(document, fmt if fmt in georeport.FORMATS else "json")
    return Response(body, status_code=status, media_type=media_type)


# --- SQL (schema intake) ------------------------------------------------------------------------

async def insert_request(conn: asyncpg.Connection, appeal_id: str, s: Submission) -> None:
    """Keep what GeoReport says beside a new appeal (in the appeal's transaction)."""
    await conn.execute(
        "INSERT INTO open311_requests (appeal_id, client, request_key, service_code, lat, long, address_string, "
        "email, device_id, account_id, media_url, requested_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
        "$11, $12)",
        appeal_id, s.client, s.request_key, s.service_code, s.lat, s.long, s.address_string, s.email, s.device_id,
        s.account_id, s.media_url, s.appeal.submitted_at)


_REQUEST_COLUMNS = ("SELECT o.appeal_id, o.service_code, o.lat, o.long, o.address_string, o.media_url, o.requested_at, "
                    "a.content, a.registered_at FROM open311_requests o JOIN appeals a USING (appeal_id) ")


async def requests_by_id(conn: asyncpg.Connection, client: str, ids: Sequence[str]) -> list[asyncpg.Record]:
    """The client's requests among ``ids``."""
    return await conn.fetch(_REQUEST_COLUMNS + "WHERE o.client = $1 AND o.appeal_id = ANY($2::text[])",
                            client, list(ids))


async def requests_in(conn: asyncpg.Connection, client: str, start: datetime, end: datetime,
                      codes: Sequence[str], after: tuple[datetime, str] | None, limit: int) -> list[asyncpg.Record]:
    """The client's requests in [start, end), newest first, after the keyset position ``after``."""
    return await conn.fetch(
        _REQUEST_COLUMNS + "WHERE o.client = $1 AND o.requested_at >= $2 AND o.requested_at < $3 "
        "AND (cardinality($4::text[]) = 0 OR o.service_code = ANY($4::text[])) "
        "AND ($5::timestamptz IS NULL OR (o.requested_at, o.appeal_id) < ($5, $6)) "
        "ORDER BY o.requested_at DESC, o.appeal_id DESC LIMIT $7",
        client, start, end, list(codes), after[0] if after else None, after[1] if after else None, limit)


async def steps_of(conn: asyncpg.Connection, appeal_ids: Sequence[str]) -> dict[str, list[Step]]:
    """The timelines of ``appeal_ids`` (notifications left out), oldest first, in one query."""
    rows = await conn.fetch(
        "SELECT appeal_id, subject, occurred_at, payload->>'unit' AS unit, payload->>'role' AS role, "
        "payload->>'order_id' AS order_id, payload->>'clock' AS clock, payload->>'due_at' AS due_at, "
        "payload->>'reply' AS reply, payload->>'outcome' AS outcome, payload->>'master_appeal_id' AS master "
        "FROM timeline WHERE appeal_id = ANY($1::text[]) AND subject NOT LIKE 'ct.notify.%' "
        "ORDER BY appeal_id, occurred_at, subject", list(appeal_ids))
    out: dict[str, list[Step]] = {}
    for r in rows:
        out.setdefault(r["appeal_id"], []).append(Step(
            subject=r["subject"], occurred_at=r["occurred_at"], unit=r["unit"], role=r["role"],
            order_id=r["order_id"], clock=r["clock"], due_at=r["due_at"], reply=r["reply"], outcome=r["outcome"],
            master_appeal_id=r["master"]))
    return out


def tracked(r: asyncpg.Record) -> TrackedRequest:
    return TrackedRequest(appeal_id=r["appeal_id"], service_code=r["service_code"], content=r["content"],
                          requested_at=r["requested_at"], registered_at=r["registered_at"],
                          address=r["address_string"], lat=r["lat"], long=r["long"], media_url=r["media_url"])


# --- the unit of work of a POST: the appeal and its GeoReport row together ------------------------

class GeoReportAppeals(Appeals):
    """Intake's appeals repository that also keeps the GeoReport row of the appeal it registers."""

    def __init__(self, conn: asyncpg.Connection, submission: Submission) -> None:
        super().__init__(conn)
        self.submission = submission

    async def add_new(self, appeals, msg_ids):
        new = await super().add_new(appeals, msg_ids)
        appeal_id = new.get((Channel.app.value, self.submission.source_id))
        if appeal_id:  # None: the same request was registered before; its row is there
            await insert_request(self.conn, appeal_id, self.submission)
        return new


class GeoReportUnitOfWork(IntakeUnitOfWork):
    """Intake's unit of work for one ``POST requests``: the use case registers the appeal as from the app,
    and the GeoReport row commits with it (or neither does)."""

    def __init__(self, service: Service, submission: Submission) -> None:
        super().__init__(service.name, service.pool, service.publications, on_commit=service.wake_outbox)
        self.submission = submission

    def open_repositories(self, conn: asyncpg.Connection) -> None:
        super().open_repositories(conn)
        self.appeals = GeoReportAppeals(conn, self.submission)


# --- reading the parameters -----------------------------------------------------------------------

def _checked(pairs: Sequence[tuple[str, str]], errors: list[GeoError]) -> dict[str, str]:
    """The parameters as a dict; a parameter given twice, or holding control characters, is an error."""
    out: dict[str, str] = {}
    for name, value in pairs:
        shown = printable(name, 60)
        try:
            check_text(name)
            check_text(value)
        except ValueError as exc:
            errors.append(georeport.bad(shown, str(exc)))
            continue
        if name in out and out[name] != value:
            errors.append(georeport.bad(shown, "given twice"))
        out.setdefault(name, value)
    return out


async def form_of(request: Request) -> dict[str, str]:
    """The parameters of a POST: the form body (``application/x-www-form-urlencoded``) and the query string."""
    errors: list[GeoError] = []
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if len(body) > MAX_BODY:
        raise GeoReportError(400, f"the body is larger than {MAX_BODY // 1024} KiB")
    if body and content_type != FORM:
        raise GeoReportError(400, f"send the parameters as {FORM}")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise GeoReportError(400, "the body is not URL-encoded UTF-8") from None
    form = _checked([*pairs, *request.query_params.multi_items()], errors)
    if errors:
        raise GeoReportError(400, *errors)
    return form


def client_of(service: Service, keys: ReadKeys, endpoint: str, api_key: str | None) -> str:
    """The client whose ``api_key`` this is, or a counted 403 (the specification's status for a bad key)."""
    if not api_key:
        REFUSED.labels(service.name, endpoint, "missing_key").inc()
        raise GeoReportError(403, "api_key required")
    client = keys.client_of(api_key)
    if client is None:
        REFUSED.labels(service.name, endpoint, "unknown_key").inc()
        raise GeoReportError(403, "invalid api_key")
    return client


# --- the routes ------------------------------------------------------------------------------------

def _documented(model: Any, *statuses: int, ok: int = 200) -> dict[int | str, dict[str, Any]]:
    """``responses=``: the JSON schema of each status and its XML twin (the same document as XML)."""
    xml = {"text/xml": {"schema": {"type": "string"}}}
    out: dict[int | str, dict[str, Any]] = {ok: {"model": model, "content": xml, "description": "JSON or XML"}}
    what = {200: "The same request again: the same id", 400: "A bad parameter, one error each",
            403: "No or an invalid api_key", 404: "No such service, request or format",
            503: "The database is away; try again"}
    for s in statuses:
        out[s] = {"model": list[GeoError], "content": xml, "description": what.get(s, "Error")}
    return out


FORMAT_DOC = "json or xml (the suffix)."
POST_BODY = {"requestBody": {"required": True, "content": {FORM: {"schema": {
    "type": "object", "required": ["api_key", "service_code"],
    "properties": {**{name: {"type": "string"} for name in sorted(georeport.PARAMETERS)},
                   **{f"attribute[{a.code}]": {"type": "string", "description": a.description}
                      for a in georeport.ATTRIBUTES}}}}}}}


def register(service: Service) -> None:
    """Add the GeoReport v2 routes under ``/open311/v2`` to ``service.http``."""
    router = APIRouter(prefix=PREFIX, tags=["open311"])
    district = load_district(service.settings.district_config)
    keys = open311_keys(service.settings)
    duplicates, category_of = duplicate_rules(service)
    for endpoint in ("/open311/v2/requests", "/open311/v2/requests/{id}"):
        for reason in ("missing_key", "unknown_key"):
            REFUSED.labels(service.name, endpoint, reason)  # exported at 0 from the start

    def format_of(fmt: str) -> str:
        if fmt not in georeport.FORMATS:
            raise GeoReportError(404, f"no format {printable(fmt, 20)!r}: json or xml")
        return fmt

    @router.get("/services.{fmt}", response_class=Response, summary="GeoReport: the services (the district's categories)",
                responses=_documented(list[georeport.Service], 404))
    async def service_list(fmt: str, jurisdiction_id: str | None = Query(None, description="Ignored: one district.")) -> Response:
        """Every category as a GeoReport service; public."""
        return answer([georeport.service_of(c) for c in district.categories], format_of(fmt))

    @router.get("/services/{service_code}.{fmt}", response_class=Response,
                summary="GeoReport: a service's definition (its attributes)",
                responses=_documented(georeport.ServiceDefinition, 404))
    async def service_definition(service_code: str, fmt: str,
                                 jurisdiction_id: str | None = Query(None, description="Ignored.")) -> Response:
        """The attributes ``POST requests`` takes for ``service_code``; public."""
        format_of(fmt)
        category = district.category(service_code)
        if category is None or category.code != service_code:
            raise GeoReportError(404, f"no service {printable(service_code, 40)!r}")
        return answer(georeport.definition_of(category), fmt)

    @router.post("/requests.{fmt}", response_class=Response, status_code=201, openapi_extra=POST_BODY,
                 summary="GeoReport: post a request (registers an appeal, as the app channel does)",
                 responses=_documented(list[georeport.CreatedRequest], 200, 400, 403, 404, 503, ok=201))
    async def post_request(fmt: str, request: Request) -> Response:
        """Register an appeal from GeoReport parameters; the same client's same request again answers its id."""
        format_of(fmt)
        form = await form_of(request)
        client = client_of(service, keys, "/open311/v2/requests", form.get("api_key"))
        submission, errors = georeport.parse_submission(form, client, district, clock.now())
        if submission is None:
            raise GeoReportError(400, *errors)
        try:
            done = await use_cases.register_appeals(GeoReportUnitOfWork(service, submission),
                                                    [use_cases.Received(submission.appeal)], (), duplicates,
                                                    category_of)
            status = 201
            if done.registered:
                appeal_id = done.registered[0].appeal_id
            else:
                status = 200
                async with service.pool.acquire() as conn:
                    row = await store.find_appeal(conn, None, Channel.app.value, submission.source_id)
                appeal_id = row["appeal_id"]
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("open311 request not registered", extra={"client": client, "error": repr(exc)})
            raise GeoReportError(503, "the request cannot be registered now; post it again later") from exc
        log.info("open311 request", extra={"client": client, "appeal_id": appeal_id, "new": status == 201})
        category = district.category(submission.service_code)
        return answer([georeport.created(appeal_id, category, submission.account_id)], fmt, status)

    async def views(client: str, filters: georeport.Filters) -> list[georeport.ServiceRequest]:
        async with service.pool.acquire() as conn:
            if filters.ids:  # the specification: ids override every other parameter
                rows = {r["appeal_id"]: r for r in await requests_by_id(conn, client, filters.ids)}
                found = [rows[i] for i in filters.ids if i in rows]
                steps = await steps_of(conn, [r["appeal_id"] for r in found])
                return [georeport.request_view(tracked(r), steps.get(r["appeal_id"], []), district) for r in found]
            start, end = georeport.window(filters, clock.now())
            out: list[georeport.ServiceRequest] = []
            after = None
            while len(out) < georeport.MAX_REQUESTS:
                rows = await requests_in(conn, client, start, end, filters.service_codes, after, CHUNK)
                steps = await steps_of(conn, [r["appeal_id"] for r in rows])
                for r in rows:
                    view = georeport.request_view(tracked(r), steps.get(r["appeal_id"], []), district)
                    if not filters.statuses or view.status in filters.statuses:
                        out.append(view)
                if len(rows) < CHUNK:
                    break
                after = (rows[-1]["requested_at"], rows[-1]["appeal_id"])
            return out[:georeport.MAX_REQUESTS]

    @router.get("/requests.{fmt}", response_class=Response,
                summary="GeoReport: the client's requests (default: the last 90 days, at most 1,000, newest first)",
                responses=_documented(list[georeport.ServiceRequest], 400, 403, 404))
    async def request_list(
        fmt: str,
        api_key: str | None = Query(None, description="The client's key (OPEN311_API_KEYS)."),
        service_request_id: str | None = Query(None, description="Ids, comma separated; overrides the others."),
        service_code: str | None = Query(None, description="Service codes, comma separated."),
        start_date: str | None = Query(None, description="W3C datetime or YYYY-MM-DD (Asia/Shanghai)."),
        end_date: str | None = Query(None, description="W3C datetime or YYYY-MM-DD; at most 90 days after start."),
        status: str | None = Query(None, description="open, closed or both, comma separated."),
        jurisdiction_id: str | None = Query(None, description="Ignored."),
    ) -> Response:
        """The requests this client posted, with their state."""
        format_of(fmt)
        client = client_of(service, keys, "/open311/v2/requests", api_key)
        query = {k: v for k, v in {"service_request_id": service_request_id, "service_code": service_code,
                                   "start_date": start_date, "end_date": end_date, "status": status}.items() if v}
        errors: list[GeoError] = []
        _checked(list(query.items()), errors)
        filters, more = georeport.parse_filters(query, district) if not errors else (None, [])
        if filters is None:
            raise GeoReportError(400, *errors, *more)
        return answer(await views(client, filters), fmt)

    @router.get("/requests/{service_request_id}.{fmt}", response_class=Response,
                summary="GeoReport: one of the client's requests",
                responses=_documented(list[georeport.ServiceRequest], 403, 404))
    async def one_request(service_request_id: str, fmt: str,
                          api_key: str | None = Query(None, description="The client's key (OPEN311_API_KEYS)."),
                          jurisdiction_id: str | None = Query(None, description="Ignored.")) -> Response:
        """The request ``service_request_id`` (the appeal id), if this client posted it."""
        format_of(fmt)
        client = client_of(service, keys, "/open311/v2/requests/{id}", api_key)
        found = await views(client, georeport.Filters(ids=(service_request_id,))) if len(service_request_id) <= 40 else []
        if not found:
            raise GeoReportError(404, f"no request {printable(service_request_id, 40)!r} of yours")
        return answer(found, fmt)

    service.http.include_router(router)

    @service.http.exception_handler(GeoReportError)
    async def _spec_error(request: Request, exc: GeoReportError) -> Response:
        fmt = request.path_params.get("fmt", "json")
        return answer(exc.errors, fmt, exc.status)
