"""Settings for long-running taktflow processes (web server, worker)."""

from __future__ import annotations

import gc
import sys

#: Objects allocated (minus freed) before a young-generation collection. Python's default of
#: 700 makes a workflow step (thousands of short-lived task objects) run several collections,
#: each walking the survivors; bench/engine.py measured ~10-25 % more throughput this way.
GC_THRESHOLDS = (20_000, 50, 100)
#: Seconds a Python thread may hold the interpreter while another waits for it (default 5 ms).
#: A machine event passes three threads (paho's, the committer, the dispatcher); each hand-over
#: could wait a full interval.
SWITCH_INTERVAL_S = 0.001


def tune_for_service() -> None:
    """Call once after start-up: move start-up objects (imports, app, parsed specs) out of the
    collector's way, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
