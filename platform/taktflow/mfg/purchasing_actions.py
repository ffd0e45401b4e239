"""Purchasing: suppliers, requisitions, approvals, purchase orders, receipts.

Service-task actions (used by workflows/procurement_approval.yaml) and demo-plant seed data.
Each action runs in the step's transaction (ctx.session) and is safe to retry: creating
steps use an idempotency key made of the instance and task, deciding steps accept the same
decision again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from taktflow.engine.actions import ActionContext, ActionRegistry, BusinessError, Param
from taktflow.errors import Conflict, NotFound, ValidationFailed
from taktflow.mfg import purchasing

SUPPLIERS_FILE = "suppliers.yaml"
#: Business error codes a workflow can catch (on_error) instead of failing the step.
REQUISITION_REFUSED = "requisition_refused"
RECEIPT_REFUSED = "receipt_refused"


def _key(action: str, ctx: ActionContext) -> str:
    return f"{action}:{ctx.instance_id}:{ctx.task_id}"


def _refused_as(code: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `call`; input the plant cannot accept (an unknown item, no supplier, an
    over-receipt, a missing lot) becomes the business error `code`, which the workflow
    handles (tells the requester, asks the receiver again) instead of stopping."""
    try:
        return call()
    except (ValidationFailed, NotFound, Conflict) as exc:
        raise BusinessError(code, exc.message) from exc


def register_purchasing_actions(registry: ActionRegistry) -> None:
    """Register this area's `mfg.*` actions."""

    def create_requisition(
        ctx: ActionContext,
        item: str,
        quantity: Any,
        needed_by: str | None = None,
        order_number: str | None = None,
        supplier: str | None = None,
        requested_by: str | None = None,
    ) -> dict[str, Any]:
        """Create an open purchase requisition at the supplier's price (the cheapest active
        supplier selling the item unless `supplier` names one). Reports the business error
        `requisition_refused` (unknown item or order, no supplier, bad quantity or date).
        Result: {number, item, uom, quantity, supplier, unit_price, amount, currency,
        lead_time_days, needed_by, expected_on, late, order_number, status, ...}."""
        return _refused_as(REQUISITION_REFUSED, lambda: purchasing.create_requisition(
            ctx.session, item=item, quantity=quantity, now=ctx.now, needed_by=needed_by,
            order_number=order_number, supplier=supplier,
            requested_by=requested_by or ctx.actor, instance_id=ctx.instance_id,
            idempotency_key=_key("mfg.create_requisition", ctx),
        ))  # fmt: skip

    def route_requisition(
        ctx: ActionContext, requisition: str, roles: list, deadlines: dict | None = None
    ) -> dict[str, Any]:
        """Set a requisition's approval levels (one role per level, in order) and open the
        first; `deadlines` maps each role to its ISO 8601 time to decide ({"supervisor":
        "PT4H"}). Result: {requisition, status, roles, amount, next_level, next_role,
        reason, decisions}."""
        return purchasing.route_requisition(ctx.session, requisition, roles, now=ctx.now,
                                            deadlines=deadlines)  # fmt: skip

    def escalate_approval(
        ctx: ActionContext, requisition: str, level: int, to_role: str
    ) -> dict[str, Any]:
        """Hand a waiting approval level to `to_role` after its deadline passed; the decision
        is recorded as escalated. Result: as mfg.route_requisition."""
        return purchasing.escalate_approval(ctx.session, requisition, level, to_role,
                                            now=ctx.now)  # fmt: skip

    def record_approval(
        ctx: ActionContext,
        requisition: str,
        level: int,
        decision: str,
        comment: str | None = None,
        decided_by: str | None = None,
    ) -> dict[str, Any]:
        """Record an approval level's decision (approve or reject; a rejection needs a
        comment), by `decided_by` (default: the user who completed the task). Opens the next
        level, or approves or rejects the requisition. Result: as mfg.route_requisition;
        `status` is open (next_role decides next), approved or rejected (`reason`)."""
        return purchasing.record_approval(ctx.session, requisition, level, decision,
                                          now=ctx.now, decided_by=decided_by or ctx.actor,
                                          comment=comment)  # fmt: skip

    def create_purchase_order(ctx: ActionContext, requisition: str) -> dict[str, Any]:
        """Order an approved requisition: a purchase order to its supplier with one line;
        the requisition becomes ordered. Result: {number, supplier, status, expected_on,
        amount, lines: [{line, item, uom, quantity, received, remaining, unit_price, amount,
        requisition}]}."""
        return purchasing.create_purchase_order(ctx.session, requisition, now=ctx.now,
                                                created_by=ctx.actor)  # fmt: skip

    def receive_goods(
        ctx: ActionContext,
        purchase_order: str,
        quantity: Any,
        lot: str | None = None,
        location: str | None = None,
        item: str | None = None,
        delivery_note: str | None = None,
    ) -> dict[str, Any]:
        """Receive (part of) a purchase order line into stock with its lot and post it (Dr
        stock at standard, Cr 2100 at the order price, difference to 5300). Reports the
        business error `receipt_refused` for an over-receipt, a missing lot of a lot-tracked
        item, a bad quantity or location. Result: {receipt, purchase_order, line, item, uom,
        quantity, lot, location, ordered, received, remaining, complete, order_status,
        requisition, order_number, lots: [{lot, quantity}], entry_id, movement_id}."""
        return _refused_as(RECEIPT_REFUSED, lambda: purchasing.receive_goods(
            ctx.session, purchase_order, quantity=quantity, now=ctx.now, lot=lot,
            location=location, item=item, received_by=ctx.actor, delivery_note=delivery_note,
            idempotency_key=_key("mfg.receive_goods", ctx),
        ))  # fmt: skip

    registry.register(
        "mfg.create_requisition", create_requisition,
        [Param("item", "str", description="the item to buy"),
         Param("quantity", "decimal", description="how much, in the item's unit"),
         Param("needed_by", "str", required=False, description="date needed (YYYY-MM-DD)"),
         Param("order_number", "str", required=False,
               description="the production order it covers (empty: stand-alone)"),
         Param("supplier", "str", required=False,
               description="the supplier (default: the cheapest selling the item)"),
         Param("requested_by", "str", required=False,
               description="who asks (default: the user of the step)")],
    )  # fmt: skip
    registry.register(
        "mfg.route_requisition", route_requisition,
        [Param("requisition", "str", description="the requisition number (PR-...)"),
         Param("roles", "list", description="the approving role of each level, in order"),
         Param("deadlines", "dict", required=False,
               description="role -> ISO 8601 time to decide, e.g. {'supervisor': 'PT4H'}")],
    )  # fmt: skip
    registry.register(
        "mfg.escalate_approval", escalate_approval,
        [Param("requisition", "str", description="the requisition number"),
         Param("level", "int", description="the waiting level"),
         Param("to_role", "str", description="the role that decides instead")],
    )  # fmt: skip
    registry.register(
        "mfg.record_approval", record_approval,
        [Param("requisition", "str", description="the requisition number"),
         Param("level", "int", description="the level decided"),
         Param("decision", "str", description="approve or reject"),
         Param("comment", "str", required=False,
               description="why (required for a rejection: its reason)"),
         Param("decided_by", "str", required=False,
               description="who decided (default: the user who completed the task)")],
    )  # fmt: skip
    registry.register(
        "mfg.create_purchase_order", create_purchase_order,
        [Param("requisition", "str", description="the approved requisition to order")],
    )  # fmt: skip
    registry.register(
        "mfg.receive_goods", receive_goods,
        [Param("purchase_order", "str", description="the purchase order number (PUR-...)"),
         Param("quantity", "decimal", description="how much arrived, in the item's unit"),
         Param("lot", "str", required=False,
               description="the delivery's lot (required for lot-tracked items)"),
         Param("location", "str", required=False,
               description="where it goes (default RM-STORES)"),
         Param("item", "str", required=False,
               description="which line (needed when the order has several)"),
         Param("delivery_note", "str", required=False,
               description="the supplier's delivery note number")],
    )  # fmt: skip


def seed_purchasing(session: Session, folder: Path) -> dict[str, Any]:
    """Load `folder`'s suppliers file (idempotent); counts of what was loaded. A plant
    without the file simply has no suppliers."""
    path = Path(folder) / SUPPLIERS_FILE
    if not path.exists():
        return {"suppliers": 0, "supplier items": 0}
    return purchasing.load_suppliers(session, path)
