"""Forms through the API: a task comes with its form, a submission is checked field by field
(422 with a message per field, nothing stored), signatures take the caller's password."""

from __future__ import annotations

from typing import Any

import pytest

WORKFLOW = """\
process: qc
lanes: [quality]
steps:
  - task: Check part
    lane: quality
    form: qc_sheet
"""
QC_FORM = """\
form: qc_sheet
title: "Check {{ part }}"
fields:
  - name: diameter
    type: measurement
    unit: mm
    nominal_from: nominal
    tolerance: 0.1
    required: true
  - name: result
    type: select
    options: [{value: ok, label: Good}, {value: bad, label: Bad}]
    required: true
  - name: sign
    type: signature
    meaning: "Checked {{ part }}"
    show_if: {field: result, equals: ok}
    required: true
"""


@pytest.fixture
def qc(call: Any, app: Any) -> str:
    """The qc workflow and form deployed; a task for the user 'quality' (password set)."""
    from taktflow.app import accounts

    with app.app_context():
        accounts().set_password("quality", "quality-pass-1")
    for name, text in (("qc_sheet.yaml", QC_FORM), ("qc.yaml", WORKFLOW)):
        response = call("POST", "/processes", "engineer", json={"name": name, "text": text})
        assert response.status_code == 201, response.get_json()
    started = call(
        "POST",
        "/instances",
        "quality",
        json={"process_id": "qc", "data": {"part": "<b>shaft</b>", "nominal": 8.0}},
    )
    return started.get_json()["ready_tasks"][0]["task_id"]  # fmt: skip


def test_a_task_comes_with_its_form_resolved_for_its_data(call: Any, qc: str) -> None:
    body = call("GET", f"/tasks/{qc}", "quality").get_json()
    form = body["form_definition"]
    assert form["name"] == "qc_sheet" and form["title"] == "Check <b>shaft</b>"  # plain text
    [section] = form["sections"]
    fields = {f["name"]: f for f in section["fields"]}
    assert fields["diameter"]["limits"] == {"nominal": 8.0, "lower": 7.9, "upper": 8.1}
    assert fields["result"]["options"] == [{"value": "ok", "label": "Good"},
                                           {"value": "bad", "label": "Bad"}]  # fmt: skip
    assert fields["sign"]["meaning"] == "Checked {{ part }}"
    assert fields["sign"]["show_if"] == {"field": "result", "equals": "ok"}
    assert body["data"] == {"part": "<b>shaft</b>", "nominal": 8.0}


def test_a_wrong_submission_is_422_per_field_and_stores_nothing(call: Any, qc: str) -> None:
    response = call("POST", f"/tasks/{qc}/complete", "quality",
                    json={"data": {"diameter": "wide", "result": "maybe", "extra": 1}})  # fmt: skip
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"]["fields"] == {
        "diameter": "expected a number, not 'wide'",
        "result": "'maybe' is not one of the options",
        "extra": "'extra' is not a field of form 'qc_sheet'",
    }
    assert error["message"].startswith("3 fields of form 'qc_sheet' need attention: ")
    task = call("GET", f"/tasks/{qc}", "quality")
    assert task.status_code == 200  # still ready
    assert task.get_json()["data"] == {"part": "<b>shaft</b>", "nominal": 8.0}


def test_a_signed_submission_records_the_signer(call: Any, qc: str) -> None:
    wrong = call("POST", f"/tasks/{qc}/complete", "quality",
                 json={"data": {"diameter": 8.05, "result": "ok", "sign": "nope"}})  # fmt: skip
    assert wrong.status_code == 422
    assert wrong.get_json()["error"]["details"]["fields"] == {
        "sign": "the password is not the one of quality: not signed"
    }
    done = call("POST", f"/tasks/{qc}/complete", "quality",
                json={"data": {"diameter": 8.05, "result": "ok",
                               "sign": {"password": "quality-pass-1"}}})  # fmt: skip
    assert done.status_code == 200, done.get_json()
    data = done.get_json()["data"]
    assert data["diameter_verdict"] == "in"
    assert data["sign"]["signer"] == "quality"
    assert data["sign"]["meaning"] == "Checked <b>shaft</b>"
    assert data["sign"]["values"] == {"diameter": 8.05, "result": "ok"}
    assert "quality-pass-1" not in str(done.get_json())


def test_a_hidden_signature_is_not_needed(call: Any, qc: str) -> None:
    done = call("POST", f"/tasks/{qc}/complete", "quality",
                json={"data": {"diameter": 9, "result": "bad"}})  # fmt: skip
    assert done.status_code == 200, done.get_json()
    data = done.get_json()["data"]
    assert (data["diameter"], data["diameter_verdict"], "sign" in data) == (9.0, "out", False)


def test_forms_are_listed_and_shown_with_their_source(call: Any, qc: str) -> None:
    [listed] = call("GET", "/forms", "operator").get_json()
    assert (listed["name"], listed["version"], listed["title"]) == (
        "qc_sheet",
        1,
        "Check {{ part }}",
    )
    shown = call("GET", "/forms/qc_sheet", "operator").get_json()
    assert shown["source"] == QC_FORM
    assert [f["name"] for f in shown["definition"]["sections"][0]["fields"]] == [
        "diameter", "result", "sign",
    ]  # fmt: skip
    assert call("GET", "/forms/nothing", "operator").status_code == 404
    again = call(
        "POST",
        "/processes",
        "engineer",
        json={"name": "qc_sheet.yaml", "text": QC_FORM.replace("Check", "Inspect")},
    )
    assert again.status_code == 201
    assert call("GET", "/forms/qc_sheet", "operator").get_json()["version"] == 2
    first = call("GET", "/forms/qc_sheet?version=1", "operator").get_json()
    assert first["version"] == 1 and first["source"] == QC_FORM


def test_a_broken_form_upload_is_422_with_the_line(call: Any) -> None:
    response = call(
        "POST",
        "/processes",
        "engineer",
        json={
            "name": "qc_sheet.yaml",
            "text": QC_FORM.replace("tolerance: 0.1", "tolerance: wide"),
        },
    )
    assert response.status_code == 422
    [problem] = response.get_json()["error"]["details"]
    assert (problem["file"], problem["line"]) == ("qc_sheet.yaml", 8)
    assert "tolerance must be a number, not 'wide'" in problem["reason"]
    assert call("GET", "/forms", "engineer").get_json() == []
