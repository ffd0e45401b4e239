"""BOMs: versioned and multi-level; an explosion adds scrap allowances and rounds up to what
each unit holds; shortages of bought components against stores; cycles and bad lines are
refused with their place; the mfg.explode_bom action gives a workflow all of it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from taktflow.engine.actions import ActionRegistry, builtin_actions
from taktflow.engine.clock import ManualClock
from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import ValidationFailed
from taktflow.mfg.actions import register_mfg_actions
from taktflow.mfg.bom import explode, load_boms, shortages
from taktflow.mfg.ledger import load_chart
from taktflow.mfg.stock import load_master_data, move_stock
from taktflow.yamlflow import COMPILERS

SEED = Path(__file__).parents[2] / "seed_data"


@pytest.fixture
def session(sa_engine: Any) -> Any:
    with Session(bind=sa_engine) as s:
        load_chart(s, SEED / "chart_of_accounts.yaml")
        load_master_data(s, SEED / "master_data.yaml")
        yield s


def test_a_two_level_explosion_with_scrap_allowance(session: Session) -> None:
    needs = explode(session, "BRACKET-A", 100)
    got = [(n["level"], n["component"], n["quantity"], n["issue"]) for n in needs]
    # 100 blanks; each needs 1.250 kg of steel + 4 % scrap = 130 kg; 400 bolts.
    assert got == [
        (1, "BRACKET-BLANK", Decimal("100"), "backflush"),
        (2, "STEEL-S235-2", Decimal("130.000"), "manual"),
        (1, "BOLT-M8", Decimal("400"), "backflush"),
    ]
    # Rounded up to what the unit holds: 3 brackets need 3.9 kg -> 3.900; 7 -> 9.100.
    assert explode(session, "BRACKET-A", 7)[1]["quantity"] == Decimal("9.100")


def test_shortages_count_only_bought_components_against_the_location(
    session: Session, clock: ManualClock
) -> None:
    move_stock(session, item="STEEL-S235-2", quantity="80", reason="receipt",
               to_location="RM-STORES", lot="L-1", now=clock.now())  # fmt: skip
    move_stock(session, item="BOLT-M8", quantity=1000, reason="receipt",
               to_location="RM-STORES", now=clock.now())  # fmt: skip
    short = shortages(session, explode(session, "BRACKET-A", 100), "RM-STORES")
    assert short == [{"component": "STEEL-S235-2", "uom": "kg", "required": Decimal("130.000"),
                      "on_hand": Decimal("80"), "missing": Decimal("50.000")}]  # fmt: skip


@pytest.mark.parametrize(
    ("boms", "message"),
    [
        ([{"item": "BOLT-M8", "version": 1,
           "lines": [{"component": "BRACKET-A", "quantity": 1}]}],
         "BOLT-M8 would contain itself (through BRACKET-A)"),
        ([{"item": "BOLT-M8", "lines": [{"component": "NUT-M12", "quantity": 1}]}],
         "line 1: component 'NUT-M12' does not exist"),
        ([{"item": "BOLT-M8", "lines": [{"component": "STEEL-S235-2", "quantity": 0}]}],
         "quantity 0 must be a positive number"),
        ([{"item": "BOLT-M8", "lines": [{"component": "STEEL-S235-2", "quantity": 1,
                                         "issue": "magic"}]}], "issue must be one of"),
        ([{"item": "BOLT-M8", "lines": [{"component": "STEEL-S235-2", "quantity": 1,
                                         "scrap_pct": 100}]}], "scrap_pct must be 0 to below"),
    ],
)  # fmt: skip
def test_bad_boms_are_refused_with_their_place(session: Session, boms: list, message: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        load_boms(session, boms, "master.yaml")
    assert message in refused.value.message and "master.yaml: bom 1" in refused.value.message


def test_an_item_without_a_bom_cannot_be_exploded(session: Session) -> None:
    with pytest.raises(ValidationFailed, match="BOLT-M8 has no bill of materials"):
        explode(session, "BOLT-M8", 5)


RELEASE_CHECK = """\
process: availability
steps:
  - service: Explode the BOM
    action: mfg.explode_bom
    params: {item: item, quantity: quantity}
    result: bom
  - choose: Material short?
    branches:
      - when: bom['short']
        steps:
          - script: Note the shortage
            set: {missing: "bom['shortages'][0]['missing']"}
"""


def test_a_workflow_explodes_and_finds_its_shortage(
    sa_engine: Any, clock: ManualClock, session: Session
) -> None:
    session.commit()
    registry = ActionRegistry()
    builtin_actions(registry)
    register_mfg_actions(registry)
    engine = WorkflowEngine(sa_engine, clock=clock, actions=registry, compilers=COMPILERS)
    engine.deploy_text("availability.yaml", RELEASE_CHECK)

    done = engine.start("availability", {"item": "BRACKET-A", "quantity": 10})

    data = engine.instance(done["instance_id"])["data"]
    assert done["status"] == "completed" and data["bom"]["short"] is True
    assert data["missing"] == "13.000"  # 10 x 1.25 kg + 4 %, nothing in stores
    assert [r["component"] for r in data["bom"]["requirements"]] == [
        "BRACKET-BLANK", "STEEL-S235-2", "BOLT-M8"]  # fmt: skip
