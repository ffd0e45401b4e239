"""`taktflow lint` on forms: broken form files with file and line, names that differ from the
file name, unknown lookups, and workflows that name a form by the form's own name."""

from __future__ import annotations

import textwrap
from pathlib import Path

from taktflow.app import build_actions
from taktflow.config import Config
from taktflow.lint import ERROR, WARNING, lint_paths

ROOT = Path(__file__).parents[2]


def y(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


GOOD_FORM = y("""
    form: setup_sheet
    fields:
      - name: operator
        type: scan
        required: true
    """)

WORKFLOW = y("""
    process: setup
    lanes: [operator]
    steps:
      - task: Record setup
        lane: operator
        form: setup_sheet
    """)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_broken_form_is_reported_with_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "setup_sheet.yaml", GOOD_FORM)
    broken = write(
        tmp_path,
        "press_check.yaml",
        y("""
            form: press_check
            fields:
              - name: force
                type: integer
                min: 10
                max: 5
              - name: note
                type: text
                colour: red
            """),
    )
    report = lint_paths([tmp_path], forms_path=tmp_path)
    found = [(f.rule, f.severity, f.file, f.line, f.column) for f in report.findings]
    assert found == [
        ("invalid-form", ERROR, str(broken), 5, 10),
        ("invalid-form", ERROR, str(broken), 9, 5),
    ]
    assert "min 10 is above max 5" in report.findings[0].message
    assert "unknown key 'colour'" in report.findings[1].message
    assert report.errors == 2 and report.warnings == 0
    assert str(broken) in report.files


def test_a_form_that_is_not_yaml_is_an_invalid_form(tmp_path: Path) -> None:
    broken = write(tmp_path, "press_check.yaml", 'form: press_check\ntitle: "open\n')
    report = lint_paths([tmp_path], forms_path=tmp_path)
    assert [(f.rule, f.file, f.line) for f in report.findings] == [("invalid-form", str(broken), 2)]
    assert "never closed" in report.findings[0].message


def test_a_form_named_differently_from_its_file_is_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "sheet_v2.yaml", GOOD_FORM)
    report = lint_paths([tmp_path], forms_path=tmp_path)
    assert [(f.rule, f.severity, f.file, f.line) for f in report.findings] == [
        ("form-name-mismatch", WARNING, str(path), 1)
    ]
    assert "setup_sheet.yaml" in report.findings[0].message
    assert report.errors == 0 and report.warnings == 1


def test_an_unknown_lookup_is_an_error_at_its_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "review.yaml",
        y("""
            form: review
            fields:
              - name: inspector
                type: select
                lookup: users
                lookup_role: quality
              - name: machine
                type: select
                lookup: machines
            """),
    )
    report = lint_paths([tmp_path], forms_path=tmp_path)
    assert [(f.rule, f.severity, f.file, f.line, f.element) for f in report.findings] == [
        ("unknown-lookup", ERROR, str(path), 7, "machine")
    ]
    assert "lookup 'machines' does not exist (lookups: users)" in report.findings[0].message


def test_a_workflow_finds_a_form_by_its_own_name_not_its_file_name(tmp_path: Path) -> None:
    forms = tmp_path / "forms"
    workflows = tmp_path / "workflows"
    forms.mkdir()
    workflows.mkdir()
    write(forms, "sheet_v2.yaml", GOOD_FORM)
    flow = write(workflows, "setup.yaml", WORKFLOW)
    roles = ["operator"]

    # The forms folder and the workflow linted together.
    report = lint_paths([forms, flow], forms_path=forms, workflows_path=workflows, roles=roles)
    assert [f.rule for f in report.findings] == ["form-name-mismatch"]

    # The workflow alone: the form's name is read from the forms folder.
    report = lint_paths([flow], forms_path=forms, workflows_path=workflows, roles=roles)
    assert report.findings == []

    # One folder holding both, as `forms_path`.
    both = tmp_path / "both"
    both.mkdir()
    write(both, "sheet_v2.yaml", GOOD_FORM)
    write(both, "setup.yaml", WORKFLOW)
    report = lint_paths([both], forms_path=both, roles=roles)
    assert "unknown-form" not in {f.rule for f in report.findings}


def test_a_workflow_naming_a_missing_form_is_still_reported(tmp_path: Path) -> None:
    forms = tmp_path / "forms"
    forms.mkdir()
    write(forms, "sheet_v2.yaml", GOOD_FORM)
    flow = write(tmp_path, "setup.yaml", WORKFLOW.replace("form: setup_sheet", "form: sheet_v2"))
    report = lint_paths([flow], forms_path=forms, roles=["operator"])
    assert [(f.rule, f.severity, f.line) for f in report.findings] == [("unknown-form", ERROR, 4)]


def test_a_form_file_with_a_byte_order_mark_is_linted_as_a_form(tmp_path: Path) -> None:
    path = tmp_path / "setup_sheet.yaml"
    path.write_text("\ufeff" + GOOD_FORM, encoding="utf-8")
    report = lint_paths([tmp_path], forms_path=tmp_path)
    assert report.findings == []
    assert report.files == [str(path)]


def test_the_shipped_forms_and_workflows_lint_without_errors() -> None:
    # The actions `make run` registers (the plant's workflows call the manufacturing ones).
    actions = build_actions(Config.from_env({}, {"connectors_path": str(ROOT / "connectors")}))
    report = lint_paths(
        [ROOT / "forms", ROOT / "workflows"],
        actions=actions,
        workflows_path=ROOT / "workflows",
        forms_path=ROOT / "forms",
        roles=Config().role_names,
    )
    errors = [str(f) for f in report.findings if f.severity == ERROR]
    assert errors == []
    assert {"form-name-mismatch", "invalid-form", "unknown-lookup", "unknown-form"}.isdisjoint(
        f.rule for f in report.findings
    )
    assert {Path(f).name for f in report.files} >= {
        "deviation_review.yaml",
        "first_article.yaml",
        "record_setup.yaml",
        "machine_order.bpmn",
    }
