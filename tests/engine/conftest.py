"""Engine-test fixtures. Every engine test also checks the serializer's task cache."""

from __future__ import annotations

import json

import pytest

from taktflow.engine.serialization import WorkflowSerializer

_PLAIN = WorkflowSerializer(cache_tasks=False)


@pytest.fixture(autouse=True)
def verify_task_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each dump made with the cache of converted tasks must equal a dump made without it:
    a stale cache entry would silently corrupt persisted instances."""
    cached_dumps = WorkflowSerializer.dumps

    def checked(self: WorkflowSerializer, workflow: object) -> str:
        text = cached_dumps(self, workflow)
        assert json.loads(text) == json.loads(_PLAIN._workflow.serialize_json(workflow))
        return text

    monkeypatch.setattr(WorkflowSerializer, "dumps", checked)
