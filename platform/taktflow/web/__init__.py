"""HTML pages: server-rendered Jinja, a little htmx. Login by session; every page names the
permission it needs (auth.permissions), and a refusal says why."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)

from taktflow import __version__
from taktflow.auth.permissions import allowed, require
from taktflow.auth.service import Principal
from taktflow.errors import PermissionDenied
from taktflow.health import health_report

web_bp = Blueprint(
    "web", __name__, template_folder="templates", static_folder="static", static_url_path="/static"
)

SESSION_USER = "user"
#: Front-end packages from npm, each served from its own dist/ folder only (a prefix check on
#: node_modules would let ../package.json through).
NODE_MODULES = Path(__file__).resolve().parents[3] / "node_modules"
VENDOR_DIRS = {"bpmn-js": "bpmn-js/dist", "htmx": "htmx.org/dist", "chartjs": "chart.js/dist"}

#: Navigation: (label, endpoint, permission or None for everyone logged in).
NAV = [
    ("Tasks", "web.tasks", None),
    ("Approvals", "web.approvals", "task.assign"),
    ("Instances", "web.instances", "instance.read"),
    ("Processes", "web.processes", "process.deploy"),
    ("Forms", "web.forms", "process.deploy"),
    ("Connectors", "web.connectors", "connector.read"),
    ("New order", "web.new_order", "order.create"),
    ("Shop floor", "web.plant_dashboard", "report.read"),
    ("Reports", "web.plant_reports", "report.read"),
]


def current_user() -> Principal | None:
    if "web_user" not in g:
        from taktflow.app import accounts

        name = session.get(SESSION_USER)
        g.web_user = accounts().principal(name) if name else None
        if name and g.web_user is None:
            session.clear()  # the user was disabled or removed
    return g.web_user


def page(permission: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A page for logged-in users (with `permission`, if given); gets the user first."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
            try:
                if permission is not None:
                    require(user, permission)
                return view(user, *args, **kwargs)
            except PermissionDenied as refusal:
                from taktflow.app import workflow_engine

                workflow_engine().record(
                    "refused",
                    user.username,
                    {"method": request.method, "path": request.path, "reason": refusal.message},
                )
                return render_template("refused.html", reason=refusal.message), 403

        return wrapper

    return decorate


@web_bp.app_context_processor
def layout_context() -> dict[str, Any]:
    user = current_user() if request else None
    items = []
    if user is not None:
        for label, endpoint, permission in NAV:
            if endpoint not in current_app.view_functions:
                continue
            if permission is None or allowed(user, permission):
                url = url_for(endpoint)
                items.append({"label": label, "url": url, "current": request.path == url})
    return {"user": user, "nav_items": items, "version": __version__}


@web_bp.get("/")
def home() -> str:
    """The landing page: what is running and how healthy it is."""
    return render_template("home.html", health=health_report())


@web_bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    from taktflow.app import accounts

    target = _safe_next(request.args.get("next"))
    if request.method == "GET":
        return render_template("login.html", next=target)
    username = request.form.get("username", "")[:100]
    password = request.form.get("password", "")[:1024]
    user = accounts().authenticate(username, password)
    if user is None:
        return (
            render_template(
                "login.html",
                next=target,
                username=username,
                error="Wrong user name or password (or the account is disabled).",
            ),
            401,
        )
    session.clear()  # a new session for the new user (no fixation)
    session[SESSION_USER] = user.username
    session.permanent = True
    flash(f"Logged in as {user.display_name or user.username}.", "success")
    return redirect(
        target or url_for("web.tasks" if "web.tasks" in current_app.view_functions else "web.home")
    )


@web_bp.post("/logout")
def logout() -> Any:
    session.clear()
    flash("Logged out.", "success")
    return redirect(url_for("web.login"))


@web_bp.get("/vendor/<package>/<path:filename>")
def vendor(package: str, filename: str) -> Any:
    if package not in VENDOR_DIRS:
        abort(404)
    return send_from_directory(NODE_MODULES / VENDOR_DIRS[package], filename, max_age=3600)


def _safe_next(target: str | None) -> str | None:
    """Only paths on this site (no open redirect to another host)."""
    if not target:
        return None
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


# The screens register themselves on web_bp.
from taktflow.web import pages, planning_pages, plant_pages  # noqa: E402, F401
