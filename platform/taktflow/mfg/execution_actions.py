"""Service-task actions for production order execution (taktflow.mfg.execution).

Each returns plain JSON for the workflow's data: quantities and amounts as exact text. A step
that is retried after a failure makes its movements and postings once: their idempotency keys
come from the instance and the task.
"""

from __future__ import annotations

from typing import Any

from taktflow.engine.actions import ActionContext, ActionRegistry, Param
from taktflow.mfg import execution as ex
from taktflow.mfg.actions_support import jsonable


def _key(ctx: ActionContext, action: str) -> str:
    return f"{action}:{ctx.instance_id}:{ctx.task_id}"


def register_execution_actions(registry: ActionRegistry) -> None:
    order = Param("order", "str", description="the production order number")
    sequence = Param("sequence", "int", description="the operation's sequence number")

    def reserve_material(ctx: ActionContext, order: str, location: str = ex.STORES) -> Any:
        """Reserve the order's components; {reservations, shortages, short}."""
        return jsonable(ex.reserve_material(ctx.session, order, location=location))

    def release_order(ctx: ActionContext, order: str) -> Any:
        """Release the order to the shop floor (refused while material is short)."""
        return jsonable(ex.release_order(ctx.session, order, now=ctx.now))

    def start_operation(
        ctx: ActionContext,
        order: str,
        sequence: int,
        machine: str | None = None,
        operator: str | None = None,
    ) -> Any:
        """Start an operation once its predecessors are complete."""
        return jsonable(
            ex.start_operation(
                ctx.session,
                order,
                sequence,
                now=ctx.now,
                machine=machine,
                operator=operator or ctx.actor,
            )
        )

    def report_quantity(
        ctx: ActionContext, order: str, sequence: int, good: Any = 0, reject: Any = 0
    ) -> Any:
        """Add machine counts to a running operation."""
        return jsonable(ex.report_quantity(ctx.session, order, sequence, good=good, reject=reject))

    def complete_operation(
        ctx: ActionContext,
        order: str,
        sequence: int,
        good: Any,
        scrap: Any = 0,
        scrap_reason: str | None = None,
        labour_hours: Any = None,
        machine_hours: Any = None,
    ) -> Any:
        """Complete an operation: backflush, labour and machine time, scrap."""
        return jsonable(
            ex.complete_operation(
                ctx.session,
                order,
                sequence,
                good=good,
                scrap=scrap,
                scrap_reason=scrap_reason,
                labour_hours=labour_hours,
                machine_hours=machine_hours,
                now=ctx.now,
                actor=ctx.actor,
                key=_key(ctx, "complete"),
            )
        )

    def issue_material(
        ctx: ActionContext,
        order: str,
        item: str,
        quantity: Any,
        lot: str | None = None,
        location: str = ex.STORES,
    ) -> Any:
        """Issue a component to the order (FIFO by lot unless one is named)."""
        return jsonable(
            ex.issue_material(
                ctx.session,
                order,
                item,
                quantity,
                now=ctx.now,
                lot=lot,
                location=location,
                actor=ctx.actor,
                key=_key(ctx, "issue"),
            )
        )

    def receive_finished_goods(
        ctx: ActionContext, order: str, quantity: Any = None, location: str | None = None
    ) -> Any:
        """Receive good output under the order's lot at standard cost."""
        return jsonable(
            ex.receive_finished_goods(
                ctx.session,
                order,
                now=ctx.now,
                quantity=quantity,
                location=location,
                actor=ctx.actor,
                key=_key(ctx, "receive"),
            )
        )

    def scrap(ctx: ActionContext, order: str, sequence: int, quantity: Any, reason: str) -> Any:
        """Scrap good units of a completed operation (a failed quality gate)."""
        return jsonable(
            ex.scrap_quantity(
                ctx.session,
                order,
                sequence,
                quantity,
                reason=reason,
                now=ctx.now,
                actor=ctx.actor,
                key=_key(ctx, "scrap"),
            )
        )

    def rework(ctx: ActionContext, order: str, sequence: int, quantity: Any) -> Any:
        """Send good units of a completed operation back for a rework pass."""
        return jsonable(ex.rework_operation(ctx.session, order, sequence, quantity))

    def close_order(ctx: ActionContext, order: str) -> Any:
        """Close a completed order, posting its variances; WIP is zero afterwards."""
        return jsonable(ex.close_order(ctx.session, order, now=ctx.now, actor=ctx.actor))

    def manual_issues(ctx: ActionContext, order: str, sequence: int) -> Any:
        """Components still to issue by hand for what the operation made:
        [{component, name, uom, quantity, lot_tracked}]."""
        return jsonable(ex.manual_issues(ctx.session, order, sequence))

    def order_costs(ctx: ActionContext, order: str) -> Any:
        """The order's cost, standard against actual, in cents: {actual_cents, standard_cents,
        variance_cents (positive is unfavourable), scrap_recovered_cents, wip_cents, ...}."""
        return jsonable(ex.order_costs(ctx.session, order))

    def order_operations(ctx: ActionContext, order: str) -> Any:
        """The order's operations with their inspection plan and machine options."""
        return jsonable(ex.floor_operations(ctx.session, order))

    qty = "decimal"
    registry.register("mfg.order_operations", order_operations, [order])
    registry.register(
        "mfg.reserve_material",
        reserve_material,
        [
            order,
            Param(
                "location",
                "str",
                required=False,
                description="where components are reserved (default RM-STORES)",
            ),
        ],
    )
    registry.register("mfg.release_order", release_order, [order])
    registry.register(
        "mfg.start_operation",
        start_operation,
        [
            order,
            sequence,
            Param("machine", "str", required=False, description="the machine it runs on"),
            Param(
                "operator",
                "str",
                required=False,
                description="who runs it (default: the user who completed the step)",
            ),
        ],
    )
    registry.register(
        "mfg.report_quantity",
        report_quantity,
        [
            order,
            sequence,
            Param("good", qty, required=False, description="good parts the machine counted"),
            Param("reject", qty, required=False, description="rejects the machine counted"),
        ],
    )
    registry.register(
        "mfg.complete_operation",
        complete_operation,
        [
            order,
            sequence,
            Param("good", qty, description="good quantity confirmed"),
            Param("scrap", qty, required=False, description="scrapped quantity"),
            Param("scrap_reason", "str", required=False, description="needed when scrap > 0"),
            Param("labour_hours", qty, required=False, description="default: time since start"),
            Param("machine_hours", qty, required=False, description="default: time since start"),
        ],
    )
    registry.register(
        "mfg.issue_material",
        issue_material,
        [
            order,
            Param("item", "str", description="a component of the order's BOM"),
            Param("quantity", qty, description="how much, in the item's unit"),
            Param("lot", "str", required=False, description="default: oldest lots first"),
            Param("location", "str", required=False, description="default RM-STORES"),
        ],
    )
    registry.register(
        "mfg.receive_finished_goods",
        receive_finished_goods,
        [
            order,
            Param(
                "quantity",
                qty,
                required=False,
                description="default: all good output not yet received",
            ),
            Param(
                "location",
                "str",
                required=False,
                description="default FG (finished) or RM-STORES (semi-finished)",
            ),
        ],
    )
    registry.register(
        "mfg.scrap",
        scrap,
        [
            order,
            sequence,
            Param("quantity", qty, description="good units to scrap"),
            Param("reason", "str", description="why (a defect code)"),
        ],
    )
    registry.register(
        "mfg.rework",
        rework,
        [order, sequence, Param("quantity", qty, description="units to rework")],
    )
    registry.register("mfg.close_order", close_order, [order])
    registry.register("mfg.order_costs", order_costs, [order])
    registry.register("mfg.manual_issues", manual_issues, [order, sequence])
