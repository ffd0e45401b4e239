"""The application factory, the health page, /api/v1 and the `flask taktflow` commands."""

from __future__ import annotations

import json
import os
import re
import runpy
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields
from datetime import timedelta
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy.engine import make_url

from taktflow import __version__
from taktflow.app import MIGRATIONS_DIR, create_app, workflow_engine
from taktflow.cli import cli
from taktflow.config import DEV_SECRET_KEY, Config, ConfigError
from taktflow.db import db
from taktflow.engine.runtime import WorkflowEngine

ROOT = Path(__file__).resolve().parent.parent
FLASK = Path(sys.executable).parent / "flask"
HEAD = ScriptDirectory(MIGRATIONS_DIR).get_current_head()
NOT_CURRENT = "database schema is not current: run `taktflow db upgrade`"
CONFIG_VARS = [f"TAKTFLOW_{f.name.upper()}" for f in fields(Config) if f.name != "extra"]


@pytest.fixture(autouse=True)
def no_host_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings of the machine running the tests must not leak into the apps built here."""
    for name in CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Any]:
    """create_app with overrides on top of a testing default; every app is disposed after."""
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        settings = {"env": "testing", "instance_path": str(tmp_path / "instance")}
        settings.update(overrides)
        app = create_app(settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            db.engine.dispose()


def backend(url: str) -> str:
    return make_url(url).get_backend_name()


def sqlite_with_revision(path: Path, revision: str) -> str:
    """A SQLite file whose alembic_version names `revision` and that has no taktflow tables."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    conn.close()
    return f"sqlite:///{path}"


# ---------------------------------------------------------------------- the factory
def test_create_app_applies_overrides(app: Flask, db_url: str, tmp_path: Path) -> None:
    config = app.config["TAKTFLOW"]

    assert isinstance(config, Config)
    assert config.database_url == db_url
    assert config.env == "testing"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == db_url
    assert app.config["TESTING"] is True
    assert app.config["SECRET_KEY"] == DEV_SECRET_KEY
    assert app.instance_path == str(tmp_path / "instance")
    assert (tmp_path / "instance").is_dir()
    assert {"web", "api"} <= set(app.blueprints)
    assert app.cli.commands["taktflow"] is cli
    assert isinstance(workflow_engine(app), WorkflowEngine)
    with app.app_context():
        assert workflow_engine() is workflow_engine(app)


def test_create_app_takes_a_config_and_hands_its_settings_to_the_engine(
    db_url: str, tmp_path: Path
) -> None:
    config = Config.from_env(
        {},
        overrides={
            "database_url": db_url,
            "env": "testing",
            "instance_path": str(tmp_path / "own"),
            "message_ttl_seconds": 90,
        },
    )

    app = create_app(config)
    try:
        assert app.config["TAKTFLOW"] is config
        assert workflow_engine(app).message_ttl == timedelta(seconds=90)
        assert (tmp_path / "own").is_dir()
    finally:
        with app.app_context():
            db.engine.dispose()


def test_production_without_a_key_signs_with_a_throwaway_key(make_app: Any, db_url: str) -> None:
    first = make_app(database_url=db_url, env="production")
    second = make_app(database_url=db_url, env="production")

    assert first.config["TESTING"] is False
    assert re.fullmatch(r"[0-9a-f]{64}", first.config["SECRET_KEY"])
    assert first.config["SECRET_KEY"] != second.config["SECRET_KEY"]


def test_create_app_refuses_bad_settings(make_app: Any) -> None:
    with pytest.raises(ConfigError, match=re.escape("TAKTFLOW_ENV='qa'")):
        make_app(env="qa")
    with pytest.raises(ConfigError, match="unsupported database 'oracle'"):
        make_app(database_url="oracle://scott@127.0.0.1/plant")


def test_create_app_creates_the_folder_of_a_new_sqlite_file(make_app: Any, tmp_path: Path):
    make_app(database_url=f"sqlite:///{tmp_path / 'a' / 'b' / 'taktflow.db'}")
    assert (tmp_path / "a" / "b").is_dir()


def test_wsgi_refuses_production_without_a_secret_key(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAKTFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("TAKTFLOW_INSTANCE_PATH", str(tmp_path / "instance"))

    with pytest.raises(ConfigError, match="TAKTFLOW_SECRET_KEY is not set"):
        runpy.run_path(str(ROOT / "wsgi.py"))

    monkeypatch.setenv("TAKTFLOW_SECRET_KEY", "k" * 64)
    app = runpy.run_path(str(ROOT / "wsgi.py"))["app"]
    try:
        assert app.config["SECRET_KEY"] == "k" * 64
        assert app.config["TAKTFLOW"].database_url == db_url
    finally:
        with app.app_context():
            db.engine.dispose()


# ---------------------------------------------------------------------- the health page
def test_home_page_shows_status_and_counts(app: Flask, client: Any, db_url: str) -> None:
    engine = workflow_engine(app)
    engine.deploy_paths([str(ROOT / "workflows")])
    engine.start("machine_order", {"order_id": "PO-1", "qty": 10})
    engine.start("machine_order", {"order_id": "PO-2", "qty": 20})

    response = client.get("/")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert '<span class="badge ok" id="status">ok</span>' in page
    assert f"version {__version__}</p>" in page
    assert f"<tr><th>Database</th><td>{backend(db_url)}</td></tr>" in page
    assert f"<tr><th>Schema</th><td><code>{HEAD}</code></td></tr>" in page
    assert "<tr><th>Processes</th><td>8</td></tr>" in page  # the demo workflows
    assert "<tr><th>Instances</th><td>2</td></tr>" in page
    assert "<tr><th>Ready tasks</th><td>2</td></tr>" in page
    assert "<tr><th>Worker</th><td>embedded</td></tr>" in page
    assert "<strong>" not in page  # no problem to report


def test_home_page_reports_a_schema_that_is_not_current(make_app: Any, tmp_path: Path) -> None:
    app = make_app(database_url=f"sqlite:///{tmp_path / 'empty.db'}", embedded_worker=False)

    page = app.test_client().get("/").get_data(as_text=True)

    assert '<span class="badge degraded" id="status">degraded</span>' in page
    assert f"<p><strong>{NOT_CURRENT}</strong></p>" in page
    assert "<tr><th>Schema</th><td><code>none</code></td></tr>" in page
    assert "<th>Processes</th>" not in page
    assert "<tr><th>Worker</th><td>separate process</td></tr>" in page


def test_home_page_escapes_what_it_reads_from_the_database(make_app: Any, tmp_path: Path) -> None:
    url = sqlite_with_revision(tmp_path / "odd.db", "<b>x&y</b>")
    app = make_app(database_url=url)

    response = app.test_client().get("/")

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "<code>&lt;b&gt;x&amp;y&lt;/b&gt;</code>" in page
    assert "<b>x&y</b>" not in page


# ---------------------------------------------------------------------- /api/v1
def test_api_health_ok(client: Any, db_url: str) -> None:
    response = client.get("/api/v1/health")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {
        "status": "ok",
        "version": __version__,
        "database": backend(db_url),
        "schema": {"current": HEAD, "head": HEAD},
        "counts": {"processes": 0, "instances": 0, "ready_tasks": 0},
        "embedded_worker": True,
    }


def test_api_health_is_503_when_the_schema_is_missing(make_app: Any, tmp_path: Path) -> None:
    app = make_app(database_url=f"sqlite:///{tmp_path / 'empty.db'}")

    response = app.test_client().get("/api/v1/health")

    assert response.status_code == 503
    assert response.get_json() == {
        "status": "degraded",
        "version": __version__,
        "database": "sqlite",
        "schema": {"current": None, "head": HEAD},
        "problem": NOT_CURRENT,
        "embedded_worker": True,
    }


def test_api_health_is_503_when_the_schema_is_at_another_revision(
    make_app: Any, tmp_path: Path
) -> None:
    app = make_app(database_url=sqlite_with_revision(tmp_path / "old.db", "0000_older"))

    response = app.test_client().get("/api/v1/health")

    assert response.status_code == 503
    body = response.get_json()
    assert (body["status"], body["schema"], body["problem"]) == (
        "degraded",
        {"current": "0000_older", "head": HEAD},
        NOT_CURRENT,
    )


def test_api_health_is_503_when_the_database_is_unreachable(make_app: Any) -> None:
    app = make_app(database_url="postgresql://postgres@127.0.0.1:1/taktflow")
    client = app.test_client()

    response = client.get("/api/v1/health")

    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "error"
    assert body["database"] == "postgresql"
    assert body["problem"] == "database unreachable: OperationalError"
    page = client.get("/").get_data(as_text=True)
    assert '<span class="badge error" id="status">error</span>' in page


def test_api_version(client: Any) -> None:
    response = client.get("/api/v1/version")

    assert response.status_code == 200
    assert response.get_json() == {"name": "taktflow", "version": __version__}
    assert __version__ == package_version("taktflow")


def test_an_unknown_api_path_gives_a_json_404(client: Any) -> None:
    response = client.get("/api/v1/no-such-thing")

    assert response.status_code == 404
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"]["code"] == "not_found"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_a_wrong_method_on_the_api_gives_a_json_405(client: Any) -> None:
    response = client.post("/api/v1/health")

    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_an_unknown_page_outside_the_api_stays_html(client: Any) -> None:
    response = client.get("/no-such-page")

    assert response.status_code == 404
    assert response.mimetype == "text/html"


# ---------------------------------------------------------------------- flask taktflow
def run_flask(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TAKTFLOW_")}
    environment.update(env)
    return subprocess.run(
        [str(FLASK), "--app", "wsgi", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_flask_runs_the_taktflow_commands(app: Flask, db_url: str, tmp_path: Path) -> None:
    workflow_engine(app).deploy_paths([str(ROOT / "workflows")])

    result = run_flask(
        ["taktflow", "processes", "--json"],
        {
            "TAKTFLOW_DATABASE_URL": db_url,
            "TAKTFLOW_ENV": "development",
            "TAKTFLOW_INSTANCE_PATH": str(tmp_path / "instance"),
        },
    )

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["process_id"], r["version"], r["name"]) for r in rows] == [
        ("financial_posting", 1, "Financial posting"),
        ("first_article", 1, "First article inspection"),
        ("machine_downtime", 1, "Machine downtime"),
        ("machine_order", 1, "Machine order"),
        ("order_release", 1, "Order release"),
        ("procurement_approval", 1, "Procurement approval"),
        ("quality_gate", 1, "Quality gate"),
        ("routing_execution", 1, "Routing execution"),
    ]


def test_flask_taktflow_honours_or_refuses_an_explicit_database_url(
    app: Flask, db_url: str, tmp_path: Path
) -> None:
    workflow_engine(app).deploy_paths([str(ROOT / "workflows")])
    other = f"sqlite:///{tmp_path / 'other.db'}"  # no schema: must not list db_url's processes

    result = run_flask(
        ["taktflow", "--database-url", other, "processes", "--json"],
        {
            "TAKTFLOW_DATABASE_URL": db_url,
            "TAKTFLOW_ENV": "development",
            "TAKTFLOW_INSTANCE_PATH": str(tmp_path / "instance"),
        },
    )

    assert result.returncode != 0
    assert "machine_order" not in result.stdout
