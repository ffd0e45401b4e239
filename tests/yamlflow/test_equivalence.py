"""Each manufacturing workflow in tests/yamlflow/equivalence/ is written twice: once in YAML
(compiled by taktflow) and once as hand-written BPMN (process id with the suffix `_bpmn`).
Both are deployed into the same engine and driven by the same scenario: the same start data,
the same human-task completions, messages and clock moves, in the same order.

What is compared, and why it is comparable:

- **Human tasks met**: every ready user/manual task, in the order it became ready, with its
  element id, title, lane, form and rendered instructions. The YAML steps carry explicit ids
  equal to the BPMN element ids, so these match one for one.
- **Path**: the instance's audit history as (kind, element id) pairs: `started`,
  `task_completed`, `message_received`, `message_sent`, `timer_fired`, `completed`. Only
  waiting elements appear there; the automated steps in between (scripts, gateways, service
  tasks) show up in the final data instead: the scripts append to a `trail` variable, count
  passes or pick a program. Ids the compiler makes for boundary events (`<step>__timeout`)
  cannot be chosen in YAML; ALIASES maps them to the hand-written BPMN's ids.
- **Effects of driving**: for each message whether it was delivered or buffered, for each
  clock move how many timers fired.
- **Final status, data and open waits.**

Besides YAML == BPMN, each scenario states the tasks and data it expects, so that two
equally wrong implementations do not pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from taktflow.engine import models as m
from taktflow.engine.clock import ManualClock
from taktflow.engine.runtime import WorkflowEngine
from taktflow.yamlflow import compile_text

HERE = Path(__file__).parent / "equivalence"
#: Element ids the compiler makes (YAML) -> the hand-written BPMN's ids for the same thing.
ALIASES = {
    "approve_order__timeout": "approval_overdue",
    "wait_goods__timeout": "delivery_overdue",
}


# ---------------------------------------------------------------------- scenario language
@dataclass(frozen=True)
class Complete:
    """Complete the one ready human task with this element id."""

    task: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    name: str
    correlation: dict[str, Any]
    data: dict[str, Any]


@dataclass(frozen=True)
class Advance:
    """Move the clock and fire the timers that are due."""

    hours: float


Action = Complete | Message | Advance


@dataclass(frozen=True)
class Scenario:
    id: str
    start: dict[str, Any]
    actions: tuple[Action, ...]
    #: What both variants must do: the element ids of the human tasks met, in order ...
    tasks: list[str]
    #: ... and a part of the final data.
    data: dict[str, Any]
    status: str = m.COMPLETED
    #: Messages sent before the instance starts (they wait in the buffer).
    before: tuple[Message, ...] = ()


@dataclass
class Outcome:
    met: list[tuple[str, str, str | None, str | None, str | None]]
    effects: list[tuple[str, Any]]
    path: list[tuple[str, str | None]]
    status: str
    data: dict[str, Any]
    waiting: list[dict[str, Any]]
    error: Any


def run(engine: WorkflowEngine, clock: ManualClock, process_id: str, scenario: Scenario) -> Outcome:
    effects: list[tuple[str, Any]] = []

    def send(message: Message) -> None:
        result = engine.send_message(
            message.name, correlation=message.correlation, data=message.data
        )
        effects.append(("message", (bool(result.delivered_to), result.buffered)))

    for message in scenario.before:
        send(message)
    instance_id = engine.start(process_id, scenario.start)["instance_id"]
    seen: set[str] = set()
    met: list[tuple[str, str, str | None, str | None, str | None]] = []

    def look() -> None:
        for task in sorted(engine.tasks(instance_id), key=lambda t: t["name"]):
            if task["task_id"] not in seen:
                seen.add(task["task_id"])
                met.append(
                    (task["name"], task["title"], task["lane"], task["form"], task["instructions"])
                )

    look()
    for action in scenario.actions:
        if isinstance(action, Complete):
            tasks = engine.tasks(instance_id)
            ready = [t for t in tasks if t["name"] == action.task]
            if len(ready) != 1:
                # The run went elsewhere: stop here; the comparison shows where it diverged.
                effects.append(("not ready", (action.task, sorted(t["name"] for t in tasks))))
                break
            engine.complete_task(ready[0]["task_id"], action.data, actor="tester")
            effects.append(("completed", action.task))
        elif isinstance(action, Message):
            send(action)
        else:
            clock.advance(hours=action.hours)
            effects.append(("timers fired", engine.fire_due_timers()))
        look()
    view = engine.instance(instance_id)
    if view["status"] == m.ACTIVE:
        # Leave nothing waiting that the other variant's run could receive.
        engine.terminate(instance_id, reason="scenario over")
    return Outcome(
        met=met,
        effects=effects,
        path=[(e["kind"], ALIASES.get(e["element_id"], e["element_id"])) for e in view["history"]],
        status=view["status"],
        data=view["data"],
        waiting=view["waiting"],
        error=view["error"],
    )


# ---------------------------------------------------------------------- scenarios
LOT = {"lot": "L-7", "serials": ["S1", "S2", "S3"], "nominal": 10.0, "tolerance": 0.5}
ORDER = {"order_id": "PO-1", "qty": 100, "scrap_rate": 0.03}
RECEIPT = {"order_id": "PO-4711", "ordered_qty": 50}
OTHER_ORDER = {"order_id": "PO-0815"}

SCENARIOS: dict[str, list[Scenario]] = {
    "lot_inspection": [
        Scenario(
            "all-units-ok",
            LOT,
            (
                Complete("measure_unit", {"value": 10.1}),
                Complete("measure_unit", {"value": 9.9}),
                Complete("measure_unit", {"value": 10.5}),
            ),
            tasks=["measure_unit"] * 3,
            data={
                "verdict": "released",
                "failed": [],
                "trail": ["prepare", "summarize"],
                "measurements": [
                    {"serial": "S1", "value": 10.1, "ok": True},
                    {"serial": "S2", "value": 9.9, "ok": True},
                    {"serial": "S3", "value": 10.5, "ok": True},
                ],
            },
        ),
        Scenario(
            "one-unit-out-of-tolerance",
            LOT,
            (
                Complete("measure_unit", {"value": 10.1}),
                Complete("measure_unit", {"value": 10.7}),
                Complete("measure_unit", {"value": 10.0}),
                Complete("quarantine_lot"),
            ),
            tasks=["measure_unit"] * 3 + ["quarantine_lot"],
            data={
                "verdict": "quarantined",
                "failed": ["S2"],
                "trail": ["prepare", "summarize", "quarantine"],
            },
        ),
        Scenario(
            "empty-lot",
            LOT | {"serials": []},
            (),
            tasks=[],
            data={"verdict": "released", "failed": [], "measurements": []},
        ),
    ],
    "order_release": [
        Scenario(
            "approved-in-time",
            ORDER,
            (Advance(3), Complete("approve_order", {"approved": True}), Complete("hand_over")),
            tasks=["approve_order", "hand_over"],
            data={
                "planned_qty": 103,
                "release": {"order_id": "PO-1", "qty": 103},
                "trail": ["plan", "released"],
            },
        ),
        Scenario(
            "rejected-in-time",
            ORDER,
            (Complete("approve_order", {"approved": False}), Advance(5)),
            tasks=["approve_order"],
            data={"approved": False, "trail": ["plan", "rejected"]},
        ),
        Scenario(
            "escalated-then-approved",
            ORDER,
            (
                Advance(3.5),
                Advance(0.5),
                Complete("manager_decision", {"approved": True}),
                Complete("hand_over"),
            ),
            tasks=["approve_order", "manager_decision", "hand_over"],
            data={"escalated": True, "trail": ["plan", "escalated", "released"]},
        ),
        Scenario(
            "escalated-then-rejected",
            ORDER,
            (Advance(4), Complete("manager_decision", {"approved": False})),
            tasks=["approve_order", "manager_decision"],
            data={"escalated": True, "trail": ["plan", "escalated", "rejected"]},
        ),
    ],
    "goods_receipt": [
        Scenario(
            "other-order-first-then-full-delivery",
            RECEIPT,
            (
                Message("goods_received", OTHER_ORDER, {"qty": 7}),
                Message("goods_received", {"order_id": "PO-4711"}, {"qty": 50}),
                Complete("put_away"),
            ),
            tasks=["put_away"],
            data={
                # The correlation keys are part of the received payload.
                "receipt": {"qty": 50, "order_id": "PO-4711"},
                "received_qty": 50,
                "shortfall": 0,
                "trail": ["expect", "booked", "closed"],
            },
        ),
        Scenario(
            "short-delivery",
            RECEIPT,
            (
                Advance(30),
                Message("goods_received", {"order_id": "PO-4711"}, {"qty": 42}),
                Complete("clarify_shortage", {"note": "rest follows"}),
            ),
            tasks=["clarify_shortage"],
            data={"shortfall": 8, "note": "rest follows", "trail": ["expect", "booked", "closed"]},
        ),
        Scenario(
            "nothing-arrives",
            RECEIPT,
            (
                Advance(47),
                Advance(1),
                Complete("chase_supplier"),
                Message("goods_received", {"order_id": "PO-4711"}, {"qty": 50}),
            ),
            tasks=["chase_supplier"],
            data={"trail": ["expect"]},
        ),
        Scenario(
            "message-before-the-wait",
            RECEIPT,
            (Complete("put_away"),),
            tasks=["put_away"],
            data={"received_qty": 50, "trail": ["expect", "booked", "closed"]},
            before=(Message("goods_received", {"order_id": "PO-4711"}, {"qty": 50}),),
        ),
    ],
    "machine_setup": [
        Scenario(
            "titanium-first-match-wins",
            {"job": "J-1", "material": "titanium", "thickness": "30"},
            (Complete("approve_parameters", {"parameters_ok": True}), Complete("set_up_machine")),
            tasks=["approve_parameters", "set_up_machine"],
            data={"program": "TI-SLOW", "thickness_mm": 30.0, "trail": ["read", "TI-SLOW"]},
        ),
        Scenario(
            "titanium-refused",
            {"job": "J-2", "material": "titanium", "thickness": "4"},
            (Complete("approve_parameters", {"parameters_ok": False}),),
            tasks=["approve_parameters"],
            data={"program": "AL-FAST", "trail": ["read"]},
        ),
        Scenario(
            "thick-steel",
            {"job": "J-3", "material": "steel", "thickness": "25.4"},
            (Complete("set_up_machine"),),
            tasks=["set_up_machine"],
            data={"program": "HEAVY-25", "trail": ["read", "HEAVY-25"]},
        ),
        Scenario(
            "aluminium-empty-branch",
            {"job": "J-4", "material": "aluminium", "thickness": "5"},
            (Complete("set_up_machine"),),
            tasks=["set_up_machine"],
            data={"program": "AL-FAST", "trail": ["read", "AL-FAST"]},
        ),
        Scenario(
            "otherwise",
            {"job": "J-5", "material": "steel", "thickness": "5"},
            (Complete("set_up_machine"),),
            tasks=["set_up_machine"],
            data={"program": "STD", "trail": ["read", "STD"]},
        ),
    ],
    "part_rework": [
        Scenario(
            "good-at-once",
            {"part": "P-1", "max_passes": 3},
            (Complete("inspect_part", {"defects": 0}),),
            tasks=["inspect_part"],
            data={"passes": 1, "defect_log": [0], "outcome": "released after 1 pass(es)"},
        ),
        Scenario(
            "good-after-one-rework",
            {"part": "P-2", "max_passes": 3},
            (
                Complete("inspect_part", {"defects": 2}),
                Complete("rework_part"),
                Complete("inspect_part", {"defects": 0}),
            ),
            tasks=["inspect_part", "rework_part", "inspect_part"],
            data={"passes": 2, "defect_log": [2, 0], "outcome": "released after 2 pass(es)"},
        ),
        Scenario(
            "scrapped-after-max-passes",
            {"part": "P-3", "max_passes": 3},
            (
                Complete("inspect_part", {"defects": 2}),
                Complete("rework_part"),
                Complete("inspect_part", {"defects": 1}),
                Complete("rework_part"),
                Complete("inspect_part", {"defects": 1}),
                Complete("scrap_part"),
            ),
            tasks=[
                "inspect_part",
                "rework_part",
                "inspect_part",
                "rework_part",
                "inspect_part",
                "scrap_part",
            ],
            data={"passes": 3, "defect_log": [2, 1, 1], "outcome": "scrapped"},
        ),
    ],
    "final_assembly": [
        Scenario(
            "mechanics-first-all-ok",
            {"order_id": "SO-9", "boxes": 2},
            (
                Complete("mount_housing"),
                Complete("torque_check", {"torque_ok": True}),
                Complete("book_shipment", {"booked": True}),
            ),
            tasks=["book_shipment", "mount_housing", "torque_check"],
            data={
                "labels": ["SO-9-1", "SO-9-2"],
                "ready_to_ship": True,
                "shipped": True,
                "trail": ["open", "merged"],
            },
        ),
        Scenario(
            "paperwork-first-torque-fails",
            {"order_id": "SO-10", "boxes": 1},
            (
                Complete("book_shipment", {"booked": True}),
                Complete("mount_housing"),
                Complete("torque_check", {"torque_ok": False}),
                Complete("resolve_hold"),
            ),
            tasks=["book_shipment", "mount_housing", "torque_check", "resolve_hold"],
            data={"labels": ["SO-10-1"], "ready_to_ship": False, "shipped": False},
        ),
    ],
}
CASES = [
    pytest.param(name, scenario, id=f"{name}-{scenario.id}")
    for name, scenarios in SCENARIOS.items()
    for scenario in scenarios
]


# ---------------------------------------------------------------------- tests
def test_every_pair_is_complete_and_has_scenarios() -> None:
    yaml_names = {p.stem for p in HERE.glob("*.yaml")}
    bpmn_names = {p.stem for p in HERE.glob("*.bpmn")}
    assert yaml_names == bpmn_names == set(SCENARIOS)
    assert len(yaml_names) >= 5
    for name in yaml_names:
        compiled = compile_text(name + ".yaml", (HERE / f"{name}.yaml").read_text())
        assert compiled.process_id == name
        # The BPMN is written by hand, not a copy of what the compiler makes.
        hand = (HERE / f"{name}.bpmn").read_text()
        assert f'<bpmn:process id="{name}_bpmn"' in hand
        assert "exporter=" not in hand and "flow__" not in hand
        assert len(SCENARIOS[name]) >= 2


@pytest.mark.parametrize(("name", "scenario"), CASES)
def test_yaml_and_bpmn_take_the_same_path(
    engine: WorkflowEngine, clock: ManualClock, name: str, scenario: Scenario
) -> None:
    engine.deploy_paths([HERE / f"{name}.yaml", HERE / f"{name}.bpmn"])
    assert {p["process_id"] for p in engine.processes()} == {name, f"{name}_bpmn"}

    from_yaml = run(engine, clock, name, scenario)
    # Messages the first run left in the buffer (for another order, or too late) must not
    # reach the second run's instance: let them expire. Timers are relative, so moving the
    # clock changes nothing else.
    clock.advance(days=1)
    engine.expire_messages()
    from_bpmn = run(engine, clock, f"{name}_bpmn", scenario)

    assert from_yaml.met == from_bpmn.met
    assert from_yaml.path == from_bpmn.path
    assert from_yaml.effects == from_bpmn.effects
    assert from_yaml.status == from_bpmn.status
    assert from_yaml.data == from_bpmn.data
    assert from_yaml.waiting == from_bpmn.waiting
    assert from_yaml.error is None and from_bpmn.error is None

    # What both did is what the scenario means.
    assert [task[0] for task in from_yaml.met] == scenario.tasks
    assert from_yaml.status == scenario.status
    for key, value in scenario.data.items():
        assert from_yaml.data.get(key) == value, key
    completed = [element for kind, element in from_yaml.path if kind == "task_completed"]
    assert completed == [a.task for a in scenario.actions if isinstance(a, Complete)]
    assert from_yaml.path[0] == ("started", None)
    assert from_yaml.path[-1] == ("completed", None)
