"""lint.bpmn_checks: flow-graph, reference and expression checks on BPMN files."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from taktflow.lint.bpmn_checks import check_bpmn, defined_names
from taktflow.lint.dmn_checks import decision_ids
from taktflow.lint.findings import ERROR, WARNING, Finding, LintContext

ROOT = Path(__file__).parents[2]
DATA = Path(__file__).parent / "data"

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    id="defs" targetNamespace="http://taktflow.test/lint">
"""


def doc(body: str, head: str = "") -> str:
    """A document with one executable process `p` holding `body`."""
    return f"""{HEAD}{head}
  <bpmn:process id="p" isExecutable="true">
{body}
  </bpmn:process>
</bpmn:definitions>"""


def flows(*pairs: str) -> str:
    """Sequence flows from "a>b" strings, ids f1, f2, ..."""
    out = []
    for n, pair in enumerate(pairs, start=1):
        source, target = pair.split(">")
        out.append(f'<bpmn:sequenceFlow id="f{n}" sourceRef="{source}" targetRef="{target}"/>')
    return "\n".join(out)


def lint(text: str, context: LintContext | None = None) -> list[Finding]:
    root = etree.fromstring(text.encode())
    return check_bpmn("t.bpmn", root, context or LintContext())


def rules(text: str, context: LintContext | None = None) -> list[tuple[str, str, str | None]]:
    return [(f.rule, f.severity, f.element) for f in lint(text, context)]


def only(rule: str, text: str, context: LintContext | None = None) -> list[Finding]:
    return [f for f in lint(text, context) if f.rule == rule]


def full_context() -> LintContext:
    return LintContext(
        forms={"inspection", "rework", "sign_off"},
        roles={"qa", "operator"},
        actions={"erp.post"},
        processes=set(),
        decisions={"grade_decision"},
        sent_messages=set(),
    )


LINE = """<bpmn:startEvent id="s"/><bpmn:task id="a"/><bpmn:endEvent id="e"/>"""


def test_a_clean_file_has_no_findings() -> None:
    root = etree.parse(str(DATA / "clean.bpmn")).getroot()
    assert check_bpmn("clean.bpmn", root, full_context()) == []


def test_a_clean_straight_line_has_no_findings() -> None:
    assert rules(doc(LINE + flows("s>a", "a>e"))) == []


# --- reachability --------------------------------------------------------------------------


def test_unreachable_step_is_a_warning_with_element_and_line() -> None:
    text = doc(LINE + '\n<bpmn:task id="orphan"/>\n' + flows("s>a", "a>e", "orphan>e"))
    [finding] = lint(text)
    assert (finding.rule, finding.severity, finding.element) == ("unreachable", WARNING, "orphan")
    assert finding.line == text.splitlines().index('<bpmn:task id="orphan"/>') + 1
    assert finding.file == "t.bpmn"


def test_an_unreachable_chain_is_reported_once_at_its_entry() -> None:
    body = LINE + '<bpmn:task id="x"/><bpmn:task id="y"/><bpmn:task id="z"/>'
    found = only("unreachable", doc(body + flows("s>a", "a>e", "x>y", "y>z", "z>e")))
    assert [f.element for f in found] == ["x"]
    assert "y, z" in found[0].message


def test_an_unreachable_loop_is_reported_once() -> None:
    body = LINE + '<bpmn:task id="x"/><bpmn:task id="y"/>'
    found = only("unreachable", doc(body + flows("s>a", "a>e", "x>y", "y>x", "y>e")))
    assert [f.element for f in found] == ["x"]


def test_boundary_events_are_reachable_through_their_host() -> None:
    body = (
        LINE
        + """<bpmn:boundaryEvent id="late" attachedToRef="a">
      <bpmn:timerEventDefinition><bpmn:timeDuration>'PT1H'</bpmn:timeDuration>
      </bpmn:timerEventDefinition></bpmn:boundaryEvent>
    <bpmn:task id="escalate"/>"""
    )
    assert rules(doc(body + flows("s>a", "a>e", "late>escalate", "escalate>e"))) == []


def test_boundary_events_of_an_unreachable_host_are_unreachable_too() -> None:
    body = (
        LINE
        + """<bpmn:task id="x"/><bpmn:boundaryEvent id="late" attachedToRef="x">
      <bpmn:timerEventDefinition><bpmn:timeDuration>'PT1H'</bpmn:timeDuration>
      </bpmn:timerEventDefinition></bpmn:boundaryEvent>"""
    )
    found = only("unreachable", doc(body + flows("s>a", "a>e", "x>e", "late>e")))
    assert [f.element for f in found] == ["x"]
    assert "late" in found[0].message


def test_an_event_subprocess_counts_as_reachable() -> None:
    body = (
        LINE
        + """<bpmn:subProcess id="on_error" triggeredByEvent="true">
      <bpmn:startEvent id="err_start"><bpmn:errorEventDefinition/></bpmn:startEvent>
      <bpmn:task id="clean_up"/><bpmn:endEvent id="err_end"/>
      <bpmn:sequenceFlow id="e1" sourceRef="err_start" targetRef="clean_up"/>
      <bpmn:sequenceFlow id="e2" sourceRef="clean_up" targetRef="err_end"/>
    </bpmn:subProcess>"""
    )
    assert rules(doc(body + flows("s>a", "a>e"))) == []


@pytest.mark.parametrize(
    ("body", "element"),
    [
        ('<bpmn:task id="a"/><bpmn:endEvent id="e"/>' + flows("a>e"), "p"),
        (
            '<bpmn:startEvent id="s"/><bpmn:subProcess id="sub"><bpmn:task id="in"/>'
            '<bpmn:endEvent id="sub_end"/><bpmn:sequenceFlow id="k" sourceRef="in" '
            'targetRef="sub_end"/></bpmn:subProcess><bpmn:endEvent id="e"/>'
            + flows("s>sub", "sub>e"),
            "sub",
        ),
    ],
    ids=["process", "subprocess"],
)
def test_a_scope_without_start_event(body: str, element: str) -> None:
    assert rules(doc(body)) == [("no-start", ERROR, element)]


def test_a_subprocess_is_its_own_scope() -> None:
    body = """<bpmn:startEvent id="s"/>
    <bpmn:subProcess id="sub">
      <bpmn:startEvent id="sub_start"/><bpmn:task id="inner"/><bpmn:task id="lost"/>
      <bpmn:endEvent id="sub_end"/>
      <bpmn:sequenceFlow id="k1" sourceRef="sub_start" targetRef="inner"/>
      <bpmn:sequenceFlow id="k2" sourceRef="lost" targetRef="sub_end"/>
    </bpmn:subProcess>
    <bpmn:endEvent id="e"/>""" + flows("s>sub", "sub>e")
    assert rules(doc(body)) == [("dead-end", ERROR, "inner"), ("unreachable", WARNING, "lost")]


# --- paths that end --------------------------------------------------------------------------


def test_a_step_without_outgoing_flow_is_a_dead_end() -> None:
    found = lint(doc(LINE + flows("s>a")))
    assert [(f.rule, f.severity, f.element) for f in found] == [
        ("dead-end", ERROR, "a"),
        ("unreachable", WARNING, "e"),
    ]
    assert "end the path with an end event" in found[0].message


def test_steps_leading_only_into_a_dead_end_are_not_reported_again() -> None:
    body = '<bpmn:startEvent id="s"/><bpmn:task id="a"/><bpmn:task id="b"/>'
    assert rules(doc(body + flows("s>a", "a>b"))) == [("dead-end", ERROR, "b")]


def test_a_loop_without_exit_is_reported_once_naming_its_steps() -> None:
    body = """<bpmn:startEvent id="s"/><bpmn:task id="into"/><bpmn:task id="a"/>
    <bpmn:task id="b"/><bpmn:task id="c"/><bpmn:endEvent id="e"/>"""
    found = lint(doc(body + flows("s>into", "into>a", "a>b", "b>c", "c>a")))
    never = [f for f in found if f.rule == "never-ends"]
    assert [(f.severity, f.element) for f in never] == [(ERROR, "a")]
    assert "b, c" in never[0].message
    # `into` leads only into the loop: explained by it, not reported on its own.
    assert [f.rule for f in found if f.element == "into"] == []


def test_two_separate_loops_are_reported_separately() -> None:
    body = """<bpmn:startEvent id="s"/><bpmn:parallelGateway id="fork"/>
    <bpmn:task id="a1"/><bpmn:task id="a2"/><bpmn:task id="b1"/><bpmn:task id="b2"/>"""
    text = doc(body + flows("s>fork", "fork>a1", "fork>b1", "a1>a2", "a2>a1", "b1>b2", "b2>b1"))
    assert [f.element for f in only("never-ends", text)] == ["a1", "b1"]


def test_a_loop_with_a_gateway_exit_can_end() -> None:
    body = """<bpmn:startEvent id="s"/><bpmn:task id="a"/>
    <bpmn:exclusiveGateway id="again" default="f3"/><bpmn:endEvent id="e"/>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="a"/>
    <bpmn:sequenceFlow id="f2" sourceRef="a" targetRef="again"/>
    <bpmn:sequenceFlow id="f3" sourceRef="again" targetRef="a"/>
    <bpmn:sequenceFlow id="f4" sourceRef="again" targetRef="e">
      <bpmn:conditionExpression>done</bpmn:conditionExpression></bpmn:sequenceFlow>"""
    assert rules(doc(body)) == []


def test_a_loop_left_through_a_boundary_event_can_end() -> None:
    body = """<bpmn:startEvent id="s"/><bpmn:task id="a"/><bpmn:task id="b"/>
    <bpmn:boundaryEvent id="stop" attachedToRef="b">
      <bpmn:timerEventDefinition><bpmn:timeDuration>'PT8H'</bpmn:timeDuration>
      </bpmn:timerEventDefinition></bpmn:boundaryEvent>
    <bpmn:endEvent id="e"/>"""
    assert rules(doc(body + flows("s>a", "a>b", "b>a", "stop>e"))) == []


# --- gateways --------------------------------------------------------------------------------


def gateway(kind: str, default: str | None, conditions: dict[str, str | None]) -> str:
    """A gateway `g` with one flow per entry (flow id -> condition text, None: no condition)."""
    attr = f' default="{default}"' if default else ""
    body = [f'<bpmn:startEvent id="s"/><bpmn:{kind} id="g"{attr}/><bpmn:endEvent id="e"/>']
    body.append('<bpmn:sequenceFlow id="in" sourceRef="s" targetRef="g"/>')
    for flow, condition in conditions.items():
        expression = (
            f"<bpmn:conditionExpression>{condition}</bpmn:conditionExpression>"
            if condition is not None
            else ""
        )
        body.append(
            f'<bpmn:sequenceFlow id="{flow}" sourceRef="g" targetRef="e">{expression}'
            "</bpmn:sequenceFlow>"
        )
    return doc("\n".join(body))


@pytest.mark.parametrize("kind", ["exclusiveGateway", "inclusiveGateway"])
@pytest.mark.parametrize(
    ("default", "conditions", "expected"),
    [
        ("b", {"a": "x > 1", "b": None}, []),
        ("b", {"a": "x > 1", "b": "x &lt;= 1"}, []),
        (None, {"a": None}, []),  # one flow: SpiffWorkflow takes it as the default
        (None, {"a": "x > 1", "b": "x &lt;= 1"}, [("gateway-no-default", WARNING, "g")]),
        ("gone", {"a": "x > 1", "b": "x &lt;= 1"}, [("gateway-no-default", WARNING, "g")]),
        (None, {"a": "x > 1", "b": None}, [("condition-missing", ERROR, "b")]),
        ("c", {"a": None, "b": "x", "c": None}, [("condition-missing", ERROR, "a")]),
        ("b", {"a": "", "b": None}, [("condition-missing", ERROR, "a")]),
        ("b", {"a": "   ", "b": None}, [("condition-missing", ERROR, "a")]),
    ],
)
def test_gateway_conditions_and_default(
    kind: str, default: str | None, conditions: dict, expected: list
) -> None:
    assert rules(gateway(kind, default, conditions)) == expected


def test_gateway_messages_say_what_to_do() -> None:
    [no_default] = lint(gateway("exclusiveGateway", None, {"a": "x", "b": "not x"}))
    assert "when no condition holds the instance stops with an error" in no_default.message
    [dangling] = lint(gateway("exclusiveGateway", "gone", {"a": "x", "b": "not x"}))
    assert "'gone' is not one of its outgoing flows" in dangling.message


def test_parallel_gateways_need_no_conditions() -> None:
    assert rules(gateway("parallelGateway", None, {"a": None, "b": None})) == []


# --- forms, lanes, roles ----------------------------------------------------------------------


def user_task(task_id: str = "t", form: str | None = None, kind: str = "userTask") -> str:
    if form is None:
        return f'<bpmn:{kind} id="{task_id}"/>'
    return f"""<bpmn:{kind} id="{task_id}"><bpmn:extensionElements><spiffworkflow:properties>
      <spiffworkflow:property name="formName" value="{form}"/>
    </spiffworkflow:properties></bpmn:extensionElements></bpmn:{kind}>"""


def with_task(task: str, lanes: str = "") -> str:
    return doc(
        lanes + '<bpmn:startEvent id="s"/>' + task + '<bpmn:endEvent id="e"/>' + flows("s>t", "t>e")
    )


LANES = """<bpmn:laneSet id="ls">
  <bpmn:lane id="lane_qa" name="qa"><bpmn:flowNodeRef>t</bpmn:flowNodeRef></bpmn:lane>
  <bpmn:lane id="lane_system" name="system"><bpmn:flowNodeRef>s</bpmn:flowNodeRef>
    <bpmn:flowNodeRef>e</bpmn:flowNodeRef></bpmn:lane>
</bpmn:laneSet>"""


@pytest.mark.parametrize(
    ("form", "forms", "expected"),
    [
        ("inspection", {"inspection"}, []),
        ("inspection", None, []),  # forms unknown: not checked
        (None, {"inspection"}, [("user-task-no-form", WARNING, "t")]),
        ("", {"inspection"}, [("user-task-no-form", WARNING, "t")]),
        ("  ", None, [("user-task-no-form", WARNING, "t")]),
        ("inspectoin", {"inspection"}, [("unknown-form", ERROR, "t")]),
        (" inspection", {"inspection"}, [("unknown-form", ERROR, "t")]),  # not stripped
    ],
)
def test_forms(form: str | None, forms: set[str] | None, expected: list) -> None:
    assert rules(with_task(user_task(form=form), LANES), LintContext(forms=forms)) == expected


def test_unknown_form_lists_at_most_ten_known_forms_sorted() -> None:
    forms = {f"form_{n:02}" for n in range(12)}
    [finding] = lint(with_task(user_task(form="nope"), LANES), LintContext(forms=forms))
    assert "form_00, form_01" in finding.message
    assert "form_09, ... (12 in all)" in finding.message
    assert "form_10" not in finding.message


def test_manual_tasks_need_no_form() -> None:
    assert rules(with_task(user_task(kind="manualTask"), LANES)) == []


def test_a_user_task_in_a_process_without_lanes() -> None:
    [finding] = only("user-task-no-lane", with_task(user_task(form="f")))
    assert finding.severity == WARNING
    assert finding.message == "the process has no lanes: any user may do this task"


def test_a_manual_task_in_no_lane_of_a_process_with_lanes() -> None:
    lanes = LANES.replace("<bpmn:flowNodeRef>t</bpmn:flowNodeRef>", "")
    [finding] = only("user-task-no-lane", with_task(user_task(kind="manualTask"), lanes))
    assert "has lanes but this task is in none" in finding.message


def test_a_lane_reference_with_spaces_does_not_count() -> None:
    lanes = LANES.replace(">t<", "> t <")
    [finding] = only("user-task-no-lane", with_task(user_task(form="f"), lanes))
    assert "spaces around the id" in finding.message


def test_tasks_in_a_subprocess_take_the_subprocess_lane() -> None:
    lanes = LANES.replace(">t<", ">sub<")
    body = (
        lanes
        + '<bpmn:startEvent id="s"/><bpmn:subProcess id="sub"><bpmn:startEvent id="ss"/>'
        + user_task("t", form="f")
        + '<bpmn:endEvent id="se"/><bpmn:sequenceFlow id="k1" sourceRef="ss" targetRef="t"/>'
        + '<bpmn:sequenceFlow id="k2" sourceRef="t" targetRef="se"/></bpmn:subProcess>'
        + '<bpmn:endEvent id="e"/>'
        + flows("s>sub", "sub>e")
    )
    assert rules(doc(body), LintContext(roles={"qa"})) == []
    assert rules(doc(body), LintContext(roles={"operator"})) == [("unknown-role", ERROR, "lane_qa")]


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ({"qa"}, []),
        (None, []),  # roles unknown: not checked
        ({"operator"}, [("unknown-role", ERROR, "lane_qa")]),  # lane_system holds no people
    ],
)
def test_lanes_holding_people_must_be_roles(roles: set[str] | None, expected: list) -> None:
    assert rules(with_task(user_task(form="f"), LANES), LintContext(roles=roles)) == expected


def test_unknown_role_message_names_the_lane_and_the_roles() -> None:
    [finding] = lint(with_task(user_task(form="f"), LANES), LintContext(roles={"operator"}))
    assert "'qa'" in finding.message and "roles: operator" in finding.message


# --- references --------------------------------------------------------------------------------


def service(operator: str) -> str:
    return with_task(
        f"""<bpmn:serviceTask id="t"><bpmn:extensionElements>{operator}
        </bpmn:extensionElements></bpmn:serviceTask>"""
    )


@pytest.mark.parametrize(
    ("operator", "actions", "expected"),
    [
        ('<spiffworkflow:serviceTaskOperator id="erp.post"/>', {"erp.post"}, []),
        ('<spiffworkflow:serviceTaskOperator id="erp.nope"/>', None, []),  # not checked
        ('<spiffworkflow:serviceTaskOperator id="erp.nope"/>', {"erp.post"}, ["unknown-action"]),
        ("", {"erp.post"}, ["unknown-action"]),
    ],
)
def test_service_actions(operator: str, actions: set[str] | None, expected: list) -> None:
    found = lint(service(operator), LintContext(actions=actions))
    assert [f.rule for f in found] == expected
    assert all(f.severity == ERROR and f.element == "t" for f in found)


@pytest.mark.parametrize(
    ("attribute", "processes", "expected"),
    [
        ('calledElement="packing"', {"packing"}, []),
        ('calledElement="p"', set(), []),  # a process of the same file
        ('calledElement="packnig"', {"packing"}, ["unknown-process"]),
        ("", {"packing"}, ["unknown-process"]),
    ],
)
def test_called_processes(attribute: str, processes: set[str], expected: list) -> None:
    text = with_task(f'<bpmn:callActivity id="t" {attribute}/>')
    found = lint(text, LintContext(processes=processes))
    assert [(f.rule, f.severity, f.element) for f in found] == [(r, ERROR, "t") for r in expected]


def rule_task(decision: str | None) -> str:
    called = (
        f"<spiffworkflow:calledDecisionId>{decision}</spiffworkflow:calledDecisionId>"
        if decision is not None
        else ""
    )
    return with_task(
        f"""<bpmn:businessRuleTask id="t"><bpmn:extensionElements>{called}
        </bpmn:extensionElements></bpmn:businessRuleTask>"""
    )


@pytest.mark.parametrize(
    ("decision", "expected", "says"),
    [
        ("grade", [], ""),
        ("grades", ["unknown-decision"], "known: grade"),
        (" grade ", ["unknown-decision"], "remove the spaces"),
        (None, ["unknown-decision"], "without spiffworkflow:calledDecisionId"),
    ],
)
def test_called_decisions(decision: str | None, expected: list, says: str) -> None:
    found = lint(rule_task(decision), LintContext(decisions={"grade"}))
    assert [(f.rule, f.severity) for f in found] == [(r, ERROR) for r in expected]
    assert all(says in f.message for f in found)


MESSAGE = '<bpmn:message id="Msg_go" name="go"/>'


def catching(kind: str) -> str:
    definition = '<bpmn:messageEventDefinition messageRef="Msg_go"/>'
    if kind == "startEvent":
        return doc(
            f'<bpmn:startEvent id="t">{definition}</bpmn:startEvent><bpmn:endEvent id="e"/>'
            + flows("t>e"),
            MESSAGE,
        )
    if kind == "boundaryEvent":
        return doc(
            LINE
            + f'<bpmn:boundaryEvent id="t" attachedToRef="a">{definition}</bpmn:boundaryEvent>'
            + flows("s>a", "a>e", "t>e"),
            MESSAGE,
        )
    return doc(
        f'<bpmn:startEvent id="s"/><bpmn:{kind} id="t">{definition}</bpmn:{kind}>'
        '<bpmn:endEvent id="e"/>' + flows("s>t", "t>e"),
        MESSAGE,
    )


@pytest.mark.parametrize(
    "kind", ["intermediateCatchEvent", "boundaryEvent", "startEvent", "receiveTask"]
)
def test_messages_nothing_sends(kind: str) -> None:
    [finding] = lint(catching(kind))
    assert (finding.rule, finding.severity, finding.element) == (
        "message-never-sent",
        WARNING,
        "t",
    )
    assert finding.message == (
        "no workflow sends message 'go' (it must come from a connector or the API)"
    )
    assert lint(catching(kind), LintContext(sent_messages={"go"})) == []


def test_a_message_thrown_in_the_same_file_counts_as_sent() -> None:
    text = f"""{HEAD}{MESSAGE}
  <bpmn:process id="sender" isExecutable="true">
    <bpmn:startEvent id="s2"/><bpmn:endEvent id="e2">
      <bpmn:messageEventDefinition messageRef="Msg_go"/></bpmn:endEvent>
    <bpmn:sequenceFlow id="g1" sourceRef="s2" targetRef="e2"/>
  </bpmn:process>
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="s"/><bpmn:receiveTask id="t" messageRef="Msg_go"/>
    <bpmn:endEvent id="e"/>{flows("s>t", "t>e")}
  </bpmn:process>
</bpmn:definitions>"""
    assert rules(text) == []


# --- timers -----------------------------------------------------------------------------------


def timer(text: str, part: str = "timeDuration") -> str:
    return doc(
        f"""<bpmn:startEvent id="s"/><bpmn:intermediateCatchEvent id="wait">
      <bpmn:timerEventDefinition><bpmn:{part}>{text}</bpmn:{part}></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent><bpmn:endEvent id="e"/>"""
        + flows("s>wait", "wait>e")
    )


@pytest.mark.parametrize(
    ("part", "text"),
    [
        ("timeDuration", "PT2H"),
        ("timeDuration", " P1D "),
        ("timeDuration", "P1Y2M3DT4H5M6.5S"),
        ("timeDuration", "P2W"),
        ("timeCycle", "R3/PT10M"),
        ("timeCycle", "R/P1D"),
        ("timeCycle", "R5/2026-03-01T06:00:00Z/PT1H"),
        ("timeDate", "2026-03-01T06:00:00Z"),
        ("timeDate", "2026-03-01T06:00:00+01:00"),
        ("timeDate", "2026-12-11"),  # valid Python: the int 2003
    ],
)
def test_bare_iso_timers_are_errors(part: str, text: str) -> None:
    [finding] = lint(timer(text, part))
    assert (finding.rule, finding.severity, finding.element) == ("timer-unquoted", ERROR, "wait")
    literal = text.strip()
    assert f"timer '{literal}' is evaluated as an expression" in finding.message
    assert f"write \"'{literal}'\" (in quotes)" in finding.message


@pytest.mark.parametrize(
    "text",
    ["'PT2H'", '"PT2H"', "sla", "due_date", "'PT' + str(hours) + 'H'", '"2026-03-01T06:00:00Z"'],
)
def test_quoted_timers_and_expressions_are_fine(text: str) -> None:
    assert rules(timer(text)) == []


def test_an_empty_timer_is_an_error() -> None:
    assert rules(timer("")) == [("timer-empty", ERROR, "wait")]


# --- names and odd input ------------------------------------------------------------------------


def test_defined_names() -> None:
    root = etree.parse(str(DATA / "clean.bpmn")).getroot()
    assert defined_names(root) == {
        "processes": {"clean", "packing"},
        "messages_sent": {"release", "inspection_done"},
        "messages_caught": {"release"},
    }


def test_defined_names_skips_processes_that_are_not_executable() -> None:
    text = f"""{HEAD}{MESSAGE}
  <bpmn:process id="partner" isExecutable="false">
    <bpmn:startEvent id="s"/><bpmn:endEvent id="e">
      <bpmn:messageEventDefinition messageRef="Msg_go"/></bpmn:endEvent>
  </bpmn:process>
  <bpmn:process id="odd" isExecutable="True"/>
  <bpmn:process id="p">
    <bpmn:startEvent id="s2"/><bpmn:intermediateThrowEvent id="named" name="ping">
      <bpmn:messageEventDefinition/></bpmn:intermediateThrowEvent>
    <bpmn:sendTask id="send" messageRef="Msg_go"/>
  </bpmn:process>
</bpmn:definitions>"""
    # SpiffWorkflow runs only isExecutable="true" (or absent) and names a message event
    # without messageRef after the event.
    assert defined_names(etree.fromstring(text.encode())) == {
        "processes": {"p"},
        "messages_sent": {"go", "ping"},
        "messages_caught": set(),
    }


@pytest.mark.parametrize(
    "body",
    [
        '<bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f" sourceRef="s"/>',
        '<bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f" sourceRef="s" targetRef="ghost"/>',
        '<bpmn:startEvent/><bpmn:task/><bpmn:sequenceFlow id="f"/>',
        '<bpmn:startEvent id="s"/><bpmn:boundaryEvent id="b"/><bpmn:endEvent id="e"/>',
        '<bpmn:startEvent id="s"/><bpmn:exclusiveGateway id="g" default="x"/>'
        '<bpmn:sequenceFlow sourceRef="g" targetRef="s"/><bpmn:sequenceFlow sourceRef="g"/>',
        '<bpmn:startEvent id="s"/><bpmn:businessRuleTask id="b"><bpmn:extensionElements>'
        "<spiffworkflow:calledDecisionId/></bpmn:extensionElements></bpmn:businessRuleTask>"
        '<bpmn:intermediateCatchEvent id="c"><bpmn:timerEventDefinition/>'
        '<bpmn:messageEventDefinition messageRef="nowhere"/></bpmn:intermediateCatchEvent>'
        "<bpmn:laneSet><bpmn:lane><bpmn:flowNodeRef/></bpmn:lane></bpmn:laneSet>"
        '<bpmn:userTask id="u"><bpmn:extensionElements><spiffworkflow:properties>'
        '<spiffworkflow:property name="formName"/></spiffworkflow:properties>'
        "</bpmn:extensionElements></bpmn:userTask><!-- a comment -->",
    ],
)
def test_odd_input_is_reported_or_skipped_never_raised(body: str) -> None:
    context = LintContext(forms=set(), roles=set(), actions=set())
    found = lint(doc(body), context)
    assert all(isinstance(f, Finding) for f in found)
    assert [f.line or 0 for f in found] == sorted(f.line or 0 for f in found)


def test_dangling_references_are_errors() -> None:
    body = LINE + '<bpmn:boundaryEvent id="b" attachedToRef="ghost"/>'
    found = rules(doc(body + flows("s>a", "a>e", "a>nowhere")))
    assert ("dangling-ref", ERROR, "f3") in found
    assert ("dangling-ref", ERROR, "b") in found


def test_findings_are_sorted_by_line() -> None:
    body = (
        '<bpmn:startEvent id="s"/>\n<bpmn:task id="a"/>\n<bpmn:task id="orphan"/>\n'
        + user_task("u", form="nope")
        + "\n"
        + flows("s>a", "a>u")
    )
    found = lint(doc(body), LintContext(forms={"f"}))
    assert [f.line for f in found] == sorted(f.line for f in found)  # type: ignore[type-var]
    assert {f.rule for f in found} >= {"unreachable", "dead-end", "unknown-form"}


# --- the repository's own workflows ------------------------------------------------------------

#: Errors the design checks report in the repository's BPMN files, each with why it is there.
#: None today: the one file broken on purpose (service_task_unknown_action.bpmn) only calls an
#: unregistered action, which is not checked while actions=None.
KNOWN_ERRORS: dict[tuple[str, str, str | None], str] = {}


def repository_files() -> list[Path]:
    return sorted(
        p
        for folder in (ROOT / "tests/engine/bpmn", ROOT / "workflows")
        for p in folder.glob("*.bpmn")
    )


def test_repository_workflows_have_no_design_errors() -> None:
    files = repository_files()
    assert len(files) > 20
    roots = {p: etree.parse(str(p)).getroot() for p in files}
    context = LintContext(forms=None, roles=None, actions=None)
    for root in roots.values():
        names = defined_names(root)
        context.processes |= names["processes"]
        context.sent_messages |= names["messages_sent"]
    for dmn in (ROOT / "tests/engine/bpmn").glob("*.dmn"):
        context.decisions |= decision_ids(etree.parse(str(dmn)).getroot())
    errors = {
        (p.name, f.rule, f.element): f
        for p, root in roots.items()
        for f in check_bpmn(p.name, root, context)
        if f.severity == ERROR
    }
    assert {k: str(v) for k, v in errors.items() if k not in KNOWN_ERRORS} == {}
    assert set(KNOWN_ERRORS) <= set(errors), "a known error is gone: update KNOWN_ERRORS"


def test_the_file_broken_on_purpose_is_caught_once_actions_are_known() -> None:
    broken = ROOT / "tests/engine/bpmn/service_task_unknown_action.bpmn"
    good = ROOT / "tests/engine/bpmn/service_task.bpmn"
    context = LintContext(actions={"test.scale"})
    assert rules(broken.read_text(), context) == [("unknown-action", ERROR, "call_missing")]
    assert [f for f in lint(good.read_text(), context) if f.severity == ERROR] == []
