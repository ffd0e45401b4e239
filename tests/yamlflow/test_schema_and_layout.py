"""The published JSON Schema and the diagram layout, checked over every YAML workflow in the
test suite (construct examples, equivalence pairs) and the factory's own workflows."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import jsonschema
import pytest
from lxml import etree

from taktflow.yamlflow import compile_text, json_schema
from taktflow.yamlflow.loader import load

ROOT = Path(__file__).parents[2]
SCHEMA_FILE = ROOT / "docs" / "schema" / "workflow.schema.json"
YAML_FILES = sorted(
    p
    for folder in (Path(__file__).parent, ROOT / "workflows")
    for p in folder.rglob("*.y*ml")
    if "bad" not in p.parts
)
NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "dc": "http://www.omg.org/spec/DD/20100524/DC",
    "di": "http://www.omg.org/spec/DD/20100524/DI",
}


def test_published_schema_is_current() -> None:
    """docs/schema/workflow.schema.json is generated from the language table; regenerate it
    with `python -c 'import json; from taktflow.yamlflow import json_schema;
    print(json.dumps(json_schema(), indent=2))' > docs/schema/workflow.schema.json`."""
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema()
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_there_are_yaml_workflows_to_check() -> None:
    assert len(YAML_FILES) >= 5, YAML_FILES


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_schema_accepts_what_the_compiler_accepts(path: Path) -> None:
    text = path.read_text()
    compile_text(str(path), text)
    data = json.loads(json.dumps(load(text)))
    errors = [e.message for e in jsonschema.Draft202012Validator(json_schema()).iter_errors(data)]
    assert errors == []


@pytest.mark.parametrize(
    "text",
    [
        "process: p\nsteps:\n  - task: A\n    lane2: x\n",
        "process: p\nsteps:\n  - task: A\n    service: B\n",
        "process: p\nstep:\n  - task: A\n",
        "process: p\nsteps:\n  - wait: W\n    for: PT1H\n    timeout: {after: PT2H, bogus: 1}\n",
    ],
)
def test_schema_refuses_what_the_compiler_refuses(text: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - DefinitionError; the point is the schema
        compile_text("bad.yaml", text)
    errors = list(jsonschema.Draft202012Validator(json_schema()).iter_errors(load(text)))
    assert errors


def _shapes(xml: str) -> tuple[dict[str, tuple[float, float, float, float]], etree._Element]:
    root = etree.fromstring(xml.encode())
    shapes = {}
    for shape in root.iterfind(".//bpmndi:BPMNShape", NS):
        b = shape.find("dc:Bounds", NS)
        shapes[shape.get("bpmnElement")] = tuple(
            float(b.get(k)) for k in ("x", "y", "width", "height")
        )
    return shapes, root


def _overlap(a: tuple, b: tuple) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def _inside(inner: tuple, outer: tuple) -> bool:
    ix, iy, iw, ih = inner
    ox, oy, ow, oh = outer
    return ox <= ix and oy <= iy and ix + iw <= ox + ow and iy + ih <= oy + oh


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_layout_has_a_shape_per_node_and_no_overlaps(path: Path) -> None:
    compiled = compile_text(str(path), path.read_text())
    shapes, root = _shapes(compiled.bpmn)
    nodes = {
        el.get("id"): el
        for el in root.iter()
        if isinstance(el.tag, str)
        and el.get("id")
        and etree.QName(el).localname
        in {
            "startEvent",
            "endEvent",
            "userTask",
            "manualTask",
            "serviceTask",
            "scriptTask",
            "businessRuleTask",
            "callActivity",
            "receiveTask",
            "subProcess",
            "boundaryEvent",
            "exclusiveGateway",
            "parallelGateway",
            "intermediateCatchEvent",
            "intermediateThrowEvent",
        }
    }
    assert set(nodes) <= set(shapes), set(nodes) - set(shapes)
    flows = [f.get("id") for f in root.iterfind(".//bpmn:sequenceFlow", NS)]
    edges = {e.get("bpmnElement"): e for e in root.iterfind(".//bpmndi:BPMNEdge", NS)}
    assert set(flows) == set(edges)
    for edge in edges.values():
        points = edge.findall("di:waypoint", NS)
        assert len(points) >= 2
        for a, b in zip(points, points[1:], strict=False):  # orthogonal segments
            assert a.get("x") == b.get("x") or a.get("y") == b.get("y")

    def container(node_id: str) -> str | None:
        parent = nodes[node_id].getparent()
        return parent.get("id") if etree.QName(parent).localname == "subProcess" else None

    for a, b in combinations(sorted(nodes), 2):
        el_a, el_b = nodes[a], nodes[b]
        # A boundary event sits on its host's border by design; a subprocess holds its inside.
        if el_a.get("attachedToRef") == b or el_b.get("attachedToRef") == a:
            continue
        if container(a) == b or container(b) == a or _nested(nodes, a, b):
            continue
        assert not _overlap(shapes[a], shapes[b]), f"{a} {shapes[a]} overlaps {b} {shapes[b]}"
    for node_id in nodes:
        parent = container(node_id)
        if parent is not None:
            assert _inside(shapes[node_id], shapes[parent]), f"{node_id} sticks out of {parent}"


def _nested(nodes: dict, a: str, b: str) -> bool:
    """True when one is inside the other at any depth (subprocess in subprocess)."""
    for inner, outer in ((a, b), (b, a)):
        parent = nodes[inner].getparent()
        while parent is not None:
            if parent.get("id") == outer:
                return True
            parent = parent.getparent()
    return False


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_compiling_twice_gives_identical_xml(path: Path) -> None:
    text = path.read_text()
    first, second = compile_text(str(path), text), compile_text(str(path), text)
    assert first.bpmn == second.bpmn
    assert first.dmn == second.dmn
