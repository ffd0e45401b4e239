"""The `taktflow` command as a stable contract: arguments, --json output, errors, exit statuses.

Most tests drive `taktflow.cli.cli` in-process through click's CliRunner (fast); a few run the
installed console script as a subprocess to prove what a shell sees: exactly one error line on
stderr and the documented exit status.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import create_engine, func, inspect, select, update
from sqlalchemy.engine import Engine

from taktflow.app import MIGRATIONS_DIR
from taktflow.cli import cli
from taktflow.config import Config
from taktflow.db import db
from taktflow.engine import models as m
from taktflow.engine.runtime import WorkflowEngine

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
FORMS = ROOT / "forms"
ENGINE_DATA = ROOT / "tests" / "engine" / "data"
ENGINE_BPMN = ROOT / "tests" / "engine" / "bpmn"
SCRIPT = Path(sys.executable).parent / "taktflow"
HEAD = ScriptDirectory(MIGRATIONS_DIR).get_current_head()
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/taktflow"

#: Every TAKTFLOW_* variable Config reads: unset in each run so the host cannot leak in.
CONFIG_VARS = [f"TAKTFLOW_{f.name.upper()}" for f in fields(Config) if f.name != "extra"]

START_KEYS = {"instance_id", "process_id", "version", "status"}
TASK_KEYS = {
    "task_id",
    "instance_id",
    "process_id",
    "name",
    "title",
    "lane",
    "form",
    "instructions",
}
INSTANCE_KEYS = {
    "instance_id",
    "process_id",
    "version",
    "status",
    "data",
    "error",
    "ready_tasks",
    "waiting",
    "history",
}
SETUP_INSTRUCTIONS = "Set up the machine for order PO-1: 103.0 pieces including scrap allowance."

#: The processes of workflows/, by id.
DEMO_PROCESSES = [
    "financial_posting",
    "first_article",
    "machine_downtime",
    "machine_order",
    "order_release",
    "procurement_approval",
    "quality_gate",
    "routing_execution",
]


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


Taktflow = Callable[..., Run]


def no_schema_message() -> str:
    return (
        f"error: the database has no taktflow schema (code expects {HEAD}): "
        "run `taktflow db upgrade`\n"
    )


@pytest.fixture
def tf(db_url: str, tmp_path: Path) -> Taktflow:
    """Run `taktflow --database-url DB ARGS...` in-process; returns exit code, stdout, stderr."""

    def run(*args: str, url: str | None = db_url, env: dict[str, str] | None = None) -> Run:
        environment: dict[str, str | None] = {name: None for name in CONFIG_VARS}
        environment["TAKTFLOW_INSTANCE_PATH"] = str(tmp_path / "instance")
        environment.update(env or {})
        obj: dict[str, Any] = {}
        prefix = ["--database-url", url] if url is not None else []
        result = CliRunner().invoke(
            cli, [*prefix, *args], obj=obj, env=environment, catch_exceptions=False
        )
        app = obj.get("app")
        if app is not None:
            with app.app_context():
                db.engine.dispose()
        return Run(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def ok(tf: Taktflow) -> Callable[..., Any]:
    """Run a command with --json; it must succeed with nothing on stderr. Returns the JSON."""

    def run(*args: str, **kw: Any) -> Any:
        result = tf(*args, "--json", **kw)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        return result.json()

    return run


def fail(tf: Taktflow, status: int, *args: str, **kw: Any) -> tuple[dict, str]:
    """Run a command with --json that must fail with `status` and exactly one stderr line."""
    result = tf(*args, "--json", **kw)
    assert result.exit_code == status, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    return result.json(), result.stderr.removeprefix("error: ").rstrip("\n")


def fresh_sqlite(tmp_path: Path, name: str = "fresh.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def copy_file(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dest)
    return dest


def deploy(ok: Callable[..., Any], *paths: Path) -> list[dict]:
    return ok("deploy", *map(str, paths))


def instance(ok: Callable[..., Any], instance_id: int) -> dict:
    return ok("instance", str(instance_id))


def start_order(ok: Callable[..., Any], order_id: str = "PO-1", qty: int = 100) -> dict:
    return ok("start", "machine_order", "--data", json.dumps({"order_id": order_id, "qty": qty}))


def run_script(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a shell runs it."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TAKTFLOW_")}
    environment["TAKTFLOW_INSTANCE_PATH"] = str(cwd / "instance")
    environment.update(env or {})
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def sql(db_url: str) -> Any:
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


# ---------------------------------------------------------------------- db upgrade
def test_db_upgrade_creates_the_schema_in_a_new_sqlite_file_and_a_rerun_is_a_no_op(
    tf: Taktflow, tmp_path: Path
) -> None:
    path = tmp_path / "new" / "folder" / "taktflow.db"  # the folder does not exist yet
    url = f"sqlite:///{path}"

    result = tf("db", "upgrade", "--json", url=url)

    assert result.exit_code == 0, result.stderr
    assert result.json() == {"revision": HEAD, "head": HEAD, "database": url}
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {
        "alembic_version",
        "process_version",
        "decision_version",
        "process_instance",
        "human_task",
        "instance_wait",
        "inbox_message",
        "audit_event",
    } <= tables

    deployed = tf("deploy", str(WORKFLOWS), "--json", url=url)
    assert deployed.exit_code == 0, deployed.stderr
    again = tf("db", "upgrade", "--json", url=url)
    assert again.exit_code == 0, again.stderr
    assert again.json() == {"revision": HEAD, "head": HEAD, "database": url}
    processes = tf("processes", "--json", url=url).json()
    assert [p["process_id"] for p in processes] == DEMO_PROCESSES  # kept

    human = tf("db", "upgrade", url=url)
    assert human.exit_code == 0
    assert human.stdout == f"database schema at revision {HEAD}\n"


def test_db_upgrade_on_a_current_database_changes_nothing(ok: Callable[..., Any]) -> None:
    result = ok("db", "upgrade")
    assert result["revision"] == HEAD
    assert result["head"] == HEAD
    assert set(result) == {"revision", "head", "database"}
    assert result["database"].split(":", 1)[0] in ("sqlite", "postgresql+psycopg")


def test_db_upgrade_accepts_the_readme_default_url_relative_to_the_working_directory(
    tf: Taktflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = tf(
        "db",
        "upgrade",
        "--json",
        url="sqlite:///instance/taktflow.db",
        env={"TAKTFLOW_INSTANCE_PATH": str(tmp_path / "instance")},
    )

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "instance" / "taktflow.db").is_file()


# ---------------------------------------------------------------------- schema and config errors
@pytest.mark.parametrize(
    "args",
    [
        ["processes"],
        ["tasks"],
        ["instances"],
        ["instance", "1"],
        ["start", "machine_order"],
        ["deploy", str(WORKFLOWS)],
        ["message", "machine_done", "-c", "order_id=PO-1"],
        ["worker", "--once"],
    ],
    ids=lambda a: a[0],
)
def test_commands_on_a_database_without_schema_exit_7_and_say_run_db_upgrade(
    tf: Taktflow, tmp_path: Path, args: list[str]
) -> None:
    url = fresh_sqlite(tmp_path)

    result = tf(*args, "--json", url=url)

    assert result.exit_code == 7
    assert result.stderr == no_schema_message()
    assert result.json() == {
        "error": {"code": "schema_not_current", "message": no_schema_message()[7:-1]}
    }
    # Nothing was created behind the user's back.
    engine = create_engine(url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_a_database_at_an_unknown_revision_exits_7_naming_both_revisions(
    tf: Taktflow, tmp_path: Path
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('0000_older')")
    conn.close()

    result = tf("processes", url=f"sqlite:///{path}")

    assert result.exit_code == 7
    assert result.stdout == ""
    assert result.stderr == (
        f"error: the database is at revision 0000_older (code expects {HEAD}): "
        "run `taktflow db upgrade`\n"
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (
            "mysql://u@127.0.0.1/plant",
            "unsupported database 'mysql' (supported: sqlite, postgresql)",
        ),
        ("not a url", "not a database URL"),
    ],
)
def test_an_unsupported_database_url_exits_6_naming_the_variable(
    tf: Taktflow, url: str, reason: str
) -> None:
    payload, line = fail(tf, 6, "processes", url=url)

    assert line.startswith(f"configuration error: TAKTFLOW_DATABASE_URL={url!r}: {reason}")
    assert payload == {"error": {"code": "configuration", "message": line}}


def test_the_database_url_comes_from_the_environment_without_the_option(
    tf: Taktflow, db_url: str
) -> None:
    result = tf("processes", "--json", url=None, env={"TAKTFLOW_DATABASE_URL": db_url})
    assert result.exit_code == 0, result.stderr
    assert result.json() == []

    result = tf("processes", url=None, env={"TAKTFLOW_DATABASE_URL": "mysql://u@h/db"})
    assert result.exit_code == 6


def test_a_bad_setting_in_the_environment_exits_6_naming_variable_and_value(tf: Taktflow) -> None:
    _, line = fail(tf, 6, "processes", env={"TAKTFLOW_MESSAGE_TTL_SECONDS": "abc"})
    assert line == "configuration error: TAKTFLOW_MESSAGE_TTL_SECONDS='abc': expected a number"

    _, line = fail(tf, 6, "processes", env={"TAKTFLOW_ENV": "staging"})
    assert line == (
        "configuration error: TAKTFLOW_ENV='staging': expected production, development or testing"
    )


def test_an_infinite_message_ttl_is_a_configuration_error(tf: Taktflow) -> None:
    _, line = fail(tf, 6, "processes", env={"TAKTFLOW_MESSAGE_TTL_SECONDS": "inf"})
    assert "TAKTFLOW_MESSAGE_TTL_SECONDS='inf'" in line


def test_a_postgresql_url_with_a_missing_driver_is_a_configuration_error(tf: Taktflow) -> None:
    _, line = fail(tf, 6, "processes", url="postgresql+psycopg2://postgres@127.0.0.1:1/taktflow")
    assert "TAKTFLOW_DATABASE_URL" in line


def test_an_unreachable_postgresql_exits_8_with_one_line(tf: Taktflow) -> None:
    payload, line = fail(tf, 8, "instances", url=UNREACHABLE_PG)
    assert line.startswith("cannot reach the database: ")
    assert "127.0.0.1" in line
    assert payload == {"error": {"code": "database_unreachable", "message": line}}

    # db upgrade does not check the schema first; it still fails with 8 and one line.
    _, line = fail(tf, 8, "db", "upgrade", url=UNREACHABLE_PG)
    assert "127.0.0.1" in line


# ---------------------------------------------------------------------- deploy and processes
def test_deploy_files_and_folders_as_one_batch_then_redeploy_is_unchanged(
    ok: Callable[..., Any], tf: Taktflow, tmp_path: Path
) -> None:
    folder = tmp_path / "defs"
    order = copy_file(WORKFLOWS / "machine_order.bpmn", folder / "machine_order.bpmn")
    receipt = copy_file(ENGINE_DATA / "goods_receipt.bpmn", folder / "sub" / "goods_receipt.bpmn")
    failing = copy_file(ENGINE_DATA / "failing_script.bpmn", tmp_path / "failing_script.bpmn")

    first = deploy(ok, folder, failing)

    assert sorted(first, key=lambda r: r["process_id"]) == [
        {"process_id": "failing_script", "version": 1, "file": str(failing), "changed": True},
        {"process_id": "goods_receipt", "version": 1, "file": str(receipt), "changed": True},
        {"process_id": "machine_order", "version": 1, "file": str(order), "changed": True},
    ]
    again = deploy(ok, folder, failing)
    assert sorted((r["process_id"], r["version"], r["changed"]) for r in again) == [
        ("failing_script", 1, False),
        ("goods_receipt", 1, False),
        ("machine_order", 1, False),
    ]
    human = tf("deploy", str(order))
    assert human.exit_code == 0
    assert human.stdout.split() == ["machine_order", "v1", "unchanged", str(order)]

    processes = ok("processes")
    assert [(p["process_id"], p["version"], p["name"], p["file"]) for p in processes] == [
        ("failing_script", 1, "Failing script", str(failing)),
        ("goods_receipt", 1, "Goods receipt", str(receipt)),
        ("machine_order", 1, "Machine order", str(order)),
    ]


def test_deploying_a_changed_file_makes_a_new_version(
    ok: Callable[..., Any], tf: Taktflow, tmp_path: Path
) -> None:
    path = copy_file(ENGINE_DATA / "versioned_v1.bpmn", tmp_path / "versioned.bpmn")
    assert deploy(ok, path) == [
        {"process_id": "versioned", "version": 1, "file": str(path), "changed": True}
    ]
    shutil.copy(ENGINE_DATA / "versioned_v2.bpmn", path)

    assert deploy(ok, path) == [
        {"process_id": "versioned", "version": 2, "file": str(path), "changed": True}
    ]
    assert [(p["process_id"], p["version"]) for p in ok("processes")] == [("versioned", 2)]
    human = tf("deploy", str(path))
    assert human.stdout.split() == ["versioned", "v2", "unchanged", str(path)]


def test_deploy_reports_decisions_with_their_decision_id(ok: Callable[..., Any]) -> None:
    dmn = ENGINE_BPMN / "grade.dmn"
    bpmn = ENGINE_BPMN / "business_rule.bpmn"

    result = deploy(ok, dmn, bpmn)

    assert result == [
        {
            "process_id": None,
            "version": 1,
            "file": str(dmn),
            "changed": True,
            "decision_id": "grade_decision",
        },
        {"process_id": "business_rule", "version": 1, "file": str(bpmn), "changed": True},
    ]
    assert deploy(ok, dmn)[0]["changed"] is False


def test_an_invalid_batch_deploys_nothing_and_names_file_element_and_reason(
    tf: Taktflow, ok: Callable[..., Any], tmp_path: Path
) -> None:
    good = copy_file(WORKFLOWS / "machine_order.bpmn", tmp_path / "machine_order.bpmn")
    broken = copy_file(ENGINE_DATA / "broken_script.bpmn", tmp_path / "broken_script.bpmn")

    result = tf("deploy", str(good), str(broken), "--json")

    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith(f"error: {broken}: element 'escape_attempt': script: line 1: ")
    assert "__class__" in lines[0]
    assert (
        lines[1] == f"error: {broken}: element 'gw': condition towards yes: line 1: invalid syntax"
    )
    body = result.json()["error"]
    assert body["code"] == "invalid_definition"
    assert [(d["file"], d["element"]) for d in body["details"]] == [
        (str(broken), "escape_attempt"),
        (str(broken), "gw"),
    ]
    assert ok("processes") == []  # the good file was not deployed either


def test_deploy_problems_with_paths_exit_2(tf: Taktflow, ok: Callable[..., Any], tmp_path: Path):
    missing = tmp_path / "missing.bpmn"
    text = tmp_path / "notes.txt"
    text.write_text("not a workflow")

    result = tf("deploy", str(WORKFLOWS), str(missing), str(text))

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {missing}: no such file or folder",
        f"error: {text}: unsupported file type '.txt' (expected .bpmn, .dmn, .yaml, .yml)",
    ]
    assert ok("processes") == []


def test_deploy_reports_every_content_problem_with_its_line(
    tf: Taktflow, ok: Callable[..., Any], tmp_path: Path
) -> None:
    not_xml = copy_file(ENGINE_DATA / "not_xml.bpmn", tmp_path / "not_xml.bpmn")
    broken = copy_file(ENGINE_DATA / "broken_script.bpmn", tmp_path / "broken_script.bpmn")

    result = tf("deploy", str(WORKFLOWS), str(not_xml), str(broken))

    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 3, result.stderr
    assert lines[0].startswith(f"error: {not_xml}:5: not well-formed XML: ")
    assert lines[1].startswith(f"error: {broken}: element 'escape_attempt': ")
    assert lines[2].startswith(f"error: {broken}: element 'gw': ")
    assert ok("processes") == []


def test_deploy_reports_path_and_content_problems_together(tf: Taktflow, tmp_path: Path) -> None:
    broken = copy_file(ENGINE_DATA / "broken_script.bpmn", tmp_path / "broken_script.bpmn")
    missing = tmp_path / "missing.bpmn"

    result = tf("deploy", str(broken), str(missing))

    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert f"error: {missing}: no such file or folder" in lines
    assert any(line.startswith(f"error: {broken}: element 'gw': ") for line in lines)


def test_processes_on_an_empty_database(tf: Taktflow, ok: Callable[..., Any]) -> None:
    assert ok("processes") == []
    result = tf("processes")
    assert result.exit_code == 0
    assert result.stdout == "no processes deployed (try: taktflow deploy workflows/)\n"


# ---------------------------------------------------------------------- start, tasks, complete
def test_start_with_data_prints_the_new_instance(ok: Callable[..., Any], tf: Taktflow) -> None:
    deploy(ok, WORKFLOWS)

    started = start_order(ok)

    assert {k: started[k] for k in START_KEYS} == {
        "instance_id": started["instance_id"],
        "process_id": "machine_order",
        "version": 1,
        "status": "active",
    }
    assert isinstance(started["instance_id"], int)
    view = instance(ok, started["instance_id"])
    assert view["data"] == {
        "order_id": "PO-1",
        "qty": 100,
        "scrap_allowance": 3.0,
        "planned_qty": 103.0,
    }
    human = tf("start", "machine_order", "--data", '{"order_id": "PO-2", "qty": 10}')
    assert human.exit_code == 0
    assert human.stdout == f"instance {started['instance_id'] + 1} of machine_order v1: active\n"


def test_start_json_has_exactly_the_documented_keys(ok: Callable[..., Any]) -> None:
    deploy(ok, WORKFLOWS)
    assert set(start_order(ok)) == START_KEYS


def test_start_reads_data_from_a_file(ok: Callable[..., Any], tmp_path: Path) -> None:
    deploy(ok, ENGINE_DATA / "failing_script.bpmn")
    data = tmp_path / "start.json"
    data.write_text(json.dumps({"qty": 25, "good": 9, "total": 10}))

    started = ok("start", "failing_script", "--data", f"@{data}")

    assert started["status"] == "active"
    view = instance(ok, started["instance_id"])
    assert view["data"]["lots"] == 2
    assert view["data"]["rate"] == 0.9
    assert [t["name"] for t in view["ready_tasks"]] == ["confirm"]


def test_start_with_bad_json_exits_2_and_starts_nothing(
    tf: Taktflow, ok: Callable[..., Any], tmp_path: Path
) -> None:
    deploy(ok, WORKFLOWS)

    payload, line = fail(tf, 2, "start", "machine_order", "--data", "{order_id: 1}")
    assert line == (
        "--data is not valid JSON: Expecting property name enclosed in double quotes at column 2"
    )
    assert payload == {"error": {"code": "bad_request", "message": line}}

    missing = tmp_path / "nope.json"
    _, line = fail(tf, 2, "start", "machine_order", "--data", f"@{missing}")
    assert line == f"--data: cannot read {missing}: No such file or directory"

    bad_file = tmp_path / "bad.json"
    bad_file.write_text("{")
    _, line = fail(tf, 2, "start", "machine_order", "--data", f"@{bad_file}")
    assert line.startswith("--data is not valid JSON: ")

    assert ok("instances") == []


@pytest.mark.parametrize("data", ["[1, 2]", "42", '"PO-1"', "[]"])
def test_start_data_that_is_not_a_json_object_exits_2(
    tf: Taktflow, ok: Callable[..., Any], data: str
) -> None:
    deploy(ok, WORKFLOWS)
    _, line = fail(tf, 2, "start", "machine_order", "--data", data)
    assert "must be a JSON object" in line


def test_message_data_that_is_not_a_json_object_exits_2(tf: Taktflow) -> None:
    _, line = fail(tf, 2, "message", "goods_received", "--data", "[1]")
    assert "must be a JSON object" in line


def test_start_an_unknown_process_exits_3(tf: Taktflow, ok: Callable[..., Any]) -> None:
    _, line = fail(tf, 3, "start", "nope")
    assert line == "process 'nope' is not deployed (nothing is deployed yet)"

    deploy(ok, WORKFLOWS)
    payload, line = fail(tf, 3, "start", "nope")
    assert line == f"process 'nope' is not deployed (deployed: {', '.join(DEMO_PROCESSES)})"
    assert payload["error"]["code"] == "not_found"


def test_tasks_lists_ready_tasks_and_filters_by_instance(
    ok: Callable[..., Any], tf: Taktflow
) -> None:
    deploy(ok, WORKFLOWS)
    first = start_order(ok, "PO-1")["instance_id"]
    second = start_order(ok, "PO-2", qty=200)["instance_id"]

    tasks = ok("tasks")

    assert [set(t) for t in tasks] == [TASK_KEYS, TASK_KEYS]
    assert [t["instance_id"] for t in tasks] == [first, second]
    assert {k: v for k, v in tasks[0].items() if k != "task_id"} == {
        "instance_id": first,
        "process_id": "machine_order",
        "name": "record_setup",
        "title": "Record setup",
        "lane": "operator",
        "form": "record_setup",
        "instructions": SETUP_INSTRUCTIONS,
    }
    only_second = ok("tasks", "--instance", str(second))
    assert [(t["instance_id"], t["instructions"]) for t in only_second] == [
        (second, "Set up the machine for order PO-2: 206.0 pieces including scrap allowance.")
    ]
    assert ok("tasks", "--instance", "9999") == []
    human = tf("tasks", "--instance", "9999")
    assert human.stdout == "no ready tasks\n"


def test_complete_records_the_user_and_prints_the_instance(
    ok: Callable[..., Any], tf: Taktflow
) -> None:
    deploy(ok, FORMS, WORKFLOWS)
    instance_id = start_order(ok)["instance_id"]
    (task,) = ok("tasks")
    sheet = {"operator": "op-17", "setup_min": 12}

    view = ok("complete", task["task_id"], "--data", json.dumps(sheet), "--user", "op-17")

    assert INSTANCE_KEYS <= set(view)
    assert view["instance_id"] == instance_id
    assert view["status"] == "active"
    assert view["error"] is None
    assert view["ready_tasks"] == []
    assert view["data"]["operator"] == "op-17"
    assert [(w["kind"], w["name"], w["correlation"]) for w in view["waiting"]] == [
        ("message", "machine_done", {"order_id": "PO-1"})
    ]
    completed = [h for h in view["history"] if h["kind"] == "task_completed"]
    assert [(h["actor"], h["task_id"], h["element_id"]) for h in completed] == [
        ("op-17", task["task_id"], "record_setup")
    ]
    # The setup sheet form (forms/record_setup.yaml) checked the data: what it stores is
    # every field of the form, the empty ones as null.
    assert completed[0]["details"]["data"] == sheet | {
        "tool_id": None, "material_lot": None, "first_piece_ok": False, "remarks": None,
    }  # fmt: skip
    # "the instance, as `taktflow instance` prints it"
    assert view == instance(ok, instance_id)
    assert ok("tasks") == []


def test_complete_an_unknown_task_exits_3(tf: Taktflow) -> None:
    payload, line = fail(tf, 3, "complete", "00000000-0000-4000-8000-000000000000")
    assert line.startswith("task 00000000-0000-4000-8000-000000000000 is not ready")
    assert payload["error"]["code"] == "not_found"

    _, line = fail(tf, 3, "complete", "not-a-task")
    assert line == "task 'not-a-task' does not exist (not a task id)"


def test_completing_a_task_twice_exits_4_naming_who_did_it(
    ok: Callable[..., Any], tf: Taktflow
) -> None:
    deploy(ok, FORMS, WORKFLOWS)
    start_order(ok)
    (task,) = ok("tasks")
    ok("complete", task["task_id"], "--data", '{"operator": "op-1", "setup_min": 5}',
       "--user", "op-17")  # fmt: skip

    payload, line = fail(tf, 4, "complete", task["task_id"], "--user", "op-18")

    assert line.startswith(f"task {task['task_id']} is already completed by op-17 at ")
    assert payload["error"]["code"] == "conflict"


# ---------------------------------------------------------------------- messages and signals
def test_a_message_nothing_waits_for_is_buffered(ok: Callable[..., Any], tf: Taktflow) -> None:
    result = ok("message", "goods_received", "-c", "po_number=PO-9", "--data", '{"qty": 5}')

    assert set(result) == {"message_id", "delivered_to", "started", "buffered"}
    assert isinstance(result["message_id"], int)
    assert (result["delivered_to"], result["started"], result["buffered"]) == ([], [], True)

    human = tf("message", "goods_received", "-c", "po_number=PO-10")
    assert human.exit_code == 0
    assert human.stdout.endswith(": nothing waits for it yet; kept for later\n")


def test_a_buffered_message_reaches_the_instance_that_starts_waiting_later(
    ok: Callable[..., Any],
) -> None:
    deploy(ok, ENGINE_DATA / "goods_receipt.bpmn")
    sent = ok(
        "message", "goods_received", "--correlation", "po_number=PO-9", "--data", '{"qty": 5}'
    )
    assert sent["buffered"] is True

    other = ok("start", "goods_receipt", "--data", '{"po_number": "PO-8"}')
    started = ok("start", "goods_receipt", "--data", '{"po_number": "PO-9"}')

    assert other["status"] == "active"
    assert started["status"] == "completed"
    assert instance(ok, started["instance_id"])["data"]["received_qty"] == 5


def test_message_with_repeated_correlation_and_an_idempotency_key(
    ok: Callable[..., Any], tf: Taktflow
) -> None:
    deploy(ok, ENGINE_DATA / "goods_receipt.bpmn")
    waiting = ok("start", "goods_receipt", "--data", '{"po_number": "PO-9"}')["instance_id"]
    other = ok("start", "goods_receipt", "--data", '{"po_number": "PO-8"}')["instance_id"]
    args = ["-c", "po_number=PO-9", "--correlation", "plant=P1", "--data", '{"qty": 5}']

    first = ok("message", "goods_received", *args, "--id", "asn-4711")

    assert first == {
        "message_id": first["message_id"],
        "delivered_to": [waiting],
        "started": [],
        "buffered": False,
    }
    view = instance(ok, waiting)
    assert view["status"] == "completed"
    assert view["data"]["received_qty"] == 5
    received = [h for h in view["history"] if h["kind"] == "message_received"]
    assert [h["details"]["correlation"] for h in received] == [{"po_number": "PO-9", "plant": "P1"}]
    assert instance(ok, other)["status"] == "active"

    second = ok("message", "goods_received", *args, "--id", "asn-4711")

    assert second == {**first, "duplicate": True}
    received = [h for h in instance(ok, waiting)["history"] if h["kind"] == "message_received"]
    assert len(received) == 1
    human = tf("message", "goods_received", *args, "--id", "asn-4711")
    assert human.stdout == f"message {first['message_id']}: duplicate key, ignored\n"


def test_an_idempotency_key_reused_for_another_message_exits_4(
    ok: Callable[..., Any], tf: Taktflow
) -> None:
    ok("message", "goods_received", "-c", "po_number=PO-9", "--id", "key-1")

    payload, line = fail(tf, 4, "message", "machine_done", "-c", "order_id=PO-1", "--id", "key-1")

    assert line == "idempotency key 'key-1' was already used for message 'goods_received'"
    assert payload["error"]["code"] == "conflict"


@pytest.mark.parametrize("pair", ["po_number", "=PO-9", ""])
def test_bad_correlation_syntax_exits_2(tf: Taktflow, sql: Engine, pair: str) -> None:
    payload, line = fail(tf, 2, "message", "goods_received", "-c", "plant=P1", "-c", pair)

    assert line == f"--correlation {pair!r}: expected KEY=VALUE"
    assert payload["error"]["code"] == "bad_request"
    with sql.connect() as conn:  # nothing was stored
        assert conn.execute(select(func.count()).select_from(m.InboxMessage)).scalar() == 0


def test_signal_reaches_every_waiting_instance_once(ok: Callable[..., Any], tf: Taktflow) -> None:
    deploy(ok, ENGINE_BPMN / "signals.bpmn")
    nobody = ok("signal", "line_stop", "--data", '{"line": "L0", "reason": "test"}')
    assert set(nobody) == {"message_id", "delivered_to", "started"}
    assert (nobody["delivered_to"], nobody["started"]) == ([], [])

    a = ok("start", "line_watcher", "--data", '{"station": "S1"}')["instance_id"]
    b = ok("start", "line_watcher", "--data", '{"station": "S2"}')["instance_id"]
    stop = ["--data", '{"line": "L1", "reason": "jam"}', "--id", "andon-1"]

    sent = ok("signal", "line_stop", *stop)

    assert sent == {"message_id": sent["message_id"], "delivered_to": [a, b], "started": []}
    assert instance(ok, a)["data"]["halted"] == "S1 halted on L1: jam"
    assert instance(ok, b)["data"]["halted"] == "S2 halted on L1: jam"

    late = ok("start", "line_watcher", "--data", '{"station": "S3"}')["instance_id"]
    again = ok("signal", "line_stop", *stop)
    assert again == {**sent, "duplicate": True}  # ignored: the late watcher gets nothing
    assert instance(ok, late)["status"] == "active"
    human = tf("signal", "line_stop", "--data", '{"line": "L2", "reason": "x"}')
    assert human.stdout.endswith(": delivered to 1 instance(s)\n")


# ---------------------------------------------------------------------- instances
def test_instance_shows_everything_and_unknown_exits_3(ok: Callable[..., Any], tf: Taktflow):
    deploy(ok, WORKFLOWS)
    instance_id = start_order(ok)["instance_id"]

    view = instance(ok, instance_id)

    assert INSTANCE_KEYS <= set(view)
    assert (view["process_id"], view["version"], view["status"], view["error"]) == (
        "machine_order",
        1,
        "active",
        None,
    )
    assert [(t["name"], t["lane"], t["form"]) for t in view["ready_tasks"]] == [
        ("record_setup", "operator", "record_setup")
    ]
    assert view["waiting"] == []
    assert [h["kind"] for h in view["history"]] == ["started"]
    human = tf("instance", str(instance_id))
    lines = human.stdout.splitlines()
    assert lines[0] == f"instance {instance_id}: machine_order v1 - active"
    assert lines[1].startswith("  ready: Record setup (")
    assert lines[1].endswith(") lane=operator")

    payload, line = fail(tf, 3, "instance", "4242")
    assert line == "instance 4242 does not exist"
    assert payload["error"]["code"] == "not_found"


def test_instances_newest_first_with_filters(ok: Callable[..., Any], tf: Taktflow) -> None:
    deploy(ok, WORKFLOWS, ENGINE_DATA / "failing_script.bpmn", ENGINE_DATA / "goods_receipt.bpmn")
    ok("message", "goods_received", "-c", "po_number=PO-1", "--data", '{"qty": 1}')
    active = start_order(ok)["instance_id"]
    failed = ok("start", "failing_script", "--data", '{"qty": 1, "good": 1, "total": 0}')
    done = ok("start", "goods_receipt", "--data", '{"po_number": "PO-1"}')
    assert (failed["status"], done["status"]) == ("error", "completed")

    rows = ok("instances")

    assert rows == [
        {
            "instance_id": done["instance_id"],
            "process_id": "goods_receipt",
            "version": 1,
            "status": "completed",
        },
        {
            "instance_id": failed["instance_id"],
            "process_id": "failing_script",
            "version": 1,
            "status": "error",
        },
        {"instance_id": active, "process_id": "machine_order", "version": 1, "status": "active"},
    ]
    assert [r["instance_id"] for r in ok("instances", "--status", "error")] == [
        failed["instance_id"]
    ]
    assert [r["instance_id"] for r in ok("instances", "--process", "machine_order")] == [active]
    assert ok("instances", "--process", "goods_receipt", "--status", "active") == []
    assert len(ok("instances", "--limit", "2")) == 2

    payload, line = fail(tf, 2, "instances", "--status", "running")
    assert line == (
        "unknown status 'running' (expected one of active, completed, error, terminated, suspended)"
    )
    assert payload["error"]["code"] == "validation_failed"


def test_retry_runs_the_failed_task_again_with_new_data(
    ok: Callable[..., Any], tf: Taktflow
) -> None:
    deploy(ok, ENGINE_DATA / "failing_script.bpmn")
    started = ok("start", "failing_script", "--data", '{"qty": 20, "good": 9, "total": 0}')
    instance_id = started["instance_id"]
    assert started["status"] == "error"
    broken = instance(ok, instance_id)
    assert broken["error"]["element_id"] == "compute_rate"
    assert "division by zero" in broken["error"]["message"]
    assert broken["ready_tasks"] == []

    view = ok("retry", str(instance_id), "--data", '{"total": 10}', "--user", "fixer")

    assert INSTANCE_KEYS <= set(view)
    assert (view["status"], view["error"]) == ("active", None)
    assert view["data"]["rate"] == 0.9
    assert [t["name"] for t in view["ready_tasks"]] == ["confirm"]
    assert (view["history"][-1]["kind"], view["history"][-1]["actor"]) == ("retried", "fixer")

    _, line = fail(tf, 4, "retry", str(instance_id))
    assert line == f"instance {instance_id} is active, not in error"
    fail(tf, 3, "retry", "4242")


def test_suspend_resume_terminate(ok: Callable[..., Any], tf: Taktflow) -> None:
    deploy(ok, WORKFLOWS)
    instance_id = start_order(ok)["instance_id"]
    (task,) = ok("tasks")
    ident = str(instance_id)

    suspended = ok("suspend", ident, "--user", "shift-lead")
    assert INSTANCE_KEYS <= set(suspended)
    assert suspended["status"] == "suspended"
    assert ok("tasks") == []
    _, line = fail(tf, 4, "suspend", ident)
    assert line == f"instance {instance_id} is suspended and cannot be suspended"
    fail(tf, 3, "complete", task["task_id"])

    resumed = ok("resume", ident, "--user", "shift-lead")
    assert resumed["status"] == "active"
    assert [t["task_id"] for t in ok("tasks")] == [task["task_id"]]
    assert [(h["kind"], h["actor"]) for h in resumed["history"][-2:]] == [
        ("suspended", "shift-lead"),
        ("resumed", "shift-lead"),
    ]
    _, line = fail(tf, 4, "resume", ident)
    assert line == f"instance {instance_id} is active, not suspended"

    terminated = ok("terminate", ident, "--reason", "order cancelled")
    assert (terminated["status"], terminated["ready_tasks"], terminated["waiting"]) == (
        "terminated",
        [],
        [],
    )
    assert terminated["history"][-1]["kind"] == "terminated"
    assert terminated["history"][-1]["details"] == {"reason": "order cancelled"}
    assert ok("tasks") == []
    _, line = fail(tf, 4, "terminate", ident)
    assert line == f"instance {instance_id} is already terminated"
    for command in ("terminate", "suspend", "resume"):
        fail(tf, 3, command, "4242")


# ---------------------------------------------------------------------- worker
def test_worker_once_on_an_idle_database(ok: Callable[..., Any], tf: Taktflow) -> None:
    assert ok("worker", "--once") == {
        "dispatched": 0,
        "timers_fired": 0,
        "expired": 0,
        "machine_events": 0,
    }
    human = tf("worker", "--once")
    assert human.stdout == "dispatched: 0, timers fired: 0, expired: 0, machine events: 0\n"


def test_worker_once_fires_due_timers(ok: Callable[..., Any], sql: Engine) -> None:
    deploy(ok, ENGINE_DATA / "cure_timer.bpmn")
    instance_id = ok("start", "cure_timer")["instance_id"]
    (wait,) = instance(ok, instance_id)["waiting"]
    assert (wait["kind"], wait["element_id"]) == ("timer", "cure")
    due = datetime.fromisoformat(wait["due"])
    assert 7100 < (due - datetime.now(UTC)).total_seconds() <= 7200

    assert ok("worker", "--once") == {
        "dispatched": 0,
        "timers_fired": 0,
        "expired": 0,
        "machine_events": 0,
    }

    with sql.begin() as conn:  # two hours later, as far as the timer table knows
        conn.execute(
            update(m.InstanceWait)
            .where(m.InstanceWait.instance_id == instance_id)
            .values(due_at=datetime(2000, 1, 1, tzinfo=UTC))
        )
    assert ok("worker", "--once") == {
        "dispatched": 0,
        "timers_fired": 1,
        "expired": 0,
        "machine_events": 0,
    }
    view = instance(ok, instance_id)
    assert view["status"] == "completed"
    assert view["data"]["released"] is True
    assert ok("worker", "--once") == {
        "dispatched": 0,
        "timers_fired": 0,
        "expired": 0,
        "machine_events": 0,
    }


def test_worker_once_dispatches_pending_and_expires_old_messages(
    ok: Callable[..., Any], sa_engine: Engine
) -> None:
    deploy(ok, ENGINE_DATA / "goods_receipt.bpmn")
    waiting = ok("start", "goods_receipt", "--data", '{"po_number": "PO-5"}')["instance_id"]
    # Stored but not yet dispatched, as after a crash between storing and delivering.
    WorkflowEngine(sa_engine).store_event(
        "message", "goods_received", correlation={"po_number": "PO-5"}, data={"qty": 3}
    )
    short = {"TAKTFLOW_MESSAGE_TTL_SECONDS": "0.001"}
    kept = ok("message", "goods_received", "-c", "po_number=PO-6", env=short)
    assert kept["buffered"] is True
    time.sleep(0.01)

    assert ok("worker", "--once") == {
        "dispatched": 1,
        "timers_fired": 0,
        "expired": 1,
        "machine_events": 0,
    }

    assert instance(ok, waiting)["data"]["received_qty"] == 3
    late = ok("start", "goods_receipt", "--data", '{"po_number": "PO-6"}')
    assert late["status"] == "active"  # the expired message is not delivered any more


# ---------------------------------------------------------------------- serve
def test_serve_refuses_production_without_a_secret_key(
    tf: Taktflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr("waitress.serve", lambda *a, **kw: calls.append((a, kw)))

    _, line = fail(tf, 6, "serve")

    assert line.startswith("configuration error: TAKTFLOW_SECRET_KEY is not set")
    assert calls == []


def test_serve_hands_the_app_to_waitress(tf: Taktflow, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    tuned: list[bool] = []
    monkeypatch.setattr("waitress.serve", lambda *a, **kw: calls.append((a, kw)))
    # The server's garbage-collector settings must not leak into the test process.
    monkeypatch.setattr("taktflow.cli.tune_for_service", lambda: tuned.append(True))

    result = tf(
        "serve",
        "--port",
        "5099",
        env={"TAKTFLOW_SECRET_KEY": "x" * 64, "TAKTFLOW_EMBEDDED_WORKER": "false"},
    )

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "taktflow serving on http://127.0.0.1:5099/ (Ctrl+C stops it)\n"
    ((args, kwargs),) = calls
    assert args[0].name == "taktflow.app"
    assert kwargs == {"host": "127.0.0.1", "port": 5099, "threads": 8}
    assert tuned == [True]


# ---------------------------------------------------------------------- the installed script
def test_installed_script_succeeds_with_the_url_from_the_environment(
    db_url: str, tmp_path: Path
) -> None:
    result = run_script(["processes", "--json"], tmp_path, {"TAKTFLOW_DATABASE_URL": db_url})

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("case", "status"),
    [("no_schema", 7), ("unsupported", 6), ("unreachable", 8), ("bad_json", 2)],
)
def test_installed_script_fails_with_one_line_and_the_exit_status(
    db_url: str, tmp_path: Path, case: str, status: int
) -> None:
    args = {
        "no_schema": ["--database-url", fresh_sqlite(tmp_path), "processes"],
        "unsupported": ["--database-url", "mysql://u@127.0.0.1/plant", "processes"],
        "unreachable": ["--database-url", UNREACHABLE_PG, "tasks"],
        "bad_json": ["--database-url", db_url, "start", "machine_order", "--data", "{"],
    }[case]

    result = run_script(args, tmp_path)

    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert "Traceback" not in result.stderr
    if case == "no_schema":
        assert result.stderr == no_schema_message()


def test_installed_script_reports_every_definition_problem_on_its_own_line(
    db_url: str, tmp_path: Path
) -> None:
    broken = copy_file(ENGINE_DATA / "broken_script.bpmn", tmp_path / "broken_script.bpmn")
    good = copy_file(WORKFLOWS / "machine_order.bpmn", tmp_path / "machine_order.bpmn")

    result = run_script(["--database-url", db_url, "deploy", str(good), str(broken)], tmp_path)

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert [line.split(": ", 3)[:3] for line in lines] == [
        ["error", str(broken), "element 'escape_attempt'"],
        ["error", str(broken), "element 'gw'"],
    ]


# ---------------------------------------------------------------------- compile (YAML -> BPMN)
SETUP_YAML = """\
process: setup_check
name: Setup check
lanes: [operator]
steps:
  - task: Record setup
    lane: operator
    form: record_setup
  - decision: Grade setup
    table:
      inputs: [deviation]
      outputs: [grade]
      rules:
        - when: ["< 0.1"]
          then: [A]
        - when: [-]
          then: [B]
"""


def test_compile_writes_bpmn_and_dmn_next_to_the_yaml(tf: Taktflow, tmp_path: Path) -> None:
    source = tmp_path / "setup_check.yaml"
    source.write_text(SETUP_YAML)
    result = tf("compile", str(source), "--json", url=None)
    assert result.exit_code == 0, result.stderr
    bpmn = tmp_path / "setup_check.bpmn"
    dmn = tmp_path / "setup_check.setup_check_grade_setup.dmn"
    assert result.json() == {"process_id": "setup_check", "files": [str(bpmn), str(dmn)]}
    assert '<bpmn:userTask id="record_setup" name="Record setup">' in bpmn.read_text()
    assert 'hitPolicy="FIRST"' in dmn.read_text()


def test_compile_to_a_chosen_file_and_to_stdout(tf: Taktflow, tmp_path: Path) -> None:
    source = tmp_path / "setup_check.yaml"
    source.write_text(SETUP_YAML)
    target = tmp_path / "out" / "setup.bpmn"
    target.parent.mkdir()
    result = tf("compile", str(source), "-o", str(target), url=None)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"wrote {target}",
        f"wrote {target.parent / 'setup.setup_check_grade_setup.dmn'}",
    ]
    printed = tf("compile", str(source), "-o", "-", url=None)
    assert printed.exit_code == 0
    assert printed.stdout == target.read_text()  # deterministic: the same XML both times


def test_compile_reports_yaml_problems_with_line_and_column(tf: Taktflow, tmp_path: Path) -> None:
    source = tmp_path / "broken.yaml"
    source.write_text(SETUP_YAML.replace("lane: operator", "lane: operators"))
    result = tf("compile", str(source), url=None)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {source}:6:11: step \"Record setup\": unknown lane 'operators' "
        "(lanes: operator); did you mean 'operator'?\n"
    )
    assert not (tmp_path / "broken.bpmn").exists()


def test_compile_refuses_other_files(tf: Taktflow, tmp_path: Path) -> None:
    source = tmp_path / "order.bpmn"
    source.write_text("<x/>")
    result = tf("compile", str(source), url=None)
    assert result.exit_code == 2
    assert result.stderr == f"error: {source}: expected a .yaml or .yml workflow file\n"
    missing = tf("compile", str(tmp_path / "nope.yaml"), url=None)
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr


def test_deploy_a_yaml_workflow_and_run_it(
    tf: Taktflow, ok: Callable[..., Any], tmp_path: Path
) -> None:
    ok("db", "upgrade")
    source = tmp_path / "setup_check.yaml"
    source.write_text(SETUP_YAML)
    deployed = ok("deploy", str(source))
    assert deployed == [
        {
            "process_id": None,
            "decision_id": "setup_check_grade_setup",
            "version": 1,
            "file": str(source),
            "changed": True,
        },
        {"process_id": "setup_check", "version": 1, "file": str(source), "changed": True},
    ]
    assert ok("deploy", str(source))[1]["changed"] is False
    started = ok("start", "setup_check", "--data", '{"deviation": 0.05}')
    [task] = ok("tasks", "--instance", str(started["instance_id"]))
    assert (task["name"], task["lane"], task["form"]) == (
        "record_setup",
        "operator",
        "record_setup",
    )
    # The task's form is checked on completion: without it deployed, the task is refused.
    assert tf("complete", task["task_id"]).exit_code == 4
    ok("deploy", str(FORMS / "record_setup.yaml"))
    done = ok("complete", task["task_id"], "--data", '{"operator": "op-3", "setup_min": 9}')
    assert done["status"] == "completed"
    assert done["data"]["grade"] == "A"


def test_process_shows_versions_and_the_compiled_bpmn(
    tf: Taktflow, ok: Callable[..., Any], tmp_path: Path
) -> None:
    ok("db", "upgrade")
    source = tmp_path / "setup_check.yaml"
    source.write_text(SETUP_YAML)
    ok("deploy", str(source))
    source.write_text(SETUP_YAML.replace("name: Setup check", "name: Setup check v2"))
    ok("deploy", str(source))
    shown = ok("process", "setup_check")
    assert [v["version"] for v in shown["versions"]] == [2, 1]
    assert shown["name"] == "Setup check v2"
    assert ok("process", "setup_check", "--version", "1")["name"] == "Setup check"
    first = tf("process", "setup_check", "--version", "1", "--bpmn")
    assert first.exit_code == 0
    assert first.stdout.startswith("<?xml")
    assert 'name="Setup check"' in first.stdout and "v2" not in first.stdout
    missing = tf("process", "setup_check", "--version", "9")
    assert (missing.exit_code, missing.stderr) == (
        3,
        "error: process 'setup_check' has no version 9\n",
    )


# ---------------------------------------------------------------------- accounts
def test_user_and_token_commands(tf: Taktflow, ok: Callable[..., Any], db_url: str) -> None:
    ok("db", "upgrade")
    anna = CliRunner().invoke(
        cli,
        ["--database-url", db_url, "user", "create", "anna", "--role", "operator",
         "--role", "quality", "--password-stdin", "--json"],
        input="setup-1234\n",
        catch_exceptions=False,
    )  # fmt: skip
    assert anna.exit_code == 0, anna.stderr
    assert json.loads(anna.stdout)["roles"] == ["operator", "quality"]
    erp = ok("user", "create", "erp", "--role", "planner")
    assert erp["has_password"] is False
    created = ok("token", "create", "--user", "erp", "--name", "ERP interface")
    assert created["token"].startswith("tf_") and created["user"] == "erp"
    listed = ok("token", "list")
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    assert ok("token", "revoke", str(created["id"]))["revoked_at"] is not None
    assert [u["username"] for u in ok("user", "list")] == ["anna", "erp"]
    bad = tf("user", "create", "bob", "--role", "wizard")
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: unknown role(s) wizard (roles: operator")
    missing = tf("user", "password", "anna")
    assert (missing.exit_code, missing.stderr) == (
        2,
        "error: give the password on standard input: --password-stdin\n",
    )


def test_user_seed_creates_the_demo_accounts_once_and_never_in_production(
    tf: Taktflow, ok: Callable[..., Any]
) -> None:
    ok("db", "upgrade")
    seeded = ok("user", "seed", "seed_data/users.yaml", env={"TAKTFLOW_ENV": "development"})
    assert [u["username"] for u in seeded] == [
        "olga",
        "quinn",
        "paul",
        "mia",
        "erik",
        "ada",
        "max",
        "sam",
        "dora",
    ]
    assert ok("user", "seed", env={"TAKTFLOW_ENV": "development"}) == []
    refused = tf(
        "user", "seed", env={"TAKTFLOW_ENV": "production", "TAKTFLOW_SECRET_KEY": "x" * 40}
    )
    assert refused.exit_code == 2
    assert "set TAKTFLOW_ENV=development" in refused.stderr


def test_scenario_week_prints_each_check_and_exits_0_when_all_pass(tf: Taktflow) -> None:
    development = {"TAKTFLOW_ENV": "development"}
    result = tf("scenario", "week", "--orders", "4", "--seed", "3", "--json", env=development)
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert (report["orders"], report["seed"], report["passed"]) == (4, 3, True)
    assert len(report["checks"]) == 15
    assert all(c["passed"] for c in report["checks"])
    # Progress goes to stderr with --json, so stdout stays one JSON document.
    assert "simulating the week of 2 March 2026: 4 orders, seed 3" in result.stderr
    again = tf("scenario", "week", "--orders", "4", env=development)
    assert again.exit_code == 2
    assert "already holds 4 production orders" in again.stderr


def test_scenario_week_refuses_production_and_bad_order_counts(tf: Taktflow) -> None:
    _, message = fail(tf, 2, "scenario", "week", env={"TAKTFLOW_ENV": "production"})
    assert "set TAKTFLOW_ENV=development" in message
    _, message = fail(tf, 2, "scenario", "week", "--orders", "2",
                      env={"TAKTFLOW_ENV": "development"})  # fmt: skip
    assert "--orders 2: the week needs at least 4 orders" in message
