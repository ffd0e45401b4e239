"""Serializing workflows without their spec, and specs on their own.

SpiffWorkflow's serializer embeds the full process spec in every instance (~7 KB for a small
process) and parses it back at every load. taktflow stores the spec once per deployed version
(`process_version.spec`) and serializes instances without it; loading an instance reuses the
cached spec objects of its version.
"""

from __future__ import annotations

import json
from datetime import date, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, TaskConverter
from SpiffWorkflow.bpmn.serializer.migration.version_migration import MIGRATIONS
from SpiffWorkflow.bpmn.serializer.workflow import VERSION as SPIFF_SERIALIZER_VERSION
from SpiffWorkflow.bpmn.specs import BpmnProcessSpec
from SpiffWorkflow.spiff.serializer import DEFAULT_CONFIG as SPIFF_CONFIG
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from taktflow.engine.specs import SPEC_CLASSES

#: Stored with every instance row, so old rows can be migrated after a library upgrade.
SERIALIZER_VERSION = SPIFF_SERIALIZER_VERSION
VERSION_KEY = BpmnWorkflowSerializer.VERSION_KEY


class _SpeclessWorkflowConverter(BpmnWorkflowConverter):
    """Leaves the spec out of the serialized workflow; restores it from objects we pass in."""

    def to_dict(self, workflow: BpmnWorkflow) -> dict[str, Any]:
        dct = super(BpmnWorkflowConverter, self).to_dict(workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(
        self,
        dct: dict[str, Any],
        spec: BpmnProcessSpec | None = None,
        subprocess_specs: dict[str, BpmnProcessSpec] | None = None,
    ) -> BpmnWorkflow:
        if spec is None:
            raise ValueError("a taktflow workflow is restored with the spec of its version")
        workflow = self.target_class(spec, subprocess_specs or {}, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


#: Attribute on a (sub)workflow object holding its cache of converted completed tasks.
_CACHE_ATTR = "_taktflow_task_dicts"


class _CachingTaskConverter(TaskConverter):
    """Reuses the converted form of tasks that can no longer change.

    A step adds a few tasks to an instance's tree but rewrites all of it; converting every
    task again (including a deep comparison of its data with its parent's) made the cost of
    one step grow with the instance's history. A COMPLETED task whose parent is COMPLETED
    keeps its data, its data delta and its place; its entry is reused while its state
    change time, its number of children and its trigger flag are unchanged (a reset, a new
    child or a re-run changes one of them). The cache lives on the workflow object, so a
    workflow loaded from the database starts without it.
    """

    def to_dict(self, task: Task) -> dict[str, Any]:
        parent = task.parent
        if task.state != TaskState.COMPLETED or parent is None:
            return super().to_dict(task)
        if parent.state != TaskState.COMPLETED:
            return super().to_dict(task)
        key = (task.last_state_change, len(task._children), task.triggered)
        cache = task.workflow.__dict__.setdefault(_CACHE_ATTR, {})
        hit = cache.get(task.id)
        if hit is not None and hit[0] == key:
            return hit[1]
        dct = super().to_dict(task)
        cache[task.id] = (key, dct)
        return dct


def _build_registry(specless: bool, cache_tasks: bool = True) -> Any:
    config = dict(SPIFF_CONFIG)
    for ours, theirs in SPEC_CLASSES.items():
        config[ours] = config[theirs]
    if specless:
        config[BpmnWorkflow] = _SpeclessWorkflowConverter
        if cache_tasks:
            config[Task] = _CachingTaskConverter
    registry = BpmnWorkflowSerializer.configure(config)
    # Task data may hold Decimals (money, quantities) and dates from scripts and actions.
    registry.register(Decimal, lambda v: {"value": str(v)}, lambda d: Decimal(d["value"]))
    registry.register(
        date, lambda v: {"value": v.isoformat()}, lambda d: date.fromisoformat(d["value"])
    )
    registry.register(
        time, lambda v: {"value": v.isoformat()}, lambda d: time.fromisoformat(d["value"])
    )
    if specless:
        # Keep sets as sets across a save and a load (JSON alone cannot hold them), so that a
        # workflow behaves the same whether it comes from the cache or from the database.
        registry.register(set, lambda v: {"value": list(v)}, lambda d: set(d["value"]))
        registry.register(frozenset, lambda v: {"value": list(v)}, lambda d: frozenset(d["value"]))
    return registry


class WorkflowSerializer:
    """Dumps and loads workflows (without spec) and specs (on their own), as JSON text."""

    def __init__(self, *, cache_tasks: bool = True) -> None:
        self._workflow = BpmnWorkflowSerializer(
            _build_registry(specless=True, cache_tasks=cache_tasks)
        )
        self._spec_registry = _build_registry(specless=False)

    def dumps(self, workflow: BpmnWorkflow) -> str:
        """The workflow's state as JSON text, with the serializer version and no spec."""
        return self._workflow.serialize_json(workflow)

    def loads(
        self,
        text: str,
        spec: BpmnProcessSpec,
        subprocess_specs: dict[str, BpmnProcessSpec],
        script_engine: Any,
    ) -> BpmnWorkflow:
        """Restore a workflow dumped by `dumps`, reattaching spec objects and the script engine."""
        dct = json.loads(text)
        version = dct.pop(VERSION_KEY, None)
        if version != SERIALIZER_VERSION and version in MIGRATIONS:
            MIGRATIONS[version](dct)
        workflow = self._workflow.registry.restore(
            dct, spec=spec, subprocess_specs=subprocess_specs
        )
        workflow.script_engine = script_engine
        return workflow

    def dumps_spec(
        self, spec: BpmnProcessSpec, subprocess_specs: dict[str, BpmnProcessSpec]
    ) -> str:
        """A process spec and the specs it embeds (subprocesses) as JSON text."""
        registry = self._spec_registry
        return json.dumps(
            {
                "spec": registry.convert(spec),
                "subprocess_specs": {k: registry.convert(v) for k, v in subprocess_specs.items()},
            }
        )

    def loads_spec(self, text: str) -> tuple[BpmnProcessSpec, dict[str, BpmnProcessSpec]]:
        """Inverse of `dumps_spec`."""
        dct = json.loads(text)
        registry = self._spec_registry
        spec = registry.restore(dct["spec"])
        subs = {k: registry.restore(v) for k, v in dct["subprocess_specs"].items()}
        return spec, subs
