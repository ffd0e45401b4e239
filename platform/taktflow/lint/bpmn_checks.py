"""Design checks on BPMN files: what deploys fine but goes wrong when an instance runs.

The flow graph of every executable process and of each embedded subprocess (its own scope):
steps no path reaches, paths that stop without an end event, loops without an exit, exclusive
and inclusive gateways that can run out of conditions. Then references and expressions:
forms, lanes and roles, service actions, called processes and decisions, messages nothing
sends, timers written as bare ISO 8601 literals.

Each check follows what SpiffWorkflow 3.2.0 does with the XML (its parsers, and the team's
spiffworkflow.md notes), not what the BPMN standard says, where the two differ:
ids in `flowNodeRef`, `calledDecisionId` and `formName` are compared without stripping
spaces; tasks inside an embedded subprocess take the subprocess's lane; a message event
without `messageRef` is named after the event; `isExecutable` must be exactly "true".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from taktflow.lint.findings import ERROR, WARNING, Finding, LintContext

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
NS = {"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS}
_B = f"{{{BPMN_NS}}}"
_S = f"{{{SPIFF_NS}}}"

FLOW_NODES = frozenset(
    {
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
        "adHocSubProcess",
        "exclusiveGateway",
        "inclusiveGateway",
        "parallelGateway",
        "eventBasedGateway",
        "complexGateway",
    }
)
#: Scopes with their own start and end events, checked like a process.
FLOW_SCOPES = frozenset({"subProcess", "transaction"})
#: Steps in an ad hoc subprocess run in any order, so it has no flow graph to check.
ALL_SCOPES = FLOW_SCOPES | {"adHocSubProcess"}
HUMAN = frozenset({"userTask", "manualTask"})
CONDITIONAL_GATEWAYS = frozenset({"exclusiveGateway", "inclusiveGateway"})
MESSAGE_CATCHERS = frozenset(
    {"intermediateCatchEvent", "boundaryEvent", "startEvent", "receiveTask"}
)
MESSAGE_THROWERS = frozenset({"intermediateThrowEvent", "endEvent", "sendTask"})
#: The order in which SpiffWorkflow looks for the timer's expression (the first one wins).
TIMER_PARTS = ("timeDate", "timeDuration", "timeCycle")

# An ISO 8601 duration, date-time, repetition or interval written without quotes. SpiffWorkflow
# evaluates timer text as Python: PT2H is a NameError, 2026-12-11 is the int 2003.
_DURATION = r"P(?=\d|T\d)(?:\d+(?:[.,]\d+)?[YMWD])*(?:T(?:\d+(?:[.,]\d+)?[HMS])+)?"
_DATETIME = (
    r"\d{4}-\d{2}(?:-\d{2}(?:T\d{2}(?::\d{2}(?::\d{2}(?:[.,]\d+)?)?)?"
    r"(?:Z|[+-]\d{2}(?::?\d{2})?)?)?)?"
)
_ISO_PART = rf"(?:{_DURATION}|{_DATETIME})"
_BARE_ISO = re.compile(rf"(?:R\d*/)?{_ISO_PART}(?:/{_ISO_PART})?")

Add = Callable[[str, str, Any, str], None]


def _local(el: Any) -> str:
    """Local name of a BPMN element; "" for comments and other namespaces."""
    tag = el.tag
    if isinstance(tag, str) and tag.startswith(_B):
        return tag[len(_B) :]
    return ""


def _root(root: Any) -> Any:
    return root.getroot() if hasattr(root, "getroot") else root


def _executable_processes(root: Any) -> Iterator[Any]:
    # SpiffWorkflow compares the attribute with "true" exactly: "True" or "1" is not executable.
    for process in root.iter(f"{_B}process"):
        if process.get("isExecutable", "true") == "true":
            yield process


def _extensions(el: Any, name: str) -> Any:
    """The extension SpiffWorkflow uses: the last `spiffworkflow:<name>` directly under
    `bpmn:extensionElements` (it builds a dict, so later ones overwrite earlier ones)."""
    found = el.findall(f"{_B}extensionElements/{_S}{name}")
    return found[-1] if found else None


def _message_names(root: Any) -> dict[str, str | None]:
    return {m.get("id"): m.get("name") for m in root.iter(f"{_B}message") if m.get("id")}


def _message_name(el: Any, messages: dict[str, str | None]) -> str | None:
    """The message name SpiffWorkflow gives a message event or send/receive task, if any."""
    kind = _local(el)
    definition = None
    if kind in ("sendTask", "receiveTask") and el.get("messageRef") is not None:
        definition = el
    else:
        definition = el.find(f".//{_B}messageEventDefinition")
    if definition is None:
        return None
    ref = definition.get("messageRef")
    if ref:
        # A dangling messageRef is a load error the deploy checks report.
        return messages.get(ref)
    # Without messageRef SpiffWorkflow names the message after the event itself.
    owner = definition if definition is el else definition.getparent()
    return owner.get("name") if owner is not None else None


def defined_names(root: Any) -> dict[str, set[str]]:
    """What one BPMN file offers to other files: executable process ids and the names of the
    messages its executable processes throw and catch."""
    root = _root(root)
    messages = _message_names(root)
    processes: set[str] = set()
    sent: set[str] = set()
    caught: set[str] = set()
    for process in _executable_processes(root):
        if process.get("id"):
            processes.add(process.get("id"))
        for el in process.iter():
            kind = _local(el)
            if kind in MESSAGE_THROWERS or kind in MESSAGE_CATCHERS:
                name = _message_name(el, messages)
                if name:
                    (sent if kind in MESSAGE_THROWERS else caught).add(name)
    return {"processes": processes, "messages_sent": sent, "messages_caught": caught}


def check_bpmn(file: str, root: Any, context: LintContext) -> list[Finding]:
    """All design findings for one parsed BPMN document, sorted by line."""
    root = _root(root)
    findings: list[Finding] = []

    def add(severity: str, rule: str, el: Any, message: str) -> None:
        findings.append(
            Finding(
                file=file,
                severity=severity,
                rule=rule,
                message=message,
                element=el.get("id"),
                line=el.sourceline,
            )
        )

    # Processes and messages of this file always deploy together with it.
    own = defined_names(root)
    processes = set(context.processes) | own["processes"]
    sent = set(context.sent_messages) | own["messages_sent"]
    messages = _message_names(root)
    lanes = _document_lanes(root)
    reported_lanes: set[int] = set()
    for process in _executable_processes(root):
        _check_scope(process, add)
        _check_people(process, lanes, context, reported_lanes, add)
        for el in process.iter():
            kind = _local(el)
            if kind == "userTask":
                _check_form(el, context, add)
            elif kind == "serviceTask":
                _check_action(el, context, add)
            elif kind == "callActivity":
                _check_call(el, processes, add)
            elif kind == "businessRuleTask":
                _check_decision(el, context, add)
            elif kind == "timerEventDefinition":
                _check_timer(el, add)
            if kind in MESSAGE_CATCHERS:
                name = _message_name(el, messages)
                if name and name not in sent:
                    add(
                        WARNING,
                        "message-never-sent",
                        el,
                        f"no workflow sends message {name!r} (it must come from a connector "
                        "or the API)",
                    )
    return sorted(findings, key=lambda f: (f.line or 0, f.rule, f.element or "", f.message))


def _listing(names: Iterable[str]) -> str:
    shown = sorted(names)
    if not shown:
        return "none"
    more = f", ... ({len(shown)} in all)" if len(shown) > 10 else ""
    return ", ".join(shown[:10]) + more


def _names(nodes: list[Any], indexes: Iterable[int], limit: int = 8) -> str:
    ids = [nodes[i].get("id") or f"<{_local(nodes[i])}>" for i in sorted(indexes)]
    more = f", ... ({len(ids)} in all)" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


# --- the flow graph ------------------------------------------------------------------------


def _check_scope(scope: Any, add: Add) -> None:
    """Reachability, ending and gateways of one process or subprocess; recurses into the
    subprocesses it contains."""
    kind = _local(scope)
    what = "subprocess" if kind in ALL_SCOPES else "process"
    children = [el for el in scope if _local(el)]
    nodes = [el for el in children if _local(el) in FLOW_NODES]
    # Graph keys are positions in `nodes`: ids may be missing or duplicated in odd files.
    index: dict[str, int] = {}
    for i, el in enumerate(nodes):
        if el.get("id") is not None:
            index.setdefault(el.get("id"), i)
    outgoing: list[list[int]] = [[] for _ in nodes]
    incoming: list[list[int]] = [[] for _ in nodes]
    out_flows: list[list[Any]] = [[] for _ in nodes]
    dangling_out: set[int] = set()
    for flow in (el for el in children if _local(el) == "sequenceFlow"):
        source, target = index.get(flow.get("sourceRef")), index.get(flow.get("targetRef"))
        if source is not None:
            out_flows[source].append(flow)
        if source is None or target is None:
            end = "sourceRef" if source is None else "targetRef"
            missing = flow.get(end)
            problem = (
                f"has no {end}"
                if missing is None
                else f"refers to {missing!r}, which is not a step of this {what}"
            )
            add(
                ERROR,
                "dangling-ref",
                flow,
                f"sequence flow {problem}: connect it to an existing step or delete it",
            )
            if source is not None:
                dangling_out.add(source)
            continue
        outgoing[source].append(target)
        incoming[target].append(source)

    boundaries: list[list[int]] = [[] for _ in nodes]
    host_of: dict[int, int] = {}
    for i, el in enumerate(nodes):
        if _local(el) != "boundaryEvent":
            continue
        host = index.get(el.get("attachedToRef"))
        if host is None:
            add(
                ERROR,
                "dangling-ref",
                el,
                f"boundary event is attached to {el.get('attachedToRef')!r}, which is not a "
                f"step of this {what}",
            )
            continue
        boundaries[host].append(i)
        host_of[i] = host

    if kind != "adHocSubProcess":
        _check_paths(scope, what, nodes, outgoing, incoming, boundaries, host_of, dangling_out, add)
    for i, el in enumerate(nodes):
        if _local(el) in CONDITIONAL_GATEWAYS:
            _check_gateway(el, out_flows[i], add)
        if _local(el) in ALL_SCOPES:
            _check_scope(el, add)


def _is_event_subprocess(el: Any) -> bool:
    return _local(el) in FLOW_SCOPES and el.get("triggeredByEvent") == "true"


def _is_compensation(el: Any) -> bool:
    """Compensation handlers and their boundary events are wired by associations, not by
    sequence flows: they start and end outside the flow graph."""
    if el.get("isForCompensation") == "true":
        return True
    return _local(el) == "boundaryEvent" and el.find(f"{_B}compensateEventDefinition") is not None


def _check_paths(
    scope: Any,
    what: str,
    nodes: list[Any],
    outgoing: list[list[int]],
    incoming: list[list[int]],
    boundaries: list[list[int]],
    host_of: dict[int, int],
    dangling_out: set[int],
    add: Add,
) -> None:
    starts = [i for i, el in enumerate(nodes) if _local(el) == "startEvent"]
    if not starts:
        add(
            ERROR,
            "no-start",
            scope,
            f"this {what} has no start event: SpiffWorkflow refuses to load it; add one",
        )
        return
    # Event subprocesses start on their trigger and compensation handlers on compensation.
    detached = [i for i, el in enumerate(nodes) if _is_event_subprocess(el) or _is_compensation(el)]

    def successors(i: int) -> list[int]:
        return outgoing[i] + boundaries[i]

    reached = _closure(starts + [i for i in detached if i not in host_of], successors)
    _report_unreachable(nodes, reached, incoming, host_of, add)

    # SpiffWorkflow completes a path that stops at a step without outgoing flow (it does not
    # hang), but that branch's data never reaches the instance's result: a dead end.
    ends = {i for i, el in enumerate(nodes) if _local(el) == "endEvent"}
    terminal = ends | set(detached) | dangling_out
    dead_ends = sorted(i for i in reached - terminal if not outgoing[i])
    for i in dead_ends:
        add(
            ERROR,
            "dead-end",
            nodes[i],
            "has no outgoing flow: end the path with an end event (SpiffWorkflow ends the "
            "path here silently and drops the data of this branch from the instance result)",
        )

    def predecessors(i: int) -> list[int]:
        # A host can end if one of its boundary events can: that is a way out of it.
        return incoming[i] + ([host_of[i]] if i in host_of else [])

    can_end = _closure(terminal | set(dead_ends), predecessors)
    stuck = reached - can_end
    if stuck:
        _report_loops(nodes, stuck, lambda i: [j for j in successors(i) if j in stuck], add)


def _closure(seeds: Iterable[int], step: Callable[[int], Iterable[int]]) -> set[int]:
    seen: set[int] = set()
    todo = list(seeds)
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.add(i)
            todo.extend(step(i))
    return seen


def _report_unreachable(
    nodes: list[Any],
    reached: set[int],
    incoming: list[list[int]],
    host_of: dict[int, int],
    add: Add,
) -> None:
    """One warning per unreachable region, at its entry, naming the steps behind it."""
    lost = [i for i in range(len(nodes)) if i not in reached]
    if not lost:
        return
    lost_set = set(lost)

    def predecessors(i: int) -> list[int]:
        return incoming[i] + ([host_of[i]] if i in host_of else [])

    def followers(i: int) -> list[int]:
        return [j for j in range(len(nodes)) if i in predecessors(j) and j in lost_set]

    entries = [i for i in lost if not any(p in lost_set for p in predecessors(i))]
    covered: set[int] = set()
    # Regions that loop among themselves have no entry: take their first step by position.
    for i in entries + lost:
        if i in covered:
            continue
        region = _closure([i], lambda j, done=covered: [k for k in followers(j) if k not in done])
        covered |= region
        behind = region - {i}
        tail = f" (nor can what follows it: {_names(nodes, behind)})" if behind else ""
        add(
            WARNING,
            "unreachable",
            nodes[i],
            f"can never be reached: no path from a start event leads here{tail}; connect it "
            "or delete it",
        )


def _report_loops(
    nodes: list[Any], stuck: set[int], successors: Callable[[int], list[int]], add: Add
) -> None:
    """Report each loop that nothing leaves, once, at its first step in the file.

    Every stuck step has a successor that is stuck too, so the stuck steps end in loops
    without exit; steps that merely lead into such a loop are explained by it.
    """
    forward = {i: _closure(successors(i), successors) for i in stuck}
    loops: list[set[int]] = []
    for i in sorted(stuck):
        if i in forward[i] and all(i in forward[j] for j in forward[i]):
            if not any(i in loop for loop in loops):
                loops.append(forward[i] | {i})
    for loop in loops:
        first = min(loop)
        others = loop - {first}
        with_others = f" with {_names(nodes, others)}" if others else ""
        add(
            ERROR,
            "never-ends",
            nodes[first],
            f"loops forever{with_others}: no path out of this loop reaches an end event; give "
            "it an exit (e.g. a gateway flow that leaves the loop)",
        )


def _condition(flow: Any) -> str | None:
    expression = flow.find(f".//{_B}conditionExpression")
    text = expression.text if expression is not None else None
    # An empty condition is refused on load; a blank one fails with a syntax error on use.
    return text if text and text.strip() else None


def _check_gateway(gateway: Any, flows: list[Any], add: Add) -> None:
    if len(flows) < 2:
        return  # SpiffWorkflow takes a single unconditional flow as the default
    default = gateway.get("default")
    flow_ids = {f.get("id") for f in flows}
    missing = [f for f in flows if f.get("id") != default and _condition(f) is None]
    for flow in missing:
        add(
            ERROR,
            "condition-missing",
            flow,
            f"flow out of gateway {gateway.get('id')!r} has no condition and is not its "
            "default flow (SpiffWorkflow refuses to load it): give it a condition or make it "
            "the gateway's default",
        )
    if not missing and default not in flow_ids:
        note = ""
        if default is not None:
            note = f" (default {default!r} is not one of its outgoing flows)"
        add(
            WARNING,
            "gateway-no-default",
            gateway,
            f"no default flow{note}: when no condition holds the instance stops with an "
            "error; make one flow the default",
        )


# --- people: forms, lanes, roles -----------------------------------------------------------


def _document_lanes(root: Any) -> dict[str, Any]:
    """Node id -> lane element as SpiffWorkflow sees it: from every flowNodeRef of the document,
    text not stripped, the last reference winning."""
    lanes: dict[str, Any] = {}
    for ref in root.iter(f"{_B}flowNodeRef"):
        if ref.text is not None and ref.getparent() is not None:
            lanes[ref.text] = ref.getparent()
    return lanes


def _lane_name(lane: Any) -> str | None:
    name = lane.get("name") if lane is not None else None
    return name if name and name.strip() else None


def _human_tasks(scope: Any, lanes: dict[str, Any], inherited: Any) -> Iterator[tuple[Any, Any]]:
    """(task, lane element or None) for every user and manual task. SpiffWorkflow gives steps
    inside an embedded subprocess the subprocess's lane, if it has a named one."""
    for el in scope:
        kind = _local(el)
        if not kind:
            continue
        lane = inherited if inherited is not None else lanes.get(el.get("id") or "")
        if kind in HUMAN:
            yield el, lane
        elif kind in ALL_SCOPES:
            yield from _human_tasks(el, lanes, lane if _lane_name(lane) else None)


def _check_people(
    process: Any,
    lanes: dict[str, Any],
    context: LintContext,
    reported: set[int],
    add: Add,
) -> None:
    has_lanes = next(process.iter(f"{_B}lane"), None) is not None
    holding: list[Any] = []
    for task, lane in _human_tasks(process, lanes, None):
        if lane is not None and _lane_name(lane):
            if all(lane is not other for other in holding):
                holding.append(lane)
            continue
        if lane is not None:
            message = f"its lane {lane.get('id')!r} has no name: any user may do this task"
        elif not has_lanes:
            message = "the process has no lanes: any user may do this task"
        elif any((ref or "").strip() == task.get("id") for ref in lanes):
            message = (
                "its flowNodeRef has spaces around the id, which SpiffWorkflow does not strip: "
                "the task is in no lane and any user may do it"
            )
        else:
            message = (
                "the process has lanes but this task is in none: any user may do it; add it "
                "to the lane of the role that does it"
            )
        add(WARNING, "user-task-no-lane", task, message)
    if context.roles is None:
        return
    for lane in holding:
        name = _lane_name(lane)
        if name in context.roles or id(lane) in reported:
            continue
        reported.add(id(lane))
        add(
            ERROR,
            "unknown-role",
            lane,
            f"lane {name!r} holds user or manual tasks but is not a role (roles: "
            f"{_listing(context.roles)}); name the lane after the role that does them",
        )


def _check_form(task: Any, context: LintContext, add: Add) -> None:
    properties = _extensions(task, "properties")
    form = None
    if properties is not None:
        for prop in properties.iter(f"{_S}property"):
            if prop.get("name") == "formName":
                form = prop.get("value")
    if form is None or not form.strip():
        add(
            WARNING,
            "user-task-no-form",
            task,
            "user task without a form (`form:` in YAML, the formName property in BPMN): the user "
            "gets nothing to fill in; set a form, or make it a manual task",
        )
    elif context.forms is not None and form not in context.forms:
        add(
            ERROR,
            "unknown-form",
            task,
            f"form {form!r} does not exist (known forms: {_listing(context.forms)})",
        )


# --- references and expressions ------------------------------------------------------------


def _check_action(task: Any, context: LintContext, add: Add) -> None:
    if context.actions is None:
        return
    operator = _extensions(task, "serviceTaskOperator")
    name = operator.get("id") if operator is not None else None
    if not name:
        add(
            ERROR,
            "unknown-action",
            task,
            "service task without an action (spiffworkflow:serviceTaskOperator id=...): "
            "SpiffWorkflow refuses to load it",
        )
    elif name not in context.actions:
        add(
            ERROR,
            "unknown-action",
            task,
            f"calls action {name!r}, which is not registered "
            f"(registered: {_listing(context.actions)})",
        )


def _check_call(task: Any, processes: set[str], add: Add) -> None:
    called = task.get("calledElement")
    if not called:
        add(
            ERROR,
            "unknown-process",
            task,
            "call activity without calledElement: SpiffWorkflow refuses to load it; name the "
            "process to call",
        )
    elif called not in processes:
        add(
            ERROR,
            "unknown-process",
            task,
            f"calls process {called!r}, which is not defined in the linted files or the "
            f"workflows folder (known: {_listing(processes)})",
        )


def _check_decision(task: Any, context: LintContext, add: Add) -> None:
    ref = _extensions(task, "calledDecisionId")
    decision = ref.text if ref is not None else None
    if not decision or not decision.strip():
        add(
            ERROR,
            "unknown-decision",
            task,
            "business rule task without spiffworkflow:calledDecisionId: SpiffWorkflow "
            "refuses to load it",
        )
    elif decision not in context.decisions:
        if decision.strip() in context.decisions:
            hint = "remove the spaces around it: SpiffWorkflow does not strip them"
        else:
            hint = f"no DMN file defines it (known: {_listing(context.decisions)})"
        add(ERROR, "unknown-decision", task, f"uses decision {decision!r}: {hint}")


def _check_timer(definition: Any, add: Add) -> None:
    owner = definition.getparent()
    if owner is None:
        return
    for part_name in TIMER_PARTS:
        part = owner.find(f".//{_B}{part_name}")
        if part is not None:
            break
    else:
        return  # no time specification: a load error the deploy checks report
    text = (part.text or "").strip()
    if not text:
        add(
            ERROR,
            "timer-empty",
            owner,
            f"timer {part_name} is empty: the instance fails when it reaches this timer; "
            "write a duration such as 'PT2H' (in quotes) or an expression",
        )
    elif _BARE_ISO.fullmatch(text):
        add(
            ERROR,
            "timer-unquoted",
            owner,
            f"timer {text!r} is evaluated as an expression: write \"'{text}'\" (in quotes)",
        )
