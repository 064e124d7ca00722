"""Routing (派单): which unit leads an appeal, which co-handle, or whether it waits for a person.

:func:`route` scores every handling unit of the district:

=====================================  ===========================
keyword of a rule found in the content  +1 x the rule's weight
area of a rule found in content/address +2 x the rule's weight
category hint listed by a rule          +1 x the rule's weight
the category's default unit             +2
unit named in the content               +2
unit proposed at a coffee event         +6
the routing model (``text_model.py``)   +p x ``district.model_weight``
=====================================  ===========================

The model's points (a unit's probability ``p`` of at least
``district.model_min_probability``, reason ``similar to past appeals of 区市场监管局
(p=0.83)``) come on top of the rules': a clear rule or an event's proposal (6
points) outweighs any model (5 points at p=1 by default), and where no rule
matched the model alone dispatches only when it is confident enough to clear the
same thresholds (p of at least 0.4 and a lead of 0.2 over the runner-up, by
default). Co-handling is decided on the rules' points only: the model names no
co-handler.

A rule that lists areas is *local*: it counts only when one of its areas is
found (a town's keywords mean something only on its own ground, 属地) and, when
it lists keywords, one of them too: a place alone says where, not who (黄水镇's
power lines are the power company's; a dispute with 黄水镇's villagers is the
town's). For the same reason a unit's own area named in the text ("黄水镇") is
not "named in the appeal". Where one
matched term contains another of the same rule (左转车道 and 左转) only the
longer counts. The best unit leads when it scores at least
``district.min_score`` and leads the runner-up by ``district.min_margin``;
otherwise the appeal waits in the lead unit's manual queue. Units named as
co-handlers, and units whose content matched and that score at least
``min_score`` and ``district.co_share`` of the lead's score, co-handle (协办).
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field, replace

from services.dispatch.domain.text_model import ModelSuggestion
from shared.contracts.common import AppealKind
from shared.contracts.events import AppealRegistered
from shared.district import Category, District, RoutingRule, Unit, UnitKind

KEYWORD_POINTS = 1.0
AREA_POINTS = 2.0
CATEGORY_RULE_POINTS = 1.0
CATEGORY_DEFAULT_POINTS = 2.0
NAMED_POINTS = 2.0
PROPOSED_POINTS = 6.0

FALLBACK_CATEGORY = Category(name="其他", code="other", deadline_days=10, sign_hours=8)
"""Used only when the district defines no category named 其他 (code ``other``)."""

_SEPARATORS = re.compile(r"[、，,；;/\s]+")
_PARENTHESES = re.compile(r"[（(][^）)]*[）)]")
_CO_MARKERS = ("协办", "配合", "协助")
_LEAD_MARKERS = re.compile("牵头|主办")
_ROLE_WORDS = re.compile("牵头|主办|协办|配合|协助|负责")


@dataclass(frozen=True)
class RoutingInput:
    """What routing looks at: the appeal's text and what its sender suggested.

    ``proposed_unit`` is a coffee event's proposal, by name, alias or code; it may
    name several units ("黄水镇牵头，区新科局能源办、供电部门配合"): the one marked
    牵头/主办, else the first not marked 协办/配合, is the proposed lead and the others
    co-handle (see :func:`parse_proposed_units`). ``co_units`` names further
    co-handlers explicitly.
    """

    content: str
    category_hint: str | None = None
    address: str | None = None
    proposed_unit: str | None = None
    proposed_deadline_days: int | None = None
    co_units: tuple[str, ...] = ()

    @classmethod
    def from_registered(cls, event: AppealRegistered) -> RoutingInput:
        """The routing input of a registered appeal (with its coffee-event proposal, if any)."""
        proposal = event.proposal
        return cls(
            content=event.content,
            category_hint=event.category_hint,
            address=event.address,
            proposed_unit=proposal.proposed_unit if proposal else None,
            proposed_deadline_days=proposal.proposed_deadline_days if proposal else None,
        )


@dataclass(frozen=True)
class UnitChoice:
    """One unit's score and why: ``reasons`` like ``matched 左转车道, 违停 → 区公安分局交警大队``."""

    unit_code: str
    unit: str
    score: float
    reasons: tuple[str, ...] = ()
    matched: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        """``区公安分局交警大队 (7.0)``."""
        return f"{self.unit} ({self.score:.1f})"


@dataclass(frozen=True)
class RoutingDecision:
    """The outcome of routing one appeal.

    ``lead`` is None exactly when ``queued`` (the lead unit dispatches by hand);
    ``reasons`` then say why. ``candidates`` holds every handling unit, best first.
    ``model_version`` names the routing model whose suggestion counted (None: rules only).
    """

    lead: UnitChoice | None
    co_units: tuple[UnitChoice, ...]
    queued: bool
    reasons: tuple[str, ...]
    category: Category
    deadline_days: int
    sign_hours: float
    candidates: tuple[UnitChoice, ...] = ()
    model_version: str | None = None

    def top(self, n: int = 3) -> tuple[UnitChoice, ...]:
        """The n best-scoring candidates."""
        return self.candidates[:n]


@dataclass
class _Tally:
    unit: Unit
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)
    areas: list[str] = field(default_factory=list)
    content_matched: bool = False
    rule_score: float = 0.0

    def add(self, points: float, reason: str) -> None:
        self.score += points
        self.reasons.append(reason)

    def choice(self) -> UnitChoice:
        return UnitChoice(self.unit.unit_code, self.unit.name, round(self.score, 3),
                          tuple(self.reasons), tuple(self.matched))


def _longest(found: list[str]) -> list[str]:
    """Drop every term contained in another found term (左转 inside 左转车道), keeping order."""
    if len(found) < 2:
        return found
    unique = list(dict.fromkeys(found))
    return [t for t in unique if not any(t != other and t in other for other in unique)]


@dataclass(frozen=True)
class _Index:
    """What :func:`route` reads of a district on every appeal, gathered once per district object."""

    units: tuple[Unit, ...]
    """The handling units, in the district's order."""
    order: dict[str, int]
    rules: tuple[tuple[RoutingRule, str], ...]
    """The rules of handling units, with their unit's name."""
    areas: frozenset[str]
    keywords: frozenset[str]
    own_areas: dict[str, set[str]]
    """Each unit's areas in its rules: its own ground, named in a text it says where, not who."""
    labels: tuple[tuple[str, str], ...]
    """(name or alias of at least two characters, unit code) of every handling unit, in order."""
    unscored: dict[str, UnitChoice]
    """Each unit's candidate line when nothing pointed at it (score 0, no reasons; immutable, so shared)."""


_INDEXES: dict[int, tuple[weakref.ref, _Index]] = {}


def _index(district: District) -> _Index:
    """The district's :class:`_Index`, built on its first appeal (a district object is never changed in place)."""
    cached = _INDEXES.get(id(district))
    if cached is not None and cached[0]() is district:
        return cached[1]
    units = tuple(handling_units(district))
    names = {u.unit_code: u.name for u in units}
    own_areas: dict[str, set[str]] = {}
    for rule in district.routing:
        own_areas.setdefault(rule.unit, set()).update(rule.areas)
    index = _Index(
        units=units,
        order={u.unit_code: i for i, u in enumerate(district.units)},
        rules=tuple((r, names[r.unit]) for r in district.routing if r.unit in names),
        areas=frozenset(t for r in district.routing for t in r.areas if t),
        keywords=frozenset(t for r in district.routing for t in r.keywords if t),
        own_areas=own_areas,
        labels=tuple((label, u.unit_code) for u in units for label in (u.name, *u.aliases) if len(label) >= 2),
        unscored={u.unit_code: _Tally(u).choice() for u in units},
    )
    key = id(district)
    _INDEXES[key] = (weakref.ref(district, lambda _, key=key: _INDEXES.pop(key, None)), index)
    return index


def handling_units(district: District) -> list[Unit]:
    """Units that can hold work orders: every unit but the supervision office (督查室)."""
    return [u for u in district.units if u.kind != UnitKind.supervision]


def resolve_unit(district: District, text: str) -> Unit | None:
    """A unit from free text: its code, name or alias, or the longest name or alias contained in it.

    Role words and parentheses ("（牵头）", "配合") are ignored.
    """
    cleaned = _ROLE_WORDS.sub("", _PARENTHESES.sub("", text)).strip()
    for candidate in (text.strip(), cleaned):
        if candidate and (unit := district.find_unit(candidate)):
            return unit
    best: tuple[int, Unit] | None = None
    for unit in district.units:
        for label in (unit.name, *unit.aliases):
            if label in cleaned and (best is None or len(label) > best[0]):
                best = (len(label), unit)
    return best[1] if best else None


def parse_proposed_units(district: District, text: str | None) -> tuple[Unit | None, list[Unit], list[str]]:
    """Split an event's proposed unit text into (proposed lead, proposed co-handlers, unknown names).

    Parts are separated by 、，,；; or spaces. The part marked 牵头 / 主办 is the lead;
    without such a mark, the first part not marked 协办 / 配合 / 协助 is. Every other
    known part is a co-handler.
    """
    if not text or not text.strip():
        return None, [], []
    parts = [p for p in _SEPARATORS.split(text.strip()) if p]
    resolved = [(p, resolve_unit(district, p)) for p in parts]
    unknown = [p for p, unit in resolved if unit is None]
    known = [(p, unit) for p, unit in resolved if unit is not None]
    lead_index = next((i for i, (p, _) in enumerate(known) if _LEAD_MARKERS.search(p)), None)
    if lead_index is None:
        lead_index = next((i for i, (p, _) in enumerate(known) if not any(m in p for m in _CO_MARKERS)), None)
    lead = known[lead_index][1] if lead_index is not None else None
    co: list[Unit] = []
    for _, unit in known:
        if unit != lead and unit not in co:
            co.append(unit)
    return lead, co, unknown


def resolve_category(district: District, hint: str | None, lead_code: str | None = None) -> Category:
    """The category of an appeal: its hint (name, code or alias), else the lead unit's default category, else 其他."""
    if cat := district.category(hint.strip() if hint else None):
        return cat
    if lead_code:
        for cat in district.categories:
            if cat.default_unit == lead_code:
                return cat
    return district.category("other") or district.category("其他") or FALLBACK_CATEGORY


def route(district: District, appeal: RoutingInput, suggestion: ModelSuggestion | None = None) -> RoutingDecision:
    """Choose the lead unit (主办) and co-handling units (协办) of an appeal, or send it to the manual queue.

    Scores every handling unit (see the module docstring for the points), so the
    decision's ``candidates`` explain the choice to the lead unit. ``suggestion``
    is the routing model's opinion of this appeal (``TextModel.suggest``); without
    one the rules decide alone.
    """
    content = appeal.content or ""
    place_text = content + "\n" + (appeal.address or "")
    hint_cat = district.category(appeal.category_hint.strip() if appeal.category_hint else None)
    hint_labels = {hint_cat.name, hint_cat.code, *hint_cat.aliases} if hint_cat else set()
    index = _index(district)
    tallies = {u.unit_code: _Tally(u) for u in index.units}
    # every term looked for once per appeal; each rule then keeps its own found terms, in its order
    areas_here = {t for t in index.areas if t in place_text}
    keywords_here = {t for t in index.keywords if t in content}

    for rule, name in index.rules:
        tally = tallies[rule.unit]
        areas = _longest([t for t in rule.areas if t in areas_here]) if areas_here else []
        if rule.areas and not areas:
            continue  # a local rule counts only on its own ground
        keywords = _longest([t for t in rule.keywords if t in keywords_here]) if keywords_here else []
        if rule.areas and rule.keywords and not keywords:
            continue  # a place alone says where, not who: 黄水镇's power lines are the power company's
        if areas:
            tally.add(AREA_POINTS * rule.weight * len(areas), f"area {', '.join(areas)} → {name}")
            tally.areas.extend(a for a in areas if a not in tally.areas)
        if keywords:
            tally.add(KEYWORD_POINTS * rule.weight * len(keywords), f"matched {', '.join(keywords)} → {name}")
            tally.matched.extend(k for k in keywords if k not in tally.matched)
            tally.content_matched = True
        if hint_cat and hint_labels & set(rule.categories):
            tally.add(CATEGORY_RULE_POINTS * rule.weight, f"category {hint_cat.name} → {name}")

    if hint_cat and hint_cat.default_unit in tallies:
        t = tallies[hint_cat.default_unit]
        t.add(CATEGORY_DEFAULT_POINTS, f"category {hint_cat.name} defaults to {t.unit.name}")

    # units named in the text, unless the name is one of its areas: "黄水镇" in an appeal says where, not who
    own_areas = index.own_areas
    named = [(label, code) for label, code in index.labels if label in content]
    labels = _longest([label for label, _ in named])
    named_units: set[str] = set()
    for label, code in named:
        t = tallies[code]
        if label not in labels or code in named_units or label in t.areas or label in own_areas.get(code, ()):
            continue
        named_units.add(code)
        t.add(NAMED_POINTS, f"named in the appeal: {label} → {t.unit.name}")
        t.content_matched = True

    decision_notes: list[str] = []
    proposed_lead, proposed_co, unknown = parse_proposed_units(district, appeal.proposed_unit)
    for name in unknown:
        decision_notes.append(f"proposed unit {name!r} is not a unit of {district.name}")
    if proposed_lead is not None:
        if proposed_lead.unit_code in tallies:
            t = tallies[proposed_lead.unit_code]
            t.add(PROPOSED_POINTS, f"proposed at the coffee event → {t.unit.name}")
        else:
            decision_notes.append(f"proposed unit {proposed_lead.name} cannot handle work orders")

    for t in tallies.values():
        t.rule_score = t.score
    model_version = None
    if suggestion is not None and district.model_weight > 0:
        model_version = suggestion.version
        for code, p in suggestion.best(len(suggestion.probabilities)):
            t = tallies.get(code)
            if t is not None and p >= district.model_min_probability:
                t.add(district.model_weight * p, f"similar to past appeals of {t.unit.name} (p={p:.2f})")

    explicit_co: list[Unit] = list(proposed_co)
    for name in appeal.co_units:
        unit = resolve_unit(district, name)
        if unit is None:
            decision_notes.append(f"co-handling unit {name!r} is not a unit of {district.name}")
        elif unit not in explicit_co:
            explicit_co.append(unit)

    order = index.order
    ranked = sorted(tallies.values(), key=lambda t: (-t.score, order[t.unit.unit_code]))
    candidates = tuple(t.choice() if t.reasons else index.unscored[t.unit.unit_code] for t in ranked)
    best = ranked[0] if ranked else None
    runner_up = ranked[1] if len(ranked) > 1 else None
    best_score = best.score if best else 0.0
    margin = best_score - (runner_up.score if runner_up else 0.0)

    queued_because: list[str] = []
    if best is None or best_score < district.min_score:
        what = best.choice().summary if best and best_score > 0 else "none matched"
        queued_because.append(f"no unit scored at least {district.min_score:.1f} (best: {what})")
    elif margin < district.min_margin:
        queued_because.append(
            f"{best.choice().summary} and {runner_up.choice().summary} are too close: "
            f"margin {margin:.1f} < {district.min_margin:.1f}"
        )

    if queued_because and suggestion is not None:
        sure = _model_is_sure(district, suggestion, tallies)
        if sure is not None:
            queued_because = []
            best = sure
            runner_up = next((t for t in ranked if t is not sure), None)

    proposed_days = appeal.proposed_deadline_days
    if queued_because:
        category = resolve_category(district, appeal.category_hint)
        tops = [c.summary for c in candidates[:3] if c.score > 0]
        reasons = (*queued_because, *(["candidates: " + ", ".join(tops)] if tops else []), *decision_notes)
        return RoutingDecision(
            lead=None, co_units=(), queued=True, reasons=tuple(reasons), category=category,
            deadline_days=proposed_days or category.deadline_days, sign_hours=category.sign_hours,
            candidates=candidates, model_version=model_version,
        )

    assert best is not None
    lead = best.choice()
    threshold = max(district.min_score, district.co_share * best.rule_score)
    co: list[UnitChoice] = []
    for unit in explicit_co:
        if unit.unit_code != lead.unit_code and unit.unit_code in tallies:
            t = tallies[unit.unit_code]
            co.append(replace(t.choice(), reasons=(*t.reasons, f"named as co-handler → {unit.name}")))
    for t in ranked[1:]:
        if t.content_matched and t.rule_score >= threshold and all(c.unit_code != t.unit.unit_code for c in co):
            co.append(t.choice())
    category = resolve_category(district, appeal.category_hint, lead.unit_code)
    runner = f"; next {runner_up.choice().summary}" if runner_up else ""
    reasons = (f"lead {lead.summary}{runner}", *lead.reasons, *(f"co-handler {c.summary}" for c in co), *decision_notes)
    return RoutingDecision(
        lead=lead, co_units=tuple(co), queued=False, reasons=tuple(reasons), category=category,
        deadline_days=proposed_days or category.deadline_days, sign_hours=category.sign_hours,
        candidates=candidates, model_version=model_version,
    )


def _model_is_sure(district: District, suggestion: ModelSuggestion, tallies: dict[str, _Tally]) -> _Tally | None:
    """The unit the model is sure of where the points alone are unclear, or None.

    Sure: its probability is at least ``model_min_probability`` and at least
    ``model_sure_ratio`` times the next unit's, and no rule points at another
    unit with at least ``min_score`` points more than this one. A probability
    spread over 23 units is small even when the model is right, so the lead over
    the runner-up, not the probability itself, says how sure it is
    (``coffeetime routing-eval``).
    """
    if not district.model_sure_ratio or district.model_weight <= 0:
        return None
    (code, p1), (_, p2) = (suggestion.best(2) + [("", 0.0), ("", 0.0)])[:2]
    t = tallies.get(code)
    if t is None or p1 < district.model_min_probability or p1 < district.model_sure_ratio * p2:
        return None
    if any(o is not t and o.rule_score >= district.min_score and o.rule_score > t.rule_score for o in tallies.values()):
        return None  # a rule says otherwise: the lead unit decides
    lead = f"{p1 / p2:.1f}x the next unit's" if p2 > 0 else "no other unit likely"
    t.add(0.0, f"the model is sure of {t.unit.name}: p={p1:.2f}, {lead}")
    return t


def known_answer(district: District, content: str, kind: AppealKind | str) -> str | None:
    """The answer a consultation (咨询) gets at once, or None.

    Only a consultation is answered; an entry applies when all its keywords appear
    in the content, and the entry with the most keywords wins (the most specific).
    """
    if str(kind) != AppealKind.consultation.value:
        return None
    best: tuple[int, str] | None = None
    for entry in district.known_answers:
        if all(k in content for k in entry.keywords) and (best is None or len(entry.keywords) > best[0]):
            best = (len(entry.keywords), entry.answer)
    return best[1] if best else None
