"""Service-task actions of the manufacturing model (more follow with issue 6)."""

from __future__ import annotations

from typing import Any

from taktflow.engine.actions import ActionContext, ActionRegistry, Param
from taktflow.mfg.actions_support import jsonable
from taktflow.mfg.bom import explode, shortages
from taktflow.mfg.execution_actions import register_execution_actions
from taktflow.mfg.ledger import from_cents, post_entry, to_cents
from taktflow.mfg.machine_actions import register_machine_actions
from taktflow.mfg.orders import create_order, parse_due, set_status
from taktflow.mfg.purchasing_actions import register_purchasing_actions
from taktflow.mfg.quality_actions import register_quality_actions


def register_mfg_actions(registry: ActionRegistry) -> None:
    def post_journal(
        ctx: ActionContext, lines: list, description: str, reference: str | None = None
    ) -> dict[str, Any]:
        """Post a balanced journal entry in the step's transaction: `lines` is a list of
        {account, debit or credit, memo}. Refused (the step fails, nothing is posted) when it
        does not balance or names an unknown account; a retried step posts once."""
        entry_id = post_entry(
            ctx.session, lines, description=description, reference=reference, now=ctx.now,
            posted_by=ctx.actor, instance_id=ctx.instance_id,
            idempotency_key=f"mfg.post_journal:{ctx.instance_id}:{ctx.task_id}",
        )  # fmt: skip
        # Validated by post_entry: every debit is an amount.
        total = sum(to_cents(line["debit"], "debit") for line in lines
                    if line.get("debit") not in (None, 0, "0"))  # fmt: skip
        return {"entry_id": entry_id, "lines": len(lines), "total": str(from_cents(total))}

    def explode_bom(
        ctx: ActionContext,
        item: str,
        quantity: Any,
        location: str = "RM-STORES",
        version: int | None = None,
    ) -> dict[str, Any]:
        """What making `quantity` of `item` needs (multi-level, with scrap allowances) and
        which bought components `location` cannot cover: {requirements, shortages,
        short: true/false}. Quantities are returned as text (exact decimals)."""
        requirements = explode(ctx.session, item, quantity, version=version)
        short = shortages(ctx.session, requirements, location)
        return {
            "requirements": [r | {"quantity": str(r["quantity"])} for r in requirements],
            "shortages": [s | {k: str(s[k]) for k in ("required", "on_hand", "missing")}
                          for s in short],
            "short": bool(short),
        }  # fmt: skip

    def create_production_order(
        ctx: ActionContext,
        number: str,
        item: str,
        quantity: Any,
        priority: int = 5,
        erp_reference: str | None = None,
        due_at: str | None = None,
    ) -> dict[str, Any]:
        """Create a production order (state planned) bound to the item's current BOM and
        routing, with one operation per routing step. Its view, quantities as text."""
        return jsonable(create_order(ctx.session, number=number, item=item, quantity=quantity,
                                     now=ctx.now, priority=priority, erp_reference=erp_reference,
                                     due_at=parse_due(due_at)))  # fmt: skip

    def set_order_status(ctx: ActionContext, number: str, status: str) -> dict[str, Any]:
        """Move a production order to another state (released, running, held, completed,
        closed, cancelled) along the allowed paths; the step fails naming what is allowed."""
        return jsonable(set_status(ctx.session, number, status, now=ctx.now))

    registry.register(
        "mfg.create_order", create_production_order,
        [Param("number", "str", description="the order number (unique)"),
         Param("item", "str", description="the item to make"),
         Param("quantity", "decimal", description="how many, in its unit"),
         Param("priority", "int", required=False, description="1 (first) to 9, default 5"),
         Param("erp_reference", "str", required=False, description="the ERP's own reference"),
         Param("due_at", "str", required=False,
               description="when it is due: ISO 8601 date-time with offset")],
    )  # fmt: skip
    registry.register(
        "mfg.set_order_status", set_order_status,
        [Param("number", "str", description="the order number"),
         Param("status", "str", description="the new state")],
    )  # fmt: skip
    registry.register(
        "mfg.explode_bom", explode_bom,
        [Param("item", "str", description="the item to make"),
         Param("quantity", "decimal", description="how many (in its unit)"),
         Param("location", "str", required=False,
               description="where components are checked (default RM-STORES)"),
         Param("version", "int", required=False, description="BOM version (default latest)")],
    )  # fmt: skip
    registry.register(
        "mfg.post_journal", post_journal,
        [Param("lines", "list", description="[{account, debit | credit, memo}]; must balance"),
         Param("description", "str", description="what the entry records"),
         Param("reference", "str", required=False,
               description="what it belongs to, e.g. the production order")],
    )  # fmt: skip
    # Each area of the model registers its own actions.
    register_execution_actions(registry)
    register_machine_actions(registry)
    register_quality_actions(registry)
    register_purchasing_actions(registry)
