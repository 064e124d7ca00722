"""The wiring ring: FastStream's in-memory TestNatsBroker drives the declared subscriptions.

It proves that a subject reaches the handler declared for it, parsed into its
contract model, through the same batch code as the real consumers. Delivery,
redelivery and de-duplication are proven against the real servers
(``tests/integration``), never here.
"""

from __future__ import annotations

import json

from faststream.nats import NatsBroker, TestNatsBroker

from shared.bus import ConsumerGroup
from shared.contracts import Feedback, OrderSigned, subjects


def a_group(seen: list, invalid: str = "reject") -> ConsumerGroup:
    group = ConsumerGroup("wiring", NatsBroker())

    async def remember(batch) -> None:
        """Remembers what it was handed."""
        seen.extend(batch)

    group.subscribe(subjects.IN_FEEDBACK, remember, invalid=invalid)
    group.subscribe("ct.order.>", remember)
    return group


async def test_a_published_message_reaches_its_handler_as_its_contract_model():
    seen: list = []
    broker = a_group(seen).wiring_broker()
    async with TestNatsBroker(broker) as br:
        body = {"feedback_id": "fb-1", "appeal_id": "CT-20261126-000001", "rating": "satisfied"}
        await br.publish(json.dumps(body).encode(), subjects.IN_FEEDBACK, headers={"Nats-Msg-Id": "fb-1"})
    assert len(seen) == 1
    assert isinstance(seen[0].message, Feedback)
    assert seen[0].message.rating == "satisfied" and seen[0].msg_id == "fb-1"


async def test_an_invalid_inbound_message_reaches_its_handler_with_field_errors():
    seen: list = []
    broker = a_group(seen).wiring_broker()
    async with TestNatsBroker(broker) as br:
        await br.publish(b'{"feedback_id": "fb-2", "rating": "great"}', subjects.IN_FEEDBACK)
    assert seen[0].message is None
    assert {e.field for e in seen[0].errors} == {"appeal_id", "rating"}


async def test_a_wildcard_subscription_parses_each_subject_into_its_own_model():
    seen: list = []
    broker = a_group(seen).wiring_broker()
    signed = {"occurred_at": "2026-11-26T09:30:00+08:00", "appeal_id": "CT-20261126-000001",
              "order_id": "CT-20261126-000001-W01", "unit_code": "sanitation", "unit": "区环卫所"}
    async with TestNatsBroker(broker) as br:
        await br.publish(json.dumps(signed).encode(), subjects.ORDER_SIGNED)
    assert [type(d.message) for d in seen] == [OrderSigned]
