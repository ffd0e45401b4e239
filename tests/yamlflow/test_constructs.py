"""One YAML example per construct (tests/yamlflow/examples/), compiled, validated and run.

Each example deploys through `WorkflowEngine` (which compiles it, validates the BPMN against the
XSD and runs every deploy check), then runs to its expected end state; the tests check the path
taken (ready tasks, waits, audit history) and the final data. The first tests check every
example file on its own: valid BPMN 2.0 (and DMN 1.3 for inline tables), deterministic output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import SpiffWorkflow
from lxml import etree
from SpiffWorkflow.spiff.parser import VALIDATOR
from sqlalchemy import select
from sqlalchemy.orm import Session

from taktflow.config import DEFAULT_ROLES
from taktflow.engine import models as m
from taktflow.engine.actions import ActionContext, ActionRegistry, Param
from taktflow.engine.clock import ManualClock
from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import DefinitionError, NotFound
from taktflow.lint import ERROR, lint_paths
from taktflow.yamlflow import compile_text

EXAMPLES = Path(__file__).parent / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core",
}
DMN_XSD = Path(SpiffWorkflow.__file__).parent / "dmn" / "parser" / "schema" / "DMN13.xsd"

#: Construct -> the example files that show it (every file in examples/ is listed here once).
CONSTRUCTS: dict[str, list[str]] = {
    "user task (title, lane, form, instructions)": ["user_task.yaml"],
    "manual task": ["manual_task.yaml"],
    "service task": ["service_task.yaml"],
    "script (set)": ["script.yaml"],
    "decision, inline table, hit first": ["decision_first.yaml"],
    "decision, inline table, hit unique": ["decision_unique.yaml"],
    "decision, inline table, hit collect": ["decision_collect.yaml"],
    "decision, use of a deployed DMN": ["decision_use.yaml", "surface_grade.dmn"],
    "call with in/out": ["call_parent.yaml", "torque_check.yaml"],
    "choose with branches and otherwise": ["choose.yaml"],
    "parallel branches joining": ["parallel.yaml"],
    "wait for a correlated message": ["wait_message.yaml"],
    "wait for a signal": ["wait_signal.yaml"],
    "wait for a duration": ["wait_duration.yaml"],
    "wait until a date": ["wait_until.yaml"],
    "interrupting timeout on a user task": ["timeout_escalation.yaml"],
    "non-interrupting timeout (reminder)": ["timeout_reminder.yaml"],
    "timeout on a message wait": ["timeout_message.yaml"],
    "on_message: a message interrupts a wait, or runs beside a task": ["on_message.yaml"],
    "for_each, sequential, result/collect": ["for_each_sequential.yaml"],
    "for_each, parallel, result/collect": ["for_each_parallel.yaml"],
    "for_each over several steps (subprocess)": ["for_each_steps.yaml"],
    "for_each without result (one by one and all at once)": ["for_each_plain.yaml"],
    "repeat until": ["repeat.yaml"],
    "group on_error, error inside the group": ["group_error.yaml"],
    "group on_error, error inside a called workflow": [
        "group_call_error.yaml",
        "coating_supplier.yaml",
    ],
    "call on_error, error inside the called workflow": ["call_error.yaml", "gauge_lab.yaml"],
    "call with out and on_error": ["call_out_error.yaml", "gauge_lab.yaml"],
    "end with an error": ["end_error.yaml"],
    "send message (delivered to a waiting workflow)": [
        "send_message.yaml",
        "shopfloor_order.yaml",
    ],
    "send signal": ["send_signal.yaml", "wait_signal.yaml"],
    "goto (rework loop with an exit)": ["goto.yaml"],
    "process start on a message": ["message_start.yaml"],
    "process start on a signal": ["signal_start.yaml"],
    "lanes": ["lanes.yaml"],
}


# ---------------------------------------------------------------------- helpers
def deploy(engine: WorkflowEngine, *names: str) -> list[dict]:
    return engine.deploy_paths([str(EXAMPLES / name) for name in names])


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


def trail(view: dict) -> list[tuple[str, str | None]]:
    """(kind, element id) of every audit event: the path an instance took."""
    return [(event["kind"], event["element_id"]) for event in view["history"]]


def status(engine: WorkflowEngine, instance_id: int) -> str:
    return engine.instance(instance_id)["status"]


def data(engine: WorkflowEngine, instance_id: int) -> dict:
    return engine.instance(instance_id)["data"]


def compiled_root(name: str) -> Any:
    return etree.fromstring(compile_text(name, (EXAMPLES / name).read_text()).bpmn.encode())


def line_of(name: str, text: str) -> int:
    """The line (1-based) of the example `name` that is exactly `text`."""
    return (EXAMPLES / name).read_text().splitlines().index(text) + 1


# ---------------------------------------------------------------------- every example file
def test_every_example_file_belongs_to_a_construct() -> None:
    listed = {name for names in CONSTRUCTS.values() for name in names}
    present = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".dmn")}
    assert listed == present
    assert len(EXAMPLE_FILES) >= 30


def test_every_example_passes_the_linter(actions: ActionRegistry) -> None:
    """No lint errors with the real roles and the actions the examples' tests register;
    warnings (a task without a form, a message a connector would send) are allowed."""
    _register_book_scrap(actions, [])
    _register_book_receipt(actions, [])
    report = lint_paths(
        [EXAMPLES], actions=actions, workflows_path=EXAMPLES, roles=DEFAULT_ROLES.split(",")
    )
    assert len(report.files) == len(list(EXAMPLES.iterdir()))
    assert [str(f) for f in report.findings if f.severity == ERROR] == []
    assert report.warnings > 0  # the linter did look: some examples have no forms


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_compiles_to_valid_deterministic_xml(path: Path) -> None:
    """What deploy checks (SpiffWorkflow's BPMN XSD validator), checked here on its own; the
    inline decision tables against DMN 1.3; compiling twice gives byte-identical XML."""
    text = path.read_text()
    first = compile_text(path.name, text)
    second = compile_text(path.name, text)
    assert first.bpmn == second.bpmn
    assert first.dmn == second.dmn
    assert first.positions == second.positions

    root = etree.fromstring(first.bpmn.encode())
    VALIDATOR.validate(root, path.name)  # raises ValidationException when invalid
    [process] = root.findall("bpmn:process", NS)
    assert process.get("id") == first.process_id
    assert process.get("isExecutable") == "true"

    dmn_schema = etree.XMLSchema(etree.parse(str(DMN_XSD)))
    for decision_id, xml in first.dmn.items():
        dmn_root = etree.fromstring(xml.encode())
        assert dmn_schema.validate(dmn_root), (decision_id, dmn_schema.error_log)
        decision = dmn_root.find("{https://www.omg.org/spec/DMN/20191111/MODEL/}decision")
        assert decision.get("id") == decision_id


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_compiled_bpmn_is_valid_against_the_bpmn20_xsd_as_written(path: Path) -> None:
    """The same XSD (BPMN20.xsd with the spiffworkflow extension schema), without the
    rewrite SpiffWorkflow's validator does first (formalExpression -> messagePath inside
    correlationPropertyRetrievalExpression, a workaround for bpmn-js output): the compiled
    file must be standard BPMN 2.0 as written, for any modeler or engine."""
    root = etree.fromstring(compile_text(path.name, path.read_text()).bpmn.encode())
    schema = VALIDATOR.validator
    valid = schema.validate(root)
    assert valid, [f"line {e.line}: {e.message}" for e in schema.error_log]


def test_redeploying_an_unchanged_example_makes_no_new_version(engine: WorkflowEngine) -> None:
    first = deploy(engine, "decision_first.yaml")
    again = deploy(engine, "decision_first.yaml")
    assert [(r["kind"], r["version"], r["changed"]) for r in first] == [
        ("decision", 1, True),
        ("process", 1, True),
    ]
    assert [(r["kind"], r["version"], r["changed"]) for r in again] == [
        ("decision", 1, False),
        ("process", 1, False),
    ]


# ---------------------------------------------------------------------- user and manual tasks
@pytest.mark.parametrize(("deviation", "verdict"), [(0.03, "released"), (0.08, "blocked")])
def test_user_task(engine: WorkflowEngine, deviation: float, verdict: str) -> None:
    [result] = deploy(engine, "user_task.yaml")
    assert (result["process_id"], result["version"]) == ("first_article_inspection", 1)
    instance_id = start(
        engine, "first_article_inspection", {"part": "shaft", "order_id": "PO-7", "revision": "C"}
    )
    [task] = engine.tasks(instance_id)
    assert task["name"] == "inspect_first_article"
    assert task["title"] == "Inspect first article"
    assert task["kind"] == "user"
    assert task["lane"] == "quality"
    assert task["form"] == "first_article"
    assert task["instructions"] == "Measure shaft of order PO-7 against drawing rev C"
    assert status(engine, instance_id) == m.ACTIVE
    assert "verdict" not in data(engine, instance_id)

    view = engine.complete_task(task["task_id"], {"deviation_mm": deviation}, actor="qa-anna")
    assert view["status"] == m.COMPLETED
    assert view["data"]["verdict"] == verdict
    assert view["ready_tasks"] == []
    assert trail(view) == [
        ("started", None),
        ("task_completed", "inspect_first_article"),
        ("completed", None),
    ]
    event = view["history"][1]
    assert event["actor"] == "qa-anna" and event["details"]["lane"] == "quality"


def test_manual_task(engine: WorkflowEngine) -> None:
    deploy(engine, "manual_task.yaml")
    instance_id = start(
        engine,
        "press_changeover",
        {"die": "D-12", "press": "P3", "coil": "C-9", "thickness_mm": 1.5},
    )
    [mount] = engine.tasks(instance_id)
    assert (mount["name"], mount["kind"], mount["lane"]) == ("mount_die", "manual", "operator")
    assert mount["form"] is None
    assert mount["instructions"] == "Mount die D-12 on press P3 and lock the clamps"

    view = engine.complete_task(mount["task_id"], actor="setter-1")
    assert view["status"] == m.ACTIVE
    [load] = view["ready_tasks"]
    assert (load["name"], load["kind"]) == ("load_coil", "manual")
    assert load["instructions"] == "Load coil C-9 (1.5 mm)"
    assert "changeover_done" not in view["data"]

    view = engine.complete_task(load["task_id"], actor="setter-1")
    assert view["status"] == m.COMPLETED
    assert view["data"]["changeover_done"] is True
    assert trail(view) == [
        ("started", None),
        ("task_completed", "mount_die"),
        ("task_completed", "load_coil"),
        ("completed", None),
    ]


# ---------------------------------------------------------------------- service task, script
def _register_book_scrap(actions: ActionRegistry, calls: list[dict]) -> None:
    def book_scrap(ctx: ActionContext, part: str, qty: int) -> dict[str, Any]:
        calls.append({"element_id": ctx.element_id, "process_id": ctx.process_id, "qty": qty})
        return {"document": f"SCR-{part}-{qty}"}

    actions.register("erp.book_scrap", book_scrap, [Param("part", "str"), Param("qty", "int")])


def test_service_task(engine: WorkflowEngine, actions: ActionRegistry) -> None:
    calls: list[dict] = []
    _register_book_scrap(actions, calls)
    deploy(engine, "service_task.yaml")
    instance_id = start(engine, "book_scrap", {"part": "bracket", "scrap_qty": 4, "reason": "burr"})

    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    # taktflow.echo returns its parameters, evaluated over the data.
    assert view["data"]["booking"] == {"part": "bracket", "qty": 4, "reason": "scrap: burr"}
    assert view["data"]["erp_document"] == {"document": "SCR-bracket-4"}
    assert view["data"]["document_no"] == "SCR-bracket-4"
    assert calls == [{"element_id": "book_scrap_erp", "process_id": "book_scrap", "qty": 4}]
    assert kinds(view) == ["started", "completed"]


def test_service_task_with_unregistered_action_is_refused_at_its_yaml_line(
    engine: WorkflowEngine,
) -> None:
    with pytest.raises(DefinitionError) as caught:
        deploy(engine, "service_task.yaml")
    [problem] = caught.value.problems
    assert "erp.book_scrap" in problem.reason
    assert problem.file.endswith("service_task.yaml")
    assert problem.line == line_of("service_task.yaml", "  - service: Book scrap")
    assert engine.processes() == []


def test_script_sets_variables_in_order(engine: WorkflowEngine) -> None:
    deploy(engine, "script.yaml")
    instance_id = start(engine, "plan_material", {"qty": 100, "blanks_per_part": 2, "stock": 150})
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    result = view["data"]
    assert (result["blanks"], result["scrap_allowance"], result["total_blanks"]) == (200, 11, 211)
    assert result["short_by"] == 61 and result["needs_purchase"] is True
    assert result["summary"] == "211 blanks, 61 to buy"

    enough = data(
        engine, start(engine, "plan_material", {"qty": 10, "blanks_per_part": 1, "stock": 50})
    )
    assert enough["short_by"] == 0 and enough["needs_purchase"] is False


# ---------------------------------------------------------------------- decisions
@pytest.mark.parametrize(
    ("weight", "fragile", "conveyor", "strap"),
    [
        (30, True, "manual", True),  # rule 1 wins although rule 2 matches too
        (30, False, "C1", False),
        (50, False, "C2", True),  # 50..500 includes both bounds
        (500, False, "C2", True),
        (900, False, "crane", True),
    ],
)
def test_decision_table_hit_first(
    engine: WorkflowEngine, weight: int, fragile: bool, conveyor: str, strap: bool
) -> None:
    results = deploy(engine, "decision_first.yaml")
    assert {(r["kind"], r["process_id"] or r["decision_id"]) for r in results} == {
        ("process", "route_by_weight"),
        ("decision", "route_by_weight_choose_conveyor"),
    }
    instance_id = start(engine, "route_by_weight", {"weight_kg": weight, "fragile": fragile})
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert (view["data"]["conveyor"], view["data"]["needs_strap"]) == (conveyor, strap)


@pytest.mark.parametrize(
    ("porosity", "alloy", "grade"),
    [
        (0.5, "AlSi7", "A"),
        (2, "AlSi10", "B"),
        (2, "AlCu4", "special"),
        (5, "AlCu4", "scrap"),
        (2, "AlMg3", None),  # no rule matches: the output stays unset
    ],
)
def test_decision_table_hit_unique(
    engine: WorkflowEngine, porosity: float, alloy: str, grade: str | None
) -> None:
    deploy(engine, "decision_unique.yaml")
    view = engine.instance(
        start(engine, "grade_casting", {"porosity_pct": porosity, "alloy": alloy})
    )
    assert view["status"] == m.COMPLETED
    assert view["data"].get("grade") == grade


@pytest.mark.parametrize(
    ("order", "checks"),
    [
        (
            {"customer": "Autowerk", "safety_part": True, "qty": 2000},
            ["visual", "crack_test", "first_article_report", "spc_sampling"],
        ),
        (
            {"customer": "Railco", "safety_part": False, "qty": 10},
            ["visual", "first_article_report"],
        ),
        ({"customer": "Local", "safety_part": False, "qty": 10}, ["visual"]),
    ],
)
def test_decision_table_hit_collect(engine: WorkflowEngine, order: dict, checks: list[str]) -> None:
    deploy(engine, "decision_collect.yaml")
    view = engine.instance(start(engine, "required_checks", order))
    assert view["status"] == m.COMPLETED
    assert view["data"]["check"] == checks  # every matching rule, in rule order


DECISION_WITH_VALUE_TESTS = """\
process: route_by_alloy
steps:
  - decision: Choose furnace
    table:
      inputs: [alloy, batch_size, vacuum]
      outputs: [furnace]
      rules:
        - when: [AlCu4, -, -]
          then: [F2]
        - when: [-, 1, -]
          then: [lab]
        - when: [-, -, true]
          then: [vacuum_furnace]
        - when: [-, -, -]
          then: [F1]
"""


@pytest.mark.parametrize(
    ("alloy", "batch_size", "vacuum", "furnace"),
    [
        ("AlCu4", 40, False, "F2"),
        ("AlSi7", 1, False, "lab"),
        ("AlSi7", 40, True, "vacuum_furnace"),
        ("AlSi7", 40, False, "F1"),
    ],
)
def test_decision_table_plain_value_tests(
    engine: WorkflowEngine, alloy: str, batch_size: int, vacuum: bool, furnace: str
) -> None:
    """language.RULE: a test is "a value, '< 58', '58..62', a list, or -". A plain value
    (text, number, true/false) tests for equality."""
    deploy_results = engine.deploy_text("route_by_alloy.yaml", DECISION_WITH_VALUE_TESTS)
    assert {r["kind"] for r in deploy_results} == {"process", "decision"}
    view = engine.instance(
        start(
            engine,
            "route_by_alloy",
            {"alloy": alloy, "batch_size": batch_size, "vacuum": vacuum},
        )
    )
    assert view["status"] == m.COMPLETED
    assert view["data"]["furnace"] == furnace


@pytest.mark.parametrize(
    ("scratches", "gloss", "surface", "disposition", "passes"),
    [(0, 90, "A", "ship", 1), (0, 70, "B", "polish", 1), (5, 95, "C", "repaint", 2)],
)
def test_decision_using_a_deployed_dmn(
    engine: WorkflowEngine,
    scratches: int,
    gloss: int,
    surface: str,
    disposition: str,
    passes: int,
) -> None:
    results = deploy(engine, "decision_use.yaml", "surface_grade.dmn")
    assert {(r["kind"], r["process_id"] or r["decision_id"]) for r in results} == {
        ("process", "paint_inspection"),
        ("decision", "surface_grade"),
    }
    [task] = compiled_root("decision_use.yaml").iterfind(".//bpmn:businessRuleTask", NS)
    assert task.findtext(".//spiffworkflow:calledDecisionId", namespaces=NS) == "surface_grade"
    instance_id = start(
        engine, "paint_inspection", {"scratches": scratches, "gloss": gloss, "paint_passes": 1}
    )
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert (view["data"]["surface"], view["data"]["disposition"]) == (surface, disposition)
    assert view["data"]["paint_passes"] == passes


def test_decision_use_of_an_undeployed_decision_is_refused(engine: WorkflowEngine) -> None:
    with pytest.raises(DefinitionError) as caught:
        deploy(engine, "decision_use.yaml")
    [problem] = caught.value.problems
    assert "surface_grade" in problem.reason
    assert problem.file.endswith("decision_use.yaml")
    assert problem.line == line_of("decision_use.yaml", "  - decision: Grade surface")
    assert engine.processes() == []


# ---------------------------------------------------------------------- call
@pytest.mark.parametrize(
    ("readings", "ok", "worst", "text"),
    [([39, 41, 40.5], True, 39, "gearbox GB-1 released"), ([39, 44, 40.5], False, 44, None)],
)
def test_call_passes_data_in_and_out(
    engine: WorkflowEngine, readings: list, ok: bool, worst: float, text: str | None
) -> None:
    deploy(engine, "torque_check.yaml")
    results = deploy(engine, "call_parent.yaml")
    assert [(r["process_id"], r["changed"]) for r in results] == [("assemble_gearbox", True)]
    instance_id = start(
        engine,
        "assemble_gearbox",
        {"serial": "GB-1", "spec_nm": 40, "housing_readings": readings},
    )
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    result = view["data"]
    # in: set before the call, from the caller's data
    assert (result["nominal_nm"], result["readings"]) == (40, readings)
    # out: set after the call, from the called workflow's data
    assert (result["housing_ok"], result["housing_worst_nm"]) == (ok, worst)
    assert result["status_text"] == (text or "gearbox GB-1 to rework")
    assert result["bolts"] == 8  # the caller's own data is kept


def test_call_of_an_undeployed_workflow_is_refused(engine: WorkflowEngine) -> None:
    with pytest.raises(DefinitionError) as caught:
        deploy(engine, "call_parent.yaml")
    [problem] = caught.value.problems
    assert "torque_check" in problem.reason
    assert problem.line == line_of("call_parent.yaml", "  - call: Torque check housing bolts")


# ---------------------------------------------------------------------- choose, parallel
@pytest.mark.parametrize(
    ("hazardous", "weight", "carrier", "tasks"),
    [
        (True, 5, "DG-Freight", ["pack_as_dangerous_goods"]),
        (True, 5000, "DG-Freight", ["pack_as_dangerous_goods"]),  # first branch wins
        (False, 5000, "truck", []),
        (False, 15, "parcel", []),  # otherwise
    ],
)
def test_choose(
    engine: WorkflowEngine, hazardous: bool, weight: int, carrier: str, tasks: list[str]
) -> None:
    deploy(engine, "choose.yaml")
    instance_id = start(
        engine, "ship_order", {"order_id": "SO-1", "hazardous": hazardous, "weight_kg": weight}
    )
    assert ready(engine, instance_id) == tasks
    for name in tasks:
        assert the_task(engine, instance_id, name)["form"] == "dg_packing"
        complete(engine, instance_id, name, {"un_number": "UN1263"})
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert view["data"]["carrier"] == carrier
    assert view["data"]["label"] == f"SO-1 via {carrier}"
    assert [e for _, e in trail(view) if e] == tasks


def test_parallel_branches_join(engine: WorkflowEngine) -> None:
    deploy(engine, "parallel.yaml")
    instance_id = start(engine, "machine_setup", {"part": "P7", "qty": 50})
    assert ready(engine, instance_id) == ["preset_tools", "stage_material"]  # both at once
    assert data(engine, instance_id)["nc"] == {"program": "NC-P7"}  # the service branch ran

    view = complete(engine, instance_id, "stage_material", {"staged_qty": 60})
    assert view["status"] == m.ACTIVE
    assert [t["name"] for t in view["ready_tasks"]] == ["preset_tools"]
    assert "released" not in view["data"]  # the join waits for the tooling branch

    view = complete(engine, instance_id, "preset_tools")
    assert view["status"] == m.COMPLETED
    assert view["data"]["tools_ready"] is True
    assert view["data"]["released"] is True
    assert kinds(view) == ["started", "task_completed", "task_completed", "completed"]


# ---------------------------------------------------------------------- waits
def test_wait_for_a_correlated_message(engine: WorkflowEngine) -> None:
    deploy(engine, "wait_message.yaml")
    first = start(engine, "await_goods_receipt", {"order_id": "PO-1", "ordered_qty": 10})
    second = start(engine, "await_goods_receipt", {"order_id": "PO-2", "ordered_qty": 10})
    waiting_first = engine.instance(first)["waiting"]
    assert waiting_first == [
        {
            "kind": "message",
            "name": "goods_received",
            "element_id": "goods_received",
            "correlation": {"order_id": "PO-1"},
        }
    ]

    result = engine.send_message(
        "goods_received", correlation={"order_id": "PO-2"}, data={"qty": 8}
    )
    assert result.delivered_to == [second] and not result.buffered
    view = engine.instance(second)
    assert view["status"] == m.COMPLETED
    assert view["data"]["receipt"] == {"qty": 8, "order_id": "PO-2"}  # into: receipt
    assert view["data"]["received_qty"] == 8 and view["data"]["complete"] is False
    assert kinds(view) == ["started", "message_received", "completed"]

    # The message for PO-2 did not reach PO-1, nor does one for an unknown order.
    assert status(engine, first) == m.ACTIVE
    assert engine.instance(first)["waiting"] == waiting_first
    unknown = engine.send_message("goods_received", correlation={"order_id": "PO-3"}, data={})
    assert unknown.delivered_to == [] and unknown.buffered
    assert status(engine, first) == m.ACTIVE

    done = engine.send_message("goods_received", correlation={"order_id": "PO-1"}, data={"qty": 10})
    assert done.delivered_to == [first]
    assert data(engine, first)["complete"] is True


def test_wait_for_a_signal(engine: WorkflowEngine) -> None:
    deploy(engine, "wait_signal.yaml")
    instance_id = start(engine, "line_watch", {"station": "ST-1"})
    view = engine.instance(instance_id)
    assert view["data"]["state"] == "running"
    assert view["waiting"] == [
        {"kind": "signal", "name": "line_stop", "element_id": "line_stopped"}
    ]

    assert engine.send_signal("other_signal").delivered_to == []
    assert status(engine, instance_id) == m.ACTIVE
    result = engine.send_signal("line_stop", data={"line": "L2"})
    assert result.delivered_to == [instance_id]
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert view["data"]["state"] == "held"
    assert kinds(view) == ["started", "signal_received", "completed"]


def test_wait_for_a_duration(engine: WorkflowEngine, clock: ManualClock) -> None:
    deploy(engine, "wait_duration.yaml")
    instance_id = start(engine, "cure_adhesive", {"serial": "H-1"})
    assert engine.instance(instance_id)["waiting"] == [
        {
            "kind": "timer",
            "name": "Cure two hours",
            "element_id": "cure_two_hours",
            "due": "2026-03-02T08:00:00+00:00",
        }
    ]
    clock.advance(hours=1, minutes=59)
    assert engine.worker_pass()["timers_fired"] == 0
    assert ready(engine, instance_id) == []

    clock.advance(minutes=1)
    assert engine.worker_pass()["timers_fired"] == 1
    [task] = engine.tasks(instance_id)
    assert task["name"] == "leak_test" and task["instructions"] == "Leak test housing H-1"
    view = engine.complete_task(task["task_id"])
    assert view["status"] == m.COMPLETED and view["data"]["glued"] is True
    assert trail(view) == [
        ("started", None),
        ("timer_fired", "cure_two_hours"),
        ("task_completed", "leak_test"),
        ("completed", None),
    ]


def test_wait_until_a_date(engine: WorkflowEngine, clock: ManualClock) -> None:
    deploy(engine, "wait_until.yaml")
    instance_id = start(engine, "planned_maintenance")
    [wait] = engine.instance(instance_id)["waiting"]
    assert (wait["kind"], wait["element_id"]) == ("timer", "shift_change")
    assert wait["due"] == "2026-03-02T14:00:00+00:00"

    clock.advance(hours=7, minutes=59)  # 13:59
    assert engine.worker_pass()["timers_fired"] == 0
    assert ready(engine, instance_id) == []
    clock.advance(minutes=1)
    assert engine.worker_pass()["timers_fired"] == 1
    assert ready(engine, instance_id) == ["service_spindle"]
    view = complete(engine, instance_id, "service_spindle")
    assert view["status"] == m.COMPLETED and view["data"]["announced"] is True


# ---------------------------------------------------------------------- timeouts
def test_interrupting_timeout_escalates(engine: WorkflowEngine, clock: ManualClock) -> None:
    deploy(engine, "timeout_escalation.yaml")
    instance_id = start(engine, "deviation_approval", {"deviation": "D-1"})
    [approve] = engine.tasks(instance_id)
    assert (approve["name"], approve["lane"]) == ("approve_deviation", "quality")
    assert engine.instance(instance_id)["waiting"] == [
        {
            "kind": "timer",
            "name": "after PT4H",
            "element_id": "approve_deviation__timeout",
            "due": "2026-03-02T10:00:00+00:00",
        }
    ]
    clock.advance(hours=3, minutes=59)
    assert engine.worker_pass()["timers_fired"] == 0
    assert ready(engine, instance_id) == ["approve_deviation"]

    clock.advance(minutes=1)
    assert engine.worker_pass()["timers_fired"] == 1
    [escalated] = engine.tasks(instance_id)
    assert escalated["name"] == "escalated_approval"
    assert escalated["lane"] == "manager" and escalated["form"] == "deviation_approval"
    with pytest.raises(NotFound):  # the original task was cancelled
        engine.complete_task(approve["task_id"])

    view = engine.complete_task(escalated["task_id"], {"approved": True}, actor="pm")
    assert view["status"] == m.COMPLETED
    assert view["data"]["escalated"] is True and view["data"]["closed"] is True
    assert trail(view) == [
        ("started", None),
        ("timer_fired", "approve_deviation__timeout"),
        ("task_completed", "escalated_approval"),
        ("completed", None),
    ]


def test_interrupting_timeout_not_reached(engine: WorkflowEngine, clock: ManualClock) -> None:
    deploy(engine, "timeout_escalation.yaml")
    instance_id = start(engine, "deviation_approval", {"deviation": "D-2"})
    clock.advance(hours=3)
    view = complete(engine, instance_id, "approve_deviation", {"approved": False})
    assert view["status"] == m.COMPLETED
    assert view["waiting"] == []
    assert "escalated" not in view["data"] and view["data"]["closed"] is True
    clock.advance(hours=5)
    assert engine.worker_pass()["timers_fired"] == 0


def test_non_interrupting_timeout_reminds(engine: WorkflowEngine, clock: ManualClock) -> None:
    deploy(engine, "timeout_reminder.yaml")
    instance_id = start(engine, "setup_with_reminder")
    [setup] = engine.tasks(instance_id)
    assert (setup["name"], setup["kind"], setup["lane"]) == ("set_up_machine", "manual", "operator")
    clock.advance(minutes=59)
    assert engine.worker_pass()["timers_fired"] == 0

    clock.advance(minutes=1)
    assert engine.worker_pass()["timers_fired"] == 1
    assert ready(engine, instance_id) == ["check_on_slow_setup", "set_up_machine"]
    # The setup task goes on: it is still the same task.
    assert the_task(engine, instance_id, "set_up_machine")["task_id"] == setup["task_id"]
    assert the_task(engine, instance_id, "check_on_slow_setup")["lane"] == "supervisor"

    view = complete(engine, instance_id, "check_on_slow_setup", {"note": "tool missing"})
    assert view["status"] == m.ACTIVE
    assert [t["name"] for t in view["ready_tasks"]] == ["set_up_machine"]
    view = engine.complete_task(setup["task_id"])
    assert view["status"] == m.COMPLETED
    assert view["data"]["setup_done"] is True
    assert trail(view) == [
        ("started", None),
        ("timer_fired", "set_up_machine__timeout"),
        ("task_completed", "check_on_slow_setup"),
        ("task_completed", "set_up_machine"),
        ("completed", None),
    ]


def test_message_wait_answered_before_its_timeout(engine: WorkflowEngine) -> None:
    deploy(engine, "timeout_message.yaml")
    instance_id = start(engine, "await_lab_result", {"sample_id": "S-1"})
    waiting = engine.instance(instance_id)["waiting"]
    assert [(w["kind"], w["element_id"]) for w in waiting] == [
        ("message", "lab_result"),
        ("timer", "lab_result__timeout"),
    ]
    assert waiting[1]["due"] == "2026-03-03T06:00:00+00:00"

    result = engine.send_message(
        "lab_result", correlation={"sample_id": "S-1"}, data={"verdict": "ok", "hrc": 58}
    )
    assert result.delivered_to == [instance_id]
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert (view["data"]["verdict"], view["data"]["hardness"]) == ("ok", 58)
    assert view["waiting"] == []


def test_a_message_interrupts_a_wait_and_takes_its_path(engine: WorkflowEngine) -> None:
    deploy(engine, "on_message.yaml")
    refused = start(engine, "await_coating", {"batch": "B-1"})
    other = start(engine, "await_coating", {"batch": "B-2"})
    waiting = engine.instance(refused)["waiting"]
    assert sorted((w["kind"], w["element_id"]) for w in waiting) == [
        ("message", "parts_coated"),
        ("message", "parts_coated__message"),
    ]
    result = engine.send_message(
        "coating_refused", correlation={"batch": "B-1"}, data={"reason": "wrong alloy"}
    )
    assert result.delivered_to == [refused]
    view = engine.instance(refused)
    assert view["status"] == m.COMPLETED and view["waiting"] == []
    assert view["data"]["outcome"] == "refused: wrong alloy"
    # The other batch still waits for both; its parts come and the task follows.
    assert engine.send_message(
        "parts_coated", correlation={"batch": "B-2"}, data={"microns": 80}
    ).delivered_to == [other]
    assert ready(engine, other) == ["inspect_coating"]
    # A non-interrupting message runs its path beside the task, which stays.
    engine.send_message("batch_recalled", correlation={"batch": "B-2"})
    assert ready(engine, other) == ["inspect_coating"]
    assert data(engine, other)["recalled"] is True
    complete(engine, other, "inspect_coating")
    view = engine.instance(other)
    assert view["status"] == m.COMPLETED and view["data"]["outcome"] == "coated: 80"


def test_on_message_on_a_signal_wait_is_refused_with_its_line(engine: WorkflowEngine) -> None:
    text = (
        "process: p\nsteps:\n  - wait: Go\n    signal: go\n"
        "    on_message:\n      - message: stop\n        steps: []\n"
    )
    with pytest.raises(DefinitionError) as refused:
        engine.deploy_text("p.yaml", text)
    assert "p.yaml:5" in str(refused.value) and "on_message goes with waits for a message" in str(
        refused.value
    )


def test_message_wait_times_out(engine: WorkflowEngine, clock: ManualClock) -> None:
    deploy(engine, "timeout_message.yaml")
    instance_id = start(engine, "await_lab_result", {"sample_id": "S-2"})
    clock.advance(hours=23, minutes=59)
    assert engine.worker_pass()["timers_fired"] == 0
    clock.advance(minutes=1)
    assert engine.worker_pass()["timers_fired"] == 1
    view = engine.instance(instance_id)
    assert view["waiting"] == []  # no longer waiting for the message
    assert [t["name"] for t in view["ready_tasks"]] == ["take_a_new_sample"]

    view = complete(engine, instance_id, "take_a_new_sample")
    assert view["status"] == m.COMPLETED
    assert view["data"]["verdict"] == "overdue" and "hardness" not in view["data"]
    late = engine.send_message(
        "lab_result", correlation={"sample_id": "S-2"}, data={"verdict": "ok", "hrc": 58}
    )
    assert late.delivered_to == [] and late.buffered


# ---------------------------------------------------------------------- for_each, repeat
def test_for_each_sequential_collects_results(engine: WorkflowEngine) -> None:
    deploy(engine, "for_each_sequential.yaml")
    serials = ["S1", "S2", "S3"]
    instance_id = start(engine, "inspect_lot_sequential", {"serials": serials})
    diameters = {"S1": 10.01, "S2": 10.04, "S3": 9.98}
    for serial in serials:
        [task] = engine.tasks(instance_id)  # one at a time, in list order
        assert task["name"] == "measure_unit" and task["lane"] == "quality"
        assert task["instructions"] == f"Measure unit {serial}"
        d = diameters[serial]
        view = engine.complete_task(
            task["task_id"], {"measurement": {"serial": serial, "diameter_mm": d, "ok": d < 10.03}}
        )
    assert view["status"] == m.COMPLETED
    assert [x["serial"] for x in view["data"]["measurements"]] == serials
    assert view["data"]["worst"] == 10.04 and view["data"]["lot_ok"] is False
    assert kinds(view).count("task_completed") == 3


def test_for_each_parallel_collects_results(engine: WorkflowEngine) -> None:
    deploy(engine, "for_each_parallel.yaml")
    bins = ["A-01", "A-02", "B-07"]
    instance_id = start(engine, "stocktake", {"bins": bins})
    tasks = engine.tasks(instance_id)
    assert [t["name"] for t in tasks] == ["count_bin"] * 3  # all at once
    by_bin = {t["instructions"].removeprefix("Count bin "): t for t in tasks}
    assert sorted(by_bin) == bins

    for bin_id, qty in [("B-07", 5), ("A-01", 12), ("A-02", 0)]:
        assert status(engine, instance_id) == m.ACTIVE
        view = engine.complete_task(
            by_bin[bin_id]["task_id"], {"count": {"bin": bin_id, "qty": qty}}
        )
    assert view["status"] == m.COMPLETED
    # SpiffWorkflow 3.2 collects parallel results in completion order.
    assert [c["bin"] for c in view["data"]["counts"]] == ["B-07", "A-01", "A-02"]
    assert view["data"]["total"] == 17
    assert view["data"]["bins_counted"] == bins


def test_for_each_over_several_steps_runs_a_subprocess_per_item(engine: WorkflowEngine) -> None:
    root = compiled_root("for_each_steps.yaml")
    [sub] = root.iterfind(".//bpmn:subProcess", NS)
    assert sub.get("id") == "kit_order_lines"
    loop = sub.find("bpmn:multiInstanceLoopCharacteristics", NS)
    assert loop.get("isSequential") == "true"
    assert loop.findtext("bpmn:loopDataInputRef", namespaces=NS) == "lines"
    assert {e.get("id") for e in sub.iterfind("bpmn:*", NS) if e.get("name")} >= {
        "compute_pick_quantity",
        "pick_parts",
        "kit_ready",
    }

    deploy(engine, "for_each_steps.yaml")
    lines = [{"part": "bolt", "qty": 2, "per_unit": 4}, {"part": "nut", "qty": 2, "per_unit": 8}]
    instance_id = start(engine, "kit_orders", {"lines": lines})
    for expected in ["Pick 8 x bolt", "Pick 16 x nut"]:
        [task] = engine.tasks(instance_id)
        assert (task["name"], task["instructions"]) == ("pick_parts", expected)
        view = engine.complete_task(task["task_id"])
    assert view["status"] == m.COMPLETED
    assert view["data"]["kits"] == [{"part": "bolt", "picked": 8}, {"part": "nut", "picked": 16}]
    assert view["data"]["total_picked"] == 24


def test_for_each_without_result_runs_every_item_and_leaves_no_loop_variable(
    engine: WorkflowEngine,
) -> None:
    deploy(engine, "for_each_plain.yaml")
    pallets = [11, 12, 13]
    instance_id = start(engine, "label_pallets", {"pallets": pallets})
    tasks = engine.tasks(instance_id)
    assert sorted(t["instructions"] for t in tasks) == [
        f"Check the label of pallet {p}" for p in pallets
    ]
    for task in tasks:
        view = engine.complete_task(task["task_id"])
    assert view["status"] == m.COMPLETED
    assert view["data"]["labelled"] == 3
    # The item variable and each pass's own data stay inside the loop.
    assert "pallet" not in view["data"]
    assert "label" not in view["data"]


@pytest.mark.parametrize("verdicts", [[True], [False, False, True]], ids=["1-pass", "3-passes"])
def test_repeat_until(engine: WorkflowEngine, verdicts: list[bool]) -> None:
    deploy(engine, "repeat.yaml")
    instance_id = start(engine, "weld_rework", {"seam": "W-3"})
    for ok in verdicts:
        assert status(engine, instance_id) == m.ACTIVE
        assert the_task(engine, instance_id, "weld_seam")["lane"] == "operator"
        view = complete(engine, instance_id, "weld_seam")
        assert [t["name"] for t in view["ready_tasks"]] == ["inspect_seam"]
        view = complete(engine, instance_id, "inspect_seam", {"seam_ok": ok})
    assert view["status"] == m.COMPLETED
    n = len(verdicts)
    assert view["data"]["passes"] == n
    assert view["data"]["released"] == f"seam ok after {n} pass(es)"
    assert [e for _, e in trail(view) if e] == ["weld_seam", "inspect_seam"] * n


# ---------------------------------------------------------------------- errors
def test_group_on_error_catches_error_ended_inside_the_group(engine: WorkflowEngine) -> None:
    deploy(engine, "group_error.yaml")
    instance_id = start(engine, "heat_treatment", {"temperatures": [830, 845, 910], "max_c": 880})
    view = engine.instance(instance_id)
    assert view["status"] == m.ACTIVE and view["error"] is None
    assert [t["name"] for t in view["ready_tasks"]] == ["assess_furnace_alarm"]
    assert view["data"]["batch_state"] == "quarantined"

    view = complete(engine, instance_id, "assess_furnace_alarm", {"action": "retemper"})
    assert view["status"] == m.COMPLETED
    assert view["data"]["booked"] == "quarantined"  # the on_error path rejoins after the group


def test_group_without_error_takes_the_normal_path(engine: WorkflowEngine) -> None:
    deploy(engine, "group_error.yaml")
    instance_id = start(engine, "heat_treatment", {"temperatures": [830, 845, 860], "max_c": 880})
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert view["data"]["peak_c"] == 860
    assert view["data"]["booked"] == "hardened"
    assert view["ready_tasks"] == []


def _register_book_receipt(actions: ActionRegistry, calls: list[tuple]) -> None:
    def book_receipt(ctx: ActionContext, lot: str, qty: int) -> dict[str, Any]:
        calls.append((lot, qty))
        return {"document": f"GR-{lot}"}

    actions.register("erp.book_receipt", book_receipt, [Param("lot", "str"), Param("qty", "int")])


def test_group_around_a_call_without_error(engine: WorkflowEngine, actions: ActionRegistry) -> None:
    booked: list[tuple] = []
    _register_book_receipt(actions, booked)
    deploy(engine, "coating_supplier.yaml", "group_call_error.yaml")
    view = engine.instance(start(engine, "outsource_coating", {"lot": "L-2", "qty": 200}))
    assert view["status"] == m.COMPLETED
    assert view["data"]["coated"] == 200  # the called workflow's data came back
    assert view["data"]["receipt"] == {"document": "GR-L-2"}
    assert view["data"]["report"] == "L-2: coated"
    assert booked == [("L-2", 200)]


def test_group_on_error_catches_error_ended_inside_a_called_workflow(
    engine: WorkflowEngine, actions: ActionRegistry
) -> None:
    booked: list[tuple] = []
    _register_book_receipt(actions, booked)
    deploy(engine, "coating_supplier.yaml", "group_call_error.yaml")
    instance_id = start(engine, "outsource_coating", {"lot": "L-1", "qty": 800})
    view = engine.instance(instance_id)
    assert view["status"] == m.ACTIVE and view["error"] is None
    assert [t["name"] for t in view["ready_tasks"]] == ["decide_on_rejected_lot"]
    assert view["data"]["coating_state"] == "rejected"
    view = complete(engine, instance_id, "decide_on_rejected_lot", {"rework": True})
    assert view["status"] == m.COMPLETED
    assert view["data"]["report"] == "L-1: rejected"
    assert "receipt" not in view["data"]
    # The steps after the call inside the group must not run once the call ended with an error:
    # a rejected lot is never booked as received.
    assert booked == []


@pytest.mark.parametrize(
    ("measured", "state", "has_cert"), [(10, "locked", False), (3, "released CAL-G-1", True)]
)
def test_call_on_error_catches_error_ended_in_the_called_workflow(
    engine: WorkflowEngine, measured: int, state: str, has_cert: bool
) -> None:
    deploy(engine, "gauge_lab.yaml", "call_error.yaml")
    view = engine.instance(
        start(engine, "calibrate_gauge", {"gauge": "G-1", "measured_um": measured, "nominal_um": 2})
    )
    assert view["status"] == m.COMPLETED and view["error"] is None
    assert view["data"]["gauge_state"] == state
    assert ("cert" in view["data"]) is has_cert


def test_call_with_out_and_on_error_takes_the_error_path(engine: WorkflowEngine) -> None:
    deploy(engine, "gauge_lab.yaml", "call_out_error.yaml")
    fine = engine.instance(
        start(engine, "recalibrate_gauge", {"gauge": "G-2", "measured_um": 3, "nominal_um": 2})
    )
    assert fine["status"] == m.COMPLETED
    assert fine["data"]["certificate"] == "CAL-G-2" and fine["data"]["gauge_state"] == "released"

    view = engine.instance(
        start(engine, "recalibrate_gauge", {"gauge": "G-1", "measured_um": 10, "nominal_um": 2})
    )
    # `out` maps data of a call that ended normally; an error ending takes on_error instead.
    assert view["error"] is None
    assert view["status"] == m.COMPLETED
    assert view["data"]["gauge_state"] == "locked"
    assert "certificate" not in view["data"]


@pytest.mark.parametrize(
    ("certificate", "accepted"), [("S235", False), ("S355", True)], ids=["mismatch", "match"]
)
def test_end_with_an_error(engine: WorkflowEngine, certificate: str, accepted: bool) -> None:
    root = compiled_root("end_error.yaml")
    [error] = root.iterfind("bpmn:error", NS)
    assert (error.get("errorCode"), error.get("id")) == ("wrong_material", "error__wrong_material")
    [end] = [e for e in root.iterfind(".//bpmn:endEvent", NS) if e.get("id") == "wrong_material"]
    assert end.find("bpmn:errorEventDefinition", NS).get("errorRef") == "error__wrong_material"

    deploy(engine, "end_error.yaml")
    view = engine.instance(
        start(engine, "material_check", {"certificate_grade": certificate, "ordered_grade": "S355"})
    )
    # Nothing catches the error at the top level: the instance ends there.
    assert view["status"] == m.COMPLETED
    assert view["ready_tasks"] == [] and view["waiting"] == []
    assert view["data"]["grade_ok"] is accepted
    assert ("accepted" in view["data"]) is accepted
    assert ("mismatch" in view["data"]) is not accepted
    # The history keeps the uncaught error, so a completed instance shows how it ended.
    uncaught = [e["details"] for e in view["history"] if e["kind"] == "error_uncaught"]
    assert uncaught == ([] if accepted else [{"code": "wrong_material", "name": "wrong_material"}])


# ---------------------------------------------------------------------- send
@pytest.mark.parametrize("batches", ["one batch", "separate deploys"])
def test_send_message_reaches_the_correlated_waiting_workflow(
    engine: WorkflowEngine, batches: str
) -> None:
    if batches == "one batch":
        deploy(engine, "send_message.yaml", "shopfloor_order.yaml")
    else:  # each workflow deployed on its own (e.g. uploaded, or the sender edited later)
        deploy(engine, "shopfloor_order.yaml")
        deploy(engine, "send_message.yaml")
    other = start(engine, "shopfloor_order", {"order_id": "PO-1"})
    receiver = start(engine, "shopfloor_order", {"order_id": "PO-2"})
    sender = start(
        engine,
        "release_to_shopfloor",
        {"order_id": "PO-2", "qty": 100, "already_made": 30, "machine_no": 4},
    )
    view = engine.instance(sender)
    assert view["status"] == m.COMPLETED and view["data"]["release_qty"] == 70
    [sent] = [e for e in view["history"] if e["kind"] == "message_sent"]
    assert sent["details"]["name"] == "order_released"
    assert sent["details"]["correlation"] == {"order_id": "PO-2"}

    view = engine.instance(receiver)
    assert view["status"] == m.ACTIVE
    assert view["data"]["release"] == {"order_id": "PO-2", "qty": 70, "machine": "CNC-4"}
    [task] = view["ready_tasks"]
    assert task["instructions"] == "Produce 70 on CNC-4"
    assert kinds(view) == ["started", "message_received"]
    assert status(engine, other) == m.ACTIVE and ready(engine, other) == []
    assert engine.instance(other)["waiting"][0]["correlation"] == {"order_id": "PO-1"}


def test_send_signal_reaches_every_waiting_workflow(engine: WorkflowEngine) -> None:
    deploy(engine, "send_signal.yaml", "wait_signal.yaml")
    watchers = [start(engine, "line_watch", {"station": s}) for s in ("ST-1", "ST-2")]
    stopper = start(engine, "stop_line", {"reason": "jam"})
    view = engine.instance(stopper)
    assert view["status"] == m.COMPLETED
    assert view["data"]["stop_reason"] == "andon: jam"
    [sent] = [e for e in view["history"] if e["kind"] == "signal_sent"]
    assert sent["details"]["name"] == "line_stop"
    for watcher in watchers:
        watched = engine.instance(watcher)
        assert watched["status"] == m.COMPLETED
        assert watched["data"]["state"] == "held"
        assert kinds(watched) == ["started", "signal_received", "completed"]


# ---------------------------------------------------------------------- goto
def test_goto_loops_back_and_exits(engine: WorkflowEngine) -> None:
    deploy(engine, "goto.yaml")
    shipped = start(engine, "paint_touch_up", {"part": "hood"})
    complete(engine, shipped, "inspect_paint", {"paint_ok": False})
    complete(engine, shipped, "touch_up_paint")
    assert ready(engine, shipped) == ["inspect_paint"]  # jumped back
    view = complete(engine, shipped, "inspect_paint", {"paint_ok": True})
    assert view["status"] == m.COMPLETED
    assert (view["data"]["outcome"], view["data"]["touch_ups"]) == ("shipped", 1)
    assert [e for _, e in trail(view) if e] == ["inspect_paint", "touch_up_paint", "inspect_paint"]

    scrapped = start(engine, "paint_touch_up", {"part": "door"})
    for _ in range(2):
        complete(engine, scrapped, "inspect_paint", {"paint_ok": False})
        complete(engine, scrapped, "touch_up_paint")
    view = complete(engine, scrapped, "inspect_paint", {"paint_ok": False})
    assert view["status"] == m.COMPLETED  # the exit: no third touch-up
    assert (view["data"]["outcome"], view["data"]["touch_ups"]) == ("scrapped", 2)
    assert kinds(view).count("task_completed") == 5


# ---------------------------------------------------------------------- start events
def test_process_started_by_a_message(engine: WorkflowEngine) -> None:
    [deployed] = deploy(engine, "message_start.yaml")
    assert deployed["process_id"] == "handle_machine_alarm"
    result = engine.send_message("machine_alarm", data={"machine": "CNC-4", "code": 512})
    assert result.delivered_to == [] and not result.buffered
    [instance_id] = result.started
    view = engine.instance(instance_id)
    assert view["process_id"] == "handle_machine_alarm"
    assert kinds(view)[:2] == ["started", "message_received"]
    assert view["error"] is None and view["status"] == m.ACTIVE
    # The message's payload is the instance's (like a wait's default `into`: the message name).
    assert view["data"]["machine_alarm"] == {"machine": "CNC-4", "code": 512}
    assert view["data"]["severity"] == "high"
    [task] = view["ready_tasks"]
    assert task["instructions"] == "Check CNC-4 (alarm 512, high)"


def test_process_started_by_a_signal(engine: WorkflowEngine) -> None:
    deploy(engine, "signal_start.yaml")
    assert engine.send_signal("line_stop").started == []
    result = engine.send_signal("shift_change", data={"shift": "late"})
    [instance_id] = result.started
    view = engine.instance(instance_id)
    assert view["process_id"] == "shift_handover" and view["status"] == m.ACTIVE
    assert kinds(view) == ["started", "signal_received"]
    view = complete(engine, instance_id, "hand_over_the_shift")
    assert view["status"] == m.COMPLETED and view["data"]["handed_over"] is True


# ---------------------------------------------------------------------- lanes
def test_lanes(engine: WorkflowEngine) -> None:
    root = compiled_root("lanes.yaml")
    lanes = {
        lane.get("name"): [ref.text for ref in lane.iterfind("bpmn:flowNodeRef", NS)]
        for lane in root.iterfind(".//bpmn:lane", NS)
    }
    assert list(lanes) == ["planner", "quality", "operator"]
    assert {"record_complaint", "inform_customer"} <= set(lanes["planner"])
    assert "analyse_root_cause" in lanes["quality"]
    # An automated step sits in the lane of the step leading to it.
    assert {"implement_corrective_action", "close_complaint"} <= set(lanes["operator"])
    every = [ref for refs in lanes.values() for ref in refs]
    assert len(every) == len(set(every))  # each node in exactly one lane

    deploy(engine, "lanes.yaml")
    instance_id = start(engine, "customer_complaint")
    steps = [
        (
            "record_complaint",
            "planner",
            "user",
            "complaint",
            {"complaint_no": "C-77", "defect": "burr"},
        ),
        ("analyse_root_cause", "quality", "user", "root_cause", {"root_cause": "worn tool"}),
        ("implement_corrective_action", "operator", "manual", None, {}),
        ("inform_customer", "planner", "user", None, {"customer_informed": True}),
    ]
    for name, lane, kind, form, submitted in steps:
        [task] = engine.tasks(instance_id)
        assert (task["name"], task["lane"], task["kind"], task["form"]) == (name, lane, kind, form)
        view = engine.complete_task(task["task_id"], submitted, actor=f"{lane}-user")
    assert view["status"] == m.COMPLETED
    assert view["data"]["closed"] is True and view["data"]["customer_informed"] is True
    completed = [e for e in view["history"] if e["kind"] == "task_completed"]
    assert [(e["element_id"], e["details"]["lane"]) for e in completed] == [
        (name, lane) for name, lane, *_ in steps
    ]
    [root_cause] = [t for t in completed if t["element_id"] == "analyse_root_cause"]
    assert root_cause["actor"] == "quality-user"


def test_tasks_inside_a_group_keep_their_own_lanes(engine: WorkflowEngine) -> None:
    """SpiffWorkflow gives every task of a subprocess the subprocess's lane; the engine keeps
    each task's own lane (else an operator could claim the quality task below)."""
    engine.deploy_text(
        "inspection_group.yaml",
        """\
process: inspection_group
lanes: [operator, quality]
steps:
  - group: First part
    timeout:
      after: PT8H
      steps: []
    steps:
      - task: Make first part
        lane: operator
      - task: Inspect first part
        lane: quality
""",
    )
    instance_id = start(engine, "inspection_group")
    [made] = engine.tasks(instance_id)
    assert (made["name"], made["lane"]) == ("make_first_part", "operator")
    engine.complete_task(made["task_id"])
    [inspected] = engine.tasks(instance_id)
    assert (inspected["name"], inspected["lane"]) == ("inspect_first_part", "quality")


AGAIN = """\
process: recount
steps:
  - script: First count
    set:
      bins: "['B-1', 'B-2']"
      rounds: 0
      told: 0
  - for_each: Count a bin
    id: count_bins
    items: bins
    as: bin
    steps:
      - send: Bin counted
        message: bin_counted
        payload: {bin: bin}
      - script: Tally
        set:
          told: told + 1
  - script: Next round
    set:
      rounds: rounds + 1
      bins: "[] if rounds == 1 else ['B-3']"
  - choose: Again?
    branches:
      - when: rounds < 3
        steps:
          - goto: count_bins
"""


def test_a_for_each_entered_again_runs_again_even_over_an_empty_list(
    engine: WorkflowEngine,
) -> None:
    engine.deploy_text("recount.yaml", AGAIN)
    instance_id = start(engine, "recount")
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED, view.get("error")
    # Two bins, then none, then one: each pass sent its message.
    with Session(engine.bind) as s:
        sent = s.scalars(select(m.InboxMessage.payload).where(m.InboxMessage.name == "bin_counted"))
        assert sorted(json.loads(p)["bin"] for p in sent) == ["B-1", "B-2", "B-3"]
    assert view["data"]["bins"] == ["B-3"] and view["data"]["rounds"] == 3
