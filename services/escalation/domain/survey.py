"""Third-party survey (第三方测评): a survey firm's CSV of ratings, checked row by row.

:func:`parse_survey` reads the file (UTF-8, a BOM allowed; header ``appeal_id,
rating, comment, surveyor``, or the Chinese 诉求编号, 评价, 意见, 测评人) and
returns the rows and one :class:`RowError` per bad field, naming the line and
the field. The caller stores nothing unless there are no errors at all.
Ratings may be written in English or Chinese (满意, 基本满意, 不满意).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re

from pydantic import BaseModel, ConfigDict, Field

MAX_ROWS = 20_000
"""More rows than this in one file is refused (a survey month is a few hundred)."""

COLUMNS = ("appeal_id", "rating", "comment", "surveyor")
HEADER_ALIASES = {"诉求编号": "appeal_id", "评价": "rating", "满意度": "rating", "意见": "comment", "备注": "comment",
                  "测评人": "surveyor", "调查员": "surveyor"}
RATINGS = {"satisfied": "satisfied", "basically_satisfied": "basically_satisfied", "unsatisfied": "unsatisfied",
           "满意": "satisfied", "基本满意": "basically_satisfied", "不满意": "unsatisfied"}
APPEAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,39}$")


class RowError(BaseModel):
    """One bad field of the file: its line (1 is the header), the field and what is wrong."""

    model_config = ConfigDict(frozen=True)

    line: int = Field(description="Line of the file, 1 being the header.")
    field: str = Field(description="appeal_id, rating, comment, surveyor, or file.")
    message: str


class SurveyRow(BaseModel):
    """One valid row of the survey."""

    model_config = ConfigDict(frozen=True)

    line: int
    appeal_id: str
    rating: str = Field(description="satisfied, basically_satisfied or unsatisfied.")
    comment: str | None = None
    surveyor: str


def digest(data: bytes) -> str:
    """The file's SHA-256: importing the same file again for the same month is recognised by it."""
    return hashlib.sha256(data).hexdigest()


def _decode(data: bytes) -> str | RowError:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        return RowError(line=line, field="file", message=f"not UTF-8 (byte {exc.start})")
    if "\x00" in text:
        return RowError(line=text[:text.index("\x00")].count("\n") + 1, field="file", message="NUL character")
    return text


def parse_survey(data: bytes) -> tuple[list[SurveyRow], list[RowError]]:
    """The rows of a survey file and the errors of its bad rows (an empty file or header is an error too)."""
    text = _decode(data)
    if isinstance(text, RowError):
        return [], [text]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return [], [RowError(line=1, field="file", message="empty: expected the header appeal_id,rating,comment,surveyor")]
    except csv.Error as exc:
        return [], [RowError(line=1, field="file", message=f"not CSV: {exc}")]
    names = [HEADER_ALIASES.get(h.strip(), h.strip().lower()) for h in header]
    missing = [c for c in COLUMNS if c not in names and c != "comment"]
    if missing or len(set(names)) != len(names):
        problem = f"missing {', '.join(missing)}" if missing else "a column is named twice"
        return [], [RowError(line=1, field="file", message=f"header: {problem} (expected {','.join(COLUMNS)})")]
    rows: list[SurveyRow] = []
    errors: list[RowError] = []
    first_line: dict[str, int] = {}
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(line=reader.line_num, field="file", message=f"not CSV: {exc}"))
            break
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue  # blank lines are not rows
        if len(rows) + len(errors) >= MAX_ROWS:
            errors.append(RowError(line=line, field="file", message=f"more than {MAX_ROWS} rows"))
            break
        if len(values) != len(names):
            errors.append(RowError(line=line, field="file", message=f"{len(values)} fields, the header has {len(names)}"))
            continue
        row, row_errors = _row(line, dict(zip(names, (v.strip() for v in values), strict=True)), first_line)
        errors.extend(row_errors)
        if row is not None:
            rows.append(row)
    return rows, errors


def _row(line: int, cells: dict[str, str], first_line: dict[str, int]) -> tuple[SurveyRow | None, list[RowError]]:
    errors = []
    appeal_id, rating, surveyor = cells["appeal_id"], cells["rating"], cells["surveyor"]
    comment = cells.get("comment") or None
    if not appeal_id:
        errors.append(RowError(line=line, field="appeal_id", message="required"))
    elif not APPEAL_ID.match(appeal_id):
        errors.append(RowError(line=line, field="appeal_id", message="not an appeal id (letters, digits, - . : _; up to 40)"))
    elif appeal_id in first_line:
        errors.append(RowError(line=line, field="appeal_id", message=f"already rated on line {first_line[appeal_id]}"))
    else:
        first_line[appeal_id] = line
    if rating.lower() not in RATINGS and rating not in RATINGS:
        errors.append(RowError(line=line, field="rating", message=f"{rating!r}: expected satisfied, basically_satisfied "
                                                                  "or unsatisfied (满意, 基本满意, 不满意)"))
    if not surveyor:
        errors.append(RowError(line=line, field="surveyor", message="required"))
    elif len(surveyor) > 200:
        errors.append(RowError(line=line, field="surveyor", message="longer than 200 characters"))
    if comment is not None and len(comment) > 2000:
        errors.append(RowError(line=line, field="comment", message="longer than 2000 characters"))
    for name, value in (("appeal_id", appeal_id), ("surveyor", surveyor), ("comment", comment or "")):
        if any(ord(c) < 32 and c not in "\t\n" for c in value):
            errors.append(RowError(line=line, field=name, message="control character"))
    if errors:
        return None, errors
    return SurveyRow(line=line, appeal_id=appeal_id, rating=RATINGS.get(rating.lower(), RATINGS.get(rating, "")),
                     comment=comment, surveyor=surveyor), []
