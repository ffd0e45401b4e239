"""lint_paths and `taktflow lint`: YAML findings point at YAML lines, references resolve across
the linted files and the workflows folder, deploy checks and design checks are combined, and
the exit status follows the errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from taktflow.cli import cli
from taktflow.engine.actions import ActionRegistry, builtin_actions
from taktflow.lint import ERROR, WARNING, lint_paths

ROOT = Path(__file__).parents[2]

RELEASE = """\
process: order_release
lanes: [planner, approvers]
steps:
  - task: Check order
    lane: planner
    form: check_order
  - wait: Material arrives
    message: material_arrived
    correlate: [order_id]
  - service: Reserve
    action: erp.reserve
  - call: Procure
    process: procurement
  - task: Approve
    lane: approvers
    form: approve
"""

PROCUREMENT = """\
process: procurement
steps:
  - send: Material arrived
    message: material_arrived
    correlate: [order_id]
"""


@pytest.fixture
def actions() -> ActionRegistry:
    registry = ActionRegistry()
    builtin_actions(registry)
    return registry


def test_yaml_findings_point_at_the_yaml_step(tmp_path: Path, actions: ActionRegistry) -> None:
    release = tmp_path / "release.yaml"
    release.write_text(RELEASE)
    forms = tmp_path / "forms"
    forms.mkdir()
    (forms / "check_order.yaml").write_text("title: Check order\n")
    report = lint_paths(
        [release],
        actions=actions,
        workflows_path=tmp_path / "nowhere",
        forms_path=forms,
        roles=["planner", "manager"],
    )
    found = {(f.rule, f.severity, f.line) for f in report.findings}
    assert found == {
        ("unknown-role", ERROR, 2),  # lane approvers holds a user task
        ("message-never-sent", WARNING, 7),
        ("unknown-action", ERROR, 10),
        ("unknown-process", ERROR, 12),
        ("unknown-form", ERROR, 14),
    }
    assert all(f.file == str(release) for f in report.findings)
    assert report.errors == 4 and report.warnings == 1


def test_references_resolve_against_the_workflows_folder(
    tmp_path: Path, actions: ActionRegistry
) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "release.yaml").write_text(RELEASE.replace("erp.reserve", "taktflow.echo"))
    (folder / "procurement.yaml").write_text(PROCUREMENT)
    report = lint_paths(
        [folder / "release.yaml"],
        actions=actions,
        workflows_path=folder,
        roles=["planner", "approvers"],
    )
    assert report.findings == []
    assert report.files == [str(folder / "release.yaml")]


def test_a_yaml_file_that_does_not_compile_is_one_error_and_the_rest_is_checked(
    tmp_path: Path,
) -> None:
    (tmp_path / "broken.yaml").write_text("process: broken\nsteps:\n  - task: A\n    lanee: x\n")
    (tmp_path / "ok.bpmn").write_text(
        (ROOT / "tests/engine/bpmn/exclusive_gateway.bpmn").read_text()
    )
    report = lint_paths([tmp_path])
    [broken] = [f for f in report.findings if f.file.endswith("broken.yaml")]
    assert (broken.rule, broken.line, broken.column) == ("invalid-file", 4, 5)
    assert "unknown key 'lanee'" in broken.message
    assert report.files == sorted([str(tmp_path / "broken.yaml"), str(tmp_path / "ok.bpmn")])


def test_deploy_checks_are_reported_with_the_element_line(tmp_path: Path) -> None:
    report = lint_paths([ROOT / "tests/engine/data/broken_script.bpmn"])
    deploy = [f for f in report.findings if f.rule == "deploy-check"]
    assert {f.element for f in deploy} == {"escape_attempt", "gw"}
    assert all(f.line for f in deploy)


def run_cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli,
        ["lint", *args],
        env={
            "TAKTFLOW_WORKFLOWS_PATH": str(cwd / "workflows"),
            "TAKTFLOW_FORMS_PATH": str(cwd / "forms"),
            "TAKTFLOW_CONNECTORS_PATH": str(cwd / "connectors"),
            "TAKTFLOW_ACTION_MODULES": "",
            "TAKTFLOW_ROLES": None,
        },
        catch_exceptions=False,
    )
    return result.exit_code, result.stdout, result.stderr


def test_cli_exit_status_follows_errors_and_strict_warnings(tmp_path: Path) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "procurement.yaml").write_text(PROCUREMENT)
    release = RELEASE.replace("erp.reserve", "taktflow.echo").replace("approvers", "manager")
    (folder / "release.yaml").write_text(release)
    status, out, err = run_cli(cwd=tmp_path)
    assert (status, err) == (0, "")
    assert out.splitlines()[-1] == "2 file(s): 0 error(s), 0 warning(s)"

    (folder / "release.yaml").write_text(release.replace("form: approve\n", ""))
    status, out, _ = run_cli(cwd=tmp_path)
    assert status == 0
    assert (
        f"{folder / 'release.yaml'}:14: warning: element 'approve': user task without a form" in out
    )
    status, _, _ = run_cli("--strict", cwd=tmp_path)
    assert status == 1

    (folder / "release.yaml").write_text(release.replace("lane: manager", "lane: managers"))
    status, out, _ = run_cli("--json", cwd=tmp_path)
    assert status == 1
    body = json.loads(out)
    assert body["errors"] == 1
    [finding] = body["findings"]
    assert finding["rule"] == "invalid-file" and finding["line"] == 15 and finding["column"] == 11
    assert "unknown lane 'managers'" in finding["message"]


def test_cli_lints_the_demo_workflows_without_errors() -> None:
    result = CliRunner().invoke(
        cli, ["lint", str(ROOT / "workflows"), "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stdout
    assert json.loads(result.stdout)["errors"] == 0
