"""The demo press end to end: the simulated press (taktflow simulate's model) counts parts,
the demo connector file (connectors/press_1.yaml) turns counter rises into parts_produced
events, and an operation waiting for them, correlated by machine id, sees its produced
quantity advance until it reaches the planned quantity."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from connector_support import Running, wait_for

from taktflow.connectors.definition import parse_connector
from taktflow.connectors.runtime import ConnectorRuntime
from taktflow.connectors.simulator import SimulatedPlc, SimulatedPress
from taktflow.engine.runtime import WorkflowEngine

PRESS_FILE = Path(__file__).parents[2] / "connectors" / "press_1.yaml"

OPERATION = """\
process: run_operation
steps:
  - repeat: Count the parts
    until: produced >= planned
    steps:
      - wait: Parts
        message: parts_produced
        correlate: [machine_id]
        into: parts
      - script: Add them
        set:
          produced: produced + parts['good']
          reports: reports + 1
"""


class PressInThread:
    """The simulated press's PLC on its own event loop, as `taktflow simulate` serves it."""

    def __init__(self) -> None:
        definition = parse_connector(PRESS_FILE.read_text(), str(PRESS_FILE))
        # 1 s cycles at 20x speed: a part every 50 ms or so, no alarms to stop it.
        press = SimulatedPress(cycle_s=1.0, cycle_noise=0.1, alarms_per_hour=0, speed=20,
                               seed=7)  # fmt: skip
        self.plc = SimulatedPlc(press, definition.points, host="127.0.0.1", port=0,
                                tick_s=0.02)  # fmt: skip
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> PressInThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.plc.start(), self.loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.plc.stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def test_the_operation_quantity_advances_as_the_press_counts(engine: WorkflowEngine) -> None:
    engine.deploy_text("run_operation.yaml", OPERATION)
    operation = engine.start(
        "run_operation", {"machine_id": "press_1", "planned": 25, "produced": 0, "reports": 0}
    )["instance_id"]

    def produced() -> int:
        return engine.instance(operation, history=False)["data"]["produced"]

    with PressInThread() as press:
        text = PRESS_FILE.read_text().replace("port: 5020", f"port: {press.plc.port}")
        definition = parse_connector(text, str(PRESS_FILE))
        with Running(ConnectorRuntime([definition], engine)):
            first = wait_for(lambda: produced() > 0 and produced(), timeout=15)
            later = wait_for(lambda: produced() > first and produced(), timeout=15)
            assert first < later < 25 or engine.instance(operation)["status"] == "completed"
            wait_for(lambda: engine.instance(operation)["status"] == "completed", timeout=30)
    data = engine.instance(operation, history=False)["data"]
    assert data["produced"] >= 25 and data["reports"] >= 2
    # Every part reported is a part the press counted (from the connector's first reading).
    assert data["parts"]["total"] >= data["produced"]
