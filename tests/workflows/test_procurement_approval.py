"""Workflow 4 of the demo plant: procurement approval. A `purchase_requested` message starts
it; the amount gives one, two or three approval levels; deadlines escalate to the next role
up; a rejection (or a request nobody can supply) reaches the waiting order as
`procurement_rejected`; approval orders the goods, receipts (partial, refused when wrong) add
stock, and `material_received` reaches the waiting order, correlated by its number.

Tasks are completed through their forms, as the task page does, so the forms are checked
against the workflow's real data too."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.auth.service import AccountService
from taktflow.config import DEFAULT_ROLES
from taktflow.engine.clock import ManualClock
from taktflow.engine.runtime import WorkflowEngine
from taktflow.forms.service import TaskForms
from taktflow.mfg.ledger import balance, trial_balance
from taktflow.mfg.orders import create_order
from taktflow.mfg.purchasing import approval_state, pending_approvals, requisition_view
from taktflow.mfg.purchasing_models import PurchaseOrder
from taktflow.mfg.stock import on_hand

FILES = ("workflows/procurement_approval.yaml", "forms/requisition_approval.yaml",
         "forms/goods_receipt.yaml")  # fmt: skip

#: Small stand-ins for a production order waiting for its material (or for the bad news).
WAIT_FOR_MATERIAL = """\
process: wait_for_material
steps:
  - wait: Material arrives
    message: material_received
    correlate: [order_number]
    into: material
"""
WAIT_FOR_REJECTION = """\
process: wait_for_rejection
steps:
  - wait: Procurement rejected
    message: procurement_rejected
    correlate: [order_number]
    into: rejection
"""


@pytest.fixture
def plant(plant_engine: WorkflowEngine, deploy: Callable[..., Any]) -> WorkflowEngine:
    deploy(*FILES)
    plant_engine.deploy_text("wait_for_material.yaml", WAIT_FOR_MATERIAL)
    plant_engine.deploy_text("wait_for_rejection.yaml", WAIT_FOR_REJECTION)
    return plant_engine


def orders(sa_engine: Engine, clock: ManualClock, *numbers: str) -> None:
    with Session(sa_engine) as s, s.begin():
        for number in numbers:
            create_order(s, number=number, item="BRACKET-A", quantity=100, now=clock.now())


def request(engine: WorkflowEngine, **payload: Any) -> int:
    """Send `purchase_requested` as the order release workflow does; the started instance."""
    started = engine.send_message("purchase_requested", data=payload).started
    assert len(started) == 1
    return started[0]


def ready(engine: WorkflowEngine, instance: int) -> list[tuple[str, str]]:
    return [(t["name"], t["lane"]) for t in engine.tasks(instance)]


def do(engine: WorkflowEngine, instance: int, name: str, data: dict, actor: str) -> dict:
    """Complete the instance's one ready task `name` through its form, as the task page does:
    the form must render with the instance's data and accept what a person would send."""
    tasks = [t for t in engine.tasks(instance) if t["name"] == name]
    assert len(tasks) == 1, ready(engine, instance)
    forms = TaskForms(engine, AccountService(engine.bind, DEFAULT_ROLES.split(",")))
    shown = forms.view(tasks[0]["task_id"], html=True)
    assert shown["form"] is not None and shown["form"]["title"]
    sent = {k: v for k, v in data.items() if v is not None}
    return forms.submit(tasks[0]["task_id"], sent, actor=actor, check_password=None,
                        strict=True)  # fmt: skip


def approve(engine: WorkflowEngine, instance: int, name: str, actor: str) -> dict:
    return do(engine, instance, name, {"decision": "approve", "comment": "ok"}, actor)


def receive(engine: WorkflowEngine, instance: int, quantity: str, lot: str | None) -> dict:
    return do(engine, instance, "goods_receipt",
              {"received_quantity": quantity, "received_lot": lot}, "olga")  # fmt: skip


def decisions(sa_engine: Engine, number: str = "PR-00001") -> list[tuple]:
    with Session(sa_engine) as s:
        return [(d["level"], d["role"], d["decision"], d["decided_by"], d["escalated"])
                for d in approval_state(s, number)["decisions"]]  # fmt: skip


def sent(engine: WorkflowEngine, instance: int) -> list[str]:
    return [h["details"]["name"] for h in engine.history(instance) if h["kind"] == "message_sent"]


def test_amount_bands_choose_the_levels(plant: WorkflowEngine) -> None:
    # BOLT-M8 at 0.04 EUR: 24,999 pcs = 999.96 EUR, 25,000 = 1,000.00 EUR, and so on.
    for quantity, roles in [(24999, ["supervisor"]), (25000, ["supervisor", "manager"]),
                            (249999, ["supervisor", "manager"]),
                            (250000, ["supervisor", "manager", "director"])]:  # fmt: skip
        instance = request(plant, item="BOLT-M8", quantity=quantity)
        data = plant.instance(instance, history=False)["data"]
        assert data["approval_roles"] == roles, (quantity, data["requisition"]["amount"])
        assert ready(plant, instance) == [("supervisor_approval", "supervisor")]


def test_below_1000_the_supervisor_approves_and_the_waiting_order_gets_its_material(
    plant: WorkflowEngine, sa_engine: Engine, clock: ManualClock
) -> None:
    orders(sa_engine, clock, "PO-7001", "PO-7002")
    waiting = plant.start("wait_for_material", {"order_number": "PO-7001"})["instance_id"]
    other = plant.start("wait_for_material", {"order_number": "PO-7002"})["instance_id"]
    instance = request(plant, order_number="PO-7001", item="BOLT-M8", quantity="400",
                       needed_by="2026-03-09")  # fmt: skip
    data = plant.instance(instance, history=False)["data"]
    assert (data["requisition"]["supplier"], data["requisition"]["amount"]) == (
        "SCHRAUBEN-KRAFT", "16.00")  # fmt: skip
    approve(plant, instance, "supervisor_approval", "sam")
    assert ready(plant, instance) == [("goods_receipt", "operator")]
    view = receive(plant, instance, "400", "B-2026-03")
    assert view["status"] == "completed", view.get("error")
    assert decisions(sa_engine) == [(1, "supervisor", "approve", "sam", False)]

    material = plant.instance(waiting, history=False)
    assert material["status"] == "completed"
    assert material["data"]["material"] == {
        "item": "BOLT-M8", "quantity": "400", "lot": "B-2026-03",
        "lots": [{"lot": "B-2026-03", "quantity": "400"}], "requisition": "PR-00001",
        "purchase_order": "PUR-00001", "order_number": "PO-7001"}  # fmt: skip
    assert plant.instance(other, history=False)["status"] == "active", "PO-7002 still waits"
    with Session(sa_engine) as s:
        assert on_hand(s, "BOLT-M8", "RM-STORES") == Decimal("400")
        assert requisition_view(s, "PR-00001")["status"] == "received"
        assert balance(s, "2100") == Decimal("-16.00") and trial_balance(s)["balanced"]


def test_up_to_10000_supervisor_and_manager_approve_and_deliveries_come_in_parts(
    plant: WorkflowEngine, sa_engine: Engine
) -> None:
    # A stand-alone requisition: no production order waits, so no message goes out.
    instance = request(plant, item="STEEL-S235-2", quantity="5000", requested_by="paul")
    approve(plant, instance, "supervisor_approval", "sam")
    assert ready(plant, instance) == [("manager_approval", "manager")]
    approve(plant, instance, "manager_approval", "mia")
    assert decisions(sa_engine) == [(1, "supervisor", "approve", "sam", False),
                                    (2, "manager", "approve", "mia", False)]  # fmt: skip

    receive(plant, instance, "3000.250", "H-81")
    task = plant.tasks(instance)[0]
    assert task["name"] == "goods_receipt"
    assert "1999.750 kg of STEEL-S235-2 still to come" in task["instructions"]
    # Too much, then no lot: each is refused, nothing is booked, the task comes back.
    receive(plant, instance, "2000", "H-82")
    assert "over-receipt refused" in plant.tasks(instance)[0]["instructions"]
    receive(plant, instance, "1999.750", None)
    assert "STEEL-S235-2 is tracked by lot" in plant.tasks(instance)[0]["instructions"]
    view = receive(plant, instance, "1999.750", "H-82")
    assert view["status"] == "completed", view.get("error")
    assert sent(plant, instance) == []
    with Session(sa_engine) as s:
        assert on_hand(s, "STEEL-S235-2", "RM-STORES", "H-81") == Decimal("3000.250")
        assert on_hand(s, "STEEL-S235-2", "RM-STORES", "H-82") == Decimal("1999.750")
        view = requisition_view(s, "PR-00001")
        assert (view["status"], view["requested_by"], view["amount"]) == (
            "received", "paul", Decimal("5750.00"))  # fmt: skip
        # Two receipts add up to the order's amount to the cent.
        assert balance(s, "2100") == Decimal("-5750.00")


def test_from_10000_the_director_approves_too_and_is_reminded_after_24_hours(
    plant: WorkflowEngine, sa_engine: Engine, clock: ManualClock
) -> None:
    instance = request(plant, item="STEEL-S235-2", quantity="10000")
    approve(plant, instance, "supervisor_approval", "sam")
    approve(plant, instance, "manager_approval", "mia")
    assert ready(plant, instance) == [("director_approval", "director")]
    task = plant.tasks(instance)[0]["task_id"]
    clock.advance(hours=24, minutes=1)
    plant.fire_due_timers()
    # Nobody is above the director: the task stays, a reminder goes out.
    assert [t["task_id"] for t in plant.tasks(instance)] == [task]
    assert sent(plant, instance) == ["approval_overdue"]
    with Session(sa_engine) as s:
        [waiting] = pending_approvals(s, now=clock.now())
        assert (waiting["level"], waiting["role"], waiting["overdue"]) == (3, "director", True)
    approve(plant, instance, "director_approval", "dora")
    assert decisions(sa_engine)[2] == (3, "director", "approve", "dora", False)
    assert ready(plant, instance) == [("goods_receipt", "operator")]


def test_a_rejection_at_the_manager_level_tells_the_waiting_order(
    plant: WorkflowEngine, sa_engine: Engine, clock: ManualClock
) -> None:
    orders(sa_engine, clock, "PO-7003")
    waiting = plant.start("wait_for_rejection", {"order_number": "PO-7003"})["instance_id"]
    instance = request(plant, order_number="PO-7003", item="STEEL-S235-2", quantity="2000")
    approve(plant, instance, "supervisor_approval", "sam")
    view = do(plant, instance, "manager_approval",
              {"decision": "reject", "reason": "Use the S355 offcuts in stock"}, "mia")  # fmt: skip
    assert view["status"] == "completed"
    assert decisions(sa_engine)[1] == (2, "manager", "reject", "mia", False)
    rejection = plant.instance(waiting, history=False)
    assert rejection["status"] == "completed"
    assert rejection["data"]["rejection"] == {
        "item": "STEEL-S235-2", "reason": "Use the S355 offcuts in stock",
        "order_number": "PO-7003"}  # fmt: skip
    with Session(sa_engine) as s:
        assert requisition_view(s, "PR-00001")["status"] == "rejected"
        assert s.scalar(select(func.count()).select_from(PurchaseOrder)) == 0


def test_a_request_nobody_can_supply_is_refused_to_the_order(
    plant: WorkflowEngine, sa_engine: Engine, clock: ManualClock
) -> None:
    orders(sa_engine, clock, "PO-7004")
    waiting = plant.start("wait_for_rejection", {"order_number": "PO-7004"})["instance_id"]
    instance = request(plant, order_number="PO-7004", item="BRACKET-A", quantity=5)
    assert plant.instance(instance, history=False)["status"] == "completed"
    reason = plant.instance(waiting, history=False)["data"]["rejection"]["reason"]
    assert reason == "no supplier sells BRACKET-A (see seed_data/suppliers.yaml)"


def test_the_supervisor_deadline_hands_the_decision_to_the_manager(
    plant: WorkflowEngine, sa_engine: Engine, clock: ManualClock
) -> None:
    instance = request(plant, item="STEEL-S235-2", quantity="5000")
    clock.advance(hours=3, minutes=59)
    plant.fire_due_timers()
    assert ready(plant, instance) == [("supervisor_approval", "supervisor")]
    clock.advance(minutes=2)
    plant.fire_due_timers()
    assert ready(plant, instance) == [("supervisor_escalated", "manager")]
    assert "did not decide requisition PR-00001 within PT4H" in (
        plant.tasks(instance)[0]["instructions"])  # fmt: skip
    with Session(sa_engine) as s:
        [waiting] = pending_approvals(s, now=clock.now())
        assert (waiting["role"], waiting["escalated"], waiting["escalated_from"]) == (
            "manager", True, "supervisor")  # fmt: skip
        assert waiting["age_hours"] == Decimal("4.0")
    # The manager's escalated decision also takes the manager's own level: asked once.
    approve(plant, instance, "supervisor_escalated", "mia")
    assert decisions(sa_engine) == [(1, "manager", "approve", "mia", True),
                                    (2, "manager", "approve", "mia", False)]  # fmt: skip
    assert ready(plant, instance) == [("goods_receipt", "operator")]


def test_the_manager_deadline_hands_the_decision_to_the_director(
    plant: WorkflowEngine, sa_engine: Engine, clock: ManualClock
) -> None:
    instance = request(plant, item="STEEL-S235-2", quantity="9000", supplier="METALL-NORD")
    assert plant.instance(instance, history=False)["data"]["approval_roles"] == [
        "supervisor", "manager", "director"]  # 9,000 kg x 1.26 = 11,340 EUR  # fmt: skip
    approve(plant, instance, "supervisor_approval", "sam")
    clock.advance(timedelta(hours=8, seconds=1))
    plant.fire_due_timers()
    assert ready(plant, instance) == [("manager_escalated", "director")]
    do(plant, instance, "manager_escalated",
       {"decision": "reject", "reason": "Order from the framework contract"}, "dora")  # fmt: skip
    assert decisions(sa_engine) == [(1, "supervisor", "approve", "sam", False),
                                    (2, "director", "reject", "dora", True)]  # fmt: skip
    assert plant.instance(instance, history=False)["status"] == "completed"
    assert sent(plant, instance) == [], "a stand-alone requisition tells no order"
