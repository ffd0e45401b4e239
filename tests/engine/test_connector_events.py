"""A connector's state and its events are stored together; events reach waiting workflows."""

from __future__ import annotations

import pytest

from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import ValidationFailed

WAITER = """\
process: parts_log
steps:
  - wait: Parts
    message: parts_produced
    correlate: [machine_id]
    into: parts
"""


def event(n: int, good: int) -> dict:
    return {
        "name": "parts_produced",
        "correlation": {"machine_id": "press_1"},
        "variables": {"good": good},
        "idempotency_key": f"press_1/produced/{n}",
    }


def test_state_and_events_are_stored_together_and_delivered(engine: WorkflowEngine) -> None:
    engine.deploy_text("parts_log.yaml", WAITER)
    waiting = engine.start("parts_log", {"machine_id": "press_1"})["instance_id"]
    state = {"point:part_counter": 12, "rule:produced": {"last": 12, "seq": 1}}

    ids = engine.record_connector_events("press_1", state, [event(1, 12)])

    assert len(ids) == 1 and ids[0] is not None
    assert engine.connector_state("press_1") == state
    view = engine.instance(waiting)
    assert view["status"] == "completed"
    assert view["data"]["parts"]["good"] == 12


def test_a_retried_batch_is_stored_once(engine: WorkflowEngine) -> None:
    first = engine.record_connector_events("press_1", {"point:p": 1}, [event(1, 1)])
    again = engine.record_connector_events("press_1", {"point:p": 2}, [event(1, 1), event(2, 1)])
    assert first[0] is not None and again[0] is None and again[1] is not None
    assert engine.connector_state("press_1") == {"point:p": 2}
    assert engine.connector_state("other") == {}


def test_a_bad_event_stores_nothing(engine: WorkflowEngine) -> None:
    bad = {**event(1, 1), "name": ""}
    with pytest.raises(ValidationFailed):
        engine.record_connector_events("press_1", {"point:p": 5}, [bad])
    assert engine.connector_state("press_1") == {}
