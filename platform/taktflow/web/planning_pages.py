"""The planner's page for a new production order (/orders/new, docs/factory-workflows.md).

Thin: the form is the deployed `production_order_request`, checked by the forms service; the
options and the workflow's start data come from taktflow.mfg.planning; the start is the
engine's, as for an order from the ERP.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from taktflow.auth.service import Principal
from taktflow.errors import TaktflowError, ValidationFailed
from taktflow.mfg import planning
from taktflow.web import page, web_bp

PERMISSION = "order.create"


def _form_page(data: dict[str, Any], errors: dict[str, str], values: dict[str, Any]) -> str:
    from taktflow.app import task_forms

    form = task_forms().prepared(planning.FORM, data, html=True)
    return render_template("plant_new_order.html", form=form, errors=errors, values=values)


@web_bp.get("/orders/new")
@page(PERMISSION)
def new_order(user: Principal) -> Any:
    from taktflow.app import workflow_engine

    engine = workflow_engine()
    try:
        with Session(engine.bind) as session:
            data = planning.order_form_data(session, engine.clock.now())
        return _form_page(data, {}, {})
    except TaktflowError as exc:  # the form is not deployed
        flash(exc.message, "error")
        return redirect(url_for("web.tasks"))


@web_bp.post("/orders/new")
@page(PERMISSION)
def create_order(user: Principal) -> Any:
    from taktflow.app import task_forms, workflow_engine

    engine = workflow_engine()
    raw = {k: v for k, v in request.form.items() if k != "csrf_token"}
    with Session(engine.bind) as session:
        data = planning.order_form_data(session, engine.clock.now())
        try:
            values = task_forms().check(planning.FORM, raw, data, actor=user.username,
                                        strict=False)  # fmt: skip
            start = planning.start_data(session, values, engine.clock.now())
        except ValidationFailed as exc:
            errors = (exc.details or {}).get("fields") or {"_": exc.message}
            return _form_page(data, errors, raw), 422
        except TaktflowError as exc:  # the form is not deployed
            flash(exc.message, "error")
            return redirect(url_for("web.tasks"))
    started = engine.start(planning.PROCESS, start, actor=user.username)
    flash(f"Production order {start['order_number']} is created: {start['quantity']:g} x "
          f"{start['item']}. Its material is being reserved; the release comes back to the "
          "planners' tasks.", "success")  # fmt: skip
    return redirect(url_for("web.instance", instance_id=started["instance_id"]))
