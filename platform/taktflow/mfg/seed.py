"""Load the demo plant's master data: the chart of accounts, then items, locations and BOMs.
Idempotent: loading again updates names and adds what is new, so `make run` does it on every
start. One transaction: a broken file leaves nothing half-loaded."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.mfg.ledger import load_chart
from taktflow.mfg.machine_actions import seed_machine
from taktflow.mfg.opening_stock import OPENING_STOCK_FILE, load_opening_stock
from taktflow.mfg.purchasing_actions import seed_purchasing
from taktflow.mfg.quality_actions import seed_quality
from taktflow.mfg.sales import seed_sales
from taktflow.mfg.stock import load_master_data

CHART_FILE = "chart_of_accounts.yaml"
MASTER_FILE = "master_data.yaml"


def load_plant(
    bind: Engine, folder: str | Path, *, opening_stock_at: datetime | None = None
) -> dict[str, Any]:
    """Load `folder`'s chart of accounts and master data; counts of what the files hold.
    With `opening_stock_at` (what `taktflow seed` does) also its opening stock, received at
    that time once; without it the stores stay as they are (tests stock what they need)."""
    folder = Path(folder)
    with Session(bind=bind) as session, session.begin():
        counts: dict[str, Any] = {"accounts": load_chart(session, folder / CHART_FILE)}
        counts |= load_master_data(session, folder / MASTER_FILE)
        for seed_area in (seed_machine, seed_quality, seed_purchasing, seed_sales):
            counts |= seed_area(session, folder)
        stock_file = folder / OPENING_STOCK_FILE
        if opening_stock_at is not None and stock_file.exists():
            loaded = load_opening_stock(session, stock_file, now=opening_stock_at)
            counts["opening stock lines"] = loaded["lines"]
            counts["opening stock lines received now"] = loaded["received"]
    return counts
