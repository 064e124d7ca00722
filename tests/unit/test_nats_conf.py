"""deploy/nats/nats.conf in step with the code: each service's JetStream calls are exactly those on its own durables.

The refusals themselves are asserted on a real nats-server in
tests/integration/test_nats_permissions.py; this keeps the hand-written lists
complete when a service subscribes to something new.
"""

from __future__ import annotations

import importlib
import re

import pytest

from shared.contracts.subjects import STREAMS
from shared.settings import SERVICES, Settings
from tests.unit.test_deploy import _allowed, _conf_without_comments, _user_block


def durables_of(service: str) -> set[tuple[str, str]]:
    module = importlib.import_module(f"services.{service}.__main__")
    return {(s.stream, s.durable) for s in module.create_service(Settings()).consumers.subscriptions}


def jetstream_calls(stream: str, durable: str) -> set[str]:
    """What a service needs for one durable pull consumer (shared/bus.py: ensure_consumer, fetch, ack, stats)."""
    return {f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}", f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}", f"$JS.ACK.{stream}.{durable}.>"}


@pytest.mark.parametrize("service", SERVICES)
def test_a_services_jetstream_calls_are_its_own_durables_and_reading_or_creating_the_streams(service):
    publish = _allowed(_user_block(_conf_without_comments(), service), "publish")
    wanted = set().union(*(jetstream_calls(stream, durable) for stream, durable in durables_of(service)))
    for s in STREAMS:
        wanted |= {f"$JS.API.STREAM.INFO.{s.name}", f"$JS.API.STREAM.CREATE.{s.name}"}
    held = {p for p in publish if p.startswith("$JS.")}
    assert held == wanted, (f"nats.conf, user {service}: missing {sorted(wanted - held)}, "
                            f"not needed {sorted(held - wanted)}")


def test_every_user_has_its_own_inbox_and_only_the_admin_manages_jetstream():
    conf = _conf_without_comments()
    users = re.findall(r'\buser:\s*"([^"]+)"', conf)
    assert "admin" in users and len(users) == len(set(users))
    for user in users:
        if user == "sys":
            continue
        block = _user_block(conf, user)
        inboxes = {s for s in _allowed(block, "subscribe") if s.startswith("_INBOX")}
        assert inboxes == {f"_INBOX_{user}.>"}, user
        assert ("$JS.API.>" in _allowed(block, "publish")) == (user == "admin"), user


def test_a_service_connects_as_its_user_on_its_own_inbox_prefix():
    assert Settings(nats_url="nats://127.0.0.1:4222").nats_connect_options() == {}
    from_url = Settings(nats_url="nats://intake:secret@nats:4222,nats://intake:secret@nats-2:4222")
    assert from_url.nats_connect_options() == {"inbox_prefix": "_INBOX_intake"}
    given = Settings(nats_user="dispatch", nats_password="pw", nats_inbox_prefix="_INBOX_dispatch_blue")
    assert given.nats_connect_options() == {"user": "dispatch", "password": "pw", "inbox_prefix": "_INBOX_dispatch_blue"}
    assert "pw" not in repr(given), "the password never shows in a log of the settings"
    creds = Settings(nats_creds="/run/secrets/notify.creds", nats_user="notify")
    assert creds.nats_connect_options()["user_credentials"] == "/run/secrets/notify.creds"


def test_the_broker_gets_the_same_credentials_as_security():
    from faststream.nats.security import NatsUserPassword

    from shared.bus import broker_options

    options = broker_options({"user": "notify", "password": "pw", "inbox_prefix": "_INBOX_notify"})
    assert options["inbox_prefix"] == "_INBOX_notify"
    assert isinstance(options["security"], NatsUserPassword) and options["security"].username == "notify"
    assert broker_options({}) == {}


def test_a_creds_file_goes_to_the_broker_as_credentials():
    pytest.importorskip("nkeys", reason="a .creds file needs nats-py[nkeys]")
    from faststream.nats.security import NatsCredentials

    from shared.bus import broker_options

    assert isinstance(broker_options({"user_credentials": "/x.creds"})["security"], NatsCredentials)
