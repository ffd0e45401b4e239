"""The migrations build exactly the schema the models describe (on SQLite and PostgreSQL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

import taktflow.auth.models  # noqa: F401 - the account tables
import taktflow.engine.models  # noqa: F401 - the engine tables
import taktflow.mfg.machine_models  # noqa: F401 - machine time
import taktflow.mfg.models  # noqa: F401 - the manufacturing tables
import taktflow.mfg.purchasing_models  # noqa: F401 - purchasing
import taktflow.mfg.quality_models  # noqa: F401 - quality
import taktflow.mfg.sales  # noqa: F401 - sales orders
from taktflow.db import Base


def test_migrated_schema_matches_the_models(sa_engine: Engine) -> None:
    with sa_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    # The audit triggers and SQLite's own tables are not in the models; nothing else may
    # differ.
    assert [d for d in diff if not _ignorable(d)] == []


def _ignorable(change: object) -> bool:
    return (
        isinstance(change, tuple)
        and change[0] == "remove_table"
        and (change[1].name in ("alembic_version",) or change[1].name.startswith("sqlite_"))
    )
