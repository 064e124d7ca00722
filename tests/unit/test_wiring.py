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
from shared.settings import Settings


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


# --- the services' own handlers, with a unit of work that has no database ----------------------


def _spec_settings() -> Settings:
    return Settings(nats_url="nats://wiring.invalid:4222", database_url="postgresql://wiring.invalid/ct")


async def test_intake_registers_a_hotline_call_and_rejects_a_bad_one_in_memory():
    from services.intake.__main__ import create_service
    from tests.unit.test_intake_service_layer import FakeIntakeUnitOfWork, a_call

    service = create_service(_spec_settings())
    uow = FakeIntakeUnitOfWork()
    service.unit_of_work = lambda: uow
    call = a_call("W-1").model_dump(mode="json")
    async with TestNatsBroker(service.consumers.wiring_broker()) as br:
        await br.publish(json.dumps(call).encode(), subjects.IN_HOTLINE, headers={"Nats-Msg-Id": "W-1"})
        await br.publish(b'{"call_id": "W-2", "caller_phone": "12"}', subjects.IN_HOTLINE)
    (registered,) = uow.published(subjects.APPEAL_REGISTERED)
    assert (registered.source_id, registered.correlation_id) == ("W-1", "W-1")
    (rejected,) = uow.published(subjects.APPEAL_REJECTED)
    assert rejected.source_id == "W-2" and "caller_phone" in {e.field for e in rejected.errors}


async def test_intake_answers_the_status_query_through_its_responder_in_memory():
    from services.intake.__main__ import create_service
    from tests.unit.test_intake_service_layer import FakeIntakeUnitOfWork

    service = create_service(_spec_settings())
    service.unit_of_work = FakeIntakeUnitOfWork
    async with TestNatsBroker(service.broker) as br:
        reply = await br.request(b'{"appeal_id": "CT-20261126-999999"}', subjects.Q_APPEAL)
        bad = await br.request(b'{"nothing": 1}', subjects.Q_APPEAL)
    assert json.loads(reply.body)["found"] is False and json.loads(reply.body)["appeal_id"] == "CT-20261126-999999"
    assert json.loads(bad.body)["found"] is False and json.loads(bad.body)["error"]


async def test_dispatch_routes_a_registered_appeal_and_refuses_an_action_on_an_unknown_order_in_memory():
    from services.dispatch.__main__ import create_service
    from tests.unit.test_dispatch_service_layer import CASE_D, FakeDispatchUnitOfWork, registered

    service = create_service(_spec_settings())
    uow = FakeDispatchUnitOfWork()
    service.unit_of_work = lambda: uow
    async with TestNatsBroker(service.consumers.wiring_broker()) as br:
        await br.publish(registered(CASE_D, "AP-W1", "水电气保障").model_dump_json().encode(),
                         subjects.APPEAL_REGISTERED)
        await br.publish(b'{"action_id": "a-1", "order_id": "nope-W01", "actor": "w"}',
                         subjects.order_action_subject("sanitation", "sign"))
        await br.publish(b'{"action_id": "a-2", "order_id": "nope-W01", "actor": "w"}',
                         subjects.order_action_subject("sanitation", "extend"))
    assert [o.unit_code for o in uow.published(subjects.ORDER_DISPATCHED)][0] == "huangshui_town"
    refused = {r.action_id: r for r in uow.published(subjects.ORDER_REJECTED)}
    assert refused["a-1"].reason == "unknown_order"
    assert refused["a-2"].reason == "invalid" and {"days", "reason"} <= {e.field for e in refused["a-2"].errors}


async def test_escalation_starts_the_clocks_of_a_dispatched_order_and_dead_letters_a_bad_event_in_memory():
    from services.escalation.__main__ import create_service
    from tests.unit.test_escalation_service_layer import FakeEscalationUnitOfWork, at, dispatched, new_appeal

    service = create_service(_spec_settings())
    uow = FakeEscalationUnitOfWork()
    service.unit_of_work = lambda: uow
    appeal = new_appeal()
    event = dispatched(appeal, f"{appeal}-01", at(2026, 9, 30, 10, 0), at(2026, 9, 30, 11, 0)).event
    dead: list = []

    async def dead_letter(sub, d, exc) -> None:  # the real one publishes to ct.dlq.<service>.<subject>
        dead.append((d.subject, str(exc)))

    service.consumers.dead_letter = dead_letter
    async with TestNatsBroker(service.consumers.wiring_broker()) as br:
        await br.publish(event.model_dump_json().encode(), subjects.ORDER_DISPATCHED,
                         headers={"Nats-Msg-Id": event.event_id})
        await br.publish(b'{"appeal_id": 7}', subjects.ORDER_SIGNED)
    assert {e.clock for e in uow.published(subjects.DEADLINE_SET)} == {"handling", "sign_for"}
    assert [s for s, _ in dead] == [subjects.ORDER_SIGNED] and "order_id" in dead[0][1]
