"""Workflow 5 of the demo plant: financial posting (workflows/financial_posting.bpmn). An order
whose goods are received is closed with its variances at once when they are within tolerance;
beyond it a manager reviews and signs first, and may send the order back to have its bookings
corrected. The postings themselves are tested to the cent in tests/mfg/test_execution.py."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.auth.service import AccountService
from taktflow.config import DEFAULT_ROLES
from taktflow.engine.clock import ManualClock
from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import ValidationFailed
from taktflow.forms.service import TaskForms
from taktflow.mfg.execution import (
    complete_operation,
    issue_material,
    receive_finished_goods,
    release_order,
    start_operation,
)
from taktflow.mfg.ledger import balance, trial_balance
from taktflow.mfg.models import ProductionOrder
from taktflow.mfg.orders import create_order
from taktflow.mfg.stock import move_stock

PASSWORD = "mia-manager"


@pytest.fixture
def posting(plant_engine: WorkflowEngine, deploy: Callable[..., Any]) -> WorkflowEngine:
    deploy("workflows/financial_posting.bpmn", "forms/variance_review.yaml")
    return plant_engine


@pytest.fixture
def forms(posting: WorkflowEngine, sa_engine: Engine) -> tuple[TaskForms, AccountService]:
    accounts = AccountService(sa_engine, DEFAULT_ROLES.split(","))
    accounts.create_user("mia", ["manager"], PASSWORD, "Mia (manager)")
    return TaskForms(posting, accounts), accounts


def received_order(sa_engine: Engine, clock: ManualClock, number: str, labour_hours: Any) -> None:
    """A blank order of 100 laser cut, 98 good: only its labour differs between the tests."""
    with Session(sa_engine) as s, s.begin():
        move_stock(
            s,
            item="STEEL-S355-3",
            quantity=200,
            reason="receipt",
            now=clock.now(),
            to_location="RM-STORES",
            lot="S-1",
        )
        create_order(s, number=number, item="HINGE-BLANK", quantity=100, now=clock.now())
        release_order(s, number, now=clock.now())
        issue_material(s, number, "STEEL-S355-3", 84, now=clock.now())
        start_operation(s, number, 10, now=clock.now(), machine="laser_1", operator="op-7")
        complete_operation(
            s,
            number,
            10,
            good=98,
            scrap=2,
            scrap_reason="burr",
            labour_hours=labour_hours,
            machine_hours="0.4",
            now=clock.now(),
        )
        receive_finished_goods(s, number, now=clock.now())


def submit(forms: tuple[TaskForms, AccountService], task: dict, values: dict, user: str) -> dict:
    service, accounts = forms
    return service.submit(
        task["task_id"],
        values,
        actor=user,
        display_name=user,
        strict=True,
        check_password=lambda given: accounts.verify_password(user, given),
    )


def test_a_variance_within_tolerance_is_posted_without_a_review(
    posting: WorkflowEngine, sa_engine: Engine, clock: ManualClock
) -> None:
    received_order(sa_engine, clock, "PO-21", labour_hours="0.4")
    instance = posting.start("financial_posting", {"order_number": "PO-21"})["instance_id"]
    view = posting.instance(instance)
    assert view["status"] == "completed", view.get("error")
    data = view["data"]
    assert abs(data["variance_cents"]) <= data["tolerance_cents"] == 5000
    assert data["closed"]["status"] == "closed"
    with Session(sa_engine) as s:
        assert balance(s, "1410", "PO-21") == 0 and trial_balance(s)["balanced"]


def test_a_large_variance_is_reviewed_and_signed_before_the_close(
    posting: WorkflowEngine,
    sa_engine: Engine,
    clock: ManualClock,
    forms: tuple[TaskForms, AccountService],
) -> None:
    # Twelve hours of labour for 98 blanks of 0.10 EUR standard labour each.
    received_order(sa_engine, clock, "PO-22", labour_hours=12)
    instance = posting.start("financial_posting", {"order_number": "PO-22"})["instance_id"]
    [task] = posting.tasks(instance)
    assert (task["name"], task["lane"]) == ("review_the_variances", "manager")
    shown = forms[0].view(task["task_id"], html=True)["form"]
    labour = next(f for s in shown["sections"] for f in s["fields"] if f["name"] == "labour_info")
    # 12 h x 20.00 EUR labour rate against 98 x 0.10 EUR standard.
    assert labour["value"] == "actual 240.00, standard 9.80, variance 230.20"
    with Session(sa_engine) as s:
        assert s.get(ProductionOrder, "PO-22").status == "completed"  # not closed yet
    with pytest.raises(ValidationFailed) as refused:
        submit(
            forms,
            task,
            {
                "variance_decision": "post",
                "variance_comment": "overtime",
                "variance_signature": "wrong password",
            },
            "mia",
        )
    assert "variance_signature" in refused.value.details["fields"]
    view = submit(
        forms,
        task,
        {
            "variance_decision": "post",
            "variance_comment": "new operator",
            "variance_signature": PASSWORD,
        },
        "mia",
    )
    assert view["status"] == "completed", view.get("error")
    with Session(sa_engine) as s:
        assert s.get(ProductionOrder, "PO-22").status == "closed"
        assert balance(s, "5410", "PO-22") == Decimal("230.20")
        assert balance(s, "1410", "PO-22") == 0 and trial_balance(s)["balanced"]


def test_the_manager_can_send_the_order_back_to_have_its_bookings_corrected(
    posting: WorkflowEngine,
    sa_engine: Engine,
    clock: ManualClock,
    forms: tuple[TaskForms, AccountService],
) -> None:
    received_order(sa_engine, clock, "PO-23", labour_hours=12)
    instance = posting.start("financial_posting", {"order_number": "PO-23"})["instance_id"]
    [task] = posting.tasks(instance)
    submit(
        forms,
        task,
        {
            "variance_decision": "correct",
            "variance_signature": PASSWORD,
            "variance_comment": "12 h cannot be right for 100 blanks",
        },
        "mia",
    )
    [back] = posting.tasks(instance)
    assert (back["name"], back["lane"]) == ("correct_the_bookings", "planner")
    assert "12 h cannot be right for 100 blanks" in back["instructions"]
    # Nothing is corrected: the costs are compared again and the review comes back.
    posting.complete_task(back["task_id"], actor="paul")
    [again] = posting.tasks(instance)
    assert again["name"] == "review_the_variances"
    with Session(sa_engine) as s:
        assert s.get(ProductionOrder, "PO-23").status == "completed"
