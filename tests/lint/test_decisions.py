"""lint.decisions: DMN tables SpiffWorkflow would evaluate differently from what they say."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from taktflow.lint.decisions import check_dmn, decision_ids
from taktflow.lint.findings import ERROR, WARNING

ROOT = Path(__file__).parents[2]


def dmn(rules: list[tuple[str, str]], hit: str | None = "FIRST", aggregation: str = "") -> str:
    policy = f' hitPolicy="{hit}"' if hit else ""
    agg = f' aggregation="{aggregation}"' if aggregation else ""
    rows = "\n".join(
        f"""      <rule id="r{n}">
        <inputEntry id="r{n}_i"><text>{test}</text></inputEntry>
        <outputEntry id="r{n}_o"><text>{out}</text></outputEntry>
      </rule>"""
        for n, (test, out) in enumerate(rules, start=1)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="d" name="d"
    namespace="http://taktflow.test">
  <decision id="grade" name="Grade">
    <decisionTable id="table"{policy}{agg}>
      <input id="in1"><inputExpression id="ie1"><text>defects</text></inputExpression></input>
      <output id="out1" name="grade"/>
{rows}
    </decisionTable>
  </decision>
</definitions>"""


def check(text: str) -> list[tuple[str, str, str | None]]:
    root = etree.fromstring(text.encode())
    return [(f.rule, f.severity, f.element) for f in check_dmn("grade.dmn", root)]


GOOD = [("0", "'A'"), ("&lt; 3", "'B'"), ("-", "'C'")]


def test_a_good_table_has_no_findings() -> None:
    assert check(dmn(GOOD)) == []
    assert decision_ids(etree.fromstring(dmn(GOOD).encode())) == {"grade"}


@pytest.mark.parametrize(
    ("hit", "aggregation", "expected"),
    [
        ("PRIORITY", "", [("hit-policy", ERROR, "table")]),
        ("RULE ORDER", "", [("hit-policy", ERROR, "table")]),
        ("OUTPUT ORDER", "", [("hit-policy", ERROR, "table")]),
        ("ANY", "", [("hit-policy", WARNING, "table")]),
        ("COLLECT", "SUM", [("hit-policy", ERROR, "table")]),
        ("COLLECT", "", []),
        ("FIRST", "", []),
        ("UNIQUE", "", []),
        (None, "", []),  # absent means UNIQUE
    ],
)
def test_hit_policies(hit: str | None, aggregation: str, expected: list) -> None:
    assert check(dmn(GOOD, hit, aggregation)) == expected


def test_unique_with_identical_rules_warns() -> None:
    rules = [("0", "'A'"), ("0", "'B'"), ("-", "'C'")]
    assert check(dmn(rules, "UNIQUE")) == [("unique-overlap", WARNING, "r2")]
    assert check(dmn(rules, "FIRST")) == []


def test_in_cells_fail_at_run_time() -> None:
    rules = [("in [1, 2]", "'A'"), ("not in [3]", "'B'"), ("? in [4, 5]", "'C'"), ("-", "'D'")]
    assert check(dmn(rules)) == [
        ("dmn-in-operator", ERROR, "r1_i"),
        ("dmn-in-operator", ERROR, "r2_i"),
    ]


def test_no_rule_for_every_input_warns_except_for_collect() -> None:
    rules = [("0", "'A'"), ("&gt; 0", "'B'")]
    assert check(dmn(rules)) == [("dmn-no-default-rule", WARNING, "table")]
    assert check(dmn(rules, "COLLECT")) == []


def test_cells_that_do_not_parse() -> None:
    rules = [("&gt;=", "'A'"), ("1", "A B"), ("-", "'C'")]
    assert check(dmn(rules)) == [
        ("dmn-cell-syntax", ERROR, "r1_i"),
        ("dmn-cell-syntax", ERROR, "r2_o"),
    ]


def test_the_engine_test_decision_is_clean() -> None:
    root = etree.parse(str(ROOT / "tests/engine/bpmn/grade.dmn")).getroot()
    assert [f for f in check_dmn("grade.dmn", root) if f.severity == ERROR] == []
