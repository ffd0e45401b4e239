"""Shared fixtures: a migrated database per test (SQLite or PostgreSQL), engine, app, CLI.

The suite runs against SQLite by default and against PostgreSQL when
TAKTFLOW_TEST_DATABASE_URL names one. Tests that need PostgreSQL in every run use
TAKTFLOW_TEST_POSTGRES_URL (or the local default server when it answers).

With TAKTFLOW_STRICT=1 (set by .ci/run) a test that would be skipped because a service is
missing fails instead, and any skip at all fails the session: CI must not pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from taktflow.db import Base, engine_options
from taktflow.engine.actions import ActionRegistry, builtin_actions
from taktflow.engine.clock import ManualClock
from taktflow.engine.runtime import WorkflowEngine
from taktflow.engine.sandbox import Limits
from taktflow.yamlflow import COMPILERS

STRICT = os.environ.get("TAKTFLOW_STRICT") == "1"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DATA = Path(__file__).parent / "data"


def missing_service(reason: str) -> None:
    """Skip locally; fail in CI (TAKTFLOW_STRICT=1), where every service must be present."""
    if STRICT:
        pytest.fail(f"required service missing in strict mode: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node_with_bpmn_moddle() -> str:
    """Path of `node`, with bpmn-moddle (from bpmn-js, installed by make) next to the tests."""
    node = shutil.which("node")
    if node is None:
        missing_service("node (Node.js) is not installed (Debian: apt-get install nodejs npm)")
    root = Path(__file__).parents[1]
    if not (root / "node_modules" / "bpmn-moddle").is_dir():
        missing_service("node_modules/bpmn-moddle is missing: run `make install`")
    return node  # type: ignore[return-value]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if STRICT and session.testsfailed == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
        if skipped:
            if reporter:
                reporter.write_line(
                    f"TAKTFLOW_STRICT=1: {skipped} test(s) were skipped; CI treats skips as "
                    "failures",
                    red=True,
                )
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _migrate(url: str) -> None:
    """Create the schema at `url` through the real migrations."""
    from flask_migrate import upgrade

    from taktflow.app import MIGRATIONS_DIR, create_app

    app = create_app({"database_url": url, "env": "testing", "instance_path": "/tmp"})
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR)
    from taktflow.db import db

    with app.app_context():
        db.engine.dispose()


def _pg_reachable(url: str) -> bool:
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False


def postgres_base_url() -> str | None:
    """A PostgreSQL URL for tests that need PostgreSQL, or None."""
    main = os.environ.get("TAKTFLOW_TEST_DATABASE_URL", "")
    if main.startswith("postgresql"):
        return main
    url = os.environ.get("TAKTFLOW_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    return url if _pg_reachable(url) else None


def _with_schema(url: str, schema: str) -> str:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    query = dict(parsed.query)
    query["options"] = f"-csearch_path={schema}"
    return parsed.set(query=query).render_as_string(hide_password=False)


class PostgresSchema:
    """One migrated schema per test session (and xdist worker); emptied between tests."""

    def __init__(self, base_url: str, worker: str) -> None:
        self.base_url = base_url
        self.schema = f"tf_{worker}_{uuid.uuid4().hex[:8]}"
        admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        admin.dispose()
        self.url = _with_schema(base_url, self.schema)
        _migrate(self.url)
        self.tables = [t.name for t in reversed(Base.metadata.sorted_tables)]

    def reset(self) -> None:
        engine = create_engine(self.url)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(self.tables)} RESTART IDENTITY CASCADE"))
        engine.dispose()

    def drop(self) -> None:
        admin = create_engine(self.base_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def worker_id_safe(request: pytest.FixtureRequest) -> str:
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is much faster)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def main_postgres(worker_id_safe: str) -> Iterator[PostgresSchema | None]:
    url = os.environ.get("TAKTFLOW_TEST_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        yield None
        return
    schema = PostgresSchema(url, worker_id_safe)
    yield schema
    schema.drop()


@pytest.fixture(scope="session")
def extra_postgres(worker_id_safe: str) -> Iterator[PostgresSchema | None]:
    url = postgres_base_url()
    if url is None:
        yield None
        return
    schema = PostgresSchema(url, worker_id_safe + "x")
    yield schema
    schema.drop()


@pytest.fixture
def db_url(tmp_path: Path, sqlite_template: Path, main_postgres: PostgresSchema | None) -> str:
    """The database of this test: a fresh migrated SQLite file, or an emptied PG schema."""
    if main_postgres is not None:
        main_postgres.reset()
        return main_postgres.url
    path = tmp_path / "taktflow.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def postgres_url(extra_postgres: PostgresSchema | None) -> str:
    """A migrated, emptied PostgreSQL schema, for tests about PostgreSQL itself."""
    if extra_postgres is None:
        missing_service(
            "PostgreSQL not reachable (set TAKTFLOW_TEST_POSTGRES_URL or start it on 127.0.0.1)"
        )
    assert extra_postgres is not None
    extra_postgres.reset()
    return extra_postgres.url


def make_sa_engine(url: str) -> Engine:
    return create_engine(url, **engine_options(url))


@pytest.fixture
def sa_engine(db_url: str) -> Iterator[Engine]:
    engine = make_sa_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 2, 6, 0, tzinfo=UTC))


@pytest.fixture
def actions() -> ActionRegistry:
    registry = ActionRegistry()
    builtin_actions(registry)
    return registry


def make_engine(
    bind: Engine, clock: ManualClock, actions: ActionRegistry, **kw: Any
) -> WorkflowEngine:
    kw.setdefault("script_limits", Limits(max_cpu_s=1.0))
    kw.setdefault("compilers", COMPILERS)
    return WorkflowEngine(bind, clock=clock, actions=actions, **kw)


@pytest.fixture
def engine(sa_engine: Engine, clock: ManualClock, actions: ActionRegistry) -> WorkflowEngine:
    """A workflow engine on this test's database with a manual clock."""
    return make_engine(sa_engine, clock, actions)


@pytest.fixture
def new_engine(sa_engine: Engine, clock: ManualClock, actions: ActionRegistry) -> Any:
    """Build another engine on the same database (as another process would: empty caches)."""
    return lambda **kw: make_engine(sa_engine, clock, actions, **kw)


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> Any:
    from taktflow.app import create_app

    app = create_app(
        {"database_url": db_url, "env": "testing", "instance_path": str(tmp_path / "instance")}
    )
    yield app
    from taktflow.db import db

    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()
