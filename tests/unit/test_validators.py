"""Edge validation: credit codes, phones, times, sizes, enumerations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared import clock
from shared.contracts import AppAppeal, EventRecord, Feedback, HotlineCall, ReceptionRecord, UnitAction, field_errors
from shared.contracts.common import (
    USCC_CHARSET,
    mask_name,
    mask_phone,
    normalize_phone,
    uscc_check_character,
    validate_uscc,
)

# Real codes published by the enterprises themselves (business licences) and the standard's own example.
REAL_CODES = [
    "914403001922038216",  # 华为技术有限公司
    "9144030071526726XG",  # 深圳市腾讯计算机系统有限公司
    "91110000802100433B",  # 中国石油天然气股份有限公司
    "91350100M000100Y43",  # the example in GB 32100-2015
]


@pytest.mark.parametrize("code", REAL_CODES)
def test_real_published_credit_codes_are_accepted(code):
    assert validate_uscc(code) == code
    assert validate_uscc(code.lower()) == code


@pytest.mark.parametrize("code, why", [
    ("914403001922038217", "check character"),
    ("91440300192203821", "18 characters"),
    ("9144030019220382160", "18 characters"),
    ("91440300I922038216", "without I"),
    ("91AB0300192203821X", "division code"),
])
def test_bad_credit_codes_are_refused_with_the_reason(code, why):
    with pytest.raises(ValueError, match=why):
        validate_uscc(code)


@given(st.text(alphabet=USCC_CHARSET, min_size=17, max_size=17).filter(lambda s: s[2:8].isdigit()))
def test_a_computed_check_character_always_validates_and_any_other_fails(first17):
    good = first17 + uscc_check_character(first17)
    assert validate_uscc(good) == good
    wrong = next(c for c in USCC_CHARSET if c != good[-1])
    with pytest.raises(ValueError):
        validate_uscc(first17 + wrong)


@pytest.mark.parametrize("raw, normal", [
    ("13812345678", "13812345678"),
    ("+86 138 1234 5678", "13812345678"),
    ("86-138-1234-5678", "13812345678"),
    ("028-85551234", "028-85551234"),
    ("(028) 8555 1234", "028-85551234"),
    ("02885551234", "028-85551234"),
    ("0755-12345678", "0755-12345678"),
    ("028-85551234-806", "028-85551234-806"),
    ("4008123123", "4008123123"),
])
def test_mainland_mobiles_landlines_and_service_numbers_are_normalised(raw, normal):
    assert normalize_phone(raw) == normal


@pytest.mark.parametrize("raw", ["12812345678", "1381234567", "138123456789", "8555123", "abc", "+1 415 555 0100"])
def test_other_numbers_are_refused(raw):
    with pytest.raises(ValueError):
        normalize_phone(raw)


def test_phones_and_names_are_masked():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("028-85551234") == "028****1234"
    assert mask_name("潘星") == "潘*"
    assert mask_name("王洪涛") == "王*涛"


def call(**over):
    base = {"call_id": "C-1", "received_at": "2026-11-26T09:30:00+08:00", "caller_phone": "13812345678",
            "content": "路口左转车道通行不便"}
    base.update(over)
    return base


def errors_of(model, body) -> dict[str, str]:
    with pytest.raises(ValidationError) as exc:
        model.model_validate(body)
    return {e.field: e.message for e in field_errors(exc.value)}


def test_a_receipt_time_more_than_five_minutes_ahead_is_an_error():
    now = datetime(2026, 11, 26, 1, 30, tzinfo=UTC)
    clock.set_clock(lambda: now)
    try:
        ok = (now + timedelta(minutes=4)).isoformat()
        late = (now + timedelta(minutes=6)).isoformat()
        assert HotlineCall.model_validate(call(received_at=ok))
        assert "future" in errors_of(HotlineCall, call(received_at=late))["received_at"]
    finally:
        clock.set_clock(None)


@pytest.mark.parametrize("value", ["2026-11-26 09:30", "2026-11-26T09:30:00", "26/11/2026", 1764120600, "yesterday"])
def test_times_must_be_rfc3339_with_an_offset(value):
    assert "received_at" in errors_of(HotlineCall, call(received_at=value))


def test_content_is_one_to_five_thousand_characters():
    assert "content" in errors_of(HotlineCall, call(content=""))
    assert "content" in errors_of(HotlineCall, call(content="   "))
    assert "content" in errors_of(HotlineCall, call(content="字" * 5001))
    assert HotlineCall.model_validate(call(content="字" * 5000))


def test_every_missing_required_field_is_named():
    assert set(errors_of(HotlineCall, {})) == {"call_id", "received_at", "caller_phone", "content"}
    assert set(errors_of(AppAppeal, {})) == {"submission_id", "submitted_at", "account_id", "enterprise_name",
                                             "contact_phone", "content"}
    assert set(errors_of(ReceptionRecord, {})) == {"record_id", "received_at", "channel", "officer", "content",
                                                   "contact_phone"}
    assert set(errors_of(EventRecord, {})) == {"event_id", "kind", "date", "organizer_unit", "items"}
    assert set(errors_of(Feedback, {})) == {"feedback_id", "appeal_id"}
    # rating is required unless a follow-up call gives an outcome: named as its own field
    assert set(errors_of(Feedback, {"feedback_id": "F1", "appeal_id": "CT-1"})) == {"rating"}
    assert set(errors_of(UnitAction, {})) == {"action_id", "actor"}


def test_enumerations_are_checked():
    assert "kind" in errors_of(HotlineCall, call(kind="gossip"))
    assert "channel" in errors_of(ReceptionRecord, {
        "record_id": "R1", "received_at": "2026-11-26T09:30:00+08:00", "channel": "hotline", "officer": "张局长",
        "content": "x", "contact_phone": "13812345678"})
    assert "rating" in errors_of(Feedback, {"feedback_id": "F1", "appeal_id": "CT-1", "rating": "meh"})


def test_an_event_item_error_names_the_item():
    errors = errors_of(EventRecord, {
        "event_id": "E1", "kind": "main", "date": "2026-11-20", "organizer_unit": "区行政审批局",
        "items": [{"item_no": 1, "enterprise_name": "甲公司", "content": "x", "contact_phone": "123"}]})
    assert "items.0.contact_phone" in errors


def test_unknown_fields_are_ignored_so_senders_may_add_optional_ones():
    assert HotlineCall.model_validate(call(new_field_from_hotline_v2="x")).call_id == "C-1"
