"""The ERP interface's documents, shaped after ISA-95 / B2MML V0700.

ERP -> taktflow: an OperationsSchedule whose OperationsRequests are production orders.
taktflow -> ERP: an OperationsPerformance per order, with one SegmentResponse per operation
(EquipmentActual and PersonnelActual hours, produced and scrapped MaterialActual) and the
order's consumed material with its lots. No Python B2MML library exists; the JSON uses the
B2MML element names, and `to_xml` writes the same document as B2MML-named XML.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree as ET

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taktflow.errors import NotFound, ValidationFailed
from taktflow.mfg.bom import current_bom
from taktflow.mfg.models import (
    Item,
    OrderOperation,
    ProductionOrder,
    Routing,
    StockMovement,
)
from taktflow.mfg.orders import parse_due
from taktflow.mfg.stock import scaled, unscaled

B2MML_NAMESPACE = "http://www.mesa.org/xml/B2MML"
#: ISA-95 request / response states for taktflow's order states.
RESPONSE_STATES = {"planned": "Forecast", "released": "Released", "running": "Running",
                   "held": "Held", "completed": "Completed", "closed": "Closed",
                   "cancelled": "Cancelled"}  # fmt: skip
MAX_REQUESTS = 500


def parse_schedule(session: Session, doc: Any) -> list[dict[str, Any]]:
    """The production orders an OperationsSchedule asks for, checked against the plant:
    [{order_number, item, quantity, priority, due_at, erp_reference}]. Every problem is
    named by its place (`OperationsRequest[2].SegmentRequirement...`); nothing is returned
    unless every request is good."""
    if not isinstance(doc, Mapping):
        raise ValidationFailed("an OperationsSchedule is a JSON object")
    schedule_id = doc.get("ID")
    requests = doc.get("OperationsRequest")
    problems: list[str] = []
    if not isinstance(schedule_id, str) or not schedule_id.strip():
        problems.append("ID: the schedule needs an ID (text)")
    if not isinstance(requests, list) or not requests:
        problems.append("OperationsRequest: a list of one or more requests is needed")
        requests = []
    elif len(requests) > MAX_REQUESTS:
        problems.append(f"OperationsRequest: at most {MAX_REQUESTS} requests per schedule")
        requests = []
    orders, seen = [], set()
    for index, raw in enumerate(requests, 1):
        where = f"OperationsRequest[{index}]"
        try:
            orders.append(_request(session, raw, where, str(schedule_id), seen))
        except ValidationFailed as exc:
            problems.append(str(exc))
    if problems:
        raise ValidationFailed("the OperationsSchedule was not accepted: " + "; ".join(problems),
                               details={"problems": problems})  # fmt: skip
    return orders


def _request(
    session: Session, raw: Any, where: str, schedule_id: str, seen: set[str]
) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValidationFailed(f"{where}: a request is a JSON object")
    number = raw.get("ID")
    if not isinstance(number, str) or not 0 < len(number) <= 40:
        raise ValidationFailed(f"{where}.ID: the order number, 1 to 40 characters")
    if number in seen:
        raise ValidationFailed(f"{where}.ID: {number} appears twice in the schedule")
    seen.add(number)
    if session.get(ProductionOrder, number) is not None:
        raise ValidationFailed(f"{where}.ID: production order {number} exists already")
    produced = [m for segment in _list(raw.get("SegmentRequirement"))
                for m in _list(segment.get("MaterialRequirement") if isinstance(segment, Mapping)
                               else None)
                if isinstance(m, Mapping) and m.get("MaterialUse") == "Produced"]  # fmt: skip
    if len(produced) != 1:
        raise ValidationFailed(f"{where}.SegmentRequirement: exactly one MaterialRequirement with "
                               f"MaterialUse 'Produced' names what to make (found "
                               f"{len(produced)})")  # fmt: skip
    material = produced[0]
    code = material.get("MaterialDefinitionID")
    item = session.get(Item, code) if isinstance(code, str) else None
    if item is None:
        raise ValidationFailed(f"{where}.MaterialRequirement.MaterialDefinitionID: item {code!r} "
                               "does not exist")  # fmt: skip
    if (
        current_bom(session, item.code) is None
        or session.scalar(select(Routing.id).where(Routing.item == item.code).limit(1)) is None
    ):
        raise ValidationFailed(f"{where}: {item.code} has no BOM and routing: it is not made here")
    quantity = material.get("Quantity")
    text = quantity.get("QuantityString") if isinstance(quantity, Mapping) else None
    unit = quantity.get("UnitOfMeasure") if isinstance(quantity, Mapping) else None
    try:
        amount = scaled(item, text, "Quantity.QuantityString")
    except ValidationFailed as exc:
        raise ValidationFailed(f"{where}.MaterialRequirement.{exc}") from None
    if amount <= 0:
        raise ValidationFailed(f"{where}.MaterialRequirement.Quantity: must be positive")
    if unit is not None and unit != item.uom:
        raise ValidationFailed(f"{where}.MaterialRequirement.Quantity.UnitOfMeasure: {item.code} "
                               f"is counted in {item.uom}, not {unit}")  # fmt: skip
    priority = raw.get("Priority", 5)
    if not isinstance(priority, int) or isinstance(priority, bool) or not 1 <= priority <= 9:
        raise ValidationFailed(f"{where}.Priority: a whole number from 1 (first) to 9")
    try:
        due = parse_due(raw.get("EndTime"))
    except ValidationFailed as exc:
        raise ValidationFailed(f"{where}.EndTime: {exc}") from None
    return {"order_number": number, "item": item.code, "quantity": str(unscaled(item, amount)),
            "priority": priority, "due_at": due.isoformat() if due else None,
            "erp_reference": f"{schedule_id}/{number}"}  # fmt: skip


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def performance(session: Session, number: str, *, now: datetime) -> dict[str, Any]:
    """The OperationsPerformance of one production order: what was made, scrapped and
    consumed (with lots), the hours of people and machines per operation, its state."""
    order = session.get(ProductionOrder, number)
    if order is None:
        raise NotFound(f"production order {number!r} does not exist")
    product = session.get(Item, order.item)
    assert product is not None
    segments = []
    for op in session.scalars(select(OrderOperation).where(OrderOperation.order_number == number)
                              .order_by(OrderOperation.sequence)):  # fmt: skip
        segments.append({
            "ID": f"{number}-{op.sequence}",
            "ProcessSegmentID": str(op.sequence),
            "Description": op.name,
            "HierarchyScope": {"EquipmentID": op.work_center, "EquipmentLevel": "WorkCenter"},
            "SegmentState": _segment_state(op.status),
            "ActualStartTime": _time(op.started_at),
            "ActualEndTime": _time(op.completed_at),
            "PersonnelActual": [{"PersonID": op.operator,
                                 "Quantity": _quantity(Decimal(op.labour_s) / 3600, "h")}]
            if op.operator or op.labour_s else [],
            "EquipmentActual": [{"EquipmentID": op.machine or op.work_center,
                                 "Quantity": _quantity(Decimal(op.machine_s) / 3600, "h")}],
            "MaterialActual": [
                {"MaterialDefinitionID": product.code, "MaterialLotID": order.lot,
                 "MaterialUse": "Produced", "Quantity": _quantity(unscaled(product, op.good),
                                                                  product.uom)},
                {"MaterialDefinitionID": product.code, "MaterialLotID": order.lot,
                 "MaterialUse": "Scrap", "Quantity": _quantity(unscaled(product, op.scrap),
                                                               product.uom)}],
            "SegmentData": [
                {"ID": "PlannedQuantity", "Value": _value(unscaled(product, op.planned))},
                {"ID": "ReworkQuantity", "Value": _value(unscaled(product, op.rework))},
                {"ID": "MachineCountedGood", "Value": _value(unscaled(product, op.counted_good))},
                {"ID": "MachineCountedReject",
                 "Value": _value(unscaled(product, op.counted_reject))},
                {"ID": "ScrapReason", "Value": _value(op.scrap_reason)}],
        })  # fmt: skip
    consumed = []
    for code, lot, quantity in session.execute(
        select(StockMovement.item, StockMovement.lot, func.sum(StockMovement.quantity))
        .where(StockMovement.reference == number, StockMovement.reason.in_(("issue", "consume")),
               StockMovement.from_location != "WIP")
        .group_by(StockMovement.item, StockMovement.lot).order_by(StockMovement.item)
    ):  # fmt: skip
        item = session.get(Item, code)
        assert item is not None
        amount = _quantity(unscaled(item, int(quantity)), item.uom)
        consumed.append({"MaterialDefinitionID": code, "MaterialLotID": lot or None,
                         "MaterialUse": "Consumed", "Quantity": amount})  # fmt: skip
    received = {"MaterialDefinitionID": product.code, "MaterialLotID": order.lot,
                "MaterialUse": "Produced",
                "Quantity": _quantity(unscaled(product, order.received), product.uom)}  # fmt: skip
    return {
        "ID": f"PERF-{number}",
        "PublishedDate": _time(now),
        "OperationsType": "Production",
        "OperationsRequestID": number,
        "OperationsResponse": {
            "ID": number,
            "ResponseState": RESPONSE_STATES.get(order.status, order.status),
            "ERPReference": order.erp_reference,
            "StartTime": min((s["ActualStartTime"] for s in segments if s["ActualStartTime"]),
                             default=None),
            "EndTime": max((s["ActualEndTime"] for s in segments if s["ActualEndTime"]),
                           default=None),
            "MaterialActual": [received, *consumed],
            "SegmentResponse": segments,
        },
    }  # fmt: skip


def to_xml(doc: Mapping[str, Any], root: str) -> str:
    """The document as XML with B2MML element names: a list repeats its element, None
    leaves the element out."""
    element = ET.Element(root, xmlns=B2MML_NAMESPACE)
    _fill(element, doc)
    ET.indent(element)
    return ET.tostring(element, encoding="unicode", xml_declaration=True)


def _fill(parent: ET.Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            for one in child if isinstance(child, list) else [child]:
                if one is None:
                    continue
                _fill(ET.SubElement(parent, key), one)
    else:
        parent.text = str(value)


def _segment_state(status: str) -> str:
    return {"waiting": "Waiting", "running": "Running", "rework": "Running",
            "completed": "Completed"}.get(status, status)  # fmt: skip


def _quantity(amount: Decimal, unit: str) -> dict[str, str]:
    return {"QuantityString": _value(amount), "DataType": "decimal", "UnitOfMeasure": unit}


def _value(value: Any) -> Any:
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text if "." not in text else text.rstrip("0").rstrip(".") or "0"
    return value


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
