"""lint.dmn_checks: decision tables SpiffWorkflow would evaluate differently from what they say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.spiff.parser import SpiffBpmnParser

from taktflow.engine.sandbox import SandboxedScriptEngine
from taktflow.lint.dmn_checks import check_dmn, decision_ids
from taktflow.lint.findings import ERROR, WARNING, Finding

ROOT = Path(__file__).parents[2]
DATA = Path(__file__).parent / "data"
DMN13 = "https://www.omg.org/spec/DMN/20191111/MODEL/"

CATCH_ALL = ("-", '"other"')


def dmn(
    rules: list[tuple[str, str]],
    hit: str | None = "FIRST",
    aggregation: str = "",
    expression: str = "material",
    namespace: str = DMN13,
    table_extra: str = "",
) -> str:
    """One decision `choose` with one input and one output; `rules` are (test, output)."""
    policy = f' hitPolicy="{hit}"' if hit else ""
    agg = f' aggregation="{aggregation}"' if aggregation else ""
    rows = "\n".join(
        f"""      <rule id="r{n}">
        <inputEntry id="r{n}_in"><text>{test}</text></inputEntry>
        <outputEntry id="r{n}_out"><text>{out}</text></outputEntry>
      </rule>"""
        for n, (test, out) in enumerate(rules, start=1)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="{namespace}" id="defs" name="d" namespace="http://taktflow.test/lint">
  <decision id="choose" name="Choose">
    <decisionTable id="table"{policy}{agg}>{table_extra}
      <input id="in1" label="Material">
        <inputExpression id="ie1"><text>{expression}</text></inputExpression>
      </input>
      <output id="out1" name="result"/>
{rows}
    </decisionTable>
  </decision>
</definitions>"""


def lint(text: str) -> list[Finding]:
    return check_dmn("t.dmn", etree.fromstring(text.encode()))


def rules_of(text: str) -> list[tuple[str, str, str | None]]:
    return [(f.rule, f.severity, f.element) for f in lint(text)]


def test_a_clean_file_has_no_findings() -> None:
    root = etree.parse(str(DATA / "clean.dmn")).getroot()
    assert check_dmn("clean.dmn", root) == []
    assert decision_ids(root) == {"grade_decision"}


def test_the_repository_decisions_are_clean() -> None:
    for path in (ROOT / "tests/engine/bpmn").glob("*.dmn"):
        assert check_dmn(path.name, etree.parse(str(path)).getroot()) == [], path


# --- hit policies --------------------------------------------------------------------------------

GOOD = [("'steel'", "'A'"), ("? in ('brass', 'iron')", "'B'"), CATCH_ALL]


@pytest.mark.parametrize(
    ("hit", "aggregation", "expected"),
    [
        (None, "", []),  # absent means UNIQUE
        ("UNIQUE", "", []),
        ("FIRST", "", []),
        ("first", "", []),  # SpiffWorkflow upper-cases the policy
        ("COLLECT", "", []),
        ("ANY", "", [("hit-policy", WARNING, "table")]),
        ("PRIORITY", "", [("hit-policy", ERROR, "table")]),
        ("RULE ORDER", "", [("hit-policy", ERROR, "table")]),
        ("OUTPUT ORDER", "", [("hit-policy", ERROR, "table")]),
        ("COLLECT", "SUM", [("hit-policy", ERROR, "table")]),
        ("COLLECT", "COUNT", [("hit-policy", ERROR, "table")]),
        ("COLLECT", "MIN", [("hit-policy", ERROR, "table")]),
        ("COLLECT", "MAX", [("hit-policy", ERROR, "table")]),
        ("FIRST_MATCH", "", [("hit-policy", ERROR, "table")]),  # not a DMN policy at all
    ],
)
def test_hit_policies(hit: str | None, aggregation: str, expected: list) -> None:
    assert rules_of(dmn(GOOD, hit, aggregation)) == expected


@pytest.mark.parametrize(
    ("hit", "aggregation", "says"),
    [
        ("ANY", "", "acts as first-match, rules that disagree are not reported"),
        ("PRIORITY", "", "not implemented: SpiffWorkflow silently returns the first matching rule"),
        ("COLLECT", "SUM", "aggregation is ignored: outputs come back as lists"),
    ],
)
def test_hit_policy_messages(hit: str, aggregation: str, says: str) -> None:
    [finding] = lint(dmn(GOOD, hit, aggregation))
    assert says in finding.message


def test_unique_rules_with_identical_tests_warn() -> None:
    rules = [("'steel'", "'A'"), ("'steel'  ", "'B'"), ("-", "'C'"), ("", "'D'")]
    found = rules_of(dmn(rules, "UNIQUE"))
    # r2 repeats r1 (spaces around do not matter); r4 ('' is '-') repeats r3.
    assert [f for f in found if f[0] == "unique-overlap"] == [
        ("unique-overlap", WARNING, "r2"),
        ("unique-overlap", WARNING, "r4"),
    ]
    [message] = [f.message for f in lint(dmn(rules[:2] + [CATCH_ALL], "UNIQUE"))]
    assert "rule 2 has the same input tests as rule 1" in message


def test_identical_tests_are_fine_under_other_policies() -> None:
    rules = [("'steel'", "'A'"), ("'steel'", "'B'"), CATCH_ALL]
    assert rules_of(dmn(rules, "FIRST")) == []
    assert rules_of(dmn(rules, "COLLECT")) == []


# --- input cells --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell", ["in ['steel', 'brass']", "not in ['steel']", "in('steel',)", "is None", "is not None"]
)
def test_keyword_operator_cells_glue_onto_the_input(cell: str) -> None:
    [finding] = lint(dmn([(cell, "'A'"), CATCH_ALL]))
    assert (finding.rule, finding.severity, finding.element) == ("dmn-in-operator", ERROR, "r1_in")
    assert "rule 1" in finding.message
    assert f"material{cell}" in finding.message  # what SpiffWorkflow evaluates
    assert f"'? {cell}'" in finding.message  # what to write instead


@pytest.mark.parametrize(
    ("expression", "cell"),
    [
        ("material", "? in ['steel', 'brass']"),
        ("material", "? not in ['steel']"),
        ("len(parts)", "in [1, 2]"),  # ')in [1, 2]' is fine Python
        ("material ", "in ['steel']"),  # the space SpiffWorkflow leaves out is already there
    ],
)
def test_keyword_operators_that_work(expression: str, cell: str) -> None:
    assert rules_of(dmn([(cell, "'A'"), CATCH_ALL], expression=expression)) == []


@pytest.mark.parametrize(
    "cell",
    [
        "'steel'",
        '"steel"',
        "5",
        "&lt; 5",
        "&lt;= 5",
        "&gt;= 5",
        "== 'steel'",
        "!= 'steel'",
        "1 &lt; ? &lt; 5",
        "? == 'What?'",
        "material_of(part)",
        "not flag",
        "? &lt; 5 and ? != 3",
    ],
)
def test_valid_input_cells(cell: str) -> None:
    assert rules_of(dmn([(cell, "'A'"), CATCH_ALL])) == []


@pytest.mark.parametrize(
    ("cell", "says"),
    [
        ("5 &lt;", "not valid Python"),
        ("'steel", "not valid Python"),
        ("steel alloy", "not valid Python"),
        ("a = 1", "becomes '(material) == (a = 1)'"),  # a statement parses, then fails as ==
        (" 'steel'", "starts with spaces"),  # appended, not compared: 'material 'steel''
        ("_secret", "starts with"),  # refused by the platform's sandbox
        ("? &lt;", "not a valid expression"),
        ("&lt; 5 and ? != 3", "not a valid expression"),  # with ?, the cell is the whole test
        (" - ", "'-' with spaces around it"),
    ],
)
def test_invalid_input_cells(cell: str, says: str) -> None:
    [finding] = lint(dmn([(cell, "'A'"), CATCH_ALL]))
    assert (finding.rule, finding.severity, finding.element) == ("dmn-cell-syntax", ERROR, "r1_in")
    assert "rule 1" in finding.message
    assert says in finding.message
    assert (
        finding.line
        == dmn([(cell, "'A'"), CATCH_ALL])
        .splitlines()
        .index(f'        <inputEntry id="r1_in"><text>{cell}</text></inputEntry>')
        + 1
    )


def test_row_numbers_count_rules_from_one() -> None:
    rules = [("'a'", "'A'"), ("'b'", "'B'"), ("5 &lt;", "'C'"), CATCH_ALL]
    [finding] = lint(dmn(rules))
    assert finding.element == "r3_in"
    assert finding.message.startswith("rule 3:")


def test_a_blank_cell_never_matches() -> None:
    assert rules_of(dmn([("   ", "'A'"), CATCH_ALL])) == [("dmn-blank-cell", ERROR, "r1_in")]


def test_a_broken_input_expression_is_reported_once() -> None:
    rules = [("'a'", "'A'"), ("'b'", "'B'"), CATCH_ALL]
    assert rules_of(dmn(rules, expression="material.")) == [("dmn-cell-syntax", ERROR, "ie1")]


def test_a_tested_column_without_input_expression() -> None:
    text = dmn([("'a'", "'A'"), CATCH_ALL]).replace("<text>material</text>", "")
    assert rules_of(text) == [("dmn-input-no-expression", WARNING, "in1")]
    untested = dmn([CATCH_ALL]).replace("<text>material</text>", "")
    assert rules_of(untested) == []


# --- output cells --------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["'A'", "42", "[1, 2]", "price * 1.2", ""])
def test_valid_output_cells(output: str) -> None:
    assert rules_of(dmn([("'a'", output), CATCH_ALL])) == []


@pytest.mark.parametrize("output", ["grade A", "x = 1", "'A", " 'A'", "__import__('os')"])
def test_invalid_output_cells(output: str) -> None:
    [finding] = lint(dmn([("'a'", output), CATCH_ALL]))
    assert (finding.rule, finding.severity, finding.element) == (
        "dmn-cell-syntax",
        ERROR,
        "r1_out",
    )
    assert finding.message.startswith("rule 1: output")


# --- default rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "hit", "expected"),
    [
        ([("'a'", "'A'"), ("'b'", "'B'")], "FIRST", [("dmn-no-default-rule", WARNING, "table")]),
        ([("'a'", "'A'"), ("'b'", "'B'")], None, [("dmn-no-default-rule", WARNING, "table")]),
        ([("'a'", "'A'"), ("'b'", "'B'")], "COLLECT", []),
        ([("'a'", "'A'"), ("-", "'B'")], "FIRST", []),
        ([("'a'", "'A'"), ("", "'B'")], "FIRST", []),
        ([], "FIRST", [("dmn-no-default-rule", WARNING, "table")]),
    ],
)
def test_tables_without_a_rule_matching_anything(rules: list, hit: str, expected: list) -> None:
    assert rules_of(dmn(rules, hit)) == expected


def test_the_default_rule_must_match_every_column() -> None:
    text = dmn([("'a'", "'A'"), CATCH_ALL]).replace(
        '<output id="out1"',
        '<input id="in2"><inputExpression id="ie2"><text>size</text></inputExpression></input>'
        '\n      <output id="out1"',
    )
    # Each rule has one cell for two inputs: the missing one matches anything.
    assert rules_of(text) == []
    partial = text.replace(
        "<text>-</text></inputEntry>",
        '<text>-</text></inputEntry><inputEntry id="r2_in2"><text>&gt; 3</text></inputEntry>',
    )
    assert rules_of(partial) == [("dmn-no-default-rule", WARNING, "table")]


# --- structure ------------------------------------------------------------------------------------


def test_only_the_first_decision_of_a_file_counts() -> None:
    text = dmn([CATCH_ALL]).replace(
        "</definitions>",
        '<decision id="second"><decisionTable id="t2"><output id="o2"/>'
        '<rule id="x"><outputEntry id="xo"><text>1</text></outputEntry></rule>'
        "</decisionTable></decision></definitions>",
    )
    root = etree.fromstring(text.encode())
    assert decision_ids(root) == {"choose"}
    assert rules_of(text) == [("dmn-multiple-decisions", ERROR, "second")]


def test_a_decision_without_table() -> None:
    text = f"""<definitions xmlns="{DMN13}" id="d" name="d" namespace="n">
  <decision id="lit"><literalExpression id="le"><text>1</text></literalExpression></decision>
</definitions>"""
    assert rules_of(text) == [("dmn-no-table", ERROR, "lit")]
    assert decision_ids(etree.fromstring(text.encode())) == {"lit"}


@pytest.mark.parametrize(
    ("extra", "element"),
    [
        ("<!-- why this table exists -->", None),
        ('<annotation name="Notes"/>', None),
        ("<description>what it does</description>", None),
    ],
)
def test_content_spiffworkflow_refuses_inside_a_table(extra: str, element: str | None) -> None:
    [finding] = lint(dmn([CATCH_ALL], table_extra=extra))
    assert (finding.rule, finding.severity, finding.element) == (
        "dmn-unsupported-content",
        ERROR,
        element,
    )
    assert "SpiffWorkflow" in finding.message


@pytest.mark.parametrize(
    ("before", "after", "element"),
    [
        ('<rule id="r1">', '<rule id="r1"><!-- note -->', None),
        ("<text>-</text></inputEntry>", "<text>-</text><!-- note --></inputEntry>", None),
        ('<inputEntry id="r1_in"><text>-</text>', '<inputEntry id="r1_in">', "r1_in"),
        ('<rule id="r1">', "<rule>", None),
        ('<inputEntry id="r1_in">', "<inputEntry>", None),
        (
            '<inputEntry id="r1_in"><text>-</text></inputEntry>',
            '<inputEntry id="r1_in"><text>-</text></inputEntry>'
            '<inputEntry id="r1_extra"><text>-</text></inputEntry>',
            "r1",
        ),
    ],
)
def test_rule_content_spiffworkflow_fails_on(before: str, after: str, element: Any) -> None:
    text = dmn([CATCH_ALL]).replace(before, after)
    assert before in dmn([CATCH_ALL])
    found = [f for f in lint(text) if f.rule == "dmn-unsupported-content"]
    assert [(f.severity, f.element) for f in found] == [(ERROR, element)]


@pytest.mark.parametrize(
    "namespace", [DMN13, "http://www.omg.org/spec/DMN/20180521/MODEL/", "http://x.test/dmn"]
)
def test_any_dmn_namespace(namespace: str) -> None:
    text = dmn([("in [1]", "'A'")], namespace=namespace)
    assert decision_ids(etree.fromstring(text.encode())) == {"choose"}
    assert [r for r, _, _ in rules_of(text)] == ["dmn-no-default-rule", "dmn-in-operator"]


def test_prefixed_dmn_elements() -> None:
    text = dmn([("in [1]", "'A'"), CATCH_ALL]).replace(f'xmlns="{DMN13}"', f'xmlns:dmn="{DMN13}"')
    text = text.replace("<", "<dmn:").replace("<dmn:/", "</dmn:").replace("<dmn:?xml", "<?xml")
    assert decision_ids(etree.fromstring(text.encode())) == {"choose"}
    assert [r for r, _, _ in rules_of(text)] == ["dmn-in-operator"]


@pytest.mark.parametrize(
    "text",
    [
        f'<definitions xmlns="{DMN13}"/>',
        f'<definitions xmlns="{DMN13}"><decision/></definitions>',
        f'<definitions xmlns="{DMN13}"><decision id="d"><decisionTable/></decision></definitions>',
        f'<definitions xmlns="{DMN13}"><decision id="d"><decisionTable id="t"><rule id="r">'
        '<inputEntry id="i"><text>in [1]</text></inputEntry><outputEntry id="o"/></rule>'
        "</decisionTable></decision></definitions>",
        "<notdmn><something/></notdmn>",
    ],
)
def test_odd_input_never_raises(text: str) -> None:
    found = lint(text)
    assert all(isinstance(f, Finding) for f in found)
    assert [f.line or 0 for f in found] == sorted(f.line or 0 for f in found)


# --- the engine agrees -----------------------------------------------------------------------
# The checks rest on how SpiffWorkflow 3.2.0 evaluates tables. These run the engine (with the
# platform's sandbox) so that an upgrade that changes the behaviour fails here.

CALLER = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    id="defs" targetNamespace="http://taktflow.test/lint">
  <bpmn:process id="decide" isExecutable="true">
    <bpmn:startEvent id="s"/>
    <bpmn:businessRuleTask id="rule_task"><bpmn:extensionElements>
      <spiffworkflow:calledDecisionId>choose</spiffworkflow:calledDecisionId>
    </bpmn:extensionElements></bpmn:businessRuleTask>
    <bpmn:endEvent id="e"/>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="rule_task"/>
    <bpmn:sequenceFlow id="f2" sourceRef="rule_task" targetRef="e"/>
  </bpmn:process>
</bpmn:definitions>"""


def decide(table: str, **data: Any) -> Any:
    parser = SpiffBpmnParser()
    parser.add_bpmn_str(CALLER.encode())
    parser.add_dmn_str(table.encode())
    workflow = BpmnWorkflow(parser.get_spec("decide"), script_engine=SandboxedScriptEngine())
    for task in workflow.get_tasks():
        task.data.update(data)
    workflow.do_engine_steps()
    return workflow.data.get("result", "unset")


def test_engine_in_cells_fail_and_placeholder_cells_work() -> None:
    with pytest.raises(Exception, match="materialin"):
        decide(dmn([("in ['steel']", "'A'"), CATCH_ALL]), material="steel")
    assert decide(dmn([("? in ['steel']", "'A'"), CATCH_ALL]), material="steel") == "A"


def test_engine_blank_and_spaced_cells() -> None:
    assert decide(dmn([("   ", "'A'"), CATCH_ALL]), material="steel") == "other"
    with pytest.raises(Exception, match="syntax"):
        decide(dmn([(" 'steel'", "'A'"), CATCH_ALL]), material="steel")


def test_engine_hit_policies() -> None:
    overlapping = [("'steel'", "'A'"), ("? in ['steel', 'iron']", "'B'")]
    assert decide(dmn(overlapping, "UNIQUE"), material="steel") == "A"  # no uniqueness check
    assert decide(dmn(overlapping, "PRIORITY"), material="steel") == "A"
    assert decide(dmn(overlapping, "COLLECT", "COUNT"), material="steel") == ["A", "B"]
    assert decide(dmn(overlapping, "FIRST"), material="brass") == "unset"  # no default rule


def test_engine_refuses_a_comment_in_a_table() -> None:
    with pytest.raises(Exception, match="endswith"):
        decide(dmn([CATCH_ALL], table_extra="<!-- note -->"), material="steel")
