"""Business errors: an action raises BusinessError(code); an error handler on the step (an
error boundary event) takes the workflow down the error path. Without a handler for that
code the step fails like any other action error, and the instance goes to error."""

from __future__ import annotations

import pytest

from taktflow.engine import models as m
from taktflow.engine.actions import ActionContext, ActionRegistry, BusinessError, Param
from taktflow.engine.runtime import WorkflowEngine

WORKFLOW = """\
process: reserve_steel
steps:
  - service: Reserve material
    action: test.reserve
    params: {qty: qty}
    result: reservation
    on_error:
      - code: shortage
        steps:
          - script: Note the shortage
            set: {path: "'shortage'", why: "error['message']"}
      - code: blocked
        steps:
          - end: Item blocked
  - script: Carry on
    set: {done: true}
"""

CATCH_ALL = """\
process: reserve_steel
steps:
  - service: Reserve material
    action: test.reserve
    params: {qty: qty}
    result: reservation
    on_error:
      - steps: []
  - script: Carry on
    set: {done: true}
"""


@pytest.fixture
def reserve(actions: ActionRegistry) -> list[int]:
    calls: list[int] = []

    def reserve_material(ctx: ActionContext, qty: int) -> dict:
        calls.append(qty)
        if qty > 100:
            raise BusinessError("shortage", f"only 100 in stock, {qty} wanted")
        if qty == 13:
            raise BusinessError("blocked", "item blocked by quality")
        if qty == 7:
            raise BusinessError("unknown_code", "nobody handles this")
        return {"reserved": qty}

    actions.register("test.reserve", reserve_material, [Param("qty", "int")])
    return calls


def test_no_error_takes_the_normal_path(engine: WorkflowEngine, reserve: list[int]) -> None:
    engine.deploy_text("reserve.yaml", WORKFLOW)
    view = engine.start("reserve_steel", {"qty": 40})
    done = engine.instance(view["instance_id"])
    assert done["status"] == m.COMPLETED
    assert done["data"]["reservation"] == {"reserved": 40}
    assert "path" not in done["data"]
    assert done["data"]["done"] is True


def test_a_handled_code_takes_its_path_and_rejoins(
    engine: WorkflowEngine, reserve: list[int]
) -> None:
    engine.deploy_text("reserve.yaml", WORKFLOW)
    view = engine.instance(engine.start("reserve_steel", {"qty": 500})["instance_id"])
    assert view["status"] == m.COMPLETED
    assert view["data"]["path"] == "shortage"
    assert view["data"]["why"] == "only 100 in stock, 500 wanted"
    assert view["data"]["done"] is True
    assert "reservation" not in view["data"]
    assert reserve == [500]  # called once: the error is an answer, not a retry


def test_a_handler_can_end_the_workflow(engine: WorkflowEngine, reserve: list[int]) -> None:
    engine.deploy_text("reserve.yaml", WORKFLOW)
    view = engine.instance(engine.start("reserve_steel", {"qty": 13})["instance_id"])
    assert view["status"] == m.COMPLETED
    assert "done" not in view["data"]
    assert "path" not in view["data"]


def test_an_unhandled_code_fails_the_step(engine: WorkflowEngine, reserve: list[int]) -> None:
    engine.deploy_text("reserve.yaml", WORKFLOW)
    view = engine.instance(engine.start("reserve_steel", {"qty": 7})["instance_id"])
    assert view["status"] == m.ERROR
    assert "unknown_code" in view["error"]["message"]
    assert "no on_error handler" in view["error"]["message"]


def test_a_handler_without_code_catches_any_business_error(
    engine: WorkflowEngine, reserve: list[int]
) -> None:
    engine.deploy_text("reserve.yaml", CATCH_ALL)
    view = engine.instance(engine.start("reserve_steel", {"qty": 7})["instance_id"])
    assert view["status"] == m.COMPLETED
    assert view["data"]["done"] is True


def test_a_technical_failure_is_not_a_business_error(
    engine: WorkflowEngine, actions: ActionRegistry
) -> None:
    def broken(ctx: ActionContext, qty: int) -> dict:
        raise RuntimeError("PLC unreachable")

    actions.register("test.reserve", broken, [Param("qty", "int")])
    engine.deploy_text("reserve.yaml", CATCH_ALL)
    view = engine.instance(engine.start("reserve_steel", {"qty": 1})["instance_id"])
    assert view["status"] == m.ERROR
    assert "PLC unreachable" in view["error"]["message"]
