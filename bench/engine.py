"""Engine benchmark: taktflow persisted to SQLite vs plain SpiffWorkflow in memory, same run.

Workload: ../shared/bench/production_order.bpmn as its README describes (start, complete
"record operation", deliver `machine_done`), N instances per round, rounds interleaved so
both sides see the same machine noise; the median round counts. Then the persisted cost of
one step of loop_history.bpmn at 0, 50 and 200 loop iterations.

    .venv/bin/python bench/engine.py [--instances 300] [--rounds 5]

The last line reads `engine: persisted N inst/s, raw M inst/s, overhead R x`.
Nothing here asserts a timing: it prints figures.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from SpiffWorkflow import TaskState
from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.spiff.parser import SpiffBpmnParser
from SpiffWorkflow.spiff.specs.event_definitions import MessageEventDefinition
from sqlalchemy import create_engine

from taktflow.db import engine_options
from taktflow.engine.runtime import WorkflowEngine
from taktflow.process import tune_for_service

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = Path(os.environ.get("TAKTFLOW_BENCH_DIR", ROOT.parent / "shared" / "bench"))
ORDER = {
    "order_id": "PO-000001",
    "order_qty": 120,
    "scrap_rate": 0.03,
    "bom": {"steel_kg": 1.25, "bolt_m8": 4, "paint_l": 0.05},
    "unit_cost": 12.5,
}
OPERATION = {"operator": "op-17", "workcenter": "WC-3", "setup_min": 12, "notes": "ok"}
MACHINE = {"machine": "CNC-07", "cycle_s": 431.5, "alarms": []}


def migrated_sqlite(folder: str) -> str:
    from flask_migrate import upgrade

    from taktflow.app import MIGRATIONS_DIR, create_app

    url = f"sqlite:///{folder}/bench.db"
    app = create_app({"database_url": url, "env": "testing", "instance_path": folder})
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR)
    return url


def persisted_round(engine: WorkflowEngine, n: int, offset: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        data = {**ORDER, "order_id": f"PO-{offset + i:06d}", "order_qty": 100 + i % 50}
        started = engine.start("production_order", data)
        instance_id = started["instance_id"]
        [task] = started["ready_tasks"]
        engine.complete_task(task["task_id"], OPERATION, history=False)
        result = engine.send_message("machine_done", data=MACHINE)
        if result.delivered_to != [instance_id]:
            raise SystemExit(f"bench workload broke: message went to {result.delivered_to}")
    return n / (time.perf_counter() - t0)


def raw_round(spec, subs, n: int, offset: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        wf = BpmnWorkflow(spec, subs)
        wf.task_tree.data.update(
            {**ORDER, "order_id": f"PO-{offset + i:06d}", "order_qty": 100 + i % 50}
        )
        wf.do_engine_steps()
        task = wf.get_tasks(state=TaskState.READY, manual=True)[0]
        task.data.update(OPERATION)
        task.run()
        wf.do_engine_steps()
        wf.send_event(BpmnEvent(MessageEventDefinition("machine_done"), dict(MACHINE)))
        wf.do_engine_steps()
        if not wf.is_completed():
            raise SystemExit("bench workload broke: raw instance did not complete")
    return n / (time.perf_counter() - t0)


def loop_step_costs(engine: WorkflowEngine, marks: list[int], window: int = 5) -> dict[int, float]:
    """Milliseconds per persisted step (complete one inspection) at each loop count in marks."""
    instance_id = engine.start("loop_history", {"limit": max(marks) + window + 1})["instance_id"]
    costs: dict[int, list[float]] = {mark: [] for mark in marks}
    for iteration in range(max(marks) + window):
        [task] = engine.tasks(instance_id)
        t0 = time.perf_counter()
        engine.complete_task(task["task_id"], {"ok": True})
        elapsed = (time.perf_counter() - t0) * 1000
        for mark in marks:
            if mark <= iteration < mark + window:
                costs[mark].append(elapsed)
    return {mark: statistics.median(values) for mark, values in costs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=300, help="instances per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if not (WORKLOADS / "production_order.bpmn").exists():
        sys.exit(f"reference workloads not found in {WORKLOADS} (set TAKTFLOW_BENCH_DIR)")

    with tempfile.TemporaryDirectory() as folder:
        url = migrated_sqlite(folder)
        engine = WorkflowEngine(create_engine(url, **engine_options(url)))
        engine.deploy_paths([WORKLOADS / "production_order.bpmn", WORKLOADS / "loop_history.bpmn"])
        parser_ = SpiffBpmnParser()
        parser_.add_bpmn_file(str(WORKLOADS / "production_order.bpmn"))
        spec = parser_.get_spec("production_order")
        subs = parser_.get_subprocess_specs("production_order")

        # Warm-up (imports, caches, SQLite page cache), not counted.
        persisted_round(engine, 20, 900_000)
        raw_round(spec, subs, 20, 900_000)
        # The garbage-collector settings of `taktflow serve` / `worker`; both sides share them.
        tune_for_service()

        persisted, raw = [], []
        for r in range(args.rounds):
            offset = (r + 1) * 10_000
            # Alternate which side goes first, so drifts of this shared machine hit both.
            order = [("raw", raw), ("persisted", persisted)]
            for name, figures in order if r % 2 == 0 else reversed(order):
                gc.collect()
                if name == "raw":
                    figures.append(raw_round(spec, subs, args.instances, offset))
                else:
                    figures.append(persisted_round(engine, args.instances, offset))
            print(
                f"round {r + 1}/{args.rounds}: persisted {persisted[-1]:7.1f} inst/s, "
                f"raw {raw[-1]:7.1f} inst/s",
                flush=True,
            )
        costs = loop_step_costs(engine, [0, 50, 200])
        cache = engine.workflows
        print(
            "loop_history persisted step cost: "
            + ", ".join(f"{mark} iterations {ms:.2f} ms" for mark, ms in costs.items())
        )
        print(f"workflow cache: {cache.hits} hits, {cache.misses} misses")
        p, w = statistics.median(persisted), statistics.median(raw)
        print(
            f"median of {args.rounds} rounds x {args.instances} production orders "
            f"(ranges: persisted {min(persisted):.0f}-{max(persisted):.0f}, "
            f"raw {min(raw):.0f}-{max(raw):.0f})"
        )
        print(f"engine: persisted {p:.0f} inst/s, raw {w:.0f} inst/s, overhead {w / p:.2f} x")


if __name__ == "__main__":
    main()
