"""Service-task actions: the low-code extension point.

A workflow's service task names an action (`spiffworkflow:serviceTaskOperator id="mfg.issue"`)
and passes parameters; the engine calls the registered Python function with the evaluated
values and stores its JSON-compatible result in the task's result variable. Real side effects
happen only here, never in scripts. Each action declares its parameters so that deployment can
refuse a workflow that calls an unknown action or forgets a required parameter.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from taktflow.errors import NotFound, ValidationFailed

#: Parameter type names and the Python types a value of that type may have.
PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float, Decimal),
    "decimal": (int, float, Decimal, str),
    "bool": (bool,),
    "dict": (dict,),
    "list": (list, tuple),
    "any": (object,),
}


class BusinessError(Exception):
    """An expected outcome an action reports instead of a result (e.g. "shortage").

    A workflow catches it by code with an error handler on the step (`on_error` in YAML, an
    error boundary event in BPMN) and follows that path. Without a handler the step fails
    like any other action error.
    """

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message or code


@dataclass(frozen=True)
class Param:
    """One declared parameter of an action."""

    name: str
    type: str = "any"
    required: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"parameter {self.name!r}: unknown type {self.type!r}")


@dataclass
class ActionContext:
    """What an action may know about the call: the transaction it runs in and where from.

    Actions write through `session`, which belongs to the engine's unit of work: their changes
    commit or roll back together with the workflow step that called them.
    """

    session: Session
    instance_id: int | None
    process_id: str
    task_id: str
    element_id: str
    now: datetime
    actor: str | None = None


@dataclass(frozen=True)
class Action:
    """A registered action: name, function, declared parameters."""

    name: str
    func: Callable[..., Any]
    params: tuple[Param, ...] = ()
    description: str = ""
    #: Accept parameters that are not declared (passed through as keyword arguments).
    extra_params: bool = False

    def bind(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check `values` against the declared parameters; return the keyword arguments."""
        declared = {p.name: p for p in self.params}
        errors: dict[str, str] = {}
        for name in values:
            if name not in declared and not self.extra_params:
                errors[name] = f"unknown parameter (expected: {', '.join(declared) or 'none'})"
        for p in self.params:
            if p.name not in values or values[p.name] is None:
                if p.required:
                    errors[p.name] = "required parameter is missing"
                continue
            value = values[p.name]
            allowed = PARAM_TYPES[p.type]
            if p.type != "any" and (
                not isinstance(value, allowed) or (p.type != "bool" and isinstance(value, bool))
            ):
                errors[p.name] = f"expected {p.type}, got {type(value).__name__} {value!r:.60}"
        if errors:
            raise ValidationFailed(
                f"action {self.name}: "
                + "; ".join(f"parameter {k!r}: {v}" for k, v in errors.items()),
                details=errors,
            )
        return dict(values)


class ActionRegistry:
    """Name -> Action. Unknown names fail with the list of what is registered."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}

    def register(
        self,
        name: str,
        func: Callable[..., Any],
        params: Iterable[Param] = (),
        *,
        description: str = "",
        extra_params: bool = False,
    ) -> Action:
        """Register `func(ctx, **params)` under `name`."""
        if name in self._actions:
            raise ValueError(f"action {name!r} is already registered")
        doc = description or (func.__doc__ or "").strip()
        action = Action(name, func, tuple(params), doc, extra_params)
        self._actions[name] = action
        return action

    def action(
        self, name: str, *params: Param, description: str = ""
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of `register`."""

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            self.register(name, func, params, description=description)
            return func

        return decorate

    def get(self, name: str) -> Action:
        try:
            return self._actions[name]
        except KeyError:
            known = ", ".join(sorted(self._actions)) or "none"
            raise NotFound(f"unknown service action {name!r} (registered: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def names(self) -> list[str]:
        return sorted(self._actions)

    def describe(self) -> list[dict[str, Any]]:
        """Every action with its parameters, for documentation and the API."""
        return [
            {
                "name": a.name,
                "description": a.description,
                "params": [
                    {
                        "name": p.name,
                        "type": p.type,
                        "required": p.required,
                        "description": p.description,
                    }
                    for p in a.params
                ],
            }
            for a in sorted(self._actions.values(), key=lambda a: a.name)
        ]


def to_json(value: Any) -> str:
    """Serialize an action result; Decimals and dates keep their exact text."""

    def default(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            return str(obj)
        if isinstance(obj, datetime | date):
            return obj.isoformat()
        if isinstance(obj, set | frozenset):
            return sorted(obj)
        raise TypeError(f"action result holds a {type(obj).__name__}, which is not JSON data")

    return json.dumps(value, default=default)


def builtin_actions(registry: ActionRegistry) -> None:
    """Register the engine's own generic actions (no side effects beyond task data)."""

    def echo(ctx: ActionContext, **values: Any) -> dict[str, Any]:
        """Return the parameters it was given (testing and data shaping)."""
        return dict(values)

    def now(ctx: ActionContext) -> str:
        """The engine clock's current time, ISO 8601 UTC."""
        return ctx.now.isoformat()

    registry.register("taktflow.echo", echo, extra_params=True)
    registry.register("taktflow.now", now)
