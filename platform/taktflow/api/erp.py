"""The ERP interface: production orders in (an ISA-95 OperationsSchedule), production
performance out (an OperationsPerformance per order, as JSON or B2MML-named XML).

An accepted schedule starts the order release workflow once per order; the workflow creates
the order, reserves its material and asks the planner to release it (docs/erp-interface.md).
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from sqlalchemy.orm import Session

from taktflow.api import api_bp
from taktflow.api.auth import authenticated
from taktflow.api.v1 import _body, _engine
from taktflow.auth.permissions import require
from taktflow.auth.service import Principal
from taktflow.errors import BadRequest
from taktflow.mfg.isa95 import parse_schedule, performance, to_xml

#: The workflow each accepted OperationsRequest starts (workflows/order_release.yaml).
RELEASE_PROCESS = "order_release"


@api_bp.post("/erp/operations-schedule")
@authenticated
def receive_schedule(principal: Principal) -> Any:
    require(principal, "erp.write")
    body = _body()
    engine = _engine()
    with Session(engine.bind) as session:
        orders = parse_schedule(session, body)
    accepted = []
    for order in orders:
        started = engine.start(RELEASE_PROCESS, order, actor=principal.username)
        accepted.append({"OperationsRequestID": order["order_number"],
                         "AcknowledgeState": "Accepted", "instance_id": started["instance_id"],
                         "status": started["status"]})  # fmt: skip
    return jsonify({"ID": body["ID"], "Acknowledge": accepted}), 201


@api_bp.get("/erp/production-orders/<number>/performance")
@authenticated
def order_performance(principal: Principal, number: str) -> Any:
    require(principal, "erp.read")
    engine = _engine()
    with Session(engine.bind) as session:
        doc = performance(session, number, now=engine.clock.now())
    wanted = request.args.get("format", "json")
    if wanted == "xml":
        return Response(to_xml(doc, "OperationsPerformance"), mimetype="application/xml")
    if wanted != "json":
        raise BadRequest(f"format must be json or xml, not {wanted!r}")
    return jsonify(doc)
