"""Task forms on the screens: rendering, per-field errors, nothing stored until valid,
signatures, escaping, the engineer's preview and the manager's reassign form."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

WORKFLOW = """\
process: inspection
lanes: [operator, quality]
steps:
  - task: Inspect lot
    lane: operator
    form: lot_check
  - task: Release lot
    lane: quality
    form: lot_release
"""
LOT_CHECK = """\
form: lot_check
title: "Lot check {{ order_id }}"
sections:
  - title: "Lot {{ lot }}"
    fields:
      - name: lot_no
        type: scan
        label: Lot number
        pattern: "L-[0-9]+"
        pattern_hint: a lot number such as L-77
        required: true
      - name: bore_mm
        type: measurement
        unit: mm
        nominal_from: nominal_mm
        tolerance: 0.05
        required: true
      - name: note
        type: textarea
        show_if: {field: bore_mm, out_of_tolerance: true}
        required: true
      - name: pieces
        type: integer
        min: 1
        max: 500
        default_from: planned
"""
LOT_RELEASE = """\
form: lot_release
fields:
  - name: decision
    type: select
    options: [release, block]
    required: true
  - name: signature
    type: signature
    meaning: I release this lot.
    required: true
"""


@pytest.fixture
def plant(app: Any) -> Callable[..., tuple[int, str]]:
    """Users, the inspection workflow and its forms; plant(data) starts an instance and
    returns (instance id, id of its first task)."""
    from taktflow.app import accounts, workflow_engine

    with app.app_context():
        accounts().create_user("olga", ["operator"], "olga-pass-1", display_name="Olga")
        accounts().create_user("quinn", ["quality"], "quinn-pass-1", display_name="Quinn")
        accounts().create_user("mia", ["manager", "operator"], "mia-pass-1")
        accounts().create_user("erik", ["engineer"], "erik-pass-1")
        for name, text in (("lot_check.yaml", LOT_CHECK), ("lot_release.yaml", LOT_RELEASE),
                           ("inspection.yaml", WORKFLOW)):  # fmt: skip
            workflow_engine().deploy_text(name, text)

    def start(data: dict | None = None) -> tuple[int, str]:
        with app.app_context():
            view = workflow_engine().start(
                "inspection", data or {"order_id": "PO-9", "nominal_mm": 25.0, "lot": "L-1"}
            )
            return view["instance_id"], view["ready_tasks"][0]["task_id"]

    return start


def data_of(app: Any, instance_id: int) -> dict:
    from taktflow.app import workflow_engine

    with app.app_context():
        return workflow_engine().instance(instance_id, history=False)["data"]


def test_the_task_page_renders_the_form_with_task_data(
    client: Any, plant: Callable, sign_in: Callable
) -> None:
    _, task_id = plant({"order_id": "PO-<i>9</i>", "nominal_mm": 25.0, "lot": "L-1",
                        "planned": 40})  # fmt: skip
    sign_in(client, "olga", "olga-pass-1")
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert 'id="form-title">Lot check PO-&lt;i&gt;9&lt;/i&gt;<' in page
    assert "<legend>Lot L-1</legend>" in page
    assert 'id="f-lot_no"' in page and "data-scan" in page
    assert 'data-lower="24.95" data-upper="25.05"' in page
    assert 'id="f-bore_mm-verdict"' in page
    assert re.search(r'id="f-pieces"[^>]*value="40"', page)  # default from task data
    assert 'data-show-if=\'{"field": "bore_mm", "out_of_tolerance": true}\'' in page


def test_a_wrong_submission_shows_each_error_and_stores_nothing(
    client: Any, app: Any, plant: Callable, sign_in: Callable, csrf: Callable
) -> None:
    instance_id, task_id = plant()
    sign_in(client, "olga", "olga-pass-1")
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    before = data_of(app, instance_id)

    sent = {"csrf_token": csrf(page), "lot_no": "X-1", "bore_mm": "25,2", "pieces": "0"}
    response = client.post(f"/tasks/{task_id}/complete", data=sent)

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    errors = dict(re.findall(r'id="f-(\w+)-error" role="alert">([^<]*)<', page))
    assert errors == {
        "lot_no": "&#39;X-1&#39; does not match: expected a lot number such as L-77",
        "note": "this field is required",
        "pieces": "at least 1",
    }
    assert "3 fields need attention: nothing was saved." in page
    assert re.search(r'id="f-lot_no"[^>]*value="X-1"', page)  # what was typed stays
    assert data_of(app, instance_id) == before
    from taktflow.app import workflow_engine

    with app.app_context():
        assert [t["task_id"] for t in workflow_engine().tasks(instance_id)] == [task_id]


def test_a_valid_submission_stores_the_values_and_the_verdict(
    client: Any, app: Any, plant: Callable, sign_in: Callable, csrf: Callable
) -> None:
    instance_id, task_id = plant()
    sign_in(client, "olga", "olga-pass-1")
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    response = client.post(
        f"/tasks/{task_id}/complete",
        data={"csrf_token": csrf(page), "lot_no": " L-77 ", "bore_mm": "25,03", "note": "hidden",
              "pieces": "12", "unknown": "ignored"},
    )  # fmt: skip
    assert response.status_code == 302
    data = data_of(app, instance_id)
    assert {k: data[k] for k in ("lot_no", "bore_mm", "bore_mm_verdict", "pieces")} == {
        "lot_no": "L-77", "bore_mm": 25.03, "bore_mm_verdict": "in", "pieces": 12,
    }  # fmt: skip
    # The note was hidden (in tolerance): not stored; unknown keys are not stored either.
    assert "note" not in data and "unknown" not in data
    assert "“Inspect lot” done." in client.get("/tasks").get_data(as_text=True)


def test_a_signature_needs_the_signers_own_password(
    client: Any, app: Any, plant: Callable, sign_in: Callable, csrf: Callable
) -> None:
    from taktflow.app import workflow_engine

    instance_id, first = plant()
    with app.app_context():
        workflow_engine().complete_task(first, {"lot_no": "L-1", "bore_mm": 25.0})
        [task] = workflow_engine().tasks(instance_id)
    sign_in(client, "quinn", "quinn-pass-1")
    page = client.get(f"/tasks/{task['task_id']}").get_data(as_text=True)
    assert 'id="f-signature-meaning">I release this lot.<' in page
    wrong = client.post(f"/tasks/{task['task_id']}/complete",
                        data={"csrf_token": csrf(page), "decision": "release",
                              "signature": "olga-pass-1"})  # fmt: skip
    assert wrong.status_code == 422
    shown = wrong.get_data(as_text=True)
    assert "the password is not the one of quinn: not signed" in shown
    assert "olga-pass-1" not in shown  # a password is never sent back
    assert "signature" not in data_of(app, instance_id)

    signed = client.post(f"/tasks/{task['task_id']}/complete",
                         data={"csrf_token": csrf(page), "decision": "release",
                               "signature": "quinn-pass-1"})  # fmt: skip
    assert signed.status_code == 302
    record = data_of(app, instance_id)["signature"]
    assert record["signer"] == "quinn" and record["signer_name"] == "Quinn"
    assert record["meaning"] == "I release this lot."
    assert record["values"] == {"decision": "release"}
    assert "quinn-pass-1" not in json.dumps(data_of(app, instance_id))
    with app.app_context():
        audit = workflow_engine().instance(instance_id)["history"]
    assert "quinn-pass-1" not in json.dumps(audit)


def test_a_task_whose_form_is_not_deployed_is_refused_with_the_reason(
    client: Any, app: Any, sign_in: Callable, csrf: Callable
) -> None:
    from taktflow.app import accounts, workflow_engine

    with app.app_context():
        accounts().create_user("olga", ["operator"], "olga-pass-1")
        workflow_engine().deploy_text("inspection.yaml", WORKFLOW)
        view = workflow_engine().start("inspection", {})
    task_id = view["ready_tasks"][0]["task_id"]
    sign_in(client, "olga", "olga-pass-1")
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert "uses form &#39;lot_check&#39;, which is not deployed" in page
    response = client.post(f"/tasks/{task_id}/complete",
                           data={"csrf_token": csrf(page), "comment": "x"})  # fmt: skip
    assert response.status_code == 302
    with app.app_context():
        assert workflow_engine().tasks(view["instance_id"])[0]["task_id"] == task_id


def test_engineers_preview_deployed_and_pasted_forms(
    client: Any, plant: Callable, sign_in: Callable, csrf: Callable
) -> None:
    plant()
    sign_in(client, "erik", "erik-pass-1")
    listing = client.get("/forms").get_data(as_text=True)
    assert 'href="/forms/lot_check"' in listing and 'href="/forms/lot_release"' in listing
    sample = json.dumps({"order_id": "PO-5", "nominal_mm": 10, "lot": "L-5"})
    page = client.get("/forms/lot_check", query_string={"data": sample}).get_data(as_text=True)
    assert "<h2>Lot check PO-5</h2>" in page
    assert 'data-lower="9.95" data-upper="10.05"' in page
    bad = client.get("/forms/lot_check", query_string={"data": "[1"}).get_data(as_text=True)
    assert "sample data:" in bad

    form_page = client.get("/forms/preview").get_data(as_text=True)
    broken = LOT_RELEASE.replace("type: select", "type: choice")
    response = client.post("/forms/preview", data={"csrf_token": csrf(form_page),
                                                   "source": broken, "data": "{}"})  # fmt: skip
    assert response.status_code == 422
    assert "preview.yaml:4:11: field &#39;decision&#39;: unknown type &#39;choice&#39;" in (
        response.get_data(as_text=True)
    )
    good = client.post("/forms/preview", data={"csrf_token": csrf(form_page),
                                               "source": LOT_RELEASE, "data": "{}"})  # fmt: skip
    assert good.status_code == 200 and 'id="f-decision"' in good.get_data(as_text=True)


def test_operators_cannot_open_the_forms_pages(
    client: Any, plant: Callable, sign_in: Callable
) -> None:
    plant()
    sign_in(client, "olga", "olga-pass-1")
    assert client.get("/forms").status_code == 403
    assert client.get("/forms/lot_check").status_code == 403


def test_a_manager_reassigns_from_the_task_page(
    client: Any, app: Any, plant: Callable, sign_in: Callable, csrf: Callable
) -> None:
    from taktflow.app import workflow_engine

    _, task_id = plant()
    sign_in(client, "mia", "mia-pass-1")
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    options = re.findall(r'<option value="(\w+)"', page.split('id="reassign"')[1])
    assert options == ["mia", "olga"]  # users whose roles include the operator lane
    moved = client.post(f"/tasks/{task_id}/assign", data={"csrf_token": csrf(page),
                                                          "user": "olga"})  # fmt: skip
    assert moved.status_code == 302
    with app.app_context():
        assert workflow_engine().task(task_id)["claimed_by"] == "olga"
    # An operator does not see the reassign form.
    client.post("/logout", data={"csrf_token": csrf(page)})
    sign_in(client, "olga", "olga-pass-1")
    assert 'id="reassign"' not in client.get(f"/tasks/{task_id}").get_data(as_text=True)
