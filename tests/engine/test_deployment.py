"""Deploying definitions: versions, no-op redeploys, all-or-nothing batches, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import DefinitionError

DATA = Path(__file__).parent / "data"


def deploy_as(engine: WorkflowEngine, tmp_path: Path, source: str, name: str) -> list[dict]:
    """Deploy `source` under the file name `name` (as an engineer editing one file would)."""
    target = tmp_path / name
    shutil.copy(DATA / source, target)
    return engine.deploy_paths([target])


def test_new_content_makes_a_new_version_and_same_content_is_a_no_op(
    engine: WorkflowEngine, tmp_path: Path
) -> None:
    [first] = deploy_as(engine, tmp_path, "versioned_v1.bpmn", "versioned.bpmn")
    assert (first["process_id"], first["version"], first["changed"]) == ("versioned", 1, True)
    [again] = deploy_as(engine, tmp_path, "versioned_v1.bpmn", "versioned.bpmn")
    assert (again["version"], again["changed"]) == (1, False)
    [second] = deploy_as(engine, tmp_path, "versioned_v2.bpmn", "versioned.bpmn")
    assert (second["version"], second["changed"]) == (2, True)
    process = engine.process("versioned")
    assert [v["version"] for v in process["versions"]] == [2, 1]
    assert "Step A (revised)" in engine.process_source("versioned")
    assert "Step A (revised)" not in engine.process_source("versioned", 1)


def test_running_instances_stay_on_their_version(engine: WorkflowEngine, tmp_path: Path) -> None:
    deploy_as(engine, tmp_path, "versioned_v1.bpmn", "versioned.bpmn")
    old = engine.start("versioned")["instance_id"]
    deploy_as(engine, tmp_path, "versioned_v2.bpmn", "versioned.bpmn")
    new = engine.start("versioned")["instance_id"]
    assert engine.instance(old)["version"] == 1
    assert engine.instance(new)["version"] == 2
    [old_task] = engine.tasks(old)
    [new_task] = engine.tasks(new)
    assert old_task["title"] == "Step A" and new_task["title"] == "Step A (revised)"
    assert engine.complete_task(old_task["task_id"])["data"]["path"] == "v1"
    assert engine.complete_task(new_task["task_id"])["data"]["path"] == "v2"


def test_a_folder_deploys_every_definition_in_it(engine: WorkflowEngine, tmp_path: Path) -> None:
    for name in ("production_order.bpmn", "versioned_v1.bpmn", "failing_script.bpmn"):
        shutil.copy(DATA / name, tmp_path / name)
    results = engine.deploy_paths([tmp_path])
    assert sorted(r["process_id"] for r in results) == [
        "failing_script",
        "production_order",
        "versioned",
    ]
    assert [p["process_id"] for p in engine.processes()] == [
        "failing_script",
        "production_order",
        "versioned",
    ]


def test_invalid_files_name_file_element_and_reason_and_deploy_nothing(
    engine: WorkflowEngine,
) -> None:
    with pytest.raises(DefinitionError) as caught:
        engine.deploy_paths(
            [DATA / "production_order.bpmn", DATA / "broken_script.bpmn", DATA / "not_xml.bpmn"]
        )
    problems = caught.value.problems
    by_element = {(Path(p.file).name, p.element): p.reason for p in problems}
    assert any(f == "not_xml.bpmn" and p.line for p in problems for f in [Path(p.file).name])
    assert "__class__" in by_element[("broken_script.bpmn", "escape_attempt")]
    assert "condition" in by_element[("broken_script.bpmn", "gw")]
    # Nothing from the batch was deployed, not even the valid file.
    assert engine.processes() == []


def test_call_to_a_process_that_is_not_deployed_is_refused(engine: WorkflowEngine) -> None:
    with pytest.raises(DefinitionError) as caught:
        engine.deploy_paths([DATA / "calls_missing.bpmn"])
    [problem] = caught.value.problems
    assert problem.element == "call_rework"
    assert "rework_process" in problem.reason and "neither deployed" in problem.reason


@pytest.mark.parametrize(
    ("name", "reason"),
    [("missing.bpmn", "no such file"), ("notes.txt", "unsupported file type")],
)
def test_unreadable_paths(engine: WorkflowEngine, tmp_path: Path, name: str, reason: str) -> None:
    if name.endswith(".txt"):
        (tmp_path / name).write_text("hello")
    with pytest.raises(DefinitionError, match=reason):
        engine.deploy_paths([tmp_path / name])
