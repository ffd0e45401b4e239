"""The REST API (/api/v1)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
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


@api_bp.errorhandler(HTTPException)
def http_error(error: HTTPException) -> Any:
    body = {
        "error": {
            "code": (error.name or "error").lower().replace(" ", "_"),
            "message": error.description,
        }
    }
    return jsonify(body), error.code or 500
