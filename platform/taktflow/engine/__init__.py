"""The workflow engine: deploy, run and persist BPMN processes on SpiffWorkflow.

The public surface; everything else in this package is internal.
"""

from taktflow.engine.actions import ActionContext, ActionRegistry, Param, builtin_actions
from taktflow.engine.clock import Clock, ManualClock, SystemClock
from taktflow.engine.runtime import DeliveryResult, WorkflowEngine
from taktflow.engine.sandbox import Limits, SandboxError

__all__ = [
    # running workflows
    "WorkflowEngine",
    "DeliveryResult",
    # extension point: service-task actions
    "ActionRegistry",
    "ActionContext",
    "Param",
    "builtin_actions",
    # time
    "Clock",
    "SystemClock",
    "ManualClock",
    # scripts
    "Limits",
    "SandboxError",
]
