"""WSGI entry point: `gunicorn wsgi:app`, `waitress-serve wsgi:app` or `flask --app wsgi run`."""

from taktflow.app import create_app
from taktflow.process import tune_for_service

app = create_app()
# Serving in production refuses to start without TAKTFLOW_SECRET_KEY.
app.config["TAKTFLOW"].require_secret_key()
tune_for_service()
