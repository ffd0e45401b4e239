"""`taktflow lint` on connector files: problems with lines, and events that reach nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import DefinitionError
from taktflow.lint import lint_paths

CONNECTOR = """\
connector: press
type: modbus
modbus: {host: 127.0.0.1}
points:
  parts: {table: holding, address: 0, type: uint32}
rules:
  - id: produced
    point: parts
    trigger: increase
    message: parts_produced
    correlation: {machine_id: "'press'"}
  - id: started
    point: parts
    trigger: change
    start: run_report
"""
WAITER = """\
process: parts_log
steps:
  - wait: Parts
    message: parts_produced
    correlate: [machine_id]
"""


def lint(tmp_path: Path, **files: str) -> list[tuple[str, str, int | None]]:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    report = lint_paths([tmp_path], workflows_path=tmp_path, connectors_path=tmp_path)
    return [(f.rule, f.severity, f.line) for f in report.findings]


def test_events_that_reach_nothing_are_reported_at_their_rule(tmp_path: Path) -> None:
    assert lint(tmp_path, press=CONNECTOR) == [
        ("message-not-awaited", "warning", 7),
        ("unknown-process", "error", 12),
    ]


def test_a_waiting_workflow_and_a_known_process_satisfy_the_checks(tmp_path: Path) -> None:
    found = lint(tmp_path, press=CONNECTOR, parts_log=WAITER,
                 run_report="process: run_report\nsteps:\n  - end: Done\n")  # fmt: skip
    assert found == []


def test_a_connector_message_counts_as_sent_for_the_workflows(tmp_path: Path) -> None:
    # Without the connector, nothing sends parts_produced; with it, the machine does.
    assert ("message-never-sent", "warning", 3) in lint(tmp_path, parts_log=WAITER)
    assert "message-never-sent" not in [r for r, _, _ in lint(tmp_path, press=CONNECTOR)]


def test_a_broken_connector_is_an_error_with_its_line(tmp_path: Path) -> None:
    found = lint(
        tmp_path,
        press=CONNECTOR.replace(
            "point: parts\n    trigger: change", "point: part\n    trigger: change"
        ),
    )
    assert ("invalid-connector", "error", 13) in found


def test_a_connector_file_is_not_deployed(engine: WorkflowEngine, tmp_path: Path) -> None:
    (tmp_path / "press.yaml").write_text(CONNECTOR)
    with pytest.raises(DefinitionError, match="a connector file is not deployed"):
        engine.deploy_paths([tmp_path])
