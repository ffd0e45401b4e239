"""lint.graph: each rule is shown failing on a small BPMN made for it, and silent on the
same BPMN with the problem fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from taktflow.lint.findings import ERROR, WARNING, Finding, LintContext
from taktflow.lint.graph import check_bpmn, defined_names

ROOT = Path(__file__).parents[2]


def bpmn(body: str, extra: str = "") -> etree._Element:
    text = f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    id="d" targetNamespace="http://taktflow.test">
  {extra}
  <bpmn:process id="p" isExecutable="true">
{body}
  </bpmn:process>
</bpmn:definitions>"""
    return etree.fromstring(text.encode())


def run(root: etree._Element, **context: object) -> list[Finding]:
    return check_bpmn("p.bpmn", root, LintContext(**context))  # type: ignore[arg-type]


def rules(findings: list[Finding]) -> list[tuple[str, str, str | None]]:
    return [(f.rule, f.severity, f.element) for f in findings]


LINE = """
    <bpmn:startEvent id="start"/>
    <bpmn:scriptTask id="a"><bpmn:script>x = 1</bpmn:script></bpmn:scriptTask>
    <bpmn:endEvent id="end"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="a"/>
    <bpmn:sequenceFlow id="f2" sourceRef="a" targetRef="end"/>
"""


def test_a_clean_process_has_no_findings() -> None:
    assert run(bpmn(LINE)) == []


def test_unreachable_element_is_a_warning_with_its_line() -> None:
    root = bpmn(
        LINE + '<bpmn:scriptTask id="orphan"><bpmn:script>y = 2</bpmn:script>'
        '</bpmn:scriptTask><bpmn:sequenceFlow id="f3" sourceRef="orphan" targetRef="end"/>'
    )
    [finding] = run(root)
    assert rules([finding]) == [("unreachable", WARNING, "orphan")]
    [orphan] = root.xpath("//*[@id='orphan']")
    assert finding.line == orphan.sourceline and finding.line > 1


def test_a_loop_without_exit_never_ends() -> None:
    body = """
    <bpmn:startEvent id="start"/>
    <bpmn:scriptTask id="a"><bpmn:script>x = 1</bpmn:script></bpmn:scriptTask>
    <bpmn:scriptTask id="b"><bpmn:script>x = 2</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="a"/>
    <bpmn:sequenceFlow id="f2" sourceRef="a" targetRef="b"/>
    <bpmn:sequenceFlow id="f3" sourceRef="b" targetRef="a"/>
"""
    findings = run(bpmn(body))
    assert rules(findings) == [("never-ends", ERROR, "start")]
    assert "a, b" in findings[0].message
    fixed = body.replace(
        'targetRef="a"/>\n    <bpmn:sequenceFlow id="f2"',
        'targetRef="a"/>\n'
        '    <bpmn:endEvent id="end"/><bpmn:sequenceFlow id="f4" '
        'sourceRef="a" targetRef="end"/>\n    <bpmn:sequenceFlow id="f2"',
    )
    assert run(bpmn(fixed)) == []


def test_a_task_without_outgoing_flow_is_a_dead_end() -> None:
    body = LINE.replace('<bpmn:sequenceFlow id="f2" sourceRef="a" targetRef="end"/>', "")
    findings = run(bpmn(body))
    assert ("dead-end", ERROR, "a") in rules(findings)


def test_a_timer_boundary_path_that_ends_counts_as_an_end() -> None:
    body = """
    <bpmn:startEvent id="start"/>
    <bpmn:userTask id="approve"/>
    <bpmn:boundaryEvent id="late" attachedToRef="approve">
      <bpmn:timerEventDefinition><bpmn:timeDuration>"PT4H"</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:endEvent id="end"/>
    <bpmn:endEvent id="end2"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="approve"/>
    <bpmn:sequenceFlow id="f2" sourceRef="approve" targetRef="end"/>
    <bpmn:sequenceFlow id="f3" sourceRef="late" targetRef="end2"/>
"""
    assert [f.rule for f in run(bpmn(body))] == ["user-task-no-form", "user-task-no-lane"]


@pytest.mark.parametrize(
    ("timer", "finding"),
    [
        ("PT2H", True),
        ("2026-03-01T06:00:00Z", True),
        ("R3/PT10M", True),
        ("'PT2H'", False),
        ('"PT2H"', False),
        ("sla", False),
        ("due_date", False),
    ],
)
def test_timers_written_without_quotes(timer: str, finding: bool) -> None:
    body = f"""
    <bpmn:startEvent id="start"/>
    <bpmn:intermediateCatchEvent id="cure">
      <bpmn:timerEventDefinition><bpmn:timeDuration>{timer}</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:endEvent id="end"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="cure"/>
    <bpmn:sequenceFlow id="f2" sourceRef="cure" targetRef="end"/>
"""
    found = [f for f in run(bpmn(body)) if f.rule == "timer-unquoted"]
    assert bool(found) is finding
    if finding:
        assert found[0].element == "cure" and f"\"'{timer}'\"" in found[0].message


GATEWAY = """
    <bpmn:startEvent id="start"/>
    <bpmn:exclusiveGateway id="gw" {default}/>
    <bpmn:endEvent id="e1"/><bpmn:endEvent id="e2"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="gw"/>
    <bpmn:sequenceFlow id="big" sourceRef="gw" targetRef="e1">
      <bpmn:conditionExpression>qty &gt; 100</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="small" sourceRef="gw" targetRef="e2">{cond}</bpmn:sequenceFlow>
"""


def test_gateway_without_default() -> None:
    cond = "<bpmn:conditionExpression>qty &lt;= 100</bpmn:conditionExpression>"
    assert rules(run(bpmn(GATEWAY.format(default="", cond=cond)))) == [
        ("gateway-no-default", WARNING, "gw")
    ]
    assert run(bpmn(GATEWAY.format(default='default="small"', cond=""))) == []


def test_gateway_flow_without_condition_that_is_not_the_default() -> None:
    assert ("condition-missing", ERROR, "small") in rules(
        run(bpmn(GATEWAY.format(default="", cond="")))
    )


HUMAN = """
  <bpmn:laneSet id="ls">
    <bpmn:lane id="lane_a" name="{lane}"><bpmn:flowNodeRef>check</bpmn:flowNodeRef></bpmn:lane>
    <bpmn:lane id="lane_b" name="system"><bpmn:flowNodeRef>start</bpmn:flowNodeRef></bpmn:lane>
  </bpmn:laneSet>
    <bpmn:startEvent id="start"/>
    <bpmn:userTask id="check">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formName" value="{form}"/>
      </spiffworkflow:properties></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:endEvent id="end"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="check"/>
    <bpmn:sequenceFlow id="f2" sourceRef="check" targetRef="end"/>
"""


def test_forms_and_roles_are_checked_when_known() -> None:
    root = bpmn(HUMAN.format(lane="operators", form="setup_sheet"))
    findings = run(root, forms={"setup", "release"}, roles={"operator", "manager"})
    assert rules(findings) == [
        ("unknown-role", ERROR, "lane_a"),
        ("unknown-form", ERROR, "check"),
    ]
    assert "(forms: release, setup)" in findings[1].message
    # The automated lane "system" holds no user task: it needs no role.
    assert (
        run(bpmn(HUMAN.format(lane="operator", form="setup")), forms={"setup"}, roles={"operator"})
        == []
    )
    # Unknown (None) means: not checked.
    assert run(bpmn(HUMAN.format(lane="operators", form="setup_sheet"))) == []


def test_user_task_without_form_or_lane() -> None:
    body = LINE.replace(
        '<bpmn:scriptTask id="a"><bpmn:script>x = 1</bpmn:script></bpmn:scriptTask>',
        '<bpmn:userTask id="a"/>',
    )
    assert rules(run(bpmn(body))) == [
        ("user-task-no-form", WARNING, "a"),
        ("user-task-no-lane", WARNING, "a"),
    ]


def test_references_to_actions_processes_and_decisions() -> None:
    body = """
    <bpmn:startEvent id="start"/>
    <bpmn:serviceTask id="svc"><bpmn:extensionElements>
      <spiffworkflow:serviceTaskOperator id="erp.book" resultVariable="r"/>
    </bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:callActivity id="call" calledElement="procure"/>
    <bpmn:businessRuleTask id="rule"><bpmn:extensionElements>
      <spiffworkflow:calledDecisionId>grade</spiffworkflow:calledDecisionId>
    </bpmn:extensionElements></bpmn:businessRuleTask>
    <bpmn:endEvent id="end"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="svc"/>
    <bpmn:sequenceFlow id="f2" sourceRef="svc" targetRef="call"/>
    <bpmn:sequenceFlow id="f3" sourceRef="call" targetRef="rule"/>
    <bpmn:sequenceFlow id="f4" sourceRef="rule" targetRef="end"/>
"""
    assert rules(run(bpmn(body), actions={"taktflow.echo"})) == [
        ("unknown-action", ERROR, "svc"),
        ("unknown-process", ERROR, "call"),
        ("unknown-decision", ERROR, "rule"),
    ]
    known = run(bpmn(body), actions={"erp.book"}, processes={"procure"}, decisions={"grade"})
    assert known == []


def test_messages_nothing_sends() -> None:
    extra = '<bpmn:message id="m1" name="machine_done"/>'
    body = """
    <bpmn:startEvent id="start"/>
    <bpmn:receiveTask id="wait" messageRef="m1"/>
    <bpmn:endEvent id="end"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait"/>
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="end"/>
"""
    assert rules(run(bpmn(body, extra))) == [("message-never-sent", WARNING, "wait")]
    assert run(bpmn(body, extra), sent_messages={"machine_done"}) == []


def test_defined_names_finds_processes_and_sent_and_caught_messages() -> None:
    root = etree.parse(str(ROOT / "tests/engine/bpmn/message_routing.bpmn")).getroot()
    names = defined_names(root)
    assert names["processes"]
    assert names["messages_sent"] & names["messages_caught"]


def test_subprocess_is_checked_as_its_own_scope() -> None:
    body = """
    <bpmn:startEvent id="start"/>
    <bpmn:subProcess id="sub">
      <bpmn:startEvent id="s_start"/>
      <bpmn:scriptTask id="s_task"><bpmn:script>x = 1</bpmn:script></bpmn:scriptTask>
      <bpmn:sequenceFlow id="s1" sourceRef="s_start" targetRef="s_task"/>
    </bpmn:subProcess>
    <bpmn:endEvent id="end"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="sub"/>
    <bpmn:sequenceFlow id="f2" sourceRef="sub" targetRef="end"/>
"""
    assert rules(run(bpmn(body))) == [("dead-end", ERROR, "s_task")]
