"""Two writers on one instance, and several workers on one set of timers, with real threads."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from taktflow.db import engine_options
from taktflow.engine import models as m
from taktflow.engine.actions import ActionContext, ActionRegistry, Param, builtin_actions
from taktflow.engine.clock import ManualClock
from taktflow.engine.runtime import WorkflowEngine
from taktflow.engine.sandbox import Limits
from taktflow.errors import Conflict, TaktflowError

DATA = Path(__file__).parent / "data"


def engines_on(url: str, clock: ManualClock, count: int, actions: ActionRegistry | None = None):
    """`count` engines sharing one database, as separate processes would (own pools, caches)."""
    bind = create_engine(url, **engine_options(url))
    if actions is None:
        actions = ActionRegistry()
        builtin_actions(actions)
    made = [
        WorkflowEngine(bind, clock=clock, actions=actions, script_limits=Limits(max_cpu_s=1))
        for _ in range(count)
    ]
    return bind, made


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at the same moment in threads; return each result or raised error."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        try:
            return call()
        except TaktflowError as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.fixture(params=["main", "postgres"])
def any_db_url(request: pytest.FixtureRequest, db_url: str) -> str:
    """The suite's database, and PostgreSQL in every run."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return db_url


def test_same_task_completed_twice_at_once_exactly_one_wins(
    any_db_url: str, clock: ManualClock
) -> None:
    bind, (one, two) = engines_on(any_db_url, clock, 2)
    one.deploy_paths([DATA / "production_order.bpmn"])
    instance_id = one.start(
        "production_order",
        {"order_id": "P1", "order_qty": 10, "scrap_rate": 0.0, "bom": {}, "unit_cost": 1.0},
    )["instance_id"]
    [task] = one.tasks(instance_id)
    # Warm both caches so both writers really work from the same version.
    one.instance(instance_id), two.instance(instance_id)
    results = race(
        lambda: one.complete_task(task["task_id"], {"operator": "alice"}, actor="alice"),
        lambda: two.complete_task(task["task_id"], {"operator": "bob"}, actor="bob"),
    )
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if isinstance(r, Conflict)]
    assert len(winners) == 1 and len(losers) == 1, results
    view = one.instance(instance_id)
    completions = [e for e in view["history"] if e["kind"] == "task_completed"]
    assert len(completions) == 1
    assert view["data"]["operator"] == completions[0]["actor"]
    bind.dispose()


def test_two_writers_on_one_instance_one_gets_a_conflict_nothing_half_written(
    postgres_url: str, clock: ManualClock
) -> None:
    """Both steps run at the same time (they meet inside a service action); one must lose.

    PostgreSQL only: SQLite serializes writers (BEGIN IMMEDIATE), so there the second writer
    starts after the first committed and completes its own, different task without conflict.
    """
    meet = threading.Barrier(2, timeout=10)
    actions = ActionRegistry()
    builtin_actions(actions)

    def rendezvous(ctx: ActionContext, side: str) -> str:
        meet.wait()
        return side

    actions.register("test.rendezvous", rendezvous, [Param("side", "str")])
    bind, (one, two) = engines_on(postgres_url, clock, 2, actions)
    one.deploy_paths([DATA / "parallel_rendezvous.bpmn"])
    instance_id = one.start("parallel_rendezvous")["instance_id"]
    tasks = {t["name"]: t["task_id"] for t in one.tasks(instance_id)}
    results = race(
        lambda: one.complete_task(tasks["inspect_a"], {"a_ok": True}, actor="alice"),
        lambda: two.complete_task(tasks["inspect_b"], {"b_ok": True}, actor="bob"),
    )
    losers = [r for r in results if isinstance(r, Conflict)]
    assert len(losers) == 1, results
    assert "changed by someone else" in losers[0].message
    view = one.instance(instance_id)
    assert view["status"] == m.ACTIVE
    completions = [e for e in view["history"] if e["kind"] == "task_completed"]
    assert len(completions) == 1
    winner_side = "a" if completions[0]["actor"] == "alice" else "b"
    loser_side = "b" if winner_side == "a" else "a"
    # The loser's task is still ready and none of its data was kept.
    assert [t["name"] for t in view["ready_tasks"]] == [f"inspect_{loser_side}"]
    assert f"{loser_side}_ok" not in view["data"]
    bind.dispose()


def test_several_workers_never_fire_a_timer_twice(any_db_url: str, clock: ManualClock) -> None:
    bind, workers = engines_on(any_db_url, clock, 4)
    workers[0].deploy_paths([DATA / "cure_timer.bpmn"])
    ids = [workers[0].start("cure_timer")["instance_id"] for _ in range(24)]
    clock.advance(hours=2, seconds=1)
    fired = race(*[w.fire_due_timers for w in workers])
    assert sum(fired) == len(ids)
    fired_per_instance = Counter()
    for instance_id in ids:
        view = workers[0].instance(instance_id)
        assert view["status"] == m.COMPLETED and view["data"]["released"] is True
        fired_per_instance[instance_id] = sum(e["kind"] == "timer_fired" for e in view["history"])
    assert set(fired_per_instance.values()) == {1}
    bind.dispose()
