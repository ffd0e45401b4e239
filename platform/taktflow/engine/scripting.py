"""The script engine every workflow runs with: the sandbox plus service-task actions.

Service tasks reach registered actions through `call_service`. The action needs the unit of
work of the step that calls it (its database session, the instance, the clock), which the
runtime publishes in a context variable for the duration of the engine steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment as JinjaSandbox
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from sqlalchemy.orm import Session

from taktflow.engine.actions import ActionContext, ActionRegistry, BusinessError, to_json
from taktflow.engine.sandbox import Limits, SandboxedEnvironment, SandboxedScriptEngine


@dataclass
class StepContext:
    """Where engine steps currently run: the transaction, the instance and the time.

    The ORM session is created on first use: most steps call no action and need none.
    """

    get_session: Callable[[], Session]
    instance_id: int | None
    process_id: str
    now: datetime
    actor: str | None

    @property
    def session(self) -> Session:
        return self.get_session()


_step: ContextVar[StepContext | None] = ContextVar("taktflow_step", default=None)


@contextmanager
def step_context(context: StepContext) -> Iterator[None]:
    """Publish `context` to actions called during the engine steps run inside this block."""
    token = _step.set(context)
    try:
        yield
    finally:
        _step.reset(token)


class ActionError(Exception):
    """A service action failed; the message names the action and the reason."""


class TaktflowScriptEngine(SandboxedScriptEngine):
    """Sandboxed scripts; service tasks call registered actions inside the step's transaction."""

    def __init__(
        self,
        actions: ActionRegistry,
        *,
        helpers: Mapping[str, Any] | None = None,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(environment=SandboxedEnvironment(helpers=helpers, limits=limits))
        self.actions = actions

    def call_service(self, task: Any, **kwargs: Any) -> str:
        operation = kwargs.get("operation_name") or ""
        params = {k: v.get("value") for k, v in (kwargs.get("operation_params") or {}).items()}
        context = _step.get()
        if context is None:
            raise WorkflowTaskException(
                f"service action {operation!r} called outside an engine step", task=task
            )
        try:
            action = self.actions.get(operation)
            values = action.bind(params)
            action_context = ActionContext(
                session=context.session,
                instance_id=context.instance_id,
                process_id=context.process_id,
                task_id=str(task.id),
                element_id=task.task_spec.bpmn_id,
                now=context.now,
                actor=context.actor,
            )
            # A savepoint per call: a failing action leaves none of its own writes behind,
            # while the work of the steps before it (already reflected in the workflow) stays.
            with context.session.begin_nested():
                result = action.func(action_context, **values)
            return to_json(result)
        except BusinessError:
            raise  # an expected outcome: TaktflowServiceTask routes it to the step's handler
        except Exception as exc:
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise WorkflowTaskException(
                f"service action {operation!r} failed: {message}", task=task, exception=exc
            ) from exc


_JINJA = JinjaSandbox()


@lru_cache(maxsize=1024)
def _template(source: str) -> Template:
    return _JINJA.from_string(source)


def render_instructions(template: str | None, data: Mapping[str, Any]) -> str | None:
    """Render `spiffworkflow:instructionsForEndUser` with the task's data (Jinja, sandboxed)."""
    if not template:
        return None
    try:
        return _template(template).render(**data)
    except Exception as exc:  # noqa: BLE001 - task data can make any template expression fail
        reason = exc.message if isinstance(exc, TemplateError) else f"{type(exc).__name__}: {exc}"
        return f"{template}\n\n(instructions could not be rendered: {reason})"
