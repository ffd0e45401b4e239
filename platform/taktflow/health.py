"""Health checks shared by the landing page, the API and the CLI."""

from __future__ import annotations

from typing import Any

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from taktflow import __version__
from taktflow.db import db
from taktflow.engine import models as m


def schema_state(bind: Any, migrations_dir: str) -> tuple[str | None, str]:
    """(current revision of the database, head revision of the code)."""
    head = ScriptDirectory(migrations_dir).get_current_head() or ""
    with bind.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head


def health_report() -> dict[str, Any]:
    """Status of the database and the engine, as plain data."""
    from taktflow.app import MIGRATIONS_DIR

    report: dict[str, Any] = {"status": "ok", "version": __version__}
    config = current_app.config["TAKTFLOW"]
    report["database"] = db.engine.dialect.name
    try:
        current, head = schema_state(db.engine, MIGRATIONS_DIR)
        report["schema"] = {"current": current, "head": head}
        if current != head:
            report["status"] = "degraded"
            report["problem"] = "database schema is not current: run `taktflow db upgrade`"
        else:
            with db.engine.connect() as conn:
                counts = {}
                for name, model in (
                    ("processes", m.ProcessVersion),
                    ("instances", m.ProcessInstance),
                    ("ready_tasks", m.HumanTask),
                ):
                    counts[name] = conn.execute(select(func.count()).select_from(model)).scalar()
                report["counts"] = counts
    except SQLAlchemyError as exc:
        report["status"] = "error"
        report["problem"] = f"database unreachable: {exc.__class__.__name__}"
    report["embedded_worker"] = config.embedded_worker
    return report
