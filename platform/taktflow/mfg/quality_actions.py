"""Quality: inspection plans and results, nonconformances, dispositions.

Service-task actions (the quality gate, workflows/quality_gate.yaml, calls them) and the
demo plant's seed data (defect codes, inspection plans). Documented in docs/quality.md.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from taktflow.engine.actions import ActionContext, ActionRegistry, BusinessError, Param
from taktflow.errors import ValidationFailed
from taktflow.mfg.quality import (
    close_nonconformance,
    decide_inspection,
    disposition_nonconformance,
    load_defect_codes,
    load_inspection_plans,
    parse_sheet,
    plan_view,
    raise_nonconformance,
    record_inspection,
)

DEFECT_CODES_FILE = "defect_codes.yaml"
PLANS_FILE = "inspection_plans.yaml"


def _jsonable(view: Any) -> Any:
    """Decimals as exact text, tuples as lists: workflow data is JSON."""
    if isinstance(view, dict):
        return {k: _jsonable(v) for k, v in view.items()}
    if isinstance(view, list | tuple):
        return [_jsonable(v) for v in view]
    if isinstance(view, Decimal):
        return str(view)
    if isinstance(view, datetime):
        return view.isoformat()
    return view


def _key(ctx: ActionContext, action: str) -> str:
    # One key per step execution: a retried step finds what its first run wrote.
    return f"{action}:{ctx.instance_id}:{ctx.task_id}"


def register_quality_actions(registry: ActionRegistry) -> None:
    """Register this area's `mfg.*` actions."""

    def inspection_plan(ctx: ActionContext, plan: str) -> dict[str, Any]:
        """The inspection plan `plan` for an inspection screen: {name, title, item,
        frequency, characteristics: [{name, unit, nominal, lower, upper, sample_size,
        defect_code}], spec: {characteristic: {nominal, lower, upper, unit, sample_size}} (for
        form limits), sheet (an empty measurement sheet), defect_codes (select options)}."""
        return _jsonable(plan_view(ctx.session, plan))

    def record(
        ctx: ActionContext,
        plan: str,
        item: str,
        lot: str | None,
        quantity: Any,
        measurements: Any,
        order_number: str | None = None,
        sequence: int | None = None,
        signature: dict | None = None,
        remarks: str | None = None,
    ) -> dict[str, Any]:
        """Record an inspection of a lot: `measurements` is {characteristic: [values]} or a
        filled-in measurement sheet (text). Returns {inspection, result, out_of_spec, missing,
        worst_excess_pct, worst, verdicts, defect_code, summary}. A sheet that cannot be read
        is the business error `unreadable_sheet` (the workflow sends it back to the
        inspector); a retried step records once."""
        if isinstance(measurements, str):
            try:
                measurements = parse_sheet(ctx.session, plan, measurements)
            except ValidationFailed as exc:
                raise BusinessError("unreadable_sheet", exc.message) from None
        return _jsonable(record_inspection(
            ctx.session, plan=plan, item=item, lot=lot, quantity=quantity,
            measurements=measurements, now=ctx.now, order_number=order_number or None,
            sequence=sequence, inspected_by=ctx.actor, signature=signature, remarks=remarks,
            instance_id=ctx.instance_id, idempotency_key=_key(ctx, "mfg.record_inspection"),
        ))  # fmt: skip

    def decide(
        ctx: ActionContext, inspection: int, decision: str, reason: str | None = None
    ) -> dict[str, Any]:
        """Record the gate's decision about an inspected lot (pass, hold, fail); a held lot is
        passed or failed by a review, with a reason. Returns {inspection, status, held_at,
        decided_by}. Deciding the same again is a no-op."""
        view = decide_inspection(ctx.session, inspection, decision, now=ctx.now,
                                 decided_by=ctx.actor, reason=reason)  # fmt: skip
        return {"inspection": view["id"], "status": view["status"], "held_at": view["held_at"],
                "decided_by": view["decided_by"]}  # fmt: skip

    def raise_nc(
        ctx: ActionContext,
        item: str,
        lot: str | None,
        quantity: Any,
        defect_code: str,
        description: str,
        order_number: str | None = None,
        sequence: int | None = None,
        inspection: int | None = None,
    ) -> dict[str, Any]:
        """Open a nonconformance (status open); its view {id, order_number, sequence, item,
        lot, defect_code, quantity, description, status, ...}. A retried step raises once."""
        return _jsonable(raise_nonconformance(
            ctx.session, item=item, lot=lot, quantity=quantity, defect_code=defect_code,
            description=description, now=ctx.now, order_number=order_number or None,
            sequence=sequence, inspection_id=inspection, raised_by=ctx.actor,
            instance_id=ctx.instance_id, idempotency_key=_key(ctx, "mfg.raise_nonconformance"),
        ))  # fmt: skip

    def disposition(
        ctx: ActionContext,
        nonconformance: int,
        disposition: str,
        signature: dict,
        note: str | None = None,
        quantity: Any = None,
    ) -> dict[str, Any]:
        """Approve the disposition of an open nonconformance (use_as_is, rework, scrap,
        return) with the approver's e-signature (the value of a form's signature field that
        signed this disposition). Refused for a closed or already dispositioned one; a retried
        step is a no-op. With `quantity` below the nonconformance's, the rest stays open as a
        new nonconformance (`remainder`)."""
        return _jsonable(disposition_nonconformance(
            ctx.session, nonconformance, disposition, signature=signature, now=ctx.now,
            quantity=quantity, note=note,
            idempotency_key=_key(ctx, "mfg.disposition_nonconformance"),
        ))  # fmt: skip

    def close(ctx: ActionContext, nonconformance: int, note: str | None = None) -> dict[str, Any]:
        """Close a dispositioned nonconformance once its disposition is carried out (reworked,
        scrapped, returned, or nothing to do for use_as_is). A retried step is a no-op."""
        return _jsonable(close_nonconformance(
            ctx.session, nonconformance, now=ctx.now, closed_by=ctx.actor, note=note,
            idempotency_key=_key(ctx, "mfg.close_nonconformance"),
        ))  # fmt: skip

    registry.register(
        "mfg.inspection_plan", inspection_plan,
        [Param("plan", "str", description="the plan's name (seed_data/inspection_plans.yaml)")],
    )  # fmt: skip
    registry.register(
        "mfg.record_inspection", record,
        [Param("plan", "str", description="the inspection plan"),
         Param("item", "str", description="the item inspected"),
         Param("lot", "str", description="the lot inspected (required for lot-tracked items)"),
         Param("quantity", "decimal", description="the lot's quantity, in the item's unit"),
         Param("measurements", "any",
               description="{characteristic: [values]} or a filled-in measurement sheet"),
         Param("order_number", "str", required=False, description="the production order"),
         Param("sequence", "int", required=False, description="the routing operation"),
         Param("signature", "dict", required=False,
               description="the inspector's signature (a form's signature field)"),
         Param("remarks", "str", required=False, description="the inspector's remarks")],
    )  # fmt: skip
    registry.register(
        "mfg.decide_inspection", decide,
        [Param("inspection", "int", description="the inspection's id"),
         Param("decision", "str", description="pass, hold or fail"),
         Param("reason", "str", required=False,
               description="why (required when a held lot is passed or failed)")],
    )  # fmt: skip
    registry.register(
        "mfg.raise_nonconformance", raise_nc,
        [Param("item", "str", description="the nonconforming item"),
         Param("lot", "str", description="its lot (required for lot-tracked items)"),
         Param("quantity", "decimal", description="how much does not conform (positive)"),
         Param("defect_code", "str", description="seed_data/defect_codes.yaml"),
         Param("description", "str", description="what is wrong"),
         Param("order_number", "str", required=False, description="the production order"),
         Param("sequence", "int", required=False, description="the routing operation"),
         Param("inspection", "int", required=False, description="the inspection that found it")],
    )  # fmt: skip
    registry.register(
        "mfg.disposition_nonconformance", disposition,
        [Param("nonconformance", "int", description="the nonconformance's id"),
         Param("disposition", "str", description="use_as_is, rework, scrap or return"),
         Param("signature", "dict",
               description="the approver's signature (a form's signature field)"),
         Param("note", "str", required=False, description="the approver's justification"),
         Param("quantity", "decimal", required=False,
               description="how much (default: all of it; positive)")],
    )  # fmt: skip
    registry.register(
        "mfg.close_nonconformance", close,
        [Param("nonconformance", "int", description="the nonconformance's id"),
         Param("note", "str", required=False, description="how it was carried out")],
    )  # fmt: skip


def seed_quality(session: Session, folder: Path) -> dict[str, Any]:
    """Load this area's demo-plant data from `folder` (idempotent); counts of what was loaded.

    Defect codes first (plans name them). A folder without the files loads nothing: quality
    data is optional for a plant."""
    counts: dict[str, Any] = {}
    if (folder / DEFECT_CODES_FILE).exists():
        counts["defect_codes"] = load_defect_codes(session, folder / DEFECT_CODES_FILE)
    if (folder / PLANS_FILE).exists():
        counts["inspection_plans"] = load_inspection_plans(session, folder / PLANS_FILE)
    return counts
