"""WSGI entry point: `gunicorn wsgi:app`, `waitress-serve wsgi:app` or `flask --app wsgi run`."""

from taktflow.app import create_app

app = create_app()
# Serving in production refuses to start without TAKTFLOW_SECRET_KEY.
app.config["TAKTFLOW"].require_secret_key()
