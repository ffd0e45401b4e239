"""Durable messages: inbox first, idempotency, correlation, buffering with a time to live."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

from taktflow.engine import models as m
from taktflow.engine.runtime import WorkflowEngine

DATA = Path(__file__).parent / "data"


def start_receipts(engine: WorkflowEngine, *po_numbers: str) -> list[int]:
    engine.deploy_paths([DATA / "goods_receipt.bpmn"])
    return [engine.start("goods_receipt", {"po_number": po})["instance_id"] for po in po_numbers]


def test_message_reaches_only_the_correlated_instance(engine: WorkflowEngine) -> None:
    first, second = start_receipts(engine, "PO-41", "PO-42")
    assert engine.instance(second)["waiting"] == [
        {
            "kind": "message",
            "name": "goods_received",
            "element_id": "wait_goods",
            "correlation": {"po_number": "PO-42"},
        }
    ]
    result = engine.send_message(
        "goods_received", correlation={"po_number": "PO-42"}, data={"qty": 7}
    )
    assert result.delivered_to == [second] and not result.buffered
    assert engine.instance(second)["status"] == m.COMPLETED
    assert engine.instance(second)["data"]["received_qty"] == 7
    assert engine.instance(first)["status"] == m.ACTIVE


def test_duplicate_idempotency_key_is_accepted_and_ignored(engine: WorkflowEngine) -> None:
    [instance_id] = start_receipts(engine, "PO-7")
    first = engine.send_message(
        "goods_received", correlation={"po_number": "PO-7"}, data={"qty": 3}, idempotency_key="k1"
    )
    again = engine.send_message(
        "goods_received", correlation={"po_number": "PO-7"}, data={"qty": 3}, idempotency_key="k1"
    )
    assert again.duplicate and again.message_id == first.message_id
    assert again.delivered_to == [instance_id]
    received = [e for e in engine.history(instance_id) if e["kind"] == "message_received"]
    assert len(received) == 1


def test_message_before_the_wait_is_kept_and_delivered_later(engine: WorkflowEngine) -> None:
    engine.deploy_paths([DATA / "goods_receipt.bpmn"])
    early = engine.send_message(
        "goods_received", correlation={"po_number": "PO-9"}, data={"qty": 4}
    )
    assert early.buffered and early.delivered_to == []
    other = engine.start("goods_receipt", {"po_number": "PO-8"})["instance_id"]
    assert engine.instance(other)["status"] == m.ACTIVE  # not for this one
    instance_id = engine.start("goods_receipt", {"po_number": "PO-9"})["instance_id"]
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED and view["data"]["received_qty"] == 4
    assert engine.delivery(early.message_id).delivered_to == [instance_id]


def test_buffered_message_expires_after_its_time_to_live(engine: WorkflowEngine, clock) -> None:
    engine.deploy_paths([DATA / "goods_receipt.bpmn"])
    early = engine.send_message(
        "goods_received", correlation={"po_number": "PO-5"}, data={"qty": 1}
    )
    clock.advance(engine.message_ttl + timedelta(seconds=1))
    assert engine.worker_pass()["expired"] == 1
    assert engine.delivery(early.message_id).status == m.INBOX_EXPIRED
    instance_id = engine.start("goods_receipt", {"po_number": "PO-5"})["instance_id"]
    assert engine.instance(instance_id)["status"] == m.ACTIVE


def test_delivery_killed_after_storing_is_completed_once_by_the_worker(
    engine: WorkflowEngine, db_url: str
) -> None:
    """A process stores a message in the inbox and is killed (SIGKILL) before correlating it.

    The worker delivers it afterwards, exactly once, and resending the same key changes nothing.
    """
    [instance_id] = start_receipts(engine, "PO-77")
    script = textwrap.dedent(
        f"""
        import os, signal
        from sqlalchemy import create_engine
        from taktflow.db import engine_options
        from taktflow.engine.runtime import WorkflowEngine
        url = {db_url!r}
        engine = WorkflowEngine(create_engine(url, **engine_options(url)))
        engine.store_event("message", "goods_received", correlation={{"po_number": "PO-77"}},
                           data={{"qty": 12}}, idempotency_key="erp-77")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, env=os.environ)
    assert proc.returncode == -9, proc.stderr.decode()
    assert engine.instance(instance_id)["status"] == m.ACTIVE  # stored, not delivered
    assert engine.worker_pass()["dispatched"] == 1
    assert engine.instance(instance_id)["data"]["received_qty"] == 12
    assert engine.worker_pass()["dispatched"] == 0
    again = engine.send_message(
        "goods_received",
        correlation={"po_number": "PO-77"},
        data={"qty": 12},
        idempotency_key="erp-77",
    )
    assert again.duplicate and again.delivered_to == [instance_id]
    received = [e for e in engine.history(instance_id) if e["kind"] == "message_received"]
    assert len(received) == 1


def test_a_message_reaches_every_wait_whose_correlation_it_covers(engine: WorkflowEngine) -> None:
    engine.deploy_text("by_order.yaml", """\
process: by_order
steps:
  - wait: Wait for the order
    message: order_event
    correlate: [order]
    into: got
""")  # fmt: skip
    engine.deploy_text("by_nothing.yaml", """\
process: by_nothing
steps:
  - wait: Any order
    message: order_event
    into: got
""")  # fmt: skip
    seven = engine.start("by_order", {"order": "7"})["instance_id"]
    eight = engine.start("by_order", {"order": "8"})["instance_id"]
    anyone = engine.start("by_nothing", {})["instance_id"]

    # Extra correlation properties do not matter; 7 and "7" are the same order.
    result = engine.send_message("order_event", correlation={"order": 7, "line": "L1"})

    assert sorted(result.delivered_to) == sorted([seven, anyone])
    assert engine.instance(eight)["status"] == m.ACTIVE
