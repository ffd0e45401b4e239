"""The ERP interface over real HTTP: an ISA-95 OperationsSchedule starts one order release
per request (or none, with every problem named); an order's OperationsPerformance reports
what was made, scrapped and consumed with lots, and the hours, as JSON and as B2MML XML."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy.orm import Session

from taktflow.mfg.execution import complete_operation, receive_finished_goods, start_operation
from taktflow.mfg.seed import load_plant
from taktflow.mfg.stock import move_stock

ROOT = Path(__file__).parents[2]
FILES = (
    "workflows/order_release.yaml",
    "workflows/routing_execution.yaml",
    "workflows/quality_gate.yaml",
    "workflows/financial_posting.bpmn",
    "forms",
)


@pytest.fixture
def plant(app: Any) -> Any:
    from taktflow.app import workflow_engine

    with app.app_context():
        engine = workflow_engine()
        load_plant(engine.bind, ROOT / "seed_data")
        engine.deploy_paths([str(ROOT / f) for f in FILES])
        return engine


def schedule(*requests: dict[str, Any]) -> dict[str, Any]:
    return {"ID": "W10", "OperationsRequest": list(requests)}


def request_for(number: str, item: str = "HINGE-H1", quantity: str = "40", **extra: Any) -> dict:
    return {
        "ID": number,
        "Priority": 2,
        "EndTime": "2026-03-06T14:00:00+01:00",
        "SegmentRequirement": [
            {
                "MaterialRequirement": [
                    {
                        "MaterialDefinitionID": item,
                        "MaterialUse": "Produced",
                        "Quantity": {"QuantityString": quantity, "UnitOfMeasure": "pcs"},
                    }
                ]
            }
        ],
    } | extra


def test_a_schedule_starts_one_order_release_per_request(call: Any, plant: Any) -> None:
    response = call(
        "POST",
        "/erp/operations-schedule",
        "planner",
        json=schedule(request_for("PO-7001"), request_for("PO-7002", "PLATE-P2", "25")),
    )
    assert response.status_code == 201, response.json
    acks = response.json["Acknowledge"]
    assert [a["OperationsRequestID"] for a in acks] == ["PO-7001", "PO-7002"]
    assert {a["AcknowledgeState"] for a in acks} == {"Accepted"}
    order = call("GET", "/erp/production-orders/PO-7002/performance", "manager").json
    assert order["OperationsResponse"]["ResponseState"] == "Forecast"
    assert order["OperationsResponse"]["ERPReference"] == "W10/PO-7002"
    # The same schedule again: the orders exist, nothing new starts.
    again = call(
        "POST", "/erp/operations-schedule", "planner", json=schedule(request_for("PO-7001"))
    )
    assert again.status_code == 422
    assert (
        "OperationsRequest[1].ID: production order PO-7001 exists already"
        in (again.json["error"]["message"])
    )


def test_a_bad_schedule_is_refused_whole_with_each_problem_named(call: Any, plant: Any) -> None:
    bad = schedule(
        request_for("PO-8001"),
        request_for("PO-8002", "NOPE"),
        request_for("PO-8003", quantity="-3"),
        request_for("PO-8004", "BOLT-M8"),
        request_for("PO-8005", Priority=12),
        request_for("PO-8006", EndTime="next tuesday"),
        request_for("PO-8001"),
    )
    response = call("POST", "/erp/operations-schedule", "planner", json=bad)
    assert response.status_code == 422
    problems = response.json["error"]["details"]["problems"]
    assert problems == [
        "OperationsRequest[2].MaterialRequirement.MaterialDefinitionID: item 'NOPE' does not exist",
        "OperationsRequest[3].MaterialRequirement.Quantity: must be positive",
        "OperationsRequest[4]: BOLT-M8 has no BOM and routing: it is not made here",
        "OperationsRequest[5].Priority: a whole number from 1 (first) to 9",
        "OperationsRequest[6].EndTime: due date 'next tuesday' is not an ISO 8601 date-time "
        "(2026-03-06T14:00:00+01:00)",
        "OperationsRequest[7].ID: PO-8001 appears twice in the schedule",
    ]
    # Nothing was started, not even the good first request.
    assert call("GET", "/erp/production-orders/PO-8001/performance", "manager").status_code == 404
    assert (
        call(
            "POST", "/erp/operations-schedule", "operator", json=schedule(request_for("PO-8009"))
        ).status_code
        == 403
    )
    assert call("POST", "/erp/operations-schedule", "planner", data="[").status_code == 400


def test_performance_reports_quantities_lots_and_hours(call: Any, plant: Any, app: Any) -> None:
    from taktflow.app import workflow_engine

    response = call(
        "POST",
        "/erp/operations-schedule",
        "planner",
        json=schedule(request_for("PO-9001", "PLATE-P2", "10")),
    )
    assert response.status_code == 201
    with app.app_context():
        engine = workflow_engine()
        now = engine.clock.now()
        with Session(engine.bind) as s, s.begin():
            move_stock(
                s,
                item="PLATE-BLANK",
                quantity=10,
                reason="receipt",
                now=now,
                to_location="RM-STORES",
            )
            from taktflow.mfg.execution import release_order

            release_order(s, "PO-9001", now=now)
            start_operation(s, "PO-9001", 20, now=now, machine="press_2", operator="olga")
            complete_operation(
                s,
                "PO-9001",
                20,
                good=9,
                scrap=1,
                scrap_reason="crack",
                labour_hours="1.5",
                machine_hours="1.25",
                now=now,
            )
            start_operation(s, "PO-9001", 30, now=now, machine="test_station_10")
            complete_operation(s, "PO-9001", 30, good=9, labour_hours=1, machine_hours=0, now=now)
            receive_finished_goods(s, "PO-9001", now=now)
    doc = call("GET", "/erp/production-orders/PO-9001/performance", "planner").json
    response_doc = doc["OperationsResponse"]
    assert response_doc["ResponseState"] == "Completed"
    assert response_doc["MaterialActual"] == [
        {
            "MaterialDefinitionID": "PLATE-P2",
            "MaterialLotID": "L-PO-9001",
            "MaterialUse": "Produced",
            "Quantity": {"QuantityString": "9", "DataType": "decimal", "UnitOfMeasure": "pcs"},
        },
        {
            "MaterialDefinitionID": "PLATE-BLANK",
            "MaterialLotID": None,
            "MaterialUse": "Consumed",
            "Quantity": {"QuantityString": "10", "DataType": "decimal", "UnitOfMeasure": "pcs"},
        },
    ]
    press = response_doc["SegmentResponse"][0]
    assert press["PersonnelActual"][0]["Quantity"]["QuantityString"] == "1.5"
    assert press["EquipmentActual"] == [
        {
            "EquipmentID": "press_2",
            "Quantity": {"QuantityString": "1.25", "DataType": "decimal", "UnitOfMeasure": "h"},
        }
    ]
    assert [m["Quantity"]["QuantityString"] for m in press["MaterialActual"]] == ["9", "1"]
    xml = call("GET", "/erp/production-orders/PO-9001/performance?format=xml", "planner")
    assert xml.mimetype == "application/xml"
    root = ET.fromstring(xml.data)
    ns = {"b": "http://www.mesa.org/xml/B2MML"}
    assert root.tag == "{http://www.mesa.org/xml/B2MML}OperationsPerformance"
    assert len(root.findall("b:OperationsResponse/b:SegmentResponse", ns)) == 2
    assert root.find("b:OperationsResponse/b:ResponseState", ns).text == "Completed"
    assert (
        call("GET", "/erp/production-orders/PO-9001/performance?format=csv", "planner").status_code
        == 400
    )
    assert call("GET", "/erp/production-orders/PO-9001/performance", "operator").status_code == 403
