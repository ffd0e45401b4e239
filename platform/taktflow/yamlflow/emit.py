"""Writing the compiled graph as BPMN 2.0 XML (with SpiffWorkflow extensions and BPMN DI),
and inline decision tables as DMN 1.3."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lxml import etree

from taktflow.yamlflow.layout import all_flows, all_nodes, layout

if TYPE_CHECKING:
    from taktflow.yamlflow.compiler import _Compiler, _Decision
    from taktflow.yamlflow.graph import Box, Node, Scope

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"
DC_NS = "http://www.omg.org/spec/DD/20100524/DC"
DI_NS = "http://www.omg.org/spec/DD/20100524/DI"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
DMN_NS = "https://www.omg.org/spec/DMN/20191111/MODEL/"
TARGET_NS = "http://taktflow.org/workflows"
#: Where an error handler's path finds the error it caught.
ERROR_VARIABLE = "error"
NSMAP = {
    "bpmn": BPMN_NS,
    "bpmndi": BPMNDI_NS,
    "dc": DC_NS,
    "di": DI_NS,
    "spiffworkflow": SPIFF_NS,
    "xsi": XSI_NS,
}


def _b(tag: str) -> str:
    return f"{{{BPMN_NS}}}{tag}"


def _s(tag: str) -> str:
    return f"{{{SPIFF_NS}}}{tag}"


def _sub(parent: Any, tag: str, text: str | None = None, **attrs: str) -> Any:
    el = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text
    return el


def _extensions(el: Any) -> Any:
    found = el.find(_b("extensionElements"))
    if found is None:
        found = etree.Element(_b("extensionElements"))
        # extensionElements comes first among an element's children.
        el.insert(0, found)
    return found


# ---------------------------------------------------------------------------- node bodies
def human(el: Any, form: str | None, instructions: str | None) -> None:
    if form is None and instructions is None:
        return
    ext = _extensions(el)
    if instructions is not None:
        _sub(ext, _s("instructionsForEndUser"), instructions)
    if form is not None:
        props = _sub(ext, _s("properties"))
        _sub(props, _s("property"), name="formName", value=form)


def service(el: Any, action: str, params: dict[str, str], result: str | None) -> None:
    ext = _extensions(el)
    operator = _sub(ext, _s("serviceTaskOperator"), id=action, resultVariable=result)
    holder = _sub(operator, _s("parameters"))  # required by SpiffWorkflow's schema, even empty
    if params:
        for name, expression in params.items():
            _sub(holder, _s("parameter"), id=name, type="any", value=expression)


def script(el: Any, text: str) -> None:
    _sub(el, _b("script"), text)


def scripts(el: Any, pre: str, post: str) -> None:
    if pre:
        _sub(_extensions(el), _s("preScript"), pre)
    if post:
        _sub(_extensions(el), _s("postScript"), post)


def decision(el: Any, decision_id: str) -> None:
    _sub(_extensions(el), _s("calledDecisionId"), decision_id)


def receive(el: Any, into: str, keys: list[str]) -> None:
    _message_target(_extensions(el), into, keys)


def _message_target(ext: Any, into: str, keys: list[str]) -> None:
    """Where a caught message's payload goes, and the keys it must match."""
    _sub(ext, _s("messageVariable"), into)
    for key in keys:
        corr = _sub(ext, _s("processVariableCorrelation"))
        _sub(corr, _s("propertyId"), key)
        _sub(corr, _s("expression"), key)


def send(el: Any, message_id: str, expression: str) -> None:
    definition = _sub(el, _b("messageEventDefinition"), messageRef=message_id)
    _sub(_extensions(definition), _s("messagePayload"), expression)


def message_event(el: Any, message_id: str, into: str | None = None) -> None:
    definition = _sub(el, _b("messageEventDefinition"), messageRef=message_id)
    if into:
        _sub(_extensions(definition), _s("messageVariable"), into)


def message_catch(el: Any, message_id: str, into: str, keys: list[str]) -> None:
    """A catching message event (a boundary event): its payload goes into `into`, and it
    takes only messages whose correlation keys match the instance's variables."""
    definition = _sub(el, _b("messageEventDefinition"), messageRef=message_id)
    _message_target(_extensions(definition), into, keys)


def signal_event(el: Any, name: str) -> None:
    _sub(el, _b("signalEventDefinition"), signalRef=f"signal__{_safe(name)}")


def error_event(el: Any, code: str | None) -> None:
    _sub(el, _b("errorEventDefinition"), errorRef=f"error__{_safe(code)}" if code else None)


def timer_event(el: Any, tag: str, expression: str) -> None:
    definition = _sub(el, _b("timerEventDefinition"))
    _sub(definition, _b(tag), expression, **{f"{{{XSI_NS}}}type": "bpmn:tFormalExpression"})


def multi_instance(
    el: Any, items: str, item: str, collect: str | None, result: str | None, sequential: bool
) -> None:
    loop = etree.Element(
        _b("multiInstanceLoopCharacteristics"),
        {
            "isSequential": "true" if sequential else "false",
            # Pre- and post-scripts (a call's in/out) run for each item, not around the loop.
            f"{{{SPIFF_NS}}}scriptsOnInstances": "true",
        },
    )
    # The loop comes before an activity's own content (a script task's <script>).
    position = 0
    for index, child in enumerate(el):
        if child.tag in (_b("documentation"), _b("extensionElements")):
            position = index + 1
    el.insert(position, loop)
    _sub(loop, _b("loopDataInputRef"), items)
    if collect:
        _sub(loop, _b("loopDataOutputRef"), collect)
    _sub(loop, _b("inputDataItem"), id=item, name=item)
    if result:
        _sub(loop, _b("outputDataItem"), id=result, name=result)


def prepend_pre_script(el: Any, line: str) -> None:
    script_el = el.find(_b("script"))
    if script_el is not None:  # SpiffWorkflow ignores pre/post-scripts on script tasks
        script_el.text = f"{line}\n{script_el.text}"
        return
    ext = _extensions(el)
    pre = ext.find(_s("preScript"))
    if pre is None:
        _sub(ext, _s("preScript"), line)
    else:
        pre.text = f"{line}\n{pre.text}"


def append_post_script(el: Any, line: str) -> None:
    script_el = el.find(_b("script"))
    if script_el is not None:
        script_el.text = f"{script_el.text}\n{line}"
        return
    ext = _extensions(el)
    post = ext.find(_s("postScript"))
    if post is None:
        _sub(ext, _s("postScript"), line)
    else:
        post.text = f"{post.text}\n{line}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


# ---------------------------------------------------------------------------- document
def write_bpmn(c: _Compiler, root: Box) -> str:
    bands = layout(root, c.scope, c.lanes)
    defs = etree.Element(
        _b("definitions"),
        nsmap=NSMAP,
        id=f"Definitions_{c.process_id}",
        targetNamespace=TARGET_NS,
        exporter="taktflow",
    )
    collab_id = f"{c.process_id}__collaboration"
    pool_id = f"{c.process_id}__pool"
    collab = _sub(defs, _b("collaboration"), id=collab_id)
    _sub(collab, _b("participant"), id=pool_id, name=c.name, processRef=c.process_id)
    keysets = sorted({tuple(sorted(keys)) for keys in c.messages.values() if keys})
    for keys in keysets:
        key = _sub(collab, _b("correlationKey"), name="_".join(keys))
        for prop in keys:
            _sub(key, _b("correlationPropertyRef"), prop)
    for name in sorted(c.messages):
        _sub(defs, _b("message"), id=f"message__{_safe(name)}", name=name)
    properties: dict[str, list[str]] = {}
    for name, keys in sorted(c.messages.items()):
        for key in keys:
            properties.setdefault(key, []).append(name)
    for prop, names in sorted(properties.items()):
        el = _sub(defs, _b("correlationProperty"), id=prop, name=prop)
        for name in names:
            expr = _sub(
                el,
                _b("correlationPropertyRetrievalExpression"),
                messageRef=f"message__{_safe(name)}",
            )
            _sub(expr, _b("messagePath"), prop)
    for code in sorted(c.errors):
        error = _sub(defs, _b("error"), id=f"error__{_safe(code)}", name=code, errorCode=code)
        # The handler's path sees `error` = {"code", "message"} (an action's BusinessError
        # brings its own message; an error end event says its code).
        ext = _sub(error, _b("extensionElements"))
        _sub(ext, _s("variableName"), ERROR_VARIABLE)
        _sub(ext, _s("payloadExpression"), f"{{'code': {code!r}, 'message': {code!r}}}")
    for name in sorted(c.signals):
        _sub(defs, _b("signal"), id=f"signal__{_safe(name)}", name=name)

    process = _sub(defs, _b("process"), id=c.process_id, name=c.name, isExecutable="true")
    if c.description:
        _sub(process, _b("documentation"), c.description.strip())
    if c.lanes:
        lane_set = _sub(process, _b("laneSet"), id=f"{c.process_id}__lanes")
        for lane in c.lanes:
            lane_el = _sub(lane_set, _b("lane"), id=f"lane__{_safe(lane)}", name=lane)
            for node in all_nodes(c.scope):
                if node.lane == lane:
                    _sub(lane_el, _b("flowNodeRef"), node.id)
    _write_scope(process, c.scope)

    diagram = _sub(defs, f"{{{BPMNDI_NS}}}BPMNDiagram", id=f"{c.process_id}__diagram")
    plane = _sub(
        diagram, f"{{{BPMNDI_NS}}}BPMNPlane", id=f"{c.process_id}__plane", bpmnElement=collab_id
    )
    nodes = all_nodes(c.scope)
    points = [p for flow in all_flows(c.scope) for p in flow.waypoints]
    right = max(n.x + n.w for n in nodes) + 50
    # The pool holds every shape and every line (detours run above or below the shapes).
    top = min([n.y for n in nodes] + [y for _, y in points]) - 40
    bottom = max([n.y + n.h for n in nodes] + [y for _, y in points]) + 40
    if bands:
        top = min(top, min(t for t, _ in bands.values()))
        bottom = max(bottom, max(t + h for t, h in bands.values()))
        for lane in c.lanes:
            t, h = bands[lane]
            # The first and last lanes reach the pool's edges, where detours run.
            if lane == c.lanes[0]:
                h, t = h + (t - top), top
            if lane == c.lanes[-1]:
                h = max(h, bottom - t)
            _shape(plane, f"lane__{_safe(lane)}", 150, t, right - 150, h, horizontal=True)
    _shape(plane, pool_id, 120, top, right - 120, bottom - top, horizontal=True, first=True)
    for node in nodes:
        _shape(plane, node.id, node.x, node.y, node.w, node.h, expanded=node.tag == "subProcess")
    for flow in all_flows(c.scope):
        edge = _sub(plane, f"{{{BPMNDI_NS}}}BPMNEdge", id=f"{flow.id}__di", bpmnElement=flow.id)
        for x, y in flow.waypoints:
            _sub(edge, f"{{{DI_NS}}}waypoint", x=_num(x), y=_num(y))
    return etree.tostring(defs, pretty_print=True, xml_declaration=True, encoding="UTF-8").decode()


def _write_scope(parent: Any, scope: Scope) -> None:
    for node in scope.nodes:
        _write_node(parent, node)
    for flow in scope.flows:
        el = _sub(
            parent,
            _b("sequenceFlow"),
            id=flow.id,
            name=flow.name,
            sourceRef=flow.source.id,
            targetRef=flow.target.id,
        )
        if flow.condition is not None:
            _sub(
                el,
                _b("conditionExpression"),
                flow.condition,
                **{f"{{{XSI_NS}}}type": "bpmn:tFormalExpression"},
            )


def _write_node(parent: Any, node: Node) -> None:
    attrs = {"id": node.id, "name": node.name}
    attrs.update(node.attrs)
    if node.default_flow:
        attrs["default"] = node.default_flow
    el = _sub(parent, _b(node.tag), **attrs)
    if node.body is not None:
        node.body(el)
    if node.inner is not None:
        _write_scope(el, node.inner)


def _num(value: float) -> str:
    return str(int(round(value)))


def _shape(
    plane: Any,
    element: str,
    x: float,
    y: float,
    w: float,
    h: float,
    *,
    horizontal: bool = False,
    expanded: bool = False,
    first: bool = False,
) -> None:
    attrs = {"id": f"{element}__di", "bpmnElement": element}
    if horizontal:
        attrs["isHorizontal"] = "true"
    if expanded:
        attrs["isExpanded"] = "true"
    shape = etree.Element(f"{{{BPMNDI_NS}}}BPMNShape", attrs)
    if first:
        plane.insert(0, shape)
    else:
        plane.append(shape)
    _sub(shape, f"{{{DC_NS}}}Bounds", x=_num(x), y=_num(y), width=_num(w), height=_num(h))


def write_dmn(c: _Compiler, d: _Decision) -> str:
    from taktflow.yamlflow.compiler import input_cell, output_cell
    from taktflow.yamlflow.language import HIT_POLICIES

    table = d.table
    n = f"{{{DMN_NS}}}"
    defs = etree.Element(
        f"{n}definitions",
        nsmap={None: DMN_NS},
        id=f"Definitions_{d.id}",
        name=d.name,
        namespace=TARGET_NS,
    )
    decision = _sub(defs, f"{n}decision", id=d.id, name=d.name)
    hit = HIT_POLICIES[table.get("hit", "first")]
    dt = _sub(decision, f"{n}decisionTable", id=f"{d.id}__table", hitPolicy=hit)
    for index, expression in enumerate(table["inputs"], start=1):
        text = str(expression)
        inp = _sub(dt, f"{n}input", id=f"{d.id}__input_{index}", label=text)
        expr = _sub(inp, f"{n}inputExpression", id=f"{d.id}__input_{index}_expr")
        _sub(expr, f"{n}text", text)
    for index, name in enumerate(table["outputs"], start=1):
        _sub(dt, f"{n}output", id=f"{d.id}__output_{index}", name=name, label=name)
    for r, rule in enumerate(table["rules"], start=1):
        rule_el = _sub(dt, f"{n}rule", id=f"{d.id}__rule_{r}")
        for i, cell in enumerate(rule["when"], start=1):
            entry = _sub(rule_el, f"{n}inputEntry", id=f"{d.id}__rule_{r}_in_{i}")
            _sub(entry, f"{n}text", input_cell(cell) or "-")
        for o, cell in enumerate(rule["then"], start=1):
            entry = _sub(rule_el, f"{n}outputEntry", id=f"{d.id}__rule_{r}_out_{o}")
            _sub(entry, f"{n}text", output_cell(cell))
    return etree.tostring(defs, pretty_print=True, xml_declaration=True, encoding="UTF-8").decode()
