"""The web console: a FastAPI sub-application mounted at ``/console`` on dispatch's HTTP server.

Server-rendered Jinja2 pages with htmx (vendored in ``static/``, no build step).
A unit logs in with its API token and works its own orders; the lead unit also
sees the manual queue, the returns and extension requests to decide, every order
with filters and search, and acts on many orders at once. Every change is the
command the API would make, through the same use case
(:func:`services.dispatch.use_cases.act`), in one transaction per action.

Reads: dispatch's own schema (``queries.py``); an order's timeline from intake's
``GET /appeals/{id}`` (with a read API key), else what dispatch itself keeps; the
month's ranking from escalation's ``GET /report``. Live: each page asks
``/console/changes`` every ``CONSOLE_POLL_S`` seconds whether anything it shows
changed; when it did, the lists refresh (``ct-changed``), never the form being typed in.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from services.dispatch import use_cases
from services.dispatch.console import i18n, queries, views
from services.dispatch.console.chart import bar_chart
from services.dispatch.console.sessions import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    LOGIN_COOKIE,
    PATH,
    ConsoleSession,
    Sessions,
    new_token,
    same,
)
from services.dispatch.domain import rules
from shared import clock
from shared.access import DEMO_READ_KEY
from shared.contracts import inbound as inb
from shared.contracts.common import SHANGHAI, mask_phone
from shared.district import District, Unit, UnitKind, unit_of_token
from shared.http import REFUSED
from shared.service import Service

log = logging.getLogger("coffeetime.dispatch.console")

HERE = Path(__file__).parent
MAX_FORM = 64 * 1024
"""Bytes a posted form may have."""
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

BULK_ACTIONS = {
    "redispatch": ("redispatch", {}), "grant_extension": ("grant_extension", {}),
    "deny_extension": ("deny_extension", {}), "accept_return": ("decide_return", {"accept": True}),
    "send_back": ("decide_return", {"accept": False}),
}
"""The lead unit's bulk actions: the name on the page → (the command's action, fixed fields)."""
FIELDS = ("reason", "note", "days", "reply", "resolved", "unit_code", "accept")


class LoginRequired(Exception):
    """No live session: the page sends the browser to the login form."""

    def __init__(self, expired: bool = False) -> None:
        super().__init__("login required")
        self.expired = expired


class CsrfRefused(Exception):
    """A POST without the session's CSRF token."""


@dataclass(frozen=True)
class Who:
    """The logged-in unit, its session, and the session's cookie value."""

    unit: Unit
    session: ConsoleSession

    @property
    def is_lead(self) -> bool:
        return self.unit.kind == UnitKind.lead

    @property
    def scope(self) -> str | None:
        """The unit whose orders the session sees; None: all (the lead unit)."""
        return None if self.is_lead else self.unit.unit_code


def local_url(service: Service, name: str, given: str | None) -> str:
    """Another service's HTTP address: the setting, or this host's port for it (0.0.0.0 reached as 127.0.0.1)."""
    if given:
        return given.rstrip("/")
    host = service.settings.http_host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{host}:{service.settings.port_of(name)}"


def fmt_time(value: datetime | str | None, with_year: bool = False) -> str:
    """A time as people here read it: Asia/Shanghai, to the minute."""
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M" if with_year else "%m-%d %H:%M")


async def read_form(request: Request) -> dict[str, list[str]]:
    """The posted form (``application/x-www-form-urlencoded``, as browsers and htmx send), field → values."""
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=False)


def first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0].strip() if values and values[0].strip() else None


def command_body(form: dict[str, list[str]], who: Who, **fixed: Any) -> dict[str, Any]:
    """The command's fields from a form: its action id, the person logged in as actor, what was filled in."""
    body: dict[str, Any] = {"action_id": first(form, "action_id") or f"console-{uuid.uuid4().hex}",
                            "actor": who.session.actor}
    for name in FIELDS:
        value = first(form, name)
        if value is not None:
            body[name] = value
    co_units = [c for c in form.get("co_units", []) if c.strip()]
    if co_units:
        body["co_units"] = co_units
    body.update(fixed)
    return body


def create_app(service: Service, district: District) -> FastAPI:
    """The console as an ASGI application (mounted at ``/console`` by :func:`register`)."""
    app = FastAPI(title="coffeetime console", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), undefined=jinja2.StrictUndefined,
                             autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = fmt_time
    env.filters["percent"] = views.percent
    env.filters["masked"] = lambda p: mask_phone(p) if p else "—"
    settings = service.settings
    units = {u.unit_code: u for u in district.units}
    handling_units = [u for u in district.units if u.kind != UnitKind.supervision]
    categories = [c.name for c in district.categories]
    intake_url = local_url(service, "intake", settings.console_intake_url)
    escalation_url = local_url(service, "escalation", settings.console_escalation_url)
    read_key = (settings.console_read_api_key.get_secret_value() if settings.console_read_api_key
                else DEMO_READ_KEY if settings.demo_mode else None)

    def sessions() -> Sessions:
        return Sessions(service.pool, settings.console_session_hours)

    def unit_name(code: str | None) -> str:
        return units[code].name if code in units else (code or "—")

    # --- rendering -------------------------------------------------------------------------

    def render(request: Request, template: str, who: Who | None, status: int = 200,
               headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
        lang = i18n.language_of(request)
        base = request.scope.get("root_path", "") or PATH
        here = {k: v for k, v in request.query_params.items() if k != "lang"}

        def t(key: str, **values: Any) -> str:
            return i18n.translate(lang, key, **values)

        html = env.get_template(template).render(
            t=t, lang=lang, base=base, who=who, unit_name=unit_name, units=handling_units,
            categories=categories, poll_s=settings.console_poll_s, now=clock.now(),
            state_of=views.deadline_state, path=request.url.path,
            other_lang_url=f"{request.url.path}?{urlencode({**here, 'lang': 'en' if lang == 'zh' else 'zh'})}",
            new_id=lambda: f"console-{uuid.uuid4().hex}", csrf_field=CSRF_FIELD,
            csrf=who.session.csrf_token if who else "", **context)
        response = HTMLResponse(html, status_code=status, headers=headers)
        if (kept := i18n.switched(request)) is not None:
            response.set_cookie(i18n.COOKIE, kept, max_age=365 * 86400, path=PATH, httponly=True, samesite="strict",
                                secure=secure(request))
        return response

    def secure(request: Request) -> bool:
        return settings.console_secure_cookie or request.url.scheme == "https"

    def is_htmx(request: Request) -> bool:
        return request.headers.get("HX-Request") == "true"

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith(f"{PATH}/static"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        target = f"{PATH}/login" + ("?expired=1" if exc.expired else "")
        response: Response = (Response(status_code=200, headers={"HX-Redirect": target}) if is_htmx(request)
                              else RedirectResponse(target, status_code=303))
        if exc.expired:
            response.delete_cookie(COOKIE, path=PATH)
        return response

    @app.exception_handler(CsrfRefused)
    async def _csrf_refused(request: Request, exc: CsrfRefused) -> Response:  # noqa: ARG001
        REFUSED.labels(service.name, "/console", "bad_csrf").inc()
        return render(request, "error.html", None, status=403, message_key="error.csrf")

    # --- who is asking ------------------------------------------------------------------------

    async def current(request: Request) -> Who:
        cookie = request.cookies.get(COOKIE)
        session = await sessions().find(cookie, clock.now())
        if session is None or session.unit_code not in units:
            raise LoginRequired(expired=bool(cookie))
        return Who(units[session.unit_code], session)

    async def posted(request: Request) -> tuple[Who, dict[str, list[str]]]:
        """The session and form of a POST whose CSRF token (header or field) is the session's."""
        who = await current(request)
        form = await read_form(request)
        if not same(request.headers.get(CSRF_HEADER) or first(form, CSRF_FIELD), who.session.csrf_token):
            raise CsrfRefused()
        return who, form

    async def perform(who: Who, action: str, body: dict[str, Any]) -> use_cases.ActionResult:
        """One command through the API's use case, in its own transaction; an invalid form is refused likewise."""
        command, errors = inb.parse_unit_command(action, body)
        if command is None:
            return use_cases.ActionResult(accepted=False, reason=rules.INVALID, rule=rules.ActionMustBeWellFormed.name,
                                          detail="; ".join(f"{e.field}: {e.message}" for e in errors))
        async with service.unit_of_work() as work:
            return await use_cases.act(work, district, who.unit.unit_code, command, clock.now())

    # --- login ------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> Response:
        who = await current(request)
        return RedirectResponse(f"{PATH}/{'queue' if who.is_lead else 'orders'}", status_code=303)

    @app.get("/login")
    async def login_form(request: Request) -> Response:
        token = new_token()
        response = render(request, "login.html", None, login_token=token, demo=settings.demo_mode,
                          expired=request.query_params.get("expired") == "1", error_key=None)
        response.set_cookie(LOGIN_COOKIE, token, max_age=3600, path=PATH, httponly=True, samesite="strict",
                            secure=secure(request))
        return response

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await read_form(request)
        if not same(first(form, "login_token"), request.cookies.get(LOGIN_COOKIE)):
            raise CsrfRefused()
        unit = unit_of_token(district.units, first(form, "token") or "")
        actor = (first(form, "actor") or "")[:100]
        if unit is None or not actor:
            REFUSED.labels(service.name, "/console/login", "unknown_token" if unit is None else "no_actor").inc()
            token = new_token()
            response = render(request, "login.html", None, status=401, login_token=token, expired=False,
                              demo=settings.demo_mode,
                              error_key="login.refused" if unit is None else "login.actor_required")
            response.set_cookie(LOGIN_COOKIE, token, max_age=3600, path=PATH, httponly=True, samesite="strict",
                                secure=secure(request))
            return response
        session_id, session = await sessions().open(unit.unit_code, actor, clock.now())
        log.info("console login", extra={"unit_code": unit.unit_code})
        response = RedirectResponse(f"{PATH}/{'queue' if unit.kind == UnitKind.lead else 'orders'}", status_code=303)
        response.set_cookie(COOKIE, session_id, max_age=int(settings.console_session_hours * 3600), path=PATH,
                            httponly=True, samesite="strict", secure=secure(request))
        response.delete_cookie(LOGIN_COOKIE, path=PATH)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await posted(request)
        await sessions().close(request.cookies.get(COOKIE))
        response = RedirectResponse(f"{PATH}/login", status_code=303)
        response.delete_cookie(COOKIE, path=PATH)
        return response

    # --- live ---------------------------------------------------------------------------------

    async def stamp_of(who: Who) -> str:
        async with service.pool.acquire() as conn:
            return await queries.change_stamp(conn, who.scope)

    @app.get("/changes")
    async def changes(request: Request) -> Response:
        """204 while nothing the session sees changed; else the new stamp and the ``ct-changed`` event."""
        who = await current(request)
        stamp = await stamp_of(who)
        if same(request.query_params.get("stamp"), stamp):
            return Response(status_code=204)
        return render(request, "_live.html", who, stamp=stamp, headers={"HX-Trigger": "ct-changed"})

    # --- orders -------------------------------------------------------------------------------

    def filters_of(request: Request, who: Who) -> dict[str, str]:
        q = request.query_params
        chosen = {k: (q.get(k) or "").strip()[:100] for k in ("unit", "status", "category", "due", "q")}
        if not who.is_lead:
            chosen["unit"] = ""
        return chosen

    async def order_rows(request: Request, who: Who) -> dict[str, Any]:
        chosen = filters_of(request, who)
        now = clock.now()
        f = views.order_filter(now, unit_code=who.scope or chosen["unit"], status=chosen["status"],
                               category=chosen["category"], due=chosen["due"] if chosen["due"] in views.DUE_FILTERS
                               else None, search=chosen["q"])
        async with service.pool.acquire() as conn:
            rows = await queries.orders(conn, f, queries.MAX_ROWS + 1)
            stamp = await queries.change_stamp(conn, who.scope)
            figures = await queries.counts(conn, who.scope, now)
        return {"rows": rows[:queries.MAX_ROWS], "more": len(rows) > queries.MAX_ROWS, "chosen": chosen,
                "query": urlencode({k: v for k, v in chosen.items() if v}), "stamp": stamp, "figures": figures,
                "statuses": ("dispatched", "signed", "returned", "replied", "closed", "reopened", "cancelled"),
                "due_filters": views.DUE_FILTERS, "bulk_actions": tuple(BULK_ACTIONS)}

    @app.get("/orders")
    async def orders_page(request: Request) -> Response:
        who = await current(request)
        return render(request, "orders.html", who, **await order_rows(request, who))

    @app.get("/orders/rows")
    async def orders_fragment(request: Request) -> Response:
        who = await current(request)
        return render(request, "_order_rows.html", who, **await order_rows(request, who))

    async def order_context(who: Who, order_id: str) -> dict[str, Any] | None:
        async with service.pool.acquire() as conn:
            row = await queries.order(conn, order_id, who.scope)
            if row is None:
                return None
            history = await queries.orders_of_appeal(conn, row["appeal_id"])
        timeline, source = await timeline_of(row["appeal_id"], history)
        mine = row["unit_code"] == who.unit.unit_code
        return {"order": row, "timeline": timeline, "timeline_source": source, "history": history,
                "unit_forms": views.unit_forms(row, district.pauses.max_per_order > 0) if mine else (),
                "reasons": _reasons(row)}

    async def timeline_of(appeal_id: str, history: list[dict]) -> tuple[list[dict], str]:
        """The appeal's timeline from intake (who, when, what), else the steps dispatch's own orders record."""
        if read_key:
            try:
                async with httpx.AsyncClient(timeout=2.0) as http:
                    answer = await http.get(f"{intake_url}/appeals/{appeal_id}", headers={"X-API-Key": read_key})
                if answer.status_code == 200:
                    return [{"at": i["at"], "actor": i["actor"], "what": i["what"]}
                            for i in answer.json().get("timeline", [])], "intake"
            except (httpx.HTTPError, ValueError) as exc:
                log.info("console: intake's timeline unavailable", extra={"error": repr(exc)})
        steps = []
        for o in history:
            name = unit_name(o["unit_code"])
            for at, what in ((o["dispatched_at"], f"dispatched → {name} ({o['role']})"),
                             (o["signed_at"], f"signed by {name}"),
                             (o["replied_at"], f"replied by {name}: {o['reply'] or ''}"),
                             (o["closed_at"], f"closed ({name})")):
                if at is not None:
                    steps.append({"at": at, "actor": name, "what": what})
            for pause in _json_list(o.get("pauses")):
                if pause.get("order_id") != o["order_id"]:
                    continue  # a replaced order's pause: listed under that order
                steps.append({"at": datetime.fromisoformat(pause["started_at"]), "actor": name,
                              "what": f"clock paused by {name}: {pause.get('reason') or ''}"})
                if pause.get("ended_at"):
                    steps.append({"at": datetime.fromisoformat(pause["ended_at"]), "actor": name,
                                  "what": "pause ended"})
        return sorted(steps, key=lambda s: s["at"]), "dispatch"

    @app.get("/orders/{order_id}")
    async def order_page(request: Request, order_id: str) -> Response:
        who = await current(request)
        context = await order_context(who, order_id)
        if context is None:
            return render(request, "error.html", who, status=404, message_key="error.no_order")
        return render(request, "order.html", who, stamp=await stamp_of(who), result=None, **context)

    @app.get("/orders/{order_id}/panel")
    async def order_panel(request: Request, order_id: str) -> Response:
        who = await current(request)
        context = await order_context(who, order_id)
        if context is None:
            return render(request, "error.html", who, status=404, message_key="error.no_order")
        return render(request, "_order_panel.html", who, **context)

    @app.post("/orders/{order_id}/act/{action}")
    async def order_action(request: Request, order_id: str, action: str) -> Response:
        who, form = await posted(request)
        if action not in inb.ORDER_ACTIONS:
            return render(request, "error.html", who, status=404, message_key="error.no_action")
        result = await perform(who, action, command_body(form, who, order_id=order_id))
        context = await order_context(who, order_id)
        if context is None:  # another unit's order (refused as not yours), or redispatched away
            return render(request, "error.html", who, status=404 if result.accepted else 403,
                          message_key="error.no_order", result=result, action=action)
        template = "_order_detail.html" if is_htmx(request) else "order.html"
        return render(request, template, who, status=200 if result.accepted else 409, result=result, action=action,
                      stamp=await stamp_of(who), headers={"HX-Trigger": "ct-changed"}, **context)

    # --- the lead unit: the manual queue, decisions, bulk ------------------------------------------

    async def queue_context(who: Who) -> dict[str, Any]:
        async with service.pool.acquire() as conn:
            rows = await queries.queue(conn, queries.MAX_ROWS)
            stamp = await queries.change_stamp(conn, who.scope)
        for row in rows:
            routing = row["routing"]
            routing = json.loads(routing) if isinstance(routing, str) else (routing or {})
            row["candidates"] = [c for c in routing.get("candidates", [])[:3] if "unit_code" in c]
            row["routing_reasons"] = routing.get("reasons", [])
        return {"rows": rows, "stamp": stamp}

    async def lead_page(request: Request, template: str, context_of) -> Response:
        """A page (or its fragment) only the lead unit sees: 403 for a handling unit."""
        who = await current(request)
        if not who.is_lead:
            return render(request, "error.html", who, status=403, message_key="error.lead_only")
        return render(request, template, who, result=None, **await context_of(who))

    @app.get("/queue")
    async def queue_page(request: Request) -> Response:
        return await lead_page(request, "queue.html", queue_context)

    @app.get("/queue/rows")
    async def queue_fragment(request: Request) -> Response:
        return await lead_page(request, "_queue_rows.html", queue_context)

    @app.post("/appeals/{appeal_id}/dispatch")
    async def dispatch_appeal(request: Request, appeal_id: str) -> Response:
        who, form = await posted(request)
        result = await perform(who, "dispatch", command_body(form, who, appeal_id=appeal_id))
        template = "_queue_rows.html" if is_htmx(request) else "queue.html"
        return render(request, template, who, status=200 if result.accepted else 409, result=result,
                      appeal_id=appeal_id, **await queue_context(who))

    @app.get("/decisions")
    async def decisions_page(request: Request) -> Response:
        return await lead_page(request, "decisions.html", decisions_context)

    @app.get("/decisions/rows")
    async def decisions_fragment(request: Request) -> Response:
        return await lead_page(request, "_decision_rows.html", decisions_context)

    async def decisions_context(who: Who) -> dict[str, Any]:
        now = clock.now()
        async with service.pool.acquire() as conn:
            returns = await queries.orders(conn, views.order_filter(now, due="returned"))
            extensions = await queries.orders(conn, views.order_filter(now, due="extension"))
            stamp = await queries.change_stamp(conn, who.scope)
        return {"returns": returns, "extensions": extensions, "stamp": stamp, "bulk_actions": tuple(BULK_ACTIONS)}

    @app.post("/bulk")
    async def bulk(request: Request) -> Response:
        """The lead unit's action on every ticked order, each its own command and transaction; each outcome shown."""
        who, form = await posted(request)
        if not who.is_lead:
            return render(request, "error.html", who, status=403, message_key="error.lead_only")
        name = first(form, "bulk_action") or ""
        order_ids = list(dict.fromkeys(o.strip() for o in form.get("order_id", []) if o.strip()))[:200]
        outcomes = []
        if name in BULK_ACTIONS and order_ids:
            action, fixed = BULK_ACTIONS[name]
            batch = first(form, "batch_id") or f"console-bulk-{uuid.uuid4().hex}"
            for order_id in order_ids:
                body = command_body(form, who, order_id=order_id, **fixed)
                body["action_id"] = f"{batch}-{order_id}"[:120]  # a resubmitted batch does each order once
                outcomes.append((order_id, await perform(who, action, body)))
        return render(request, "_bulk_result.html", who, outcomes=outcomes, bulk_action=name,
                      nothing=not order_ids or name not in BULK_ACTIONS, headers={"HX-Trigger": "ct-changed"})

    # --- the month's ranking and figures --------------------------------------------------------------

    @app.get("/ranking")
    async def ranking_page(request: Request) -> Response:
        who = await current(request)
        month = request.query_params.get("month") or datetime.now(SHANGHAI).strftime("%Y-%m")
        if not MONTH.match(month):
            month = datetime.now(SHANGHAI).strftime("%Y-%m")
        report, error = None, None
        try:
            async with httpx.AsyncClient(timeout=5.0) as http:
                answer = await http.get(f"{escalation_url}/report", params={"month": month, "format": "json"})
            answer.raise_for_status()
            report = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        rows = (report or {}).get("units", [])
        lang = i18n.language_of(request)
        ranked = [r for r in rows if r.get("score") is not None]  # listed units too: the chart shows every score
        charts = []
        if ranked:
            title = i18n.translate(lang, "ranking.chart_score")
            charts.append((title, bar_chart(title, [(r["unit"], r.get("score")) for r in ranked])))
            for rate in ("closure_rate", "satisfaction_rate", "on_time_rate"):
                title = i18n.translate(lang, f"kpi.{rate}")
                charts.append((title, bar_chart(
                    title, [(r["unit"], None if r.get(rate) is None else r[rate] * 100) for r in ranked],
                    suffix="%", series_class=f"bar {rate}")))
        async with service.pool.acquire() as conn:
            figures = await queries.counts(conn, who.scope, clock.now())
            stamp = await queries.change_stamp(conn, who.scope)
        return render(request, "ranking.html", who, month=month, report=report, rows=rows, error=error,
                      district=views.district_figures(rows), charts=charts, figures=figures, stamp=stamp,
                      escalation_url=escalation_url)

    return app


def _json_list(value: Any) -> list:
    """A jsonb array column as a list (decoded by the pool's codec, or still text)."""
    value = value or []
    return json.loads(value) if isinstance(value, str) else list(value)


def _reasons(row: dict[str, Any]) -> list[str]:
    return _json_list(row.get("reasons"))


def register(service: Service, district: District) -> None:
    """Mount the console at ``/console`` on the service's HTTP app."""
    service.http.mount(PATH, create_app(service, district))
