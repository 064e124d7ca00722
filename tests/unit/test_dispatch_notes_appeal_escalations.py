"""Dispatch keeps the ladder step each order reached, also from an appeal's escalation naming several late orders."""

from __future__ import annotations

from services.dispatch import use_cases
from shared.contracts.events import AppealEscalated, LateOrder
from tests.unit.test_dispatch_service_layer import NOW, TOWN, FakeDispatchUnitOfWork


async def test_an_appeals_escalation_marks_every_late_order_it_names():
    uow = FakeDispatchUnitOfWork()
    late = [LateOrder(order_id="AP9-W01", unit_code=TOWN), LateOrder(order_id="AP9-W02", unit_code="traffic_police")]
    async with uow:
        await use_cases.note_escalations(uow, [
            AppealEscalated(occurred_at=NOW, appeal_id="AP9", order_id="AP9-W01", unit_code=TOWN,
                            level="district_leader", reason="late", late_orders=late),
            AppealEscalated(occurred_at=NOW, appeal_id="AP8", order_id="AP8-W01", unit_code=TOWN, level="overdue",
                            reason="late"),
        ])
    assert uow.store.levels == {"AP9-W01": "district_leader", "AP9-W02": "district_leader", "AP8-W01": "overdue"}
