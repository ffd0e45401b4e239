"""HTML pages."""

from __future__ import annotations

from flask import Blueprint, render_template

from taktflow import __version__
from taktflow.health import health_report

web_bp = Blueprint("web", __name__, template_folder="templates")


@web_bp.get("/")
def home() -> str:
    """The landing page: what is running and how healthy it is."""
    return render_template("home.html", health=health_report(), version=__version__)
