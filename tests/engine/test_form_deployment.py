"""Forms deploy with the workflows: versions, no-op redeploys, one batch all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import DefinitionError, NotFound

FORM = """\
# a comment before the first key is fine
form: setup_sheet
fields:
  - name: setup_min
    type: integer
    required: true
"""
WORKFLOW = """\
process: setup
lanes: [operator]
steps:
  - task: Record setup
    lane: operator
    form: setup_sheet
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def test_a_folder_of_forms_and_workflows_deploys_as_one_batch(
    engine: WorkflowEngine, tmp_path: Path
) -> None:
    write(tmp_path / "forms", "setup_sheet.yaml", FORM)
    write(tmp_path / "workflows", "setup.yaml", WORKFLOW)
    results = engine.deploy_paths([tmp_path / "forms", tmp_path / "workflows"], actor="erik")
    assert [(r["kind"], r["form"] or r["process_id"], r["version"], r["changed"])
            for r in results] == [("form", "setup_sheet", 1, True),
                                  ("process", "setup", 1, True)]  # fmt: skip
    again = engine.deploy_paths([tmp_path / "forms"])
    assert [(r["version"], r["changed"]) for r in again] == [(1, False)]
    write(tmp_path / "forms", "setup_sheet.yaml", FORM.replace("required: true", "min: 1"))
    [second] = engine.deploy_paths([tmp_path / "forms"])
    assert (second["version"], second["changed"]) == (2, True)
    assert engine.form("setup_sheet").fields[0].min == 1
    assert engine.form("setup_sheet", 1).fields[0].required is True
    [listed] = engine.forms()
    assert (listed["name"], listed["version"], listed["deployed_by"]) == ("setup_sheet", 2, None)
    assert engine.form_source("setup_sheet", 1)["source"] == FORM


def test_a_broken_form_stops_the_whole_batch(engine: WorkflowEngine, tmp_path: Path) -> None:
    write(tmp_path, "setup_sheet.yaml", FORM.replace("type: integer", "type: number"))
    write(tmp_path, "setup.yaml", WORKFLOW)
    with pytest.raises(DefinitionError) as caught:
        engine.deploy_paths([tmp_path])
    [problem] = caught.value.problems
    assert (Path(problem.file).name, problem.line, problem.column) == ("setup_sheet.yaml", 5, 11)
    assert "unknown type 'number'" in problem.reason
    assert engine.forms() == [] and engine.processes() == []


def test_a_form_name_defined_twice_in_a_batch_is_refused(
    engine: WorkflowEngine, tmp_path: Path
) -> None:
    write(tmp_path, "a.yaml", FORM)
    write(tmp_path, "b.yaml", FORM)
    with pytest.raises(DefinitionError, match="form 'setup_sheet' is also defined in"):
        engine.deploy_paths([tmp_path])


def test_an_unknown_form_is_not_found(engine: WorkflowEngine) -> None:
    with pytest.raises(NotFound, match="form 'nothing' is not deployed"):
        engine.form("nothing")
    engine.deploy_text("setup_sheet.yaml", FORM)
    with pytest.raises(NotFound, match="form 'setup_sheet' version 3 is not deployed"):
        engine.form("setup_sheet", 3)
