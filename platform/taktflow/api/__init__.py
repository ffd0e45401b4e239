"""The REST API (/api/v1)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from taktflow import __version__
from taktflow.errors import TaktflowError
from taktflow.health import health_report

api_bp = Blueprint("api", __name__, url_prefix="/api/v1")


@api_bp.get("/health")
def health() -> Any:
    """Liveness and readiness: database reachable, schema current."""
    report = health_report()
    return jsonify(report), (200 if report["status"] == "ok" else 503)


@api_bp.get("/version")
def version() -> Any:
    """The taktflow version."""
    return jsonify({"name": "taktflow", "version": __version__})


@api_bp.errorhandler(TaktflowError)
def domain_error(error: TaktflowError) -> Any:
    return jsonify(error.to_dict()), error.http_status


def register_error_handlers(app: Flask) -> None:
    """JSON errors for everything under /api/, including routing errors (404, 405) that
    happen before any API blueprint route matches; HTML pages keep Flask's own pages."""

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        if not request.path.startswith(api_bp.url_prefix or "/api/"):
            return error
        code = (error.name or "error").lower().replace(" ", "_")
        return jsonify({"error": {"code": code, "message": error.description}}), error.code


#: Larger request bodies are refused with 413 before they are read (workflow files are small).
MAX_REQUEST_BYTES = 4 * 1024 * 1024

# The v1 endpoints and the OpenAPI document register themselves on api_bp.
from taktflow.api import erp, openapi, v1  # noqa: E402, F401
