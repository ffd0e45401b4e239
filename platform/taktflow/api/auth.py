"""Who is calling the API: a bearer token (systems) or the logged-in session (browsers).

Every refusal is a JSON error with a reason and is written to the audit as `refused`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import g, request, session
from flask_wtf.csrf import validate_csrf
from wtforms import ValidationError

from taktflow.auth.service import Principal
from taktflow.errors import PermissionDenied, Unauthorized

SESSION_USER = "user"


def current_principal() -> Principal:
    """The caller, or Unauthorized. Cached for the request."""
    if "principal" in g:
        return g.principal
    from taktflow.app import accounts

    header = request.headers.get("Authorization", "")
    principal: Principal | None = None
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        principal = accounts().principal_for_token(secret.strip())
        if principal is None:
            raise Unauthorized("the API token is unknown, revoked, or its user is disabled")
    elif session.get(SESSION_USER):
        principal = accounts().principal(session[SESSION_USER])
        if principal is None:
            session.clear()
        elif request.method not in ("GET", "HEAD", "OPTIONS"):
            # A browser sends the session cookie to any site's request: writes need the
            # page's CSRF token as well.
            try:
                validate_csrf(request.headers.get("X-CSRFToken", ""))
            except ValidationError:
                raise PermissionDenied(
                    "missing or invalid CSRF token: send the page's token as X-CSRFToken"
                ) from None
    if principal is None:
        raise Unauthorized(
            "log in, or send an API token as 'Authorization: Bearer <token>' "
            "(taktflow token create --user NAME)"
        )
    g.principal = principal
    return principal


def authenticated(view: Callable[..., Any]) -> Callable[..., Any]:
    """The view gets the caller as its first argument; refusals are audited."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        principal = current_principal()
        try:
            return view(principal, *args, **kwargs)
        except PermissionDenied as refusal:
            audit_refusal(principal, refusal)
            raise

    return wrapper


def audit_refusal(principal: Principal, refusal: PermissionDenied) -> None:
    from taktflow.app import workflow_engine

    workflow_engine().record(
        "refused",
        principal.username,
        {"method": request.method, "path": request.path, "reason": refusal.message},
    )
