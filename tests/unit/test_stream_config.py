"""What start-up asks of a stream (shared/bus.py stream_config): the code's fields, the operator's kept, replicas never lowered."""

from __future__ import annotations

import dataclasses

from shared.bus import OWNED_STREAM_FIELDS, stream_changes, stream_config
from shared.contracts.subjects import STREAM_EVENTS, STREAM_IN


def as_the_server_returns_it(config):
    """The server answers with every field set and numbers as floats."""
    return dataclasses.replace(config, max_age=float(config.max_age), duplicate_window=float(config.duplicate_window),
                               max_msgs=-1, max_bytes=-1, metadata={"_nats.ver": "2.15.1"})


def test_a_new_stream_gets_the_configured_replicas():
    config = stream_config(STREAM_IN, replicas=3)
    assert (config.name, config.subjects, config.num_replicas) == ("CT_IN", ["ct.in.>"], 3)
    assert config.max_age == STREAM_IN.max_age_days * 86400 and config.duplicate_window == STREAM_IN.duplicate_window_s


def test_an_up_to_date_stream_needs_no_update():
    existing = as_the_server_returns_it(stream_config(STREAM_EVENTS, replicas=1))
    assert stream_changes(existing, stream_config(STREAM_EVENTS, 1, existing)) == {}


def test_replicas_an_operator_raised_are_never_lowered():
    existing = dataclasses.replace(as_the_server_returns_it(stream_config(STREAM_IN, 1)), num_replicas=3)
    wanted = stream_config(STREAM_IN, 1, existing)
    assert wanted.num_replicas == 3 and stream_changes(existing, wanted) == {}


def test_the_setting_raises_replicas():
    existing = as_the_server_returns_it(stream_config(STREAM_IN, 1))
    wanted = stream_config(STREAM_IN, 3, existing)
    assert stream_changes(existing, wanted) == {"num_replicas": (1, 3)}


def test_the_operators_fields_are_kept_and_the_codes_restored():
    existing = dataclasses.replace(as_the_server_returns_it(stream_config(STREAM_IN, 1)),
                                   max_msgs=5_000_000, max_bytes=2**35, subjects=["ct.in.>", "ct.q.>"])
    wanted = stream_config(STREAM_IN, 1, existing)
    assert (wanted.max_msgs, wanted.max_bytes) == (5_000_000, 2**35)
    assert wanted.subjects == ["ct.in.>"], "the code owns the subjects (no stream may cover ct.q.>)"
    assert set(stream_changes(existing, wanted)) == {"subjects"}
    assert set(OWNED_STREAM_FIELDS) >= {"subjects", "max_age", "duplicate_window"}
