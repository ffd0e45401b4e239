"""Workflows 1 and 2 of the demo plant: order release (reservation, shortages bought through
purchasing, the planner's decision, the MQTT announcement) and routing execution (operations
in sequence on machines of their work center, the quality gate's rework and scrap, receipt
and close). The quality gate is a stand-in here, deciding what its test tells it to; its own
workflow is tested in test_quality_gate.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.auth.service import AccountService
from taktflow.config import DEFAULT_ROLES
from taktflow.engine.clock import ManualClock
from taktflow.engine.models import OutboxMessage
from taktflow.engine.runtime import WorkflowEngine
from taktflow.forms.service import TaskForms
from taktflow.mfg.ledger import balance, trial_balance
from taktflow.mfg.models import ProductionOrder
from taktflow.mfg.stock import move_stock, on_hand

FILES = (
    "workflows/order_release.yaml",
    "workflows/routing_execution.yaml",
    "workflows/financial_posting.bpmn",
    "forms/variance_review.yaml",
    "forms/order_release_approval.yaml",
    "forms/start_operation.yaml",
    "forms/complete_operation.yaml",
    "forms/issue_material.yaml",
    "forms/material_refused.yaml",
)

#: Stands in for workflows/quality_gate.yaml: the inspector types the disposition.
QUALITY_GATE = """\
process: quality_gate
lanes: [quality]
steps:
  - task: Decide the lot
    lane: quality
  - script: Result
    set:
      quality_result: "'pass' if disposition == 'none' else 'fail'"
      nonconformance: "'none'"
  - choose: Failed?
    branches:
      - when: disposition != 'none'
        steps:
          - service: Raise a nonconformance
            action: mfg.raise_nonconformance
            params: {item: item, lot: lot, quantity: quantity, defect_code: "'DIM-POS'",
                     description: "'stand-in gate'", order_number: order_number,
                     sequence: sequence}
            result: raised
          - script: Its id
            set:
              nonconformance: raised['id']
          - service: The manager's disposition
            action: mfg.disposition_nonconformance
            params: {nonconformance: nonconformance, disposition: disposition,
                     signature: approval}
"""


@pytest.fixture
def plant(plant_engine: WorkflowEngine, deploy: Callable[..., Any]) -> WorkflowEngine:
    plant_engine.deploy_text("quality_gate.yaml", QUALITY_GATE)
    deploy(*FILES)
    return plant_engine


def stock(sa_engine: Engine, clock: ManualClock, item: str, quantity: Any, lot: str = "") -> None:
    with Session(sa_engine) as s, s.begin():
        move_stock(
            s,
            item=item,
            quantity=quantity,
            reason="receipt",
            now=clock.now(),
            to_location="RM-STORES",
            lot=lot or None,
        )


def do(engine: WorkflowEngine, title: str, data: dict | None = None, actor: str = "olga") -> None:
    """Complete the one ready task with this title through its form, as the task page does:
    the form must render with the instance's data and accept what an operator would send."""
    ready = [t for t in engine.tasks() if t["title"] == title]
    assert len(ready) == 1, [t["title"] for t in engine.tasks()]
    forms = TaskForms(engine, AccountService(engine.bind, DEFAULT_ROLES.split(",")))
    shown = forms.view(ready[0]["task_id"], html=True)
    assert shown["form"] is None or shown["form"]["title"], shown
    sent = {k: v for k, v in (data or {}).items() if v is not None}
    forms.submit(ready[0]["task_id"], sent, actor=actor, check_password=None, strict=True)


def start_order(engine: WorkflowEngine, number: str, item: str, quantity: int) -> int:
    started = engine.start(
        "order_release",
        {
            "order_number": number,
            "item": item,
            "quantity": quantity,
            "priority": 3,
            "erp_reference": f"SO-{number}",
            "due_at": "2026-03-06T14:00:00+01:00",
        },
        actor="paul",
    )
    return started["instance_id"]


def signed(disposition: str) -> dict[str, Any]:
    """What a form's signature field stores when the manager signs a disposition."""
    return {
        "signer": "mia",
        "signed_at": "2026-03-02T06:00:00+00:00",
        "meaning": "disposition approved",
        "values": {"disposition": disposition},
    }


def run_operation(
    engine: WorkflowEngine, machine: str, good: int, scrap: int = 0, **extra: Any
) -> None:
    do(engine, "Start operation", {"machine": machine, "operator_badge": "op-7"})
    do(
        engine,
        "Complete operation",
        {"good": good, "scrap": scrap, "labour_hours": 1, "scrap_reason": "burr" if scrap else None}
        | extra,
    )


def test_an_order_with_material_runs_released_to_closed(
    plant: WorkflowEngine, sa_engine: Engine, clock: ManualClock
) -> None:
    stock(sa_engine, clock, "HINGE-BLANK", 100)
    stock(sa_engine, clock, "BOLT-M8", 100)
    stock(sa_engine, clock, "NUT-M8", 100)
    instance = start_order(plant, "PO-10", "HINGE-H1", 40)
    do(plant, "Approve release", {"decision": "release"}, actor="paul")
    with Session(sa_engine) as s:
        announced = s.scalars(select(OutboxMessage)).one()
        body = json.loads(announced.body)
        assert (announced.kind, body["topic"]) == ("mqtt.publish", "plant/p1/orders/released")
        assert body["payload"] == {
            "order": "PO-10",
            "item": "HINGE-H1",
            "quantity": 40,
            "lot": "L-PO-10",
        }
    # Operation 30 waits for 20: the operator only sees the start of 20.
    run_operation(plant, "press_2", good=39, scrap=1)
    run_operation(plant, "test_station_10", good=39)
    view = plant.instance(instance)
    assert view["status"] == "completed", view.get("error")
    with Session(sa_engine) as s:
        assert s.get(ProductionOrder, "PO-10").status == "closed"
        assert on_hand(s, "HINGE-H1", "FG", "L-PO-10") == 39
        assert on_hand(s, "HINGE-BLANK", "RM-STORES") == 100 - 2 * 40
        assert on_hand(s, "BOLT-M8", "RM-STORES") == 100 - 39
        assert balance(s, "1410", "PO-10") == 0 and trial_balance(s)["balanced"]


def test_a_shortage_is_bought_and_the_order_continues_when_the_goods_arrive(
    plant: WorkflowEngine, sa_engine: Engine, clock: ManualClock
) -> None:
    stock(sa_engine, clock, "HINGE-BLANK", 100)
    stock(sa_engine, clock, "NUT-M8", 100)
    stock(sa_engine, clock, "BOLT-M8", 15)
    instance = start_order(plant, "PO-11", "HINGE-H1", 40)
    # 25 bolts are missing: purchasing is asked (a message), and the order waits.
    with Session(sa_engine) as s:
        from taktflow.engine.models import InboxMessage

        requested = s.scalars(
            select(InboxMessage).where(InboxMessage.name == "purchase_requested")
        ).one()
        assert json.loads(requested.payload) | json.loads(requested.correlation) == {
            "order_number": "PO-11",
            "item": "BOLT-M8",
            "quantity": "25",
        } | json.loads(requested.correlation)
    assert [t["title"] for t in plant.tasks()] == []
    stock(sa_engine, clock, "BOLT-M8", 25, "")
    plant.send_message(
        "material_received",
        correlation={"order_number": "PO-11"},
        data={"item": "BOLT-M8", "quantity": "25"},
    )
    do(plant, "Approve release", {"decision": "release"}, actor="paul")
    assert plant.instance(instance)["status"] == "active"


def test_the_planner_can_cancel_and_a_made_part_short_asks_the_planner(
    plant: WorkflowEngine, sa_engine: Engine, clock: ManualClock
) -> None:
    stock(sa_engine, clock, "BOLT-M8", 100)
    stock(sa_engine, clock, "NUT-M8", 100)
    stock(sa_engine, clock, "HINGE-BLANK", 10)
    instance = start_order(plant, "PO-12", "HINGE-H1", 20)
    # Hinge blanks are made here, not bought: the planner is asked to plan them.
    [task] = plant.tasks()
    assert task["title"] == "Make the missing part" and "30 pcs more" in task["instructions"]
    stock(sa_engine, clock, "HINGE-BLANK", 30)
    plant.complete_task(task["task_id"], {}, actor="paul")
    do(plant, "Approve release", {"decision": "cancel"}, actor="paul")
    assert plant.instance(instance)["status"] == "completed"
    with Session(sa_engine) as s:
        assert s.get(ProductionOrder, "PO-12").status == "cancelled"


@pytest.mark.parametrize("disposition", ["rework", "scrap"])
def test_the_quality_gate_sends_the_lot_back_or_scraps_it(
    plant: WorkflowEngine, sa_engine: Engine, clock: ManualClock, disposition: str
) -> None:
    stock(sa_engine, clock, "BRACKET-BLANK", 50)
    stock(sa_engine, clock, "BOLT-M8", 400)
    instance = start_order(plant, "PO-13", "BRACKET-A", 10)
    do(plant, "Approve release", {"decision": "release"}, actor="paul")
    run_operation(plant, "press_1", good=10)
    run_operation(plant, "test_station_10", good=10)
    do(
        plant,
        "Decide the lot",
        {"disposition": disposition, "approval": signed(disposition)},
        actor="quinn",
    )
    if disposition == "rework":
        # Back through operation 30, and the gate again, which passes this time.
        run_operation(plant, "test_station_10", good=9, scrap=1)
        do(plant, "Decide the lot", {"disposition": "none"}, actor="quinn")
        expected_fg, expected_scrap = 9, 1
    else:
        expected_fg, expected_scrap = 0, 10
    assert plant.instance(instance)["status"] == "completed"
    with Session(sa_engine) as s:
        assert on_hand(s, "BRACKET-A", "FG") == expected_fg
        assert on_hand(s, "BRACKET-A", "SCRAP") == expected_scrap
        assert s.get(ProductionOrder, "PO-13").status == "closed"
        assert balance(s, "1410", "PO-13") == 0
        assert balance(s, "1430", "PO-13") == Decimal(2 * expected_scrap)


def test_sheet_metal_is_issued_by_hand_for_what_the_cut_made(
    plant: WorkflowEngine, sa_engine: Engine, clock: ManualClock
) -> None:
    stock(sa_engine, clock, "STEEL-S355-3", 60, "HEAT-1")
    stock(sa_engine, clock, "STEEL-S355-3", 60, "HEAT-2")
    instance = start_order(plant, "PO-14", "HINGE-BLANK", 100)
    do(plant, "Approve release", {"decision": "release"}, actor="paul")
    run_operation(plant, "laser_1", good=90, scrap=5)
    # 95 cut at 0.8 kg each with 5 % allowance: 79.8 kg proposed; the operator takes 80.
    [task] = plant.tasks(instance)
    assert task["title"] == "Issue material"
    forms = TaskForms(plant, AccountService(plant.bind, DEFAULT_ROLES.split(",")))
    shown = forms.view(task["task_id"], html=True)["form"]
    fields = {f["name"]: f for section in shown["sections"] for f in section["fields"]}
    assert str(fields["issued_quantity"]["default"]) == "79.8", fields["issued_quantity"]
    do(plant, "Issue material", {"issued_quantity": "80"})
    view = plant.instance(instance)
    assert view["status"] == "completed", view.get("error")
    with Session(sa_engine) as s:
        # Oldest lot first, then the rest; what was issued and not used shows as a variance.
        assert on_hand(s, "STEEL-S355-3", "RM-STORES", "HEAT-1") == 0
        assert on_hand(s, "STEEL-S355-3", "RM-STORES", "HEAT-2") == 40
        assert s.get(ProductionOrder, "PO-14").status == "closed"
        assert on_hand(s, "HINGE-BLANK", "RM-STORES", None) == 90
        assert balance(s, "1410", "PO-14") == 0 and trial_balance(s)["balanced"]


def test_a_rework_pass_issues_nothing_more(
    plant: WorkflowEngine, sa_engine: Engine, clock: ManualClock
) -> None:
    from taktflow.mfg.execution import manual_issues, rework_operation

    stock(sa_engine, clock, "STEEL-S355-3", 100, "HEAT-1")
    start_order(plant, "PO-15", "HINGE-BLANK", 50)
    do(plant, "Approve release", {"decision": "release"}, actor="paul")
    run_operation(plant, "laser_1", good=50)
    do(plant, "Issue material", {"issued_quantity": "42"})
    with Session(sa_engine) as s, s.begin():
        assert manual_issues(s, "PO-15", 10) == []
        rework_operation(s, "PO-15", 10, 5)
        assert manual_issues(s, "PO-15", 10) == []


def requests(sa_engine: Engine) -> list[dict]:
    from taktflow.engine.models import InboxMessage

    with Session(sa_engine) as s:
        rows = s.scalars(select(InboxMessage).where(InboxMessage.name == "purchase_requested")
                         .order_by(InboxMessage.id))  # fmt: skip
        return [json.loads(r.payload) for r in rows]


@pytest.mark.parametrize("decision", ["retry", "cancel"])
def test_a_refused_purchase_asks_the_planner_to_request_again_or_cancel(
    plant: WorkflowEngine, sa_engine: Engine, clock: ManualClock, decision: str
) -> None:
    stock(sa_engine, clock, "HINGE-BLANK", 100)
    instance = start_order(plant, "PO-16", "HINGE-H1", 40)
    # Bolts and nuts are both short: two purchases; purchasing refuses the nuts.
    assert sorted(r["item"] for r in requests(sa_engine)) == ["BOLT-M8", "NUT-M8"]
    plant.send_message(
        "procurement_rejected",
        correlation={"order_number": "PO-16"},
        data={"item": "NUT-M8", "reason": "requisition PR-00002 rejected: too expensive"},
    )
    [task] = plant.tasks(instance)
    assert task["title"] == "Material refused"
    assert (
        "Purchasing refused NUT-M8 for order PO-16: requisition PR-00002 rejected"
        in (task["instructions"])
    )
    do(plant, "Material refused", {"refusal_decision": decision}, actor="paul")
    with Session(sa_engine) as s:
        status = s.get(ProductionOrder, "PO-16").status
    if decision == "cancel":
        assert plant.instance(instance)["status"] == "completed" and status == "cancelled"
        return
    # Only the refused item is requested again; the order waits for both deliveries still.
    assert [r["item"] for r in requests(sa_engine)][2:] == ["NUT-M8"]
    assert requests(sa_engine)[2]["quantity"] == "40"
    assert status == "planned" and plant.tasks(instance) == []
    stock(sa_engine, clock, "BOLT-M8", 40)
    stock(sa_engine, clock, "NUT-M8", 40)
    for item in ("BOLT-M8", "NUT-M8"):
        plant.send_message("material_received", correlation={"order_number": "PO-16"},
                           data={"item": item, "quantity": "40"})  # fmt: skip
    do(plant, "Approve release", {"decision": "release"}, actor="paul")
    assert plant.instance(instance)["status"] == "active"


def test_after_two_weeks_the_planner_chases_and_nothing_is_requested_twice(
    plant: WorkflowEngine, sa_engine: Engine, clock: ManualClock
) -> None:
    stock(sa_engine, clock, "HINGE-BLANK", 100)
    stock(sa_engine, clock, "NUT-M8", 100)
    instance = start_order(plant, "PO-17", "HINGE-H1", 40)
    assert [r["item"] for r in requests(sa_engine)] == ["BOLT-M8"]
    clock.advance(days=14, minutes=1)
    plant.fire_due_timers()
    [chase] = plant.tasks(instance)
    assert chase["title"] == "Chase the missing material" and chase["lane"] == "planner"
    plant.complete_task(chase["task_id"], actor="paul")
    # Still short: the order waits for the bolts already requested, without a second request.
    assert [r["item"] for r in requests(sa_engine)] == ["BOLT-M8"]
    assert plant.tasks(instance) == []
    stock(sa_engine, clock, "BOLT-M8", 40)
    plant.send_message("material_received", correlation={"order_number": "PO-17"},
                       data={"item": "BOLT-M8", "quantity": "40"})  # fmt: skip
    assert [t["title"] for t in plant.tasks(instance)] == ["Approve release"]
