"""Connector files (connectors/<id>.yaml): read and checked with lines, like workflows.

A connector file names one machine link: a Modbus TCP PLC with its points, or an MQTT broker
with its subscriptions, plus the rules that turn signals into workflow events. Every problem
is reported with file, line and column, and all of them at once (docs/connectors.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from taktflow.config import DEFAULT_MQTT_URL
from taktflow.connectors.modbus_points import TABLES, TYPES, Point
from taktflow.connectors.rules import TRIGGERS, Emit, Rule, check_expression
from taktflow.errors import DefinitionError, DefinitionProblem
from taktflow.yamlflow.loader import Map, Pos, Seq, YamlProblem, load

IDENT = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
FILE_KEYS = {"connector", "type", "description", "enabled", "machine", "modbus", "mqtt",
             "points", "subscriptions", "rules"}  # fmt: skip
MODBUS_KEYS = {"host", "port", "device_id", "poll_ms", "timeout_s", "reconnect"}
MQTT_KEYS = {"url", "client_id", "username_env", "password_env", "tls", "session_expiry_s",
             "protocol"}  # fmt: skip
#: MQTT protocol versions a connector speaks: 5 (persistent session with an expiry) or 3.1.1
#: (brokers without MQTT 5, such as the embedded one of `make run`).
PROTOCOLS = ("5", "3.1.1")
POINT_KEYS = {"table", "address", "type", "count", "word_order", "byte_order", "scale", "offset",
              "unit"}  # fmt: skip
SUBSCRIPTION_KEYS = {"topic", "qos", "format"}
FORMATS = ("json", "text", "sparkplug")
RULE_KEYS = {"id", "point", "trigger", "deadband", "debounce_ms", "above", "below", "hysteresis",
             "states", "condition", "message", "start", "correlation", "variables",
             "message_id"}  # fmt: skip
#: Rules that watch one point need `point:`; a condition may watch messages instead.
POINT_TRIGGERS = {"change", "increase", "rising_edge", "falling_edge", "threshold", "state"}


@dataclass(frozen=True)
class Subscription:
    topic: str
    qos: int = 1
    format: str = "json"


@dataclass
class ModbusLink:
    host: str
    port: int = 502
    device_id: int = 1
    poll_ms: int = 500
    timeout_s: float = 1.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0


@dataclass
class MqttLink:
    url: str
    client_id: str
    username_env: str | None = None
    password_env: str | None = None
    tls: bool = False
    session_expiry_s: int = 86400
    #: "5" or "3.1.1" (PROTOCOLS).
    protocol: str = "5"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        default = 8883 if self.tls else 1883
        return urlsplit(self.url).port or default


@dataclass
class ConnectorDefinition:
    id: str
    type: str
    machine: str | None
    enabled: bool
    description: str | None
    modbus: ModbusLink | None = None
    mqtt: MqttLink | None = None
    points: dict[str, Point] = field(default_factory=dict)
    subscriptions: list[Subscription] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    file: str = ""

    @property
    def messages(self) -> set[str]:
        """Workflow messages this connector sends (lint checks that something waits)."""
        return {r.emit.message for r in self.rules if r.emit.message}

    @property
    def processes(self) -> set[str]:
        return {r.emit.start_process for r in self.rules if r.emit.start_process}


def parse_connector(
    text: str, file: str = "<connector>", *, mqtt_url: str = DEFAULT_MQTT_URL
) -> ConnectorDefinition:
    """The connector in `text`; DefinitionError listing every problem with its line.

    `mqtt_url` is the broker of an MQTT connector whose file names none (the site's broker,
    config.mqtt_url from TAKTFLOW_MQTT_URL).
    """
    reader = _Reader(file, mqtt_url)
    try:
        doc = load(text, kind="connector")
    except YamlProblem as exc:
        reader.problem(exc.message, exc.pos)
        raise DefinitionError(reader.problems) from None
    made = reader.connector(doc)
    if reader.problems or made is None:
        raise DefinitionError(reader.problems)
    made.file = file
    return made


def read_folder(
    folder: str | Path, *, mqtt_url: str = DEFAULT_MQTT_URL
) -> tuple[list[ConnectorDefinition], list[DefinitionProblem]]:
    """Every connector file of a folder, and the problems of those that cannot be read."""
    from taktflow.forms.definition import is_form_text

    path = Path(folder)
    found: list[ConnectorDefinition] = []
    problems: list[DefinitionProblem] = []
    for file in sorted(path.glob("*.y*ml")) if path.is_dir() else []:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(DefinitionProblem(str(file), f"cannot read the file: {exc}"))
            continue
        if not is_form_text(text, key="connector"):
            continue
        try:
            found.append(parse_connector(text, str(file), mqtt_url=mqtt_url))
        except DefinitionError as exc:
            problems.extend(exc.problems)
    return found, problems


class _Reader:
    def __init__(self, file: str, mqtt_url: str = DEFAULT_MQTT_URL) -> None:
        self.file = file
        self.mqtt_url = mqtt_url
        self.problems: list[DefinitionProblem] = []
        self.point_names: set[str] = set()

    def problem(self, reason: str, pos: Pos | None) -> None:
        self.problems.append(
            DefinitionProblem(
                self.file, reason, line=pos.line if pos else None,
                column=pos.column if pos else None,
            )
        )  # fmt: skip

    def connector(self, doc: Any) -> ConnectorDefinition | None:
        if not isinstance(doc, Map):
            self.problem("a connector file is a mapping that starts with `connector: <id>`",
                         Pos(1, 1))  # fmt: skip
            return None
        self.unknown(doc, FILE_KEYS, "connector")
        ident = doc.get("connector")
        if not isinstance(ident, str) or not IDENT.match(ident):
            self.problem(
                "connector: the id must be lower-case letters, digits, '_' or '-' starting "
                f"with a letter, not {ident!r}",
                doc.at("connector"),
            )
            ident = "connector"
        kind = doc.get("type")
        if kind not in ("modbus", "mqtt"):
            self.problem(f"type must be modbus or mqtt, not {kind!r}", doc.at("type"))
            return None
        made = ConnectorDefinition(
            id=ident,
            type=kind,
            machine=self.text(doc, "machine", "connector"),
            enabled=self.flag(doc, "enabled", "connector", default=True),
            description=self.text(doc, "description", "connector"),
        )
        other = "mqtt" if kind == "modbus" else "modbus"
        if other in doc:
            self.problem(f"a {kind} connector has no `{other}:` section", doc.key_pos[other])
        if kind not in doc or not isinstance(doc[kind], Map):
            self.problem(f"`{kind}:` (the connection settings) is missing", doc.pos)
            return None
        if kind == "modbus":
            made.modbus = self.modbus(doc["modbus"])
            if "subscriptions" in doc:
                self.problem("a modbus connector has points, not subscriptions",
                             doc.key_pos["subscriptions"])  # fmt: skip
            made.points = self.points(doc)
        else:
            made.mqtt = self.mqtt(doc["mqtt"], ident)
            if "points" in doc:
                self.problem("an mqtt connector has subscriptions, not points",
                             doc.key_pos["points"])  # fmt: skip
            made.subscriptions = self.subscriptions(doc)
        made.rules = self.rules(doc, made)
        return made

    # ------------------------------------------------------------------ links
    def modbus(self, raw: Map) -> ModbusLink:
        self.unknown(raw, MODBUS_KEYS, "modbus")
        host = self.text(raw, "host", "modbus")
        if not host:
            self.problem("modbus: `host` is required (the PLC's address)", raw.pos)
        link = ModbusLink(host=host or "127.0.0.1")
        link.port = self.number(raw, "port", "modbus", 1, 65535, whole=True, default=502)
        link.device_id = self.number(raw, "device_id", "modbus", 0, 255, whole=True, default=1)
        link.poll_ms = self.number(raw, "poll_ms", "modbus", 10, 3_600_000, whole=True,
                                   default=500)  # fmt: skip
        link.timeout_s = self.number(raw, "timeout_s", "modbus", 0.05, 60, default=1.0)
        reconnect = raw.get("reconnect")
        if reconnect is not None:
            if not isinstance(reconnect, Map):
                self.problem("modbus: reconnect is {min_s: N, max_s: N}", raw.at("reconnect"))
            else:
                self.unknown(reconnect, {"min_s", "max_s"}, "modbus reconnect")
                link.reconnect_min_s = self.number(reconnect, "min_s", "reconnect", 0.01, 600,
                                                   default=0.5)  # fmt: skip
                link.reconnect_max_s = self.number(reconnect, "max_s", "reconnect", 0.01, 3600,
                                                   default=30.0)  # fmt: skip
        return link

    def mqtt(self, raw: Map, ident: str) -> MqttLink:
        self.unknown(raw, MQTT_KEYS, "mqtt")
        url = self.text(raw, "url", "mqtt") or self.mqtt_url
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            self.problem(f"mqtt: url must look like mqtt://host:1883, not {url!r}", raw.at("url"))
        link = MqttLink(url=url, client_id=self.text(raw, "client_id", "mqtt")
                        or f"taktflow-{ident}")  # fmt: skip
        link.tls = self.flag(raw, "tls", "mqtt", default=parts.scheme == "mqtts")
        for key in ("username_env", "password_env"):
            value = self.text(raw, key, "mqtt")
            if value is not None and not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
                self.problem(
                    f"mqtt: {key} names an environment variable (e.g. PLANT_MQTT_USER), not "
                    f"{value!r}: secrets never go into connector files",
                    raw.at(key),
                )
            setattr(link, key, value)
        link.session_expiry_s = self.number(raw, "session_expiry_s", "mqtt", 0, 2**32 - 1,
                                            whole=True, default=86400)  # fmt: skip
        protocol = raw.get("protocol", "5")
        # `protocol: 5` reads as a number; `3.1.1` is text either way.
        if isinstance(protocol, bool) or str(protocol) not in PROTOCOLS:
            self.problem(f'mqtt: protocol must be "5" or "3.1.1", not {protocol!r}',
                         raw.at("protocol"))  # fmt: skip
        else:
            link.protocol = str(protocol)
            if link.protocol == "3.1.1" and "session_expiry_s" in raw:
                self.problem("mqtt: session_expiry_s is MQTT 5 only (a 3.1.1 broker keeps a "
                             "session as long as it is configured to)",
                             raw.key_pos["session_expiry_s"])  # fmt: skip
        return link

    # ------------------------------------------------------------------ points, subscriptions
    def points(self, doc: Map) -> dict[str, Point]:
        raw = doc.get("points")
        if not isinstance(raw, Map) or not raw:
            self.problem("points: expected a mapping of point name -> {table, address, ...}",
                         doc.at("points"))  # fmt: skip
            return {}
        points: dict[str, Point] = {}
        # A broken point is reported once, not again by every rule that watches it.
        self.point_names = {str(name) for name in raw}
        for name, spec in raw.items():
            pos = raw.key_pos.get(name, raw.pos)
            if not NAME.match(str(name)):
                self.problem(f"point name {name!r}: use letters, digits and '_'", pos)
                continue
            if not isinstance(spec, Map):
                self.problem(f"point {name!r}: expected {{table, address, ...}}", pos)
                continue
            made = self.point(str(name), spec)
            if made is not None:
                points[str(name)] = made
        return points

    def point(self, name: str, spec: Map) -> Point | None:
        where = f"point {name!r}"
        self.unknown(spec, POINT_KEYS, where)
        table = spec.get("table")
        if table not in TABLES:
            self.problem(f"{where}: table must be one of {', '.join(TABLES)}, not {table!r}",
                         spec.at("table"))  # fmt: skip
            return None
        bits = table in ("coil", "discrete")
        kind = spec.get("type", "bool" if bits else "uint16")
        if kind not in TYPES:
            self.problem(f"{where}: type must be one of {', '.join(TYPES)}, not {kind!r}",
                         spec.at("type"))  # fmt: skip
            return None
        if bits != (kind == "bool"):
            held = (
                "coils and discrete inputs hold bool"
                if bits
                else ("registers hold numbers or strings, not bool")
            )
            self.problem(f"{where}: {held}", spec.at("type"))
            return None
        address = self.number(spec, "address", where, 0, 65535, whole=True, default=None)
        if address is None:
            self.problem(f"{where}: `address` is required (0-65535)", spec.pos)
            return None
        orders = {}
        for key in ("word_order", "byte_order"):
            value = spec.get(key, "big")
            if value not in ("big", "little"):
                self.problem(f"{where}: {key} must be big or little, not {value!r}", spec.at(key))
            orders[key] = value if value in ("big", "little") else "big"
        count = self.number(spec, "count", where, 1, 125, whole=True, default=1)
        if "count" in spec and kind != "string":
            self.problem(f"{where}: count applies to string points only", spec.at("count"))
        return Point(
            name=name, table=table, address=address, type=kind, count=count,
            word_order=orders["word_order"], byte_order=orders["byte_order"],
            scale=self.number(spec, "scale", where, -1e12, 1e12, default=1.0),
            offset=self.number(spec, "offset", where, -1e12, 1e12, default=0.0),
            unit=self.text(spec, "unit", where), line=spec.pos.line,
        )  # fmt: skip

    def subscriptions(self, doc: Map) -> list[Subscription]:
        raw = doc.get("subscriptions")
        if not isinstance(raw, Seq) or not raw:
            self.problem("subscriptions: expected a list of {topic, qos, format}",
                         doc.at("subscriptions"))  # fmt: skip
            return []
        found = []
        for index, item in enumerate(raw):
            if not isinstance(item, Map):
                self.problem("a subscription is {topic, qos, format}", raw.item_pos[index])
                continue
            self.unknown(item, SUBSCRIPTION_KEYS, "subscription")
            topic = self.text(item, "topic", "subscription")
            if not topic or not _valid_filter(topic):
                self.problem(
                    f"subscription: topic {topic!r} is not a valid MQTT topic filter ('+' and "
                    "'#' only as whole levels, '#' only last)",
                    item.at("topic"),
                )
                continue
            qos = self.number(item, "qos", "subscription", 0, 2, whole=True, default=1)
            fmt = item.get("format", "json")
            if fmt not in FORMATS:
                self.problem(f"subscription: format must be one of {', '.join(FORMATS)}",
                             item.at("format"))  # fmt: skip
                fmt = "json"
            found.append(Subscription(topic, qos, fmt))
        return found

    # ------------------------------------------------------------------ rules
    def rules(self, doc: Map, made: ConnectorDefinition) -> list[Rule]:
        raw = doc.get("rules")
        if raw is None:
            return []
        if not isinstance(raw, Seq):
            self.problem("rules: expected a list of rules", doc.at("rules"))
            return []
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(raw):
            if not isinstance(item, Map):
                self.problem("a rule is a mapping with id, trigger and message or start",
                             raw.item_pos[index])  # fmt: skip
                continue
            rule = self.rule(item, made)
            if rule is None:
                continue
            if rule.id in seen:
                self.problem(f"rule id {rule.id!r} is used twice (first on line {seen[rule.id]})",
                             item.at("id"))  # fmt: skip
                continue
            seen[rule.id] = item.pos.line
            rules.append(rule)
        return rules

    def rule(self, item: Map, made: ConnectorDefinition) -> Rule | None:
        ident = item.get("id")
        if not isinstance(ident, str) or not IDENT.match(ident):
            self.problem(f"rule: id must be lower-case letters, digits, '_' or '-', not {ident!r}",
                         item.at("id"))  # fmt: skip
            return None
        where = f"rule {ident!r}"
        self.unknown(item, RULE_KEYS, where)
        trigger = item.get("trigger")
        if trigger not in TRIGGERS:
            self.problem(f"{where}: trigger must be one of {', '.join(TRIGGERS)}, not "
                         f"{trigger!r}", item.at("trigger"))  # fmt: skip
            return None
        point = self.text(item, "point", where)
        if trigger in POINT_TRIGGERS and point is None:
            self.problem(f"{where}: a {trigger} rule watches a point: give `point:`", item.pos)
        if point is not None:
            if made.type == "mqtt":
                self.problem(f"{where}: mqtt connectors have no points; use trigger "
                             "condition on the payload", item.at("point"))  # fmt: skip
            elif point not in made.points and point not in self.point_names:
                self.problem(
                    f"{where}: unknown point {point!r} (points: {', '.join(made.points)})",
                    item.at("point"),
                )
        if trigger == "threshold" and ("above" in item) == ("below" in item):
            self.problem(f"{where}: a threshold has `above:` or `below:` (one of them)", item.pos)
        states = self.states(item, where) if trigger == "state" else None
        if trigger == "condition" and "condition" not in item:
            self.problem(f"{where}: a condition rule needs `condition:`", item.pos)
        if ("message" in item) == ("start" in item):
            self.problem(f"{where}: give `message:` (to waiting workflows) or `start:` (a "
                         "process), one of them", item.pos)  # fmt: skip
            return None
        expressions: dict[str, dict[str, str]] = {}
        for key in ("correlation", "variables"):
            value = item.get(key, Map())
            if not isinstance(value, Map):
                self.problem(f"{where}: {key} is a mapping of name -> expression", item.at(key))
                value = Map()
            expressions[key] = {}
            for name, expr in value.items():
                at = value.value_pos.get(name, value.pos)
                text = self.expression(expr, f"{where} {key} {name!r}", at)
                if text is not None:
                    expressions[key][str(name)] = text
        condition = None
        if "condition" in item:
            condition = self.expression(item["condition"], f"{where} condition",
                                        item.at("condition"))  # fmt: skip
        message_id = None
        if "message_id" in item:
            message_id = self.expression(item["message_id"], f"{where} message_id",
                                         item.at("message_id"))  # fmt: skip
        emit = Emit(
            message=self.text(item, "message", where),
            start_process=self.text(item, "start", where),
            correlation=expressions["correlation"],
            variables=expressions["variables"],
            message_id=message_id,
        )
        return Rule(
            id=ident, trigger=trigger, point=point, emit=emit,
            deadband=self.number(item, "deadband", where, 0, 1e12, default=0),
            debounce_ms=self.number(item, "debounce_ms", where, 0, 3_600_000, whole=True,
                                    default=0),
            above=self.number(item, "above", where, -1e12, 1e12, default=None),
            below=self.number(item, "below", where, -1e12, 1e12, default=None),
            hysteresis=self.number(item, "hysteresis", where, 0, 1e12, default=0),
            states=states, condition=condition, line=item.pos.line,
        )  # fmt: skip

    def states(self, item: Map, where: str) -> dict[int | str, str] | None:
        """`states: {idle: 0, running: 1, alarm: [2, 3]}`: state names and the codes that
        mean them (names first, because YAML keys are words), turned into code -> name."""
        raw = item.get("states")
        if not isinstance(raw, Map) or not raw:
            self.problem(
                f"{where}: a state rule names its states and their codes: "
                "states: {idle: 0, running: 1, alarm: [2, 3]}",
                item.at("states"),
            )
            return None
        codes: dict[int | str, str] = {}
        for name, value in raw.items():
            at = raw.value_pos.get(name, raw.pos)
            for code in value if isinstance(value, list) else [value]:
                if isinstance(code, bool) or not isinstance(code, int | str):
                    self.problem(f"{where}: state {name!r}: codes are whole numbers or text",
                                 at)  # fmt: skip
                elif code in codes:
                    self.problem(f"{where}: code {code!r} means both {codes[code]!r} and "
                                 f"{name!r}", at)  # fmt: skip
                else:
                    codes[code] = str(name)
        return codes

    def expression(self, raw: Any, where: str, pos: Pos) -> str | None:
        if isinstance(raw, bool) or raw is None or not isinstance(raw, str | int | float):
            self.problem(f"{where}: expected an expression (text), not {raw!r}", pos)
            return None
        text = str(raw)
        error = check_expression(text)
        if error is not None:
            self.problem(f"{where}: {error}", pos)
            return None
        return text

    # ------------------------------------------------------------------ scalars
    def unknown(self, item: Map, allowed: set[str], where: str) -> None:
        for key in item:
            if key not in allowed:
                self.problem(
                    f"{where}: unknown key {key!r} (expected one of: {', '.join(sorted(allowed))})",
                    item.key_pos.get(key, item.pos),
                )

    def text(self, item: Map, key: str, where: str) -> str | None:
        if key not in item or item[key] is None:
            return None
        value = item[key]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(f"{where}: {key} must be text, not {value!r}", item.at(key))
            return None
        return str(value)

    def flag(self, item: Map, key: str, where: str, *, default: bool) -> bool:
        value = item.get(key, default)
        if not isinstance(value, bool):
            self.problem(f"{where}: {key} must be true or false, not {value!r}", item.at(key))
            return default
        return value

    def number(
        self, item: Map, key: str, where: str, low: float, high: float, *,
        whole: bool = False, default: Any,
    ) -> Any:  # fmt: skip
        if key not in item:
            return default
        value = item[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and whole and not isinstance(value, int):
            ok = False
        if not ok or not (low <= value <= high):
            kind = "a whole number" if whole else "a number"
            self.problem(f"{where}: {key} must be {kind} from {low:g} to {high:g}, not {value!r}",
                         item.at(key))  # fmt: skip
            return default
        return value


def _valid_filter(topic: str) -> bool:
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return bool(topic) and "\x00" not in topic
