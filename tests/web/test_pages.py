"""The screens through the Flask test client: login with CSRF, role navigation, lane rules,
completing and approving tasks, deploying by upload, escaping."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

WORKFLOW = """\
process: release_check
lanes: [operator, manager]
steps:
  - task: Record setup
    lane: operator
  - task: Approve release
    lane: manager
"""


def token_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no CSRF token"
    return match.group(1)


@pytest.fixture
def users(app: Any) -> None:
    from taktflow.app import accounts, workflow_engine

    with app.app_context():
        for role in ("operator", "manager", "engineer"):
            accounts().create_user(role, [role], f"{role}-pass-1", display_name=role.title())
        workflow_engine().deploy_text("release_check.yaml", WORKFLOW)


def login(client: Any, role: str) -> Any:
    page = client.get("/login").get_data(as_text=True)
    return client.post(
        "/login",
        data={"username": role, "password": f"{role}-pass-1", "csrf_token": token_of(page)},
    )


def start(app: Any, data: dict | None = None) -> int:
    from taktflow.app import workflow_engine

    with app.app_context():
        return workflow_engine().start("release_check", data or {})["instance_id"]


def test_login_needs_the_csrf_token_and_the_right_password(client: Any, users: None) -> None:
    assert (
        client.post(
            "/login", data={"username": "operator", "password": "operator-pass-1"}
        ).status_code
        == 400
    )
    page = client.get("/login").get_data(as_text=True)
    wrong = client.post("/login", data={"username": "operator", "password": "nope",
                                        "csrf_token": token_of(page)})  # fmt: skip
    assert wrong.status_code == 401
    assert "Wrong user name or password" in wrong.get_data(as_text=True)
    ok = login(client, "operator")
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/tasks")
    inbox = client.get("/tasks").get_data(as_text=True)
    assert 'id="user-menu"' in inbox and "Operator" in inbox
    nav = re.findall(r'<nav aria-label="Main">(.*?)</nav>', inbox, re.S)[0]
    assert "Tasks" in nav and "Instances" in nav
    assert "Processes" not in nav and "Approvals" not in nav


def test_pages_need_a_login_and_never_redirect_off_site(client: Any, users: None) -> None:
    response = client.get("/tasks")
    assert response.status_code == 302 and "/login?next=/tasks" in response.headers["Location"]
    page = client.get("/login?next=//evil.example/x").get_data(as_text=True)
    done = client.post(
        "/login?next=//evil.example/x",
        data={"username": "operator", "password": "operator-pass-1", "csrf_token": token_of(page)},
    )
    assert done.headers["Location"] == "/tasks"


def test_operator_works_a_task_and_the_manager_approves(client: Any, users: None, app: Any) -> None:
    instance_id = start(app, {"order_id": "PO-<b>7</b>"})
    login(client, "operator")
    inbox = client.get("/tasks").get_data(as_text=True)
    [task_id] = re.findall(r'data-task-id="([^"]+)"', inbox)
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert "PO-&lt;b&gt;7&lt;/b&gt;" in page and "PO-<b>7</b>" not in page  # escaped
    claimed = client.post(f"/tasks/{task_id}/claim", data={"csrf_token": token_of(page)})
    assert claimed.status_code == 302
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert 'id="claimed-by">operator<' in page
    done = client.post(f"/tasks/{task_id}/complete",
                       data={"csrf_token": token_of(page), "comment": "set up"})  # fmt: skip
    assert done.status_code == 302
    assert "done. Instance" in client.get("/tasks").get_data(as_text=True)
    # The operator may not open the manager's approval.
    from taktflow.app import workflow_engine

    with app.app_context():
        [approval] = workflow_engine().tasks(instance_id)
    refused = client.get(f"/tasks/{approval['task_id']}")
    assert refused.status_code == 403
    assert "it is for lane &#39;manager&#39;" in refused.get_data(as_text=True)
    assert client.get("/approvals").status_code == 403

    client.post(
        "/logout", data={"csrf_token": token_of(client.get("/tasks").get_data(as_text=True))}
    )
    login(client, "manager")
    approvals = client.get("/approvals").get_data(as_text=True)
    assert f'data-task-id="{approval["task_id"]}"' in approvals
    approved = client.post(
        f"/tasks/{approval['task_id']}/complete",
        data={
            "csrf_token": token_of(approvals),
            "approved": "yes",
            "comment": "ok",
            "back": "approvals",
        },
    )
    assert approved.status_code == 302 and approved.headers["Location"].endswith("/approvals")
    with app.app_context():
        view = workflow_engine().instance(instance_id)
    assert view["status"] == "completed"
    assert view["data"]["approved"] is True and view["data"]["comment"] == "ok"
    page = client.get(f"/instances/{instance_id}").get_data(as_text=True)
    assert '"completed": ["approve_release", "record_setup"]' in page


def test_engineer_deploys_by_upload_and_sees_problems_with_lines(client: Any, users: None) -> None:
    login(client, "engineer")
    page = client.get("/processes").get_data(as_text=True)
    broken = client.post(
        "/processes",
        data={
            "csrf_token": token_of(page),
            "file": (io.BytesIO(b"process: x\nsteps:\n  - task: A\n    lanee: y\n"), "x.yaml"),
        },
        content_type="multipart/form-data",
    )
    assert broken.status_code == 422
    text = broken.get_data(as_text=True)
    assert "x.yaml:4:5: step &#34;A&#34;: unknown key &#39;lanee&#39;" in text
    good = client.post(
        "/processes",
        data={
            "csrf_token": token_of(page),
            "file": (
                io.BytesIO(WORKFLOW.replace("release_check", "second").encode()),
                "second.yaml",
            ),
        },
        content_type="multipart/form-data",
    )
    # Deployed, and the lint findings are shown with their lines (warnings do not stop it).
    assert good.status_code == 200
    text = good.get_data(as_text=True)
    assert "Deployed second v1, with these findings" in text
    assert "second.yaml:4" in text and "user-task-no-form" in text
    assert "/processes/second" in client.get("/processes").get_data(as_text=True)
    shown = client.get("/processes/second").get_data(as_text=True)
    assert "bpmn:userTask" in shown.replace("&lt;", "<")
    assert client.get("/processes/second/versions/1.bpmn").mimetype == "application/xml"


def test_a_refused_page_is_audited(client: Any, users: None, app: Any) -> None:
    login(client, "operator")
    assert client.get("/processes").status_code == 403
    from sqlalchemy import select

    from taktflow.db import db
    from taktflow.engine.models import AuditEvent

    with app.app_context():
        rows = db.session.execute(select(AuditEvent.kind, AuditEvent.actor)).all()
    assert ("refused", "operator") in rows


def test_session_api_writes_need_the_csrf_header(client: Any, users: None, app: Any) -> None:
    instance_id = start(app)
    login(client, "operator")
    from taktflow.app import workflow_engine

    with app.app_context():
        [task] = workflow_engine().tasks(instance_id)
    path = f"/api/v1/tasks/{task['task_id']}/claim"
    assert client.post(path).status_code == 403
    page = client.get("/tasks").get_data(as_text=True)
    assert client.post(path, headers={"X-CSRFToken": token_of(page)}).status_code == 200
