"""Open311 GeoReport v2, pure: the district's categories as services, a POST as an app appeal, an appeal as a request.

The HTTP side is :mod:`services.intake.open311`; this module does no I/O.

- **Services** are the district's categories (``shared/district.yaml``): ``service_code`` is
  the category's code (``traffic``), ``service_name`` its Chinese name (交通出行; the district
  file has no English names), ``keywords`` its aliases, ``group`` the first level of its
  ``standard_code`` (经济发展, 政务服务 ...). Every service has the same definition
  (:data:`ATTRIBUTES`): the enterprise, its credit code, the kind of appeal and the
  client's own id of the request.
- **A POST** becomes the :class:`~shared.contracts.AppAppeal` the app channel sends
  (:func:`parse_submission`), so it passes the same validation, field by field; each error
  names the GeoReport parameter (``phone``, ``attribute[credit_code]``), not the app's field.
  Its ``submission_id`` is ``open311:<client>:<key>`` (:func:`source_id_of`): the key is the
  client's own id (``attribute[request_id]``) or else the request's fingerprint, so the same
  client posting the same request twice reaches the same appeal (the app channel's identity
  is (channel, source id)).
- **A request** is an appeal seen through GeoReport (:func:`request_view`): ``open`` until
  ``ct.appeal.closed`` (reopened: open again), with ``status_notes`` in Chinese from the
  appeal's status (:func:`services.intake.domain.status_of`, the status ``GET /appeals``
  answers), the responsible unit, the deadline and the last change from its timeline.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from services.intake import domain
from shared.contracts import SHANGHAI, AppAppeal, AppealKind, field_errors
from shared.district import Category, District

Format = Literal["json", "xml"]
FORMATS: tuple[str, ...] = ("json", "xml")
#: GeoReport's default and largest window of GET requests, and its most requests per answer
WINDOW = timedelta(days=90)
MAX_REQUESTS = 1000

# the first level of the district's standard codes (shared/district.yaml, GB/T 39666 style)
GROUPS = {"01": "经济发展", "02": "政务服务", "03": "城乡建设", "04": "交通运输", "05": "资源环境",
          "06": "劳动和社会保障", "99": "其他"}

KIND_NAMES = {AppealKind.appeal: "诉求", AppealKind.consultation: "咨询", AppealKind.complaint: "投诉",
              AppealKind.suggestion: "建议", AppealKind.praise: "表扬"}


# --- the documents of the specification (JSON field names exactly; XML elements the same) ---------


class Service(BaseModel):
    """One item of ``GET services``."""

    service_code: str = Field(description="The category's code, e.g. `traffic`.")
    service_name: str = Field(description="The category's name, e.g. 交通出行.")
    description: str = Field(description="What it covers and its handling deadline.")
    metadata: bool = Field(description="True: see `GET services/{service_code}` for its attributes.")
    type: Literal["realtime", "batch", "blackbox"] = Field(description="realtime: POST answers the request id.")
    keywords: str = Field(description="Other names of the category, comma separated.")
    group: str = Field(description="The category's first-level group, e.g. 交通运输.")


class AttributeValue(BaseModel):
    key: str = Field(description="The value to send.")
    name: str = Field(description="What it means.")


class Attribute(BaseModel):
    """One attribute of a service definition; sent as ``attribute[<code>]``."""

    variable: bool = Field(description="True: the client sends a value.")
    code: str = Field(description="The attribute's code.")
    datatype: Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
    required: bool
    datatype_description: str | None = None
    order: int
    description: str
    values: list[AttributeValue] = Field(default_factory=list)


class ServiceDefinition(BaseModel):
    """``GET services/{service_code}``."""

    service_code: str
    attributes: list[Attribute]


class CreatedRequest(BaseModel):
    """The answer to ``POST requests`` (a list of one)."""

    service_request_id: str = Field(description="The appeal id, as in the enterprise's receipt.")
    service_notice: str = Field(description="What happens next (Chinese).")
    account_id: str | None = Field(None, description="The account_id sent, if any.")


class ServiceRequest(BaseModel):
    """One item of ``GET requests`` and ``GET requests/{service_request_id}``."""

    service_request_id: str
    status: Literal["open", "closed"]
    status_notes: str = Field(description="The appeal's status in words (Chinese), with the unit's reply once replied.")
    service_name: str
    service_code: str
    description: str
    agency_responsible: str | None = Field(None, description="The lead handling unit, once dispatched.")
    service_notice: str | None = None
    requested_datetime: datetime
    updated_datetime: datetime
    expected_datetime: datetime | None = Field(None, description="The handling deadline, once set.")
    address: str | None = None
    address_id: str | None = None
    zipcode: str | None = None
    lat: float | None = None
    long: float | None = None
    media_url: str | None = None


class GeoError(BaseModel):
    """One error, as the specification writes them."""

    code: int = Field(description="The HTTP status: 400 bad parameter, 403 api_key, 404 not found.")
    description: str = Field(description="What is wrong; a parameter's error starts with its name.")


# --- services ------------------------------------------------------------------------------------


def service_of(category: Category) -> Service:
    """The GeoReport service of a district category."""
    group = GROUPS.get((category.standard_code or "99").split(".")[0], "其他")
    return Service(service_code=category.code, service_name=category.name,
                   description=f"{category.name}类诉求，办理时限 {category.deadline_days} 个工作日。",
                   metadata=True, type="realtime", keywords=", ".join(category.aliases), group=group)


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(variable=True, code="enterprise_name", datatype="string", required=True, order=1,
              description="企业名称 (the enterprise's registered name)."),
    Attribute(variable=True, code="credit_code", datatype="string", required=False, order=2,
              datatype_description="18 characters, GB 32100-2015, e.g. 914403001922038216",
              description="统一社会信用代码 (the enterprise's unified social credit code)."),
    Attribute(variable=True, code="kind", datatype="singlevaluelist", required=False, order=3,
              description="诉求类型 (default: appeal).",
              values=[AttributeValue(key=k.value, name=n) for k, n in KIND_NAMES.items()]),
    Attribute(variable=True, code="request_id", datatype="string", required=False, order=4,
              datatype_description="1-64 of A-Z a-z 0-9 . _ : -",
              description="Your own id of this request: posting it again answers the same service_request_id. "
                          "Without it, the same request posted again (every parameter equal) does."),
)
ATTRIBUTE_CODES = frozenset(a.code for a in ATTRIBUTES)


def definition_of(category: Category) -> ServiceDefinition:
    """``GET services/{code}``: every service takes the same attributes."""
    return ServiceDefinition(service_code=category.code, attributes=list(ATTRIBUTES))


# --- POST requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """A valid ``POST requests``: the app appeal it registers, and what GeoReport keeps beside it."""

    appeal: AppAppeal
    client: str
    request_key: str
    service_code: str
    lat: float | None
    long: float | None
    address_string: str | None
    email: str | None
    device_id: str | None
    media_url: str | None
    account_id: str | None

    @property
    def source_id(self) -> str:
        return self.appeal.submission_id


#: the app appeal's fields, named as GeoReport names them (errors say the parameter the client sent)
PARAMETER_OF = {"content": "description", "contact_phone": "phone", "contact_name": "first_name",
                "enterprise_name": "attribute[enterprise_name]", "enterprise_uscc": "attribute[credit_code]",
                "kind": "attribute[kind]", "category_hint": "service_code", "address": "address_string",
                "attachments": "media_url", "attachments.0": "media_url", "account_id": "account_id",
                "submission_id": "attribute[request_id]", "submitted_at": "requested_datetime"}

_SAFE = re.compile(r"^[A-Za-z0-9._\-]+$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_CJK = re.compile(r"[\u3400-\u9fff]")
_ATTRIBUTE = re.compile(r"^attribute\[([^\]]*)\](\[\])?$")
#: the parameters of POST requests (GeoReport v2); anything else but attribute[...] is refused
PARAMETERS = frozenset({"api_key", "jurisdiction_id", "service_code", "lat", "long", "address_string", "address_id",
                        "email", "device_id", "account_id", "first_name", "last_name", "phone", "description",
                        "media_url"})
_FINGERPRINT_SKIPS = frozenset({"api_key"})


def bad(parameter: str, message: str) -> GeoError:
    """A 400 error naming ``parameter``."""
    return GeoError(code=400, description=f"{parameter}: {message}")


def request_key(form: Mapping[str, str]) -> str:
    """The client's own id (``attribute[request_id]``), else ``sha256-`` and the fingerprint of every parameter."""
    given = (form.get("attribute[request_id]") or "").strip()
    if given:
        return given
    items = sorted((k, v.strip()) for k, v in form.items() if k not in _FINGERPRINT_SKIPS)
    digest = hashlib.sha256(json.dumps(items, ensure_ascii=False).encode()).hexdigest()
    return f"sha256-{digest[:40]}"


def source_id_of(client: str, key: str) -> str:
    """``open311:<client>:<key>``, the app appeal's ``submission_id`` (a client name that is not plain ASCII
    is written as its hash, so the id stays within the source-id alphabet and 128 characters)."""
    name = client if _SAFE.fullmatch(client) and len(client) <= 40 else "c" + hashlib.sha256(client.encode()).hexdigest()[:16]
    return f"open311:{name}:{key}"


def contact_name(first: str | None, last: str | None) -> str | None:
    """The contact's name: family name first without a space for Chinese (潘 + 星 → 潘星), else first last."""
    first, last = (first or "").strip(), (last or "").strip()
    if not first and not last:
        return None
    if _CJK.search(first + last):
        return last + first
    return " ".join(p for p in (first, last) if p)


def _coordinate(form: Mapping[str, str], name: str, limit: float, errors: list[GeoError]) -> float | None:
    raw = (form.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        errors.append(bad(name, f"not a number: {raw[:40]!r}"))
        return None
    if not math.isfinite(value) or abs(value) > limit:
        errors.append(bad(name, f"must lie between -{limit:g} and {limit:g} (WGS84 degrees)"))
        return None
    return value


def parse_submission(form: Mapping[str, str], client: str, district: District,
                     now: datetime) -> tuple[Submission | None, list[GeoError]]:
    """A ``POST requests`` (its parameters ``form``) from ``client`` as the app appeal it registers, or its errors.

    Every bad parameter gets an error (all of them at once); the app appeal's own validation
    (phones, the credit code's check character, sizes, control characters) runs as on
    ``ct.in.appeal.app``, its errors renamed to the parameters sent.
    """
    errors: list[GeoError] = []
    attributes: dict[str, str] = {}
    for name, value in form.items():
        if m := _ATTRIBUTE.fullmatch(name):
            if m.group(1) not in ATTRIBUTE_CODES:
                errors.append(bad(name, f"no such attribute; the attributes are {', '.join(sorted(ATTRIBUTE_CODES))}"))
            else:
                attributes[m.group(1)] = value.strip()
        elif name not in PARAMETERS:
            errors.append(bad(name, "not a parameter of POST requests"))
    code = (form.get("service_code") or "").strip()
    category = district.category(code) if code else None
    if not code:
        errors.append(bad("service_code", "required"))
    elif category is None or category.code != code:
        errors.append(bad("service_code", f"no service {code[:40]!r}; GET services lists them"))
    lat = _coordinate(form, "lat", 90, errors)
    long = _coordinate(form, "long", 180, errors)
    address_string = (form.get("address_string") or "").strip() or None
    if (lat is None) != (long is None) and not errors_about(errors, "lat", "long"):
        errors.append(bad("lat" if lat is None else "long", "lat and long go together"))
    if address_string is None and (lat is None or long is None) and not errors_about(errors, "lat", "long"):
        if (form.get("address_id") or "").strip():
            errors.append(bad("address_id", "address ids are not known here; send address_string, or lat and long"))
        else:
            errors.append(bad("address_string", "a location is required: address_string, or lat and long"))
    email = (form.get("email") or "").strip() or None
    if email and (len(email) > 254 or not _EMAIL.fullmatch(email)):
        errors.append(bad("email", "not an e-mail address"))
    device_id = (form.get("device_id") or "").strip() or None
    if device_id and len(device_id) > 128:
        errors.append(bad("device_id", "at most 128 characters"))
    request_id = attributes.get("request_id")
    if request_id is not None and not _REQUEST_ID.fullmatch(request_id):
        errors.append(bad("attribute[request_id]", "1 to 64 of A-Z a-z 0-9 . _ : -"))
    account_id = (form.get("account_id") or "").strip() or None
    media_url = (form.get("media_url") or "").strip() or None

    key = request_key(form)
    where = address_string or (f"坐标 {lat:.6f},{long:.6f}" if lat is not None and long is not None else None)
    fields: dict[str, Any] = {
        "submission_id": source_id_of(client, key), "submitted_at": now,
        "account_id": f"open311:{client}" + (f":{account_id}" if account_id else ""),
        "enterprise_name": attributes.get("enterprise_name") or None, "contact_phone": form.get("phone") or None,
        "content": form.get("description") or None, "enterprise_uscc": attributes.get("credit_code") or None,
        "contact_name": contact_name(form.get("first_name"), form.get("last_name")),
        "category_hint": category.name if category else "-", "address": where,
        "kind": attributes.get("kind") or AppealKind.appeal.value,
        "attachments": [media_url] if media_url else [],
    }
    try:
        appeal = AppAppeal(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        appeal = None
        for e in field_errors(exc):
            errors.append(bad(PARAMETER_OF.get(e.field, e.field), e.message))
    if errors or appeal is None:
        return None, errors
    return Submission(appeal=appeal, client=client, request_key=key, service_code=code, lat=lat,
                      long=long, address_string=address_string, email=email, device_id=device_id,
                      media_url=media_url, account_id=account_id), []


def errors_about(errors: Sequence[GeoError], *parameters: str) -> bool:
    """Whether ``errors`` already name one of ``parameters``."""
    return any(e.description.split(":", 1)[0] in parameters for e in errors)


def created(appeal_id: str, category: Category | None, account_id: str | None) -> CreatedRequest:
    """The answer to a POST: the appeal id and what happens next."""
    days = f"，办理时限 {category.deadline_days} 个工作日" if category else ""
    return CreatedRequest(service_request_id=appeal_id, account_id=account_id,
                          service_notice=f"诉求已受理，编号 {appeal_id}{days}；办理进展可凭编号查询。")


# --- GET requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """The parameters of ``GET requests``, checked."""

    ids: tuple[str, ...] = ()
    service_codes: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    statuses: frozenset[str] = frozenset()


def _w3c_time(name: str, raw: str, errors: list[GeoError], end_of_day: bool = False) -> datetime | None:
    """A W3C datetime (``2026-11-26T09:30:00+08:00``, ``...Z``) or a day (``2026-11-26``, Asia/Shanghai)."""
    raw = raw.strip()
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
            day = date.fromisoformat(raw)
            at = datetime.combine(day, time(0), tzinfo=SHANGHAI)
            return at + timedelta(days=1) if end_of_day else at
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:[0-9]{2})?", raw):
            raise ValueError
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        errors.append(bad(name, "not a W3C datetime, e.g. 2026-11-26T09:30:00+08:00 or 2026-11-26"))
        return None
    if value.year < 2000 or value.year > 2999:
        errors.append(bad(name, "lies before 2000 or after 2999"))
        return None
    return value if value.tzinfo else value.replace(tzinfo=SHANGHAI)


def _listed(raw: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in (raw or "").split(",") if p.strip()))


def parse_filters(query: Mapping[str, str], district: District) -> tuple[Filters | None, list[GeoError]]:
    """The filters of ``GET requests`` or the errors of its parameters (unknown codes, bad dates, a span over 90 days)."""
    errors: list[GeoError] = []
    ids = _listed(query.get("service_request_id"))
    if len(ids) > MAX_REQUESTS:
        errors.append(bad("service_request_id", f"at most {MAX_REQUESTS} ids"))
    if any(len(i) > 40 for i in ids):
        errors.append(bad("service_request_id", "an id has at most 40 characters"))
    codes = _listed(query.get("service_code"))
    unknown = [c for c in codes if (cat := district.category(c)) is None or cat.code != c]
    if unknown:
        errors.append(bad("service_code", f"no service {', '.join(repr(c[:40]) for c in unknown[:5])}"))
    statuses = frozenset(_listed(query.get("status")))
    if statuses - {"open", "closed"}:
        errors.append(bad("status", "open, closed, or both comma separated"))
    start = _w3c_time("start_date", query["start_date"], errors) if query.get("start_date") else None
    end = _w3c_time("end_date", query["end_date"], errors, end_of_day=True) if query.get("end_date") else None
    if start and end:
        if end <= start:
            errors.append(bad("end_date", "lies before start_date"))
        elif end - start > WINDOW + timedelta(days=1):
            errors.append(bad("end_date", "the range may not span more than 90 days"))
    if errors:
        return None, errors
    return Filters(ids=ids, service_codes=codes, start=start, end=end, statuses=statuses), []


def window(filters: Filters, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of a request list: the 90 days up to now unless the filters say otherwise."""
    if filters.start and filters.end:
        return filters.start, filters.end
    if filters.start:
        return filters.start, filters.start + WINDOW
    end = filters.end or now + timedelta(seconds=1)
    return end - WINDOW, end


@dataclass(frozen=True)
class TrackedRequest:
    """An appeal posted through GeoReport, as intake keeps it."""

    appeal_id: str
    service_code: str
    content: str
    requested_at: datetime
    registered_at: datetime
    address: str | None = None
    lat: float | None = None
    long: float | None = None
    media_url: str | None = None


@dataclass(frozen=True)
class Step:
    """One timeline row of the appeal, with the payload fields a request shows."""

    subject: str
    occurred_at: datetime
    unit: str | None = None
    role: str | None = None
    order_id: str | None = None
    clock: str | None = None
    due_at: str | None = None
    reply: str | None = None
    outcome: str | None = None
    master_appeal_id: str | None = None


OUTCOME_NOTES = {"satisfied": "企业评价满意", "basically_satisfied": "企业评价基本满意",
                 "not_rated": "企业未在期限内评价", "answered": "咨询已当场答复"}


def status_notes(status: str, unit: str | None, reply: str | None, outcome: str | None,
                 master: str | None) -> str:
    """The appeal's status in words (Chinese), as GeoReport's ``status_notes``."""
    who = unit or "承办单位"
    notes = {
        "registered": "已受理，等待派单。",
        "awaiting_dispatch": "已受理，等待牵头单位派单。",
        "dispatched": f"已派至{who}，等待签收。",
        "in_progress": f"{who}已签收，正在办理。",
        "returned": f"{who}申请退单，等待牵头单位改派。",
        "replied": f"{who}已答复，等待企业评价。",
        "reopened": f"企业不满意，已由{who}重新办理。",
        "merged": f"与诉求 {master} 重复，随其一并办理。" if master else "重复诉求，随原诉求一并办理。",
        "closed": "已办结" + (f"（{OUTCOME_NOTES[outcome]}）" if outcome in OUTCOME_NOTES else "") + "。",
    }
    text = notes.get(status, "办理中。")
    if reply and status in ("replied", "closed"):
        text += f"答复：{reply}"
    return text[:2000]


def _parsed(at: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(at) if at else None
    except ValueError:
        return None


def request_view(req: TrackedRequest, steps: Sequence[Step], district: District) -> ServiceRequest:
    """The GeoReport request of one appeal from its timeline (``steps``, oldest first).

    The status is :func:`services.intake.domain.status_of`'s (what ``GET /appeals`` answers);
    ``closed`` is GeoReport's closed, every other status open. The responsible agency is the
    unit of the latest lead order (or reopening); the expected time is that order's handling
    deadline (else the latest handling deadline).
    """
    status = domain.status_of([s.subject for s in steps])
    lead = [s for s in steps if (s.subject == "ct.order.dispatched" and s.role == "lead")
            or s.subject == "ct.appeal.reopened"]
    unit = lead[-1].unit if lead else None
    lead_order = lead[-1].order_id if lead else None
    deadlines = [s for s in steps if s.subject == "ct.deadline.set" and s.clock == "handling"]
    own = [s for s in deadlines if s.order_id == lead_order] or deadlines
    expected = _parsed(own[-1].due_at) if own else None
    replies = [s.reply for s in steps if s.reply and s.subject in ("ct.order.replied", "ct.appeal.follower_replied")]
    closed = [s for s in steps if s.subject == "ct.appeal.closed"]
    merged = [s.master_appeal_id for s in steps if s.subject == "ct.appeal.merged"]
    category = district.category(req.service_code)
    updated = max([req.registered_at, *(s.occurred_at for s in steps)])
    return ServiceRequest(
        service_request_id=req.appeal_id, status="closed" if status == "closed" else "open",
        status_notes=status_notes(status, unit, replies[-1] if replies else None,
                                  closed[-1].outcome if closed else None, merged[-1] if merged else None),
        service_name=category.name if category else req.service_code, service_code=req.service_code,
        description=req.content, agency_responsible=unit, requested_datetime=req.requested_at.astimezone(SHANGHAI),
        updated_datetime=updated.astimezone(SHANGHAI),
        expected_datetime=expected.astimezone(SHANGHAI) if expected else None,
        address=req.address, lat=req.lat, long=req.long, media_url=req.media_url,
    )


# --- rendering -----------------------------------------------------------------------------------

#: the XML root and item element of each document
XML_NAMES = {Service: ("services", "service"), ServiceRequest: ("service_requests", "request"),
             CreatedRequest: ("service_requests", "request"), GeoError: ("errors", "error")}


def _xml_value(parent: ET.Element, name: str, value: Any) -> None:
    child = ET.SubElement(parent, name)
    if isinstance(value, bool):
        child.text = "true" if value else "false"
    elif isinstance(value, list):
        singular = {"attributes": "attribute", "values": "value"}.get(name, "item")
        for item in value:
            _xml_object(child, singular, item)
    elif isinstance(value, dict):
        for k, v in value.items():
            _xml_value(child, k, v)
    elif value is not None:
        child.text = str(value)


def _xml_object(parent: ET.Element, name: str, item: dict[str, Any]) -> None:
    element = ET.SubElement(parent, name)
    for k, v in item.items():
        _xml_value(element, k, v)


def to_xml(document: BaseModel | Sequence[BaseModel]) -> bytes:
    """The specification's XML of a list (``<services><service>...``) or of a service definition."""
    if isinstance(document, ServiceDefinition):
        root = ET.Element("service_definition")
        for k, v in document.model_dump(mode="json").items():
            _xml_value(root, k, v)
    else:
        items = list(document)  # type: ignore[arg-type]
        root_name, item_name = XML_NAMES[type(items[0])] if items else ("service_requests", "request")
        root = ET.Element(root_name)
        for item in items:
            _xml_object(root, item_name, item.model_dump(mode="json"))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def to_json(document: BaseModel | Sequence[BaseModel]) -> bytes:
    """The specification's JSON: a list of objects, or the service definition's object."""
    if isinstance(document, BaseModel):
        return document.model_dump_json().encode()
    return json.dumps([d.model_dump(mode="json") for d in document], ensure_ascii=False).encode()


def render(document: BaseModel | Sequence[BaseModel], fmt: str) -> tuple[bytes, str]:
    """(body, media type) of ``document`` in ``fmt`` (json or xml)."""
    if fmt == "xml":
        return to_xml(document), "text/xml; charset=utf-8"
    return to_json(document), "application/json"
