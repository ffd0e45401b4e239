"""The planner's new production order page (/orders/new) through the Flask test client: who
may use it, what the form offers, that a valid entry starts order release with the order's
data, and that a bad one is refused with the field named and nothing started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taktflow.engine.models import ProcessInstance
from taktflow.mfg.models import ProductionOrder
from taktflow.mfg.orders import create_order
from taktflow.mfg.seed import load_plant

ROOT = Path(__file__).parents[2]


@pytest.fixture
def planner(app: Any, client: Any, sign_in: Any, csrf: Any) -> Any:
    """A planner logged in on a database holding the demo plant and its workflows."""
    from taktflow.app import accounts, workflow_engine

    with app.app_context():
        engine = workflow_engine()
        load_plant(engine.bind, ROOT / "seed_data")
        engine.deploy_paths([str(ROOT / "forms"), str(ROOT / "workflows")])
        accounts().create_user("pia", ["planner"], "pia-plans-1")
        accounts().create_user("ole", ["operator"], "ole-works-1")
    assert sign_in(client, "pia", "pia-plans-1").status_code == 302
    return client


def html(response: Any) -> str:
    return response.get_data(as_text=True)


def post(client: Any, csrf: Any, **values: str) -> Any:
    token = csrf(html(client.get("/orders/new")))
    return client.post("/orders/new", data={"csrf_token": token} | values)


def counts(app: Any) -> tuple[int, int]:
    from taktflow.app import workflow_engine

    with app.app_context(), Session(workflow_engine().bind) as s:
        orders = s.scalar(select(func.count()).select_from(ProductionOrder))
        instances = s.scalar(select(func.count()).select_from(ProcessInstance))
    return orders, instances


def test_the_form_offers_what_can_be_made_and_the_open_sales_orders(planner: Any) -> None:
    page = html(planner.get("/orders/new"))
    assert "<h1>New production order</h1>" in page
    assert '<option value="HINGE-H1">HINGE-H1: Door hinge H1 (pcs, finished)</option>' in page
    assert '<option value="BRACKET-BLANK">' in page
    assert '<option value="STEEL-S235-2">' not in page  # bought, not made
    assert '<option value="SO-1001">SO-1001: ' in page
    assert "Leave empty for the next free number (PO-2026-0001)." in page
    assert 'href="/orders/new"' in page  # in the menu for planners


def test_a_valid_entry_starts_order_release_with_the_order(app: Any, planner: Any, csrf: Any
                                                           ) -> None:  # fmt: skip
    from taktflow.app import workflow_engine

    response = post(planner, csrf, item="HINGE-H1", quantity="40", due_on="2026-03-06",
                    priority="2", erp_reference="SO-1003")  # fmt: skip
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/instances/")
    with app.app_context():
        engine = workflow_engine()
        [instance] = engine.instances(process_id="order_release")
        data = engine.instance(instance["instance_id"], history=False)["data"]
        with Session(engine.bind) as s:
            order = s.get(ProductionOrder, data["order_number"])
            assert order is not None and order.erp_reference == "SO-1003"
            assert order.priority == 2 and order.quantity == 40
            # Due at the end of the late shift in Berlin (UTC+1 in March).
            assert order.due_at.isoformat() == "2026-03-06T21:00:00+00:00"
    assert data["order_number"].startswith("PO-") and data["item"] == "HINGE-H1"
    flashed = html(planner.get(response.headers["Location"]))
    assert f"Production order {data['order_number']} is created: 40 x HINGE-H1" in flashed


def test_a_bad_entry_names_the_field_and_starts_nothing(app: Any, planner: Any, csrf: Any) -> None:
    from taktflow.app import workflow_engine

    before = counts(app)
    response = post(planner, csrf, item="HINGE-H1", quantity="0", due_on="6.3.2026",
                    priority="12")  # fmt: skip
    page = html(response)
    assert response.status_code == 422
    assert "3 fields need attention: nothing was saved." in page
    assert 'data-field="quantity"' in page and "due_on" in page
    assert counts(app) == before
    with app.app_context(), Session(workflow_engine().bind) as s, s.begin():
        create_order(s, number="PO-7", item="HINGE-H1", quantity=5,
                     now=workflow_engine().clock.now())  # fmt: skip
    taken = post(planner, csrf, item="HINGE-H1", quantity="5", due_on="2026-03-06",
                 priority="5", order_number="PO-7")  # fmt: skip
    assert taken.status_code == 422
    assert "PO-7 exists already: choose another" in html(taken)
    assert counts(app) == (before[0] + 1, before[1])


def test_only_planners_may_create_orders(app: Any, client: Any, sign_in: Any, planner: Any
                                         ) -> None:  # fmt: skip
    client.post("/logout", data={"csrf_token": ""})
    fresh = app.test_client()
    assert sign_in(fresh, "ole", "ole-works-1").status_code == 302
    refused = fresh.get("/orders/new")
    assert refused.status_code == 403
    assert "order.create needs one of the roles planner" in html(refused)
    assert 'href="/orders/new"' not in html(fresh.get("/tasks"))
