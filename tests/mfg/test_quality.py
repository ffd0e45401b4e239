"""Quality services on a real database: inspection plans and defect codes loaded idempotently
and refused by place, inspections judged exactly against their limits, gate decisions, and
nonconformances through their states with signed, idempotent dispositions."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.app import build_actions
from taktflow.config import Config
from taktflow.engine.actions import ActionContext, BusinessError
from taktflow.engine.clock import ManualClock
from taktflow.errors import Conflict, NotFound, ValidationFailed
from taktflow.mfg.ledger import load_chart
from taktflow.mfg.models import Account
from taktflow.mfg.orders import create_order
from taktflow.mfg.quality import (
    close_nonconformance,
    decide_inspection,
    disposition_nonconformance,
    inspection_view,
    load_inspection_plans,
    nonconformance_view,
    open_quality,
    plan_view,
    raise_nonconformance,
    record_inspection,
    signature_record,
)
from taktflow.mfg.quality_actions import seed_quality
from taktflow.mfg.quality_models import PlanCharacteristic
from taktflow.mfg.stock import load_master_data

ROOT = Path(__file__).parents[2]
SEED = ROOT / "seed_data"
IN_SPEC = {"hole_pitch": ["60.00", "60.10", "59.90"], "bend_angle": [90, "90.5", "89.5"],
           "bolt_torque": ["25.0", "23.0", "27.0"]}  # fmt: skip


def load(bind: Engine, folder: Path) -> dict[str, Any]:
    """The chart, the master data and this area's seed files, in one transaction (as
    mfg.seed.load_plant does, without the other areas' files)."""
    with Session(bind=bind) as s, s.begin():
        load_chart(s, folder / "chart_of_accounts.yaml")
        load_master_data(s, folder / "master_data.yaml")
        return seed_quality(s, folder)


@pytest.fixture
def session(sa_engine: Engine, clock: ManualClock) -> Any:
    load(sa_engine, SEED)
    with Session(bind=sa_engine) as s:
        create_order(s, number="PO-1", item="BRACKET-A", quantity=100, now=clock.now())
        yield s


def inspect(session: Session, clock: ManualClock, values: dict, **kw: Any) -> dict[str, Any]:
    args = {"plan": "bracket_a_final", "item": "BRACKET-A", "lot": "L-1", "quantity": 100,
            "order_number": "PO-1", "sequence": 30} | kw  # fmt: skip
    return record_inspection(session, measurements=values, now=clock.now(), **args)


def signed(disposition: str, signer: str = "mia") -> dict[str, Any]:
    return {"signer": signer, "signer_name": "Mia (manager)",
            "signed_at": "2026-03-02T06:00:00+00:00", "meaning": "I approve this disposition.",
            "values": {"disposition": disposition, "disposition_note": "ok"}}  # fmt: skip


def nc(session: Session, clock: ManualClock, **kw: Any) -> dict[str, Any]:
    args = {"item": "BRACKET-A", "lot": "L-1", "quantity": 10, "defect_code": "DIM-POS",
            "description": "hole pitch 60.30 mm", "order_number": "PO-1",
            "sequence": 30} | kw  # fmt: skip
    return raise_nonconformance(session, now=clock.now(), **args)


# ---------------------------------------------------------------------- seed files
def test_the_demo_plans_load_once_and_a_reload_updates_without_deleting(
    sa_engine: Engine, tmp_path: Path
) -> None:
    counts = load(sa_engine, SEED)
    assert counts == {"defect_codes": 11, "inspection_plans": 4}
    assert load(sa_engine, SEED)["inspection_plans"] == 4
    with Session(sa_engine) as s:
        assert s.scalar(select(func.count()).select_from(PlanCharacteristic)) == 10
        plan = plan_view(s, "bracket_a_final")
        assert [c["name"] for c in plan["characteristics"]] == [
            "hole_pitch", "bend_angle", "bolt_torque"]  # fmt: skip
        pitch = plan["characteristics"][0]
        assert (pitch["nominal"], pitch["lower"], pitch["upper"]) == (
            Decimal("60.00"), Decimal("59.90"), Decimal("60.10"))  # fmt: skip
        assert str(pitch["upper"]) == "60.10", "limits keep the gauge's resolution"
        changed = tmp_path / "plans.yaml"
        changed.write_text("""\
plans:
  - name: bracket_a_final
    characteristics:
      - {name: hole_pitch, unit: mm, decimals: 2, nominal: 60, lower: "59.95", upper: "60.05",
         sample_size: 5}
""")
        load_inspection_plans(s, changed)
        plan = plan_view(s, "bracket_a_final")
        assert [(c["name"], str(c["lower"]), c["sample_size"])
                for c in plan["characteristics"]] == [("hole_pitch", "59.95", 5)]  # fmt: skip
        assert s.scalar(select(func.count()).select_from(PlanCharacteristic)) == 10, (
            "the characteristics left out are kept, inactive")  # fmt: skip
        assert plan["title"] == "bracket_a_final"


CHAR = {"name": "gap", "unit": "mm", "decimals": 2, "nominal": "1.00", "lower": "0.90",
        "upper": "1.10", "sample_size": 3}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lower": "1.05"}, "characteristic 1 (gap): limits must satisfy lower <= nominal <= "
                            "upper, got lower 1.05, nominal 1.00, upper 1.10"),
        ({"nominal": "1.2"}, "nominal 1.20, upper 1.10"),
        ({"lower": "1.00", "nominal": "1.00", "upper": "1.00"}, "lower and upper are equal"),
        ({"sample_size": 0}, "sample_size must be a positive whole number (at most 200), got 0"),
        ({"sample_size": "3"}, "sample_size must be a positive whole number"),
        ({"upper": "1.105"}, "upper 1.105 of gap: mm takes at most 2 decimals"),
        ({"nominal": "wide"}, "nominal 'wide' is not a number"),
        ({"defect_code": "NOPE"}, "defect code 'NOPE' does not exist"),
        ({"unit": ""}, "unit is missing"),
        ({"name": "Gap"}, "characteristic 1 (Gap): name must be lower-case"),
        ({"tolerance": 1}, "unknown keys ['tolerance']"),
    ],
)  # fmt: skip
def test_a_wrong_characteristic_is_refused_with_file_line_plan_and_name(
    session: Session, tmp_path: Path, change: dict, message: str
) -> None:
    path = tmp_path / "plans.yaml"
    entry = ", ".join(f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {v}"
                      for k, v in (CHAR | change).items())  # fmt: skip
    path.write_text(f"# plans\nplans:\n  - name: gap_check\n    characteristics:\n"
                    f"      - {{{entry}}}\n")  # fmt: skip
    with pytest.raises(ValidationFailed) as refused:
        load_inspection_plans(session, path)
    assert f"{path}:3: plan 1 (gap_check) characteristic 1" in refused.value.message
    assert message in refused.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plans:\n  - name: x1\n    item: NOPE\n    characteristics: []\n",
         "plan 1 (x1): item 'NOPE' does not exist"),
        ("plans:\n  - name: x1\n    characteristics: []\n", "plan 1 (x1): characteristics are"),
        ("plans:\n  - {name: x1, characteristics: [{name: a, unit: mm, nominal: 1, lower: 0, "
         "upper: 2, sample_size: 1}, {name: a, unit: mm, nominal: 1, lower: 0, upper: 2, "
         "sample_size: 1}]}\n", "characteristic 2 (a): appears twice in the plan"),
        ("plans:\n  - {name: x1, characteristics: [{name: a, unit: mm, nominal: 1, lower: 0, "
         "upper: 2, sample_size: 1}]}\n  - {name: x1, characteristics: []}\n",
         ":3: plan 2 (x1): plan x1 appears twice"),
        ("plans:\n  - name: 1x\n", "plan 1 (1x): name must be lower-case"),
        ("plans: {}\n", "expected `plans:` with a list"),
        ("plans:\n  - name: a\n  - name: b\n name: c\n", "wrong indentation"),
    ],
)  # fmt: skip
def test_a_wrong_plan_file_is_refused_by_place(
    session: Session, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "plans.yaml"
    path.write_text(text)
    with pytest.raises(ValidationFailed) as refused:
        load_inspection_plans(session, path)
    assert message in refused.value.message and str(path) in refused.value.message


def test_a_broken_plans_file_stops_the_whole_seed(sa_engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "seed"
    folder.mkdir()
    for name in ("chart_of_accounts.yaml", "master_data.yaml", "defect_codes.yaml"):
        (folder / name).write_text((SEED / name).read_text())
    plans = (SEED / "inspection_plans.yaml").read_text()
    broken = plans.replace("sample_size: 3", "sample_size: -3")
    (folder / "inspection_plans.yaml").write_text(broken)
    with pytest.raises(ValidationFailed, match=r"plan 1 \(bracket_a_final\) characteristic 1 "
                                               r"\(hole_pitch\): sample_size"):  # fmt: skip
        load(sa_engine, folder)
    (folder / "defect_codes.yaml").write_text("defect_codes:\n  - {code: dim, name: x}\n")
    with pytest.raises(ValidationFailed, match="defect code 1 .dim.: code must be 1 to 40 capit"):
        load(sa_engine, folder)
    with Session(sa_engine) as s:
        assert s.scalar(select(func.count()).select_from(Account)) == 0, "nothing half-loaded"


# ---------------------------------------------------------------------- inspections
def test_values_on_the_limits_are_in_spec(session: Session, clock: ManualClock) -> None:
    outcome = inspect(session, clock, IN_SPEC)
    assert (outcome["result"], outcome["out_of_spec"], outcome["missing"]) == ("in_spec", 0, 0)
    assert outcome["worst_excess_pct"] == 0
    assert outcome["verdicts"] == {"hole_pitch": "in", "bend_angle": "in", "bolt_torque": "in"}
    # The worst is the value that uses most of its band: each limit is half the band away.
    assert outcome["worst"]["characteristic"] == "hole_pitch"
    assert outcome["worst"]["deviation"] == Decimal("0.10")
    assert outcome["status"] == "recorded"


def test_out_of_spec_and_missing_values_are_counted_and_the_worst_is_named(
    session: Session, clock: ManualClock
) -> None:
    outcome = inspect(session, clock, IN_SPEC | {
        "hole_pitch": ["60.11", "59.70", "60.00"],  # 0.01 and 0.20 beyond a 0.20 band
        "bend_angle": ["90.6", None, ""],            # 0.1 beyond a 1.0 band; two not measured
    })  # fmt: skip
    assert (outcome["result"], outcome["out_of_spec"], outcome["missing"]) == (
        "out_of_spec", 3, 2)  # fmt: skip
    assert outcome["verdicts"] == {"hole_pitch": "out", "bend_angle": "out",
                                   "bolt_torque": "in"}  # fmt: skip
    worst = outcome["worst"]
    assert (worst["characteristic"], worst["sample"], worst["value"]) == (
        "hole_pitch", 2, Decimal("59.70"))  # fmt: skip
    assert (worst["deviation"], worst["excess"], worst["excess_pct"]) == (
        Decimal("-0.30"), Decimal("0.20"), 100.0)  # fmt: skip
    assert outcome["worst_excess_pct"] == 100.0
    assert outcome["defect_code"] == "DIM-POS"
    assert outcome["summary"] == (
        "plan bracket_a_final, lot L-1: 3 of 9 values out of spec, 2 missing, worst hole_pitch "
        "59.70 mm (limits 59.90..60.10, 100.0% of the band beyond)")  # fmt: skip
    stored = inspection_view(session, outcome["inspection"])
    bend = stored["characteristics"][1]
    assert bend["samples"] == [(1, Decimal("90.6"))] and bend["verdict"] == "out"


def test_a_tiny_excess_never_rounds_to_in_spec(session: Session, clock: ManualClock) -> None:
    outcome = inspect(session, clock, IN_SPEC | {"bolt_torque": ["27.1", "25", "25"]})
    # 0.1 Nm beyond a 4.0 Nm band is 2.5 %; fewer values than the sample size is "missing".
    assert outcome["worst_excess_pct"] == 2.5
    only_missing = inspect(session, clock, IN_SPEC | {"bolt_torque": ["25"]}, lot="L-2")
    assert (only_missing["result"], only_missing["missing"]) == ("incomplete", 2)
    assert only_missing["verdicts"]["bolt_torque"] == "missing"
    assert only_missing["worst_excess_pct"] == 0
    assert only_missing["defect_code"] == "OTHER", "no value out: the plan's own defect code"


@pytest.mark.parametrize(
    ("values", "kw", "error", "message"),
    [
        ({"hole_pich": [60]}, {}, ValidationFailed,
         "measurements: hole_pich is not in plan bracket_a_final (its characteristics: "
         "hole_pitch, bend_angle, bolt_torque)"),
        ({"hole_pitch": ["60.001"]}, {}, ValidationFailed,
         "hole_pitch: sample 1: value 60.001 of hole_pitch: mm takes at most 2 decimals"),
        ({"bend_angle": [90, "ninety"]}, {}, ValidationFailed,
         "bend_angle: sample 2: value 'ninety' is not a number"),
        ({}, {"quantity": 0}, ValidationFailed, "quantity 0 of lot L-1 must be positive"),
        ({}, {"lot": ""}, ValidationFailed, "BRACKET-A is tracked by lot: give the lot"),
        ({}, {"item": "BRACKET-B"}, ValidationFailed, "PO-1 makes BRACKET-A, not BRACKET-B"),
        ({}, {"order_number": "PO-9"}, NotFound, "production order 'PO-9' does not exist"),
        ({}, {"plan": "nope"}, NotFound, "inspection plan 'nope' does not exist (plans: "
                                         "blank_laser_cut, bracket_a_final"),
    ],
)  # fmt: skip
def test_wrong_inspections_are_refused_naming_what_is_wrong(
    session: Session, clock: ManualClock, values: dict, kw: dict, error: type, message: str
) -> None:
    with pytest.raises(error) as refused:
        inspect(session, clock, values, **kw)
    assert message in refused.value.message


def test_an_inspection_is_recorded_once_per_key_and_keeps_its_signature(
    session: Session, clock: ManualClock
) -> None:
    signature = {"signer": "quinn", "signed_at": "2026-03-02T06:00:00+00:00",
                 "meaning": "I measured these values.",
                 "values": {"hole_pitch_1": 60.0}}  # fmt: skip
    first = inspect(session, clock, IN_SPEC, idempotency_key="k1", signature=signature,
                    inspected_by="quinn")  # fmt: skip
    again = inspect(session, clock, {"hole_pitch": [70]}, idempotency_key="k1")
    assert again == first
    view = inspection_view(session, first["inspection"])
    assert (view["signed_by"], view["signed_at"]) == ("quinn", "2026-03-02T06:00:00+00:00")
    assert view["signature_ref"] == signature_record(signature)[2]
    assert signature_record(signature | {"meaning": "other"})[2] != view["signature_ref"]
    with pytest.raises(ValidationFailed, match="signed_at 'yesterday' is not a date and time"):
        inspect(session, clock, IN_SPEC, signature=signature | {"signed_at": "yesterday"})


def test_the_gate_decides_once_and_a_hold_needs_a_reasoned_review(
    session: Session, clock: ManualClock
) -> None:
    inspection = inspect(session, clock, IN_SPEC)["inspection"]
    assert decide_inspection(session, inspection, "hold", now=clock.now())["status"] == "hold"
    assert decide_inspection(session, inspection, "hold", now=clock.now())["status"] == "hold"
    with pytest.raises(ValidationFailed, match="is held: releasing or failing it needs a reason"):
        decide_inspection(session, inspection, "pass", now=clock.now(), decided_by="quinn")
    clock.advance(minutes=30)
    with Session(session.get_bind()) as other:
        assert open_quality(other, clock.now())["holds"] == []  # not committed yet
    session.commit()
    assert open_quality(session, clock.now())["holds"][0]["age_seconds"] == 1800
    view = decide_inspection(session, inspection, "fail", now=clock.now(), decided_by="quinn",
                             reason="burr on every part")  # fmt: skip
    assert (view["status"], view["decided_by"], view["decision_reason"]) == (
        "fail", "quinn", "burr on every part")  # fmt: skip
    with pytest.raises(Conflict, match="decided already .fail by quinn.: it cannot become pass"):
        decide_inspection(session, inspection, "pass", now=clock.now(), reason="changed mind")
    with pytest.raises(ValidationFailed, match="decision 'ok' is not one of pass, hold, fail"):
        decide_inspection(session, inspection, "ok", now=clock.now())


# ---------------------------------------------------------------------- nonconformances
@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"quantity": 0}, ValidationFailed, "quantity 0 of BRACKET-A must be positive"),
        ({"quantity": "-2"}, ValidationFailed, "quantity -2 of BRACKET-A must be positive"),
        ({"quantity": "1.5"}, ValidationFailed, "pcs takes at most 0 decimals"),
        ({"defect_code": "DIM-XYZ"}, ValidationFailed, "defect code 'DIM-XYZ' does not exist"),
        ({"description": "  "}, ValidationFailed, "needs a description"),
        ({"item": "GHOST", "order_number": None}, NotFound, "item 'GHOST' does not exist"),
        ({"inspection_id": 99}, NotFound, "inspection 99 does not exist"),
    ],
)  # fmt: skip
def test_a_wrong_nonconformance_is_refused(
    session: Session, clock: ManualClock, kw: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        nc(session, clock, **kw)


def test_a_nonconformance_is_raised_dispositioned_and_closed_once_each(
    session: Session, clock: ManualClock
) -> None:
    first = nc(session, clock, idempotency_key="raise-1")
    assert nc(session, clock, idempotency_key="raise-1", quantity=99)["id"] == first["id"]
    assert (first["status"], first["quantity"], first["raised_at"]) == (
        "open", Decimal(10), clock.now().isoformat())  # fmt: skip
    with pytest.raises(Conflict, match="has no disposition yet"):
        close_nonconformance(session, first["id"], now=clock.now())
    with pytest.raises(ValidationFailed, match="signs disposition 'rework', not 'scrap'"):
        disposition_nonconformance(session, first["id"], "scrap", signature=signed("rework"),
                                   now=clock.now())  # fmt: skip
    with pytest.raises(ValidationFailed, match="disposition 'bin' is not one of use_as_is"):
        disposition_nonconformance(session, first["id"], "bin", signature=signed("bin"),
                                   now=clock.now())  # fmt: skip
    with pytest.raises(ValidationFailed, match="signer is missing"):
        unsigned = signed("scrap") | {"signer": ""}
        disposition_nonconformance(session, first["id"], "scrap", signature=unsigned,
                                   now=clock.now())  # fmt: skip
    done = disposition_nonconformance(session, first["id"], "scrap", signature=signed("scrap"),
                                      now=clock.now(), note="crack",
                                      idempotency_key="d-1")  # fmt: skip
    assert (done["status"], done["disposition"], done["approved_by"], done["remainder"]) == (
        "dispositioned", "scrap", "mia", None)  # fmt: skip
    assert done["approved_at"] == "2026-03-02T06:00:00+00:00", "when it was signed"
    retried = disposition_nonconformance(session, first["id"], "scrap",
                                         signature=signed("scrap"), now=clock.now(),
                                         idempotency_key="d-1")  # fmt: skip
    assert retried["signature_ref"] == done["signature_ref"]
    with pytest.raises(Conflict, match="dispositioned already .scrap, approved by mia."):
        disposition_nonconformance(session, first["id"], "rework", signature=signed("rework"),
                                   now=clock.now(), idempotency_key="d-2")  # fmt: skip
    closed = close_nonconformance(session, first["id"], now=clock.now(), closed_by="olga",
                                  note="booked to SCRAP", idempotency_key="c-1")  # fmt: skip
    assert (closed["status"], closed["closed_by"]) == ("closed", "olga")
    assert close_nonconformance(session, first["id"], now=clock.now(),
                                idempotency_key="c-1")["status"] == "closed"  # fmt: skip
    with pytest.raises(Conflict, match="is closed already"):
        close_nonconformance(session, first["id"], now=clock.now(), idempotency_key="c-2")
    with pytest.raises(Conflict, match="is closed: its disposition .scrap. cannot change"):
        disposition_nonconformance(session, first["id"], "use_as_is",
                                   signature=signed("use_as_is"), now=clock.now())  # fmt: skip


def test_part_of_a_nonconformance_can_be_dispositioned_and_the_rest_stays_open(
    session: Session, clock: ManualClock
) -> None:
    first = nc(session, clock)
    with pytest.raises(ValidationFailed, match="quantity 11 must be positive and at most the "
                                               "nonconformance's 10 pcs"):  # fmt: skip
        disposition_nonconformance(session, first["id"], "rework", signature=signed("rework"),
                                   now=clock.now(), quantity=11)  # fmt: skip
    with pytest.raises(ValidationFailed, match="quantity 0 must be positive"):
        disposition_nonconformance(session, first["id"], "rework", signature=signed("rework"),
                                   now=clock.now(), quantity=0)  # fmt: skip
    done = disposition_nonconformance(session, first["id"], "rework",
                                      signature=signed("rework"), now=clock.now(),
                                      quantity=7)  # fmt: skip
    assert (done["quantity"], done["status"]) == (Decimal(7), "dispositioned")
    rest = nonconformance_view(session, done["remainder"])
    assert (rest["split_from"], rest["defect_code"], rest["lot"]) == (first["id"], "DIM-POS", "L-1")
    clock.advance(hours=1)
    listed = open_quality(session, clock.now())["nonconformances"]
    assert [(n["id"], n["status"], n["quantity"], n["age_seconds"]) for n in listed] == [
        (first["id"], "dispositioned", Decimal(7), 3600),
        (done["remainder"], "open", Decimal(3), 3600)]  # fmt: skip


# ---------------------------------------------------------------------- actions
def test_the_quality_actions_are_registered_with_their_parameters() -> None:
    registry = build_actions(Config.from_env({}, {"connectors_path": str(ROOT / "connectors")}))
    described = {a["name"]: a for a in registry.describe()}
    params = {name: [(p["name"], p["required"]) for p in described[name]["params"]]
              for name in described if name in (
                  "mfg.record_inspection", "mfg.disposition_nonconformance")}  # fmt: skip
    assert params["mfg.disposition_nonconformance"] == [
        ("nonconformance", True), ("disposition", True), ("signature", True), ("note", False),
        ("quantity", False)]  # fmt: skip
    assert ("measurements", True) in params["mfg.record_inspection"]
    for name in ("mfg.inspection_plan", "mfg.decide_inspection", "mfg.raise_nonconformance",
                 "mfg.close_nonconformance"):  # fmt: skip
        assert described[name]["description"], f"{name} is documented"


def test_a_retried_step_raises_and_dispositions_once(session: Session, clock: ManualClock) -> None:
    registry = build_actions(Config.from_env({}, {"connectors_path": str(ROOT / "connectors")}))
    step = ActionContext(session=session, instance_id=7, process_id="quality_gate",
                         task_id="task-1", element_id="raise", now=clock.now(),
                         actor="quinn")  # fmt: skip
    raise_nc = registry.get("mfg.raise_nonconformance").func
    args = {"item": "BRACKET-A", "lot": "L-1", "quantity": "5", "defect_code": "SURF-BURR",
            "description": "burr on the flange", "order_number": "PO-1",
            "sequence": 30}  # fmt: skip
    first = raise_nc(step, **args)
    assert raise_nc(step, **args) == first
    assert (first["quantity"], first["raised_by"]) == ("5", "quinn"), "quantities as text"
    other_step = ActionContext(session=session, instance_id=7, process_id="quality_gate",
                               task_id="task-2", element_id="raise", now=clock.now())  # fmt: skip
    assert raise_nc(other_step, **args)["id"] == first["id"] + 1, "another step raises anew"
    dispose = registry.get("mfg.disposition_nonconformance").func
    done = dispose(step, nonconformance=first["id"], disposition="rework",
                   signature=signed("rework"))  # fmt: skip
    assert dispose(step, nonconformance=first["id"], disposition="rework",
                   signature=signed("rework")) == done  # fmt: skip
    with pytest.raises(Conflict, match="dispositioned already"):
        dispose(other_step, nonconformance=first["id"], disposition="rework",
                signature=signed("rework"))  # fmt: skip
    record = registry.get("mfg.record_inspection").func
    with pytest.raises(BusinessError) as unreadable:
        record(step, plan="bracket_a_final", item="BRACKET-A", lot="L-1", quantity=5,
               measurements="hole_pitch 60.00\nbend_angle: 90,0 ninety\n")  # fmt: skip
    assert unreadable.value.code == "unreadable_sheet"
    assert unreadable.value.message == (
        "the measurement sheet cannot be read: line 1: expected 'name: values', got "
        "'hole_pitch 60.00'; line 2: value 'ninety' is not a number")  # fmt: skip
