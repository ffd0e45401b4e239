"""REST API v1: process models, instances, tasks and messages, for systems and screens.

Views stay thin: read the request, check the caller's permission, call one service, return
JSON. Errors are {error: {code, message, details}} with the right status (see errors.py).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, jsonify, request

from taktflow.api import api_bp
from taktflow.api.auth import authenticated
from taktflow.auth.permissions import may_work_on, require, require_task
from taktflow.auth.service import Principal
from taktflow.engine.models import STATUSES
from taktflow.errors import BadRequest, NotFound

MAX_LIST = 500


def _engine() -> Any:
    from taktflow.app import workflow_engine

    return workflow_engine()


def _body(*, required: bool = True) -> dict[str, Any]:
    """The JSON object sent with the request (BadRequest when it is not one)."""
    raw = request.get_data(cache=True, as_text=False)
    if not raw:
        if required:
            raise BadRequest("send a JSON object as the request body")
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"the request body must be a JSON object, not {type(value).__name__}")
    return value


def _field(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...
) -> Any:
    if name not in body:
        if default is ...:
            raise BadRequest(f"missing field {name!r}")
        return default
    value = body[name]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        expected = (
            kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        )
        raise BadRequest(f"field {name!r} must be {expected}, not {type(value).__name__}")
    return value


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be a whole number, not {raw!r}") from None


# ---------------------------------------------------------------------- who am I
@api_bp.get("/me")
@authenticated
def me(principal: Principal) -> Any:
    return jsonify(
        {
            "username": principal.username,
            "display_name": principal.display_name,
            "roles": sorted(principal.roles),
            "via": "token" if principal.token_id is not None else "session",
        }
    )


# ---------------------------------------------------------------------- process models
@api_bp.get("/processes")
@authenticated
def list_processes(principal: Principal) -> Any:
    require(principal, "process.read")
    return jsonify(_engine().processes())


@api_bp.get("/processes/<process_id>")
@authenticated
def get_process(principal: Principal, process_id: str) -> Any:
    require(principal, "process.read")
    return jsonify(_engine().process(process_id))


@api_bp.get("/processes/<process_id>/versions/<int:version>/bpmn")
@authenticated
def get_process_bpmn(principal: Principal, process_id: str, version: int) -> Any:
    require(principal, "process.read")
    xml = _engine().process_source(process_id, version)
    return Response(xml, mimetype="application/xml")


@api_bp.get("/forms")
@authenticated
def list_forms(principal: Principal) -> Any:
    require(principal, "process.read")
    return jsonify(_engine().forms())


@api_bp.get("/forms/<name>")
@authenticated
def get_form(principal: Principal, name: str) -> Any:
    """A deployed form: its version, its YAML and its fields (labels not filled with data)."""
    from taktflow.forms.submission import prepare

    require(principal, "process.read")
    version = _int_arg("version", 0) or None
    found = _engine().form_source(name, version)
    form = _engine().form(name, found["version"])
    return jsonify(found | {"definition": prepare(form, {}, html=False)})


@api_bp.get("/connectors")
@authenticated
def list_connectors(principal: Principal) -> Any:
    """Connector files with their last stored values and their messages by inbox status."""
    from flask import current_app

    from taktflow.connectors import overview

    require(principal, "connector.read")
    config = current_app.config["TAKTFLOW"]
    return jsonify(overview(config.connectors_path, _engine(), config.mqtt_url))


@api_bp.post("/messages/<int:message_id>/replay")
@authenticated
def replay_message(principal: Principal, message_id: int) -> Any:
    """Deliver a dead-lettered (failed) inbox message again, e.g. after deploying its process."""
    require(principal, "connector.replay")
    return jsonify(_engine().replay_message(message_id, actor=principal.username).to_dict())


@api_bp.post("/outbox/<int:outbox_id>/replay")
@authenticated
def replay_outbox(principal: Principal, outbox_id: int) -> Any:
    """Send a failed outbox row (MQTT publish, Modbus write) again."""
    require(principal, "connector.replay")
    return jsonify(_engine().replay_outbox(outbox_id, actor=principal.username))


@api_bp.post("/processes")
@authenticated
def deploy(principal: Principal) -> Any:
    """Deploy one uploaded .bpmn, .dmn or .yaml file (multipart `file`, or JSON name+text)."""
    require(principal, "process.deploy")
    upload = request.files.get("file")
    if upload is not None:
        name = upload.filename or ""
        raw = upload.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"{name}: the file is not UTF-8 text") from None
    else:
        body = _body()
        name = _field(body, "name", str)
        text = _field(body, "text", str)
    if not name:
        raise BadRequest("the uploaded file has no name (it must end in .bpmn, .dmn or .yaml)")
    results = _engine().deploy_text(name, text, actor=principal.username)
    return jsonify(results), 201 if any(r["changed"] for r in results) else 200


# ---------------------------------------------------------------------- instances
@api_bp.post("/instances")
@authenticated
def start_instance(principal: Principal) -> Any:
    require(principal, "instance.start")
    body = _body()
    process_id = _field(body, "process_id", str)
    data = _field(body, "data", dict, {})
    started = _engine().start(process_id, data, actor=principal.username)
    return jsonify(_engine().instance(started["instance_id"])), 201


@api_bp.get("/instances")
@authenticated
def list_instances(principal: Principal) -> Any:
    require(principal, "instance.read")
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    limit = min(max(_int_arg("limit", 100), 1), MAX_LIST)
    rows = _engine().instances(process_id=request.args.get("process"), status=status, limit=limit)
    return jsonify(rows)


@api_bp.get("/instances/<int:instance_id>")
@authenticated
def get_instance(principal: Principal, instance_id: int) -> Any:
    require(principal, "instance.read")
    return jsonify(_engine().instance(instance_id))


@api_bp.post("/instances/<int:instance_id>/<any(terminate, suspend, resume, retry):action>")
@authenticated
def control_instance(principal: Principal, instance_id: int, action: str) -> Any:
    require(principal, "instance.control")
    body = _body(required=False)
    engine = _engine()
    if action == "terminate":
        engine.terminate(instance_id, actor=principal.username, reason=body.get("reason", ""))
    elif action == "suspend":
        engine.suspend(instance_id, actor=principal.username)
    elif action == "resume":
        engine.resume(instance_id, actor=principal.username)
    else:
        engine.retry(instance_id, _field(body, "data", dict, None), actor=principal.username)
    return jsonify(engine.instance(instance_id))


# ---------------------------------------------------------------------- tasks
@api_bp.get("/tasks")
@authenticated
def list_tasks(principal: Principal) -> Any:
    """Ready tasks for the caller's roles (admins: all). ?mine=1: only those they claimed."""
    tasks = [t for t in _engine().tasks() if may_work_on(principal, t)]
    filters = {k: request.args.get(k) for k in ("lane", "process")}
    if filters["lane"]:
        tasks = [t for t in tasks if t["lane"] == filters["lane"]]
    if filters["process"]:
        tasks = [t for t in tasks if t["process_id"] == filters["process"]]
    if request.args.get("mine") in ("1", "true", "yes"):
        tasks = [t for t in tasks if t["claimed_by"] == principal.username]
    work_center = request.args.get("work_center")
    if work_center:
        tasks = [t for t in tasks if _work_center(t) == work_center]
    return jsonify(tasks[:MAX_LIST])


def _work_center(task: dict[str, Any]) -> Any:
    """The work center a task's instance is at (its data's `work_center`), if any."""
    data = _engine().instance(task["instance_id"], history=False)["data"]
    return data.get("work_center")


def _task_for(principal: Principal, task_id: str, what: str) -> dict[str, Any]:
    task = _engine().task(task_id)
    require_task(principal, task, what)
    return task


@api_bp.get("/tasks/<task_id>")
@authenticated
def get_task(principal: Principal, task_id: str) -> Any:
    from taktflow.app import task_forms

    _task_for(principal, task_id, "see")
    view = task_forms().view(task_id, html=False)
    return jsonify(view["task"] | {"data": view["data"], "form_definition": view["form"]})


@api_bp.post("/tasks/<task_id>/claim")
@authenticated
def claim_task(principal: Principal, task_id: str) -> Any:
    _task_for(principal, task_id, "claim")
    return jsonify(_engine().claim_task(task_id, principal.username))


@api_bp.post("/tasks/<task_id>/unclaim")
@authenticated
def unclaim_task(principal: Principal, task_id: str) -> Any:
    from taktflow.auth.permissions import allowed

    _task_for(principal, task_id, "unclaim")
    force = allowed(principal, "task.assign")
    return jsonify(_engine().unclaim_task(task_id, principal.username, force=force))


@api_bp.post("/tasks/<task_id>/assign")
@authenticated
def assign_task(principal: Principal, task_id: str) -> Any:
    require(principal, "task.assign")
    body = _body()
    user = _field(body, "user", str)
    from taktflow.app import accounts

    target = accounts().principal(user)
    if target is None:
        raise NotFound(f"user {user!r} does not exist or is disabled")
    task = _engine().task(task_id)
    require_task(target, task, "take")
    return jsonify(_engine().assign_task(task_id, target.username, actor=principal.username))


@api_bp.post("/tasks/<task_id>/complete")
@authenticated
def complete_task(principal: Principal, task_id: str) -> Any:
    from taktflow.app import accounts, task_forms

    _task_for(principal, task_id, "complete")
    body = _body(required=False)
    data = _field(body, "data", dict, {})
    view = task_forms().submit(
        task_id,
        data,
        actor=principal.username,
        display_name=principal.display_name,
        check_password=lambda password: accounts().verify_password(principal.username, password),
        strict=True,
    )
    return jsonify(view)


# ---------------------------------------------------------------------- messages
@api_bp.post("/messages")
@authenticated
def send_message(principal: Principal) -> Any:
    require(principal, "message.send")
    body = _body()
    name = _field(body, "name", str)
    correlation = _field(body, "correlation", dict, {})
    data = _field(body, "data", dict, {})
    key = _field(body, "idempotency_key", str, None)
    result = _engine().send_message(
        name,
        correlation=correlation,
        data=data,
        idempotency_key=key,
        source=f"api:{principal.username}",
    )
    return jsonify(
        {
            "message_id": result.message_id,
            "status": result.status,
            "delivered_to": result.delivered_to,
            "started": result.started,
            "duplicate": result.duplicate,
        }
    ), 202
