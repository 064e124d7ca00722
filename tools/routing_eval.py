"""``coffeetime routing-eval``: how well routing does on appeals it never saw, measured (no servers).

What it measures, each appeal routed by content alone (no category hint, no
event proposal), the rules plus the routing model exactly as dispatch does it
(:func:`services.dispatch.domain.routing.route`):

- **accuracy**: the share dispatched automatically to an acceptable unit;
- **manual share**: the share left in the lead unit's manual queue;
- **misrouted share**: the share dispatched to a wrong unit (a return, a transfer).

On three sets:

1. *cross-validation* on the shipped examples (``Unit.examples`` of the district
   configuration): 5 stratified folds, seeded; the model of each fold is trained
   on the other four, the rules stay as configured;
2. the *held-out* appeals of every ``tests/data/unseen_appeals*.yaml`` (when
   present; ``acceptable`` lists the units counted as right), the model trained
   on every shipped example: ``unseen_appeals.yaml`` (written by the authors of
   the examples; its rows are "held-out, ...") and each further set, e.g.
   ``unseen_appeals_new_user.yaml`` (written without seeing the examples or the
   rules; its rows are "held-out new_user, ...");
3. the *curve* of the manual share as corrections accumulate: per fold, from the
   rules alone (no model) to the model trained on growing shares of the other
   folds' examples, as if the lead unit's corrections were arriving; and on the
   first held-out set in arrival order (seeded), each step routed by the model of
   the corrections so far, every appeal the lead unit had to touch (queued or
   misrouted) becoming a correction before the next step.

``--tune`` searches the routing model's thresholds (``model_weight``,
``model_min_probability``) on the cross-validation folds only, for the best
accuracy at a misrouted share of at most 3 %; the held-out set is never used
to choose them. Output: a table, or ``--format json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from services.dispatch.domain import text_model
from services.dispatch.domain.routing import RoutingInput, route
from services.dispatch.domain.text_model import LabelledExample, TextModel
from shared.district import District, load_district

HELD_OUT_DIR = Path(__file__).parents[1] / "tests" / "data"
UNSEEN = HELD_OUT_DIR / "unseen_appeals.yaml"
HELD_OUT_GLOB = "unseen_appeals*.yaml"
K = 5
SEED = 20261
CURVE_SHARES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
MISROUTED_TARGET = 0.03
ACCURACY_TARGET = 0.85


@dataclass(frozen=True)
class Appeal:
    """An appeal to route and the units that would be right for it."""

    content: str
    acceptable: frozenset[str]


@dataclass
class Figures:
    """Outcome shares of one evaluated set."""

    appeals: int = 0
    dispatched_right: int = 0
    manual: int = 0
    misrouted: int = 0

    @property
    def accuracy(self) -> float:
        return self.dispatched_right / self.appeals if self.appeals else 0.0

    @property
    def manual_share(self) -> float:
        return self.manual / self.appeals if self.appeals else 0.0

    @property
    def misrouted_share(self) -> float:
        return self.misrouted / self.appeals if self.appeals else 0.0

    def add(self, other: Figures) -> Figures:
        return Figures(self.appeals + other.appeals, self.dispatched_right + other.dispatched_right,
                       self.manual + other.manual, self.misrouted + other.misrouted)

    def as_dict(self) -> dict:
        return {**asdict(self), "accuracy": round(self.accuracy, 4), "manual_share": round(self.manual_share, 4),
                "misrouted_share": round(self.misrouted_share, 4)}


@dataclass
class Report:
    """Everything ``routing-eval`` measured."""

    settings: dict
    cross_validation: dict
    held_out: dict | None
    curve_folds: list[dict] = field(default_factory=list)
    curve_held_out: list[dict] = field(default_factory=list)
    timing: dict = field(default_factory=dict)
    tuning: list[dict] = field(default_factory=list)
    # every held-out set by file stem (the first one's figures are also ``held_out``): appeals, rules_only, with_model
    held_out_sets: dict[str, dict] = field(default_factory=dict)


def fit(district: District, examples: Sequence[LabelledExample], version: str, *,
        reuse: bool = True) -> TextModel | None:
    """The model dispatch would train on these examples: they and the rules' pseudo-examples."""
    return text_model.train([*examples, *text_model.rule_examples(district)], version, reuse=reuse)


def outcomes(district: District, appeals: Sequence[Appeal], model: TextModel | None) -> tuple[Figures, list[str]]:
    """Route ``appeals`` (the batch scored by ``model`` in one call); their figures and each one's outcome."""
    suggestions = model.suggest([a.content for a in appeals]) if model else [None] * len(appeals)
    figures, each = Figures(), []
    for appeal, suggestion in zip(appeals, suggestions, strict=True):
        decision = route(district, RoutingInput(content=appeal.content), suggestion)
        figures.appeals += 1
        if decision.queued or decision.lead is None:
            figures.manual += 1
            each.append("manual")
        elif decision.lead.unit_code in appeal.acceptable:
            figures.dispatched_right += 1
            each.append("right")
        else:
            figures.misrouted += 1
            each.append("misrouted")
    return figures, each


def folds(examples: Sequence[LabelledExample], k: int = K, seed: int = SEED) -> list[tuple[list[int], list[int]]]:
    """Stratified, seeded k folds: (train indices, test indices)."""
    from sklearn.model_selection import StratifiedKFold

    labels = [e.unit_code for e in examples]
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(list(tr), list(te)) for tr, te in splitter.split(labels, labels)]


def as_appeals(examples: Sequence[LabelledExample]) -> list[Appeal]:
    return [Appeal(e.content, frozenset({e.unit_code})) for e in examples]


def cross_validate(district: District, examples: Sequence[LabelledExample], k: int = K,
                   seed: int = SEED) -> tuple[Figures, list[Figures]]:
    """k-fold figures on the shipped examples: the total and per fold."""
    total, per_fold = Figures(), []
    for i, (train_ix, test_ix) in enumerate(folds(examples, k, seed)):
        model = fit(district, [examples[j] for j in train_ix], f"cv-{i}")
        figures, _ = outcomes(district, as_appeals([examples[j] for j in test_ix]), model)
        per_fold.append(figures)
        total = total.add(figures)
    return total, per_fold


def fold_curve(district: District, examples: Sequence[LabelledExample], k: int = K, seed: int = SEED) -> list[dict]:
    """Per share of the other folds' examples given as corrections (0: the rules alone), the pooled figures."""
    rng = random.Random(seed)
    splits = folds(examples, k, seed)
    orders = [rng.sample(train_ix, len(train_ix)) for train_ix, _ in splits]
    points = []
    for share in CURVE_SHARES:
        total = Figures()
        corrections = 0
        for i, ((_, test_ix), order) in enumerate(zip(splits, orders, strict=True)):
            n = round(share * len(order))
            model = fit(district, [examples[j] for j in order[:n]], f"curve-{i}-{n}") if n else None
            figures, _ = outcomes(district, as_appeals([examples[j] for j in test_ix]), model)
            total = total.add(figures)
            corrections += n
        points.append({"corrections_per_fold": round(corrections / k), "share_of_examples": share,
                       **total.as_dict()})
    return points


def held_out_curve(district: District, examples: Sequence[LabelledExample], unseen: Sequence[Appeal],
                   steps: int = 5, seed: int = SEED) -> list[dict]:
    """The held-out appeals in seeded arrival order, in ``steps`` batches; each batch routed by the model of the
    shipped examples plus the corrections so far; every appeal of a batch that was queued or misrouted becomes a
    correction (labelled with its first acceptable unit) before the next batch."""
    stream = random.Random(seed).sample(list(unseen), len(unseen))
    size = -(-len(stream) // steps)
    corrections: list[LabelledExample] = []
    points = []
    for step in range(steps):
        batch = stream[step * size:(step + 1) * size]
        if not batch:
            break
        model = fit(district, [*examples, *corrections], f"stream-{len(corrections)}")
        figures, each = outcomes(district, batch, model)
        points.append({"step": step + 1, "corrections_before": len(corrections), **figures.as_dict()})
        corrections += [LabelledExample(a.content, sorted(a.acceptable)[0], "simulated", len(corrections) + 1)
                        for a, outcome in zip(batch, each, strict=True) if outcome != "right"]
    return points


def load_unseen(path: Path = UNSEEN) -> list[Appeal]:
    """The held-out appeals (``content``, ``acceptable``), or none when the file is absent."""
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return [Appeal(a["content"], frozenset(a["acceptable"])) for a in data.get("appeals", [])]


def held_out_files(directory: Path = HELD_OUT_DIR) -> list[Path]:
    """Every held-out file of ``directory`` (``unseen_appeals*.yaml``): ``unseen_appeals.yaml`` first, then by name."""
    return sorted(directory.glob(HELD_OUT_GLOB), key=lambda p: (p.name != UNSEEN.name, p.name))


def load_held_out_sets(paths: Sequence[Path]) -> dict[str, list[Appeal]]:
    """The appeals of each held-out file, by file stem, in the order given."""
    return {path.stem: load_unseen(path) for path in paths}


def set_label(stem: str) -> str:
    """How a held-out set is named in the table: "" for ``unseen_appeals``, "new_user" for
    ``unseen_appeals_new_user`` (so the first set's rows stay "held-out, rules only")."""
    return stem.removeprefix(UNSEEN.stem).lstrip("_-") if stem.startswith(UNSEEN.stem) else stem


def held_out_figures(district: District, appeals: Sequence[Appeal], model: TextModel | None) -> dict:
    """One held-out set routed by the rules alone and by the rules plus ``model``."""
    figures, _ = outcomes(district, appeals, model)
    rules_only, _ = outcomes(district, appeals, None)
    return {"with_model": figures.as_dict(), "rules_only": rules_only.as_dict()}


def timing(district: District, examples: Sequence[LabelledExample], appeals: Sequence[Appeal],
           repeat: int = 5) -> dict:
    """Training time on every shipped example, and per-appeal prediction and routing time on a batch (medians)."""
    train_s, predict_s, route_s = [], [], []
    contents = [a.content for a in appeals] or [e.content for e in examples]
    batch = (contents * (1000 // len(contents) + 1))[:1000]
    model = None
    for _ in range(repeat):
        t = time.perf_counter()
        model = fit(district, examples, "timing", reuse=False)
        train_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        suggestions = model.suggest(batch)
        predict_s.append((time.perf_counter() - t) / len(batch))
        t = time.perf_counter()
        for content, suggestion in zip(batch, suggestions, strict=True):
            route(district, RoutingInput(content=content), suggestion)
        route_s.append((time.perf_counter() - t) / len(batch))
    return {"examples": len(examples), "training_ms": round(statistics.median(train_s) * 1000, 1),
            "batch": len(batch), "predict_us_per_appeal": round(statistics.median(predict_s) * 1e6, 1),
            "route_us_per_appeal": round(statistics.median(route_s) * 1e6, 1)}


def tune(district: District, examples: Sequence[LabelledExample]) -> tuple[District, list[dict]]:
    """Search model_weight × model_min_probability on the folds only: the best accuracy whose misrouted share
    is at most 3 points above the rules' own on the same folds.

    The shipped examples are written to be varied, and the rules alone already
    send about 3 % of them to a wrong unit; an absolute 3 % bound would leave the
    model nothing to do, so the bound is on what the model adds. The held-out set
    is never looked at here.
    """
    models = [(fit(district, [examples[j] for j in tr], f"tune-{i}"), as_appeals([examples[j] for j in te]))
              for i, (tr, te) in enumerate(folds(examples))]
    tried = []
    rules_only = Figures()
    for _, appeals in models:
        rules_only = rules_only.add(outcomes(district, appeals, None)[0])
    # at most PROPOSED_POINTS - min_margin (5): an event's proposal outweighs the model, however sure it is
    for weight, floor, ratio in itertools.product((2.0, 3.0, 4.0, 5.0), (0.05, 0.1, 0.2, 0.3),
                                                  (None, 2.0, 2.5, 3.0, 4.0)):
        setting = {"model_weight": weight, "model_min_probability": floor, "model_sure_ratio": ratio}
        candidate = district.model_copy(update=setting)
        total = Figures()
        for model, appeals in models:
            total = total.add(outcomes(candidate, appeals, model)[0])
        tried.append({**setting, **total.as_dict()})
    bound = rules_only.misrouted_share + MISROUTED_TARGET
    within = [t for t in tried if t["misrouted_share"] <= bound] or tried
    best = max(within, key=lambda t: (t["accuracy"], -t["misrouted_share"], -t["model_weight"]))
    return district.model_copy(update={k: best[k] for k in ("model_weight", "model_min_probability",
                                                            "model_sure_ratio")}), tried


def evaluate(district: District, unseen: Sequence[Appeal], *, do_tune: bool = False,
             more_held_out: Mapping[str, Sequence[Appeal]] | None = None, unseen_name: str = UNSEEN.stem) -> Report:
    """Every figure of the report (pure: no servers, no files written).

    ``unseen`` is the first held-out set (``held_out``, the arrival curve, the timings);
    ``more_held_out`` the further sets by file stem, each measured like it."""
    examples = text_model.unit_examples(district)
    tried: list[dict] = []
    if do_tune:
        district, tried = tune(district, examples)
    cv_total, per_fold = cross_validate(district, examples)
    sets = {name: appeals for name, appeals in {unseen_name: unseen, **(more_held_out or {})}.items() if appeals}
    model = fit(district, examples, "held-out") if sets else None
    by_set = {name: {"appeals": len(appeals), **held_out_figures(district, appeals, model)}
              for name, appeals in sets.items()}
    held = None
    if unseen:
        held = {k: by_set[unseen_name][k] for k in ("with_model", "rules_only")}
    return Report(
        settings={"k": K, "seed": SEED, "examples": len(examples), "held_out_appeals": len(unseen),
                  "held_out_name": unseen_name,
                  "held_out_sets": {name: len(appeals) for name, appeals in sets.items()},
                  "model_weight": district.model_weight, "model_min_probability": district.model_min_probability,
                  "model_sure_ratio": district.model_sure_ratio,
                  "min_score": district.min_score, "min_margin": district.min_margin,
                  "config_hash": text_model.config_fingerprint(district)},
        cross_validation={"total": cv_total.as_dict(), "folds": [f.as_dict() for f in per_fold]},
        held_out=held,
        curve_folds=fold_curve(district, examples),
        curve_held_out=held_out_curve(district, examples, unseen) if unseen else [],
        timing=timing(district, examples, unseen),
        tuning=tried,
        held_out_sets=by_set,
    )


def _pct(x: float) -> str:
    return f"{100 * x:5.1f} %"


def render_table(report: Report) -> str:
    s = report.settings
    more = [f"{n} in {name}" for name, n in s.get("held_out_sets", {}).items() if name != s.get("held_out_name")]
    lines = [f"routing evaluation: {s['examples']} shipped examples, {s['held_out_appeals']} held-out appeals"
             f"{' (and ' + ', '.join(more) + ')' if more else ''}; "
             f"model_weight {s['model_weight']}, model_min_probability {s['model_min_probability']}, "
             f"model_sure_ratio {s.get('model_sure_ratio')}, "
             f"min_score {s['min_score']}, min_margin {s['min_margin']}", "",
             f"{'set':<34} {'appeals':>7} {'accuracy':>9} {'manual':>9} {'misrouted':>9}"]

    def row(name: str, f: dict) -> str:
        return (f"{name:<34} {f['appeals']:>7} {_pct(f['accuracy']):>9} {_pct(f['manual_share']):>9} "
                f"{_pct(f['misrouted_share']):>9}")

    lines.append(row(f"cross-validation ({s['k']} folds)", report.cross_validation["total"]))
    sets = report.held_out_sets or ({UNSEEN.stem: report.held_out} if report.held_out else {})
    for name, figures in sets.items():
        label = f"held-out {set_label(name)}".rstrip()
        lines.append(row(f"{label}, rules only", figures["rules_only"]))
        lines.append(row(f"{label}, rules + model", figures["with_model"]))
    lines += ["", "manual share as corrections accumulate (folds: share of the other folds' examples given):"]
    for p in report.curve_folds:
        lines.append(row(f"  {p['corrections_per_fold']:>3} corrections ({int(100 * p['share_of_examples'])} %)", p))
    if report.curve_held_out:
        lines += ["", "held-out appeals as they arrive (queued or misrouted ones become corrections):"]
        for p in report.curve_held_out:
            lines.append(row(f"  step {p['step']} ({p['corrections_before']} corrections before)", p))
    t = report.timing
    lines += ["", f"training on {t['examples']} examples: {t['training_ms']} ms; on a batch of {t['batch']}: "
                  f"model {t['predict_us_per_appeal']} µs, rules + model {t['route_us_per_appeal']} µs per appeal"]
    if report.tuning:
        lines.append(f"tuned on the folds over {len(report.tuning)} settings (the best accuracy with misrouted at "
                     f"most {int(100 * MISROUTED_TARGET)} points above the rules' own)")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    district = load_district(getattr(args, "config", None))
    # --unseen names one file to measure instead of every tests/data/unseen_appeals*.yaml
    paths = [Path(args.unseen)] if getattr(args, "unseen", None) else held_out_files()
    sets = load_held_out_sets(paths)
    first = paths[0].stem if paths else UNSEEN.stem
    unseen = sets.pop(first, [])
    report = evaluate(district, unseen, do_tune=getattr(args, "tune", False), more_held_out=sets, unseen_name=first)
    if args.format == "json":
        print(json.dumps(asdict(report), ensure_ascii=False, indent=2))
    else:
        print(render_table(report))
    return 0
