"""One small BPMN file per construct (tests/engine/bpmn/), deployed and driven through the engine.

Every test deploys through `WorkflowEngine`, runs the instance to its expected end state and
checks what could go wrong: the path taken, the final data, the status, the ready tasks and
the kinds of audit events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from taktflow.engine import models as m
from taktflow.engine.actions import ActionContext, ActionRegistry, Param
from taktflow.engine.clock import ManualClock
from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import DefinitionError, NotFound

BPMN = Path(__file__).parent / "bpmn"


# ---------------------------------------------------------------------- helpers
def deploy(engine: WorkflowEngine, *names: str) -> list[dict]:
    return engine.deploy_paths([BPMN / name for name in names])


def start(engine: WorkflowEngine, process_id: str, data: dict | None = None) -> int:
    return engine.start(process_id, data or {})["instance_id"]


def ready(engine: WorkflowEngine, instance_id: int) -> list[str]:
    """Element ids of the instance's ready human tasks, sorted."""
    return sorted(t["name"] for t in engine.tasks(instance_id))


def the_task(engine: WorkflowEngine, instance_id: int, name: str) -> dict:
    [task] = [t for t in engine.tasks(instance_id) if t["name"] == name]
    return task


def complete(
    engine: WorkflowEngine, instance_id: int, name: str, data: dict | None = None, **kw: Any
) -> dict:
    return engine.complete_task(the_task(engine, instance_id, name)["task_id"], data or {}, **kw)


def kinds(view: dict) -> list[str]:
    return [event["kind"] for event in view["history"]]


def status(engine: WorkflowEngine, instance_id: int) -> str:
    return engine.instance(instance_id)["status"]


def data(engine: WorkflowEngine, instance_id: int) -> dict:
    return engine.instance(instance_id)["data"]


# ---------------------------------------------------------------------- 1. sequence
def test_sequence_script_user_task_script(engine: WorkflowEngine) -> None:
    deploy(engine, "sequence.bpmn")
    instance_id = start(engine, "sequence", {"order_id": "PO-7"})

    view = engine.instance(instance_id)
    assert view["status"] == m.ACTIVE
    assert [t["name"] for t in view["ready_tasks"]] == ["review"]
    assert view["data"]["steps"] == ["prepare"] and view["data"]["label"] == "Order PO-7"
    assert "summary" not in view["data"]

    view = complete(engine, instance_id, "review", {"reviewer": "ann"}, actor="ann")
    assert view["status"] == m.COMPLETED
    assert view["data"]["steps"] == ["prepare", "finish"]
    assert view["data"]["summary"] == "Order PO-7 reviewed by ann"
    assert view["ready_tasks"] == [] and view["waiting"] == []
    assert kinds(view) == ["started", "task_completed", "completed"]
    assert view["history"][1]["element_id"] == "review" and view["history"][1]["actor"] == "ann"


# ---------------------------------------------------------------------- 2. exclusive gateway
@pytest.mark.parametrize(
    ("priority", "qty", "expected"),
    [("high", 5000, "express"), ("low", 5000, "bulk"), ("low", 5, "standard")],
    ids=["first-condition", "second-condition", "default-flow"],
)
def test_exclusive_gateway(engine: WorkflowEngine, priority: str, qty: int, expected: str) -> None:
    deploy(engine, "exclusive_gateway.bpmn")
    instance_id = start(engine, "exclusive_gateway", {"priority": priority, "qty": qty})
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert view["data"]["lane_taken"] == expected


# ---------------------------------------------------------------------- 3. parallel gateway
def test_parallel_split_and_join_waits_for_both(engine: WorkflowEngine) -> None:
    deploy(engine, "parallel_gateway.bpmn")
    instance_id = start(engine, "parallel_gateway")
    assert ready(engine, instance_id) == ["check_dimensions", "check_surface"]

    view = complete(engine, instance_id, "check_surface", {"surface_ok": True})
    assert view["status"] == m.ACTIVE
    assert [t["name"] for t in view["ready_tasks"]] == ["check_dimensions"]
    assert "checks" not in view["data"]  # the join has not let the merge script run yet

    view = complete(engine, instance_id, "check_dimensions", {"dimensions_ok": False})
    assert view["status"] == m.COMPLETED
    assert view["data"]["checks"] == {"dimensions": False, "surface": True}
    assert view["data"]["all_ok"] is False
    assert kinds(view) == ["started", "task_completed", "task_completed", "completed"]


# ---------------------------------------------------------------------- 4. inclusive gateway
def test_inclusive_gateway_takes_two_of_three_and_joins_once(engine: WorkflowEngine) -> None:
    deploy(engine, "inclusive_gateway.bpmn")
    instance_id = start(
        engine, "inclusive_gateway", {"holes": 4, "color": "red", "needs_weld": False}
    )
    view = engine.instance(instance_id)
    assert view["status"] == m.ACTIVE
    # Exactly one task after the join: it did not fire once per incoming branch.
    assert [t["name"] for t in view["ready_tasks"]] == ["final_check"]
    assert view["data"]["drilled"] == 4 and view["data"]["painted"] == "red"
    assert "welded" not in view["data"]

    view = complete(engine, instance_id, "final_check")
    assert view["status"] == m.COMPLETED
    assert view["ready_tasks"] == []
    assert kinds(view).count("task_completed") == 1


# ---------------------------------------------------------------------- 5. script tasks
def test_script_tasks_build_lists_and_dicts(engine: WorkflowEngine) -> None:
    deploy(engine, "script_tasks.bpmn")
    instance_id = start(
        engine,
        "script_tasks",
        {
            "order_qty": 10,
            "bom": {"plate": 1, "bolt": 4, "weld_wire": 0.5},
            "stock": {"bolt": 50, "plate": 3},
        },
    )
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    result = view["data"]
    assert result["lines"] == [
        {"part": "bolt", "qty": 40},
        {"part": "plate", "qty": 10},
        {"part": "weld_wire", "qty": 5.0},
    ]
    assert result["need"] == {"bolt": 40, "plate": 10, "weld_wire": 5.0}
    assert result["shortages"] == {"plate": 7, "weld_wire": 5.0}
    assert result["short_parts"] == ["plate", "weld_wire"]
    assert result["can_release"] is False


# ---------------------------------------------------------------------- 6. user and manual tasks
def test_user_and_manual_task_with_lane_form_and_instructions(engine: WorkflowEngine) -> None:
    deploy(engine, "human_tasks.bpmn")
    instance_id = start(
        engine,
        "human_tasks",
        {"order_id": "PO-9", "qty": 25, "part": "bracket", "rush": True},
    )
    [plan] = engine.tasks(instance_id)
    assert plan["name"] == "plan_order" and plan["title"] == "Plan order"
    assert plan["kind"] == "user"
    assert plan["lane"] == "Planning"
    assert plan["form"] == "plan-order"
    assert plan["instructions"] == "Plan 25 pcs of bracket for order PO-9 (rush)"
    assert plan["process_id"] == "human_tasks" and plan["instance_id"] == instance_id

    engine.complete_task(plan["task_id"], {"machine": "CNC-2"}, actor="planner")
    [load] = engine.tasks(instance_id)
    assert load["name"] == "load_machine" and load["kind"] == "manual"
    assert load["lane"] == "Shopfloor" and load["form"] is None
    # Rendered from the data the user task submitted.
    assert load["instructions"] == "Load CNC-2 with bracket"

    view = engine.complete_task(load["task_id"], actor="operator")
    assert view["status"] == m.COMPLETED
    completed = [e for e in view["history"] if e["kind"] == "task_completed"]
    assert [(e["element_id"], e["actor"], e["details"]["lane"]) for e in completed] == [
        ("plan_order", "planner", "Planning"),
        ("load_machine", "operator", "Shopfloor"),
    ]


# ---------------------------------------------------------------------- 7. service task
def test_service_task_calls_registered_action(
    engine: WorkflowEngine, actions: ActionRegistry
) -> None:
    calls: list[dict[str, Any]] = []

    def scale(ctx: ActionContext, qty: int, factor: float, unit: str) -> dict[str, Any]:
        calls.append(
            {
                "instance_id": ctx.instance_id,
                "process_id": ctx.process_id,
                "element_id": ctx.element_id,
                "task_id": ctx.task_id,
                "params": (qty, factor, unit),
            }
        )
        return {"qty": round(qty * factor), "unit": unit}

    actions.register(
        "test.scale", scale, [Param("qty", "int"), Param("factor", "float"), Param("unit", "str")]
    )
    deploy(engine, "service_task.bpmn")
    instance_id = start(engine, "service_task", {"qty": 10, "factor": 1.5})

    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert view["data"]["scaled"] == {"qty": 15, "unit": "pcs"}
    assert view["data"]["planned_qty"] == 15
    [call] = calls
    assert call["instance_id"] == instance_id
    assert call["process_id"] == "service_task"
    assert call["element_id"] == "scale_order"
    assert call["params"] == (10, 1.5, "pcs")
    assert call["task_id"]


def test_service_task_with_unregistered_action_is_refused_at_deploy(
    engine: WorkflowEngine,
) -> None:
    with pytest.raises(DefinitionError) as caught:
        deploy(engine, "service_task_unknown_action.bpmn")
    [problem] = caught.value.problems
    assert problem.element == "call_missing"
    assert "test.missing" in problem.reason
    assert problem.file.endswith("service_task_unknown_action.bpmn")
    assert engine.processes() == []


# ---------------------------------------------------------------------- 8. business rule task
@pytest.mark.parametrize(
    ("defects", "grade", "action"),
    [(0, "A", "ship"), (2, "B", "ship"), (7, "C", "scrap")],
)
def test_business_rule_task_evaluates_dmn(
    engine: WorkflowEngine, defects: int, grade: str, action: str
) -> None:
    results = deploy(engine, "business_rule.bpmn", "grade.dmn")
    assert {(r["kind"], r["process_id"] or r["decision_id"], r["version"]) for r in results} == {
        ("process", "business_rule", 1),
        ("decision", "grade_decision", 1),
    }
    instance_id = start(engine, "business_rule", {"defects": defects})
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert (view["data"]["grade"], view["data"]["action"]) == (grade, action)


def test_redeploying_a_changed_dmn_makes_a_new_process_version(engine: WorkflowEngine) -> None:
    deploy(engine, "business_rule.bpmn", "grade.dmn")
    assert data(engine, start(engine, "business_rule", {"defects": 7}))["action"] == "scrap"

    # Same content again: nothing new.
    again = deploy(engine, "grade.dmn")
    assert [(r["kind"], r["version"], r["changed"]) for r in again] == [("decision", 1, False)]

    changed_dmn = (BPMN / "grade.dmn").read_text().replace('"scrap"', '"rework"')
    results = engine.deploy_text("grade.dmn", changed_dmn)
    by_kind = {r["kind"]: r for r in results}
    assert by_kind["decision"]["decision_id"] == "grade_decision"
    assert by_kind["decision"]["version"] == 2 and by_kind["decision"]["changed"] is True
    assert by_kind["process"]["process_id"] == "business_rule"
    assert by_kind["process"]["version"] == 2 and by_kind["process"]["changed"] is True

    started = engine.start("business_rule", {"defects": 7})
    assert started["version"] == 2
    assert data(engine, started["instance_id"])["action"] == "rework"
    # Version 1 still decides with the table it was deployed with.
    old = engine.start("business_rule", {"defects": 7}, version=1)
    assert data(engine, old["instance_id"])["action"] == "scrap"


# ---------------------------------------------------------------------- 9. call activity
def test_call_activity_passes_data_in_and_out(engine: WorkflowEngine) -> None:
    deploy(engine, "call_activity_callee.bpmn")
    results = deploy(engine, "call_activity_caller.bpmn")
    assert [(r["process_id"], r["changed"]) for r in results] == [("call_activity", True)]

    instance_id = start(engine, "call_activity")
    [task] = engine.tasks(instance_id)
    assert task["name"] == "confirm_total" and task["process_id"] == "call_activity"
    # Only the declared data input reached the callee: no "secret" in its data.
    assert task["instructions"] == "Confirm 12 from [3, 4, 5]"

    view = engine.complete_task(task["task_id"])
    assert view["status"] == m.COMPLETED
    assert view["data"]["total"] == 12
    assert view["data"]["report"] == "total=12"
    assert view["data"]["secret"] == "caller only"  # the caller's own data is kept
    assert "scratch" not in view["data"]  # only the declared data output came back


# ---------------------------------------------------------------------- 10. embedded subprocess
def test_embedded_subprocess(engine: WorkflowEngine) -> None:
    deploy(engine, "subprocess.bpmn")
    instance_id = start(engine, "embedded_subprocess", {"part": "P", "kit_size": 3})
    [task] = engine.tasks(instance_id)
    assert task["name"] == "pick_parts" and task["title"] == "Pick parts"
    assert status(engine, instance_id) == m.ACTIVE

    view = engine.complete_task(task["task_id"], {"picked": ["P-1", "P-2", "P-3"]})
    assert view["status"] == m.COMPLETED
    assert view["data"]["kit"] == ["P-1", "P-2", "P-3"]  # computed inside the subprocess
    assert view["data"]["kit_done"] is True


@pytest.mark.parametrize(
    ("files", "process_id", "key", "value"),
    [
        (["subprocess.bpmn"], "embedded_subprocess", "kit", ["P-1", "P-2", "P-3"]),
        (["call_activity_callee.bpmn", "call_activity_caller.bpmn"], "call_activity", "total", 12),
    ],
    ids=["embedded-subprocess", "call-activity"],
)
def test_instance_data_while_inside_a_subprocess(
    engine: WorkflowEngine, files: list[str], process_id: str, key: str, value: Any
) -> None:
    for name in files:
        deploy(engine, name)
    instance_id = start(engine, process_id, {"part": "P", "kit_size": 3})
    # A script inside the (called) subprocess has run before the user task there became
    # ready; its result belongs to the instance's current data.
    assert data(engine, instance_id)[key] == value


# ---------------------------------------------------------------------- 11. messages
def test_message_start_event_starts_an_instance(engine: WorkflowEngine) -> None:
    deploy(engine, "message_start.bpmn")
    result = engine.send_message("work_order_released", data={"order_id": "WO-1", "qty": 8})
    assert result.delivered_to == [] and not result.buffered
    [instance_id] = result.started

    view = engine.instance(instance_id)
    assert view["process_id"] == "message_start" and view["status"] == m.ACTIVE
    assert view["data"]["work_order"] == {"order_id": "WO-1", "qty": 8}
    assert (view["data"]["order_id"], view["data"]["qty"]) == ("WO-1", 8)
    assert [t["name"] for t in view["ready_tasks"]] == ["dispatch"]
    assert kinds(view) == ["started", "message_received"]

    second = engine.send_message("work_order_released", data={"order_id": "WO-2", "qty": 1})
    assert len(second.started) == 1 and second.started != result.started


def test_intermediate_message_catch_is_correlated_by_order_id(engine: WorkflowEngine) -> None:
    deploy(engine, "message_correlation.bpmn")
    first = start(engine, "message_correlation", {"order_id": "A-1"})
    second = start(engine, "message_correlation", {"order_id": "B-2"})
    waiting_first = engine.instance(first)["waiting"]
    assert waiting_first == [
        {
            "kind": "message",
            "name": "goods_received",
            "element_id": "wait_goods",
            "correlation": {"order_id": "A-1"},
        }
    ]

    result = engine.send_message("goods_received", correlation={"order_id": "B-2"}, data={"qty": 5})
    assert result.delivered_to == [second] and result.started == []

    view = engine.instance(second)
    assert view["status"] == m.COMPLETED
    assert view["data"]["received_qty"] == 5
    assert view["data"]["receipt"]["qty"] == 5
    assert kinds(view) == ["started", "message_received", "completed"]
    assert status(engine, first) == m.ACTIVE
    assert engine.instance(first)["waiting"] == waiting_first

    # No instance waits for C-3: the message is kept, not handed to A-1.
    unknown = engine.send_message("goods_received", correlation={"order_id": "C-3"}, data={})
    assert unknown.delivered_to == [] and unknown.buffered
    assert status(engine, first) == m.ACTIVE


def test_buffered_message_reaches_the_instance_whose_wait_appears_later(
    engine: WorkflowEngine,
) -> None:
    deploy(engine, "message_correlation.bpmn")
    early = engine.send_message("goods_received", correlation={"order_id": "C-3"}, data={"qty": 2})
    assert early.buffered and early.delivered_to == [] and early.started == []

    other = start(engine, "message_correlation", {"order_id": "D-4"})
    assert status(engine, other) == m.ACTIVE  # a different order id does not take it
    instance_id = start(engine, "message_correlation", {"order_id": "C-3"})
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert view["data"]["received_qty"] == 2
    delivery = engine.delivery(early.message_id)
    assert delivery.delivered_to == [instance_id] and not delivery.buffered


def test_receive_task(engine: WorkflowEngine) -> None:
    deploy(engine, "receive_task.bpmn")
    instance_id = start(engine, "receive_task")
    assert engine.instance(instance_id)["waiting"] == [
        {
            "kind": "message",
            "name": "inspection_result",
            "element_id": "wait_inspection",
            "correlation": {},
        }
    ]
    result = engine.send_message("inspection_result", data={"defects": 0, "inspector": "qa-1"})
    assert result.delivered_to == [instance_id]
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert view["data"]["inspection"] == {"defects": 0, "inspector": "qa-1"}
    assert view["data"]["passed"] is True
    assert view["waiting"] == []


def test_interrupting_message_boundary_event_on_user_task(engine: WorkflowEngine) -> None:
    deploy(engine, "message_boundary.bpmn")
    instance_id = start(engine, "message_boundary")
    [task] = engine.tasks(instance_id)
    assert task["name"] == "assemble"
    assert engine.instance(instance_id)["waiting"] == [
        {"kind": "message", "name": "order_cancelled", "element_id": "cancelled", "correlation": {}}
    ]

    result = engine.send_message("order_cancelled", data={"reason": "customer"})
    assert result.delivered_to == [instance_id]
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert view["data"]["outcome"] == "cancelled: customer"
    assert view["ready_tasks"] == [] and view["waiting"] == []
    assert "task_completed" not in kinds(view)
    with pytest.raises(NotFound):
        engine.complete_task(task["task_id"])


def test_message_boundary_not_triggered_when_task_completes(engine: WorkflowEngine) -> None:
    deploy(engine, "message_boundary.bpmn")
    instance_id = start(engine, "message_boundary")
    view = complete(engine, instance_id, "assemble")
    assert view["status"] == m.COMPLETED
    assert view["data"]["outcome"] == "assembled"
    assert view["waiting"] == []
    late = engine.send_message("order_cancelled", data={"reason": "too late"})
    assert late.delivered_to == []


# ---------------------------------------------------------------------- 12. outgoing messages
def test_send_task_and_throw_event_are_routed_to_the_correlated_instance(
    engine: WorkflowEngine,
) -> None:
    deploy(engine, "message_routing.bpmn")
    other = start(engine, "quote_supplier", {"order_id": "Q-1"})
    supplier = start(engine, "quote_supplier", {"order_id": "Q-2"})

    requester = start(engine, "quote_requester", {"order_id": "Q-2", "qty": 40, "due": "03-09"})

    assert status(engine, requester) == m.COMPLETED
    sent = [e for e in engine.history(requester) if e["kind"] == "message_sent"]
    assert [(e["details"]["name"], e["details"]["correlation"]) for e in sent] == [
        ("quote_requested", {"order_id": "Q-2"}),
        ("order_released", {"order_id": "Q-2"}),
    ]
    view = engine.instance(supplier)
    assert view["status"] == m.COMPLETED
    assert view["data"]["request"] == {"order_id": "Q-2", "qty": 40}
    assert (view["data"]["quoted_qty"], view["data"]["ship_by"]) == (40, "03-09")
    assert kinds(view) == ["started", "message_received", "message_received", "completed"]

    untouched = engine.instance(other)
    assert untouched["status"] == m.ACTIVE
    assert untouched["waiting"] == [
        {
            "kind": "message",
            "name": "quote_requested",
            "element_id": "wait_request",
            "correlation": {"order_id": "Q-1"},
        }
    ]


# ---------------------------------------------------------------------- 13. signals
def test_signal_thrown_by_one_instance_reaches_waiting_instances(engine: WorkflowEngine) -> None:
    deploy(engine, "signals.bpmn")
    watchers = [start(engine, "line_watcher", {"station": s}) for s in ("ST-1", "ST-2")]
    assert engine.instance(watchers[0])["waiting"] == [
        {"kind": "signal", "name": "line_stop", "element_id": "wait_stop"}
    ]

    stopper = start(engine, "line_stopper", {"line": "L3", "reason": "jam"})
    assert status(engine, stopper) == m.COMPLETED
    assert "signal_sent" in kinds(engine.instance(stopper))
    for watcher, station in zip(watchers, ("ST-1", "ST-2"), strict=True):
        view = engine.instance(watcher)
        assert view["status"] == m.COMPLETED
        assert view["data"]["stop"] == {"line": "L3", "reason": "jam"}
        assert view["data"]["halted"] == f"{station} halted on L3: jam"
        assert "signal_received" in kinds(view)


def test_send_signal_reaches_a_waiting_instance(engine: WorkflowEngine) -> None:
    deploy(engine, "signals.bpmn")
    watcher = start(engine, "line_watcher", {"station": "ST-9"})
    result = engine.send_signal("line_stop", data={"line": "L1", "reason": "maintenance"})
    assert result.delivered_to == [watcher]
    view = engine.instance(watcher)
    assert view["status"] == m.COMPLETED
    assert view["data"]["halted"] == "ST-9 halted on L1: maintenance"
    assert view["waiting"] == []


# ---------------------------------------------------------------------- 14. timers
def test_duration_timer(engine: WorkflowEngine, clock: ManualClock) -> None:
    deploy(engine, "timer_duration.bpmn")
    instance_id = start(engine, "timer_duration")
    assert engine.instance(instance_id)["waiting"] == [
        {
            "kind": "timer",
            "name": "Cure 2 h",
            "element_id": "cure",
            "due": "2026-03-02T08:00:00+00:00",
        }
    ]

    clock.advance(hours=1, minutes=59)
    assert engine.fire_due_timers() == 0
    assert status(engine, instance_id) == m.ACTIVE
    assert "cured" not in data(engine, instance_id)

    clock.advance(minutes=1)
    assert engine.fire_due_timers() == 1
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert view["data"]["cured"] is True
    assert view["waiting"] == []
    assert kinds(view) == ["started", "timer_fired", "completed"]
    assert view["history"][1]["element_id"] == "cure"
    assert engine.fire_due_timers() == 0  # nothing fires twice


def test_date_timer(engine: WorkflowEngine, clock: ManualClock) -> None:
    deploy(engine, "timer_date.bpmn")
    instance_id = start(engine, "timer_date")
    [wait] = engine.instance(instance_id)["waiting"]
    assert wait == {
        "kind": "timer",
        "name": "Shift start",
        "element_id": "shift_start",
        "due": "2026-03-02T09:30:00+00:00",
    }

    clock.advance(hours=3, minutes=29)
    assert engine.fire_due_timers() == 0
    assert status(engine, instance_id) == m.ACTIVE

    clock.advance(minutes=1)
    assert engine.fire_due_timers() == 1
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED and view["data"]["shift_started"] is True


def test_interrupting_boundary_timer_escalates(engine: WorkflowEngine, clock: ManualClock) -> None:
    deploy(engine, "timer_boundary.bpmn")
    instance_id = start(engine, "timer_boundary")
    [approve] = engine.tasks(instance_id)
    assert approve["name"] == "approve"
    assert engine.instance(instance_id)["waiting"] == [
        {
            "kind": "timer",
            "name": "Approval overdue",
            "element_id": "approval_overdue",
            "due": "2026-03-02T10:00:00+00:00",
        }
    ]

    clock.advance(hours=3)
    assert engine.fire_due_timers() == 0
    assert ready(engine, instance_id) == ["approve"]

    clock.advance(hours=1)
    assert engine.fire_due_timers() == 1
    view = engine.instance(instance_id)
    assert view["status"] == m.ACTIVE
    assert [t["name"] for t in view["ready_tasks"]] == ["escalate"]
    assert view["waiting"] == []
    with pytest.raises(NotFound):
        engine.complete_task(approve["task_id"])

    view = complete(engine, instance_id, "escalate")
    assert view["status"] == m.COMPLETED
    assert kinds(view) == ["started", "timer_fired", "task_completed", "completed"]


def test_non_interrupting_boundary_timer_keeps_the_task(
    engine: WorkflowEngine, clock: ManualClock
) -> None:
    deploy(engine, "timer_boundary_noninterrupting.bpmn")
    instance_id = start(engine, "timer_boundary_noninterrupting")
    [setup] = engine.tasks(instance_id)
    assert engine.instance(instance_id)["waiting"] == [
        {
            "kind": "timer",
            "name": "Setup slow",
            "element_id": "setup_slow",
            "due": "2026-03-02T07:00:00+00:00",
        }
    ]
    clock.advance(minutes=59)
    assert engine.fire_due_timers() == 0
    assert ready(engine, instance_id) == ["setup_machine"]

    clock.advance(minutes=1)
    assert engine.fire_due_timers() == 1
    assert ready(engine, instance_id) == ["notify_supervisor", "setup_machine"]
    # The original task is still the same task, not a new one.
    assert the_task(engine, instance_id, "setup_machine")["task_id"] == setup["task_id"]
    assert status(engine, instance_id) == m.ACTIVE
    assert engine.instance(instance_id)["waiting"] == []  # a duration fires once
    clock.advance(hours=5)
    assert engine.fire_due_timers() == 0

    view = complete(engine, instance_id, "notify_supervisor")
    assert view["status"] == m.ACTIVE
    assert [t["name"] for t in view["ready_tasks"]] == ["setup_machine"]
    view = engine.complete_task(setup["task_id"])
    assert view["status"] == m.COMPLETED
    assert kinds(view) == [
        "started",
        "timer_fired",
        "task_completed",
        "task_completed",
        "completed",
    ]


# ---------------------------------------------------------------------- 15. error boundary
def test_error_end_event_in_subprocess_is_caught_by_boundary(engine: WorkflowEngine) -> None:
    deploy(engine, "error_boundary.bpmn")
    instance_id = start(
        engine,
        "error_boundary",
        {"part": "shaft", "deviations": [0.01, 0.3, -0.5], "tolerance": 0.1},
    )
    view = engine.instance(instance_id)
    assert view["status"] == m.ACTIVE and view["error"] is None
    assert [t["name"] for t in view["ready_tasks"]] == ["rework"]
    # SpiffWorkflow evaluates the payload expression of <bpmn:error> where it is thrown and
    # stores it in the catching event's data under the error's variableName.
    assert view["data"]["qc_error"] == {"defects": 2, "part": "shaft"}
    assert "released" not in view["data"]

    view = complete(engine, instance_id, "rework")
    assert view["status"] == m.COMPLETED
    assert "released" not in view["data"]


def test_subprocess_without_error_takes_the_normal_path(engine: WorkflowEngine) -> None:
    deploy(engine, "error_boundary.bpmn")
    instance_id = start(
        engine, "error_boundary", {"part": "shaft", "deviations": [0.01, -0.05], "tolerance": 0.1}
    )
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert view["data"]["defects"] == 0 and view["data"]["released"] is True
    assert "qc_error" not in view["data"]
    assert view["ready_tasks"] == []


# ---------------------------------------------------------------------- 16. multi-instance
def test_sequential_multi_instance_user_task(engine: WorkflowEngine) -> None:
    deploy(engine, "multi_instance_sequential.bpmn")
    serials = ["S1", "S2", "S3"]
    instance_id = start(engine, "multi_instance_sequential", {"serials": serials})
    for serial in serials:
        [task] = engine.tasks(instance_id)  # one at a time
        assert task["name"] == "inspect_unit"
        assert task["instructions"] == f"Inspect unit {serial}"
        view = engine.complete_task(
            task["task_id"], {"result": {"serial": serial, "ok": serial != "S2"}}
        )
    assert view["status"] == m.COMPLETED
    assert view["data"]["results"] == [
        {"serial": "S1", "ok": True},
        {"serial": "S2", "ok": False},
        {"serial": "S3", "ok": True},
    ]
    assert view["data"]["passed"] == ["S1", "S3"]
    assert kinds(view).count("task_completed") == 3


def test_parallel_multi_instance_user_task(engine: WorkflowEngine) -> None:
    deploy(engine, "multi_instance_parallel.bpmn")
    serials = ["S1", "S2", "S3"]
    instance_id = start(engine, "multi_instance_parallel", {"serials": serials})
    tasks = engine.tasks(instance_id)
    assert [t["name"] for t in tasks] == ["inspect_unit"] * 3  # all ready at once
    by_serial = {t["instructions"].removeprefix("Inspect unit "): t for t in tasks}
    assert sorted(by_serial) == serials

    for serial in reversed(serials):  # completion order does not matter
        assert status(engine, instance_id) == m.ACTIVE
        view = engine.complete_task(
            by_serial[serial]["task_id"], {"result": {"serial": serial, "ok": serial != "S1"}}
        )
    assert view["status"] == m.COMPLETED
    # SpiffWorkflow 3.2 appends each output item when its child completes: with a separate
    # output list the results come in completion order, not in input order.
    assert view["data"]["results"] == [
        {"serial": "S3", "ok": True},
        {"serial": "S2", "ok": True},
        {"serial": "S1", "ok": False},
    ]
    assert view["data"]["passed"] == ["S3", "S2"]
