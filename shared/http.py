"""The HTTP contract every service shares: errors as RFC 9457 problem details, bearer auth, cursor pages.

- Every error answers ``application/problem+json``: ``type``, ``title``, ``status``,
  ``detail``, and, for bad input, ``errors`` (one per field, the same
  :class:`~shared.contracts.common.FieldError` that NATS rejections carry); a
  refused business rule adds ``reason`` and ``rule``.
- Routes that need a caller declare the ``HTTPBearer`` security scheme through
  :data:`bearer` and document 401 / 403 / 404 / 409 / 422 with :func:`problems`.
  Read routes with personal data take a read API key (``X-API-Key``, :func:`read_key_required`);
  every refused caller is counted in ``coffeetime_http_refused_total{service,endpoint,reason}``.
- Lists are pages: ``?limit=`` (default 50, at most 500) and ``?cursor=`` (opaque,
  from the previous page's ``next_cursor``); a page says whether more follow.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Generic, TypeVar

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Counter
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.access import API_KEY_HEADER, ReadKeys
from shared.contracts.common import FieldError
from shared.metrics import registry

PROBLEM_JSON = "application/problem+json"
T = TypeVar("T")

TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict", 422: "Invalid input", 500: "Internal error", 503: "Unavailable"}


class Problem(BaseModel):
    """An error, as RFC 9457 problem details, with field errors for bad input."""

    type: str = Field("about:blank", description="A URI naming the kind of problem.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field("", description="What went wrong this time.")
    errors: list[FieldError] = Field(default_factory=list, description="One entry per invalid field.")
    reason: str | None = Field(None, description="The refusal's reason code (as in `ct.order.rejected`).")
    rule: str | None = Field(None, description="The business rule that refused the request.")


class ProblemError(Exception):
    """Raise from a route to answer with a :class:`Problem`."""

    def __init__(self, status: int, detail: str = "", *, errors: list[FieldError] | None = None,
                 reason: str | None = None, rule: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.problem = Problem(title=TITLES.get(status, "Error"), status=status, detail=detail,
                               errors=errors or [], reason=reason, rule=rule,
                               type=f"https://coffeetime.example.gov.cn/problems/{reason}" if reason else "about:blank")
        self.headers = headers


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(problem.model_dump(mode="json", exclude_none=True), status_code=problem.status,
                        media_type=PROBLEM_JSON, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Every error of ``app`` (raised, HTTP or validation) answers as problem+json."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:  # noqa: ARG001
        return problem_response(exc.problem, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:  # noqa: ARG001
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, ensure_ascii=False)
        return problem_response(Problem(title=TITLES.get(exc.status_code, "Error"), status=exc.status_code,
                                        detail=detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:  # noqa: ARG001
        errors = [FieldError(field=".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path", "header"))
                             or "body", message=e["msg"]) for e in exc.errors()]
        return problem_response(Problem(title=TITLES[422], status=422, detail="the request does not validate",
                                        errors=errors))


def problems(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: each status documented with the problem+json schema
    (``descriptions``, e.g. ``d401="..."``, replace the usual words of a status)."""
    what = {401: "No or unknown bearer token", 403: "The token may not do this", 404: "No such resource (for you)",
            409: "Refused: the state does not allow it", 422: "Invalid input, one error per field",
            503: "A dependency is down"}
    what.update({int(k.removeprefix("d")): v for k, v in descriptions.items()})
    return {s: {"model": Problem, "description": what.get(s, TITLES.get(s, "Error")),
                "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}} for s in statuses}


#: The bearer security scheme (declared in OpenAPI); a route reads the token through it.
bearer = HTTPBearer(auto_error=False, description="The caller's API token (a unit's token at dispatch).")


def bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    """The token of ``credentials``, or a 401 problem."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise ProblemError(401, "bearer token required", headers={"WWW-Authenticate": "Bearer"})
    return credentials.credentials


REFUSED = Counter(
    "coffeetime_http_refused_total",
    "HTTP requests refused before they could change or read anything, by endpoint (route template) and reason "
    "(missing_key, unknown_key, missing_signature, bad_signature, stale, replayed, not_configured)",
    ["service", "endpoint", "reason"], registry=registry,
)


def refuse(service: str, endpoint: str, reason: str, status: int, detail: str,
           headers: dict[str, str] | None = None) -> ProblemError:
    """Count a refused request and make its problem (raise it)."""
    REFUSED.labels(service, endpoint, reason).inc()
    return ProblemError(status, detail, reason=reason, headers=headers)


#: The read API key scheme (declared in OpenAPI): ``X-API-Key``, one key per client (``READ_API_KEYS``).
api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, scheme_name="ReadApiKey",
                       description="A read client's API key; READ_API_KEYS holds its SHA-256 (client=sha256hex).")

READ_KEY_REFUSED = "No or unknown read API key (X-API-Key)"


def read_key_required(service: str, keys: ReadKeys, endpoint: str):
    """A dependency of a read route: the caller's client name, or a counted 401 problem."""
    for reason in ("missing_key", "unknown_key"):
        REFUSED.labels(service, endpoint, reason)  # exported at 0 from the start

    def client(key: str | None = Security(api_key)) -> str:
        if not key:
            raise refuse(service, endpoint, "missing_key", 401, f"{API_KEY_HEADER} required",
                         {"WWW-Authenticate": API_KEY_HEADER})
        name = keys.client_of(key)
        if name is None:
            raise refuse(service, endpoint, "unknown_key", 401, "unknown API key", {"WWW-Authenticate": API_KEY_HEADER})
        return name

    return Depends(client)


# --- pages -------------------------------------------------------------------------------

class Page(BaseModel, Generic[T]):
    """One page of a list, in a stable order; follow ``next_cursor`` for the next page."""

    items: list[T]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page.")
    limit: int = Field(description="The page size asked for.")


def encode_cursor(position: dict[str, Any]) -> str:
    """An opaque cursor for the keyset ``position`` (the sort key of the last item of a page)."""
    return base64.urlsafe_b64encode(json.dumps(position, default=str, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """The keyset position of ``cursor``, or a 422 problem for a cursor this service never made."""
    if not cursor:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, UnicodeDecodeError):
        position = None
    if not isinstance(position, dict):
        raise ProblemError(422, "invalid cursor", errors=[FieldError(field="cursor", message="not a cursor of this list")])
    return position


def page_of(items: list[T], limit: int, position_of) -> Page[T]:
    """A page from ``limit + 1`` fetched rows: the extra row only says that more follow."""
    more = len(items) > limit
    items = items[:limit]
    return Page(items=items, limit=limit, next_cursor=encode_cursor(position_of(items[-1])) if more and items else None)


LIMIT = Query(50, ge=1, le=500, description="Items per page.")
CURSOR = Query(None, max_length=2000, description="`next_cursor` of the previous page.")
