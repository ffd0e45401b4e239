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
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.util import BpmnEvent
from SpiffWorkflow.spiff.parser import SpiffBpmnParser
from SpiffWorkflow.spiff.parser.task_spec import ServiceTaskParser
from SpiffWorkflow.spiff.specs.defaults import ServiceTask
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


class TaktflowBpmnParser(SpiffBpmnParser):
    OVERRIDE_PARSER_CLASSES = {
        **SpiffBpmnParser.OVERRIDE_PARSER_CLASSES,
        full_tag("serviceTask"): (ServiceTaskParser, TaktflowServiceTask),
    }
