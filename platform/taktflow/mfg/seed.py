"""Load the demo plant's master data: the chart of accounts, then items, locations and BOMs.
Idempotent: loading again updates names and adds what is new, so `make run` does it on every
start. One transaction: a broken file leaves nothing half-loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.mfg.ledger import load_chart
from taktflow.mfg.machine_actions import seed_machine
from taktflow.mfg.purchasing_actions import seed_purchasing
from taktflow.mfg.quality_actions import seed_quality
from taktflow.mfg.sales import seed_sales
from taktflow.mfg.stock import load_master_data

CHART_FILE = "chart_of_accounts.yaml"
MASTER_FILE = "master_data.yaml"


def load_plant(bind: Engine, folder: str | Path) -> dict[str, Any]:
    """Load `folder`'s chart of accounts and master data; counts of what the files hold."""
    folder = Path(folder)
    with Session(bind=bind) as session, session.begin():
        counts: dict[str, Any] = {"accounts": load_chart(session, folder / CHART_FILE)}
        counts |= load_master_data(session, folder / MASTER_FILE)
        for seed_area in (seed_machine, seed_quality, seed_purchasing, seed_sales):
            counts |= seed_area(session, folder)
    return counts
