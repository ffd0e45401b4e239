"""Events of one source are delivered in order; a failing one is retried with back-off, then
dead-lettered with its error and replayable; a start event starts its process once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from psycopg import sql
from sqlalchemy import Engine

from taktflow.engine.clock import ManualClock
from taktflow.engine.runtime import MAX_DISPATCH_ATTEMPTS, WorkflowEngine, retry_delay
from taktflow.engine.store import HotPath
from taktflow.errors import Conflict

COUNTER = """\
process: counter_log
steps:
  - repeat: Count parts
    until: "len(seen) >= 99"
    steps:
      - wait: Parts
        message: parts_produced
        correlate: [machine_id]
        into: parts
      - script: Remember
        set:
          seen: "seen + [parts['n']]"
"""

STARTED = """\
process: downtime
steps:
  - manual: Enter the reason
"""


def parts(n: int, machine: str = "press_1") -> dict:
    return {"name": "parts_produced", "correlation": {"machine_id": machine},
            "variables": {"n": n}, "idempotency_key": f"{machine}/parts/{n}"}  # fmt: skip


def start(process: str, n: int) -> dict:
    return {"kind": "start", "name": process, "variables": {"n": n},
            "idempotency_key": f"press_1/start/{n}"}  # fmt: skip


def seen(engine: WorkflowEngine, instance_id: int) -> list[int]:
    return engine.instance(instance_id)["data"]["seen"]


def exhaust_retries(engine: WorkflowEngine, clock: ManualClock) -> None:
    for attempt in range(1, MAX_DISPATCH_ATTEMPTS):
        clock.advance(retry_delay(attempt) + timedelta(seconds=1))
        engine.worker_pass()


def test_a_failing_event_holds_back_the_later_events_of_its_source(
    engine: WorkflowEngine, clock: ManualClock
) -> None:
    engine.deploy_text("counter_log.yaml", COUNTER)
    log = engine.start("counter_log", {"machine_id": "press_1", "seen": []})["instance_id"]
    other = engine.start("counter_log", {"machine_id": "press_2", "seen": []})["instance_id"]

    # The start names a process that is not deployed: the engine rejects it.
    engine.record_connector_events("press_1", {}, [parts(1), start("downtime", 2), parts(3)])
    engine.record_connector_events("press_2", {}, [parts(1, "press_2")])

    assert seen(engine, log) == [1]
    assert seen(engine, other) == [1], "another source is not held back"
    engine.worker_pass()
    assert seen(engine, log) == [1], "3 must not overtake the failing 2"

    exhaust_retries(engine, clock)

    [dead] = engine.dead_letters("connector:press_1")
    assert dead["name"] == "downtime" and dead["attempts"] == MAX_DISPATCH_ATTEMPTS
    assert "downtime" in dead["error"] and "not deployed" in dead["error"]
    engine.worker_pass()
    assert seen(engine, log) == [1, 3]
    overview = engine.connector_overview("press_1")
    assert overview["messages"]["failed"] == 1


def test_a_failed_row_waits_for_its_back_off(engine: WorkflowEngine, clock: ManualClock) -> None:
    engine.record_connector_events("press_1", {}, [start("downtime", 1)])
    [row] = engine.dead_letters() or [None]
    assert row is None, "one failure is not yet a dead letter"
    clock.advance(retry_delay(1) / 2)
    assert engine.worker_pass()["dispatched"] == 0
    engine.deploy_text("downtime.yaml", STARTED)
    assert engine.worker_pass()["dispatched"] == 0, "still waiting for its retry time"
    clock.advance(retry_delay(1))
    assert engine.worker_pass()["dispatched"] == 1
    assert [i["process_id"] for i in engine.instances()] == ["downtime"]


def test_a_dead_letter_is_replayed_once_its_cause_is_fixed(
    engine: WorkflowEngine, clock: ManualClock
) -> None:
    [message_id] = engine.record_connector_events("press_1", {}, [start("downtime", 7)])
    exhaust_retries(engine, clock)
    assert engine.delivery(message_id).status == "failed"

    engine.deploy_text("downtime.yaml", STARTED)
    result = engine.replay_message(message_id, actor="eng")

    assert result.status == "delivered" and len(result.started) == 1
    assert engine.instance(result.started[0])["data"]["n"] == 7
    assert engine.dead_letters() == []
    with pytest.raises(Conflict, match="only failed messages"):
        engine.replay_message(message_id, actor="eng")


def test_a_start_event_starts_its_process_once(engine: WorkflowEngine) -> None:
    engine.deploy_text("downtime.yaml", STARTED)
    first = engine.start_event("downtime", {"n": 1}, idempotency_key="k-1", source="test")
    again = engine.start_event("downtime", {"n": 1}, idempotency_key="k-1", source="test")
    assert len(first.started) == 1 and again.duplicate and again.started == first.started
    assert len(engine.instances()) == 1


def test_retry_delay_doubles_up_to_its_cap() -> None:
    assert [retry_delay(a).total_seconds() for a in (1, 2, 3)] == [1, 2, 4]
    assert retry_delay(40) == timedelta(minutes=5)


def test_a_loop_takes_every_buffered_message_in_order(engine: WorkflowEngine) -> None:
    # Parts counted before the operation starts waiting: the loop returns to the same wait
    # after each one, and must still be handed the next.
    engine.deploy_text("counter_log.yaml", COUNTER)
    engine.record_connector_events("press_1", {}, [parts(n) for n in range(1, 6)])
    assert engine.connector_overview("press_1")["messages"]["buffered"] == 5

    log = engine.start("counter_log", {"machine_id": "press_1", "seen": []})["instance_id"]

    assert seen(engine, log) == [1, 2, 3, 4, 5]
    assert engine.connector_overview("press_1")["messages"]["buffered"] == 0


TWO_STEPS = """\
process: two_steps
steps:
  - wait: Setup done
    message: setup_done
    correlate: [machine_id]
  - wait: First part
    message: first_part
    correlate: [machine_id]
    into: part
"""


def test_a_message_nothing_waits_for_yet_is_kept_for_a_wait_the_same_batch_creates(
    engine: WorkflowEngine,
) -> None:
    engine.deploy_text("two_steps.yaml", TWO_STEPS)
    waiting = engine.start("two_steps", {"machine_id": "press_1"})["instance_id"]

    # Delivered together: first_part (nothing waits for it yet) is kept as buffered, and
    # handed over when setup_done moves the instance on to wait for it.
    engine.record_connector_events("press_1", {}, [
        {"name": "first_part", "correlation": {"machine_id": "press_1"},
         "variables": {"serial": "S-1"}, "idempotency_key": "p/1"},
        {"name": "setup_done", "correlation": {"machine_id": "press_1"},
         "variables": {}, "idempotency_key": "p/2"},
    ])  # fmt: skip

    view = engine.instance(waiting)
    assert view["status"] == "completed" and view["data"]["part"]["serial"] == "S-1"
    assert engine.connector_overview("press_1")["messages"]["delivered"] == 2


class _Recorder:
    """A stand-in cursor that keeps the statement a HotPath method would run."""

    def execute(self, sql: str, params: tuple) -> None:
        self.sql, self.params = sql, params

    def fetchall(self) -> list:
        return []


def test_the_due_rows_query_reads_the_partial_index_of_pending_rows(
    sa_engine: Engine, clock: ManualClock
) -> None:
    # On PostgreSQL an index on status keeps a dead "pending" entry for every row handled
    # until VACUUM runs (3.5 ms per pass after a burst of 60,000 events); the partial index
    # holds pending rows only, and a planner uses it only if the query names the status as
    # a literal the index's predicate matches.
    hot = HotPath(sa_engine.dialect.name)
    recorder = _Recorder()
    hot.due_rows(recorder, clock.now(), 500)
    raw = sa_engine.raw_connection()
    try:
        cur = raw.cursor()
        if hot.pg:
            cur.execute("SET enable_seqscan = off")  # an empty table would be scanned
            # As a prepared statement run many times is planned: without its parameters.
            cur.execute("SET plan_cache_mode = force_generic_plan")
            pieces = recorder.sql.split("%s")
            numbered = pieces[0] + "".join(f"${n}{p}" for n, p in enumerate(pieces[1:], 1))
            cur.execute("PREPARE due_rows_check AS " + numbered)
            # EXECUTE takes no bound parameters: the values are quoted by psycopg
            values = sql.SQL(", ").join(sql.Literal(v) for v in recorder.params)
            cur.execute(sql.SQL("EXPLAIN EXECUTE due_rows_check({})").format(values))
        else:
            cur.execute("EXPLAIN QUERY PLAN " + recorder.sql, recorder.params)
        plan = "\n".join(str(row) for row in cur.fetchall())
    finally:
        raw.rollback()
        raw.close()
    if hot.pg:
        assert "ix_inbox_message_pending" in plan, plan
    else:
        # SQLite leaves no dead entries; either index will do, a scan of the table will not.
        assert "USING INDEX" in plan and "SCAN inbox_message" not in plan, plan
