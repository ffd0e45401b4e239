"""Every endpoint with every role: allowed or refused (403) exactly as the rules say.

The expectations are written out here, not derived from the permission table, so that a
change to the table shows up as a failing test to be read by a person.
"""

from __future__ import annotations

from typing import Any

from taktflow.config import DEFAULT_ROLES

ROLES = DEFAULT_ROLES.split(",")
EVERYONE = set(ROLES)

#: (method, path, body, roles allowed). {task} is a ready task in the operator lane,
#: {instance} an active instance; admin is allowed everything.
MATRIX: list[tuple[str, str, Any, set[str]]] = [
    ("GET", "/me", None, EVERYONE),
    ("GET", "/processes", None, EVERYONE),
    ("GET", "/connectors", None, {"engineer", "supervisor", "manager", "admin"}),
    ("POST", "/messages/999/replay", None, {"engineer", "admin"}),
    ("POST", "/outbox/999/replay", None, {"engineer", "admin"}),
    ("GET", "/forms", None, EVERYONE),
    ("GET", "/forms/setup_sheet", None, EVERYONE),
    ("GET", "/processes/release_check", None, EVERYONE),
    ("GET", "/processes/release_check/versions/1/bpmn", None, EVERYONE),
    ("POST", "/processes", {"name": "x.yaml", "text": "process: x\nsteps:\n  - end: E\n"},
     {"engineer", "admin"}),
    ("POST", "/instances", {"process_id": "release_check"},
     EVERYONE - {"operator"}),
    ("GET", "/instances", None, EVERYONE),
    ("GET", "/instances/{instance}", None, EVERYONE),
    ("POST", "/instances/{instance}/suspend", None,
     {"supervisor", "manager", "engineer", "admin"}),
    ("POST", "/messages", {"name": "nothing_waits"},
     {"planner", "supervisor", "manager", "engineer", "admin"}),
    ("GET", "/tasks", None, EVERYONE),
    ("GET", "/tasks/{task}", None, {"operator", "admin"}),
    ("POST", "/tasks/{task}/claim", None, {"operator", "admin"}),
    ("POST", "/tasks/{task}/unclaim", None, {"operator", "admin"}),
    ("POST", "/tasks/{task}/assign", {"user": "operator"}, {"supervisor", "manager", "admin"}),
    ("POST", "/tasks/{task}/complete", {"data": {}}, {"operator", "admin"}),
    ("POST", "/erp/operations-schedule", {"ID": "W1", "OperationsRequest": []},
     {"planner", "admin"}),
    ("GET", "/erp/production-orders/PO-404/performance", None,
     {"planner", "supervisor", "manager", "director", "engineer", "admin"}),
]  # fmt: skip


def test_every_endpoint_with_every_role(call: Any, deployed: str, app: Any) -> None:
    tried = 0
    for method, template, body, allowed in MATRIX:
        for role in ROLES:
            # A fresh instance and task for each try: completing or suspending uses them up.
            instance = call("POST", "/instances", "admin",
                            json={"process_id": deployed}).get_json()  # fmt: skip
            path = template.format(
                instance=instance["instance_id"], task=instance["ready_tasks"][0]["task_id"]
            )
            kwargs = {"json": body} if body is not None else {}
            response = call(method, path, role, **kwargs)
            where = f"{method} {path} as {role}: {response.status_code} {response.get_json()}"
            if role in allowed:
                assert response.status_code not in (401, 403), where
                assert response.status_code < 500, where
            else:
                assert response.status_code == 403, where
                assert response.get_json()["error"]["code"] == "forbidden", where
            tried += 1
    assert tried == len(MATRIX) * len(ROLES)


def test_every_route_is_in_the_matrix_or_public(app: Any) -> None:
    public = {"/api/v1/health", "/api/v1/version", "/api/v1/openapi.json"}
    covered = {
        "/api/v1"
        + t.replace("{instance}", "<int:instance_id>")
        .replace("{task}", "<task_id>")
        .replace("/messages/999/", "/messages/<int:message_id>/")
        .replace("/outbox/999/", "/outbox/<int:outbox_id>/")
        .replace("/PO-404/", "/<number>/")
        for _, t, _, _ in MATRIX
    }
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1") and rule.rule not in public:
            routes.add(rule.rule)
    # The control route is one rule for four actions; the matrix tries one of them.
    routes = {r.replace("<any(terminate, suspend, resume, retry):action>", "suspend")
              for r in routes}  # fmt: skip
    covered = {c.replace("release_check", "<process_id>").replace("/1/", "/<int:version>/")
               .replace("setup_sheet", "<name>")
               for c in covered}  # fmt: skip
    assert routes == covered
