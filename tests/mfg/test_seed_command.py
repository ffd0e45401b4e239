"""`taktflow seed` loads the demo plant in one transaction, again and again without harm; a
broken file is reported with its place and leaves nothing behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from taktflow.cli import cli
from taktflow.mfg.models import Account, Item

SEED = Path(__file__).parents[2] / "seed_data"


def run(db_url: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--database-url", db_url, *args],
                              env={"TAKTFLOW_ENV": "development"})  # fmt: skip


def count(db_url: str, model: Any) -> int:
    engine = create_engine(db_url)
    try:
        with Session(engine) as s:
            return s.scalar(select(func.count()).select_from(model))
    finally:
        engine.dispose()  # an open psycopg connection left to the collector fails a later test


def test_seed_twice_loads_once(db_url: str) -> None:
    first = run(db_url, "seed", "--json")
    assert first.exit_code == 0, first.output
    counts = json.loads(first.stdout)
    assert counts["accounts"] == 16 and counts["boms"] == 10 and counts["routings"] == 10
    assert counts["demo accounts created"] > 0
    again = json.loads(run(db_url, "seed", "--json").stdout)
    assert again["demo accounts created"] == 0
    assert count(db_url, Item) == 16 and count(db_url, Account) == 16


def test_a_broken_master_file_loads_nothing(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "seed"
    shutil.copytree(SEED, folder)
    master = folder / "master_data.yaml"
    master.write_text(master.read_text().replace("type: finished", "type: finishd"))
    result = run(db_url, "seed", "--folder", str(folder))
    assert result.exit_code != 0
    assert "item 3 (BRACKET-A): type must be one of" in result.output
    assert count(db_url, Account) == 0, "the chart loaded first was rolled back too"
