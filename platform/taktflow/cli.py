"""The `taktflow` command. A stable contract: other tools script against its --json output.

Every command takes --json, prints a one-line error to stderr and exits non-zero on failure.
Commands stay thin: parse the arguments, call one engine service, print the result.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from flask import Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from taktflow.config import ConfigError
from taktflow.errors import BadRequest, DefinitionError, NotFound, TaktflowError
from taktflow.process import tune_for_service

EXIT_CONFIG = 6
EXIT_SCHEMA = 7
EXIT_DATABASE = 8
EXIT_INTERNAL = 70
_CODES = {
    6: "configuration",
    7: "schema_not_current",
    8: "database_unreachable",
    70: "internal",
}


class CliError(Exception):
    def __init__(self, message: str, exit_status: int, payload: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_status = exit_status
        self.payload = payload


def _json_default(obj: Any) -> Any:
    return str(obj)


def _emit(value: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    if as_json or human is None:
        click.echo(json.dumps(value, indent=2, default=_json_default, ensure_ascii=False))
    else:
        click.echo(human(value))


def _app(ctx: click.Context) -> Flask:
    """The Flask app, created once per command (or the one `flask` already runs)."""
    state = ctx.ensure_object(dict)
    if "app" not in state:
        from flask import current_app

        try:
            running = current_app._get_current_object()  # running under `flask taktflow`
        except RuntimeError:
            running = None
        wanted = state.get("database_url")
        if running is not None and (
            not wanted or _same_database(running.config["TAKTFLOW"].database_url, wanted)
        ):
            state["app"] = running
        else:
            from taktflow.app import create_app

            try:
                overrides = {}
                if state.get("database_url"):
                    overrides["database_url"] = state["database_url"]
                state["app"] = create_app(overrides or None)
                state["created_app"] = True
            except ConfigError as exc:
                raise CliError(f"configuration error: {exc}", EXIT_CONFIG) from None
    return state["app"]


def _release(ctx: click.Context) -> None:
    """Close the database connections of an app this command created (not flask's own)."""
    state = ctx.ensure_object(dict)
    app = state.pop("app", None)
    if app is not None and state.pop("created_app", False):
        from taktflow.db import db

        with app.app_context():
            db.engine.dispose()


def _same_database(configured: str, wanted: str) -> bool:
    from taktflow.config import Config

    try:
        return Config.from_env({}, {"database_url": wanted, "env": "testing"}).database_url == (
            configured
        )
    except ConfigError:
        return False


def _check_schema(app: Flask) -> None:
    from taktflow.app import MIGRATIONS_DIR
    from taktflow.db import db
    from taktflow.health import schema_state

    with app.app_context():
        try:
            current, head = schema_state(db.engine, MIGRATIONS_DIR)
        except Exception as exc:  # noqa: BLE001 - unreachable database: say so in one line
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise CliError(f"cannot reach the database: {reason}", EXIT_DATABASE) from None
    if current != head:
        state = "has no taktflow schema" if current is None else f"is at revision {current}"
        raise CliError(
            f"the database {state} (code expects {head}): run `taktflow db upgrade`", EXIT_SCHEMA
        )


def command(
    group: click.Group, name: str | None = None, *, needs_schema: bool = True
) -> Callable[[Callable[..., Any]], click.Command]:
    """Declare a command with --json and uniform error handling."""

    def decorate(func: Callable[..., Any]) -> click.Command:
        @click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
        @click.pass_context
        @wraps(func)
        def run(ctx: click.Context, *args: Any, as_json: bool, **kwargs: Any) -> None:
            try:
                app = _app(ctx)
                if needs_schema:
                    _check_schema(app)
                with app.app_context():
                    from taktflow.app import workflow_engine

                    func(workflow_engine(app), *args, as_json=as_json, **kwargs)
            except CliError as exc:
                _fail(exc.message, exc.exit_status, as_json, exc.payload)
            except DefinitionError as exc:
                if as_json:
                    click.echo(json.dumps(exc.to_dict(), indent=2))
                for problem in exc.problems:
                    click.echo(f"error: {problem}", err=True)
                sys.exit(exc.exit_status)
            except TaktflowError as exc:
                _fail(exc.message, exc.exit_status, as_json, exc.to_dict())
            except SQLAlchemyError as exc:
                _debug_traceback()
                reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                _fail(f"database error: {reason}", EXIT_DATABASE, as_json, None)
            except Exception as exc:  # noqa: BLE001 - one line for the user; details on demand
                _debug_traceback()
                _fail(
                    f"internal error: {type(exc).__name__}: {exc} "
                    "(set TAKTFLOW_DEBUG=1 for the traceback)",
                    EXIT_INTERNAL,
                    as_json,
                    None,
                )
            finally:
                _release(ctx)

        return group.command(name)(run)

    return decorate


def _service_logging() -> None:
    """Log lines for long-running commands; the health check's schema look-up stays quiet."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # SpiffWorkflow logs every task state change at INFO: thousands of lines per second of
    # work, and a measurable share of a busy server's or connector runtime's time.
    logging.getLogger("spiff").setLevel(logging.WARNING)


def _debug_traceback() -> None:
    if os.environ.get("TAKTFLOW_DEBUG") == "1":
        traceback.print_exc()


def _fail(message: str, status: int, as_json: bool, payload: dict | None) -> None:
    if as_json:
        body = payload or {"error": {"code": _CODES.get(status, "error"), "message": message}}
        click.echo(json.dumps(body, indent=2))
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def _json_arg(raw: str | None, what: str) -> Any:
    if raw is None:
        return None
    if raw.startswith("@"):
        try:
            with open(raw[1:], encoding="utf-8") as handle:
                raw = handle.read()
        except OSError as exc:
            raise BadRequest(f"{what}: cannot read {raw[1:]}: {exc.strerror}") from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}") from None


def _pairs(values: Iterable[str], what: str) -> dict[str, str]:
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadRequest(f"{what} {item!r}: expected KEY=VALUE")
        result[key] = value
    return result


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar="TAKTFLOW_DATABASE_URL",
    help="Database URL (default: TAKTFLOW_DATABASE_URL, else SQLite in ./instance).",
)
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """taktflow: run manufacturing processes as BPMN workflows."""
    ctx.ensure_object(dict)["database_url"] = database_url


# ---------------------------------------------------------------------- database
@cli.group()
def db() -> None:
    """Database schema."""


@command(db, "upgrade", needs_schema=False)
def db_upgrade(engine: Any, *, as_json: bool) -> None:
    """Create or upgrade the schema to the current version."""
    from flask_migrate import upgrade

    from taktflow.app import MIGRATIONS_DIR
    from taktflow.db import db as sqla
    from taktflow.health import schema_state

    logging.getLogger("alembic").setLevel(logging.WARNING)
    upgrade(directory=MIGRATIONS_DIR)
    current, head = schema_state(sqla.engine, MIGRATIONS_DIR)
    _emit(
        {"revision": current, "head": head, "database": sqla.engine.url.render_as_string()},
        as_json,
        lambda r: f"database schema at revision {r['revision']}",
    )


# ---------------------------------------------------------------------- definitions
@command(cli, "deploy")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--user", help="Who deploys (recorded in the audit).")
def deploy(engine: Any, paths: tuple[str, ...], user: str | None, *, as_json: bool) -> None:
    """Deploy workflow (.bpmn, .yaml), decision (.dmn) and form (.yaml) files and folders as
    one batch (all or nothing).

    Without PATHS, deploys the forms folder (TAKTFLOW_FORMS_PATH, default forms/) and the
    workflows folder (TAKTFLOW_WORKFLOWS_PATH, default workflows/).
    """
    from flask import current_app

    if not paths:
        paths = current_app.config["TAKTFLOW"].definition_paths
    results = engine.deploy_paths(paths, actor=user)
    out = [
        {k: r[k] for k in ("process_id", "version", "file", "changed")} | _decision_keys(r)
        for r in results
    ]

    def human(rows: list[dict]) -> str:
        lines = []
        for r in rows:
            ident = r["process_id"] or (
                f"form {r['form']}" if r.get("form") else f"decision {r.get('decision_id')}"
            )
            state = "deployed" if r["changed"] else "unchanged"
            lines.append(f"{ident:30} v{r['version']:<4} {state:10} {r['file']}")
        return "\n".join(lines) or "nothing to deploy"

    _emit(out, as_json, human)


def offline_command(group: click.Group, name: str) -> Callable[[Callable[..., Any]], click.Command]:
    """A command that works on files only: no database, no app; same --json and errors."""

    def decorate(func: Callable[..., Any]) -> click.Command:
        @click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
        @wraps(func)
        def run(*args: Any, as_json: bool, **kwargs: Any) -> None:
            from taktflow.config import Config

            try:
                config = Config.from_env()
            except ConfigError as exc:
                _fail(f"configuration error: {exc}", EXIT_CONFIG, as_json, None)
            try:
                func(config, *args, as_json=as_json, **kwargs)
            except DefinitionError as exc:
                if as_json:
                    click.echo(json.dumps(exc.to_dict(), indent=2))
                for problem in exc.problems:
                    click.echo(f"error: {problem}", err=True)
                sys.exit(exc.exit_status)
            except TaktflowError as exc:
                _fail(exc.message, exc.exit_status, as_json, exc.to_dict())
            except ConfigError as exc:
                _fail(f"configuration error: {exc}", EXIT_CONFIG, as_json, None)
            except Exception as exc:  # noqa: BLE001 - one line for the user; details on demand
                _debug_traceback()
                _fail(
                    f"internal error: {type(exc).__name__}: {exc} "
                    "(set TAKTFLOW_DEBUG=1 for the traceback)",
                    EXIT_INTERNAL,
                    as_json,
                    None,
                )

        return group.command(name)(run)

    return decorate


@offline_command(cli, "compile")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="BPMN file to write (default: FILE with .bpmn; '-' for standard output).",
)
def compile_(config: Any, file: str, output: str | None, *, as_json: bool) -> None:
    """Compile a YAML workflow to BPMN 2.0 (and DMN files for its inline decision tables).

    DMN files are written next to the BPMN file as NAME.DECISION_ID.dmn.
    """
    from pathlib import Path

    from taktflow.yamlflow import compile_text

    source = Path(file)
    if source.suffix.lower() not in (".yaml", ".yml"):
        raise BadRequest(f"{file}: expected a .yaml or .yml workflow file")
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{file}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    compiled = compile_text(file, text)
    target = Path(output) if output and output != "-" else source.with_suffix(".bpmn")
    written: list[str] = []
    if output == "-":
        sys.stdout.write(compiled.bpmn)
    else:
        target.write_text(compiled.bpmn, encoding="utf-8")
        written.append(str(target))
    for decision_id, xml in sorted(compiled.dmn.items()):
        dmn_path = target.with_name(f"{target.stem}.{decision_id}.dmn")
        dmn_path.write_text(xml, encoding="utf-8")
        written.append(str(dmn_path))
    result = {"process_id": compiled.process_id, "files": written}
    if output == "-" and not as_json:
        for path in written:
            click.echo(f"wrote {path}", err=True)
        return
    _emit(result, as_json, lambda r: "\n".join(f"wrote {p}" for p in r["files"]))


@offline_command(cli, "lint")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--strict", is_flag=True, help="Exit non-zero on warnings too, not only on errors.")
def lint(config: Any, paths: tuple[str, ...], strict: bool, *, as_json: bool) -> None:
    """Check workflow (.yaml, .bpmn), decision (.dmn) and form (.yaml) files and folders
    without deploying them.

    Without PATHS, lints the forms, workflows and connectors folders. Exit status 1 when there are
    errors (or, with --strict, warnings).
    """
    from taktflow.app import build_actions
    from taktflow.lint import lint_paths

    report = lint_paths(
        paths or config.lint_paths,
        actions=build_actions(config),
        workflows_path=config.workflows_path,
        forms_path=config.forms_path,
        roles=config.role_names,
        connectors_path=config.connectors_path,
    )

    def human(r: Any) -> str:
        lines = [str(f) for f in report.findings]
        lines.append(
            f"{len(report.files)} file(s): {report.errors} error(s), {report.warnings} warning(s)"
        )
        return "\n".join(lines)

    _emit(report.to_dict(), as_json, human)
    if report.errors or (strict and report.warnings):
        sys.exit(1)


@offline_command(cli, "simulate")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False),
    default="seed_data/simulation.yaml",
    show_default=True,
    help="Simulation settings: the machines and their connector files.",
)
@click.option(
    "--duration", type=click.FloatRange(min=0), help="Stop after SECONDS (default: Ctrl+C)."
)
def simulate(config: Any, path: str, duration: float | None, *, as_json: bool) -> None:
    """Serve simulated presses as Modbus TCP PLCs and run simulated test stations that publish
    over MQTT, at the addresses of their connector files (default broker: TAKTFLOW_MQTT_URL)."""
    import asyncio

    from taktflow.connectors.simulator import load_simulation, run_simulation

    settings = load_simulation(path, config.connectors_path, config.mqtt_url)
    try:
        asyncio.run(run_simulation(settings, duration, click.echo))
    except KeyboardInterrupt:
        pass


def _decision_keys(r: dict) -> dict:
    if r.get("form"):
        return {"form": r["form"]}
    return {"decision_id": r["decision_id"]} if r.get("decision_id") else {}


@command(cli, "processes")
def processes(engine: Any, *, as_json: bool) -> None:
    """Deployed processes with their latest version."""

    def human(rows: list[dict]) -> str:
        if not rows:
            return "no processes deployed (try: taktflow deploy workflows/)"
        return "\n".join(
            f"{r['process_id']:30} v{r['version']:<4} {r['name'] or '':30} {r['file']}"
            for r in rows
        )

    _emit(engine.processes(), as_json, human)


@command(cli, "process")
@click.argument("process_id")
@click.option("--version", type=int, help="A version number (default: the latest).")
@click.option(
    "--bpmn",
    is_flag=True,
    help="Print the version's BPMN XML (for a YAML workflow: the BPMN it compiled to).",
)
def process(
    engine: Any, process_id: str, version: int | None, bpmn: bool, *, as_json: bool
) -> None:
    """One deployed process with all its versions, or the BPMN of one version."""
    if bpmn:
        click.echo(engine.process_source(process_id, version), nl=False)
        return
    found = engine.process(process_id)
    if version is not None:
        found = next((v for v in found["versions"] if v["version"] == version), None)
        if found is None:
            raise NotFound(f"process {process_id!r} has no version {version}")

    def human(p: dict) -> str:
        rows = p.get("versions") or [p]
        lines = [f"{p['process_id']}: {p['name'] or ''}"]
        lines += [
            f"  v{v['version']:<4} {v['deployed_at']}  {v['deployed_by'] or '-':12} {v['file']}"
            for v in rows
        ]
        return "\n".join(lines)

    _emit(found, as_json, human)


# ---------------------------------------------------------------------- accounts
@cli.group()
def user() -> None:
    """User accounts and their roles."""


def _password(stdin: bool, required: bool = False) -> str | None:
    if not stdin:
        if required:
            raise BadRequest("give the password on standard input: --password-stdin")
        return None
    text = sys.stdin.readline().rstrip("\r\n")
    if not text:
        raise BadRequest("--password-stdin: standard input is empty")
    return text


def _user_line(u: dict) -> str:
    state = "" if u["active"] else "  (disabled)"
    login = "" if u["has_password"] else "  (no password: API tokens only)"
    return f"{u['username']:20} {','.join(u['roles']):40}{state}{login}"


@command(user, "create")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True, help="A role (repeatable).")
@click.option("--display-name", help="Name shown on screens.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def user_create(
    engine: Any,
    name: str,
    roles: tuple[str, ...],
    display_name: str | None,
    password_stdin: bool,
    *,
    as_json: bool,
) -> None:
    """Create a user with one or more roles (without a password: API tokens only)."""
    from taktflow.app import accounts

    created = accounts().create_user(name, roles, _password(password_stdin), display_name)
    _emit(created, as_json, lambda u: f"created user {_user_line(u)}")


@command(user, "list")
def user_list(engine: Any, *, as_json: bool) -> None:
    """Users, their roles and whether they can log in."""
    from taktflow.app import accounts

    rows = accounts().users()
    _emit(rows, as_json, lambda r: "\n".join(map(_user_line, r)) or "no users")


@command(user, "roles")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True, help="A role (repeatable).")
def user_roles(engine: Any, name: str, roles: tuple[str, ...], *, as_json: bool) -> None:
    """Replace a user's roles."""
    from taktflow.app import accounts

    _emit(accounts().set_roles(name, roles), as_json, _user_line)


@command(user, "password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def user_password(engine: Any, name: str, password_stdin: bool, *, as_json: bool) -> None:
    """Set a user's password."""
    from taktflow.app import accounts

    accounts().set_password(name, _password(password_stdin, required=True) or "")
    _emit({"username": name, "password": "set"}, as_json, lambda r: f"password of {name} set")


@command(user, "disable")
@click.argument("name")
def user_disable(engine: Any, name: str, *, as_json: bool) -> None:
    """Stop a user from logging in or using tokens (tasks and history stay)."""
    from taktflow.app import accounts

    _emit(accounts().set_active(name, False), as_json, _user_line)


@command(user, "enable")
@click.argument("name")
def user_enable(engine: Any, name: str, *, as_json: bool) -> None:
    """Let a disabled user in again."""
    from taktflow.app import accounts

    _emit(accounts().set_active(name, True), as_json, _user_line)


@command(user, "seed")
@click.argument("path", type=click.Path(dir_okay=False), default="seed_data/users.yaml")
def user_seed(engine: Any, path: str, *, as_json: bool) -> None:
    """Create the demo accounts of PATH that do not exist yet (development only)."""
    from flask import current_app

    if current_app.config["TAKTFLOW"].env == "production":
        raise BadRequest(
            "demo accounts have public passwords: set TAKTFLOW_ENV=development to seed them"
        )
    created = _seed_users(path)
    _emit(
        created,
        as_json,
        lambda rows: (
            "\n".join(f"created {_user_line(u)}" for u in rows) or "demo accounts already there"
        ),
    )


def _seed_users(path: str) -> list[dict[str, Any]]:
    """The accounts of a users file that did not exist yet, now created."""
    from taktflow.app import accounts
    from taktflow.yamlflow.loader import YamlProblem, load

    try:
        with open(path, encoding="utf-8") as handle:
            data = load(handle.read())
    except OSError as exc:
        raise BadRequest(f"{path}: cannot read: {exc.strerror}") from None
    except YamlProblem as exc:
        where = f"{path}:{exc.pos.line}:{exc.pos.column}" if exc.pos else path
        raise BadRequest(f"{where}: {exc.message}") from None
    entries = data.get("users") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise BadRequest(f"{path}: expected `users:`, a list of name, roles, password")
    existing = {u["username"] for u in accounts().users()}
    created = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BadRequest(f"{path}: each user needs a name, roles and a password")
        if entry["name"] in existing:
            continue
        created.append(
            accounts().create_user(
                entry["name"],
                entry.get("roles") or [],
                entry.get("password"),
                entry.get("display_name"),
            )
        )
    return created


@command(cli, "seed")
@click.option("--folder", type=click.Path(file_okay=False), default="seed_data",
              show_default=True, help="Folder with chart_of_accounts.yaml, master_data.yaml "
              "and users.yaml.")  # fmt: skip
def seed(engine: Any, folder: str, *, as_json: bool) -> None:
    """Load the demo plant: chart of accounts, items, locations and BOMs, its opening stock
    (once) and, outside production, the demo accounts of users.yaml. Safe to run again: it
    adds what is new."""
    from flask import current_app

    from taktflow.mfg.seed import load_plant

    for name in ("chart_of_accounts.yaml", "master_data.yaml"):
        if not (Path(folder) / name).is_file():
            raise BadRequest(f"{folder}/{name} does not exist")
    try:
        counts = load_plant(engine.bind, folder, opening_stock_at=engine.clock.now())
    except OSError as exc:
        raise BadRequest(f"{folder}: cannot read: {exc.strerror}") from None
    users = Path(folder) / "users.yaml"
    if users.is_file() and current_app.config["TAKTFLOW"].env != "production":
        counts["demo accounts created"] = len(_seed_users(str(users)))
    _emit(counts, as_json, lambda c: "plant master data: " + ", ".join(
        f"{n} {what}" for what, n in c.items()))  # fmt: skip


def _brief(value: Any) -> str:
    """A check's value on one line: `key value, key value` for a mapping."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_brief(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


@cli.group()
def scenario() -> None:
    """Simulated runs of the demo plant, reconciled (docs/scenario.md)."""


@command(scenario, "week")
@click.option(
    "--orders",
    type=int,
    default=20,
    show_default=True,
    help="Production orders the ERP sends during the week (4 to 60).",
)
@click.option("--seed", type=int, default=1, show_default=True,
              help="Decides everything random: the same seed gives the same week.")  # fmt: skip
def scenario_week(engine: Any, orders: int, seed: int, *, as_json: bool) -> None:
    """Run the demo plant for a simulated week on this (fresh) database and print each
    reconciliation check; exit status 1 when any fails."""
    from flask import current_app

    from taktflow.mfg.scenario import WeekSettings, run_week

    config = current_app.config["TAKTFLOW"]
    if config.env == "production":
        raise BadRequest(
            "the scenario writes a simulated week and the demo accounts (public passwords): "
            "set TAKTFLOW_ENV=development and use a fresh database"
        )
    settings = WeekSettings(orders=orders, seed=seed, root=Path.cwd())
    say = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    say(f"simulating the week of 2 March 2026: {orders} orders, seed {seed}")
    week, checks = run_week(engine.bind, config, settings, progress=say)
    failed = [c for c in checks if not c.passed]
    if as_json:
        click.echo(json.dumps({"orders": orders, "seed": seed, "passed": not failed,
                               "checks": [c.to_dict() for c in checks]},
                              indent=2, default=_json_default))  # fmt: skip
    else:
        for c in checks:
            click.echo(f"{'PASS' if c.passed else 'FAIL'}  {c.name}\n"
                       f"      expected {_brief(c.expected)}\n      actual   {_brief(c.actual)}"
                       + (f"\n      {c.detail}" if c.detail else ""))  # fmt: skip
        click.echo(f"{len(checks) - len(failed)} of {len(checks)} checks passed")
    if failed:
        sys.exit(1)


@cli.group()
def token() -> None:
    """API tokens for systems (ERP, scripts, connectors)."""


@command(token, "create")
@click.option("--user", "username", required=True, help="The user the token acts as.")
@click.option(
    "--role", "roles", multiple=True, help="Limit the token to these of the user's roles."
)
@click.option("--name", default="", help="What the token is for (e.g. ERP interface).")
def token_create(
    engine: Any, username: str, roles: tuple[str, ...], name: str, *, as_json: bool
) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    from taktflow.app import accounts

    record, secret = accounts().create_token(username, name, roles or None)
    record["token"] = secret
    _emit(
        record,
        as_json,
        lambda r: (
            f"{r['token']}\n(token {r['id']} for {r['user']}: send it as "
            "'Authorization: Bearer <token>'; it cannot be shown again)"
        ),
    )


@command(token, "list")
def token_list(engine: Any, *, as_json: bool) -> None:
    """Tokens (never their secrets), with when they were last used."""
    from taktflow.app import accounts

    def human(rows: list[dict]) -> str:
        lines = []
        for t in rows:
            state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
            roles = ",".join(t["roles"]) if t["roles"] is not None else "(all of the user's)"
            lines.append(f"{t['id']:<5} {t['user']:16} {roles:30} {state:10} {t['name']}")
        return "\n".join(lines) or "no tokens"

    _emit(accounts().tokens(), as_json, human)


@command(token, "revoke")
@click.argument("token_id", type=int)
def token_revoke(engine: Any, token_id: int, *, as_json: bool) -> None:
    """Revoke a token: requests with it are refused from now on."""
    from taktflow.app import accounts

    record = accounts().revoke_token(token_id)
    _emit(record, as_json, lambda r: f"token {r['id']} of {r['user']} revoked")


# ---------------------------------------------------------------------- instances
@command(cli, "start")
@click.argument("process_id")
@click.option("--data", help="Start data as a JSON object (or @file.json).")
@click.option("--user", help="Who starts it (recorded in the audit).")
def start(
    engine: Any, process_id: str, data: str | None, user: str | None, *, as_json: bool
) -> None:
    """Start an instance of the latest version of PROCESS_ID."""
    started = engine.start(process_id, _json_arg(data, "--data"), actor=user)
    result = {k: started[k] for k in ("instance_id", "process_id", "version", "status")}
    _emit(
        result,
        as_json,
        lambda r: (
            f"instance {r['instance_id']} of {r['process_id']} v{r['version']}: {r['status']}"
        ),
    )


def _task_lines(rows: list[dict]) -> str:
    if not rows:
        return "no ready tasks"
    return "\n".join(
        f"{r['task_id']}  instance {r['instance_id']:<6} {r['title'] or r['name']:30} "
        f"lane={r['lane'] or '-'} form={r['form'] or '-'}"
        for r in rows
    )


@command(cli, "tasks")
@click.option("--instance", "instance_id", type=int, help="Only tasks of this instance.")
def tasks(engine: Any, instance_id: int | None, *, as_json: bool) -> None:
    """Ready user and manual tasks."""
    rows = engine.tasks(instance_id)
    out = [
        {
            k: r[k]
            for k in (
                "task_id",
                "instance_id",
                "process_id",
                "name",
                "title",
                "lane",
                "form",
                "instructions",
            )
        }
        for r in rows
    ]
    _emit(out, as_json, _task_lines)


def _instance_text(view: dict) -> str:
    lines = [
        f"instance {view['instance_id']}: {view['process_id']} v{view['version']} "
        f"- {view['status']}"
    ]
    if view.get("error"):
        e = view["error"]
        lines.append(f"error at {e.get('element_id')}: {e.get('message')}")
    for t in view.get("ready_tasks", []):
        lines.append(f"  ready: {t['title']} ({t['task_id']}) lane={t['lane'] or '-'}")
    for w in view.get("waiting", []):
        extra = w.get("due") or w.get("correlation") or ""
        lines.append(f"  waiting for {w['kind']} {w['name']} {extra}")
    lines.append("  data: " + json.dumps(view.get("data", {}), default=_json_default))
    return "\n".join(lines)


@command(cli, "complete")
@click.argument("task_id")
@click.option("--data", help="Task data as a JSON object (or @file.json).")
@click.option("--user", help="Who completes it (recorded in the audit).")
def complete(
    engine: Any, task_id: str, data: str | None, user: str | None, *, as_json: bool
) -> None:
    """Complete a ready task with data (checked against the task's form); prints the instance.

    A form with a signature cannot be completed here: the signer enters a password on the
    task page or through the API.
    """
    from taktflow.app import task_forms

    view = task_forms().submit(
        task_id, _json_arg(data, "--data") or {}, actor=user, check_password=None, strict=True
    )
    _emit(view, as_json, _instance_text)


@command(cli, "instance")
@click.argument("instance_id", type=int)
def instance(engine: Any, instance_id: int, *, as_json: bool) -> None:
    """One instance: status, data, error, ready tasks, waits and history."""
    _emit(engine.instance(instance_id), as_json, _instance_text)


@command(cli, "instances")
@click.option("--process", "process_id", help="Only instances of this process.")
@click.option("--status", help="active, completed, error, terminated or suspended.")
@click.option("--limit", type=int, default=100, show_default=True)
def instances(
    engine: Any, process_id: str | None, status: str | None, limit: int, *, as_json: bool
) -> None:
    """Instances, newest first."""
    rows = engine.instances(process_id=process_id, status=status, limit=limit)
    _emit(
        rows,
        as_json,
        lambda rs: (
            "\n".join(
                f"{r['instance_id']:<8} {r['process_id']:30} v{r['version']:<4} {r['status']}"
                for r in rs
            )
            or "no instances"
        ),
    )


@command(cli, "retry")
@click.argument("instance_id", type=int)
@click.option("--data", help="Data to merge into the failed task before it runs again.")
@click.option("--user")
def retry(
    engine: Any, instance_id: int, data: str | None, user: str | None, *, as_json: bool
) -> None:
    """Run the failed task of an instance in error again, and continue."""
    _emit(engine.retry(instance_id, _json_arg(data, "--data"), actor=user), as_json, _instance_text)


@command(cli, "terminate")
@click.argument("instance_id", type=int)
@click.option("--user")
@click.option("--reason", default="", help="Why (recorded in the audit).")
def terminate(
    engine: Any, instance_id: int, user: str | None, reason: str, *, as_json: bool
) -> None:
    """Cancel an instance for good."""
    _emit(engine.terminate(instance_id, actor=user, reason=reason), as_json, _instance_text)


@command(cli, "suspend")
@click.argument("instance_id", type=int)
@click.option("--user")
def suspend(engine: Any, instance_id: int, user: str | None, *, as_json: bool) -> None:
    """Pause an instance (tasks, messages and timers wait until it is resumed)."""
    _emit(engine.suspend(instance_id, actor=user), as_json, _instance_text)


@command(cli, "resume")
@click.argument("instance_id", type=int)
@click.option("--user")
def resume(engine: Any, instance_id: int, user: str | None, *, as_json: bool) -> None:
    """Resume a suspended instance."""
    _emit(engine.resume(instance_id, actor=user), as_json, _instance_text)


# ---------------------------------------------------------------------- events
@command(cli, "message")
@click.argument("name")
@click.option(
    "--correlation",
    "-c",
    multiple=True,
    metavar="KEY=VALUE",
    help="Correlation property value (repeatable), e.g. -c order_id=PO-42.",
)
@click.option("--data", help="Message payload as a JSON object (or @file.json).")
@click.option("--id", "idempotency_key", help="Idempotency key: a repeated key is ignored.")
def message(
    engine: Any,
    name: str,
    correlation: tuple[str, ...],
    data: str | None,
    idempotency_key: str | None,
    *,
    as_json: bool,
) -> None:
    """Send message NAME to the instances waiting for it (or start those it starts)."""
    result = engine.send_message(
        name,
        correlation=_pairs(correlation, "--correlation"),
        data=_json_arg(data, "--data"),
        idempotency_key=idempotency_key,
        source="cli",
    ).to_dict()
    out = {k: result[k] for k in ("message_id", "delivered_to", "started", "buffered")}
    if result["duplicate"]:
        out["duplicate"] = True

    def human(r: dict) -> str:
        if r.get("duplicate"):
            return f"message {r['message_id']}: duplicate key, ignored"
        if r["buffered"]:
            return f"message {r['message_id']}: nothing waits for it yet; kept for later"
        parts = []
        if r["delivered_to"]:
            parts.append("delivered to " + ", ".join(map(str, r["delivered_to"])))
        if r["started"]:
            parts.append("started " + ", ".join(map(str, r["started"])))
        return f"message {r['message_id']}: " + "; ".join(parts)

    _emit(out, as_json, human)


@command(cli, "signal")
@click.argument("name")
@click.option("--data", help="Signal payload as a JSON object.")
@click.option("--id", "idempotency_key", help="Idempotency key: a repeated key is ignored.")
def signal(
    engine: Any, name: str, data: str | None, idempotency_key: str | None, *, as_json: bool
) -> None:
    """Broadcast signal NAME to every instance waiting for it."""
    result = engine.send_signal(
        name, data=_json_arg(data, "--data"), idempotency_key=idempotency_key, source="cli"
    ).to_dict()
    out = {k: result[k] for k in ("message_id", "delivered_to", "started")}
    if result["duplicate"]:
        out["duplicate"] = True

    def human(r: dict) -> str:
        if r.get("duplicate"):
            return f"signal {r['message_id']}: duplicate key, ignored"
        return f"signal {r['message_id']}: delivered to {len(r['delivered_to'])} instance(s)"

    _emit(out, as_json, human)


@command(cli, "actions")
def actions(engine: Any, *, as_json: bool) -> None:
    """Service-task actions workflows may call, with their parameters."""

    def human(rows: list[dict]) -> str:
        lines = []
        for a in rows:
            params = ", ".join(
                f"{p['name']}: {p['type']}{'' if p['required'] else ' (optional)'}"
                for p in a["params"]
            )
            summary = (a["description"] or "").split("\n")[0]
            lines.append(f"{a['name']}({params})  {summary}")
        return "\n".join(lines)

    _emit(engine.actions.describe(), as_json, human)


# ---------------------------------------------------------------------- processes
@command(cli, "worker")
@click.option("--once", is_flag=True, help="Run one pass and exit.")
@click.option("--interval", type=float, help="Seconds between passes (default from config).")
def worker(engine: Any, once: bool, interval: float | None, *, as_json: bool) -> None:
    """Fire due timers and dispatch pending events, in a loop (or once)."""
    from flask import current_app

    if once:
        _emit(
            engine.worker_pass(),
            as_json,
            lambda r: ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in r.items()),
        )
        return
    config = current_app.config["TAKTFLOW"]
    _service_logging()
    tune_for_service()
    click.echo(
        f"taktflow worker running (interval {interval or config.worker_interval_seconds}"
        " s); Ctrl+C stops it",
        err=True,
    )
    try:
        engine.run_worker(interval or config.worker_interval_seconds)
    except KeyboardInterrupt:
        click.echo("worker stopped", err=True)


@command(cli, "serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
def serve(engine: Any, host: str, port: int, threads: int, *, as_json: bool) -> None:
    """Serve the platform (waitress) with the embedded worker, unless disabled in config."""
    from flask import current_app
    from waitress import serve as waitress_serve

    app = current_app._get_current_object()
    config = app.config["TAKTFLOW"]
    try:
        config.require_secret_key()
    except ConfigError as exc:
        raise CliError(f"configuration error: {exc}", EXIT_CONFIG) from None
    _service_logging()
    tune_for_service()
    stop = threading.Event()
    if config.embedded_worker:
        thread = threading.Thread(
            target=engine.run_worker,
            args=(config.worker_interval_seconds, stop),
            name="taktflow-worker",
            daemon=True,
        )
        thread.start()
    click.echo(f"taktflow serving on http://{host}:{port}/ (Ctrl+C stops it)", err=True)
    try:
        waitress_serve(app, host=host, port=port, threads=threads)
    finally:
        stop.set()


@cli.group()
def connectors() -> None:
    """Machine connectors (connectors/*.yaml): Modbus TCP and MQTT (JSON, text, Sparkplug B)."""


def _connector_files(config: Any) -> list[Any]:
    """The connectors folder's files; a broken one stops the command with its line."""
    from taktflow.connectors.definition import read_folder

    found, problems = read_folder(config.connectors_path, mqtt_url=config.mqtt_url)
    if problems:
        raise DefinitionError(problems)
    return found


def _in_memory(database_url: str) -> bool:
    url = make_url(database_url)
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


@command(connectors, "run")
@click.option("--duration", type=float, help="Stop after this many seconds (default: Ctrl+C).")
@click.option(
    "--embedded-broker",
    is_flag=True,
    help="Serve the MQTT broker of TAKTFLOW_MQTT_URL (on this machine) inside this process "
    "(amqtt, MQTT 3.1.1): the demo's broker when no other is installed.",
)
def connectors_run(
    engine: Any, duration: float | None, embedded_broker: bool, *, as_json: bool
) -> None:
    """Run every enabled connector of the connectors folder: poll, apply rules, deliver."""
    import asyncio

    from flask import current_app

    from taktflow.connectors.runtime import ConnectorRuntime, ProcessDispatcher

    config = current_app.config["TAKTFLOW"]
    definitions = _connector_files(config)
    broker = None
    if embedded_broker:
        from taktflow.connectors.broker import EmbeddedBroker

        broker = EmbeddedBroker(config.mqtt_url)
        definitions = broker.adapt(definitions)
    # Delivery runs in a child process, on the other core (ProcessDispatcher): with one
    # interpreter lock the connectors and the workflow steps took turns. (SQLite writers of
    # the two processes queue for the write lock: taktflow.sqlite_writers.)
    dispatcher = None
    if not _in_memory(config.database_url):
        # The database URL goes by environment, not argument: it may hold a password, and
        # the command line of a process is visible to every user of the machine.
        dispatcher = ProcessDispatcher(
            [sys.executable, "-c", "from taktflow.cli import main; main()", "connectors",
             "dispatch"], env={**os.environ, "TAKTFLOW_DATABASE_URL": config.database_url},
        )  # fmt: skip
    runtime = ConnectorRuntime(definitions, engine, mqtt_url=config.mqtt_url,
                               mqtt_protocol="3.1.1" if embedded_broker else "5",
                               dispatcher=dispatcher)  # fmt: skip
    _service_logging()
    # Full collections of the start-up objects stall delivery by tens of milliseconds.
    tune_for_service()
    for c in runtime.connectors:
        d = c.definition
        if d.mqtt is not None:
            count = len(d.subscriptions)
            click.echo(f"{d.id}: MQTT {d.mqtt.protocol} {d.mqtt.url}, {count} subscription"
                       f"{'' if count == 1 else 's'}", err=True)  # fmt: skip
        elif d.modbus is not None:
            link = d.modbus
            click.echo(f"{d.id}: Modbus TCP {link.host}:{link.port} device "
                       f"{link.device_id}, every {link.poll_ms} ms", err=True)  # fmt: skip
    for s in runtime.unsupported:
        click.echo(f"{s.connector}: not run ({s.last_error})", err=True)

    async def main() -> None:
        stop = asyncio.Event()
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, stop.set)
        if broker is not None:
            await broker.start()
            click.echo(f"embedded MQTT broker on {broker.url} (amqtt, MQTT 3.1.1)", err=True)
        try:
            await runtime.run(stop)
        finally:
            if broker is not None:
                await broker.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    _emit(runtime.statuses(), as_json, lambda rows: "\n".join(
        f"{r['connector']:20} {r['state']:12} polls {r['polls']}, events {r['events_out']}"
        + (f" - {r['last_error']}" if r["last_error"] else "") for r in rows))  # fmt: skip


@command(connectors, "dispatch")
def connectors_dispatch(engine: Any, *, as_json: bool) -> None:
    """Deliver the events the connectors store (started by `connectors run`, which wakes it
    through standard input; it stops at end-of-file). Not needed on its own."""
    from taktflow.connectors.runtime import dispatch_until_closed

    _service_logging()
    tune_for_service()
    dispatch_until_closed(engine, sys.stdin.fileno())


@command(connectors, "status")
def connectors_status(engine: Any, *, as_json: bool) -> None:
    """Each connector file with its runtime's state (connected, last error; "not running" when
    `connectors run` is not reporting), the point values it last stored and its messages in
    the inbox by status (an MQTT connector has no points: its messages show it working)."""
    from flask import current_app

    rows = []
    for definition in _connector_files(current_app.config["TAKTFLOW"]):
        stored = engine.connector_state(definition.id)
        rows.append(
            {
                "connector": definition.id, "type": definition.type,
                "enabled": definition.enabled,
                "points": {k.removeprefix("point:"): v for k, v in stored.items()
                           if k.startswith("point:")},
                **{k: v for k, v in engine.connector_overview(definition.id).items()
                   if k in ("messages", "runtime")},
            }
        )  # fmt: skip

    def line(r: dict) -> str:
        values = ", ".join(f"{k}={v}" for k, v in r["points"].items())
        if not values and r["type"] != "mqtt":
            values = "no values yet"
        counts = ", ".join(f"{n} {status}" for status, n in r["messages"].items() if n)
        runtime = r["runtime"]["state"]
        if r["runtime"].get("last_error"):
            runtime += f" ({r['runtime']['last_error']})"
        return f"{r['connector']:20} {r['type']:7} " + " | ".join(
            part for part in (runtime, values, f"messages: {counts or 'none yet'}") if part
        )

    _emit(rows, as_json, lambda rs: "\n".join(map(line, rs)) or "no connectors")


def main() -> None:
    """Console entry point."""
    # Commands report failures themselves, in one line; library log records (e.g. an
    # instance that went to error, which the command's output shows anyway) stay quiet
    # unless `worker` or `serve` configures logging.
    logging.getLogger("taktflow").addHandler(logging.NullHandler())
    cli(obj={})


if __name__ == "__main__":
    main()
