"""Ratings (回访评价): the rating instructions sent with a reply, and reading the enterprise's SMS reply."""

from __future__ import annotations

import re
import unicodedata

from shared.contracts.common import Rating

RATING_INSTRUCTIONS: dict[str, str] = {
    "zh": "回复1满意，2基本满意，3不满意",
    "en": "reply 1 satisfied, 2 basically satisfied, 3 unsatisfied",
}


_UNSATISFIED = re.compile(r"不\S{0,3}满意|unsatisfied|dissatisfied|not\s+(?:\w+\s+){0,2}satisfied", re.I)
_BASIC = re.compile(r"基本满意|比较满意|还算满意|basically\s+satisfied|mostly\s+satisfied", re.I)
_SATISFIED = re.compile(r"满意|satisfied", re.I)
_DIGIT_RATING = {"1": Rating.satisfied, "2": Rating.basically_satisfied, "3": Rating.unsatisfied}
_NUMERAL_ONLY = {"一": Rating.satisfied, "二": Rating.basically_satisfied, "三": Rating.unsatisfied}


def parse_rating_reply(text: str | None) -> Rating | None:
    """The rating in an SMS reply, or ``None`` when it is absent or ambiguous.

    Understands the digits asked for (``1`` satisfied, ``2`` basically satisfied,
    ``3`` unsatisfied, full-width digits too), the words (``满意``, ``基本满意``,
    ``不满意``, and English) and both together (``3 不满意``). Digits and words that
    disagree (``1 不满意``), other numbers (``4``, ``12``) or several ratings give
    ``None``: the enterprise is then asked again rather than misread.
    """
    if not text:
        return None
    s = unicodedata.normalize("NFKC", text).strip()
    if not s:
        return None
    bare = s.strip(" .。!！,，、:：;；~～")
    if bare in _NUMERAL_ONLY:
        return _NUMERAL_ONLY[bare]
    found: set[Rating] = set()
    digit_runs = re.findall(r"\d+", s)
    if digit_runs:
        if len(digit_runs) != 1 or digit_runs[0] not in _DIGIT_RATING:
            return None
        found.add(_DIGIT_RATING[digit_runs[0]])
    rest = s
    for pattern, rating in ((_UNSATISFIED, Rating.unsatisfied), (_BASIC, Rating.basically_satisfied), (_SATISFIED, Rating.satisfied)):
        if pattern.search(rest):
            found.add(rating)
            rest = pattern.sub(" ", rest)
    return found.pop() if len(found) == 1 else None


def rating_invitation_text(lang: str = "zh") -> str:
    """The rating instructions sent with a reply: ``回复1满意，2基本满意，3不满意``."""
    return RATING_INSTRUCTIONS["en" if lang == "en" else "zh"]


def feedback_id_for_sms(message_id: str) -> str:
    """The ``feedback_id`` of a rating sent by SMS: ``sms-`` + the gateway's message id."""
    return f"sms-{message_id}"
