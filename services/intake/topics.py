"""Hot topics (热点研判, 每月一题): the month's themes, their growth, repeated appeals, the next event's theme.

Pure analysis: the appeals of the month and of the ``months_back`` months before
it come in as :class:`TopicAppeal` rows, a :class:`TopicsReport` goes out; no
I/O, no clock, no global random state (every estimator has a fixed seed), so the
same appeals always give the same report.

- **Categories**: appeals per category in the month (the routed category when
  dispatch routed the appeal, else the sender's hint, else 其他), their share,
  and their growth against the mean of the previous months.
- **Text themes** (文本聚类): TF-IDF over character 2- and 3-grams, then
  agglomerative clustering (average linkage, cosine distance) of the month's
  appeals with a distance threshold, across categories. A theme's label is its
  most characteristic n-grams (its centroid's weight above the month's mean),
  overlapping n-grams joined back into the phrase they came from. An earlier
  appeal belongs to a theme when its mean cosine similarity to the theme's
  appeals reaches ``1 - theme_distance``: the test average linkage applies when
  it merges, so growth counts what the clustering would have grouped. Above
  ``direct_limit`` appeals a month, the appeals are first reduced (truncated
  SVD) and grouped into micro-clusters (mini-batch k-means), and the micro-
  clusters are clustered the same way.
- **Repeated appeals** (重复诉求): appeals of one theme whose pairwise cosine
  similarity reaches ``repeat_similarity``, linked into groups; a group of
  ``min_repeats`` or more across the window, at least one of them this month, is
  reported with its ids, by one enterprise or by several.
- **The proposal** (每月一题): the theme with the best
  ``(size + repeat_weight × repeated) × (1 + growth⁺)`` (see :data:`FORMULA`).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy import sparse

from shared.logs import mask_text
from shared.months import month_bounds, month_of, shift_month

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")  # no daylight saving since 1991
OTHER = "其他"
PRAISE = "praise"

Format = Literal["table", "json", "csv"]
FORMATS: tuple[Format, ...] = ("table", "json", "csv")

FORMULA = ("score = (size + repeat_weight × repeated) × (1 + growth⁺): size = the theme's appeals this month; "
           "repeated = those of them in a group of repeated appeals; growth⁺ = growth against the mean of the "
           "previous months, negative counted as 0, capped at growth_cap, a theme new this month counted as "
           "new_growth. Praise (表扬) is counted in its category, never in a theme")

#: characters that begin or end no label (particles, pronouns, adverbs of degree)
EDGE_CHARS = frozenset("的了在和与是也都又还就被把给对从到很太要我你他她它这那个吗呢吧啊")

#: words of almost every appeal (hopes, requests, who is asking): never a theme's label
BOILERPLATE = frozenset("""
希望 建议 我们 我司 公司 企业 反映 问题 解决 帮助 相关 部门 目前 能否 是否 请求 情况 影响 导致 没有 已经 非常
现在 一直 需要 要求 尽快 及时 处理 协调 政府 有关 你们 他们 这个 那个 一些 很多 比较 不能 不是 可以 进行 出现
存在 关于 以及 因为 所以 但是 如果 或者 还是 就是 什么 怎么 为什么 多次 咨询 了解 联系 电话 麻烦 谢谢 请问
员工 职工
""".split())


# --- months ---------------------------------------------------------------------------


def window(month: str, months_back: int) -> tuple[datetime, datetime]:
    """[start, end) of the analysis: ``months_back`` months before ``month``, and ``month``."""
    return month_bounds(shift_month(month, -months_back))[0], month_bounds(month)[1]


# --- inputs and settings --------------------------------------------------------------


@dataclass(frozen=True)
class TopicAppeal:
    """One appeal as the analysis sees it."""

    appeal_id: str
    content: str
    received_at: datetime
    category: str = OTHER
    enterprise_key: str | None = None  # the credit code, else the contact phone: who raised it
    kind: str = "appeal"


@dataclass(frozen=True)
class TopicSettings:
    """The analysis' parameters (the report carries them, so a figure can be reproduced)."""

    months_back: int = 3
    theme_distance: float = 0.92  # average-linkage cosine distance below which appeals are one theme
    repeat_similarity: float = 0.35  # cosine similarity from which two appeals are "the same matter"
    min_theme_size: int = 2  # themes with fewer appeals this month are not listed
    min_repeats: int = 3  # appeals a repeated group needs (重复诉求: three times or more)
    repeat_weight: float = 2.0
    growth_cap: float = 3.0
    new_growth: float = 1.0
    max_themes: int = 30  # themes listed (by score); the proposal is chosen among all
    supporting: int = 20  # supporting appeals listed with the proposal
    summary_chars: int = 40
    direct_limit: int = 3000  # above this many appeals a month: SVD and micro-clusters first
    components: int = 64
    micro_clusters: int = 1000

    def as_dict(self) -> dict[str, float | int]:
        return dict(vars(self))


# --- the report -----------------------------------------------------------------------


class Growth(BaseModel):
    """A count this month against the months before."""

    count: int = Field(description="Appeals this month.")
    previous: list[int] = Field(description="Appeals in each previous month, oldest first.")
    previous_mean: float = Field(description="The mean of `previous`.")
    growth: float | None = Field(description="(count - previous_mean) / previous_mean; null when previous_mean is 0.")
    new: bool = Field(description="Nothing in the previous months, something this month.")


class CategoryTheme(Growth):
    """One category's appeals this month and before."""

    category: str
    share: float = Field(description="Of this month's appeals.")


class CategoryCount(BaseModel):
    category: str
    count: int


class TextTheme(Growth):
    """A cluster of similar appeals this month (文本聚类), across categories."""

    theme_id: str = Field(description="T01, T02, ... by score.")
    label: str = Field(description="Its most characteristic terms, joined with 、.")
    terms: list[str]
    share: float = Field(description="Of this month's appeals.")
    main_category: str
    categories: list[CategoryCount] = Field(description="This month's appeals of the theme by category, most first.")
    enterprises: int = Field(description="Distinct enterprises (credit code, else phone) this month.")
    repeated: int = Field(description="This month's appeals of the theme that are in a repeated group.")
    score: float = Field(description="See `formula`.")
    appeal_ids: list[str] = Field(description="This month's appeals, most typical first.")


class RepeatedGroup(BaseModel):
    """Similar appeals raised three times or more in the window (重复诉求)."""

    group_id: str = Field(description="R01, R02, ... largest first.")
    count: int
    in_month: int = Field(description="How many of them this month.")
    enterprises: int = Field(description="Distinct enterprises that raised it.")
    most_by_one_enterprise: int = Field(description="The most times one enterprise raised it.")
    same_enterprise: bool = Field(description="One enterprise raised it `min_repeats` times or more.")
    theme_id: str | None = Field(description="The listed theme it belongs to, if listed.")
    category: str = Field(description="The most frequent category of its appeals.")
    summary: str = Field(description="Its most typical appeal, shortened, phones masked.")
    first_at: datetime
    last_at: datetime
    appeal_ids: list[str] = Field(description="Oldest first.")


class SupportingAppeal(BaseModel):
    appeal_id: str
    received_at: datetime
    category: str
    repeated: bool = Field(description="In a repeated group.")
    summary: str = Field(description="The appeal shortened, phones masked.")


class Proposal(BaseModel):
    """The proposed theme of the next coffee event (每月一题) and the appeals behind it."""

    basis: Literal["theme", "category"] = Field(description="A text theme; a category when no theme qualifies.")
    theme_id: str | None
    title: str = Field(description="Category and label, e.g. `交通出行：左转车道、高峰`.")
    category: str
    score: float
    why: str = Field(description="The figures behind it, in Chinese.")
    supporting: list[SupportingAppeal]


class TopicsReport(BaseModel):
    """Hot topics of a month (热点研判): categories, text themes, repeated appeals, the proposed theme."""

    month: str = Field(description="YYYY-MM (Asia/Shanghai).")
    previous_months: list[str] = Field(description="The months compared with, oldest first.")
    appeals: int = Field(description="Appeals received this month.")
    previous_appeals: list[int] = Field(description="Appeals received in each previous month, oldest first.")
    formula: str
    settings: dict[str, float | int]
    categories: list[CategoryTheme] = Field(description="Most appeals first.")
    themes: list[TextTheme] = Field(description="Best score first; themes below `min_theme_size` left out.")
    repeated: list[RepeatedGroup]
    proposal: Proposal | None = Field(description="None when the month has no appeals.")


# --- text -----------------------------------------------------------------------------

_NOT_WORD = re.compile(r"[\W\d_]+")
_SPACE = re.compile(r"\s+")
_BOILERPLATE = re.compile("|".join(sorted(map(re.escape, BOILERPLATE), key=len, reverse=True)))


def normalise(text: str) -> str:
    """Lower case; boilerplate words and every run of punctuation, digits or space one space.

    So n-grams never cross a sentence or a boilerplate word, and no label is made of them.
    """
    return _SPACE.sub(" ", _BOILERPLATE.sub(" ", _NOT_WORD.sub(" ", text.lower()))).strip()


def summary(text: str, chars: int) -> str:
    """The text on one line, at most ``chars`` characters, mobile numbers masked."""
    line = mask_text(_SPACE.sub(" ", text).strip())
    return line if len(line) <= chars else line[: chars - 1] + "…"


def growth_of(count: int, previous: Sequence[int]) -> dict:
    """``count`` against the mean of ``previous`` (the fields of :class:`Growth`)."""
    mean = sum(previous) / len(previous) if previous else 0.0
    return {"count": count, "previous": list(previous), "previous_mean": round(mean, 3),
            "growth": round((count - mean) / mean, 4) if mean > 0 else None, "new": mean == 0 and count > 0}


def score_of(size: int, repeated: int, growth: float | None, new: bool, s: TopicSettings) -> float:
    """:data:`FORMULA`."""
    g = s.new_growth if new else min(max(growth or 0.0, 0.0), s.growth_cap)
    return round((size + s.repeat_weight * repeated) * (1 + g), 3)


# --- the analysis ---------------------------------------------------------------------


@dataclass
class _Theme:
    members: list[int]  # indices into the month's appeals, most typical first
    previous: list[int]  # indices into the earlier appeals
    terms: list[str]
    key: str = ""  # the smallest appeal id: a stable tie-breaker


def analyse(appeals: Sequence[TopicAppeal], month: str, settings: TopicSettings | None = None) -> TopicsReport:
    """The hot topics of ``month`` from the appeals of the month and the ``settings.months_back`` before it."""
    s = settings or TopicSettings()
    if s.months_back < 1:
        raise ValueError("months_back must be at least 1")
    previous_months = [shift_month(month, -k) for k in range(s.months_back, 0, -1)]
    slot = {m: i for i, m in enumerate(previous_months)}
    ordered = sorted(appeals, key=lambda a: (a.received_at, a.appeal_id))
    current = [a for a in ordered if month_of(a.received_at) == month]
    earlier = [a for a in ordered if month_of(a.received_at) in slot]
    earlier_slot = [slot[month_of(a.received_at)] for a in earlier]
    previous_totals = [earlier_slot.count(i) for i in range(s.months_back)]

    categories = _categories(current, earlier, earlier_slot, s.months_back)
    # themes and repeated appeals are matters to solve: praise (表扬) is counted in its category only
    topical = [a for a in current if a.kind != PRAISE]
    before = [(a, k) for a, k in zip(earlier, earlier_slot, strict=True) if a.kind != PRAISE]
    topical_before, before_slot = [a for a, _ in before], [k for _, k in before]
    themes, vectors = _themes(topical, topical_before, s)
    groups, in_group = _repeated(topical, topical_before, themes, vectors, s)

    text_themes: list[TextTheme] = []
    for t in themes:
        if len(t.members) < s.min_theme_size:
            continue
        previous = [0] * s.months_back
        for j in t.previous:
            previous[before_slot[j]] += 1
        g = growth_of(len(t.members), previous)
        repeated = sum(1 for i in t.members if ("m", i) in in_group)
        by_category = Counter(topical[i].category for i in t.members)
        cats = sorted(by_category.items(), key=lambda kv: (-kv[1], kv[0]))
        text_themes.append(TextTheme(
            theme_id="", label="、".join(t.terms), terms=t.terms, share=round(len(t.members) / len(current), 4),
            main_category=cats[0][0], categories=[CategoryCount(category=c, count=n) for c, n in cats],
            enterprises=len({topical[i].enterprise_key or topical[i].appeal_id for i in t.members}),
            repeated=repeated, score=score_of(len(t.members), repeated, g["growth"], g["new"], s),
            appeal_ids=[topical[i].appeal_id for i in t.members], **g,
        ))
    order = sorted(range(len(text_themes)),
                   key=lambda k: (-text_themes[k].score, -text_themes[k].count, text_themes[k].appeal_ids[0]))
    text_themes = [text_themes[k] for k in order]
    for n, t in enumerate(text_themes, 1):
        t.theme_id = f"T{n:02d}"
    theme_of_appeal = {aid: t.theme_id for t in text_themes for aid in t.appeal_ids}
    for g in groups:
        g.theme_id = next((theme_of_appeal[a] for a in g.appeal_ids if a in theme_of_appeal), None)

    month_ids = {a.appeal_id for a in current}
    repeated_ids = {a for g in groups for a in g.appeal_ids if a in month_ids}
    proposal = _proposal(current, text_themes, categories, repeated_ids, s)
    return TopicsReport(
        month=month, previous_months=previous_months, appeals=len(current), previous_appeals=previous_totals,
        formula=FORMULA, settings=s.as_dict(), categories=categories, themes=text_themes[: s.max_themes],
        repeated=groups, proposal=proposal,
    )


def _categories(current: list[TopicAppeal], earlier: list[TopicAppeal], earlier_slot: list[int],
                months_back: int) -> list[CategoryTheme]:
    now = Counter(a.category for a in current)
    before: dict[str, list[int]] = defaultdict(lambda: [0] * months_back)
    for a, k in zip(earlier, earlier_slot, strict=True):
        before[a.category][k] += 1
    names = sorted(set(now) | set(before), key=lambda c: (-now[c], -sum(before[c]), c))
    total = len(current)
    return [CategoryTheme(category=c, share=round(now[c] / total, 4) if total else 0.0,
                          **growth_of(now[c], before[c])) for c in names]


def _vectorise(texts: list[str]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 2), min_df=1, sublinear_tf=True,
                                 dtype=np.float32, preprocessor=normalise)
    return vectorizer, vectorizer.fit_transform(texts)


def _themes(current: list[TopicAppeal], earlier: list[TopicAppeal], s: TopicSettings):
    """The month's appeals clustered, each earlier appeal assigned to the theme it would have joined (or none);
    and the TF-IDF rows of the month's appeals, then the earlier ones."""
    n = len(current)
    if n == 0:
        return [], None
    texts = [a.content for a in current] + [a.content for a in earlier]
    if not any(normalise(t) for t in texts):
        return [_Theme(members=list(range(n)), previous=[], terms=[], key=current[0].appeal_id)], None
    vectorizer, x_all = _vectorise(texts)
    x, x_before = x_all[:n], x_all[n:]
    if n == 1:
        labels = np.zeros(1, dtype=int)
    elif n <= s.direct_limit:
        labels = _agglomerate(x, s.theme_distance)
    else:
        labels = _micro_then_agglomerate(x, s)
    k = int(labels.max()) + 1
    member = sparse.csr_matrix((np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(k, n))
    sizes = np.asarray(member.sum(axis=1)).ravel()
    centroids = sparse.diags(1 / sizes).astype(np.float32) @ member @ x  # mean of unit rows, not normalised
    typical = np.asarray((x.multiply(centroids[labels])).sum(axis=1)).ravel()

    # earlier appeals: the theme whose appeals they are, on average, closest to, if close enough
    assigned = np.full(x_before.shape[0], -1)
    for start in range(0, x_before.shape[0], 2000):
        sims = (x_before[start:start + 2000] @ centroids.T).toarray()
        if sims.size:
            best = sims.argmax(axis=1)
            ok = sims[np.arange(len(best)), best] >= 1 - s.theme_distance
            assigned[start:start + len(best)] = np.where(ok, best, -1)

    vocabulary = vectorizer.get_feature_names_out()
    present = (x > 0).astype(np.float32)
    total = np.asarray(present.sum(axis=0)).ravel()
    having = member @ present  # per theme: how many of its appeals contain each n-gram
    themes = []
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.lexsort((idx, -typical[idx]))]  # most typical first, ties by arrival
        terms: list[str] = []
        if len(idx) >= 2:
            inside = having[c].toarray().ravel()
            outside = (total - inside) / max(n - len(idx), 1)
            terms = _label(inside / len(idx), outside, vocabulary, [current[i].content for i in idx])
        if not terms:
            terms = [summary(current[int(idx[0])].content, 16)]
        themes.append(_Theme(members=[int(i) for i in idx], previous=[int(j) for j in np.flatnonzero(assigned == c)],
                             terms=terms, key=min(current[int(i)].appeal_id for i in idx)))
    return themes, (x_all, vocabulary)


def _agglomerate(x, distance: float) -> np.ndarray:
    """Average-linkage clusters of the unit rows ``x`` under ``distance`` (cosine); numbered by first appearance."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    if x.shape[0] == 1:
        return np.zeros(1, dtype=int)
    d = 1.0 - (x @ x.T).toarray().astype(np.float64)
    np.fill_diagonal(d, 0.0)
    raw = fcluster(linkage(squareform(np.clip(d, 0.0, 2.0), checks=False), method="average"),
                   t=distance, criterion="distance")
    _, first = np.unique(raw, return_index=True)
    renumber = {raw[i]: r for r, i in enumerate(sorted(first))}
    return np.array([renumber[v] for v in raw])


def _micro_then_agglomerate(x, s: TopicSettings) -> np.ndarray:
    """Large months: micro-clusters first (mini-batch k-means on an SVD of the rows), then average linkage.

    The micro-clusters are merged with the average linkage of their appeals: the
    similarity of two groups is the dot product of their mean TF-IDF rows, which
    is what average linkage over the appeals themselves would compute, so the
    threshold means the same as on a small month. Only the micro-clusters are an
    approximation (appeals k-means put together stay together).
    """
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    reduced = normalize(TruncatedSVD(n_components=min(s.components, x.shape[1] - 1), n_iter=3, random_state=0)
                        .fit_transform(x))
    k = min(s.micro_clusters, len(reduced) // 4)
    # random (seeded) initial centres: k-means++ over 1,500 centres took longer than everything else together
    micro = MiniBatchKMeans(n_clusters=k, init="random", random_state=0, n_init=1, batch_size=4096, max_iter=50,
                            max_no_improvement=5).fit(reduced).labels_
    used, micro = np.unique(micro, return_inverse=True)
    m = len(used)
    member = sparse.csr_matrix((np.ones(len(micro), dtype=np.float32), (micro, np.arange(len(micro)))),
                               shape=(m, len(micro)))
    sizes = np.asarray(member.sum(axis=1)).ravel()
    means = sparse.diags(1 / sizes).astype(np.float32) @ member @ x
    merged = _weighted_average_linkage(1 - (means @ means.T).toarray(), sizes, s.theme_distance)
    raw = merged[micro]
    _, first = np.unique(raw, return_index=True)
    renumber = np.empty(raw.max() + 1, dtype=int)
    renumber[raw[np.sort(first)]] = np.arange(len(first))
    return renumber[raw]


def _weighted_average_linkage(distance: np.ndarray, sizes: np.ndarray, threshold: float) -> np.ndarray:
    """Average linkage (UPGMA) of groups that already hold ``sizes`` items each, stopped at ``threshold``.

    Lance-Williams with the groups' sizes as weights; the closest pair is merged
    first, the lowest indices on a tie. Returns a label per group.
    """
    d = distance.astype(np.float64, copy=True)
    np.fill_diagonal(d, np.inf)
    n = sizes.astype(np.float64, copy=True)
    label = np.arange(len(d))
    alive = np.ones(len(d), dtype=bool)
    while alive.sum() > 1:
        flat = int(np.argmin(d))
        i, j = divmod(flat, len(d))
        if not d[i, j] < threshold:
            break
        i, j = min(i, j), max(i, j)
        row = (n[i] * d[i] + n[j] * d[j]) / (n[i] + n[j])
        d[i, :] = row
        d[:, i] = row
        d[i, i] = np.inf
        d[j, :] = np.inf
        d[:, j] = np.inf
        n[i] += n[j]
        alive[j] = False
        label[label == j] = i
    return label


def _label(inside: np.ndarray, outside: np.ndarray, vocabulary: np.ndarray, texts: list[str],
           top: int = 3) -> list[str]:
    """The theme's most characteristic terms: n-grams in most of its appeals and few others, joined into phrases.

    ``inside`` and ``outside``: the share of the theme's appeals, and of the month's
    other appeals, that contain each n-gram.
    """
    lift = inside - outside
    candidates: list[str] = []
    for j in np.lexsort((-np.char.str_len(vocabulary.astype(str)), -lift)):
        if lift[j] <= 0.2 or inside[j] < 0.5 or len(candidates) >= 40:
            break
        if inside[j] * len(texts) < 2:  # a term of one appeal says nothing about the theme
            continue
        term = str(vocabulary[j])
        if " " in term or len(term) < 2 or term[0] in EDGE_CHARS or term[-1] in EDGE_CHARS:
            continue
        candidates.append(term)
    plain = [normalise(t) for t in texts]

    def share(phrase: str) -> float:
        return sum(phrase in t for t in plain) / len(plain)

    phrases: list[str] = []
    for term in candidates:
        grown = term
        changed = True
        while changed:  # join the n-grams overlapping it while the longer phrase is about as common
            changed = False
            for other in candidates:
                for merged in (_join(grown, other), _join(other, grown)):
                    if merged and merged != grown and len(merged) <= 8 and share(merged) >= 0.8 * share(grown):
                        grown, changed = merged, True
                        break
                if changed:
                    break
        if not any(grown in p for p in phrases):
            phrases = [p for p in phrases if p not in grown]
            phrases.append(grown)
        if len(phrases) >= top:
            break
    return phrases[:top]


def _join(a: str, b: str) -> str | None:
    """``a`` and ``b`` joined where the end of ``a`` is the start of ``b`` (at least one character)."""
    for k in range(min(len(a), len(b)) - 1, 0, -1):
        if a[-k:] == b[:k]:
            return a + b[k:]
    return None


def _repeated(current: list[TopicAppeal], earlier: list[TopicAppeal], themes: list[_Theme], vectors,
              s: TopicSettings) -> tuple[list[RepeatedGroup], set[tuple[str, int]]]:
    """Groups of ``min_repeats`` or more similar appeals within a theme, at least one of them this month."""
    from sklearn.preprocessing import normalize

    if not themes or vectors is None:
        return [], set()
    x_all, vocabulary = vectors
    n = len(current)
    # similarity over the character pairs only: single characters cost most of the products and tell matters
    # apart least (on tests/data/topic_appeals.yaml: repeated pairs 0.42-0.62, any other pair at most 0.39)
    pairs = np.array([len(t) == 2 and " " not in t for t in vocabulary])
    x_pairs = normalize(x_all[:, pairs])
    found: list[list[tuple[str, int]]] = []
    for t in themes:
        keys = [("m", i) for i in t.members] + [("p", j) for j in t.previous]
        if len(keys) < s.min_repeats:
            continue
        sub = x_pairs[[*t.members, *(n + j for j in t.previous)]]
        rows, cols = [], []
        for start in range(0, len(t.members), 2000):  # a group holds an appeal of this month: pairs with one
            block = (sub[start:min(start + 2000, len(t.members))] @ sub.T).tocoo()
            keep = (block.data >= s.repeat_similarity) & (block.row + start != block.col)
            rows.append(block.row[keep] + start)
            cols.append(block.col[keep])
        r, c = np.concatenate(rows), np.concatenate(cols)
        for group in _star_groups(r, c, len(keys)):
            members = [keys[i] for i in group]
            if len(members) >= s.min_repeats and any(kind == "m" for kind, _ in members):
                found.append(members)

    def appeal(key: tuple[str, int]) -> TopicAppeal:
        return current[key[1]] if key[0] == "m" else earlier[key[1]]

    groups = []
    in_group: set[tuple[str, int]] = set()
    for members in found:
        in_group.update(members)
        items = sorted((appeal(m) for m in members), key=lambda a: (a.received_at, a.appeal_id))
        by_enterprise = Counter(a.enterprise_key or a.appeal_id for a in items)
        most = max(by_enterprise.values())
        category = sorted(Counter(a.category for a in items).items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        typical = appeal(members[0]) if members[0][0] == "m" else items[-1]
        groups.append(RepeatedGroup(
            group_id="", count=len(items), in_month=sum(1 for k, _ in members if k == "m"),
            enterprises=len(by_enterprise), most_by_one_enterprise=most, same_enterprise=most >= s.min_repeats,
            theme_id=None, category=category, summary=summary(typical.content, s.summary_chars),
            first_at=items[0].received_at, last_at=items[-1].received_at, appeal_ids=[a.appeal_id for a in items]))
    groups.sort(key=lambda g: (-g.count, -g.in_month, g.appeal_ids[0]))
    for k, g in enumerate(groups, 1):
        g.group_id = f"R{k:02d}"
    return groups, in_group


def _star_groups(rows: np.ndarray, cols: np.ndarray, n: int) -> list[list[int]]:
    """Groups without chaining: the appeal similar to most others, with those not grouped yet; then again.

    Every appeal of a group is similar to its first (a chain a~b~c with a≁c is
    not one matter); ties go to the lower index, so the grouping is stable.
    """
    graph = sparse.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    graph = ((graph + graph.T) > 0).tocsr()
    degree = np.asarray(graph.sum(axis=1)).ravel()
    grouped = np.zeros(n, dtype=bool)
    groups = []
    for centre in np.lexsort((np.arange(n), -degree)):
        if grouped[centre] or degree[centre] == 0:
            continue
        others = [int(j) for j in graph.indices[graph.indptr[centre]:graph.indptr[centre + 1]] if not grouped[j]]
        if not others:
            continue
        group = [int(centre), *others]
        grouped[group] = True
        groups.append(group)
    return groups


def _proposal(current: list[TopicAppeal], themes: list[TextTheme], categories: list[CategoryTheme],
              repeated_ids: set[str], s: TopicSettings) -> Proposal | None:
    if not current:
        return None
    by_id = {a.appeal_id: a for a in current}

    def supporting(ids: list[str]) -> list[SupportingAppeal]:
        return [SupportingAppeal(appeal_id=i, received_at=by_id[i].received_at, category=by_id[i].category,
                                 repeated=i in repeated_ids, summary=summary(by_id[i].content, s.summary_chars))
                for i in ids[: s.supporting]]

    best = next((t for t in themes if t.score > 0), None)
    if best is not None:
        growth = "本月新出现" if best.new else (f"较前{s.months_back}个月月均{best.previous_mean:g}件"
                                            f"{'增长' if (best.growth or 0) >= 0 else '下降'}"
                                            f"{abs(best.growth or 0):.0%}")
        why = (f"本月{best.count}件（占{best.share:.0%}），{growth}；其中重复诉求{best.repeated}件，"
               f"涉及{best.enterprises}家企业；得分{best.score:g}。")
        return Proposal(basis="theme", theme_id=best.theme_id, title=f"{best.main_category}：{best.label}",
                        category=best.main_category, score=best.score, why=why,
                        supporting=supporting(best.appeal_ids))
    scored = []
    for c in categories:
        if c.count == 0:
            continue
        ids = [a.appeal_id for a in current if a.category == c.category and a.kind != PRAISE]
        if not ids:
            continue
        rep = sum(1 for i in ids if i in repeated_ids)
        scored.append((score_of(len(ids), rep, c.growth, c.new, s), c, ids, rep))
    if not scored:
        return None
    score, c, ids, rep = max(scored, key=lambda t: (t[0], t[1].count, -categories.index(t[1])))
    growth = "本月新出现" if c.new else f"前{s.months_back}个月月均{c.previous_mean:g}件"
    return Proposal(basis="category", theme_id=None, title=c.category, category=c.category, score=score,
                    why=f"本月{c.count}件（占{c.share:.0%}），{growth}；其中重复诉求{rep}件；得分{score:g}。",
                    supporting=supporting(ids))


# --- rendering ------------------------------------------------------------------------


CSV_COLUMNS = ("类型", "编号", "主题", "类别", "本月件数", "占比", "前期月均", "增长率", "新出现", "重复诉求件数",
               "得分", "诉求编号")
_SECTION = {"category": "类别", "theme": "文本主题", "repeated": "重复诉求", "proposal": "每月一题"}


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _cell(text: str) -> str:
    """A text cell Excel shows as text (never runs it as a formula)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def render(report: TopicsReport, fmt: Format) -> str:
    """The report as JSON, CSV (UTF-8 with a BOM, one header row: Excel opens it as it is) or a text table."""
    if fmt == "json":
        return report.model_dump_json(indent=2)
    if fmt == "csv":
        return _csv(report)
    if fmt == "table":
        return _table(report)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _csv(report: TopicsReport) -> str:
    out = io.StringIO()
    out.write("\ufeff")
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    yes = {True: "是", False: "否"}
    p = report.proposal
    if p is not None:
        w.writerow([_SECTION["proposal"], p.theme_id or "", _cell(p.title), _cell(p.category),
                    "", "", "", "", "", sum(a.repeated for a in p.supporting), p.score,
                    " ".join(a.appeal_id for a in p.supporting)])
    for c in report.categories:
        w.writerow([_SECTION["category"], "", _cell(c.category), _cell(c.category), c.count, _pct(c.share),
                    c.previous_mean, _pct(c.growth), yes[c.new], "", "", ""])
    for t in report.themes:
        w.writerow([_SECTION["theme"], t.theme_id, _cell(t.label), _cell(t.main_category), t.count, _pct(t.share),
                    t.previous_mean, _pct(t.growth), yes[t.new], t.repeated, t.score, " ".join(t.appeal_ids)])
    for g in report.repeated:
        w.writerow([_SECTION["repeated"], g.group_id, _cell(g.summary), _cell(g.category), g.in_month, "", "", "", "",
                    g.count, "", " ".join(g.appeal_ids)])
    return out.getvalue()


def _width(text: str) -> int:
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)  # CJK takes two columns in a terminal


def _pad(text: str, width: int) -> str:
    return text + " " * max(width - _width(text), 0)


def _grid(headers: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return ["(none)"]
    widths = [max([_width(h)] + [_width(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(_pad(h, w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(_pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines


def _table(report: TopicsReport) -> str:
    prev = "、".join(f"{m} {n}件" for m, n in zip(report.previous_months, report.previous_appeals, strict=True))
    lines = [f"热点研判 hot topics {report.month}: {report.appeals} 件 appeals (前期 previous: {prev})", ""]
    p = report.proposal
    lines.append("每月一题 proposed theme")
    if p is None:
        lines.append("  (none: no appeals this month)")
    else:
        lines += [f"  {p.title}  [{p.theme_id or p.basis}, score {p.score:g}]", f"  {p.why}"]
        lines += [f"  - {a.appeal_id}  {a.received_at.astimezone(SHANGHAI):%m-%d}  {a.category}  "
                  f"{'[重复] ' if a.repeated else ''}{a.summary}" for a in p.supporting]
    lines += ["", f"  {report.formula}", "", "类别 categories"]
    lines += ["  " + line for line in _grid(
        ["category", "count", "share", "prev mean", "growth", ""],
        [[c.category, str(c.count), _pct(c.share), f"{c.previous_mean:g}", _pct(c.growth), "new" if c.new else ""]
         for c in report.categories])]
    lines += ["", "文本主题 text themes"]
    lines += ["  " + line for line in _grid(
        ["id", "label", "category", "count", "prev mean", "growth", "repeated", "score"],
        [[t.theme_id, t.label, t.main_category, str(t.count), f"{t.previous_mean:g}",
          "new" if t.new else _pct(t.growth), str(t.repeated), f"{t.score:g}"] for t in report.themes])]
    lines += ["", "重复诉求 repeated appeals (3+)"]
    if not report.repeated:
        lines.append("  (none)")
    for g in report.repeated:
        who = "同一企业 one enterprise" if g.same_enterprise else f"{g.enterprises} 家企业 enterprises"
        lines.append(f"  {g.group_id}  {g.count}次 ({g.in_month} this month, {who})  {g.category}  {g.summary}")
        lines.append(f"       {' '.join(g.appeal_ids)}")
    return "\n".join(lines) + "\n"
