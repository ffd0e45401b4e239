"""The screens: operator inbox and task page, manager approvals, instances, process models.

Views are thin: they read the request, call the engine or the account service, and render.
Every page states its permission through `page(...)`; task pages also apply the lane rule.
"""

from __future__ import annotations

import json
from typing import Any

from flask import flash, redirect, render_template, request, url_for

from taktflow.auth.permissions import allowed, may_work_on, require_task
from taktflow.auth.service import Principal
from taktflow.engine.models import STATUSES
from taktflow.errors import (
    Conflict,
    DefinitionError,
    NotFound,
    PermissionDenied,
    TaktflowError,
    ValidationFailed,
)
from taktflow.forms.service import MAX_NOTE
from taktflow.web import page, web_bp

#: Lanes whose tasks are decisions: shown on the approvals page with their data.
APPROVAL_LANES = ("supervisor", "manager", "director")
SORTS = {
    "oldest": (lambda t: t["created_at"], False),
    "newest": (lambda t: t["created_at"], True),
    "process": (lambda t: (t["process_id"], t["created_at"]), False),
    "title": (lambda t: ((t["title"] or t["name"]).lower(), t["created_at"]), False),
}


def _engine() -> Any:
    from taktflow.app import workflow_engine

    return workflow_engine()


def _my_tasks(user: Principal) -> list[dict[str, Any]]:
    tasks = [t for t in _engine().tasks() if may_work_on(user, t)]
    lane = request.args.get("lane") or None
    process = request.args.get("process") or None
    if lane:
        tasks = [t for t in tasks if t["lane"] == lane]
    if process:
        tasks = [t for t in tasks if t["process_id"] == process]
    key, reverse = SORTS.get(request.args.get("sort", "oldest"), SORTS["oldest"])
    return sorted(tasks, key=key, reverse=reverse)


# ---------------------------------------------------------------------- operator
@web_bp.get("/tasks")
@page()
def tasks(user: Principal) -> str:
    rows = _my_tasks(user)
    lanes = sorted({t["lane"] for t in _engine().tasks() if may_work_on(user, t) and t["lane"]})
    return render_template(
        "tasks.html", tasks=rows, lanes=lanes, args=request.args, sorts=list(SORTS)
    )


@web_bp.get("/tasks/table")
@page()
def tasks_table(user: Principal) -> str:
    """The inbox table alone: htmx swaps it in every few seconds."""
    return render_template("_task_table.html", tasks=_my_tasks(user))


@web_bp.get("/tasks/<task_id>")
@page()
def task(user: Principal, task_id: str) -> Any:
    try:
        found = _engine().task(task_id)
    except (NotFound, Conflict) as exc:
        flash(exc.message, "error")
        return redirect(url_for("web.tasks"))
    require_task(user, found, "see")
    return _task_page(user, task_id, errors={}, values={})


def _task_page(
    user: Principal, task_id: str, *, errors: dict[str, str], values: dict[str, Any]
) -> str:
    from taktflow.app import accounts, task_forms

    try:
        view = task_forms().view(task_id, html=True)
    except Conflict as exc:  # the task names a form that is not deployed
        flash(exc.message, "error")
        view = {"task": _engine().task(task_id), "form": None}
        view["data"] = _engine().instance(view["task"]["instance_id"], history=False)["data"]
    found = view["task"]
    can_assign = allowed(user, "task.assign")
    candidates = []
    if can_assign:
        candidates = [
            u for u in accounts().users()
            if u["active"] and (found["lane"] is None or found["lane"] in u["roles"]
                                or "admin" in u["roles"])
        ]  # fmt: skip
    return render_template(
        "task.html", task=found, data=view["data"], form=view["form"], errors=errors,
        values=values, can_assign=can_assign, candidates=candidates,
    )  # fmt: skip


@web_bp.post("/tasks/<task_id>/claim")
@page()
def claim(user: Principal, task_id: str) -> Any:
    found = _engine().task(task_id)
    require_task(user, found, "claim")
    try:
        _engine().claim_task(task_id, user.username)
        flash("The task is yours now.", "success")
    except Conflict as exc:
        flash(exc.message, "error")
    return redirect(url_for("web.task", task_id=task_id))


@web_bp.post("/tasks/<task_id>/unclaim")
@page()
def unclaim(user: Principal, task_id: str) -> Any:
    found = _engine().task(task_id)
    require_task(user, found, "unclaim")
    _engine().unclaim_task(task_id, user.username, force=allowed(user, "task.assign"))
    flash("The task is back in the inbox of its lane.", "success")
    return redirect(url_for("web.tasks"))


@web_bp.post("/tasks/<task_id>/complete")
@page()
def complete(user: Principal, task_id: str) -> Any:
    try:
        found = _engine().task(task_id)
    except (NotFound, Conflict) as exc:
        flash(exc.message, "error")
        return redirect(url_for("web.tasks"))
    require_task(user, found, "complete")
    from taktflow.app import accounts, task_forms

    try:
        form = task_forms().form_of(found)
    except Conflict as exc:
        flash(exc.message, "error")
        return redirect(url_for("web.task", task_id=task_id))
    if form is not None:
        raw: dict[str, Any] = {
            f.name: request.form.getlist(f.name) if f.type == "multiselect"
            else request.form.get(f.name)
            for f in form.fields if f.takes_input
        }  # fmt: skip
    else:
        values = {k: v for k, v in request.form.items() if k != "csrf_token"}
        raw = {}
        if "approved" in values:
            raw["approved"] = values["approved"] == "yes"
        if values.get("comment"):
            raw["comment"] = values["comment"][:MAX_NOTE]
    try:
        view = task_forms().submit(
            task_id, raw, actor=user.username, display_name=user.display_name, strict=False,
            check_password=lambda pw: accounts().verify_password(user.username, pw),
            history=False,
        )  # fmt: skip
    except ValidationFailed as exc:
        fields = (exc.details or {}).get("fields") or {"_": exc.message}
        # A password is never sent back to the browser.
        shown = {k: v for k, v in raw.items() if form is None or
                 (form.field(k) is not None and form.field(k).type != "signature")}  # fmt: skip
        return _task_page(user, task_id, errors=fields, values=shown), 422
    except PermissionDenied:
        raise
    except TaktflowError as exc:
        flash(exc.message, "error")
        return redirect(url_for("web.task", task_id=task_id))
    title = found["title"] or found["name"]
    flash(f"“{title}” done. Instance {view['instance_id']} is {view['status']}.", "success")
    return redirect(url_for("web.approvals" if request.form.get("back") == "approvals"
                            else "web.tasks"))  # fmt: skip


# ---------------------------------------------------------------------- manager
@web_bp.get("/approvals")
@page("task.assign")
def approvals(user: Principal) -> str:
    rows = [
        t
        for t in _engine().tasks()
        if may_work_on(user, t) and (t["lane"] in APPROVAL_LANES or user.is_admin)
    ]
    details = {}
    for t in rows:
        details[t["task_id"]] = _engine().instance(t["instance_id"], history=False)["data"]
    return render_template("approvals.html", tasks=rows, details=details)


@web_bp.post("/tasks/<task_id>/assign")
@page("task.assign")
def assign(user: Principal, task_id: str) -> Any:
    from taktflow.app import accounts

    target = accounts().principal(request.form.get("user", "").strip().lower())
    if target is None:
        flash("No such active user.", "error")
        return redirect(url_for("web.task", task_id=task_id))
    found = _engine().task(task_id)
    require_task(target, found, "take")
    _engine().assign_task(task_id, target.username, actor=user.username)
    flash(f"Assigned to {target.username}.", "success")
    return redirect(url_for("web.task", task_id=task_id))


@web_bp.get("/instances")
@page("instance.read")
def instances(user: Principal) -> str:
    status = request.args.get("status") or None
    if status not in (None, *STATUSES):
        status = None
    process = request.args.get("process") or None
    rows = _engine().instances(process_id=process, status=status, limit=200)
    processes = [p["process_id"] for p in _engine().processes()]
    return render_template(
        "instances.html", instances=rows, statuses=STATUSES, processes=processes,
        args=request.args,
    )  # fmt: skip


@web_bp.get("/instances/<int:instance_id>")
@page("instance.read")
def instance(user: Principal, instance_id: int) -> str:
    view = _engine().instance(instance_id)
    completed = sorted(
        {e["element_id"] for e in view["history"] if e["element_id"] and e["kind"] in
         ("task_completed", "message_received", "signal_received", "timer_fired")}
    )  # fmt: skip
    active = sorted({t["name"] for t in view["ready_tasks"]})
    waiting = sorted({w["element_id"] for w in view["waiting"] if w.get("element_id")})
    failed = [view["error"]["element_id"]] if view.get("error") else []
    return render_template(
        "instance.html",
        view=view,
        data_json=json.dumps(view["data"], indent=2, ensure_ascii=False, default=str),
        markers={"completed": completed, "active": active, "waiting": waiting, "failed": failed},
        can_control=allowed(user, "instance.control"),
    )


@web_bp.post("/instances/<int:instance_id>/retry")
@page("instance.control")
def retry(user: Principal, instance_id: int) -> Any:
    try:
        _engine().retry(instance_id, None, actor=user.username)
        flash(f"Instance {instance_id} retried.", "success")
    except TaktflowError as exc:
        flash(exc.message, "error")
    return redirect(url_for("web.instance", instance_id=instance_id))


# ---------------------------------------------------------------------- engineer
@web_bp.get("/processes")
@page("process.deploy")
def processes(user: Principal) -> str:
    return render_template("processes.html", processes=_engine().processes(), report=None)


@web_bp.post("/processes")
@page("process.deploy")
def deploy(user: Principal) -> Any:
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a .bpmn, .dmn or .yaml file to deploy.", "error")
        return redirect(url_for("web.processes"))
    name = upload.filename
    try:
        text = upload.read().decode("utf-8")
    except UnicodeDecodeError:
        flash(f"{name}: the file is not UTF-8 text.", "error")
        return redirect(url_for("web.processes"))
    findings = _lint_upload(name, text)
    try:
        results = _engine().deploy_text(name, text, actor=user.username)
    except DefinitionError as exc:
        return render_template(
            "processes.html", processes=_engine().processes(), report=exc.problems,
            uploaded=name, findings=findings,
        ), 422  # fmt: skip
    if findings:
        return render_template(
            "processes.html", processes=_engine().processes(), report=None, uploaded=name,
            findings=findings, deployed=[r for r in results if r["changed"]],
        )  # fmt: skip
    changed = [r for r in results if r["changed"]]
    if changed:
        flash(
            "Deployed "
            + ", ".join(f"{r['process_id'] or r['decision_id']} v{r['version']}" for r in changed)
            + ".",
            "success",
        )
    else:
        flash(f"{name}: nothing changed (same content as the latest version).", "success")
    return redirect(url_for("web.processes"))


def _lint_upload(name: str, text: str) -> list[Any]:
    """What `taktflow lint` says about the uploaded file (shown with lines next to the deploy
    result; design warnings do not stop a deploy)."""
    import tempfile
    from pathlib import Path

    from flask import current_app

    from taktflow.app import build_actions
    from taktflow.lint import lint_paths

    config = current_app.config["TAKTFLOW"]
    safe = Path(name).name or "upload"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / safe
        path.write_text(text, encoding="utf-8")
        report = lint_paths(
            [path],
            actions=build_actions(config),
            workflows_path=config.workflows_path,
            forms_path=config.forms_path,
            roles=config.role_names,
        )
    # Findings name the temporary file: show the uploaded name instead.
    return [{**f.to_dict(), "file": safe} for f in report.findings if f.rule != "invalid-file"]


@web_bp.get("/processes/<process_id>")
@page("process.read")
def process(user: Principal, process_id: str) -> str:
    found = _engine().process(process_id)
    version = request.args.get("version", type=int) or found["version"]
    source = _engine().process_source(process_id, version)
    return render_template("process.html", process=found, version=version, source=source)


@web_bp.get("/processes/<process_id>/versions/<int:version>.bpmn")
@page("process.read")
def process_bpmn(user: Principal, process_id: str, version: int) -> Any:
    from flask import Response

    return Response(_engine().process_source(process_id, version), mimetype="application/xml")


@web_bp.get("/connectors")
@page("connector.read")
def connectors(user: Principal) -> str:
    from flask import current_app

    from taktflow.connectors import overview

    config = current_app.config["TAKTFLOW"]
    view = overview(config.connectors_path, _engine(), config.mqtt_url)
    return render_template("connectors.html", can_replay=allowed(user, "connector.replay"), **view)


@web_bp.post("/connectors/messages/<int:message_id>/replay")
@page("connector.replay")
def replay_message(user: Principal, message_id: int) -> Any:
    try:
        result = _engine().replay_message(message_id, actor=user.username)
        flash(f"Message {message_id} replayed: {result.status}.", "success")
    except TaktflowError as exc:
        flash(exc.message, "error")
    return redirect(url_for("web.connectors"))


@web_bp.post("/connectors/outbox/<int:outbox_id>/replay")
@page("connector.replay")
def replay_outbox(user: Principal, outbox_id: int) -> Any:
    try:
        _engine().replay_outbox(outbox_id, actor=user.username)
        flash(f"Outbox message {outbox_id} will be sent again.", "success")
    except TaktflowError as exc:
        flash(exc.message, "error")
    return redirect(url_for("web.connectors"))


@web_bp.get("/forms")
@page("process.deploy")
def forms(user: Principal) -> str:
    return render_template("forms.html", forms=_engine().forms())


@web_bp.route("/forms/preview", methods=["GET", "POST"])
@web_bp.get("/forms/<name>")
@page("process.deploy")
def form_preview(user: Principal, name: str | None = None) -> Any:
    """Any form rendered as an operator would see it, with sample task data: a deployed one,
    or YAML pasted here before it is deployed (its problems are shown with lines)."""
    from taktflow.app import task_forms
    from taktflow.forms.definition import parse_form

    sample_text = request.values.get("data") or "{}"
    source = request.form.get("source", "")
    problems: list[Any] = []
    prepared = None
    try:
        sample = json.loads(sample_text)
        if not isinstance(sample, dict):
            raise ValueError("the sample data must be a JSON object")
    except ValueError as exc:
        problems.append(f"sample data: {exc}")
        sample = {}
    try:
        if name is not None:
            definition = _engine().form(name)
            source = _engine().form_source(name)["source"]
        elif source.strip():
            definition = parse_form(source, "preview.yaml")
        else:
            definition = None
        if definition is not None:
            prepared = task_forms().preview(definition, sample)
    except DefinitionError as exc:
        problems.extend(str(p) for p in exc.problems)
    status = 422 if problems and request.method == "POST" else 200
    return render_template(
        "form_preview.html", name=name, source=source, sample=sample_text, form=prepared,
        problems=problems,
    ), status  # fmt: skip


@web_bp.errorhandler(NotFound)
def not_found(error: NotFound) -> Any:
    return render_template("refused.html", reason=error.message, title="Not found"), 404
