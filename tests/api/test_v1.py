"""REST API v1 over the Flask test client, with a real database and real API tokens."""

from __future__ import annotations

from typing import Any

import pytest

from taktflow.engine import models as m


def errors(response: Any) -> tuple[int, str]:
    body = response.get_json()
    assert set(body) == {"error"}, body
    return response.status_code, body["error"]["code"]


def test_without_or_with_a_bad_token_it_is_401(call: Any, tokens: dict[str, str]) -> None:
    assert errors(call("GET", "/processes")) == (401, "unauthorized")
    bad = call("GET", "/processes", headers={"Authorization": "Bearer tf_nope"})
    assert errors(bad) == (401, "unauthorized")
    basic = call("GET", "/processes", headers={"Authorization": "Basic abc"})
    assert "Bearer <token>" in basic.get_json()["error"]["message"]
    me = call("GET", "/me", "planner").get_json()
    assert me == {"username": "planner", "display_name": None, "roles": ["planner"],
                  "via": "token"}  # fmt: skip


def test_a_refusal_names_the_reason_and_is_audited(call: Any, app: Any) -> None:
    response = call("POST", "/processes", "operator", json={"name": "x.yaml", "text": ""})
    assert errors(response) == (403, "forbidden")
    assert (
        "process.deploy needs one of the roles engineer" in response.get_json()["error"]["message"]
    )

    with app.app_context():
        from sqlalchemy import select

        from taktflow.db import db

        rows = db.session.execute(
            select(m.AuditEvent.kind, m.AuditEvent.actor).where(m.AuditEvent.kind == "refused")
        ).all()
        assert rows == [("refused", "operator")]


def test_deploy_start_claim_and_complete_by_lane(call: Any, deployed: str) -> None:
    started = call(
        "POST", "/instances", "planner", json={"process_id": deployed, "data": {"order_id": "PO-1"}}
    )
    assert started.status_code == 201
    instance = started.get_json()
    [task] = instance["ready_tasks"]
    task_id = task["task_id"]
    # Only the operator lane sees and may take the first task.
    assert [t["task_id"] for t in call("GET", "/tasks", "operator").get_json()] == [task_id]
    assert call("GET", "/tasks", "quality").get_json() == []
    assert [t["task_id"] for t in call("GET", "/tasks", "admin").get_json()] == [task_id]
    assert errors(call("POST", f"/tasks/{task_id}/claim", "quality")) == (403, "forbidden")
    claimed = call("POST", f"/tasks/{task_id}/claim", "operator").get_json()
    assert claimed["claimed_by"] == "operator"
    assert call("GET", "/tasks?mine=1", "operator").get_json()[0]["task_id"] == task_id
    # The admin may see it, but not complete a task someone else claimed.
    refused = call("POST", f"/tasks/{task_id}/complete", "admin", json={"data": {}})
    assert errors(refused) == (403, "forbidden")
    done = call("POST", f"/tasks/{task_id}/complete", "operator",
                json={"data": {"setup_min": 12}})  # fmt: skip
    assert done.status_code == 200
    [approval] = done.get_json()["ready_tasks"]
    assert approval["lane"] == "manager"
    again = call("POST", f"/tasks/{task_id}/complete", "operator", json={"data": {}})
    assert errors(again) == (409, "conflict")
    # Operators may not approve.
    assert errors(call("POST", f"/tasks/{approval['task_id']}/complete", "operator",
                       json={})) == (403, "forbidden")  # fmt: skip
    final = call("POST", f"/tasks/{approval['task_id']}/complete", "manager",
                 json={"data": {"approved": True}})  # fmt: skip
    assert final.get_json()["status"] == "completed"
    assert final.get_json()["data"] == {"order_id": "PO-1", "setup_min": 12, "approved": True}


def test_tasks_filter_by_work_center_in_the_instance_data(call: Any, deployed: str) -> None:
    for center in ("press_1", "press_2", "press_1"):
        call("POST", "/instances", "planner",
             json={"process_id": deployed, "data": {"work_center": center}})  # fmt: skip
    found = call("GET", "/tasks?work_center=press_1", "operator").get_json()
    assert len(found) == 2
    assert call("GET", "/tasks?work_center=press_9", "operator").get_json() == []
    assert len(call("GET", "/tasks", "operator").get_json()) == 3


def test_a_manager_reassigns_a_claimed_task(call: Any, deployed: str, app: Any) -> None:
    from taktflow.app import accounts

    with app.app_context():
        accounts().create_user("olga", ["operator"])
    instance = call("POST", "/instances", "planner", json={"process_id": deployed}).get_json()
    task_id = instance["ready_tasks"][0]["task_id"]
    call("POST", f"/tasks/{task_id}/claim", "operator")
    assert errors(call("POST", f"/tasks/{task_id}/assign", "operator",
                       json={"user": "olga"})) == (403, "forbidden")  # fmt: skip
    wrong_lane = call("POST", f"/tasks/{task_id}/assign", "manager", json={"user": "quality"})
    assert errors(wrong_lane) == (403, "forbidden")
    moved = call("POST", f"/tasks/{task_id}/assign", "manager", json={"user": "olga"})
    assert moved.get_json()["claimed_by"] == "olga"
    assert errors(call("POST", f"/tasks/{task_id}/complete", "operator",
                       json={})) == (403, "forbidden")  # fmt: skip


def test_messages_and_instance_control(call: Any) -> None:
    flow = """\
process: wait_goods
steps:
  - wait: Goods arrive
    message: goods_received
    correlate: [order_id]
"""
    assert call("POST", "/processes", "engineer",
                json={"name": "wait_goods.yaml", "text": flow}).status_code == 201  # fmt: skip
    instance = call(
        "POST",
        "/instances",
        "planner",
        json={"process_id": "wait_goods", "data": {"order_id": "PO-9"}},
    ).get_json()
    body = {"name": "goods_received", "correlation": {"order_id": "PO-9"},
            "data": {"order_id": "PO-9", "qty": 5}, "idempotency_key": "gr-1"}  # fmt: skip
    assert errors(call("POST", "/messages", "operator", json=body)) == (403, "forbidden")
    sent = call("POST", "/messages", "planner", json=body)
    assert sent.status_code == 202
    assert sent.get_json()["delivered_to"] == [instance["instance_id"]]
    assert call("POST", "/messages", "planner", json=body).get_json()["duplicate"] is True
    view = call("GET", f"/instances/{instance['instance_id']}", "operator").get_json()
    assert view["status"] == "completed"
    assert errors(call("POST", f"/instances/{instance['instance_id']}/terminate",
                       "manager")) == (409, "conflict")  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/instances", {"data": b"{not json", "content_type": "application/json"}, 400),
        ("POST", "/instances", {"json": []}, 400),
        ("POST", "/instances", {"json": {"process_id": 7}}, 400),
        ("POST", "/instances", {"json": {"process_id": "x", "data": "y"}}, 400),
        ("POST", "/instances", {"json": {"process_id": "nope"}}, 404),
        ("POST", "/instances", {"json": {"process_id": "ünï\u0000cøde\U0001f600"}}, 404),
        ("GET", "/instances/999999", {}, 404),
        ("GET", "/instances?status=sleeping", {}, 400),
        ("GET", "/instances?limit=many", {}, 400),
        ("GET", "/tasks/not-a-task", {}, 404),
        ("POST", "/tasks/00000000-0000-0000-0000-000000000000/claim", {}, 404),
        ("GET", "/processes/nope", {}, 404),
        ("GET", "/processes/nope/versions/1/bpmn", {}, 404),
        ("POST", "/messages", {"json": {"name": 5}}, 400),
        ("POST", "/messages", {"json": {"name": "x", "correlation": [1]}}, 400),
        ("POST", "/processes", {"json": {"name": "x.txt", "text": "hello"}}, 422),
        ("POST", "/processes", {"json": {"name": "x.yaml", "text": "process: [\n"}}, 422),
        (
            "POST",
            "/instances",
            {"data": b"x" * (5 * 1024 * 1024), "content_type": "application/json"},
            413,
        ),  # fmt: skip
        ("GET", "/no/such/endpoint", {}, 404),
        ("DELETE", "/processes", {}, 405),
    ],
)
def test_bad_input_gets_a_json_error_never_a_500(
    call: Any, method: str, path: str, kwargs: dict, status: int
) -> None:
    response = call(method, path, "admin", **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["message"]
