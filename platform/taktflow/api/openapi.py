"""The OpenAPI 3 document of /api/v1, served at /api/v1/openapi.json.

Each operation names the permission it checks (from auth.permissions); a test compares the
document with the routes Flask actually has, so it cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify

from taktflow import __version__
from taktflow.api import api_bp
from taktflow.auth.permissions import ALL, PERMISSIONS

_ERROR = {"$ref": "#/components/schemas/Error"}
_JSON = "application/json"


def _op(
    summary: str,
    permission: str | None,
    *,
    body: dict[str, Any] | None = None,
    ok: int = 200,
    params: list[dict[str, Any]] | None = None,
    responses: dict[int, str] | None = None,
) -> dict[str, Any]:
    who = "anyone (no login)"
    if permission == "login":
        who = "any logged-in user"
    elif permission and permission.startswith("lane"):
        who = "users whose roles include the task's lane (admins: all)"
    elif permission:
        roles = PERMISSIONS[permission]
        who = "any logged-in user" if roles == ALL else ", ".join(sorted(roles)) + ", admin"
    op: dict[str, Any] = {
        "summary": summary,
        "description": f"Who: {who}." + (f" Permission `{permission}`." if permission else ""),
        "responses": {str(ok): {"description": "OK", "content": {_JSON: {}}}},
    }
    if permission is None:
        op["security"] = []
    else:
        op["responses"]["401"] = {
            "description": "not logged in",
            "content": {_JSON: {"schema": _ERROR}},
        }
        op["responses"]["403"] = {
            "description": "not allowed; the reason says why",
            "content": {_JSON: {"schema": _ERROR}},
        }
    for status, text in (responses or {}).items():
        op["responses"][str(status)] = {"description": text, "content": {_JSON: {"schema": _ERROR}}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {_JSON: {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _path(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_OBJECT = {"type": "object"}
_BAD = {400: "malformed request", 404: "not found"}


def document() -> dict[str, Any]:
    task = [_path("task_id")]
    instance = [_path("instance_id", {"type": "integer"})]
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "taktflow API",
            "version": __version__,
            "description": "Process models, instances, tasks and messages. Send an API token "
            "as `Authorization: Bearer <token>` (taktflow token create --user NAME).",
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "details": {},
                            },
                        }
                    },
                }
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/health": {"get": _op("Liveness and readiness", None)},
            "/version": {"get": _op("The taktflow version", None)},
            "/openapi.json": {"get": _op("This document", None)},
            "/me": {"get": _op("Who the caller is, with roles", "login")},
            "/connectors": {
                "get": _op(
                    "Connector files with their last stored point values, when they were "
                    "stored, their messages by inbox status (failed: dead letters) and outbox "
                    "counts; the dead letters and failed outbox rows themselves",
                    "connector.read",
                )
            },
            "/messages/{message_id}/replay": {
                "post": _op(
                    "Deliver a dead-lettered (failed) inbox message again",
                    "connector.replay",
                    params=[_path("message_id", {"type": "integer"})],
                )
            },
            "/outbox/{outbox_id}/replay": {
                "post": _op(
                    "Send a failed outbox row (MQTT publish, Modbus write) again",
                    "connector.replay",
                    params=[_path("outbox_id", {"type": "integer"})],
                )
            },
            "/forms": {"get": _op("Deployed forms, latest versions", "process.read")},
            "/forms/{name}": {
                "get": _op(
                    "A deployed form: version, YAML source and fields (`definition`)",
                    "process.read",
                    params=[
                        _path("name"),
                        _query(
                            "version", "this version (default: the latest)", {"type": "integer"}
                        ),
                    ],  # fmt: skip
                    responses=_BAD,
                )
            },
            "/processes": {
                "get": _op("Deployed processes, latest versions", "process.read"),
                "post": _op(
                    "Deploy a .bpmn, .dmn or .yaml file (multipart `file`, or JSON)",
                    "process.deploy",
                    body={
                        "type": "object",
                        "required": ["name", "text"],
                        "properties": {"name": {"type": "string"}, "text": {"type": "string"}},
                    },
                    ok=201,
                    responses={
                        400: "malformed request",
                        422: "invalid definitions (each problem with file and line)",
                    },
                ),
            },
            "/processes/{process_id}": {
                "get": _op(
                    "A process with all its versions",
                    "process.read",
                    params=[_path("process_id")],
                    responses=_BAD,
                ),
            },
            "/processes/{process_id}/versions/{version}/bpmn": {
                "get": _op(
                    "The BPMN XML of a version (for YAML: the compiled BPMN)",
                    "process.read",
                    params=[_path("process_id"), _path("version", {"type": "integer"})],
                    responses=_BAD,
                ),
            },
            "/erp/operations-schedule": {
                "post": _op(
                    "Production orders from the ERP: an ISA-95 OperationsSchedule whose "
                    "OperationsRequests each start the order release workflow",
                    "erp.write",
                    body={
                        "type": "object",
                        "required": ["ID", "OperationsRequest"],
                        "properties": {
                            "ID": {"type": "string"},
                            "OperationsRequest": {"type": "array", "items": _OBJECT},
                        },
                    },
                    ok=201,
                    responses={400: "malformed request", 422: "a request names its problem"},
                ),
            },
            "/erp/production-orders/{number}/performance": {
                "get": _op(
                    "An order's ISA-95 OperationsPerformance (JSON, or B2MML XML)",
                    "erp.read",
                    params=[_path("number"), _query("format", "json (default) or xml")],
                    responses=_BAD,
                ),
            },
            "/instances": {
                "get": _op(
                    "Instances, newest first",
                    "instance.read",
                    params=[
                        _query("process", "only this process"),
                        _query("status", "active, completed, error, terminated or suspended"),
                        _query("limit", "at most this many (1-500)", {"type": "integer"}),
                    ],
                    responses={400: "malformed request"},
                ),
                "post": _op(
                    "Start an instance of the latest version",
                    "instance.start",
                    body={
                        "type": "object",
                        "required": ["process_id"],
                        "properties": {"process_id": {"type": "string"}, "data": _OBJECT},
                    },
                    ok=201,
                    responses=_BAD,
                ),
            },
            "/instances/{instance_id}": {
                "get": _op(
                    "An instance: data, status, ready tasks, waits, history",
                    "instance.read",
                    params=instance,
                    responses=_BAD,
                ),
            },
            **{
                f"/instances/{{instance_id}}/{action}": {
                    "post": _op(
                        f"{action.capitalize()} an instance",
                        "instance.control",
                        params=instance,
                        responses={**_BAD, 409: "the instance is not in a state that allows it"},
                    )
                }
                for action in ("terminate", "suspend", "resume", "retry")
            },
            "/tasks": {
                "get": _op(
                    "Ready tasks for the caller's roles",
                    "login",
                    params=[
                        _query("lane", "only this lane"),
                        _query("process", "only this process"),
                        _query("mine", "1: only tasks the caller has claimed"),
                        _query(
                            "work_center", "only tasks whose instance data has this work_center"
                        ),
                    ],
                ),
            },
            "/tasks/{task_id}": {
                "get": _op(
                    "A task with the instance data and its form (`form_definition`: sections "
                    "and fields with labels, options, limits and defaults for this task; null "
                    "when the task has no form)",
                    "lane: see",
                    params=task,
                    responses=_BAD,
                ),
            },
            "/tasks/{task_id}/claim": {
                "post": _op(
                    "Claim a task",
                    "lane: claim",
                    params=task,
                    responses={**_BAD, 409: "claimed by someone else, or completed"},
                ),
            },
            "/tasks/{task_id}/unclaim": {
                "post": _op(
                    "Give a task back to its lane", "lane: unclaim", params=task, responses=_BAD
                ),
            },
            "/tasks/{task_id}/assign": {
                "post": _op(
                    "Give a task to a user (whose roles include its lane)",
                    "task.assign",
                    params=task,
                    body={
                        "type": "object",
                        "required": ["user"],
                        "properties": {"user": {"type": "string"}},
                    },
                    responses=_BAD,
                ),
            },
            "/tasks/{task_id}/complete": {
                "post": _op(
                    "Complete a task with data (only its claimant, if claimed). With a form, "
                    "`data` holds its fields and is checked against it; a signature field "
                    "takes the signer's password; unknown keys are refused",
                    "lane: complete",
                    params=task,
                    body={"type": "object", "properties": {"data": _OBJECT}},
                    responses={**_BAD, 409: "already completed", 422: "invalid data, per field"},
                ),
            },
            "/messages": {
                "post": _op(
                    "Send a message to waiting instances (or start one)",
                    "message.send",
                    body={
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "correlation": _OBJECT,
                            "data": _OBJECT,
                            "idempotency_key": {"type": "string"},
                        },
                    },
                    ok=202,
                    responses={400: "malformed request"},
                ),
            },
        },
    }


@api_bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(document())
