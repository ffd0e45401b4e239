"""Production order execution, as the shop floor does it and the books see it.

An order reserves its material and is released; its operations start strictly in sequence and
report what the machine counted and what the operator confirmed; material is issued by hand or
backflushed when an operation reports; labour and machine time are booked at the work
center's rates; good units are received at standard cost and scrap at its recovery value; and
closing the order posts what is left in work in progress as material usage, labour efficiency
and overhead variances — the postings of docs/manufacturing.md, so that after the close the
order's WIP is zero.

Like the rest of the model, functions take the caller's Session (a workflow step's
transaction) and never commit. A movement or posting made with an idempotency key is made once.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taktflow.engine.models import MachineContext
from taktflow.engine.outbox import set_machine_context
from taktflow.errors import Conflict, NotFound, ValidationFailed
from taktflow.mfg.ledger import post_entry
from taktflow.mfg.models import (
    BOM_DECIMALS,
    Bom,
    BomLine,
    GenealogyLink,
    Item,
    JournalEntry,
    JournalLine,
    Location,
    Machine,
    OrderOperation,
    ProductionOrder,
    Reservation,
    Routing,
    RoutingOperation,
    StockMovement,
    WorkCenter,
)
from taktflow.mfg.orders import get_order, order_view, set_status
from taktflow.mfg.stock import get_item, lots_on_hand, move_stock, scaled, unscaled

#: Where material is taken from, where issued material waits, where output goes.
STORES = "RM-STORES"
WIP_LOCATION = "WIP"
FINISHED_GOODS = "FG"
SCRAP_LOCATION = "SCRAP"
#: The accounts of the postings (seed_data/chart_of_accounts.yaml).
WIP_ACCOUNT = "1410"
LABOUR_APPLIED = "5100"
OVERHEAD_APPLIED = "5200"
MATERIAL_VARIANCE = "5400"
LABOUR_VARIANCE = "5410"
OVERHEAD_VARIANCE = "5420"


def reserve_material(
    session: Session, number: str, *, location: str = STORES, lot: str | None = None
) -> dict[str, Any]:
    """Set aside the order's direct components (its BOM version's lines: quantity per unit x
    order quantity plus the line's scrap allowance) at `location`, as far as stock that no
    other open order holds allows. Calling it again (after a goods receipt) tops the
    reservations up. Returns {order, reservations, shortages, short}; a shortage says whether
    the component is bought or made (`make`: it has a BOM of its own)."""
    order = get_order(session, number)
    if order.status not in ("planned", "released", "held"):
        raise Conflict(
            f"production order {number} is {order.status}: material is reserved before it runs"
        )
    if session.get(Location, location) is None:
        raise NotFound(f"location {location!r} does not exist")
    if lot is not None:
        order.lot = lot
    elif order.lot is None:
        order.lot = f"L-{number}"
    product = get_item(session, order.item)
    reservations, short = [], []
    for line, component, required in _requirements(session, order, product):
        found = session.scalar(
            select(Reservation).where(
                Reservation.order_number == number,
                Reservation.item == component.code,
                Reservation.location == location,
            )
        )
        if found is None:
            found = Reservation(
                order_number=number,
                item=component.code,
                location=location,
                required=required,
                reserved=0,
                issued=0,
                open=True,
            )
            session.add(found)
        free = _free_stock(session, component.code, location, exclude=number)
        found.required = required
        # What other open orders hold is not free; what this order already took is issued.
        found.reserved = found.issued + max(0, min(required - found.issued, free))
        session.flush()
        reservations.append(
            {
                "component": component.code,
                "uom": component.uom,
                "issue": line.issue_method,
                "required": unscaled(component, required),
                "reserved": unscaled(component, found.reserved),
            }
        )
        if found.reserved < required:
            short.append(
                {
                    "component": component.code,
                    "uom": component.uom,
                    "required": unscaled(component, required),
                    "reserved": unscaled(component, found.reserved),
                    "missing": unscaled(component, required - found.reserved),
                    "make": session.scalar(
                        select(Bom.id).where(Bom.item == component.code).limit(1)
                    )
                    is not None,
                }
            )
    return {
        "order": number,
        "lot": order.lot,
        "reservations": reservations,
        "shortages": short,
        "short": bool(short),
    }


def release_order(session: Session, number: str, *, now: datetime) -> dict[str, Any]:
    """Release a planned (or held) order to the shop floor. Refused while a component is not
    fully reserved: the message names what is missing."""
    order = get_order(session, number)
    reserved = reserve_material(session, number)
    if reserved["short"]:
        missing = ", ".join(
            f"{s['missing']} {s['uom']} of {s['component']}" for s in reserved["shortages"]
        )
        raise Conflict(f"production order {number} cannot be released: {missing} missing")
    set_status(session, number, "released", now=now)
    return order_view(session, order.number) | {"lot": order.lot}


def start_operation(
    session: Session,
    number: str,
    sequence: int,
    *,
    now: datetime,
    machine: str | None = None,
    operator: str | None = None,
) -> dict[str, Any]:
    """Start an operation (or its rework pass): only when the order is released or running and
    every earlier operation is completed. The machine, if given, must belong to the
    operation's work center; it is told what it now works on (machine context: order,
    operation, item), which connector rules read as `machine`."""
    order = get_order(session, number)
    if order.status not in ("released", "running"):
        raise Conflict(
            f"production order {number} is {order.status}: its operations can "
            "start once it is released"
        )
    op = _operation(session, number, sequence)
    if op.status not in ("waiting", "rework"):
        raise Conflict(
            f"operation {sequence} of {number} is {op.status}: it can be started "
            "when waiting or sent back for rework"
        )
    earlier = session.scalars(
        select(OrderOperation)
        .where(
            OrderOperation.order_number == number,
            OrderOperation.sequence < sequence,
            OrderOperation.status != "completed",
        )
        .order_by(OrderOperation.sequence)
    ).first()
    if earlier is not None:
        raise Conflict(
            f"operation {sequence} of {number} cannot start: operation "
            f"{earlier.sequence} ({earlier.name}) is {earlier.status}"
        )
    if machine:
        found = session.get(Machine, machine)
        if found is None:
            raise NotFound(f"machine {machine!r} does not exist")
        if found.work_center != op.work_center:
            raise ValidationFailed(
                f"machine {machine} belongs to {found.work_center}; operation {sequence} of "
                f"{number} runs at {op.work_center}",
                details={"machine": "wrong work center"},
            )
        set_machine_context(
            session,
            machine,
            {"order": number, "operation": sequence, "item": order.item},
            actor=operator,
            now=now,
        )
    if order.status == "released":
        set_status(session, number, "running", now=now)
    op.status, op.started_at = "running", now
    op.machine = machine or op.machine
    op.operator = operator or op.operator
    session.flush()
    return operation_view(session, number, sequence)


def report_quantity(
    session: Session, number: str, sequence: int, *, good: Any = 0, reject: Any = 0
) -> dict[str, Any]:
    """Add what the machine counted (connector events) to a running operation. These counts
    stand beside the operator's confirmation; they do not replace it."""
    op = _operation(session, number, sequence)
    if op.status != "running":
        raise Conflict(
            f"operation {sequence} of {number} is {op.status}: counts are reported while it runs"
        )
    product = get_item(session, get_order(session, number).item)
    add_good, add_reject = scaled(product, good, "good"), scaled(product, reject, "reject")
    if add_good < 0 or add_reject < 0:
        raise ValidationFailed(
            "counted quantities cannot be negative (a counter reset is reported as zero)",
            details={"good": "negative"},
        )
    op.counted_good += add_good
    op.counted_reject += add_reject
    session.flush()
    return operation_view(session, number, sequence)


def count_on_machine(session: Session, machine: str, *, total: int = 0, reject: int = 0) -> bool:
    """Add a machine's counts (from its connector events: `total` parts made, `reject` of
    them rejected, as the counters report them, possibly in separate events) to the operation
    running on it; False when nothing runs there (the counts still count for its OEE)."""
    op = session.scalars(select(OrderOperation).where(OrderOperation.machine == machine,
                                                      OrderOperation.status == "running")
                         .order_by(OrderOperation.started_at.desc())).first()  # fmt: skip
    if op is None:
        return False
    product = get_item(session, get_order(session, op.order_number).item)
    scale = 10**product.decimals
    op.counted_good = max(op.counted_good + (total - reject) * scale, 0)
    op.counted_reject += reject * scale
    session.flush()
    return True


def complete_operation(
    session: Session,
    number: str,
    sequence: int,
    *,
    good: Any,
    now: datetime,
    scrap: Any = 0,
    scrap_reason: str | None = None,
    labour_hours: Any = None,
    machine_hours: Any = None,
    actor: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Complete a running operation with the operator's good and scrap quantities.

    On a first pass good + scrap may not exceed what reached the operation (the order
    quantity, or the previous operation's good); on a rework pass they account for exactly
    the units sent back. Then, in the same transaction: the operation's backflushed
    components are consumed (FIFO by lot) for good + scrap plus the line's scrap allowance;
    labour and machine time (given, or the time since the start) are booked at the work
    center's rates; scrapped units go to the scrap location at their recovery value."""
    order = get_order(session, number)
    product = get_item(session, order.item)
    op = _operation(session, number, sequence)
    if op.status != "running":
        raise Conflict(
            f"operation {sequence} of {number} is {op.status}: only a running "
            "operation can be completed"
        )
    good_q, scrap_q = scaled(product, good, "good"), scaled(product, scrap or 0, "scrap")
    if good_q < 0 or scrap_q < 0:
        raise ValidationFailed("good and scrap cannot be negative", details={"good": "negative"})
    if scrap_q and not scrap_reason:
        raise ValidationFailed(
            "scrapped units need a scrap reason", details={"scrap_reason": "missing"}
        )
    if op.in_rework:
        if good_q + scrap_q != op.in_rework:
            raise ValidationFailed(
                f"operation {sequence} of {number} reworked {unscaled(product, op.in_rework)}: "
                f"good + scrap must add up to it, not {unscaled(product, good_q + scrap_q)}",
                details={"good": "does not add up"},
            )
        op.good = op.good - op.in_rework + good_q
        consumed_for = 0  # reworked units already took their material
    else:
        reached = _reached(session, order, sequence)
        if good_q + scrap_q > reached:
            raise ValidationFailed(
                f"operation {sequence} of {number}: good + scrap "
                f"{unscaled(product, good_q + scrap_q)} is more than the "
                f"{unscaled(product, reached)} {product.uom} that reached it",
                details={"good": "too many"},
            )
        op.good = good_q
        consumed_for = good_q + scrap_q
    op.scrap += scrap_q
    op.in_rework = 0
    op.status, op.completed_at = "completed", now
    _release_machine(session, op, actor=actor, now=now)
    if scrap_reason:
        op.scrap_reason = scrap_reason
    elapsed = Decimal(max((now - op.started_at).total_seconds(), 0)) if op.started_at else 0
    labour_s = _seconds(labour_hours, "labour_hours", elapsed)
    machine_s = _seconds(machine_hours, "machine_hours", elapsed)
    op.labour_s += labour_s
    op.machine_s += machine_s
    session.flush()
    tag = key or f"op:{number}:{sequence}:{op.labour_s}:{op.scrap}:{op.good}"
    if consumed_for:
        _backflush(session, order, product, sequence, consumed_for, now=now, actor=actor, key=tag)
    _book_time(session, order, op, labour_s, machine_s, now=now, actor=actor, key=tag)
    if scrap_q:
        _book_scrap(session, order, product, scrap_q, now=now, actor=actor, key=f"{tag}:scrap")
    return operation_view(session, number, sequence)


def _release_machine(
    session: Session, op: OrderOperation, *, actor: str | None, now: datetime
) -> None:
    """The machine no longer works on a completed operation: its context (which connector
    rules read as `machine`, and which gives later counts their ideal cycle time) is cleared,
    unless another operation has been started on it since."""
    if not op.machine:
        return
    context = session.get(MachineContext, op.machine)
    if context is None:
        return
    try:
        data = json.loads(context.data)
    except ValueError:
        return
    if isinstance(data, dict) and (data.get("order"), data.get("operation")) == (
        op.order_number,
        op.sequence,
    ):
        set_machine_context(session, op.machine, {}, actor=actor, now=now)


def scrap_quantity(
    session: Session,
    number: str,
    sequence: int,
    quantity: Any,
    *,
    reason: str,
    now: datetime,
    actor: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Scrap good units of a completed operation after the fact (a failed quality gate):
    they move from good to scrap and go to the scrap location at their recovery value."""
    order = get_order(session, number)
    product = get_item(session, order.item)
    op = _operation(session, number, sequence)
    amount = scaled(product, quantity)
    if op.status != "completed":
        raise Conflict(
            f"operation {sequence} of {number} is {op.status}: scrap a completed operation's units"
        )
    if amount <= 0 or amount > op.good - _received_after(session, order, sequence):
        raise ValidationFailed(
            f"operation {sequence} of {number} has "
            f"{unscaled(product, op.good)} good: {quantity} cannot be scrapped",
            details={"quantity": "out of range"},
        )
    op.good -= amount
    op.scrap += amount
    op.scrap_reason = reason
    session.flush()
    _book_scrap(
        session,
        order,
        product,
        amount,
        now=now,
        actor=actor,
        key=key or f"scrap:{number}:{sequence}:{op.scrap}",
    )
    return operation_view(session, number, sequence)


def rework_operation(session: Session, number: str, sequence: int, quantity: Any) -> dict[str, Any]:
    """Send good units of a completed operation back to it (a quality gate's rework
    disposition): the operation waits for its rework pass; later operations wait again."""
    order = get_order(session, number)
    product = get_item(session, order.item)
    op = _operation(session, number, sequence)
    amount = scaled(product, quantity)
    if op.status != "completed":
        raise Conflict(
            f"operation {sequence} of {number} is {op.status}: only completed units can be reworked"
        )
    if amount <= 0 or amount > op.good:
        raise ValidationFailed(
            f"operation {sequence} of {number} has "
            f"{unscaled(product, op.good)} good: {quantity} cannot be reworked",
            details={"quantity": "out of range"},
        )
    op.status, op.in_rework = "rework", amount
    op.rework += amount
    session.flush()
    return operation_view(session, number, sequence)


def issue_material(
    session: Session,
    number: str,
    item: str,
    quantity: Any,
    *,
    now: datetime,
    lot: str | None = None,
    location: str = STORES,
    actor: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Issue a component to the order by hand: it moves from stores to the shop floor (WIP),
    lots first in first out unless one is named, and is posted to work in progress at
    standard cost. Only components of the order's BOM can be issued."""
    order = get_order(session, number)
    if order.status not in ("released", "running"):
        raise Conflict(
            f"production order {number} is {order.status}: material is issued "
            "to released or running orders"
        )
    component = get_item(session, item)
    product = get_item(session, order.item)
    if item not in {c.code for _, c, _ in _requirements(session, order, product)}:
        raise ValidationFailed(
            f"{item} is not in the bill of materials of {number} "
            f"({order.item} version {order.bom_version})",
            details={"item": "not in the BOM"},
        )
    amount = scaled(component, quantity)
    if amount <= 0:
        raise ValidationFailed(
            f"quantity {quantity} must be positive", details={"quantity": "not positive"}
        )
    tag = key or f"issue:{number}:{item}:{_issued(session, number, item)}"
    taken = _take(
        session,
        component,
        location,
        amount,
        lot=lot,
        reason="issue",
        order=order,
        now=now,
        actor=actor,
        key=tag,
    )
    _post_material(
        session,
        order,
        component,
        amount,
        location,
        now=now,
        actor=actor,
        key=tag,
        what="Material issue",
    )
    return {
        "order": number,
        "item": item,
        "uom": component.uom,
        "quantity": unscaled(component, amount),
        "lots": [{"lot": lot or None, "quantity": unscaled(component, q)} for lot, q, _ in taken],
    }


def manual_issues(session: Session, number: str, sequence: int) -> list[dict[str, Any]]:
    """What is still to be issued by hand for an operation: each BOM line with issue method
    `manual` at this operation, for the units it made (good + scrap) with the line's scrap
    allowance, less what was already issued to the order. Nothing for an operation that has
    made nothing yet (and nothing more on a rework pass: reworked units took their material)."""
    order = get_order(session, number)
    product = get_item(session, order.item)
    op = _operation(session, number, sequence)
    made = unscaled(product, op.good + op.scrap)
    out = []
    for line, component, _ in _requirements(session, order, product):
        if line.issue_method != "manual" or line.operation != sequence:
            continue
        issued = session.scalar(
            select(func.coalesce(func.sum(StockMovement.quantity), 0)).where(
                StockMovement.reference == number,
                StockMovement.item == component.code,
                StockMovement.reason == "issue",
            )
        )
        missing = _line_quantity(line, component, made) - int(issued or 0)
        if missing > 0:
            out.append({"component": component.code, "name": component.name,
                        "uom": component.uom, "quantity": unscaled(component, missing),
                        "lot_tracked": component.tracking == "lot"})  # fmt: skip
    return out


def receive_finished_goods(
    session: Session,
    number: str,
    *,
    now: datetime,
    quantity: Any = None,
    location: str | None = None,
    actor: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Receive the order's good output into stock under the order's lot at standard cost
    (finished goods, or stores for a semi-finished item), and record the lot genealogy: every
    input lot issued or consumed for the order is linked to the output lot. Without a
    quantity: whatever the last operation made good that is not received yet."""
    order = get_order(session, number)
    product = get_item(session, order.item)
    last = session.scalars(
        select(OrderOperation)
        .where(OrderOperation.order_number == number)
        .order_by(OrderOperation.sequence.desc())
    ).first()
    if last is None or last.status != "completed":
        state = last.status if last else "missing"
        raise Conflict(
            f"production order {number}: its last operation is {state}; goods are "
            "received after it completes"
        )
    open_quantity = last.good - order.received
    if quantity is None and open_quantity == 0:
        # Everything was scrapped, or is received already: nothing to do, and no error for a
        # workflow that receives "whatever is left".
        return order_view(session, number) | {
            "received": unscaled(product, order.received),
            "lot": order.lot,
            "location": None,
        }
    amount = open_quantity if quantity is None else scaled(product, quantity)
    if amount <= 0 or amount > open_quantity:
        raise ValidationFailed(
            f"production order {number} has {unscaled(product, open_quantity)} {product.uom} "
            f"good and not yet received; {unscaled(product, amount)} cannot be received",
            details={"quantity": "out of range"},
        )
    target = location or (FINISHED_GOODS if product.type == "finished" else STORES)
    lot = order.lot or f"L-{number}"
    order.lot = lot
    tag = key or f"receive:{number}:{order.received}"
    move_stock(
        session,
        item=product.code,
        quantity=unscaled(product, amount),
        reason="produce",
        now=now,
        to_location=target,
        lot=lot if product.tracking == "lot" else None,
        reference=number,
        moved_by=actor,
        idempotency_key=tag,
    )
    value = _value(product, amount, _standard(product))
    if value:
        post_entry(
            session,
            [
                {
                    "account": _location_account(session, target),
                    "debit": _money(value),
                    "memo": f"{unscaled(product, amount)} {product.uom} {product.code} lot {lot}",
                },
                {"account": WIP_ACCOUNT, "credit": _money(value)},
            ],
            description=f"Finished goods receipt of {number}",
            reference=number,
            now=now,
            posted_by=actor,
            idempotency_key=tag,
        )
    order.received += amount
    if order.status == "running" and order.received >= last.good:
        set_status(session, number, "completed", now=now)
    _link_genealogy(session, order, product, lot, now)
    session.flush()
    return order_view(session, number) | {
        "received": unscaled(product, order.received),
        "lot": lot,
        "location": target,
    }


def close_order(
    session: Session, number: str, *, now: datetime, actor: str | None = None
) -> dict[str, Any]:
    """Close a completed order: material still on the shop floor for it is consumed, its
    reservations end, and what is left in work in progress is posted as variances —
    material usage (material issued at standard, less the standard material of the good
    units received and the scrap recovered), labour efficiency (labour applied less standard
    labour) and overhead (applied less standard) — so that its WIP is zero afterwards."""
    order = get_order(session, number)
    product = get_item(session, order.item)
    if order.status == "running":
        set_status(session, number, "completed", now=now)
    if order.status != "completed":
        raise Conflict(
            f"production order {number} is {order.status}: only a completed order can be closed"
        )
    _consume_leftovers(session, order, now=now, actor=actor)
    for reservation in session.scalars(
        select(Reservation).where(Reservation.order_number == number, Reservation.open.is_(True))
    ):
        reservation.open = False
    costs = order_costs(session, number)
    lines = []
    for account, amount in (
        (MATERIAL_VARIANCE, costs["variance_cents"]["material"]),
        (LABOUR_VARIANCE, costs["variance_cents"]["labour"]),
        (OVERHEAD_VARIANCE, costs["variance_cents"]["overhead"]),
    ):
        if amount:
            side = "debit" if amount > 0 else "credit"
            lines.append({"account": account, side: _money(abs(amount))})
    wip = costs["wip_cents"]
    if wip:
        lines.append(
            {
                "account": WIP_ACCOUNT,
                ("credit" if wip > 0 else "debit"): _money(abs(wip)),
                "memo": "work in progress cleared at close",
            }
        )
    if lines:
        post_entry(
            session,
            lines,
            description=f"Close of {number}: variances",
            reference=number,
            now=now,
            posted_by=actor,
            idempotency_key=f"close:{number}",
        )
    set_status(session, number, "closed", now=now)
    return order_view(session, number) | {
        "costs": order_costs(session, number),
        "received": unscaled(product, order.received),
    }


def order_costs(session: Session, number: str) -> dict[str, Any]:
    """An order's cost, standard against actual, from its journal lines: material issued,
    labour and overhead applied, what was received and scrapped, the WIP balance and the
    variances (cents; positive is unfavourable)."""
    order = get_order(session, number)
    product = get_item(session, order.item)

    def total(account: str, side: str) -> int:
        column = JournalLine.debit_cents if side == "debit" else JournalLine.credit_cents
        return int(
            session.scalar(
                select(func.coalesce(func.sum(column), 0)).where(
                    JournalLine.account == account, JournalLine.reference == number
                )
            )
        )

    all_in, all_out = total(WIP_ACCOUNT, "debit"), total(WIP_ACCOUNT, "credit")
    labour, overhead = total(LABOUR_APPLIED, "credit"), total(OVERHEAD_APPLIED, "credit")
    # The close entry clears WIP into the variances: leave it out of what was used.
    close_in, close_out = _closing_wip(session, number)
    wip_in, wip_out = all_in - close_in, all_out - close_out
    material = wip_in - labour - overhead
    std = {
        "material": _value(product, order.received, product.std_material_cents),
        "labour": _value(product, order.received, product.std_labour_cents),
        "overhead": _value(product, order.received, product.std_overhead_cents),
    }
    received_value = _value(product, order.received, _standard(product))
    scrap_recovered = wip_out - received_value
    variance = {
        "material": material - std["material"] - scrap_recovered,
        "labour": labour - std["labour"],
        "overhead": overhead - std["overhead"],
    }
    return {
        "order": number,
        "item": order.item,
        "received": unscaled(product, order.received),
        "actual_cents": {"material": material, "labour": labour, "overhead": overhead},
        "standard_cents": std,
        "received_cents": received_value,
        "scrap_recovered_cents": scrap_recovered,
        "variance_cents": variance,
        "wip_cents": all_in - all_out,
    }


def floor_operations(session: Session, number: str) -> list[dict[str, Any]]:
    """The order's operations as the shop floor works them: sequence, name, work center,
    planned quantity, the routing's inspection plan and operator form, and the machines of
    the work center as form options ({value, label})."""
    order = get_order(session, number)
    product = get_item(session, order.item)
    routing = session.scalar(
        select(Routing).where(Routing.item == order.item, Routing.version == order.routing_version)
    )
    steps = {
        r.sequence: r
        for r in session.scalars(
            select(RoutingOperation).where(
                RoutingOperation.routing_id == (routing.id if routing else -1)
            )
        )
    }
    out = []
    for op in session.scalars(
        select(OrderOperation)
        .where(OrderOperation.order_number == number)
        .order_by(OrderOperation.sequence)
    ):
        machines = session.scalars(
            select(Machine).where(Machine.work_center == op.work_center).order_by(Machine.code)
        )
        step = steps.get(op.sequence)
        out.append(
            {
                "sequence": op.sequence,
                "name": op.name,
                "work_center": op.work_center,
                "planned": unscaled(product, op.planned),
                "uom": product.uom,
                "inspection": step.inspection if step else None,
                # The lot a quality gate inspects ("" for an item not tracked by lot).
                "lot": (order.lot or f"L-{number}") if product.tracking == "lot" else "",
                "form": step.form if step else None,
                "machines": [{"value": m.code, "label": m.name} for m in machines],
            }
        )
    return out


def operation_view(session: Session, number: str, sequence: int) -> dict[str, Any]:
    op = _operation(session, number, sequence)
    product = get_item(session, get_order(session, number).item)
    return {
        "order": number,
        "sequence": op.sequence,
        "name": op.name,
        "status": op.status,
        "work_center": op.work_center,
        "machine": op.machine,
        "operator": op.operator,
        "planned": unscaled(product, op.planned),
        "good": unscaled(product, op.good),
        "scrap": unscaled(product, op.scrap),
        "rework": unscaled(product, op.rework),
        "in_rework": unscaled(product, op.in_rework),
        "counted_good": unscaled(product, op.counted_good),
        "counted_reject": unscaled(product, op.counted_reject),
        "labour_hours": Decimal(op.labour_s) / 3600,
        "machine_hours": Decimal(op.machine_s) / 3600,
        "started_at": op.started_at.isoformat() if op.started_at else None,
        "completed_at": op.completed_at.isoformat() if op.completed_at else None,
    }


def genealogy(session: Session, item: str, lot: str, *, direction: str = "backward") -> list[dict]:
    """Trace a lot: backward, the input lots that went into it (and theirs, level by level);
    forward, the output lots it went into. One row per link with its level."""
    if direction not in ("backward", "forward"):
        raise ValidationFailed(f"direction {direction!r} is backward or forward")
    rows, frontier, seen, level = [], [(item, lot)], set(), 1
    while frontier and level <= 20:
        found = []
        for code, lot_code in frontier:
            if direction == "backward":
                query = select(GenealogyLink).where(
                    GenealogyLink.parent_item == code, GenealogyLink.parent_lot == lot_code
                )
            else:
                query = select(GenealogyLink).where(
                    GenealogyLink.child_item == code, GenealogyLink.child_lot == lot_code
                )
            for link in session.scalars(query.order_by(GenealogyLink.id)):
                child = get_item(session, link.child_item)
                rows.append(
                    {
                        "level": level,
                        "order": link.order_number,
                        "output_item": link.parent_item,
                        "output_lot": link.parent_lot,
                        "input_item": link.child_item,
                        "input_lot": link.child_lot,
                        "quantity": unscaled(child, link.quantity),
                        "uom": child.uom,
                    }
                )
                nxt = (
                    (link.child_item, link.child_lot)
                    if direction == "backward"
                    else (link.parent_item, link.parent_lot)
                )
                if nxt not in seen:
                    seen.add(nxt)
                    found.append(nxt)
        frontier, level = found, level + 1
    return rows


# -- helpers ---------------------------------------------------------------------------------


def _operation(session: Session, number: str, sequence: int) -> OrderOperation:
    get_order(session, number)
    op = session.scalar(
        select(OrderOperation).where(
            OrderOperation.order_number == number, OrderOperation.sequence == int(sequence)
        )
    )
    if op is None:
        raise NotFound(f"production order {number} has no operation {sequence}")
    return op


def _requirements(
    session: Session, order: ProductionOrder, product: Item
) -> list[tuple[BomLine, Item, int]]:
    """(line, component, scaled quantity) for the order's direct components."""
    bom = session.scalar(
        select(Bom).where(Bom.item == order.item, Bom.version == order.bom_version)
    )
    assert bom is not None  # bound at creation
    out = []
    for line in session.scalars(
        select(BomLine).where(BomLine.bom_id == bom.id).order_by(BomLine.id)
    ):
        component = get_item(session, line.component)
        out.append(
            (line, component, _line_quantity(line, component, unscaled(product, order.quantity)))
        )
    return out


def _line_quantity(line: BomLine, component: Item, parents: Decimal) -> int:
    """Scaled quantity of `component` that `parents` units need, scrap allowance included,
    rounded up to what the component's unit can hold."""
    per_unit = Decimal(line.quantity) / Decimal(10) ** BOM_DECIMALS
    need = per_unit * parents * (1 + Decimal(line.scrap_bp) / Decimal(10_000))
    return int((need * Decimal(10) ** component.decimals).to_integral_value(ROUND_CEILING))


def _free_stock(session: Session, item: str, location: str, *, exclude: str) -> int:
    on_hand = sum(q for _, q in lots_on_hand(session, item, location))
    held = session.scalar(
        select(func.coalesce(func.sum(Reservation.reserved - Reservation.issued), 0)).where(
            Reservation.item == item,
            Reservation.location == location,
            Reservation.open.is_(True),
            Reservation.order_number != exclude,
        )
    )
    return on_hand - int(held)


def _reached(session: Session, order: ProductionOrder, sequence: int) -> int:
    previous = session.scalars(
        select(OrderOperation)
        .where(OrderOperation.order_number == order.number, OrderOperation.sequence < sequence)
        .order_by(OrderOperation.sequence.desc())
    ).first()
    return order.quantity if previous is None else previous.good


def _received_after(session: Session, order: ProductionOrder, sequence: int) -> int:
    """Units of a last operation already received into stock cannot be scrapped here."""
    last = session.scalar(
        select(func.max(OrderOperation.sequence)).where(OrderOperation.order_number == order.number)
    )
    return order.received if last == sequence else 0


def _issued(session: Session, number: str, item: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(StockMovement)
            .where(
                StockMovement.reference == number,
                StockMovement.item == item,
                StockMovement.reason.in_(("issue", "consume")),
            )
        )
    )


def _take(
    session: Session,
    component: Item,
    location: str,
    amount: int,
    *,
    lot: str | None,
    reason: str,
    order: ProductionOrder,
    now: datetime,
    actor: str | None,
    key: str,
) -> list[tuple[str, int, int]]:
    """Take `amount` of a component from `location`, from the named lot or oldest lots
    first: (lot, scaled quantity, movement id) per lot taken. Refused when stock is short."""
    if lot is not None or component.tracking != "lot":
        picks = [(lot or "", amount)]
    else:
        picks, left = [], amount
        for lot_code, held in lots_on_hand(session, component.code, location):
            if left <= 0:
                break
            picks.append((lot_code, min(held, left)))
            left -= picks[-1][1]
        if left > 0:
            raise ValidationFailed(
                f"{location} holds {unscaled(component, amount - left)} {component.uom} of "
                f"{component.code}; {unscaled(component, amount)} are needed for {order.number}",
                details={"quantity": "more than on hand"},
            )
    taken = []
    for index, (lot_code, quantity) in enumerate(picks):
        to_location = WIP_LOCATION if reason == "issue" else None
        movement = move_stock(
            session,
            item=component.code,
            quantity=unscaled(component, quantity),
            reason=reason,
            now=now,
            from_location=location,
            to_location=to_location,
            lot=lot_code or None,
            reference=order.number,
            moved_by=actor,
            idempotency_key=f"{key}:{index}",
        )
        taken.append((lot_code, quantity, movement))
    for reservation in session.scalars(
        select(Reservation).where(
            Reservation.order_number == order.number,
            Reservation.item == component.code,
            Reservation.location == location,
        )
    ):
        reservation.issued += amount
    return taken


def _post_material(
    session: Session,
    order: ProductionOrder,
    component: Item,
    amount: int,
    location: str,
    *,
    now: datetime,
    actor: str | None,
    key: str,
    what: str,
) -> None:
    value = _value(component, amount, _standard(component))
    if not value:
        return
    memo = f"{unscaled(component, amount)} {component.uom} {component.code}"
    post_entry(
        session,
        [
            {"account": WIP_ACCOUNT, "debit": _money(value), "memo": memo},
            {"account": _location_account(session, location), "credit": _money(value)},
        ],
        description=f"{what} for {order.number}",
        reference=order.number,
        now=now,
        posted_by=actor,
        idempotency_key=key,
    )


def _backflush(
    session: Session,
    order: ProductionOrder,
    product: Item,
    sequence: int,
    units: int,
    *,
    now: datetime,
    actor: str | None,
    key: str,
) -> None:
    for line, component, _ in _requirements(session, order, product):
        if line.issue_method != "backflush" or line.operation != sequence:
            continue
        amount = _line_quantity(line, component, unscaled(product, units))
        if amount <= 0:
            continue
        _take(
            session,
            component,
            STORES,
            amount,
            lot=None,
            reason="consume",
            order=order,
            now=now,
            actor=actor,
            key=f"{key}:backflush:{component.code}",
        )
        _post_material(
            session,
            order,
            component,
            amount,
            STORES,
            now=now,
            actor=actor,
            key=f"{key}:backflush:{component.code}",
            what="Backflush",
        )


def _book_time(
    session: Session,
    order: ProductionOrder,
    op: OrderOperation,
    labour_s: int,
    machine_s: int,
    *,
    now: datetime,
    actor: str | None,
    key: str,
) -> None:
    center = session.get(WorkCenter, op.work_center)
    assert center is not None  # a foreign key
    labour = _rate_amount(labour_s, center.labour_rate_cents)
    overhead = _rate_amount(machine_s, center.machine_rate_cents)
    lines = []
    if labour:
        lines += [
            {
                "account": WIP_ACCOUNT,
                "debit": _money(labour),
                "memo": f"labour {Decimal(labour_s) / 3600:.2f} h at {op.work_center}",
            },
            {"account": LABOUR_APPLIED, "credit": _money(labour)},
        ]
    if overhead:
        lines += [
            {
                "account": WIP_ACCOUNT,
                "debit": _money(overhead),
                "memo": f"machine {Decimal(machine_s) / 3600:.2f} h at {op.work_center}",
            },
            {"account": OVERHEAD_APPLIED, "credit": _money(overhead)},
        ]
    if lines:
        post_entry(
            session,
            lines,
            description=f"Operation {op.sequence} of {order.number}: labour and machine time",
            reference=order.number,
            now=now,
            posted_by=actor,
            idempotency_key=f"{key}:time",
        )


def _book_scrap(
    session: Session,
    order: ProductionOrder,
    product: Item,
    amount: int,
    *,
    now: datetime,
    actor: str | None,
    key: str,
) -> None:
    lot = (order.lot or f"L-{order.number}") if product.tracking == "lot" else None
    move_stock(
        session,
        item=product.code,
        quantity=unscaled(product, amount),
        reason="produce",
        now=now,
        to_location=SCRAP_LOCATION,
        lot=lot,
        reference=order.number,
        moved_by=actor,
        idempotency_key=key,
    )
    value = _value(product, amount, product.scrap_value_cents)
    if value:
        post_entry(
            session,
            [
                {
                    "account": _location_account(session, SCRAP_LOCATION),
                    "debit": _money(value),
                    "memo": f"{unscaled(product, amount)} {product.uom} {product.code} scrapped",
                },
                {"account": WIP_ACCOUNT, "credit": _money(value)},
            ],
            description=f"Scrap recovery of {order.number}",
            reference=order.number,
            now=now,
            posted_by=actor,
            idempotency_key=key,
        )


def _consume_leftovers(
    session: Session, order: ProductionOrder, *, now: datetime, actor: str | None
) -> None:
    """Material issued to the shop floor for the order and still there is used up (its value
    is already in WIP; what was not needed shows as material usage variance)."""
    issued: dict[tuple[str, str], int] = {}
    for item, lot, source, quantity in session.execute(
        select(
            StockMovement.item,
            StockMovement.lot,
            StockMovement.from_location,
            func.sum(StockMovement.quantity),
        )
        .where(
            StockMovement.reference == order.number,
            (StockMovement.to_location == WIP_LOCATION)
            | (StockMovement.from_location == WIP_LOCATION),
        )
        .group_by(StockMovement.item, StockMovement.lot, StockMovement.from_location)
    ):
        sign = -1 if source == WIP_LOCATION else 1
        issued[(item, lot)] = issued.get((item, lot), 0) + sign * int(quantity)
    for (item, lot), quantity in sorted(issued.items()):
        if quantity > 0:
            component = get_item(session, item)
            move_stock(
                session,
                item=item,
                quantity=unscaled(component, quantity),
                reason="consume",
                now=now,
                from_location=WIP_LOCATION,
                lot=lot or None,
                reference=order.number,
                moved_by=actor,
                idempotency_key=f"close:{order.number}:{item}:{lot}",
            )


def _link_genealogy(
    session: Session, order: ProductionOrder, product: Item, lot: str, now: datetime
) -> None:
    used: dict[tuple[str, str], int] = {}
    for item, input_lot, quantity in session.execute(
        select(StockMovement.item, StockMovement.lot, func.sum(StockMovement.quantity))
        .where(
            StockMovement.reference == order.number,
            StockMovement.lot != "",
            StockMovement.reason.in_(("issue", "consume")),
            StockMovement.from_location != WIP_LOCATION,
        )
        .group_by(StockMovement.item, StockMovement.lot)
    ):
        used[(item, input_lot)] = int(quantity)
    for (item, input_lot), quantity in used.items():
        link = session.scalar(
            select(GenealogyLink).where(
                GenealogyLink.order_number == order.number,
                GenealogyLink.parent_item == product.code,
                GenealogyLink.parent_lot == lot,
                GenealogyLink.child_item == item,
                GenealogyLink.child_lot == input_lot,
            )
        )
        if link is None:
            session.add(
                GenealogyLink(
                    order_number=order.number,
                    parent_item=product.code,
                    parent_lot=lot,
                    child_item=item,
                    child_lot=input_lot,
                    quantity=quantity,
                    at=now,
                )
            )
        else:
            link.quantity = quantity


def _closing_wip(session: Session, number: str) -> tuple[int, int]:
    """(debit, credit) of WIP in the order's close entry, if it is posted."""
    row = session.execute(
        select(
            func.coalesce(func.sum(JournalLine.debit_cents), 0),
            func.coalesce(func.sum(JournalLine.credit_cents), 0),
        )
        .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .where(
            JournalEntry.idempotency_key == f"close:{number}", JournalLine.account == WIP_ACCOUNT
        )
    ).one()
    return int(row[0]), int(row[1])


def _standard(item: Item) -> int:
    return item.std_material_cents + item.std_labour_cents + item.std_overhead_cents


def _value(item: Item, amount: int, cents_per_unit: int) -> int:
    """Cents for a scaled quantity at a price per unit, rounded half up to the cent."""
    units = Decimal(amount) / Decimal(10) ** item.decimals
    return int((units * cents_per_unit).to_integral_value(ROUND_HALF_UP))


def _rate_amount(seconds: int, cents_per_hour: int) -> int:
    return int((Decimal(seconds) * cents_per_hour / 3600).to_integral_value(ROUND_HALF_UP))


def _seconds(hours: Any, what: str, default: Decimal | int) -> int:
    if hours is None or hours == "":
        return int(Decimal(default).to_integral_value(ROUND_HALF_UP))
    try:
        value = Decimal(str(hours))
        if isinstance(hours, bool) or not value.is_finite() or value < 0:
            raise ValueError
    except (ArithmeticError, ValueError):
        raise ValidationFailed(
            f"{what} {hours!r} must be a number of hours, 0 or more", details={what: "invalid"}
        ) from None
    return int((value * 3600).to_integral_value(ROUND_HALF_UP))


def _money(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


def _location_account(session: Session, code: str) -> str:
    location = session.get(Location, code)
    if location is None:
        raise NotFound(f"location {code!r} does not exist")
    if location.account is None:
        raise ValidationFailed(
            f"location {code} has no ledger account: its stock cannot be valued",
            details={"location": "no account"},
        )
    return location.account
