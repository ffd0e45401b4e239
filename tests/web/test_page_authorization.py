"""Every page and form action with every role: shown or refused (403) as the rules say.

Written out by hand, like the API matrix, so that a change of rules shows up here as a
failing test for a person to read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from taktflow.config import DEFAULT_ROLES
from taktflow.mfg.orders import create_order
from taktflow.mfg.seed import load_plant

SEED = Path(__file__).parents[2] / "seed_data"

ROLES = DEFAULT_ROLES.split(",")
EVERYONE = set(ROLES)
DEPLOYERS = {"engineer", "admin"}
ASSIGNERS = {"supervisor", "manager", "admin"}
CONTROLLERS = {"supervisor", "manager", "engineer", "admin"}
OPERATOR_LANE = {"operator", "admin"}
PLANNERS = {"planner", "admin"}
REPORT_READERS = {"planner", "quality", "supervisor", "manager", "director", "engineer", "admin"}
WORKFLOW = """\
process: lane_check
lanes: [operator]
steps:
  - task: Do it
    lane: operator
"""
FORM = "form: sheet\nfields:\n  - name: note\n    type: text\n"

#: (method, path, form data, roles allowed). {task} is a ready task in the operator lane, a
#: fresh one for every try; {instance} its instance.
MATRIX: list[tuple[str, str, dict | None, set[str]]] = [
    ("GET", "/", None, EVERYONE),
    ("GET", "/tasks", None, EVERYONE),
    ("GET", "/tasks/table", None, EVERYONE),
    ("GET", "/tasks/{task}", None, OPERATOR_LANE),
    ("POST", "/tasks/{task}/claim", {}, OPERATOR_LANE),
    ("POST", "/tasks/{task}/unclaim", {}, OPERATOR_LANE),
    ("POST", "/tasks/{task}/complete", {}, OPERATOR_LANE),
    ("POST", "/tasks/{task}/assign", {"user": "operator"}, ASSIGNERS),
    ("GET", "/approvals", None, ASSIGNERS),
    ("GET", "/instances", None, EVERYONE),
    ("GET", "/instances/{instance}", None, EVERYONE),
    ("POST", "/instances/{instance}/retry", {}, CONTROLLERS),
    ("GET", "/processes", None, DEPLOYERS),
    ("POST", "/processes", {}, DEPLOYERS),
    ("GET", "/processes/lane_check", None, EVERYONE),
    ("GET", "/processes/lane_check/versions/1.bpmn", None, EVERYONE),
    ("GET", "/connectors", None, {"engineer", "supervisor", "manager", "admin"}),
    ("POST", "/connectors/messages/999/replay", {}, {"engineer", "admin"}),
    ("POST", "/connectors/outbox/999/replay", {}, {"engineer", "admin"}),
    ("GET", "/forms", None, DEPLOYERS),
    ("GET", "/forms/sheet", None, DEPLOYERS),
    ("GET", "/forms/preview", None, DEPLOYERS),
    ("POST", "/forms/preview", {"source": FORM}, DEPLOYERS),
    ("GET", "/orders/new", None, PLANNERS),
    ("POST", "/orders/new", {}, PLANNERS),
    ("GET", "/dashboard", None, REPORT_READERS),
    ("GET", "/reports", None, REPORT_READERS),
    ("GET", "/reports/inventory", None, REPORT_READERS),
    ("GET", "/reports/genealogy", None, REPORT_READERS),
    ("GET", "/reports/orders", None, REPORT_READERS),
    ("GET", "/reports/orders/PO-1", None, REPORT_READERS),
    ("GET", "/reports/sales-orders", None, REPORT_READERS),
    ("GET", "/reports/trial-balance", None, REPORT_READERS),
    ("GET", "/reports/journal", None, REPORT_READERS),
]
#: Reachable without logging in.
PUBLIC = {"/login", "/logout", "/static/<path:filename>", "/vendor/<package>/<path:filename>"}


def test_every_page_with_every_role(app: Any, csrf: Any, sign_in: Any) -> None:
    from taktflow.app import accounts, workflow_engine

    with app.app_context():
        for role in ROLES:
            accounts().create_user(role, [role], f"{role}-pass-1")
        workflow_engine().deploy_text("lane_check.yaml", WORKFLOW)
        workflow_engine().deploy_text("sheet.yaml", FORM)
        bind = workflow_engine().bind
        load_plant(bind, SEED)
        with Session(bind) as s, s.begin():
            create_order(s, number="PO-1", item="BRACKET-A", quantity=10,
                         now=workflow_engine().clock.now())  # fmt: skip
    tried = 0
    for role in ROLES:
        client = app.test_client()
        assert sign_in(client, role, f"{role}-pass-1").status_code == 302
        token = csrf(client.get("/tasks").get_data(as_text=True))
        for method, template, form, allowed in MATRIX:
            with app.app_context():
                view = workflow_engine().start("lane_check", {})
            path = template.format(
                task=view["ready_tasks"][0]["task_id"], instance=view["instance_id"]
            )
            if method == "GET":
                response = client.get(path)
            else:
                response = client.post(path, data={**(form or {}), "csrf_token": token})
            where = f"{method} {path} as {role}: {response.status_code}"
            if role in allowed:
                assert response.status_code in (200, 302, 422), where
            else:
                assert response.status_code == 403, where
                assert "Not allowed" in response.get_data(as_text=True), where
            tried += 1
    assert tried == len(MATRIX) * len(ROLES)


def test_every_page_is_in_the_matrix_or_public(app: Any) -> None:
    covered = {
        template.replace("{task}", "<task_id>")
        .replace("{instance}", "<int:instance_id>")
        .replace("/lane_check/versions/1.bpmn", "/<process_id>/versions/<int:version>.bpmn")
        .replace("/processes/lane_check", "/processes/<process_id>")
        .replace("/forms/sheet", "/forms/<name>")
        .replace("/messages/999/", "/messages/<int:message_id>/")
        .replace("/outbox/999/", "/outbox/<int:outbox_id>/")
        .replace("/reports/orders/PO-1", "/reports/orders/<number>")
        for _, template, _, _ in MATRIX
    }
    pages = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if not rule.rule.startswith("/api/") and rule.rule not in PUBLIC
    }
    assert pages == covered
