"""Production orders: bound to the current BOM and routing versions, one operation per routing
step, states moved only along the allowed paths; routings refuse bad operations by place."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from taktflow.engine.clock import ManualClock
from taktflow.errors import Conflict, NotFound, ValidationFailed
from taktflow.mfg.ledger import load_chart
from taktflow.mfg.orders import create_order, order_view, set_status
from taktflow.mfg.routing import load_plant_layout
from taktflow.mfg.stock import load_master_data

SEED = Path(__file__).parents[2] / "seed_data"


@pytest.fixture
def session(sa_engine: Any) -> Any:
    with Session(bind=sa_engine) as s:
        load_chart(s, SEED / "chart_of_accounts.yaml")
        load_master_data(s, SEED / "master_data.yaml")
        yield s


def test_an_order_gets_the_routing_operations_and_walks_its_states(
    session: Session, clock: ManualClock
) -> None:
    order = create_order(session, number="PO-1001", item="BRACKET-A", quantity=100,
                         now=clock.now(), erp_reference="SO-77/1")  # fmt: skip
    assert (order["status"], order["bom_version"], order["routing_version"]) == ("planned", 1, 1)
    assert [(o["sequence"], o["work_center"], o["planned"]) for o in order["operations"]] == [
        (20, "PRESS", Decimal("100")), (30, "ASSEMBLY", Decimal("100"))]  # fmt: skip
    for status in ("released", "running", "held", "running", "completed", "closed"):
        assert set_status(session, "PO-1001", status, now=clock.now())["status"] == status
    with pytest.raises(Conflict, match="PO-1001 is closed: it can become nothing"):
        set_status(session, "PO-1001", "running", now=clock.now())


def test_wrong_moves_and_orders_are_refused(session: Session, clock: ManualClock) -> None:
    create_order(session, number="PO-1", item="BRACKET-A", quantity=5, now=clock.now())
    with pytest.raises(Conflict, match="PO-1 is planned: it can become released, cancelled, "
                                       "not completed"):  # fmt: skip
        set_status(session, "PO-1", "completed", now=clock.now())
    with pytest.raises(Conflict, match="exists already"):
        create_order(session, number="PO-1", item="BRACKET-A", quantity=5, now=clock.now())
    with pytest.raises(ValidationFailed, match="BOLT-M8 has no bill of materials"):
        create_order(session, number="PO-2", item="BOLT-M8", quantity=5, now=clock.now())
    with pytest.raises(ValidationFailed, match="at most 0 decimals"):
        create_order(session, number="PO-3", item="BRACKET-A", quantity="2.5", now=clock.now())
    with pytest.raises(NotFound, match="'PO-404' does not exist"):
        order_view(session, "PO-404")


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        ({"item": "BOLT-M8", "operations": [{"sequence": 10, "work_center": "MOON",
                                             "cycle_s": 1}]}, "work center 'MOON' does not"),
        ({"item": "BOLT-M8", "operations": [{"sequence": 10, "work_center": "PRESS",
                                             "cycle_s": 0}]}, "cycle_s (ideal seconds per unit)"),
        ({"item": "BOLT-M8", "operations": [
            {"sequence": 10, "work_center": "PRESS", "cycle_s": 1},
            {"sequence": 10, "work_center": "PRESS", "cycle_s": 1}]},
         "operation 2: sequence must be a whole number, unique"),
    ],
)  # fmt: skip
def test_bad_routings_are_refused_with_their_place(
    session: Session, routing: dict, message: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        load_plant_layout(session, {"routings": [routing]}, "master.yaml")
    assert message in refused.value.message
    assert "master.yaml: routing 1 (BOLT-M8 v1)" in refused.value.message


RELEASE = """\
process: release_order
steps:
  - service: Create the order
    action: mfg.create_order
    params: {number: number, item: item, quantity: quantity, erp_reference: "'SO-1'"}
    result: order
  - service: Release it
    action: mfg.set_order_status
    params: {number: number, status: "'released'"}
    result: released
  - service: Complete it too early
    action: mfg.set_order_status
    params: {number: number, status: "'closed'"}
"""


def test_a_workflow_creates_and_releases_an_order_and_is_stopped_by_a_wrong_move(
    sa_engine: Any, clock: ManualClock, session: Session
) -> None:
    from taktflow.engine.actions import ActionRegistry, builtin_actions
    from taktflow.engine.runtime import WorkflowEngine
    from taktflow.mfg.actions import register_mfg_actions
    from taktflow.yamlflow import COMPILERS

    session.commit()
    registry = ActionRegistry()
    builtin_actions(registry)
    register_mfg_actions(registry)
    engine = WorkflowEngine(sa_engine, clock=clock, actions=registry, compilers=COMPILERS)
    engine.deploy_text("release_order.yaml", RELEASE)

    run = engine.start("release_order", {"number": "PO-9", "item": "BRACKET-A", "quantity": 40})

    view = engine.instance(run["instance_id"])
    assert view["status"] == "error"
    assert "PO-9 is released: it can become running, held, cancelled, not closed" in (
        view["error"]["message"])  # fmt: skip
    data = view["data"]
    assert data["order"]["quantity"] == "40" and data["released"]["status"] == "released"
    session.expire_all()
    assert order_view(session, "PO-9")["status"] == "released"
