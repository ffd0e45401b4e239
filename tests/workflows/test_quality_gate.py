"""Workflow 3, the quality gate (workflows/quality_gate.yaml), on the real engine and the demo
plant: every lot passes, is held for review, or fails into a nonconformance whose disposition
a manager signs. Forms are submitted through the forms service, which checks signatures
against the signer's password, as the task page and the API do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.auth.service import AccountService
from taktflow.config import DEFAULT_ROLES
from taktflow.engine import models as m
from taktflow.engine.clock import ManualClock
from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import ValidationFailed
from taktflow.forms.service import TaskForms
from taktflow.mfg.orders import create_order
from taktflow.mfg.quality import inspection_view, nonconformance_view, open_quality
from taktflow.mfg.quality_models import Inspection

FILES = (
    "forms/inspection_bracket.yaml",
    "forms/inspection_sheet.yaml",
    "forms/inspection_review.yaml",
    "forms/nonconformance_disposition.yaml",
    "workflows/quality_gate.yaml",
)
PASSWORDS = {"quinn": "quinn-quality", "mia": "mia-manager"}
LOT = {"order_number": "PO-7001", "sequence": 30, "item": "BRACKET-A", "lot": "L-7001",
       "quantity": 50, "plan": "bracket_a_final"}  # fmt: skip
IN_SPEC = {"hole_pitch": ["60.02", "59.98", "60.00"], "bend_angle": ["90.1", "89.9", "90.0"],
           "bolt_torque": ["25.0", "24.6", "25.3"]}  # fmt: skip


class Gate:
    """The deployed gate with a user per lane, submitting forms as the API does."""

    def __init__(self, engine: WorkflowEngine, bind: Engine, clock: ManualClock) -> None:
        self.engine, self.bind, self.clock = engine, bind, clock
        self.accounts = AccountService(bind, DEFAULT_ROLES.split(","))
        self.accounts.create_user("quinn", ["quality"], PASSWORDS["quinn"], "Quinn (quality)")
        self.accounts.create_user("mia", ["manager"], PASSWORDS["mia"], "Mia (manager)")
        self.forms = TaskForms(engine, self.accounts)

    def tasks(self, instance_id: int) -> dict[str, dict]:
        return {t["name"]: t for t in self.engine.tasks(instance_id)}

    def submit(self, task: dict, user: str, data: dict) -> dict:
        return self.forms.submit(
            task["task_id"], data, actor=user, display_name=user, strict=True,
            check_password=lambda given: self.accounts.verify_password(user, given),
        )  # fmt: skip

    def measure(self, instance_id: int, values: dict[str, list[Any]], **extra: Any) -> dict:
        """The inspector fills the bracket form (value None: not measured) and signs."""
        task = self.tasks(instance_id)["inspect_bracket_lot"]
        data = {f"{name}_{n}": value for name, row in values.items()
                for n, value in enumerate(row, 1)}  # fmt: skip
        data |= {"inspector_signature": PASSWORDS["quinn"]} | extra
        return self.submit(task, "quinn", data)

    def dispose(self, instance_id: int, disposition: str, password: str = "mia-manager") -> dict:
        task = self.tasks(instance_id)["approve_disposition"]
        return self.submit(task, "mia", {"disposition": disposition,
                                         "disposition_note": f"{disposition}: agreed with QA",
                                         "disposition_signature": password})  # fmt: skip

    def data(self, instance_id: int) -> dict[str, Any]:
        return self.engine.instance(instance_id)["data"]


@pytest.fixture
def gate(
    plant_engine: WorkflowEngine, deploy: Callable[..., list], sa_engine: Engine,
    clock: ManualClock,
) -> Gate:  # fmt: skip
    deploy(*FILES)
    with Session(sa_engine) as s, s.begin():
        create_order(s, number="PO-7001", item="BRACKET-A", quantity=50, now=clock.now())
    return Gate(plant_engine, sa_engine, clock)


def start(gate: Gate, **changes: Any) -> int:
    return gate.engine.start("quality_gate", LOT | changes, actor="olga")["instance_id"]


def outputs(gate: Gate, instance_id: int) -> tuple[Any, Any, Any]:
    data = gate.data(instance_id)
    return data["quality_result"], data["disposition"], data["nonconformance"]


def the_inspection(gate: Gate, instance_id: int) -> dict[str, Any]:
    with Session(gate.bind) as s:
        return inspection_view(s, gate.data(instance_id)["inspection"]["inspection"])


def test_a_lot_in_spec_passes_and_its_signed_inspection_is_recorded(gate: Gate) -> None:
    instance_id = start(gate)
    task = gate.tasks(instance_id)["inspect_bracket_lot"]
    assert (task["lane"], task["form"]) == ("quality", "inspection_bracket")
    form = gate.forms.view(task["task_id"], html=False)["form"]
    pitch = form["sections"][0]["fields"][0]
    assert form["sections"][0]["title"] == "Hole pitch: 59.9 to 60.1 mm"
    assert pitch["limits"] == {"nominal": 60.0, "lower": 59.9, "upper": 60.1}

    view = gate.measure(instance_id, IN_SPEC)
    assert view["status"] == m.COMPLETED
    assert outputs(gate, instance_id) == ("pass", "none", "none")
    inspection = the_inspection(gate, instance_id)
    assert (inspection["status"], inspection["result"]) == ("pass", "in_spec")
    assert (inspection["signed_by"], inspection["inspected_by"]) == ("quinn", "quinn")
    assert inspection["signature_ref"].startswith("sha256:")
    assert [str(v) for v in inspection["characteristics"][0]["values"]] == [
        "60.02", "59.98", "60.00"]  # fmt: skip
    assert (inspection["order_number"], inspection["sequence"], inspection["lot"]) == (
        "PO-7001", 30, "L-7001")  # fmt: skip


def test_a_slightly_out_value_holds_the_lot_until_quality_passes_it(gate: Gate) -> None:
    instance_id = start(gate)
    # 60.11 is 0.01 mm beyond 60.10: 5 % of the 0.20 mm band, a hold, not a failure.
    gate.measure(instance_id, IN_SPEC | {"hole_pitch": ["60.11", "60.00", "60.01"]})
    review = gate.tasks(instance_id)["review_held_lot"]
    assert review["lane"] == "quality"
    assert "1 of 9 values out of spec" in review["instructions"]
    assert the_inspection(gate, instance_id)["status"] == "hold"

    gate.clock.advance(hours=2, minutes=1)
    gate.engine.fire_due_timers()
    waiting = gate.tasks(instance_id)
    assert waiting["held_lot_waiting"]["lane"] == "supervisor", "the hold escalates"
    with Session(gate.bind) as s:
        [hold] = open_quality(s, gate.clock.now())["holds"]
    assert (hold["lot"], hold["plan"], hold["age_seconds"]) == ("L-7001", "bracket_a_final",
                                                                2 * 3600 + 60)  # fmt: skip

    review = {"review_decision": "pass", "review_reason": "gauge re-checked: 60.09"}
    gate.submit(waiting["review_held_lot"], "quinn", review)
    assert outputs(gate, instance_id) == ("pass", "none", "none")
    inspection = the_inspection(gate, instance_id)
    assert (inspection["status"], inspection["decided_by"]) == ("pass", "quinn")
    assert inspection["decision_reason"] == "gauge re-checked: 60.09"
    with Session(gate.bind) as s:
        assert open_quality(s, gate.clock.now())["holds"] == []


def test_a_missing_value_holds_the_lot_and_a_failed_review_ends_in_signed_scrap(
    gate: Gate,
) -> None:
    instance_id = start(gate)
    gate.measure(instance_id, IN_SPEC | {"bolt_torque": ["25.0", None, "25.1"]},
                 inspection_remarks="torque wrench broke on part 2")  # fmt: skip
    review = gate.tasks(instance_id)["review_held_lot"]
    form = gate.forms.view(review["task_id"], html=False)["form"]
    shown = {f["name"]: f for s in form["sections"] for f in s["fields"]}
    assert shown["review_remarks"]["value"] == "torque wrench broke on part 2"
    assert {"value": "INSP-INCOMPLETE", "label": "INSP-INCOMPLETE: Inspection incomplete "
            "(value not measured)"} in shown["defect_code"]["options"]  # fmt: skip

    gate.submit(review, "quinn", {"review_decision": "fail", "defect_code": "INSP-INCOMPLETE",
                                  "review_reason": "cannot release unchecked torque"})  # fmt: skip
    approve = gate.tasks(instance_id)["approve_disposition"]
    assert approve["lane"] == "manager"
    gate.dispose(instance_id, "scrap")

    result, disposition, nc_id = outputs(gate, instance_id)
    assert (result, disposition) == ("fail", "scrap") and isinstance(nc_id, int)
    with Session(gate.bind) as s:
        nc = nonconformance_view(s, nc_id)
    assert (nc["status"], nc["disposition"], nc["defect_code"]) == (
        "dispositioned", "scrap", "INSP-INCOMPLETE")  # fmt: skip
    assert (nc["lot"], str(nc["quantity"]), nc["order_number"]) == ("L-7001", "50", "PO-7001")
    assert (nc["approved_by"], nc["approved_at"]) == ("mia", gate.clock.now().isoformat())
    assert nc["signature_ref"].startswith("sha256:")
    assert "1 missing" in nc["description"]
    assert nc["description"].endswith("review: cannot release unchecked torque")
    assert the_inspection(gate, instance_id)["status"] == "fail"


@pytest.mark.parametrize(
    ("disposition", "nc_status"),
    [("rework", "dispositioned"), ("scrap", "dispositioned"), ("use_as_is", "closed")],
)
def test_a_clearly_out_lot_fails_into_a_nonconformance_the_manager_disposes(
    gate: Gate, disposition: str, nc_status: str
) -> None:
    instance_id = start(gate)
    # 60.30 lies 0.20 mm beyond the limit: 100 % of the band, a failure without review.
    gate.measure(instance_id, IN_SPEC | {"hole_pitch": ["60.30", "60.02", "60.01"]})
    tasks = gate.tasks(instance_id)
    assert list(tasks) == ["approve_disposition"], "no review: straight to the manager"
    assert "Nonconformance 1 on lot L-7001" in tasks["approve_disposition"]["instructions"]
    gate.dispose(instance_id, disposition)

    assert outputs(gate, instance_id) == ("fail", disposition, 1)
    with Session(gate.bind) as s:
        nc = nonconformance_view(s, 1)
        assert open_quality(s, gate.clock.now())["nonconformances"] == (
            [] if nc_status == "closed" else
            [{"id": 1, "order_number": "PO-7001", "sequence": 30, "item": "BRACKET-A",
              "lot": "L-7001", "defect_code": "DIM-POS", "quantity": nc["quantity"],
              "uom": "pcs", "status": "dispositioned", "disposition": disposition,
              "since": gate.clock.now().isoformat(), "age_seconds": 0}])  # fmt: skip
    assert (nc["status"], nc["defect_code"], nc["disposition"]) == (
        nc_status, "DIM-POS", disposition)  # fmt: skip
    assert "worst hole_pitch 60.30 mm (limits 59.90..60.10" in nc["description"]
    assert nc["inspection"] == gate.data(instance_id)["inspection"]["inspection"]


def test_a_signature_with_a_wrong_password_is_refused_and_nothing_is_approved(
    gate: Gate,
) -> None:
    instance_id = start(gate)
    gate.measure(instance_id, IN_SPEC | {"bend_angle": ["92.0", "90.0", "90.0"]})
    with pytest.raises(ValidationFailed) as refused:
        gate.dispose(instance_id, "use_as_is", password="not-mias-password")
    assert refused.value.details["fields"] == {
        "disposition_signature": "the password is not the one of mia: not signed"}  # fmt: skip
    assert "approve_disposition" in gate.tasks(instance_id), "the task is still waiting"
    with Session(gate.bind) as s:
        assert nonconformance_view(s, 1)["status"] == "open"
    # Quinn's own password does not sign for Mia either.
    with pytest.raises(ValidationFailed, match="not the one of mia"):
        gate.dispose(instance_id, "use_as_is", password=PASSWORDS["quinn"])
    gate.dispose(instance_id, "use_as_is")
    assert outputs(gate, instance_id) == ("fail", "use_as_is", 1)


def test_the_inspector_must_sign_the_measurements(gate: Gate) -> None:
    instance_id = start(gate)
    with pytest.raises(ValidationFailed) as refused:
        gate.measure(instance_id, IN_SPEC, inspector_signature="")
    assert refused.value.details["fields"] == {"inspector_signature": "enter your password to sign"}
    with Session(gate.bind) as s:
        assert s.scalars(select(Inspection)).all() == [], "nothing is recorded unsigned"


def test_a_plan_without_its_own_form_uses_the_measurement_sheet(gate: Gate) -> None:
    with Session(gate.bind) as s, s.begin():
        create_order(s, number="PO-7002", item="BRACKET-BLANK", quantity=40, now=gate.clock.now())
    instance_id = start(gate, order_number="PO-7002", sequence=10, item="BRACKET-BLANK",
                     lot="", quantity=40, plan="blank_laser_cut")  # fmt: skip
    task = gate.tasks(instance_id)["fill_in_measurement_sheet"]
    form = gate.forms.view(task["task_id"], html=False)["form"]
    sheet = form["sections"][0]["fields"][0]["default"]
    assert "# blank_length: mm, nominal 120.00, limits 119.80..120.20, 2 values" in sheet
    # A typing error comes back to the inspector with the line that is wrong.
    gate.submit(task, "quinn", {"measurement_sheet": "blank_length: 120.01 12O.00\n",
                                "inspector_signature": PASSWORDS["quinn"]})  # fmt: skip
    again = gate.tasks(instance_id)["fill_in_measurement_sheet"]
    assert "Correct the sheet: the measurement sheet cannot be read: line 1: value '12O.00' " \
           "is not a number" in again["instructions"]  # fmt: skip
    gate.submit(again, "quinn", {
        "measurement_sheet": "blank_length: 120,01 119.95\nhole_diameter: 8.41 8.44\n",
        "inspector_signature": PASSWORDS["quinn"]})  # fmt: skip
    assert outputs(gate, instance_id) == ("pass", "none", "none")
    inspection = the_inspection(gate, instance_id)
    assert [str(v) for v in inspection["characteristics"][0]["values"]] == ["120.01", "119.95"]


CALLER = """\
process: bracket_lot
lanes: [operator]
steps:
  - manual: Fit bolts and test
    id: fit_bolts
    lane: operator
  - call: Quality gate
    process: quality_gate
    in:
      sequence: 30
      plan: "'bracket_a_final'"
    out:
      gate_result: quality_result
      gate_disposition: disposition
      gate_nc: nonconformance
  - choose: Rework?
    branches:
      - when: gate_disposition == 'rework'
        steps:
          - script: Count rework
            set:
              reworked: reworked + 1
          - goto: fit_bolts
"""


def test_a_caller_gets_the_outputs_and_loops_back_on_rework(gate: Gate, tmp_path: Path) -> None:
    (tmp_path / "bracket_lot.yaml").write_text(CALLER)
    gate.engine.deploy_paths([str(tmp_path / "bracket_lot.yaml")])
    lot = {k: LOT[k] for k in ("order_number", "item", "lot", "quantity")}
    instance_id = gate.engine.start("bracket_lot", lot | {"reworked": 0})["instance_id"]
    gate.engine.complete_task(gate.tasks(instance_id)["fit_bolts"]["task_id"], actor="olga")
    gate.measure(instance_id, IN_SPEC | {"bend_angle": ["92.0", "90.0", "90.0"]})
    gate.dispose(instance_id, "rework")
    data = gate.data(instance_id)
    assert (data["gate_result"], data["gate_disposition"], data["gate_nc"]) == (
        "fail", "rework", 1)  # fmt: skip
    assert data["reworked"] == 1 and list(gate.tasks(instance_id)) == ["fit_bolts"]

    # After the rework the lot is inspected again, from a clean outcome, and passes.
    gate.engine.complete_task(gate.tasks(instance_id)["fit_bolts"]["task_id"], actor="olga")
    gate.measure(instance_id, IN_SPEC)
    view = gate.engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    data = view["data"]
    assert (data["gate_result"], data["gate_disposition"], data["gate_nc"]) == (
        "pass", "none", "none")  # fmt: skip
    with Session(gate.bind) as s:
        statuses = [i.status for i in s.scalars(select(Inspection).order_by(Inspection.id))]
    assert statuses == ["fail", "pass"]
