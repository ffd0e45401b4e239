"""The ledger: balanced entries only, every problem named by line, immutable entries with
reversals, balances per account and per order; the postings of one production order exactly
as in ../shared/notes/manufacturing.md leave the order's WIP at zero."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from taktflow.engine.actions import ActionRegistry, builtin_actions
from taktflow.engine.clock import ManualClock
from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import Conflict, ValidationFailed
from taktflow.mfg.actions import register_mfg_actions
from taktflow.mfg.ledger import (
    balance,
    load_chart,
    post_entry,
    reverse_entry,
    to_cents,
    trial_balance,
)
from taktflow.yamlflow import COMPILERS

CHART = Path(__file__).parents[2] / "seed_data" / "chart_of_accounts.yaml"


@pytest.fixture
def session(sa_engine: Any) -> Any:
    with Session(bind=sa_engine) as s:
        load_chart(s, CHART)
        yield s


def post(session: Session, clock: ManualClock, text: str, *lines: tuple, ref: str = "PO-1") -> int:
    return post_entry(
        session,
        [{"account": a, side: amount} for a, side, amount in lines],
        description=text, reference=ref, now=clock.now(),
    )  # fmt: skip


def test_the_worked_example_closes_the_order_with_zero_wip(
    session: Session, clock: ManualClock
) -> None:
    # 100 units ordered at standard 5.00 material, 2.00 labour, 1.50 overhead; 98 good, 2 scrap.
    post(session, clock, "Issue material", ("1410", "debit", 520), ("1400", "credit", "520.00"))
    post(session, clock, "Absorb labour 11 h x 20", ("1410", "debit", 220),
         ("5100", "credit", 220))  # fmt: skip
    post(session, clock, "Absorb overhead 8 h x 18.75", ("1410", "debit", 150),
         ("5200", "credit", 150))  # fmt: skip
    post(session, clock, "Receive 98 at 8.50", ("1420", "debit", 833), ("1410", "credit", 833))
    post(session, clock, "Scrap recovery", ("1430", "debit", 4), ("1410", "credit", 4))
    assert balance(session, "1410", "PO-1") == Decimal("53.00")
    post(session, clock, "Close with variances", ("5400", "debit", 26), ("5410", "debit", 24),
         ("5420", "debit", 3), ("1410", "credit", 53))  # fmt: skip

    assert balance(session, "1410", "PO-1") == Decimal("0.00")
    report = trial_balance(session)
    # 520 + 220 + 150 + 833 + 4 + 53 posted on each side.
    assert report["balanced"] and report["debit"] == report["credit"] == Decimal("1780.00")
    by_code = {row["account"]: row for row in report["accounts"]}
    assert by_code["1420"]["balance"] == Decimal("833.00")
    assert by_code["5100"]["balance"] == Decimal("-220.00")
    assert by_code["1200"]["debit"] == Decimal("0.00")  # unused accounts are listed too


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"account": "1410", "debit": 10}, {"account": "1400", "credit": "9.99"}],
         "does not balance: debits 10.00, credits 9.99 (difference 0.01)"),
        ([{"account": "1410", "debit": 10}], "at least two lines"),
        ([{"account": "1410", "debit": 10}, {"account": "9999", "credit": 10}],
         "line 2: account '9999' does not exist"),
        ([{"account": "1410", "debit": 10, "credit": 10}, {"account": "1400", "credit": 10}],
         "line 1: account 1410: give either a debit or a credit, not both"),
        ([{"account": "1410"}, {"account": "1400", "credit": 10}], "not neither"),
        ([{"account": "1410", "debit": "10.005"}, {"account": "1400", "credit": 10}],
         "line 1: account 1410: debit: 10.005 has more than two decimals"),
        ([{"account": "1410", "debit": -5}, {"account": "1400", "debit": 5}],
         "line 1: account 1410: debit must be positive, got -5.00"),
        ([{"account": "1410", "debit": "ten"}, {"account": "1400", "credit": 10}],
         "'ten' is not an amount"),
        ([{"account": "1410", "debit": 1, "qty": 3}, {"account": "1400", "credit": 1}],
         "line 1: unknown keys ['qty']"),
    ],
)  # fmt: skip
def test_a_wrong_entry_is_refused_whole_with_its_line(
    session: Session, clock: ManualClock, lines: list, message: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        post_entry(session, lines, description="x", now=clock.now())
    assert message in refused.value.message
    assert trial_balance(session)["debit"] == Decimal("0.00"), "nothing was written"


def test_a_correction_is_a_reversal_and_happens_once(session: Session, clock: ManualClock) -> None:
    wrong = post(session, clock, "Issue (wrong amount)", ("1410", "debit", 500),
                 ("1400", "credit", 500))  # fmt: skip
    reversal = reverse_entry(session, wrong, now=clock.now(), reason="keyed 500 for 520")
    assert balance(session, "1410", "PO-1") == Decimal("0.00")
    assert trial_balance(session)["debit"] == Decimal("1000.00"), "both entries stay"
    with pytest.raises(Conflict, match="already reversed"):
        reverse_entry(session, wrong, now=clock.now(), reason="again")
    with pytest.raises(Conflict, match="itself a reversal"):
        reverse_entry(session, reversal, now=clock.now(), reason="undo the undo")


def test_amounts_are_exact_cents() -> None:
    assert to_cents("0.1", "x") + to_cents(0.2, "x") == to_cents("0.3", "x") == 30
    with pytest.raises(ValueError, match="not an amount"):
        to_cents(True, "debit")


def test_a_broken_chart_names_the_account(session: Session, tmp_path: Path) -> None:
    bad = tmp_path / "chart.yaml"
    bad.write_text("accounts:\n  - {code: '1', name: Cash, type: asset}\n"
                   "  - {code: '2', name: Oops, type: assets}\n")  # fmt: skip
    with pytest.raises(ValidationFailed, match=r"account 2 \(2\): type 'assets' is not one of"):
        load_chart(session, bad)


POSTING = """\
process: post_issue
steps:
  - service: Post the material issue
    action: mfg.post_journal
    params:
      description: "'Issue material for ' + order"
      reference: order
      lines: "[{'account': '1410', 'debit': amount}, {'account': '1400', 'credit': amount}]"
    result: posted
"""


def test_a_workflow_posts_through_the_action_once(
    sa_engine: Any, clock: ManualClock, session: Session
) -> None:
    registry = ActionRegistry()
    builtin_actions(registry)
    register_mfg_actions(registry)
    session.commit()
    engine = WorkflowEngine(sa_engine, clock=clock, actions=registry, compilers=COMPILERS)
    engine.deploy_text("post_issue.yaml", POSTING)

    done = engine.start("post_issue", {"order": "PO-7", "amount": "520.00"})
    assert done["status"] == "completed"
    assert engine.instance(done["instance_id"])["data"]["posted"]["total"] == "520.00"
    assert balance(session, "1410", "PO-7") == Decimal("520.00")

    bad = engine.start("post_issue", {"order": "PO-8", "amount": "12.345"})
    assert bad["status"] == "error"
    assert "more than two decimals" in engine.instance(bad["instance_id"])["error"]["message"]
    assert balance(session, "1410", "PO-8") == Decimal("0.00")
