"""The rule engine: point values and MQTT messages in, workflow events out.

Pure: no I/O and no clock. The caller passes the time in every `Sample` and persists each rule's
state dict in the same database transaction as the events it produced, so a restart resumes
exactly where the last commit left off (an edge that happened while the runtime was down is seen
on the first sample after it, and a retried sample yields the same idempotency keys).

Common semantics of every trigger:

- No state yet (first sample of a rule ever): the sample is the baseline and fires nothing, so a
  fresh start does not flood the workflows with "initial changes" of every point.
- A rule that watches a point ignores samples without that point (a failed read), so a read
  error never looks like a change or an edge.
- `condition` on a non-condition trigger filters what is emitted, not what is detected: a
  detected change that the filter suppresses still advances the state (a suppressed counter
  delta is consumed, not carried over to the next event).
- Expressions are Jinja expressions in the immutable sandbox with strict undefined names, so a
  misspelt name or missing payload key is an error rather than a silent None.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined
from jinja2.exceptions import SecurityError
from jinja2.runtime import new_context
from jinja2.sandbox import ImmutableSandboxedEnvironment

TRIGGERS = ("change", "increase", "rising_edge", "falling_edge", "threshold", "state", "condition")

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
_GLOBALS = dict(_ENV.globals)


class RuleError(Exception):
    """A rule could not be evaluated; the message names the rule and the expression."""


@dataclass(frozen=True)
class Emit:
    message: str | None = None
    start_process: str | None = None
    correlation: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    #: When given, the idempotency key comes from the source (e.g. a test run id), so a message
    #: redelivered by the broker maps to the same key as its first delivery.
    message_id: str | None = None


@dataclass(frozen=True)
class Rule:
    id: str
    trigger: str
    point: str | None
    emit: Emit
    deadband: float = 0
    debounce_ms: int = 0
    above: float | None = None
    below: float | None = None
    hysteresis: float = 0
    states: dict[int | str, str] | None = None
    condition: str | None = None
    line: int = 0


@dataclass(frozen=True)
class Sample:
    now: datetime
    values: dict[str, Any]
    topic: str | None = None
    payload: Any = None


@dataclass(frozen=True)
class Event:
    kind: str  # "message" or "start"
    name: str
    correlation: dict[str, Any]
    variables: dict[str, Any]
    idempotency_key: str
    rule: str
    at: datetime


def check_expression(text: str) -> str | None:
    """The syntax error of an expression, or None when it compiles."""
    if not text.strip():
        return "empty expression"
    try:
        _compile(text)
    except TemplateSyntaxError as exc:
        return f"invalid expression {text!r}: {exc.message}"
    return None


@lru_cache(maxsize=4096)
def _compile(text: str) -> Any:
    # undefined_to_none=False: an undefined result must raise (strict), not turn into None.
    return _ENV.compile_expression(text, undefined_to_none=False)


#: `payload.line.id`: a name and attribute steps, nothing else; with ` is defined` after it.
_PATH = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)( is defined)?")
#: A step on a dict whose name is one of these yields the dict's method, not an item.
_DICT_ATTRIBUTES = frozenset(dir(dict))


@lru_cache(maxsize=4096)
def _path(text: str) -> tuple[tuple[str, ...], bool] | None:
    """(names, is-defined test) of a plain path expression, else None."""
    match = _PATH.fullmatch(text.strip())
    if match is None:
        return None
    return tuple(match.group(1).split(".")), match.group(2) is not None


def _walk(names: tuple[str, ...], context: dict[str, Any]) -> tuple[bool, Any]:
    """Follow a path through the context and dicts, as far as no step needs Jinja: (True,
    value) when every step is a dict key; (False, None) when Jinja must decide (a method
    name, an object, a missing key: that is its error or its undefined)."""
    first = names[0]
    if first not in context:
        return False, None
    value = context[first]
    for name in names[1:]:
        if type(value) is not dict or name in _DICT_ATTRIBUTES or name not in value:
            return False, None
        value = value[name]
    return True, value


def _evaluate(text: str, context: dict[str, Any]) -> Any:
    """Run a compiled expression. Rules run several expressions per message, thousands of
    messages a second: calling the expression would merge Jinja's globals into a new dict
    and index them every time (most of its cost), so the context is built here, globals
    first, and shared.

    Most expressions only pick a payload field (`payload.key`, `payload.key is defined`).
    Those are walked here when every step is a dict key, which is what the sandbox does
    for them too (an attribute that is not a method of dict is the item); anything else
    runs in Jinja."""
    path = _path(text)
    if path is not None:
        found, value = _walk(path[0], context)
        if found:
            return True if path[1] else value
    return _evaluate_in_jinja(text, context)


def _evaluate_in_jinja(text: str, context: dict[str, Any]) -> Any:
    template = _compile(text)._template
    ctx = new_context(_ENV, template.name, template.blocks, {**_GLOBALS, **context}, shared=True)
    for _ in template.root_render_func(ctx):
        pass
    return ctx.vars["result"]


def _run(rule: Rule, what: str, text: str, context: dict[str, Any]) -> Any:
    try:
        result = _evaluate(text, context)
        if isinstance(result, Undefined):
            str(result)  # StrictUndefined raises its own message (missing name, unsafe access)
        return result
    except TemplateSyntaxError as exc:
        raise RuleError(f"rule {rule.id!r} {what} {text!r}: {exc.message}") from exc
    except SecurityError as exc:
        raise RuleError(f"rule {rule.id!r} {what} {text!r}: not allowed: {exc}") from exc
    except Exception as exc:  # any failure of a user's expression is the rule's error
        raise RuleError(f"rule {rule.id!r} {what} {text!r}: {type(exc).__name__}: {exc}") from exc


def _jsonable(rule: Rule, what: str, text: str, value: Any) -> Any:
    """The value as plain JSON data; events are stored as JSON and sent to the engine."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RuleError(f"rule {rule.id!r} {what} {text!r}: {value} is not a JSON number")
        return value
    if isinstance(value, str):
        return str(value)  # drops Markup and other str subclasses
    if isinstance(value, list | tuple):
        return [_jsonable(rule, what, text, item) for item in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise RuleError(f"rule {rule.id!r} {what} {text!r}: key {key!r} is not text")
            out[str(key)] = _jsonable(rule, what, text, item)
        return out
    raise RuleError(
        f"rule {rule.id!r} {what} {text!r}: {type(value).__name__} is not JSON data ({value!r})"
    )


def _truthy(value: Any) -> bool:
    return bool(value)


def _is_number(value: Any) -> bool:
    # bool is an int in Python, but a coil is a level, not a quantity.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(rule: Rule, value: Any) -> float:
    if not _is_number(value):
        raise RuleError(f"rule {rule.id!r}: a {rule.trigger} rule needs a number, not {value!r}")
    return value


def evaluate(
    rule: Rule,
    state: dict[str, Any],
    sample: Sample,
    *,
    connector: str,
    machine: dict[str, Any] | None = None,
) -> tuple[list[Event], dict[str, Any]]:
    """Events this sample produces for the rule, and the rule's new state.

    `state` is not mutated; the returned state is JSON-serialisable and must be persisted
    together with the events (or not at all, so a retry reproduces both).
    """
    if rule.trigger not in TRIGGERS:
        raise RuleError(f"rule {rule.id!r}: unknown trigger {rule.trigger!r}")
    new = dict(state)
    value: Any = None
    if rule.point is not None:
        if sample.values.get(rule.point) is None:
            return [], new
        value = sample.values[rule.point]
    context: dict[str, Any] = {
        "value": value,
        "previous": None,
        "delta": None,
        "reset": False,
        "state": None,
        "previous_state": None,
        "since": None,
        "crossed": None,
        "points": dict(sample.values),
        "topic": sample.topic,
        "payload": sample.payload,
        "machine": dict(machine or {}),
        "connector": connector,
        "now": sample.now.isoformat(),
    }
    fired = _DETECT[rule.trigger](rule, new, value, sample, context)
    events: list[Event] = []
    for extra in fired:
        ctx = {**context, **extra}
        if rule.condition is not None and rule.trigger != "condition":
            if not _truthy(_run(rule, "condition", rule.condition, ctx)):
                continue
        events.append(_event(rule, new, ctx, sample, connector))
    return events, new


def _event(
    rule: Rule, new: dict[str, Any], ctx: dict[str, Any], sample: Sample, connector: str
) -> Event:
    emit = rule.emit
    correlation = {}
    for name, text in emit.correlation.items():
        what = f"correlation {name!r}"
        result = _jsonable(rule, what, text, _run(rule, what, text, ctx))
        if result is None or result == "":
            # An empty key would correlate with whatever waits under an empty key.
            raise RuleError(f"rule {rule.id!r} {what} {text!r}: is empty")
        correlation[name] = result
    variables = {}
    for name, text in emit.variables.items():
        what = f"variable {name!r}"
        variables[name] = _jsonable(rule, what, text, _run(rule, what, text, ctx))
    seq = int(new.get("seq", 0)) + 1
    new["seq"] = seq
    key = f"{connector}/{rule.id}/{seq}"
    if emit.message_id is not None:
        message_id = _run(rule, "message_id", emit.message_id, ctx)
        if message_id is None or message_id == "" or isinstance(message_id, dict | list):
            # Falling back to the sequence would silently lose deduplication of redeliveries.
            raise RuleError(
                f"rule {rule.id!r} message_id {emit.message_id!r}: no usable id ({message_id!r})"
            )
        key = f"{connector}/{rule.id}/msg/{message_id}"
    if emit.message is not None:
        kind, name = "message", emit.message
    else:
        kind, name = "start", emit.start_process or ""
    return Event(kind, name, correlation, variables, key, rule.id, sample.now)


# Detectors: update `new` in place (it is already a copy) and return one context overlay per
# detected event (usually zero or one).


def _change(rule: Rule, new: dict, value: Any, sample: Sample, ctx: dict) -> list[dict]:
    if "last" not in new:
        new["last"] = value
        return []
    last = new["last"]
    if _is_number(value) and _is_number(last):
        # Strictly greater: a move of exactly the deadband is still noise.
        changed = abs(value - last) > rule.deadband
    else:
        changed = value != last
    if not changed:
        return []
    # Compared with the last *reported* value, so a slow drift in small steps still reports.
    new["last"] = value
    return [{"previous": last}]


def _increase(rule: Rule, new: dict, value: Any, sample: Sample, ctx: dict) -> list[dict]:
    value = _number(rule, value)
    if "last" not in new:
        new["last"] = value
        return []
    last = new["last"]
    new["last"] = value
    if value >= last:
        delta, reset = value - last, False
    else:
        # The counter restarted from 0 (PLC reset, overflow): count what it has counted since.
        delta, reset = value, True
    if delta <= 0:
        return []
    return [{"previous": last, "delta": delta, "reset": reset}]


def _edge(rule: Rule, new: dict, value: Any, sample: Sample, ctx: dict) -> list[dict]:
    level = _truthy(value)
    if "level" not in new:
        new["level"] = level
        return []
    confirmed = new["level"]
    if level == confirmed:
        new.pop("pending", None)  # a bounce back before the debounce time: nothing happened
        new.pop("since", None)
        return []
    if "pending" not in new or new["pending"] != level:
        new["pending"] = level
        new["since"] = sample.now.isoformat()
    since = datetime.fromisoformat(new["since"])
    held_ms = (sample.now - since).total_seconds() * 1000
    if held_ms < rule.debounce_ms:
        return []
    new["level"] = level
    new.pop("pending", None)
    new.pop("since", None)
    wanted = level if rule.trigger == "rising_edge" else not level
    if not wanted:
        return []
    return [{"previous": confirmed, "since": since.isoformat()}]


def _threshold(rule: Rule, new: dict, value: Any, sample: Sample, ctx: dict) -> list[dict]:
    value = _number(rule, value)
    first = "last" not in new
    previous = new.get("last")
    new["last"] = value
    fired = []
    if rule.above is not None:
        armed = new.get("armed_above", True)
        if value > rule.above:
            if armed and not first:
                fired.append({"previous": previous, "crossed": "above"})
            armed = False
        elif value < rule.above - rule.hysteresis:
            armed = True
        new["armed_above"] = armed
    if rule.below is not None:
        armed = new.get("armed_below", True)
        if value < rule.below:
            if armed and not first:
                fired.append({"previous": previous, "crossed": "below"})
            armed = False
        elif value > rule.below + rule.hysteresis:
            armed = True
        new["armed_below"] = armed
    return fired


def _state_name(rule: Rule, code: Any) -> str:
    states = rule.states or {}
    if code in states and not isinstance(code, bool):
        return states[code]
    # Registers may arrive as floats (scaled) or text (MQTT); YAML keys are ints or text.
    if isinstance(code, float) and code.is_integer() and int(code) in states:
        return states[int(code)]
    if isinstance(code, str) and code.strip().lstrip("-").isdigit() and int(code) in states:
        return states[int(code)]
    if isinstance(code, int) and str(code) in states:
        return states[str(code)]
    return f"unknown({code})"


def _state(rule: Rule, new: dict, value: Any, sample: Sample, ctx: dict) -> list[dict]:
    name = _state_name(rule, value)
    first = "state" not in new
    previous = new.get("state")
    previous_code = new.get("code")
    new["state"] = name
    new["code"] = value
    # A new code with the same name (two codes both meaning "alarm") is no state change.
    if first or name == previous:
        return []
    return [{"state": name, "previous_state": previous, "previous": previous_code}]


def _condition(rule: Rule, new: dict, value: Any, sample: Sample, ctx: dict) -> list[dict]:
    truth = _truthy(_run(rule, "condition", rule.condition or "", ctx))
    if sample.topic is not None:
        # Every message is an occurrence of its own; dedupe comes from message_id.
        return [{}] if truth else []
    # Point samples repeat every poll: fire when the condition becomes true, not while it is.
    first = "active" not in new
    was = new.get("active", False)
    new["active"] = truth
    if first or was or not truth:
        return []
    return [{}]


_DETECT = {
    "change": _change,
    "increase": _increase,
    "rising_edge": _edge,
    "falling_edge": _edge,
    "threshold": _threshold,
    "state": _state,
    "condition": _condition,
}
