"""Bad input, in process: the bus's parse path (``shared.bus.parse_message``) on every inbound subject.

Two rings. Each input found from outside to end in the dead-letter stream (invalid
UTF-8, NUL bytes, lone surrogates, malformed times...) is a named test below. Then
hypothesis drives ``FUZZ_EXAMPLES`` (default 10,000) messages built from the contract
models' own fields through the same function the consumers call, and asserts that each
gives a valid model or a non-empty list of field errors, never an exception, and that
whatever comes out can be stored and echoed (no NUL, no lone surrogate, UTF-8 always).
The same strategies feed the integration test on the real servers (tests/integration/test_fuzz.py).
"""

from __future__ import annotations

import functools
import json
import os
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from nats.aio.msg import Msg
from pydantic import BaseModel

from shared.bus import Delivery, parse_body, parse_message
from shared.contracts import AppealQuery, AppealRejected, AppealStatus, HotlineCall, subjects
from shared.contracts.common import check_text, normalize_phone, printable, uscc_check_character
from shared.contracts.inbound import UNIT_COMMANDS, EventItem
from shared.contracts.subjects import INBOUND, contract_for

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10000"))
UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
ACTIONS = [c.action_name() for c in UNIT_COMMANDS]


# --- strategies from the contract models --------------------------------------------------------------

def a_uscc(n: int) -> str:
    first17 = "915101" + f"{n:011d}"[-11:]
    return first17 + uscc_check_character(first17)


def _now() -> datetime:
    return datetime.now(UTC)


#: a valid value of each field the inbound contracts have, by field name (the models' own names)
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=40).filter(str.strip)
_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,30}", fullmatch=True)
VALID: dict[str, st.SearchStrategy] = {
    **{name: _ID for name in ("call_id", "submission_id", "record_id", "event_id", "action_id", "order_id",
                              "feedback_id", "source_id")},
    **{name: st.integers(0, 10**6).map(lambda m: (_now() - timedelta(minutes=m)).isoformat())
       for name in ("received_at", "submitted_at")},
    **{name: st.integers(10**7, 10**8 - 1).map(lambda n: f"139{n:08d}")
       for name in ("caller_phone", "contact_phone")},
    "enterprise_uscc": st.integers(0, 10**11 - 1).map(a_uscc),
    "kind": st.sampled_from(["appeal", "consultation", "complaint", "suggestion", "praise", "main", "sub"]),
    "channel": st.sampled_from(["reception_day", "chief_rep", "tea_talk", "hotline", "app"]),
    "rating": st.sampled_from(["satisfied", "basically_satisfied", "unsatisfied"]),
    "date": st.integers(0, 3000).map(lambda d: (date.today() - timedelta(days=d)).isoformat()),
    "item_no": st.integers(1, 50),
    "days": st.integers(1, 120),
    "proposed_deadline_days": st.integers(1, 365),
    "urgent": st.booleans(), "resolved": st.booleans(), "accept": st.booleans(),
    "recording_url": st.just("https://rec.example.org/call/1.mp3"),
    "attachments": st.lists(st.just("https://files.example.org/a.pdf"), max_size=3),
    "unit_code": st.sampled_from(["sanitation", "water_company", "gas_company"]),
    "co_units": st.lists(st.sampled_from(["water_company", "gas_company"]), max_size=2),
    "appeal_id": st.from_regex(r"CT-[0-9]{8}-[0-9]{6}", fullmatch=True),
    "attendees": st.lists(_TEXT, max_size=3),
    "action": st.sampled_from(ACTIONS),
}

MEGABYTE = "啊" * 350_000  # about 1 MB in UTF-8
HOSTILE_TEXT = [
    "", " ", "\t\n", "a\x00b", "\x00", "\ud800", "x\udfffy", "\x1b[31mred", "\x7f", "\x85", "\u202e\u0645",
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "'; DROP TABLE intake.appeals; --",
    "${jndi:ldap://x/a}", "{{7*7}}", "x" * 5001, "x" * 201, MEGABYTE, "１３８１２３４５６７８",
]
HOSTILE_TIMES = [
    "2999-01-01T00:00:00+08:00", "0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-08:00",
    "2026-13-45T25:61:61+08:00", "2026-01-01T00:00:00+99:00", "2026-02-30T10:00:00Z", "2026-01-01",
    "2026-01-01T00:00:00", "yesterday", "２０２６-０１-０１T００:００:００+08:00", "2026-01-01T00:00:00+08:00\n",
    "1999-12-31", "3000-01-01",
]
HOSTILE_CODES = ["914403001922038217", "91440300192203821I", "ß" * 18, "91440300１９２２０３８２１６", "0" * 18]
HOSTILE_PHONES = ["0", "12345", "+86 1", "028-0", "0-", "00000000000", "1381234567８", "+8613812345678" * 10]
HOSTILE_VALUES: list[Any] = [
    None, True, 0, -1, 10**30, 10**400, 1e308, -1e308, 1.5, [], {}, [1, "x"], {"a": {"b": [None]}},
    *HOSTILE_TEXT, *HOSTILE_TIMES, *HOSTILE_CODES, *HOSTILE_PHONES,
]


def nested(depth: int) -> Any:
    value: Any = "deep"
    for i in range(depth):
        value = [value] if i % 2 else {"n": value}
    return value


def hostile_value() -> st.SearchStrategy:
    return st.one_of(st.sampled_from(HOSTILE_VALUES), st.integers(150, 400).map(nested),
                     st.text(max_size=30), st.integers(), st.floats(allow_nan=False))


HOSTILE = hostile_value()
EXTRA_KEYS = st.sampled_from(["extra", "\x00", "__proto__", "<b>"])
ONE_IN_TEN = st.integers(0, 9)


@functools.cache
def body_of(model: type[BaseModel], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """A body for ``model``: each of its fields (``model_fields``) valid, hostile, or missing; sometimes a field
    that is not in the contract. Valid three times in four, so many bodies are wrong in one field only."""

    def valid_value(name: str) -> st.SearchStrategy:
        if name == "items" and depth == 0:
            return st.lists(body_of(EventItem, depth + 1), min_size=1, max_size=3)
        return VALID.get(name, _TEXT)

    fields = [(name, valid_value(name), st.one_of(valid_value(name), valid_value(name), HOSTILE))
              for name in model.model_fields]
    names = st.sampled_from([name for name, _, _ in fields])

    @st.composite
    def build(draw) -> dict[str, Any]:
        # clean: every field valid; one: a single field hostile or missing; many: any field may be
        mode = draw(st.sampled_from(["clean", "one", "one", "many", "many"]))
        spoilt = draw(names) if mode == "one" else None
        body: dict[str, Any] = {}
        for name, valid, any_value in fields:
            if mode == "many" and draw(ONE_IN_TEN) == 0 or name == spoilt and draw(st.booleans()):
                continue  # missing
            body[name] = draw(HOSTILE if name == spoilt else any_value if mode == "many" else valid)
        if mode == "many" and draw(ONE_IN_TEN) == 0:
            body[draw(EXTRA_KEYS)] = draw(HOSTILE)
        return body

    return build()


def order_subject() -> st.SearchStrategy[str]:
    unit = st.sampled_from(["sanitation", "water_company", "x", "Bad-Unit", "\x00nul", "单位", "a" * 60])
    action = st.sampled_from([*ACTIONS, "feedback", "delete", "SIGN", ""])
    return st.builds(lambda u, a: f"ct.in.order.{u}.{a}", unit, action)


INBOUND_SUBJECTS = [s for s in INBOUND if s != subjects.IN_ORDER]
#: each inbound subject as often as the others (the unit actions' subjects are one of them)
subject_strategy = st.sampled_from([*INBOUND_SUBJECTS, None]).flatmap(
    lambda s: order_subject() if s is None else st.just(s))


def encode(body: Any, how: str, cut: int) -> bytes:
    """``body`` as the bytes a sender might put on the wire, well or badly."""
    if how == "ascii":  # lone surrogates travel as \\ud800 escapes
        return json.dumps(body, ensure_ascii=True).encode()
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")  # CESU-8 for surrogates
    if how == "utf8":
        return raw
    if how == "bad_byte":
        at = cut % (len(raw) + 1)
        return raw[:at] + b"\xff\xc3" + raw[at:]
    if how == "truncated":
        return raw[: cut % max(len(raw), 1)]
    if how == "bom":
        return b"\xef\xbb\xbf" + raw
    return b"\x00" + raw  # "nul"


@st.composite
def wire_message(draw) -> tuple[str, bytes]:
    """(subject, body bytes) for any inbound subject, from its contract model's fields."""
    subject = draw(subject_strategy)
    model = contract_for(subject)
    shape = draw(st.sampled_from(["object"] * 6 + ["array", "scalar", "bytes"]))
    if shape == "bytes":
        return subject, draw(st.binary(max_size=200))
    body: Any = draw(body_of(model))
    if shape == "array":
        body = [body]
    elif shape == "scalar":
        body = draw(st.sampled_from(["text", 1, None, True, 10**400]))
    how = draw(st.sampled_from(["utf8"] * 3 + ["ascii"] * 3 + ["bad_byte", "truncated", "bom", "nul"]))
    return subject, encode(body, how, draw(st.integers(0, 10**6)))


# --- what must hold for every input ------------------------------------------------------------------

def texts_in(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from texts_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from texts_in(v)


def assert_parsed_or_rejected(subject: str, data: bytes) -> None:
    model, errors = parse_message(subject, data)
    event("valid" if model is not None else "rejected")
    if model is not None:
        assert errors == []
        assert isinstance(model, contract_for(subject))
        # what is stored can be stored: PostgreSQL text takes neither NUL nor a lone surrogate
        assert not any(UNSAFE.search(t) for t in texts_in(model.model_dump(mode="json")))
        return
    assert errors, f"{subject}: neither a model nor an error for {data[:200]!r}"
    for e in errors:
        assert e.field and e.message
    # the rejection can always be built and sent, echoing what could be read
    # (Delivery.of keeps the subject printable, as the consumers receive it)
    d = Delivery(raw=None, subject=printable(subject, 1000), data=data, msg_id="m-1", num_delivered=1, stream_seq=1)
    rejection = AppealRejected(occurred_at=datetime.now(UTC), subject=d.subject, source_id=d.readable_field("call_id"),
                           msg_id=d.msg_id, errors=errors)
    wire = rejection.model_dump_json().encode("utf-8")
    assert not any(UNSAFE.search(t) for t in texts_in(json.loads(wire)))


@settings(max_examples=FUZZ_EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(wire_message())
def test_every_inbound_message_gives_a_model_or_field_errors_and_never_raises(message):
    subject, data = message
    assert_parsed_or_rejected(subject, data)


# --- found from outside: each of these ended in the dead-letter stream ----------------------------------

def a_call(**over: Any) -> dict[str, Any]:
    call = {"call_id": "CALL-1", "received_at": _now().isoformat(), "caller_phone": "13812345678",
            "content": "路口左转车道通行不便", "enterprise_uscc": a_uscc(7)}
    call.update(over)
    return call


def errors_of(subject: str, data: bytes) -> dict[str, str]:
    model, errors = parse_message(subject, data)
    assert model is None
    return {e.field: e.message for e in errors}


def test_a_body_that_is_not_utf8_is_rejected_naming_the_byte():
    data = json.dumps(a_call()).encode()[:20] + b"\xff" + json.dumps(a_call()).encode()[20:]
    assert errors_of(subjects.IN_HOTLINE, data) == {"body": "not valid UTF-8: byte 0xff at offset 20"}


def test_a_nul_in_an_otherwise_valid_call_is_an_error_of_its_field():
    errors = errors_of(subjects.IN_HOTLINE, json.dumps(a_call(content="漏水\u0000严重")).encode())
    assert list(errors) == ["content"]
    assert "U+0000" in errors["content"]


def test_a_lone_surrogate_is_an_error_of_its_field_not_of_the_body():
    errors = errors_of(subjects.IN_HOTLINE, json.dumps(a_call(caller_name="\ud800")).encode())
    assert list(errors) == ["caller_name"]
    assert "surrogate" in errors["caller_name"]


def test_a_rejection_echoing_a_lone_surrogate_source_id_still_encodes():
    d = Delivery(raw=None, subject=subjects.IN_HOTLINE, data=b'{"call_id": "A\\ud800\\u0000"}', msg_id=None,
                 num_delivered=1, stream_seq=1)
    source_id = d.readable_field("call_id")
    assert source_id == "A\\ud800\\u0000"
    AppealRejected(occurred_at=_now(), subject=d.subject, source_id=source_id, errors=[]).model_dump_json()


def test_reading_the_source_id_of_deeply_nested_json_does_not_raise():
    data = b'{"call_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    d = Delivery(raw=None, subject=subjects.IN_HOTLINE, data=data, msg_id=None, num_delivered=1, stream_seq=1)
    assert d.readable_field("call_id") is None
    assert "nested too deeply" in errors_of(subjects.IN_HOTLINE, data)["body"]


def test_a_nul_or_control_character_in_the_msg_id_or_subject_is_escaped_on_receipt():
    msg = Msg(None, subject="ct.in.order.sani\x00tation.sign", reply="$JS.ACK.CT_IN.dispatch.1.7.7.1700000000000000000.0",
              data=b"{}", headers={"Nats-Msg-Id": "id\x00\x1b"})
    d = Delivery.of(msg)
    assert d.msg_id == "id\\u0000\\u001b"
    assert d.subject == "ct.in.order.sani\\u0000tation.sign" and "\x00" not in d.key


def test_an_order_subject_whose_unit_code_is_not_a_code_is_an_error_of_the_subject():
    body = {"action_id": "A-1", "order_id": "WO-1", "actor": "张三"}
    assert "subject" in errors_of("ct.in.order.Bad-Unit.sign", json.dumps(body).encode())
    model, errors = parse_message("ct.in.order.sanitation.sign", json.dumps(body).encode())
    assert model is not None and errors == []


def test_times_that_cannot_be_stored_are_errors_of_their_field():
    for bad in ("0001-01-01T00:00:00+08:00", "2026-01-01T00:00:00+99:00", "2026-13-45T25:61:61+08:00",
                "２０２６-０１-０１T００:００:００+08:00"):
        errors = errors_of(subjects.IN_HOTLINE, json.dumps(a_call(received_at=bad)).encode())
        assert list(errors) == ["received_at"], bad


def test_an_event_dated_in_the_future_or_before_2000_is_an_error_of_its_date():
    record = {"event_id": "EV-1", "kind": "sub", "organizer_unit": "区行政审批局",
              "items": [{"item_no": 1, "enterprise_name": "甲公司", "content": "用水问题"}]}
    for bad in ("9999-12-31", "0001-01-01", (date.today() + timedelta(days=30)).isoformat()):
        assert list(errors_of(subjects.IN_EVENT, json.dumps({**record, "date": bad}).encode())) == ["date"]


def test_a_phone_of_one_zero_is_a_field_error_not_an_index_error():
    assert list(errors_of(subjects.IN_HOTLINE, json.dumps(a_call(caller_phone="0")).encode())) == ["caller_phone"]
    try:
        normalize_phone("１３８１２３４５６７８")  # full-width digits are no phone
    except ValueError:
        pass
    else:
        raise AssertionError("a full-width phone was accepted")


def test_an_invalid_query_gets_one_error_per_field():
    query, errors = parse_body(AppealQuery, b'{"appeal_id": "CT\\u0000"}')
    assert query is None and [e.field for e in errors] == ["appeal_id"]
    reply = AppealStatus(found=False, error="; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    assert json.loads(reply.model_dump_json())["errors"][0]["field"] == "appeal_id"


def test_check_text_keeps_tabs_and_line_breaks_and_every_script():
    assert check_text("第一行\n第二行\tمرحبا 👍") == "第一行\n第二行\tمرحبا 👍"
    assert HotlineCall.model_validate(a_call(content="第一行\r\n第二行")).content == "第一行\r\n第二行"
