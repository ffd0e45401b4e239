"""`connectors run` delivers through a child process (`connectors dispatch`): woken after each
commit, restarted if it dies, gone when its parent is."""

from __future__ import annotations

import os
import signal
import sys
import threading

from connector_support import wait_for

from taktflow.connectors.runtime import ProcessDispatcher
from taktflow.engine.runtime import WorkflowEngine

WAITER = """\
process: parts_log
steps:
  - wait: Parts
    message: parts_produced
    correlate: [machine_id]
    into: parts
"""


def event(n: int) -> dict:
    return {"name": "parts_produced", "correlation": {"machine_id": "press_1"},
            "variables": {"good": n}, "idempotency_key": f"press_1/produced/{n}"}  # fmt: skip


def test_the_child_delivers_when_woken_is_restarted_and_stops_with_its_parent(
    engine: WorkflowEngine, db_url: str
) -> None:
    engine.deploy_text("parts_log.yaml", WAITER)
    first = engine.start("parts_log", {"machine_id": "press_1"})["instance_id"]
    dispatcher = ProcessDispatcher(
        [sys.executable, "-c", "from taktflow.cli import main; main()", "connectors", "dispatch"],
        env={**os.environ, "TAKTFLOW_DATABASE_URL": db_url},
    )
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: dispatcher._fd is not None)
        engine.record_connector_events("press_1", {}, [event(1)], deliver=False)
        dispatcher.wake()
        wait_for(lambda: engine.instance(first)["status"] == "completed", timeout=15)

        # The child dies: it is started again, and delivers what came meanwhile.
        child = dispatcher._process
        assert child is not None
        child.send_signal(signal.SIGKILL)
        second = engine.start("parts_log", {"machine_id": "press_1"})["instance_id"]
        engine.record_connector_events("press_1", {}, [event(2)], deliver=False)
        wait_for(lambda: dispatcher._process is not child and dispatcher._fd is not None,
                 timeout=10)  # fmt: skip
        dispatcher.wake()
        wait_for(lambda: engine.instance(second)["status"] == "completed", timeout=15)
        assert engine.instance(second)["data"]["parts"]["good"] == 2
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
    # End-of-file on its standard input stopped the child.
    assert dispatcher._process is not None and dispatcher._process.poll() is not None
