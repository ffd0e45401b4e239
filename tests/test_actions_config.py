"""Service actions registered through TAKTFLOW_ACTION_MODULES reach deployed workflows."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from taktflow.app import create_app, workflow_engine
from taktflow.config import ConfigError

SERVICE_BPMN = Path(__file__).parent / "engine" / "bpmn" / "service_task.bpmn"


def test_action_module_registers_actions(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plant_actions.py").write_text(
        textwrap.dedent(
            """
            from taktflow.engine.actions import Param

            def register_actions(registry):
                def scale(ctx, qty, factor, unit):
                    return {"qty": qty * factor, "unit": unit}
                registry.register(
                    "test.scale", scale,
                    [Param("qty", "int"), Param("factor", "float"), Param("unit", "str")],
                )
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = create_app(
        {
            "database_url": db_url,
            "env": "testing",
            "instance_path": str(tmp_path / "instance"),
            "action_modules": "plant_actions",
        }
    )
    engine = workflow_engine(app)
    try:
        assert "test.scale" in engine.actions.names()
        [deployed] = engine.deploy_paths([SERVICE_BPMN])
        assert deployed["changed"] is True
    finally:
        sys.modules.pop("plant_actions", None)
        engine.bind.dispose()


@pytest.mark.parametrize(
    ("module", "reason"),
    [("no_such_module_here", "cannot import"), ("json", "has no register_actions")],
)
def test_a_bad_action_module_stops_start_up(
    db_url: str, tmp_path: Path, module: str, reason: str
) -> None:
    with pytest.raises(ConfigError, match=reason):
        create_app(
            {
                "database_url": db_url,
                "env": "testing",
                "instance_path": str(tmp_path),
                "action_modules": module,
            }
        )
