"""The application factory: the only place that assembles extensions, blueprints and commands."""

from __future__ import annotations

import importlib
import logging
import secrets
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.engine import make_url

from taktflow.auth.service import AccountService
from taktflow.config import Config, ConfigError
from taktflow.connectors.actions import register_connector_actions
from taktflow.db import db, engine_options
from taktflow.engine.actions import ActionRegistry, builtin_actions
from taktflow.engine.runtime import WorkflowEngine
from taktflow.engine.sandbox import Limits
from taktflow.forms.service import TaskForms
from taktflow.mfg.actions import register_mfg_actions
from taktflow.yamlflow import COMPILERS

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")
ENGINE_KEY = "taktflow.engine"
ACCOUNTS_KEY = "taktflow.accounts"
FORMS_KEY = "taktflow.forms"

migrate = Migrate()


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask application.

    `config` is a Config, or a mapping of overrides applied on top of the TAKTFLOW_*
    environment (tests pass e.g. {"database_url": ..., "env": "testing"}).
    """
    if not isinstance(config, Config):
        config = Config.from_env(overrides=config)
    Path(config.instance_path).mkdir(parents=True, exist_ok=True)
    sqlite_file = make_url(config.database_url).database if config.is_sqlite else None
    if sqlite_file and sqlite_file != ":memory:":
        # A new user's first command creates the folder of the SQLite file.
        Path(sqlite_file).parent.mkdir(parents=True, exist_ok=True)
    # No static folder of the app's own: its /static route would shadow the web blueprint's
    # (taktflow.css, taktflow-forms.js), which then answered 404.
    app = Flask(__name__, instance_path=config.instance_path, static_folder=None)
    app.config.update(
        # Without a configured key (command-line use) sessions are signed with a throwaway key.
        SECRET_KEY=config.secret_key or secrets.token_hex(32),
        SQLALCHEMY_DATABASE_URI=config.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(config.database_url),
        TESTING=config.env == "testing",
        TAKTFLOW=config,
        JSON_SORT_KEYS=False,
    )
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)

    from taktflow.api import MAX_REQUEST_BYTES, api_bp, register_error_handlers
    from taktflow.web import web_bp

    app.register_blueprint(web_bp)
    app.register_blueprint(api_bp)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("PERMANENT_SESSION_LIFETIME", timedelta(hours=12))  # one shift
    # Every HTML form carries a CSRF token. The API is exempt here because token callers
    # cannot be forged by a browser; API calls made with the session cookie are checked in
    # api.auth instead.
    csrf = CSRFProtect(app)
    csrf.exempt(api_bp)
    register_error_handlers(app)

    from taktflow.cli import cli

    app.cli.add_command(cli, name="taktflow")

    with app.app_context():
        app.extensions[ENGINE_KEY] = build_engine(config, db.engine)
        app.extensions[ACCOUNTS_KEY] = AccountService(db.engine, config.role_names)
        app.extensions[FORMS_KEY] = TaskForms(
            app.extensions[ENGINE_KEY], app.extensions[ACCOUNTS_KEY]
        )
    logging.getLogger("taktflow").setLevel(logging.INFO)
    return app


def build_engine(config: Config, bind: Any) -> WorkflowEngine:
    """The workflow engine configured from `config` on the database engine `bind`."""
    engine = WorkflowEngine(
        bind,
        actions=build_actions(config),
        message_ttl=timedelta(seconds=config.message_ttl_seconds),
        script_limits=Limits(max_cpu_s=config.script_cpu_seconds),
        cache_size=config.workflow_cache_size,
        compilers=COMPILERS,
    )
    engine.pass_hooks["machine_events"] = project_machine_time
    return engine


def project_machine_time(engine: WorkflowEngine) -> int:
    """Each worker pass turns new machine events into state intervals and counts (OEE)."""
    from taktflow.mfg.machine_time import project_machine_events

    done = project_machine_events(engine.bind, now=engine.clock.now())
    return int(done.get("projected", 0)) if isinstance(done, dict) else 0


def build_actions(config: Config) -> ActionRegistry:
    """The engine's own actions plus those of every module in TAKTFLOW_ACTION_MODULES.

    Each such module defines `register_actions(registry)`; a module that cannot be imported
    or lacks the function stops start-up with a message naming it.
    """
    registry = ActionRegistry()
    builtin_actions(registry)
    register_connector_actions(registry, config.connectors_path)
    register_mfg_actions(registry)
    for name in filter(None, (part.strip() for part in config.action_modules.split(","))):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"TAKTFLOW_ACTION_MODULES: cannot import {name!r}: {exc}") from None
        register = getattr(module, "register_actions", None)
        if not callable(register):
            raise ConfigError(
                f"TAKTFLOW_ACTION_MODULES: module {name!r} has no register_actions(registry)"
            )
        register(registry)
    return registry


def accounts(app: Flask | None = None) -> AccountService:
    """The account service of `app` (default: the current app)."""
    return (app or current_app).extensions[ACCOUNTS_KEY]


def task_forms(app: Flask | None = None) -> TaskForms:
    """Task forms of `app`: how screens, the API and the CLI show and submit tasks."""
    return (app or current_app).extensions[FORMS_KEY]


def workflow_engine(app: Flask | None = None) -> WorkflowEngine:
    """The engine of `app` (default: the current app)."""
    return (app or current_app).extensions[ENGINE_KEY]
