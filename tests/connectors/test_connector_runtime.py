"""The Modbus connector runtime against a real (simulated) PLC and a real engine: counter
rises become parts_produced messages that complete waiting workflows, and a rise that
happened while the runtime was down is still delivered, once."""

from __future__ import annotations

from typing import Any

from connector_support import Running, wait_for

from taktflow.connectors.definition import parse_connector
from taktflow.connectors.runtime import ConnectorRuntime
from taktflow.engine.runtime import WorkflowEngine

WAITER = """\
process: parts_log
steps:
  - wait: Parts
    message: parts_produced
    correlate: [machine_id]
    into: parts
"""


def connector(port: int) -> Any:
    return parse_connector(f"""\
connector: press_t
type: modbus
modbus: {{host: 127.0.0.1, port: {port}, poll_ms: 20, timeout_s: 0.5}}
points:
  parts: {{table: holding, address: 0, type: uint32}}
rules:
  - id: produced
    point: parts
    trigger: increase
    message: parts_produced
    correlation: {{machine_id: "'press_t'"}}
    variables: {{good: delta, total: value}}
""", "press_t.yaml")  # fmt: skip


def test_counter_rises_reach_waiting_workflows_once(engine: WorkflowEngine, plc: Any) -> None:
    engine.deploy_text("parts_log.yaml", WAITER)
    first = engine.start("parts_log", {"machine_id": "press_t"})["instance_id"]
    plc.set("holding", 0, [0, 100])  # 100 parts before the connector first looks
    definition = connector(plc.port)

    with Running(ConnectorRuntime([definition], engine)) as running:
        status = wait_for(lambda: running.runtime.statuses()[0]["polls"] >= 2 and
                          running.runtime.statuses()[0])  # fmt: skip
        assert status["state"] == "connected" and status["last_values"] == {"parts": 100}
        assert engine.instance(first)["status"] == "active"  # a baseline, not an event
        plc.set("holding", 0, [0, 105])
        wait_for(lambda: engine.instance(first)["status"] == "completed")
    assert engine.instance(first)["data"]["parts"]["good"] == 5

    # While the runtime is down the press makes 3 more parts; on restart they are reported.
    second = engine.start("parts_log", {"machine_id": "press_t"})["instance_id"]
    plc.set("holding", 0, [0, 108])
    with Running(ConnectorRuntime([definition], engine)):
        wait_for(lambda: engine.instance(second)["status"] == "completed")
    data = engine.instance(second)["data"]["parts"]
    assert (data["good"], data["total"]) == (3, 108)
    assert engine.connector_state("press_t")["point:parts"] == 108


def test_a_dead_plc_is_reported_and_does_not_stall_the_others(
    engine: WorkflowEngine, plc: Any
) -> None:
    engine.deploy_text("parts_log.yaml", WAITER)
    alive = connector(plc.port)
    dead = parse_connector(
        "connector: press_dead\ntype: modbus\nmodbus: {host: 127.0.0.1, port: 1, "
        "poll_ms: 20, timeout_s: 0.2, reconnect: {min_s: 0.05, max_s: 0.2}}\n"
        "points:\n  parts: {table: holding, address: 0, type: uint32}\n",
        "press_dead.yaml",
    )
    with Running(ConnectorRuntime([dead, alive], engine)) as running:

        def both() -> Any:
            by_id = {s["connector"]: s for s in running.runtime.statuses()}
            ok = by_id["press_t"]["polls"] >= 3 and by_id["press_dead"]["state"] == "unreachable"
            return ok and by_id

        statuses = wait_for(both)
    assert "127.0.0.1:1" in statuses["press_dead"]["last_error"]


def test_the_connectors_commands_run_and_show_status(plc: Any, db_url: str, tmp_path: Any) -> None:
    import json

    from click.testing import CliRunner

    from taktflow.cli import cli

    folder = tmp_path / "connectors"
    folder.mkdir()
    (folder / "press_t.yaml").write_text(
        "connector: press_t\ntype: modbus\n"
        f"modbus: {{host: 127.0.0.1, port: {plc.port}, poll_ms: 50}}\n"
        "points:\n  parts: {table: holding, address: 0, type: uint32}\n"
    )
    plc.set("holding", 0, [0, 42])
    env = {"TAKTFLOW_CONNECTORS_PATH": str(folder)}

    def run(*args: str) -> Any:
        result = CliRunner().invoke(cli, ["--database-url", db_url, *args], env=env,
                                    catch_exceptions=False)  # fmt: skip
        assert result.exit_code == 0, result.output
        return result

    run("db", "upgrade")
    ran = run("connectors", "run", "--duration", "0.5", "--json")
    [status] = json.loads(ran.stdout)
    assert (status["connector"], status["state"]) == ("press_t", "stopped")
    assert status["polls"] >= 2 and status["last_values"] == {"parts": 42}
    assert f"press_t: Modbus TCP 127.0.0.1:{plc.port} device 1, every 50 ms" in ran.stderr
    shown = json.loads(run("connectors", "status", "--json").stdout)
    messages = shown[0].pop("messages")
    runtime = shown[0].pop("runtime")
    assert shown == [{"connector": "press_t", "type": "modbus", "enabled": True,
                      "points": {"parts": 42}}]  # fmt: skip
    assert set(messages) >= {"pending", "buffered", "delivered", "expired", "failed"}
    # The runtime reported its own status on the way out, for this other process to show.
    assert runtime["state"] == "stopped" and runtime["polls"] >= 2
    text = run("connectors", "status").stdout
    assert text.startswith("press_t") and "stopped" in text and "parts=42" in text


def test_the_connectors_api_and_page_show_stored_values_and_problems(
    app: Any, client: Any, tmp_path: Any
) -> None:
    from taktflow.app import accounts, workflow_engine

    folder = tmp_path / "connectors"
    folder.mkdir()
    (folder / "press_t.yaml").write_text(
        "connector: press_t\ntype: modbus\nmodbus: {host: 10.0.0.5, port: 502}\n"
        "points:\n  parts: {table: holding, address: 0, type: uint32}\n"
    )
    (folder / "broken.yaml").write_text("connector: broken\ntype: opcua\n")
    app.config["TAKTFLOW"].connectors_path = str(folder)
    with app.app_context():
        _, token = accounts().create_token(
            accounts().create_user("erik", ["engineer"])["username"], "t"
        )
        workflow_engine().record_connector_events(
            "press_t", {"point:parts": 7},
            [{"name": "parts_produced", "correlation": {"m": "p"}, "variables": {},
              "idempotency_key": "press_t/produced/1"}],
        )  # fmt: skip
    body = client.get("/api/v1/connectors", headers={"Authorization": f"Bearer {token}"}).json
    [press] = body["connectors"]
    assert (press["connector"], press["address"], press["points"]) == (
        "press_t", "10.0.0.5:502", {"parts": 7},
    )  # fmt: skip
    assert press["messages"]["buffered"] + press["messages"]["pending"] == 1
    [problem] = body["problems"]
    assert (problem["line"], "type must be modbus or mqtt" in problem["reason"]) == (2, True)


def test_the_page_shows_what_the_runtime_reported_and_when_it_stopped_reporting(
    app: Any, client: Any, tmp_path: Any
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from taktflow.app import accounts, workflow_engine
    from taktflow.engine import models as m

    folder = tmp_path / "connectors"
    folder.mkdir()
    (folder / "press_t.yaml").write_text(
        "connector: press_t\ntype: modbus\nmodbus: {host: 10.0.0.5, port: 502}\n"
        "points:\n  parts: {table: holding, address: 0, type: uint32}\n"
    )
    app.config["TAKTFLOW"].connectors_path = str(folder)
    with app.app_context():
        _, token = accounts().create_token(
            accounts().create_user("erik", ["engineer"])["username"], "t"
        )
        engine = workflow_engine()
        engine.record_connector_status({"press_t": {
            "connector": "press_t", "state": "unreachable", "polls": 0, "events_out": 0,
            "last_error": "press_t: no answer from 10.0.0.5:502 (is the PLC on?)"}})  # fmt: skip
    auth = {"Authorization": f"Bearer {token}"}
    [press] = client.get("/api/v1/connectors", headers=auth).json["connectors"]
    assert press["runtime"]["state"] == "unreachable"
    assert "no answer from 10.0.0.5:502" in press["runtime"]["last_error"]

    # The runtime stopped reporting (killed): after a while the page says it is not running.
    with app.app_context():
        with engine.bind.begin() as conn:
            conn.execute(update(m.ConnectorState).values(
                updated_at=engine.clock.now() - timedelta(minutes=5)))  # fmt: skip
    [press] = client.get("/api/v1/connectors", headers=auth).json["connectors"]
    assert press["runtime"]["state"] == "not running"
