"""Duplicate appeals (重复诉求并单), pure: is a new appeal the same matter as an earlier one of its enterprise?

The rule. A new appeal is a likely duplicate of an earlier appeal (its *master*) when

- both come from the same enterprise: the same credit code when the new one gives
  one, else the same contact phone;
- the earlier one was received at most ``window_days`` before (open, or closed
  within the window: the master's reply then reaches the new caller at once);
- their categories agree where both are known (the sender's hint, or the
  category the earlier one was routed as); an unknown category does not object;
- neither is a consultation or praise (answered at once / nothing to handle);
- their texts are similar: :func:`similarity` at least ``min_similarity``.

The master is always a root: an earlier appeal that itself follows a master
hands its master on, so a chain A ← B ← C is stored as B → A, C → A. Of several
masters the most similar wins (the earliest on a tie), so the result is a
deterministic function of the appeals.

The similarity: Jaccard over the character pairs (bigrams) of the two texts,
after NFKC, without punctuation, digits, Latin letters and a short list of
polite filler (您好, 请问, 麻烦...). Measured on the realistic pairs in
``tests/unit/test_duplicates.py`` (eight repeated calls of one matter, eight
different matters of one enterprise, several of them on purpose about the same
place or the same fund): repeated calls score 0.30-0.46, different matters at
most 0.17, so the default threshold (``DUPLICATE_MIN_SIMILARITY``) is 0.25, in
the middle of the gap. Bigrams need no corpus, no fitting and no
tokenizer, and are the same for one pair whatever else is in the batch (a TF-IDF
weight would change with the batch, and two replicas would disagree).

Why the link travels as it does (the design). The events of one appeal arrive on
different consumers in any order, so intake tells dispatch in the registration
itself: ``ct.appeal.registered`` carries ``duplicate_of`` and ``similarity``, and
dispatch never routes the duplicate (no second order to the master's units); it
records it as following its master. ``ct.appeal.merged`` (master id, similarity)
says the same to everyone else: escalation stops any clock of the duplicate, the
timeline shows it. Every enterprise still hears on its own appeal id: the
receipt (``ct.appeal.registered``), the master's reply with the rating invitation
(dispatch publishes ``ct.appeal.follower_replied`` for each follower when the
master's lead order is replied), and the closing after its own rating. KPIs count
the master once: the follower holds no order and its closing names no unit.
A split (``ct.appeal.split``, ``POST /appeals/{appeal_id}/split``) undoes the
link; dispatch then routes the duplicate on its own, as if it had just arrived.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

#: kinds never merged: a consultation is answered at once, a praise needs no handling
NOT_MERGED_KINDS = frozenset({"consultation", "praise"})

#: polite filler and self-reference that every call shares and that tell matters apart not at all
FILLER = ("您好", "你好", "请问", "麻烦", "谢谢", "感谢", "我公司", "我们公司", "本公司", "我司", "我们", "你们",
          "一下", "希望", "能否", "能不能", "尽快", "帮忙", "反映", "咨询", "公司", "企业", "员工",
          "影响", "问题")

_DROP = re.compile(r"[\s\W\d_a-zA-Z]+", re.UNICODE)


@dataclass(frozen=True)
class DuplicateSettings:
    """How far back to look and how similar is similar (``DUPLICATE_WINDOW_DAYS``, ``DUPLICATE_MIN_SIMILARITY``)."""

    window_days: float = 30.0
    min_similarity: float = 0.25

    @property
    def enabled(self) -> bool:
        """A window of 0 days turns merging off."""
        return self.window_days > 0


@dataclass(frozen=True)
class Candidate:
    """An appeal already registered, as a possible master.

    ``master_appeal_id`` is set when it itself follows a master (and was not split).
    """

    appeal_id: str
    received_at: datetime
    content: str
    kind: str
    enterprise_uscc: str | None = None
    contact_phone: str | None = None
    category: str | None = None
    master_appeal_id: str | None = None


@dataclass(frozen=True)
class Match:
    """A duplicate's master and how similar their texts are."""

    master_appeal_id: str
    similarity: float


def normalise(text: str) -> str:
    """The text that is compared: NFKC, no filler, no punctuation, digits or Latin letters."""
    s = unicodedata.normalize("NFKC", text)
    for word in FILLER:
        s = s.replace(word, " ")
    return _DROP.sub(" ", s)


def bigrams(text: str) -> frozenset[str]:
    """The character pairs of a normalised text, never across a removed stretch; a lone character counts alone."""
    out: set[str] = set()
    for run in normalise(text).split():
        if len(run) == 1:
            out.add(run)
        out.update(run[i:i + 2] for i in range(len(run) - 1))
    return frozenset(out)


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' character pairs, 0 (nothing shared) to 1 (the same pairs)."""
    return _jaccard(bigrams(a), bigrams(b))


def _jaccard(x: frozenset[str], y: frozenset[str]) -> float:
    if not x or not y:
        return 0.0
    return len(x & y) / len(x | y)


def same_enterprise(uscc: str | None, phone: str | None, candidate: Candidate) -> bool:
    """The same credit code when the new appeal has one, else the same contact phone."""
    if uscc:
        return candidate.enterprise_uscc == uscc
    return bool(phone) and candidate.contact_phone == phone


def categories_agree(a: str | None, b: str | None) -> bool:
    """Both known and equal, or at least one unknown."""
    return a is None or b is None or a == b


def find_master(appeal: Candidate, earlier: Sequence[Candidate], settings: DuplicateSettings,
                known: Mapping[str, Candidate] | None = None) -> Match | None:
    """The master ``appeal`` repeats among ``earlier`` (other appeals, any order), or None.

    ``appeal`` is the new appeal described as a candidate (its category: the hint's).
    Only appeals received before it (or at the same instant with a smaller id)
    within the window count; the master returned is a root (see the module docstring).
    ``known`` finds the roots the candidates follow (default: ``earlier`` itself), so
    ``earlier`` may be only the appeals of the new one's enterprise.
    """
    if not settings.enabled or appeal.kind in NOT_MERGED_KINDS:
        return None
    since = appeal.received_at - timedelta(days=settings.window_days)
    by_id = known if known is not None else {c.appeal_id: c for c in earlier}
    mine: frozenset[str] | None = None  # the new text's bigrams, once the first candidate gets this far
    best: tuple[float, datetime, str] | None = None
    for c in earlier:
        if c.appeal_id == appeal.appeal_id or c.kind in NOT_MERGED_KINDS:
            continue
        if not (since <= c.received_at and (c.received_at, c.appeal_id) < (appeal.received_at, appeal.appeal_id)):
            continue
        if not same_enterprise(appeal.enterprise_uscc, appeal.contact_phone, c):
            continue
        if not categories_agree(appeal.category, c.category):
            continue
        if mine is None:
            mine = bigrams(appeal.content)
        score = _jaccard(mine, bigrams(c.content))
        if score < settings.min_similarity:
            continue
        root = c.master_appeal_id or c.appeal_id
        if root != c.appeal_id and root in by_id and not categories_agree(appeal.category, by_id[root].category):
            continue
        key = (-score, c.received_at, root)
        if best is None or key < best:
            best = key
    if best is None:
        return None
    return Match(master_appeal_id=best[2], similarity=round(-best[0], 3))


def match_batch(new: Sequence[Candidate], earlier: Sequence[Candidate],
                settings: DuplicateSettings) -> dict[str, Match]:
    """The masters of a batch of new appeals: {appeal_id: match} for the duplicates among them.

    ``earlier`` is what was registered before (from one query for the whole batch);
    the batch's own appeals are masters for the later ones of the same batch, so
    three calls about one matter in one batch make one master and two duplicates.
    """
    known: dict[str, Candidate] = {}
    # the appeal ids of each credit code and each phone: a new appeal is compared with its enterprise's only
    # (one pass over the whole batch per appeal made a batch of 200 cost 90 µs an appeal, now 2)
    by_uscc: dict[str, dict[str, None]] = {}
    by_phone: dict[str, dict[str, None]] = {}

    def keep(c: Candidate) -> None:
        known[c.appeal_id] = c
        if c.enterprise_uscc:
            by_uscc.setdefault(c.enterprise_uscc, {})[c.appeal_id] = None
        if c.contact_phone:
            by_phone.setdefault(c.contact_phone, {})[c.appeal_id] = None

    for c in earlier:
        keep(c)
    found: dict[str, Match] = {}
    for appeal in sorted(new, key=lambda c: (c.received_at, c.appeal_id)):
        ids = (by_uscc.get(appeal.enterprise_uscc) if appeal.enterprise_uscc
               else by_phone.get(appeal.contact_phone) if appeal.contact_phone else None)
        # known[i]: the latest candidate under that id (find_master checks its enterprise again)
        match = find_master(appeal, [known[i] for i in ids or ()], settings, known)
        if match is not None:
            found[appeal.appeal_id] = match
        keep(Candidate(**{**appeal.__dict__, "master_appeal_id": match.master_appeal_id if match else None}))
    return found


# --- splitting (拆单) --------------------------------------------------------------------


@dataclass(frozen=True)
class DuplicateLink:
    """An appeal's link to its master as intake keeps it (none: ``master_appeal_id`` is None)."""

    appeal_id: str
    source_ref: str
    master_appeal_id: str | None = None
    similarity: float | None = None
    split_at: datetime | None = None
    split_by: str | None = None


SplitOutcome = str
"""``split`` (now), ``already_split``, ``not_a_duplicate`` or ``closed``."""


def split_outcome(link: DuplicateLink, status: str) -> SplitOutcome:
    """Whether a split of ``link`` applies, given the appeal's status (from its timeline).

    A split is idempotent: a second one finds it ``already_split`` and changes
    nothing. An appeal that never followed a master cannot be split, nor one
    that is closed (its enterprise has rated the master's reply: it is finished).
    """
    if link.master_appeal_id is None:
        return "not_a_duplicate"
    if link.split_at is not None:
        return "already_split"
    if status == "closed":
        return "closed"
    return "split"
