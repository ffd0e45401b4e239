"""Configuration: defaults, overridden by TAKTFLOW_* environment variables, validated at start-up.

Every setting lives here and nowhere else. A wrong value stops start-up with a message that
names the variable and the value, never a stack trace.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PREFIX = "TAKTFLOW_"
DEV_SECRET_KEY = "dev-only-insecure-secret-key"
#: Upper bound for durations in seconds (a year): larger values overflow timedelta arithmetic.
MAX_SECONDS = 366 * 24 * 3600
#: Database drivers taktflow installs and supports.
DRIVERS = {"sqlite": ("sqlite", "sqlite+pysqlite"), "postgresql": ("postgresql+psycopg",)}


class ConfigError(Exception):
    """A setting has a value taktflow cannot use."""


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name}={raw!r}: expected a number") from None
    if not math.isfinite(value) or value > MAX_SECONDS:
        raise ConfigError(f"{PREFIX}{name}={raw!r}: expected a finite number of seconds")
    if value <= 0:
        raise ConfigError(f"{PREFIX}{name}={raw!r}: must be greater than 0")
    return value


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name}={raw!r}: expected a whole number") from None
    if value <= 0:
        raise ConfigError(f"{PREFIX}{name}={raw!r}: must be greater than 0")
    return value


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{PREFIX}{name}={raw!r}: expected true or false")


def _text(name: str, raw: str) -> str:
    return raw


def _roles(name: str, raw: str) -> str:
    names = [part.strip() for part in raw.split(",") if part.strip()]
    if not names:
        raise ConfigError(f"{PREFIX}{name}={raw!r}: expected comma-separated role names")
    for role in names:
        if not re.match(r"^[a-z][a-z0-9_]*$", role):
            raise ConfigError(
                f"{PREFIX}{name}={raw!r}: role {role!r} must be lower-case letters, digits, _"
            )
    return ",".join(names)


#: Roles every installation has; a site may add its own with TAKTFLOW_ROLES.
DEFAULT_ROLES = "operator,planner,quality,maintenance,supervisor,manager,director,engineer,admin"

#: The site's MQTT broker when TAKTFLOW_MQTT_URL is not set (a local Mosquitto).
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
#: Where `make run` serves its embedded broker when TAKTFLOW_MQTT_URL is not set: not 1883, so
#: it never clashes with a Mosquitto of the machine (the Makefile repeats it; a test compares).
EMBEDDED_MQTT_PORT = 1884
EMBEDDED_MQTT_URL = f"mqtt://127.0.0.1:{EMBEDDED_MQTT_PORT}"


def _mqtt_url(name: str, raw: str) -> str:
    if not raw.strip():
        return DEFAULT_MQTT_URL  # set but empty means the default, as for the database URL
    parts = urlsplit(raw)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or port == -1:
        raise ConfigError(
            f"{PREFIX}{name}={raw!r}: expected mqtt://host:port (mqtts:// for TLS), "
            f"e.g. {DEFAULT_MQTT_URL}"
        )
    return raw


@dataclass
class Config:
    """The application's settings. Field names map to TAKTFLOW_<NAME> environment variables."""

    #: SQLAlchemy URL; default: SQLite file in the instance folder.
    database_url: str = ""
    #: Signs session cookies and CSRF tokens. Required outside development and testing.
    secret_key: str = ""
    #: "production", "development" or "testing".
    env: str = "production"
    #: Instance folder for the SQLite database and local state.
    instance_path: str = ""
    #: How long a message that nothing waits for is kept for a later matching wait, in seconds.
    message_ttl_seconds: float = 3600.0
    #: Seconds between two passes of the worker loop.
    worker_interval_seconds: float = 1.0
    #: CPU seconds a single script or expression may use.
    script_cpu_seconds: float = 2.0
    #: Workflows kept deserialized in memory between steps (per process).
    workflow_cache_size: int = 512
    #: Run the worker loop inside the web process (the embedded default).
    embedded_worker: bool = True
    #: Folder of workflow files deployed by `taktflow deploy` without arguments.
    workflows_path: str = "workflows"
    #: Comma-separated Python modules whose `register_actions(registry)` adds service actions.
    action_modules: str = ""
    #: Folder of form definitions (forms/<name>.yaml), checked by `taktflow lint`.
    forms_path: str = "forms"
    #: Folder of connector files (connectors/<id>.yaml): linted with the workflows.
    connectors_path: str = "connectors"
    #: The MQTT broker of connector files that name no `mqtt.url`, and of `taktflow simulate`.
    mqtt_url: str = DEFAULT_MQTT_URL
    #: Comma-separated role names. A workflow lane is a role: lanes holding user tasks must
    #: name one of these.
    roles: str = DEFAULT_ROLES

    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Config:
        """Build the settings from defaults, then the environment, then explicit overrides."""
        environ = os.environ if environ is None else environ
        config = cls()
        for f in fields(cls):
            if f.name == "extra":
                continue
            raw = environ.get(PREFIX + f.name.upper())
            if raw is not None:
                setattr(config, f.name, _PARSERS[f.name](f.name.upper(), raw))
        for key, value in (overrides or {}).items():
            if key in {f.name for f in fields(cls)}:
                setattr(config, key, value)
            else:
                config.extra[key] = value
        config.validate()
        return config

    def validate(self) -> None:
        """Fill derived defaults and refuse values that cannot work."""
        if self.env not in ("production", "development", "testing"):
            raise ConfigError(
                f"{PREFIX}ENV={self.env!r}: expected production, development or testing"
            )
        # Flask needs an absolute instance folder; relative means relative to the working dir.
        self.instance_path = str(Path(self.instance_path or "instance").absolute())
        if not self.database_url:
            db_file = Path(self.instance_path) / "taktflow.db"
            self.database_url = f"sqlite:///{db_file}"
        try:
            url = make_url(self.database_url)
        except ArgumentError:
            raise ConfigError(
                f"{PREFIX}DATABASE_URL={self.database_url!r}: not a database URL "
                "(expected e.g. sqlite:///instance/taktflow.db or "
                "postgresql+psycopg://user@127.0.0.1/taktflow)"
            ) from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ConfigError(
                f"{PREFIX}DATABASE_URL={self.database_url!r}: unsupported database "
                f"{url.get_backend_name()!r} (supported: sqlite, postgresql)"
            )
        if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
            # psycopg 3 is the driver we install; plain postgresql:// would look for psycopg2.
            url = url.set(drivername="postgresql+psycopg")
        if url.drivername not in DRIVERS[url.get_backend_name()]:
            raise ConfigError(
                f"{PREFIX}DATABASE_URL={self.database_url!r}: unsupported driver "
                f"{url.drivername!r} (use sqlite:///PATH or postgresql://...)"
            )
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            # A relative path means relative to where the command runs (Flask-SQLAlchemy
            # would otherwise resolve it against the instance folder).
            url = url.set(database=str(Path(url.database).absolute()))
        self.database_url = url.render_as_string(hide_password=False)
        if not self.secret_key and self.env != "production":
            self.secret_key = DEV_SECRET_KEY

    def require_secret_key(self) -> None:
        """Serving in production needs a real secret; command-line use does not sign anything."""
        if not self.secret_key or (self.env == "production" and self.secret_key == DEV_SECRET_KEY):
            raise ConfigError(
                f"{PREFIX}SECRET_KEY is not set: set it to a long random value, e.g. "
                "export TAKTFLOW_SECRET_KEY=$(python3 -c 'import secrets; "
                "print(secrets.token_hex(32))') (or TAKTFLOW_ENV=development for a local trial)"
            )

    @property
    def definition_paths(self) -> tuple[str, ...]:
        """What `deploy` takes without arguments: the forms folder (when it holds
        forms) and the workflows folder. Forms first, so a batch reads in the order people
        think of it: the screens, then the processes that use them."""
        forms = (self.forms_path,) if _holds_yaml(self.forms_path) else ()
        return forms + (self.workflows_path,)

    @property
    def lint_paths(self) -> tuple[str, ...]:
        """What `lint` takes without arguments: the definitions and the connector files."""
        connectors = (self.connectors_path,) if _holds_yaml(self.connectors_path) else ()
        return self.definition_paths + connectors

    @property
    def role_names(self) -> list[str]:
        return [part for part in self.roles.split(",") if part]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _holds_yaml(folder: str) -> bool:
    path = Path(folder)
    return path.is_dir() and any(p.suffix in (".yaml", ".yml") for p in path.iterdir())


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "database_url": _text,
    "secret_key": _text,
    "env": _text,
    "instance_path": _text,
    "message_ttl_seconds": _positive_float,
    "worker_interval_seconds": _positive_float,
    "script_cpu_seconds": _positive_float,
    "workflow_cache_size": _positive_int,
    "embedded_worker": _bool,
    "workflows_path": _text,
    "action_modules": _text,
    "forms_path": _text,
    "connectors_path": _text,
    "mqtt_url": _mqtt_url,
    "roles": _roles,
}
