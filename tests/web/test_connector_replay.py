"""The connectors page lists dead letters and failed machine writes; an engineer replays them
there (or through the API) once the cause is fixed; other roles see them without the button."""

from __future__ import annotations

from typing import Any

from taktflow.engine.runtime import MAX_DISPATCH_ATTEMPTS

DOWNTIME = "process: downtime\nsteps:\n  - manual: Give a reason\n"


def dead_letter(engine: Any) -> int:
    """A start event for a process that is not deployed, failed until it is dead-lettered."""
    [message_id] = engine.record_connector_events(
        "press_r", {}, [{"kind": "start", "name": "downtime", "variables": {"alarm": 7},
                         "idempotency_key": "press_r/stopped/1"}],
    )  # fmt: skip
    for _ in range(MAX_DISPATCH_ATTEMPTS - 1):
        engine.dispatch([message_id])
    assert engine.delivery(message_id).status == "failed"
    return message_id


def test_an_engineer_replays_a_dead_letter_from_the_page(
    app: Any, csrf: Any, sign_in: Any, tmp_path: Any
) -> None:
    from taktflow.app import accounts, workflow_engine

    app.config["TAKTFLOW"].connectors_path = str(tmp_path)
    with app.app_context():
        accounts().create_user("erik", ["engineer"], "erik-pass-1")
        accounts().create_user("sue", ["supervisor"], "sue-pass-1")
        message_id = dead_letter(workflow_engine())

    supervisor = app.test_client()
    sign_in(supervisor, "sue", "sue-pass-1")
    page = supervisor.get("/connectors").get_data(as_text=True)
    assert f'data-message="{message_id}"' in page and "not deployed" in page
    assert "Replay" not in page

    engineer = app.test_client()
    sign_in(engineer, "erik", "erik-pass-1")
    page = engineer.get("/connectors").get_data(as_text=True)
    assert "press_r" in page and "Replay" in page
    with app.app_context():
        workflow_engine().deploy_text("downtime.yaml", DOWNTIME)
    response = engineer.post(f"/connectors/messages/{message_id}/replay",
                             data={"csrf_token": csrf(page)}, follow_redirects=True)  # fmt: skip
    assert f"Message {message_id} replayed: delivered." in response.get_data(as_text=True)
    with app.app_context():
        [started] = workflow_engine().instances()
        assert started["process_id"] == "downtime"
        assert workflow_engine().instance(started["instance_id"])["data"]["alarm"] == 7
    again = engineer.post(f"/connectors/messages/{message_id}/replay",
                          data={"csrf_token": csrf(page)}, follow_redirects=True)  # fmt: skip
    assert "only failed messages are replayed" in again.get_data(as_text=True)


def test_the_api_replays_dead_letters_and_failed_outbox_rows(
    app: Any, client: Any, tmp_path: Any
) -> None:
    from taktflow.app import accounts, workflow_engine
    from taktflow.engine.outbox import MAX_SEND_ATTEMPTS, add_outbox

    app.config["TAKTFLOW"].connectors_path = str(tmp_path)
    with app.app_context():
        engine = workflow_engine()
        _, token = accounts().create_token(
            accounts().create_user("erik", ["engineer"])["username"], "t"
        )
        message_id = dead_letter(engine)
        with engine._unit() as unit:
            outbox_id = add_outbox(unit.session, kind="mqtt.publish", target="mqtt",
                                   body={"topic": "andon/1", "payload": "red"},
                                   idempotency_key="k", instance_id=None, task_id=None,
                                   now=unit.now)  # fmt: skip
        for _ in range(MAX_SEND_ATTEMPTS):
            engine.outbox_failed(outbox_id, "MQTT broker 127.0.0.1:1883 is not reachable")
    auth = {"Authorization": f"Bearer {token}"}

    body = client.get("/api/v1/connectors", headers=auth).json
    assert [d["id"] for d in body["dead_letters"]] == [message_id]
    [row] = body["outbox"]
    assert (row["status"], row["error"]) == (
        "failed",
        "MQTT broker 127.0.0.1:1883 is not reachable",
    )

    replayed = client.post(f"/api/v1/outbox/{outbox_id}/replay", headers=auth)
    assert replayed.status_code == 200 and replayed.json["status"] == "pending"
    # The process is still not deployed: the replayed message fails again (a first attempt).
    again = client.post(f"/api/v1/messages/{message_id}/replay", headers=auth)
    assert again.status_code == 200 and again.json["status"] == "pending"
    missing = client.post("/api/v1/messages/424242/replay", headers=auth)
    assert missing.status_code == 404
