"""Settings for long-running taktflow processes (web server, worker)."""

from __future__ import annotations

import gc

#: Objects allocated (minus freed) before a young-generation collection. Python's default of
#: 700 makes a workflow step (thousands of short-lived task objects) run several collections,
#: each walking the survivors; bench/engine.py measured ~10-25 % more throughput this way.
GC_THRESHOLDS = (20_000, 50, 100)


def tune_for_service() -> None:
    """Call once after start-up: move start-up objects (imports, app, parsed specs) out of the
    collector's way, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
