"""Compiled BPMN opens in a BPMN modeler: every YAML workflow of the suite, compiled, is read
by bpmn-moddle (the model layer of bpmn-js) with no warning, except the one SpiffWorkflow's
own modeler produces too: loop data references are variable names, not element ids."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from lxml import etree

from taktflow.yamlflow import compile_text

ROOT = Path(__file__).parents[2]
SCRIPT = Path(__file__).parent / "moddle_check.mjs"
YAML_FILES = sorted(
    p for folder in (Path(__file__).parent, ROOT / "workflows") for p in folder.rglob("*.y*ml")
)
NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL"}


def test_compiled_workflows_import_into_the_modeler_model(
    tmp_path: Path, node_with_bpmn_moddle: str
) -> None:
    node = node_with_bpmn_moddle
    expected_refs: dict[str, set[str]] = {}
    files = []
    for path in YAML_FILES:
        compiled = compile_text(str(path), path.read_text())
        target = tmp_path / f"{path.parent.name}__{path.stem}.bpmn"
        target.write_text(compiled.bpmn)
        files.append(str(target))
        root = etree.fromstring(compiled.bpmn.encode())
        expected_refs[str(target)] = {
            el.text
            for el in root.iter(
                f"{{{NS['bpmn']}}}loopDataInputRef", f"{{{NS['bpmn']}}}loopDataOutputRef"
            )
        }
    assert len(files) >= 40
    result = subprocess.run(
        [node, str(SCRIPT), *files], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for file in files:
        assert report[file]["type"] == "bpmn:Definitions", (file, report[file])
        other = [
            w
            for w in report[file]["warnings"]
            if not (m := re.fullmatch(r"unresolved reference <(.+)>", w))
            or m.group(1) not in expected_refs[file]
        ]
        assert other == [], (file, other)
