"""The district's configuration: units, people, categories and routing rules.

One file (``DISTRICT_CONFIG``, default ``shared/district.yaml``) read by dispatch
(routing, tokens), escalation (who is told at each step) and notify (phones,
e-mail, WeCom webhooks). Validated with pydantic at start-up: a bad file stops
the service with the field that is wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.contracts.common import normalize_phone

DEFAULT_PATH = Path(__file__).with_name("district.yaml")


class UnitKind(StrEnum):
    bureau = "bureau"
    town = "town"  # town or street (镇/街道)
    park = "park"  # park committee (管委会)
    utility = "utility"
    lead = "lead"  # the lead unit (牵头单位, 区行政审批局)
    supervision = "supervision"  # 区委区政府督查室


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    phone: Annotated[str, AfterValidator(normalize_phone)] | None = Field(
        None, description="Mainland mobile or landline; stored normalised."
    )
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    wecom_webhook: str | None = None
    lang: str = Field("zh", pattern="^(zh|en)$", description="Preferred language of messages.")


class Unit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit_code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    kind: UnitKind
    aliases: list[str] = Field(default_factory=list, description="Other names it is called by (e.g. 供电部门).")
    liaisons: list[Contact] = Field(default_factory=list, description="Fixed liaisons (固定联络人).")
    head: Contact | None = Field(None, description="The unit's head, told when an order is overdue.")
    chief_representative: Contact | None = Field(None, description="政府首席代表.")
    wecom_webhook: str | None = Field(None, description="The unit's group robot.")
    token_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 hex (lower case) of the unit's API bearer token."
    )
    examples: list[Annotated[str, Field(min_length=5, max_length=1000)]] = Field(
        default_factory=list,
        description="Appeals this unit is the right one for, in the district's own words: the routing model's "
                    "first training examples (the lead unit's corrections add to them).",
    )

    def token_matches(self, token: str) -> bool:
        """Whether ``token`` is this unit's: its SHA-256 compared in constant time (``hmac.compare_digest``)."""
        return self.hash_matches(token_sha256(token))

    def hash_matches(self, digest: str) -> bool:
        """Whether ``digest`` (a token's SHA-256 hex) is this unit's, compared in constant time."""
        return self.token_sha256 is not None and hmac.compare_digest(digest, self.token_sha256)

    @property
    def has_demo_token(self) -> bool:
        """The unit's hash is the demo token's (``token-<unit_code>``): refused outside demo mode."""
        return self.token_sha256 is not None and hmac.compare_digest(
            token_sha256(demo_token(self.unit_code)), self.token_sha256)


def token_sha256(token: str) -> str:
    """The SHA-256 hex (lower case) of an API token, as ``token_sha256`` stores it."""
    return hashlib.sha256(token.encode()).hexdigest()


def demo_token(unit_code: str) -> str:
    """The demo token of a unit (``token-<unit_code>``), whose hash the default district holds."""
    return f"token-{unit_code}"


def unit_of_token(units: list[Unit], token: str) -> Unit | None:
    """The unit whose token ``token`` is; every unit is compared (no early exit on a match)."""
    digest = token_sha256(token)
    found = None
    for unit in units:
        if unit.hash_matches(digest) and found is None:
            found = unit
    return found


class Leader(BaseModel):
    model_config = ConfigDict(extra="forbid")
    leader_id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    title: str
    contact: Contact
    categories: list[str] = Field(default_factory=list, description="Categories this leader coordinates; empty = any.")


class Category(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Chinese name, as senders use it in category_hint (e.g. 交通出行).")
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    deadline_days: int = Field(ge=1, le=365, description="Handling deadline in working days.")
    sign_hours: float = Field(gt=0, le=80, description="Sign-for limit in working hours.")
    default_unit: str | None = Field(None, description="unit_code used when only the category is known.")
    aliases: list[str] = Field(default_factory=list)
    standard_code: str | None = Field(
        None, pattern=r"^[0-9A-Z][0-9A-Z.\-]{0,19}$",
        description="The category's code in a national classification of hotline appeals (GB/T 39666 style).",
    )


class RoutingRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: str = Field(description="unit_code the rule points to.")
    keywords: list[str] = Field(default_factory=list, description="Chinese keywords found in the content.")
    categories: list[str] = Field(default_factory=list, description="Category names or codes.")
    areas: list[str] = Field(default_factory=list, description="Towns, streets, parks, landmarks.")
    weight: float = Field(1.0, gt=0)


class KnownAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keywords: list[str] = Field(min_length=1, description="All must appear in a consultation for the answer to apply.")
    answer: str


class PauseRules(BaseModel):
    """How a handling unit may pause its handling clock while it waits for the enterprise (待补充材料)."""

    model_config = ConfigDict(extra="forbid")
    max_per_order: int = Field(2, ge=0, le=20, description="Pauses one work order may have (0: no pausing).")
    max_working_days: int = Field(10, ge=1, le=60, description="The longest one pause counts, in working days: "
                                  "past it the clock runs again by itself and the deadline moves no further.")


class District(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    units: list[Unit]
    leaders: list[Leader] = Field(default_factory=list)
    categories: list[Category]
    routing: list[RoutingRule] = Field(default_factory=list)
    known_answers: list[KnownAnswer] = Field(default_factory=list)
    pauses: PauseRules = Field(default_factory=PauseRules, description="Pausing the handling clock (待补充材料).")
    min_score: float = Field(2.0, description="A unit needs at least this score to be dispatched automatically.")
    min_margin: float = Field(1.0, description="...and this much more than the runner-up.")
    co_share: float = Field(
        0.25, ge=0, le=1,
        description="A unit whose content matched also co-handles (协办) when it scores at least min_score "
        "and this share of the lead unit's score.",
    )
    model_weight: float = Field(
        5.0, ge=0,
        description="Points the routing model (trained on the units' examples and the lead unit's corrections) "
        "adds to a unit: its probability x model_weight, on top of the rules' points; 0 turns the model off. "
        "min_score and min_margin then decide on the sum, so a clear rule or an event's proposal (6 points) "
        "still wins. Chosen with `coffeetime routing-eval --tune` on the cross-validation folds.",
    )
    model_min_probability: float = Field(
        0.1, ge=0, le=1,
        description="Below this probability the routing model adds nothing to a unit (and gives no reason).",
    )
    model_sure_ratio: float | None = Field(
        4.0, ge=1,
        description="Where the points are unclear, the model alone dispatches to its first unit when that unit is "
        "this many times as probable as the next and no rule points elsewhere; null turns it off. Chosen with "
        "`coffeetime routing-eval --tune` on the cross-validation folds.",
    )

    @model_validator(mode="after")
    def _references_exist(self) -> District:
        codes = {u.unit_code for u in self.units}
        if len(codes) != len(self.units):
            raise ValueError("units: unit_code values must be unique")
        for c in self.categories:
            if c.default_unit and c.default_unit not in codes:
                raise ValueError(f"categories.{c.code}.default_unit: unknown unit {c.default_unit!r}")
        for i, r in enumerate(self.routing):
            if r.unit not in codes:
                raise ValueError(f"routing.{i}.unit: unknown unit {r.unit!r}")
        names: dict[str, str] = {}
        for u in self.units:
            for label in (u.name, *u.aliases):
                owner = names.setdefault(label, u.unit_code)
                if owner != u.unit_code:
                    raise ValueError(f"units.{u.unit_code}.aliases: {label!r} already names unit {owner!r}")
        cat_codes = [c.code for c in self.categories]
        if len(set(cat_codes)) != len(cat_codes):
            raise ValueError("categories: code values must be unique")
        cat_names = [c.name for c in self.categories]
        if len(set(cat_names)) != len(cat_names):
            raise ValueError("categories: name values must be unique")
        known_categories = {*cat_codes, *cat_names, *(a for c in self.categories for a in c.aliases)}
        for i, r in enumerate(self.routing):
            for name in r.categories:
                if name not in known_categories:
                    raise ValueError(f"routing.{i}.categories: unknown category {name!r}")
        leader_ids = [leader.leader_id for leader in self.leaders]
        if len(set(leader_ids)) != len(leader_ids):
            raise ValueError("leaders: leader_id values must be unique")
        for leader in self.leaders:
            for name in leader.categories:
                if name not in known_categories:
                    raise ValueError(f"leaders.{leader.leader_id}.categories: unknown category {name!r}")
        kinds = [u.kind for u in self.units]
        if kinds.count(UnitKind.lead) != 1:
            raise ValueError("units: exactly one unit must be of kind 'lead'")
        if kinds.count(UnitKind.supervision) != 1:
            raise ValueError("units: exactly one unit must be of kind 'supervision'")
        return self

    # --- look-ups ---------------------------------------------------------------

    def unit(self, code: str) -> Unit:
        for u in self.units:
            if u.unit_code == code:
                return u
        raise KeyError(code)

    def find_unit(self, name_or_code: str) -> Unit | None:
        """A unit by code, name or alias (an event's proposed unit may be any of them)."""
        key = name_or_code.strip()
        for u in self.units:
            if key in (u.unit_code, u.name) or key in u.aliases:
                return u
        return None

    @property
    def lead_unit(self) -> Unit:
        return next(u for u in self.units if u.kind == UnitKind.lead)

    @property
    def supervision_office(self) -> Unit:
        return next(u for u in self.units if u.kind == UnitKind.supervision)

    def category(self, name_or_code: str | None) -> Category | None:
        if not name_or_code:
            return None
        for c in self.categories:
            if name_or_code in (c.name, c.code) or name_or_code in c.aliases:
                return c
        return None

    def leader_for(self, category: str | None) -> Leader | None:
        """The district leader who coordinates a category (by name, code or alias).

        Falls back to a leader with no categories (any), then to the first leader.
        """
        cat = self.category(category)
        labels = {category} | ({cat.name, cat.code, *cat.aliases} if cat else set())
        for leader in self.leaders:
            if category and labels & set(leader.categories):
                return leader
        return next((leader for leader in self.leaders if not leader.categories), self.leaders[0] if self.leaders else None)


def load_district(path: str | Path | None = None, unit_tokens: str | None = None) -> District:
    """The district file at ``path`` (``DISTRICT_CONFIG``, else the default), with the unit token hashes of
    ``unit_tokens`` (``UNIT_TOKENS``: ``unit_code=sha256hex`` pairs) in place of the file's."""
    path = Path(path or os.environ.get("DISTRICT_CONFIG") or DEFAULT_PATH)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if unit_tokens:
        data["units"] = with_token_hashes(data.get("units") or [], unit_tokens)
    return District.model_validate(data)


def parse_token_hashes(pairs: str, what: str = "UNIT_TOKENS") -> dict[str, str | None]:
    """``name=sha256hex`` pairs, comma or newline separated (``name=`` alone: no token), or ValueError."""
    hashes: dict[str, str | None] = {}
    for item in pairs.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, digest = (part.strip() for part in item.partition("="))
        if not sep or not name:
            raise ValueError(f"{what}: {item[:40]!r} is not name=sha256hex")
        if digest and not (len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise ValueError(f"{what}: the hash of {name!r} is not 64 lower-case hex digits (SHA-256)")
        if name in hashes:
            raise ValueError(f"{what}: {name!r} is given twice")
        hashes[name] = digest or None
    return hashes


def with_token_hashes(units: list[dict], unit_tokens: str) -> list[dict]:
    """The units of a district file with the hashes of ``unit_tokens`` replacing theirs."""
    hashes = parse_token_hashes(unit_tokens)
    unknown = sorted(set(hashes) - {u.get("unit_code") for u in units})
    if unknown:
        raise ValueError(f"UNIT_TOKENS: no unit {', '.join(unknown)} in the district")
    return [{**u, "token_sha256": hashes[u["unit_code"]]} if u.get("unit_code") in hashes else u for u in units]


@lru_cache(maxsize=4)
def district(path: str | None = None) -> District:
    """The configured district, loaded once per process."""
    return load_district(path)
