"""The YAML workflow language: every key of every construct, in one table.

The compiler validates files against these tables and the published JSON Schema is generated
from them, so the two can never disagree. docs/yaml-workflows.md explains each construct.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: Explicit step ids: a letter, then letters, digits or single underscores. Ids the compiler
#: makes for gateways, events and flows contain a double underscore, so they cannot clash.
STEP_ID = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*$")
PROCESS_ID = STEP_ID
#: Data variable names (Python identifiers, ASCII).
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Message, signal, error code, form, role and action names.
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$")
ISO_DURATION = re.compile(
    r"^P(?!$)(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?$"
)
ISO_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?P<offset>Z|[+-]\d{2}:\d{2})?$"
)


@dataclass(frozen=True)
class Field:
    """One key: its type (see TYPES), whether it must be given, and what it means."""

    type: str
    doc: str
    required: bool = False


#: Field types: (JSON Schema, words used in error messages).
TYPES: dict[str, tuple[dict[str, Any], str]] = {
    "title": ({"type": "string", "minLength": 1}, "a title (text)"),
    "text": ({"type": "string"}, "text"),
    "template": ({"type": "string"}, "text (a Jinja template over the task data)"),
    "step_id": ({"type": "string", "pattern": STEP_ID.pattern}, "an id (letters, digits, _)"),
    "process_id": ({"type": "string", "pattern": PROCESS_ID.pattern}, "a process id"),
    "variable": ({"type": "string", "pattern": VARIABLE.pattern}, "a variable name"),
    "name": ({"type": "string", "pattern": NAME.pattern}, "a name"),
    "names": (
        {"type": "array", "items": {"type": "string", "pattern": NAME.pattern}, "minItems": 1},
        "a list of names",
    ),
    "variables": (
        {"type": "array", "items": {"type": "string", "pattern": VARIABLE.pattern}, "minItems": 1},
        "a list of variable names",
    ),
    "expression": (
        {"type": ["string", "number", "boolean"]},
        "an expression (text, a number or true/false)",
    ),
    "expressions": (
        {
            "type": "object",
            "propertyNames": {"pattern": VARIABLE.pattern},
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        },
        "a mapping of names to expressions",
    ),
    "bool": ({"type": "boolean"}, "true or false"),
    "duration": (
        {"type": "string", "minLength": 1},
        "a duration (ISO 8601, e.g. PT4H) or an expression",
    ),
    "date": (
        {"type": "string", "minLength": 1},
        "a date and time with offset (e.g. 2026-03-02T14:00:00+01:00) or an expression",
    ),
    "steps": ({"$ref": "#/$defs/steps"}, "a list of steps"),
    "values": ({"type": "array"}, "a list of values"),
    "target": ({"type": "string", "pattern": STEP_ID.pattern}, "the id of a step"),
}

# Sub-structures: each is a mapping with its own keys.
START = {
    "message": Field("name", "Start when this message arrives (instead of by API/CLI)."),
    "into": Field("variable", "Variable that receives the message's payload (default: its name)."),
    "signal": Field("name", "Start when this signal is broadcast."),
}
TIMEOUT = {
    "after": Field("duration", "How long to wait, counted from when the step starts."),
    "at": Field("date", "A fixed time (with offset) or an expression giving one."),
    "interrupting": Field(
        "bool",
        "true (default): the step is cancelled and the timeout path replaces it; false: the "
        "step goes on and the timeout path runs beside it (a reminder).",
    ),
    "steps": Field("steps", "What happens on timeout. An empty list is allowed."),
}
ON_MESSAGE = {
    "message": Field("name", "The message that ends the step (or runs beside it).", True),
    "correlate": Field("variables", "Keys that must match (payload key = variable)."),
    "into": Field("variable", "Variable that receives the message's payload."),
    "interrupting": Field(
        "bool",
        "true (default): the step is cancelled and these steps replace it; false: the step "
        "goes on and these steps run beside it.",
    ),
    "steps": Field("steps", "What happens when the message arrives. An empty list is allowed."),
}
ON_ERROR = {
    "code": Field("name", "The business error code to catch; leave out to catch any."),
    "steps": Field("steps", "What happens when the error occurs."),
}
CHOICE = {
    "when": Field("expression", "Condition over the workflow data.", required=True),
    "label": Field("text", "Shown on the diagram's arrow (default: the condition)."),
    "steps": Field("steps", "The steps of this branch (may be empty)."),
}
BRANCH = {
    "label": Field("text", "Shown on the diagram's arrow."),
    "steps": Field("steps", "The steps of this branch.", required=True),
}
RULE = {
    "when": Field("values", "One test per input: a value, '< 58', '58..62', a list, or -.", True),
    "then": Field("values", "One value per output.", True),
}
TABLE = {
    "hit": Field("name", "first (default): the first matching rule; unique; collect (lists)."),
    "inputs": Field("values", "Expressions over the workflow data, one per column.", True),
    "outputs": Field("variables", "The variables the decision sets.", True),
    "rules": Field("values", "Rules, in order.", True),
}
OBJECTS: dict[str, dict[str, Field]] = {
    "start": START,
    "timeout": TIMEOUT,
    "on_error": ON_ERROR,
    "on_message": ON_MESSAGE,
    "choice": CHOICE,
    "branch": BRANCH,
    "rule": RULE,
    "table": TABLE,
}
HIT_POLICIES = {"first": "FIRST", "unique": "UNIQUE", "collect": "COLLECT"}

_ID = Field("step_id", "Optional id (default: made from the title, stable across edits).")
_LANE = Field("name", "The lane (role) whose users do this step.")
_INSTRUCTIONS = Field("template", "Shown to the user; may use {{ variables }}.")
_TIMEOUT = Field("timeout", "A deadline with its escalation path (or a list of them).")
_ON_ERROR = Field("on_error", "Business errors to catch, each with its path (a list).")
_ON_MESSAGE = Field(
    "on_message", "Messages that interrupt the step (or run beside it), each with its path."
)

PROCESS = {
    "process": Field("process_id", "The process id (used to start it and to call it).", True),
    "name": Field("text", "A readable name."),
    "description": Field("text", "What the workflow is for."),
    "lanes": Field("names", "The lanes; each lane is a role (operator, manager, ...)."),
    "start": Field("start", "Start on a message or a signal (optional)."),
    "steps": Field("steps", "The steps, in order.", True),
}

#: Step kinds: the kind's key holds the step's title (for goto: the target step's id).
STEPS: dict[str, dict[str, Field]] = {
    "task": {
        "task": Field("title", "A user task: someone fills a form.", True),
        "id": _ID,
        "lane": _LANE,
        "form": Field("name", "The form (forms/<name>.yaml) the user fills."),
        "instructions": _INSTRUCTIONS,
        "timeout": _TIMEOUT,
        "on_message": _ON_MESSAGE,
    },
    "manual": {
        "manual": Field("title", "A manual task: someone does it and confirms.", True),
        "id": _ID,
        "lane": _LANE,
        "instructions": _INSTRUCTIONS,
        "timeout": _TIMEOUT,
        "on_message": _ON_MESSAGE,
    },
    "service": {
        "service": Field("title", "Call a registered action.", True),
        "id": _ID,
        "action": Field("name", "The action's name (see `taktflow actions`).", True),
        "params": Field("expressions", "Parameter name -> expression."),
        "result": Field("variable", "Variable that receives the action's result."),
        "on_error": _ON_ERROR,
    },
    "script": {
        "script": Field("title", "Compute variables.", True),
        "id": _ID,
        "set": Field("expressions", "Variable -> expression, evaluated in order.", True),
    },
    "decision": {
        "decision": Field("title", "Evaluate a DMN decision.", True),
        "id": _ID,
        "use": Field("name", "The id of a deployed DMN decision."),
        "table": Field("table", "An inline decision table (compiled to a DMN file)."),
    },
    "call": {
        "call": Field("title", "Run another workflow and wait for it.", True),
        "id": _ID,
        "process": Field("process_id", "The called process id.", True),
        "in": Field("expressions", "Variables to set before the call (name -> expression)."),
        "out": Field("expressions", "Variables to set after the call, from its data."),
        "timeout": _TIMEOUT,
        "on_message": _ON_MESSAGE,
        "on_error": _ON_ERROR,
    },
    "choose": {
        "choose": Field("title", "Take the first branch whose condition holds.", True),
        "id": _ID,
        "branches": Field("choices", "Conditional branches, tested in order.", True),
        "otherwise": Field("steps", "The path when no condition holds."),
    },
    "parallel": {
        "parallel": Field("title", "Run branches at the same time; continue when all end.", True),
        "id": _ID,
        "branches": Field("branches", "The branches (two or more).", True),
    },
    "wait": {
        "wait": Field("title", "Wait for a message, a signal or a time.", True),
        "id": _ID,
        "message": Field("name", "The message's name."),
        "correlate": Field("variables", "Keys that must match (payload key = variable)."),
        "into": Field("variable", "Variable that receives the message's payload."),
        "signal": Field("name", "The signal's name."),
        "for": Field("duration", "A duration (PT2H) or an expression giving one."),
        "until": Field("date", "A date-time with offset, or an expression giving one."),
        "timeout": _TIMEOUT,
        "on_message": _ON_MESSAGE,
    },
    "send": {
        "send": Field("title", "Send a message (or broadcast a signal).", True),
        "id": _ID,
        "message": Field("name", "The message's name."),
        "correlate": Field("variables", "Keys the receiver matches on (sent in the payload)."),
        "signal": Field("name", "The signal's name."),
        "payload": Field("expressions", "Payload key -> expression."),
    },
    "for_each": {
        "for_each": Field("title", "Repeat the steps for each item of a list.", True),
        "id": _ID,
        "items": Field("variable", "The list variable.", True),
        "as": Field("variable", "The variable holding the current item.", True),
        "parallel": Field("bool", "true: all items at once; false (default): one by one."),
        "result": Field("variable", "Variable each pass sets (collected into `collect`)."),
        "collect": Field("variable", "List variable that gathers each pass's `result`."),
        "steps": Field("steps", "The steps for each item.", True),
    },
    "repeat": {
        "repeat": Field("title", "Repeat the steps until a condition holds.", True),
        "id": _ID,
        "until": Field("expression", "Checked after each pass; stop when true.", True),
        "steps": Field("steps", "The steps to repeat.", True),
    },
    "group": {
        "group": Field("title", "Steps that share a timeout or error handling.", True),
        "id": _ID,
        "steps": Field("steps", "The grouped steps.", True),
        "timeout": _TIMEOUT,
        "on_message": _ON_MESSAGE,
        "on_error": _ON_ERROR,
    },
    "goto": {
        "goto": Field("target", "Continue at the step with this id.", True),
    },
    "end": {
        "end": Field("title", "End this path here.", True),
        "id": _ID,
        "error": Field("name", "End with this business error code (caught by on_error)."),
    },
}


def describe(type_name: str) -> str:
    """Words for a field type in error messages."""
    if type_name in OBJECTS:
        return {
            "timeout": "a timeout (a mapping with after or at) or a list of them",
            "on_error": "a list of error handlers (code, steps)",
            "on_message": "a list of message handlers (message, correlate, into, steps)",
            "start": "a mapping with message or signal",
            "table": "a decision table (hit, inputs, outputs, rules)",
        }.get(type_name, f"a {type_name} mapping")
    if type_name == "choices":
        return "a list of branches (when, steps)"
    if type_name == "branches":
        return "a list of branches (steps)"
    return TYPES[type_name][1]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a workflow file, for editors (completion) and validation."""

    def field_schema(f: Field) -> dict[str, Any]:
        base: dict[str, Any]
        if f.type in TYPES:
            base = dict(TYPES[f.type][0])
        elif f.type == "timeout":
            one = {"$ref": "#/$defs/timeout"}
            base = {"oneOf": [one, {"type": "array", "items": one, "minItems": 1}]}
        elif f.type in ("on_error", "on_message"):
            base = {"type": "array", "items": {"$ref": f"#/$defs/{f.type}"}, "minItems": 1}
        elif f.type == "choices":
            base = {"type": "array", "items": {"$ref": "#/$defs/choice"}, "minItems": 1}
        elif f.type == "branches":
            base = {"type": "array", "items": {"$ref": "#/$defs/branch"}, "minItems": 2}
        else:
            base = {"$ref": f"#/$defs/{f.type}"}
        base["description"] = f.doc
        return base

    def obj(fields: dict[str, Field]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {k: field_schema(f) for k, f in fields.items()},
            "required": [k for k, f in fields.items() if f.required],
            "additionalProperties": False,
        }

    defs: dict[str, Any] = {name: obj(fields) for name, fields in OBJECTS.items()}
    defs["rule"]["properties"]["when"]["type"] = "array"
    defs["table"]["properties"]["hit"] = {
        "enum": sorted(HIT_POLICIES),
        "description": "Hit policy.",
    }
    defs["table"]["properties"]["rules"]["items"] = {"$ref": "#/$defs/rule"}
    for kind, fields in STEPS.items():
        defs[f"step_{kind}"] = obj(fields)
    defs["step"] = {"oneOf": [{"$ref": f"#/$defs/step_{kind}"} for kind in STEPS]}
    defs["steps"] = {"type": "array", "items": {"$ref": "#/$defs/step"}}
    schema = obj(PROCESS)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://taktflow.org/schema/workflow.json",
        "title": "taktflow YAML workflow",
        **schema,
        "$defs": defs,
    }
