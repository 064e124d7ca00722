"""The routing model (文本模型): which unit the district's own past appeals say an appeal belongs to.

A statistical text model on top of the explicit rules (``routing.py``): TF-IDF
over character n-grams of 1 to 3 characters inside word boundaries
(``analyzer="char_wb"``; Chinese needs no word segmenter for this) and a
multinomial logistic regression. It is trained from

- the configuration's examples (``Unit.examples`` in ``shared/district.yaml``), and
- the lead unit's corrections, stored by dispatch (``routing_examples``): every
  manual dispatch, accepted return with a new unit and redispatch labels the
  appeal's content with the unit a person chose.

Training is a pure function of those examples: same examples, same model (the
solver is deterministic and ``random_state`` is fixed). So a replica that trains
the version named by :func:`model_version` has exactly the model every other
replica has under that name. Nothing is downloaded; the model lives in memory.

Measured on a 2-core machine (``coffeetime routing-eval`` prints the figures of
the shipped examples): training on a few hundred examples takes tens of
milliseconds; predicting a batch costs a few microseconds per appeal, because
:meth:`TextModel.suggest` vectorises the whole batch in one call.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from shared.district import District, UnitKind

CONFIG_SOURCE = "config"
"""The ``source`` of an example written in the district configuration."""
RULE_SOURCE = "rule"
"""The ``source`` of a routing rule's pseudo-example (see :func:`rule_examples`)."""

MODEL_C = 100.0
"""Inverse regularisation of the logistic regression: high, so that one correction of a new kind of appeal
is enough for its near-duplicates (measured with ``coffeetime routing-eval``: lower values need several)."""


@dataclass(frozen=True)
class LabelledExample:
    """An appeal's content and the unit that is right for it (a training example).

    ``example_id`` is the stored correction's id (None for the configuration's
    examples); ``appeal_id`` names the appeal a correction was about, so that the
    latest correction of an appeal supersedes its earlier ones.
    """

    content: str
    unit_code: str
    source: str = CONFIG_SOURCE
    example_id: int | None = None
    appeal_id: str | None = None


@dataclass(frozen=True)
class ModelSuggestion:
    """What the model says about one appeal: the probability of each unit, and the model's version."""

    version: str
    probabilities: Mapping[str, float] = field(default_factory=dict)

    def best(self, n: int = 3) -> list[tuple[str, float]]:
        """The n most probable units, best first (ties by unit code)."""
        return sorted(self.probabilities.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def unit_examples(district: District) -> list[LabelledExample]:
    """The configuration's example appeals of every unit that can hold work orders, in configuration order."""
    return [LabelledExample(text, u.unit_code) for u in district.units if u.kind != UnitKind.supervision
            for text in u.examples]


def rule_examples(district: District) -> list[LabelledExample]:
    """One short pseudo-example per routing rule: its keywords and areas, labelled with its unit.

    They give the model the vocabulary the rules were written in (measured with
    ``coffeetime routing-eval``: cross-validated top-1 accuracy of the model alone
    rises from about 50 % to about 57 % with them).
    """
    return [LabelledExample("、".join([*r.keywords, *r.areas]), r.unit, RULE_SOURCE) for r in district.routing
            if r.keywords or r.areas]


def config_examples(district: District) -> list[LabelledExample]:
    """Everything the configuration teaches the model: the units' examples, then the rules' pseudo-examples."""
    return [*unit_examples(district), *rule_examples(district)]


def config_fingerprint(district: District) -> str:
    """A content hash of what the configuration teaches the model (12 hex digits): it changes exactly when that does."""
    return training_digest(config_examples(district))[:12]


def model_version(district: District, last_example_id: int | None) -> str:
    """The version of the model trained on the configuration's examples and the stored ones up to ``last_example_id``.

    ``<config hash>-<last example id>``, e.g. ``3f9a0c1b2d4e-17``: a pure function
    of the training set, so replicas that name the same version hold the same model.
    """
    return f"{config_fingerprint(district)}-{last_example_id or 0}"


def training_set(district: District, stored: Iterable[LabelledExample]) -> list[LabelledExample]:
    """The examples a model is trained on: the configuration's, then the stored corrections.

    A later correction of the same appeal supersedes an earlier one (the lead unit
    changed its mind); corrections naming a unit the district no longer routes to
    are left out.
    """
    units = {u.unit_code for u in district.units if u.kind != UnitKind.supervision}
    latest: dict[str, LabelledExample] = {}
    loose: list[LabelledExample] = []
    for ex in sorted(stored, key=lambda e: e.example_id or 0):
        if ex.unit_code not in units or not ex.content.strip():
            continue
        if ex.appeal_id:
            latest[ex.appeal_id] = ex
        else:
            loose.append(ex)
    corrections = sorted([*latest.values(), *loose], key=lambda e: e.example_id or 0)
    return [*config_examples(district), *corrections]


@dataclass(frozen=True, eq=False)
class TextModel:
    """A trained routing model: ``suggest`` gives each appeal's probability per unit.

    ``units`` are the units it knows (those with at least one example);
    ``examples`` how many it was trained on.
    """

    version: str
    units: tuple[str, ...]
    examples: int
    _vectorizer: Any = field(repr=False)
    _classifier: Any = field(repr=False)

    def suggest(self, contents: Sequence[str]) -> list[ModelSuggestion]:
        """One suggestion per content, in order; the batch is vectorised at once (microseconds per appeal)."""
        if not contents:
            return []
        matrix = self._vectorizer.transform([c or "" for c in contents])
        rows = self._classifier.predict_proba(matrix)
        return [ModelSuggestion(self.version, {u: float(p) for u, p in zip(self.units, row, strict=True)})
                for row in rows]


TRAINED_KEPT = 4
"""Trained models kept per process, by training set: a restart of dispatch in the same process, or a second
dispatch in it (tests, the demo), reuses the model instead of training again (about 1.6 s for the shipped
examples on a 2-core machine)."""
_trained: OrderedDict[str, TextModel | None] = OrderedDict()
_trained_lock = threading.Lock()


def training_digest(examples: Sequence[LabelledExample], salt: str = "") -> str:
    """A content hash of a training set (labels and texts, in order; ``salt``: anything else the model depends on)."""
    digest = hashlib.sha256(salt.encode())
    for ex in examples:
        digest.update(f"{ex.unit_code}\x1f{ex.content}\x1e".encode())
    return digest.hexdigest()


def train(examples: Sequence[LabelledExample], version: str, *, c: float = MODEL_C,
          reuse: bool = True) -> TextModel | None:
    """Train the routing model on ``examples`` and call it ``version``; None when fewer than two units have examples.

    Deterministic: the same examples in the same order give the same probabilities; so a model this process
    trained on the same examples before is reused (:data:`TRAINED_KEPT`), under the version asked for, unless
    ``reuse`` is false (measuring the training itself).
    """
    key = training_digest(examples, f"C={c!r}")
    with _trained_lock:
        if reuse and key in _trained:
            _trained.move_to_end(key)
            known = _trained[key]
            return replace(known, version=version) if known is not None else None
    model = _train(examples, version, c)
    _return_freed_memory()
    with _trained_lock:
        _trained[key] = model
        while len(_trained) > TRAINED_KEPT:
            _trained.popitem(last=False)
    return model


def _train(examples: Sequence[LabelledExample], version: str, c: float) -> TextModel | None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    labels = [e.unit_code for e in examples]
    if len(set(labels)) < 2:
        return None
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)
    matrix = vectorizer.fit_transform([e.content for e in examples])
    # tol 1e-3: a third of the training time of the default for the same cross-validated accuracy (routing-eval)
    classifier = LogisticRegression(C=c, tol=1e-3, max_iter=300, random_state=0)
    classifier.fit(matrix, labels)
    return TextModel(version, tuple(str(u) for u in classifier.classes_), len(examples), vectorizer, classifier)


def _return_freed_memory() -> None:
    """Hand the heap the training freed back to the system (glibc keeps it otherwise).

    Measured with the shipped examples (1,061 examples, 45,142 n-gram features, 23 units): the
    resident set after training falls from 193 to 162 MB. The peak during training (about 435 MB)
    is L-BFGS's workspace for the 23 × 45,142 coefficients (about 25 doubles per coefficient,
    some 210 MB) on top of scikit-learn's and SciPy's import (about 105 MB).
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc only; elsewhere nothing to do
    except (OSError, AttributeError):
        return
    trim(0)
