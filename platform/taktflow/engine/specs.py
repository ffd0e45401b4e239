"""taktflow's own task specs and the parser that uses them.

Only one so far: a service task whose action may raise a business error (BusinessError),
which an error boundary event on the task catches, like an error end event in a
subprocess. SpiffWorkflow itself turns every exception of a service call into a technical
failure (the task goes to ERROR), which is right for bugs and outages but not for answers
such as "not enough material in stock" that the workflow is meant to handle.
"""

from __future__ import annotations

from typing import Any

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.parser.util import full_tag
from SpiffWorkflow.bpmn.specs.defaults import BoundaryEvent
from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import (
    ErrorEventDefinition as BaseErrorEventDefinition,
)
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.util import BpmnEvent
from SpiffWorkflow.spiff.parser import SpiffBpmnParser
from SpiffWorkflow.spiff.parser.task_spec import (
    CallActivityParser,
    ServiceTaskParser,
    SubWorkflowParser,
)
from SpiffWorkflow.spiff.specs.defaults import CallActivity, ServiceTask, SubWorkflowTask
from SpiffWorkflow.spiff.specs.event_definitions import ErrorEventDefinition
from SpiffWorkflow.util.task import TaskState

from taktflow.engine.actions import BusinessError


class TaktflowServiceTask(ServiceTask):
    """A service task whose action's BusinessError goes to a matching error boundary event."""

    def _run_hook(self, my_task: Any) -> Any:
        try:
            return super()._run_hook(my_task)
        except BusinessError as exc:
            if not _has_handler(my_task, exc.code):
                raise WorkflowTaskException(
                    f"business error {exc.code!r}: {exc.message} (no on_error handler of "
                    f"step {self.bpmn_id!r} catches it)",
                    task=my_task,
                    exception=exc,
                ) from exc
            event = ErrorEventDefinition(exc.code, code=exc.code)
            payload = {"code": exc.code, "message": exc.message}
            my_task.workflow.top_workflow.catch(
                BpmnEvent(event, payload=payload, target=my_task.workflow)
            )
            # Neither completed nor failed: the boundary event that caught the error cancels
            # this task when it runs, and the workflow follows the error path.
            return None


def _has_handler(my_task: Any, code: str) -> bool:
    split = my_task.parent
    if split is None:
        return False
    for sibling in split.children:
        spec = sibling.task_spec
        definition = getattr(spec, "event_definition", None)
        if (
            sibling is not my_task
            and isinstance(spec, CatchingEvent)
            and sibling.state == TaskState.WAITING
            and isinstance(definition, ErrorEventDefinition)
            and definition.code in (None, code)
        ):
            return True
    return False


class _ErrorAwareCompletion:
    """A subprocess or call that ended with an error its own boundary (or an enclosing
    one) caught must not also complete normally.

    SpiffWorkflow marks the subprocess task READY when the subprocess ends, even when it
    ended with an error end event; the steps after it then run in the same engine pass,
    before the boundary event that caught the error cancels them (a rejected lot would
    still be booked). Here the task stays STARTED in that case, and the catching boundary
    event cancels it when it runs.
    """

    def _on_subworkflow_completed(self, subworkflow: Any, my_task: Any) -> None:
        if _caught_error_above(my_task):
            return
        super()._on_subworkflow_completed(subworkflow, my_task)  # type: ignore[misc]

    def _update_hook(self, my_task: Any) -> Any:
        # The engine re-checks a subprocess task after each pass over its subprocess: a
        # finished subprocess would make it READY here too.
        ready = super()._update_hook(my_task)  # type: ignore[misc]
        if ready and _caught_error_above(my_task):
            return False
        return ready


def _caught_error_above(my_task: Any) -> bool:
    task = my_task
    while task is not None:
        split = task.parent
        for sibling in split.children if split is not None else []:
            spec = sibling.task_spec
            if (
                sibling is not task
                and isinstance(spec, BoundaryEvent)
                and spec.cancel_activity
                and sibling.state == TaskState.READY
                and isinstance(spec.event_definition, BaseErrorEventDefinition)
            ):
                return True
        workflow = task.workflow
        parent_id = getattr(workflow, "parent_task_id", None)
        task = workflow.top_workflow.get_task_from_id(parent_id) if parent_id else None
    return False


class TaktflowSubWorkflowTask(_ErrorAwareCompletion, SubWorkflowTask):
    pass


class TaktflowCallActivity(_ErrorAwareCompletion, CallActivity):
    pass


class TaktflowBpmnParser(SpiffBpmnParser):
    OVERRIDE_PARSER_CLASSES = {
        **SpiffBpmnParser.OVERRIDE_PARSER_CLASSES,
        full_tag("serviceTask"): (ServiceTaskParser, TaktflowServiceTask),
        full_tag("subProcess"): (SubWorkflowParser, TaktflowSubWorkflowTask),
        full_tag("callActivity"): (CallActivityParser, TaktflowCallActivity),
    }


#: Our spec classes and the SpiffWorkflow classes whose serializer converters they share.
SPEC_CLASSES = {
    TaktflowServiceTask: ServiceTask,
    TaktflowSubWorkflowTask: SubWorkflowTask,
    TaktflowCallActivity: CallActivity,
}
