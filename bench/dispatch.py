"""Delivery benchmark: how many stored machine events one dispatcher delivers per second.

This is the capacity behind the connector latency figure: at 500 events/s, one dispatcher
(`taktflow connectors dispatch`) must deliver more than 500 a second, in order, or a queue
grows. No MQTT here: each round starts N instances of a one-step YAML workflow waiting for
`bench_step`, each correlated by its own key, stores one event per instance in the inbox as
a connector does (`record_connector_events`, not timed), and times `WorkflowEngine.dispatch`
until every event is delivered. The delivering engine is a second one with an empty workflow
cache, as in the dispatcher process, which first meets an instance when its event arrives.

Baseline, same run, interleaved: plain SpiffWorkflow in memory, as bench/engine.py has it:
the waiting workflows are objects, and each event is caught and the engine steps run.
`ratio` is taktflow's time per delivery over that. For orientation the library is also
timed with a JSON round trip per event (restore, deliver, serialise with its default
serializer, which writes the process spec into every workflow's JSON; taktflow keeps specs
apart and caches them).

    .venv/bin/python bench/dispatch.py [--events 1000] [--rounds 5] [--database-url URL]

Figures are medians over the rounds; `cpu` is this process's CPU time per delivery (with
PostgreSQL the rest of the wall time is spent waiting for the server). The default database
is a migrated temporary SQLite file; --database-url names another (PostgreSQL: it is
migrated and the bench leaves its rows there; use a fresh database, as a table that grew
without statistics plans differently). The last line reads
`dispatch: N deliveries/s (M ms each), library L/s, ratio R x`. Nothing asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid

from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.spiff.parser import SpiffBpmnParser
from SpiffWorkflow.spiff.serializer import DEFAULT_CONFIG
from SpiffWorkflow.spiff.specs.event_definitions import MessageEventDefinition
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from connectors import WAITER, migrated, progress  # bench/connectors.py: the same workflow
from taktflow.db import engine_options
from taktflow.engine.definitions import SourceFile
from taktflow.engine.runtime import WorkflowEngine
from taktflow.process import tune_for_service
from taktflow.yamlflow import COMPILERS, compile_source


def taktflow_round(url: str, starter: WorkflowEngine, n: int) -> tuple[float, float]:
    """(seconds, CPU seconds) to deliver n stored events with a fresh engine."""
    token = uuid.uuid4().hex[:8]
    for i in range(n):
        starter.start("bench_step", {"key": f"{token}-{i}"})
    events = [
        {"name": "bench_step", "correlation": {"key": f"{token}-{i}"},
         "variables": {"count": i}, "idempotency_key": f"{token}/{i}"}
        for i in range(n)
    ]  # fmt: skip
    for first in range(0, n, 500):
        starter.record_connector_events("bench", {}, events[first : first + 500], deliver=False)
    bind = create_engine(url, **engine_options(url))
    deliverer = WorkflowEngine(bind, compilers=COMPILERS)
    t0, cpu0 = time.perf_counter(), time.process_time()
    delivered = 0
    while delivered < n:
        done = deliverer.dispatch(limit=500)
        if done == 0:
            raise SystemExit(f"dispatch stopped after {delivered} of {n} events")
        delivered += done
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    with bind.connect() as conn:
        finished = conn.execute(
            text("SELECT count(*) FROM inbox_message WHERE source = 'connector:bench' "
                 "AND idempotency_key LIKE :k AND status = 'delivered'"),
            {"k": f"{token}/%"},
        ).scalar_one()  # fmt: skip
    bind.dispose()
    if finished != n:
        raise SystemExit(f"{finished} of {n} events delivered")
    return elapsed, cpu


def library_setup() -> tuple[BpmnWorkflowSerializer, object]:
    [bpmn] = [f for f in compile_source(SourceFile("bench_step.yaml", WAITER, "yaml"))
              if f.kind == "bpmn"]  # fmt: skip
    parser = SpiffBpmnParser()
    parser.add_bpmn_str(bpmn.text.encode())
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(DEFAULT_CONFIG))
    return serializer, parser.get_spec("bench_step")


def library_round(serializer: BpmnWorkflowSerializer, spec: object, n: int,
                  json_round_trip: bool) -> float:  # fmt: skip
    """Seconds to deliver to n waiting workflows (restored from and saved to JSON if asked)."""
    waiting = []
    for i in range(n):
        wf = BpmnWorkflow(spec)
        wf.task_tree.data["key"] = f"k-{i}"
        wf.do_engine_steps()
        waiting.append(serializer.serialize_json(wf) if json_round_trip else wf)
    t0 = time.perf_counter()
    for i, stored in enumerate(waiting):
        wf = serializer.deserialize_json(stored) if json_round_trip else stored
        [event] = [e for e in wf.waiting_events() if e.name == "bench_step"]
        payload = {"count": i, "key": f"k-{i}"}
        wf.send_event(BpmnEvent(MessageEventDefinition("bench_step"), payload,
                                correlations=dict(event.correlations)))  # fmt: skip
        wf.do_engine_steps()
        if not wf.is_completed():
            raise SystemExit("bench workload broke: the library's instance did not complete")
        if json_round_trip:
            serializer.serialize_json(wf)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000, help="events per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", help="default: a migrated temporary SQLite file")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args()
    tune_for_service()  # as `taktflow connectors dispatch` does
    with tempfile.TemporaryDirectory() as folder:
        url = migrated(args.database_url or f"sqlite:///{folder}/bench.db", folder)
        starter = WorkflowEngine(create_engine(url, **engine_options(url)), compilers=COMPILERS)
        starter.deploy_text("bench_step.yaml", WAITER)
        serializer, spec = library_setup()
        # Warm-up, not counted: first parse, prepared statements, imports.
        taktflow_round(url, starter, 50)
        library_round(serializer, spec, 50, True)
        rows = []
        per_event = 1000 / args.events
        for number in range(1, args.rounds + 1):
            elapsed, cpu = taktflow_round(url, starter, args.events)
            rows.append({
                "ms": per_event * elapsed, "cpu_ms": per_event * cpu,
                "library_ms": per_event * library_round(serializer, spec, args.events, False),
                "library_json_ms": per_event * library_round(serializer, spec, args.events, True),
            })  # fmt: skip
            row = rows[-1]
            progress(f"round {number}/{args.rounds}: taktflow {row['ms']:.2f} ms per delivery "
                     f"(cpu {row['cpu_ms']:.2f}), library {row['library_ms']:.2f} ms in memory, "
                     f"{row['library_json_ms']:.2f} ms with JSON")  # fmt: skip
    result = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    result |= {"database": make_url(url).get_backend_name(), "events": args.events,
               "rounds": rows, "ratio": result["ms"] / result["library_ms"]}  # fmt: skip
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    print(f"database {result['database']}, {args.events} events per round, "
          f"{args.rounds} rounds (medians)")  # fmt: skip
    print(f"library with a JSON round trip per event: {result['library_json_ms']:.2f} ms each")
    print(f"dispatch: {1000 / result['ms']:.0f} deliveries/s ({result['ms']:.2f} ms each, cpu "
          f"{result['cpu_ms']:.2f} ms), library {1000 / result['library_ms']:.0f}/s, ratio "
          f"{result['ratio']:.1f} x")  # fmt: skip


if __name__ == "__main__":
    main()
