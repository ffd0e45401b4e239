"""docs/yaml-workflows.md stays true.

- Every ```yaml block with a top-level `process:` key is a complete workflow: it compiles,
  the published JSON Schema (docs/schema/workflow.schema.json) accepts it, and the compiled
  BPMN passes the checks `taktflow deploy` makes (BPMN schema, SpiffWorkflow's parser,
  scripts and expressions). Actions, called processes and the DMN decision `grade_decision`
  count as available, as on a site that has them.
- Every ```yaml-error block fails to compile, and when a ```text block follows it, that block
  shows the error the compiler reports (`...:line:column: reason`).
- Every construct's table of keys (after a `<!-- keys: ... -->` marker) is the one generated
  from the language table in taktflow/yamlflow/language.py.

A table that is out of date is regenerated with `python tests/test_docs_yaml.py NAME`, which
prints the table for NAME (`process`, an object such as `timeout`, or `step:KIND`).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from taktflow.engine.definitions import DMN, DefinitionParser, SourceFile
from taktflow.errors import DefinitionError
from taktflow.yamlflow import compile_source, compile_text
from taktflow.yamlflow import language as lang
from taktflow.yamlflow.loader import load

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "yaml-workflows.md"
SCHEMA = ROOT / "docs" / "schema" / "workflow.schema.json"
#: The DMN file the `decision: ... use: grade_decision` example relies on.
GRADE_DMN = ROOT / "tests" / "engine" / "bpmn" / "grade.dmn"

#: A fenced block, also indented inside a list item (then its lines are dedented).
_FENCE = re.compile(r"^( *)```([A-Za-z0-9_-]*)[ \t]*\n(.*?)^\1```[ \t]*$", re.M | re.S)
_MARKER = re.compile(r"^<!-- keys: (\S+) -->\n", re.M)


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int
    #: The ```text block right after this one (only blank lines between), if any.
    shown: str | None

    @property
    def id(self) -> str:
        match = re.search(r"^process: *(\S+)", self.text, re.M)
        return f"line {self.line} ({match.group(1) if match else '?'})"


def _dedent(match: re.Match[str]) -> str:
    indent = len(match.group(1))
    return "".join(line[indent:] for line in match.group(3).splitlines(keepends=True))


def _blocks() -> list[Block]:
    doc = DOC.read_text(encoding="utf-8")
    found = list(_FENCE.finditer(doc))
    blocks = []
    for index, match in enumerate(found):
        shown = None
        if index + 1 < len(found):
            after = found[index + 1]
            if after.group(2) == "text" and not doc[match.end() : after.start()].strip():
                shown = _dedent(after)
        line = doc.count("\n", 0, match.start()) + 2  # the first line inside the fence
        blocks.append(Block(match.group(2), _dedent(match), line, shown))
    return blocks


BLOCKS = _blocks()
EXAMPLES = [b for b in BLOCKS if b.lang == "yaml" and re.search(r"^process:", b.text, re.M)]
ERRORS = [b for b in BLOCKS if b.lang == "yaml-error"]


# ---------------------------------------------------------------------- key tables
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def fields_of(name: str) -> dict[str, lang.Field]:
    """`process`, an object of the language (`timeout`, `rule`, ...) or `step:KIND`."""
    if name == "process":
        return lang.PROCESS
    if name.startswith("step:"):
        return lang.STEPS[name.removeprefix("step:")]
    return lang.OBJECTS[name]


def key_table(name: str) -> str:
    """The Markdown table of a construct's keys, from language.py's docs."""
    lines = ["| key | required | value | meaning |", "| --- | --- | --- | --- |"]
    for key, f in fields_of(name).items():
        required = "yes" if f.required else ""
        lines.append(f"| `{key}` | {required} | {_cell(lang.describe(f.type))} | {_cell(f.doc)} |")
    return "\n".join(lines) + "\n"


def test_key_tables_are_generated_from_the_language_table() -> None:
    doc = DOC.read_text(encoding="utf-8")
    markers = list(_MARKER.finditer(doc))
    assert markers, "no <!-- keys: ... --> markers in the guide"
    for marker in markers:
        name = marker.group(1)
        expected = key_table(name)
        actual = doc[marker.end() : marker.end() + len(expected)]
        assert actual == expected, (
            f"the table after <!-- keys: {name} --> is out of date; regenerate it with "
            f"`python tests/test_docs_yaml.py {name}`"
        )


def test_every_construct_has_a_key_table() -> None:
    doc = DOC.read_text(encoding="utf-8")
    documented = {m.group(1) for m in _MARKER.finditer(doc)}
    wanted = {"process"} | set(lang.OBJECTS) | {f"step:{kind}" for kind in lang.STEPS}
    assert wanted - documented == set()
    assert documented - wanted == set()


# ---------------------------------------------------------------------- examples
def test_the_guide_has_examples() -> None:
    assert len(EXAMPLES) >= 20
    assert len(ERRORS) >= 5
    # Every step kind appears in at least one complete example.
    kinds = {
        kind for b in EXAMPLES for kind in lang.STEPS if re.search(rf"^\s*- {kind}:", b.text, re.M)
    }
    assert kinds == set(lang.STEPS)


@pytest.mark.parametrize("block", EXAMPLES, ids=lambda b: b.id)
def test_example_compiles_and_matches_the_schema(block: Block) -> None:
    compile_text("example.yaml", block.text)
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    data = json.loads(json.dumps(load(block.text)))
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft202012Validator(schema).iter_errors(data)
    ]
    assert errors == []


@pytest.mark.parametrize("block", EXAMPLES, ids=lambda b: b.id)
def test_example_passes_the_deploy_checks(block: Block) -> None:
    name = f"example_{block.line}.yaml"
    files = compile_source(SourceFile(name, block.text, "yaml"))
    grade = SourceFile(str(GRADE_DMN), GRADE_DMN.read_text(encoding="utf-8"), DMN)
    parser = DefinitionParser(
        actions=None,  # site actions (erp.*) are not registered in the test suite
        deployed_decisions=lambda ids: {d: grade for d in ids if d == "grade_decision"},
        deployed_processes=lambda ids: set(ids),
    )
    parser.parse(files)


@pytest.mark.parametrize("block", ERRORS, ids=lambda b: f"line {b.line}")
def test_error_example_fails_with_the_error_shown(block: Block) -> None:
    with pytest.raises(DefinitionError) as caught:
        compile_text("workflow.yaml", block.text)
    problem = caught.value.problems[0]
    if block.shown is None:
        return
    where = f":{problem.line}:{problem.column}" if problem.line else ""
    tail = f"{where}: {problem.reason}"
    shown = [line for line in block.shown.splitlines() if line.strip()]
    assert any(line.endswith(tail) for line in shown), (
        f"the guide shows {shown!r}, the compiler says {tail!r}"
    )


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"<!-- keys: {arg} -->")
        print(key_table(arg))
