"""Design checks on BPMN: the flow graph (reachability, paths that never end, gateways) and
references (forms, roles, actions, processes, decisions, messages, timers).

These find what deploys fine but goes wrong later: an instance stuck forever, a branch
nobody can take, a task nobody may claim, a message nobody sends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from taktflow.lint.findings import ERROR, WARNING, Finding, LintContext

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
NS = {"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS}

FLOW_NODES = {
    "startEvent",
    "endEvent",
    "intermediateCatchEvent",
    "intermediateThrowEvent",
    "boundaryEvent",
    "task",
    "userTask",
    "manualTask",
    "serviceTask",
    "scriptTask",
    "businessRuleTask",
    "sendTask",
    "receiveTask",
    "callActivity",
    "subProcess",
    "transaction",
    "exclusiveGateway",
    "inclusiveGateway",
    "parallelGateway",
    "eventBasedGateway",
    "complexGateway",
}
HUMAN = {"userTask", "manualTask"}
# ISO 8601 literals SpiffWorkflow would read as Python (PT2H is a NameError at run time).
_BARE_TIMER = re.compile(
    r"^(R\d*/)?(P[0-9TWYMDHS.]+|\d{4}-\d{2}-\d{2}(T[0-9:.]+)?(Z|[+-]\d{2}:?\d{2})?)$"
)


def _local(el: Any) -> str:
    tag = el.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(scope: Any) -> Iterator[Any]:
    for el in scope:
        if isinstance(el.tag, str) and el.tag.startswith(f"{{{BPMN_NS}}}"):
            yield el


def defined_names(root: Any) -> dict[str, set[str]]:
    """Executable process ids, and names of messages thrown and caught, in one BPMN file."""
    messages = {m.get("id"): m.get("name") for m in root.iterfind(".//bpmn:message", NS)}
    processes = {
        p.get("id")
        for p in root.iterfind(".//bpmn:process", NS)
        if p.get("isExecutable", "true").lower() != "false"
    }
    sent: set[str] = set()
    caught: set[str] = set()
    for el in root.iter():
        kind = _local(el)
        if kind in (
            "intermediateThrowEvent",
            "endEvent",
            "sendTask",
            "receiveTask",
            "intermediateCatchEvent",
            "startEvent",
            "boundaryEvent",
        ):
            ref = el.get("messageRef")
            definition = el.find("bpmn:messageEventDefinition", NS)
            if definition is not None:
                ref = definition.get("messageRef") or ref
            if ref is None and definition is None:
                continue
            name = messages.get(ref, ref)
            if name is None:
                continue
            if kind in ("intermediateThrowEvent", "endEvent", "sendTask"):
                sent.add(name)
            else:
                caught.add(name)
    return {"processes": processes, "messages_sent": sent, "messages_caught": caught}


def check_bpmn(file: str, root: Any, context: LintContext) -> list[Finding]:
    findings: list[Finding] = []

    def add(severity: str, rule: str, el: Any, message: str) -> None:
        findings.append(
            Finding(file, severity, rule, message, element=el.get("id"), line=el.sourceline)
        )

    messages = {m.get("id"): m.get("name") for m in root.iterfind(".//bpmn:message", NS)}
    lanes: dict[str, Any] = {}
    for process in root.iterfind(".//bpmn:process", NS):
        if process.get("isExecutable", "true").lower() == "false":
            continue
        process_lanes = process.findall(".//bpmn:lane", NS)
        for lane in process_lanes:
            for ref in lane.iterfind("bpmn:flowNodeRef", NS):
                if ref.text:
                    lanes[ref.text.strip()] = lane
        _check_scope(process, add)
        _check_lanes(process, process_lanes, lanes, context, add)
    for el in root.iter():
        kind = _local(el)
        if kind == "userTask":
            _check_form(el, context, add)
        elif kind == "serviceTask" and context.actions is not None:
            operator = el.find(".//spiffworkflow:serviceTaskOperator", NS)
            name = operator.get("id") if operator is not None else None
            if name and name not in context.actions:
                add(
                    ERROR,
                    "unknown-action",
                    el,
                    f"calls action {name!r}, which is not registered "
                    f"(registered: {_listing(context.actions)})",
                )
        elif kind == "callActivity":
            called = el.get("calledElement")
            if called and called not in context.processes:
                add(
                    ERROR,
                    "unknown-process",
                    el,
                    f"calls process {called!r}, which is in no linted file and not in the "
                    f"workflows folder (known: {_listing(context.processes)})",
                )
        elif kind == "businessRuleTask":
            decision = el.findtext(".//spiffworkflow:calledDecisionId", namespaces=NS)
            decision = (decision or "").strip()
            if decision and decision not in context.decisions:
                add(
                    ERROR,
                    "unknown-decision",
                    el,
                    f"uses decision {decision!r}, which no DMN file defines "
                    f"(known: {_listing(context.decisions)})",
                )
        elif kind == "timerEventDefinition":
            owner = el.getparent()
            for part in el:
                text = (part.text or "").strip()
                if _local(part) in ("timeDuration", "timeDate", "timeCycle") and _BARE_TIMER.match(
                    text
                ):
                    add(
                        ERROR,
                        "timer-unquoted",
                        owner,
                        f"timer {text!r} is evaluated as an expression and fails when reached: "
                        f"write \"'{text}'\" (in quotes)",
                    )
        if kind in ("intermediateCatchEvent", "boundaryEvent", "startEvent", "receiveTask"):
            ref = el.get("messageRef")
            definition = el.find("bpmn:messageEventDefinition", NS)
            if definition is not None:
                ref = definition.get("messageRef") or ref
            name = messages.get(ref, ref) if ref else None
            if name and name not in context.sent_messages and kind != "startEvent":
                add(
                    WARNING,
                    "message-never-sent",
                    el,
                    f"waits for message {name!r}, which no workflow sends (it must come from "
                    "a connector, the API or `taktflow message`)",
                )
    return sorted(findings, key=lambda f: (f.line or 0, f.rule))


def _listing(names: set[str]) -> str:
    shown = sorted(names)
    if not shown:
        return "none"
    return ", ".join(shown[:10]) + (f", ... ({len(shown)} in all)" if len(shown) > 10 else "")


def _check_form(el: Any, context: LintContext, add: Any) -> None:
    form = None
    for prop in el.iterfind(".//spiffworkflow:property", NS):
        if prop.get("name") == "formName":
            form = (prop.get("value") or "").strip() or None
    if form is None:
        add(
            WARNING,
            "user-task-no-form",
            el,
            "user task without a form (formName): the operator sees only the instructions",
        )
    elif context.forms is not None and form not in context.forms:
        add(
            ERROR,
            "unknown-form",
            el,
            f"form {form!r} does not exist (forms: {_listing(context.forms)})",
        )


def _check_lanes(
    process: Any, process_lanes: list[Any], lanes: dict[str, Any], context: LintContext, add: Any
) -> None:
    humans = [el for el in process.iter() if _local(el) in HUMAN]
    for task in humans:
        if not process_lanes:
            add(
                WARNING,
                "user-task-no-lane",
                task,
                "the process has no lanes: any user may do this task",
            )
        elif task.get("id") not in lanes:
            add(WARNING, "user-task-no-lane", task, "this task is in no lane: any user may do it")
    if context.roles is None:
        return
    holders = {task.get("id") for task in humans}
    for lane in process_lanes:
        refs = {(r.text or "").strip() for r in lane.iterfind("bpmn:flowNodeRef", NS)}
        role = (lane.get("name") or "").strip()
        if refs & holders and role not in context.roles:
            add(
                ERROR,
                "unknown-role",
                lane,
                f"lane {role!r} holds user tasks but is not a role (roles: "
                f"{_listing(context.roles)}); name the lane after the role that does them",
            )


def _check_scope(scope: Any, add: Any) -> None:
    """Reachability and ending within one process or subprocess; recurses into subprocesses."""
    nodes = {el.get("id"): el for el in _children(scope) if _local(el) in FLOW_NODES}
    outgoing: dict[str, list[str]] = {n: [] for n in nodes}
    incoming: dict[str, list[str]] = {n: [] for n in nodes}
    flows = [el for el in _children(scope) if _local(el) == "sequenceFlow"]
    for flow in flows:
        source, target = flow.get("sourceRef"), flow.get("targetRef")
        if source in nodes and target in nodes:
            outgoing[source].append(target)
            incoming[target].append(source)
    boundaries: dict[str, list[str]] = {}
    for node_id, el in nodes.items():
        if _local(el) == "boundaryEvent" and el.get("attachedToRef") in nodes:
            boundaries.setdefault(el.get("attachedToRef"), []).append(node_id)

    starts = [
        n
        for n, el in nodes.items()
        if _local(el) == "startEvent"
        or (_local(el) == "subProcess" and el.get("triggeredByEvent") == "true")
    ]
    if not starts:
        if nodes:
            add(ERROR, "no-start", scope, "has no start event: nothing in it can run")
    else:
        reached: set[str] = set()
        todo = list(starts)
        while todo:
            node = todo.pop()
            if node in reached:
                continue
            reached.add(node)
            todo.extend(outgoing[node])
            todo.extend(boundaries.get(node, []))
        for node_id, el in nodes.items():
            if node_id not in reached and _local(el) != "startEvent":
                add(
                    WARNING,
                    "unreachable",
                    el,
                    "can never be reached: no path from a start event leads here",
                )

        # Which nodes have a way to an end event (or end their path themselves).
        can_end: set[str] = set()
        todo = [n for n, el in nodes.items() if _local(el) == "endEvent"]
        while todo:
            node = todo.pop()
            if node in can_end:
                continue
            can_end.add(node)
            todo.extend(incoming[node])
            if _local(nodes[node]) == "boundaryEvent":
                todo.append(nodes[node].get("attachedToRef"))
        dead_ends = [
            n for n in reached - can_end if not outgoing[n] and _local(nodes[n]) != "endEvent"
        ]
        for node_id in sorted(dead_ends, key=lambda n: nodes[n].sourceline or 0):
            add(
                ERROR,
                "dead-end",
                nodes[node_id],
                "has no outgoing flow: the path stops here without an end event, so the "
                "instance never completes; connect it or end it with an end event",
            )
        # Nodes whose paths run into a dead end are explained by it; the rest loop forever.
        explained: set[str] = set()
        todo = list(dead_ends)
        while todo:
            node = todo.pop()
            if node not in explained:
                explained.add(node)
                todo.extend(incoming[node])
        stuck = [n for n in reached - can_end - explained if outgoing[n]]
        if stuck:
            first = min(stuck, key=lambda n: nodes[n].sourceline or 0)
            others = sorted(set(stuck) - {first})
            more = f" (also: {', '.join(others[:8])})" if others else ""
            add(
                ERROR,
                "never-ends",
                nodes[first],
                f"no path from here reaches an end event: the flow loops forever{more}",
            )

    for node_id, el in nodes.items():
        kind = _local(el)
        if kind in ("exclusiveGateway", "inclusiveGateway") and len(outgoing[node_id]) > 1:
            default = el.get("default")
            gate_flows = [f for f in flows if f.get("sourceRef") == node_id]
            for flow in gate_flows:
                if flow.get("id") != default and flow.find("bpmn:conditionExpression", NS) is None:
                    add(
                        ERROR,
                        "condition-missing",
                        flow,
                        f"flow from gateway {node_id!r} has no condition and is not the "
                        "default: mark it as the default flow or give it a condition",
                    )
            if default is None:
                add(
                    WARNING,
                    "gateway-no-default",
                    el,
                    "no default flow: when no condition holds the instance stops with an "
                    "error; add a default flow (otherwise)",
                )
        if kind in ("subProcess", "transaction"):
            _check_scope(el, add)
