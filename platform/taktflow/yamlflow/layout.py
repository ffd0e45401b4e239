"""Left-to-right diagram layout of a compiled workflow (BPMN DI coordinates).

The layout follows the YAML's block structure: a sequence is a row, branches stack below
their split gateway, boundary paths run in rows under their task, loops draw their way back
under the body. Shapes never overlap; lanes are horizontal bands, each as tall as the rows it
uses.
"""

from __future__ import annotations

from taktflow.yamlflow.graph import (
    GATEWAYS,
    Box,
    Expanded,
    Flow,
    Fork,
    Hosted,
    Leaf,
    Loop,
    Node,
    Row,
    Scope,
)

GAP_X = 50.0
GAP_Y = 40.0
PAD = 30.0  # inside an expanded subprocess
MARGIN_X = 180.0  # left of the first shape (room for the pool and lane labels)
MARGIN_Y = 80.0
LANE_LABEL = 30.0
BOUNDARY_STEP = 60.0


def measure(box: Box | None) -> None:
    """Compute w, h and axis of every box, bottom-up."""
    if box is None:
        return
    if isinstance(box, Leaf):
        box.w, box.h, box.axis = box.node.w, box.node.h, box.node.h / 2
    elif isinstance(box, Row):
        for item in box.items:
            measure(item)
        box.axis = max(i.axis for i in box.items)
        box.h = max(box.axis - i.axis + i.h for i in box.items)
        box.w = sum(i.w for i in box.items) + GAP_X * (len(box.items) - 1)
    elif isinstance(box, Fork):
        for part in (box.split, box.join, *box.branches):
            measure(part)
        heights = [b.h if b is not None else 20.0 for b in box.branches]
        first_axis = box.branches[0].axis if box.branches and box.branches[0] else 10.0
        gate_axis = max(
            box.split.axis if box.split else 0.0, box.join.axis if box.join else 0.0, 0.0
        )
        box.axis = max(first_axis, gate_axis)
        box.h = max(box.axis - first_axis + sum(heights) + GAP_Y * (len(heights) - 1), box.axis)
        box.h = max(box.h, box.axis + gate_axis)
        inner = max((b.w for b in box.branches if b is not None), default=0.0)
        box.w = inner + 2 * GAP_X
        if box.split:
            box.w += box.split.w
        if box.join:
            box.w += box.join.w
    elif isinstance(box, Hosted):
        measure(box.host)
        measure(box.merge)
        for _, path in box.paths:
            measure(path)
        box.axis = box.host.axis
        height = box.host.h
        width = box.host.w
        for index, (_, path) in enumerate(box.paths):
            path_h = path.h if path is not None else 20.0
            height += GAP_Y + path_h
            offset = _path_offset(index)
            width = max(width, offset + (path.w if path is not None else 0.0))
        box.h = height
        box.w = width + (GAP_X + box.merge.w if box.merge else 0.0)
    elif isinstance(box, Expanded):
        measure(box.inner)
        box.node.w = box.inner.w + 2 * PAD
        box.node.h = box.inner.h + 2 * PAD
        box.w, box.h, box.axis = box.node.w, box.node.h, PAD + box.inner.axis
    elif isinstance(box, Loop):
        for part in (box.merge, box.body, box.test):
            measure(part)
        box.axis = max(box.merge.axis, box.body.axis, box.test.axis)
        box.h = max(box.axis - b.axis + b.h for b in (box.merge, box.body, box.test)) + GAP_Y
        box.w = box.merge.w + box.body.w + box.test.w + 2 * GAP_X


def _path_offset(index: int) -> float:
    """Boundary paths start to the right of their event on the host's bottom edge."""
    return 40.0 + BOUNDARY_STEP * index + 36.0


def place(box: Box | None, x: float, y: float) -> None:
    """Give every node absolute coordinates; (x, y) is the box's top-left corner."""
    if box is None:
        return
    if isinstance(box, Leaf):
        box.node.x, box.node.y = x, y
    elif isinstance(box, Row):
        for item in box.items:
            place(item, x, y + box.axis - item.axis)
            x += item.w + GAP_X
    elif isinstance(box, Fork):
        cursor_x = x
        if box.split:
            place(box.split, x, y + box.axis - box.split.axis)
            cursor_x += box.split.w
        cursor_x += GAP_X
        first_axis = box.branches[0].axis if box.branches and box.branches[0] else 10.0
        top = y + box.axis - first_axis
        for branch in box.branches:
            place(branch, cursor_x, top)
            top += (branch.h if branch is not None else 20.0) + GAP_Y
        if box.join:
            join_x = x + box.w - box.join.w
            place(box.join, join_x, y + box.axis - box.join.axis)
    elif isinstance(box, Hosted):
        place(box.host, x, y)
        host_node = _first_node(box.host)
        top = y + box.host.h + GAP_Y
        for index, (event, path) in enumerate(box.paths):
            event.x = host_node.x + 40.0 + BOUNDARY_STEP * index - event.w / 2 + 18.0
            event.y = host_node.y + host_node.h - event.h / 2
            place(path, x + _path_offset(index), top)
            top += (path.h if path is not None else 20.0) + GAP_Y
        if box.merge:
            place(box.merge, x + box.w - box.merge.w, y + box.axis - box.merge.axis)
    elif isinstance(box, Expanded):
        box.node.x, box.node.y = x, y
        place(box.inner, x + PAD, y + PAD)
    elif isinstance(box, Loop):
        place(box.merge, x, y + box.axis - box.merge.axis)
        bx = x + box.merge.w + GAP_X
        place(box.body, bx, y + box.axis - box.body.axis)
        place(box.test, bx + box.body.w + GAP_X, y + box.axis - box.test.axis)
        if box.back is not None:
            box.back.channel = y + box.h - GAP_Y / 2


def _first_node(box: Box) -> Node:
    if isinstance(box, Leaf):
        return box.node
    if isinstance(box, Expanded):
        return box.node
    raise TypeError(f"boundary events attach to a task or subprocess, not {type(box).__name__}")


def apply_lanes(nodes: list[Node], lanes: list[str]) -> dict[str, tuple[float, float]]:
    """Move top-level nodes into horizontal lane bands; return lane -> (top, height).

    Rows (nodes sharing an axis) are compacted per lane: a lane is as tall as the rows its
    nodes use, so a lane with one task is one row high. Nodes keep their x, so columns stay
    aligned and shapes in one lane never overlap.
    """
    placed = [n for n in nodes if n.host is None]
    bands: dict[str, tuple[float, float]] = {}
    top = MARGIN_Y
    for lane in lanes:
        mine = [n for n in placed if n.lane == lane]
        rows: dict[float, float] = {}
        for node in mine:
            key = round(node.cy)
            rows[key] = max(rows.get(key, 0.0), node.h)
        cursor = top + GAP_Y / 2
        row_top: dict[float, tuple[float, float]] = {}
        for key in sorted(rows):
            height = max(rows[key], 80.0)
            row_top[key] = (cursor, height)
            cursor += height + GAP_Y
        band = max(cursor - GAP_Y / 2 - top, 120.0)
        for node in mine:
            start, height = row_top[round(node.cy)]
            _move(node, 0.0, start + (height - node.h) / 2 - node.y)
        bands[lane] = (top, band)
        top += band
    return bands


def _move(node: Node, dx: float, dy: float) -> None:
    node.x += dx
    node.y += dy
    if node.inner is not None:
        for inner in _all_nodes(node.inner):
            inner.x += dx
            inner.y += dy


def _all_nodes(scope: Scope) -> list[Node]:
    found = []
    for node in scope.nodes:
        found.append(node)
        if node.inner is not None:
            found.extend(_all_nodes(node.inner))
    return found


def reattach(scope: Scope) -> None:
    """Put boundary events back on their host's bottom edge after hosts moved."""
    index: dict[int, int] = {}
    for node in _all_nodes(scope):
        if node.host is not None:
            k = index.get(id(node.host), 0)
            index[id(node.host)] = k + 1
            node.x = node.host.x + 40.0 + BOUNDARY_STEP * k - node.w / 2 + 18.0
            node.y = node.host.y + node.host.h - node.h / 2


def route(
    flow: Flow, channel: float, above: float | None = None, nodes: list[Node] | None = None
) -> list[tuple[float, float]]:
    """Orthogonal waypoints from source to target."""
    s, t = flow.source, flow.target
    if flow.detour or t.x + t.w / 2 <= s.x:
        # Back edges and jumps run through a channel under (or over) everything they pass:
        # whichever way crosses fewer shapes.
        if flow.channel is not None:
            channel = flow.channel
        down = [(s.cx, s.y + s.h), (s.cx, channel), (t.cx, channel), (t.cx, t.y + t.h)]
        if above is None or nodes is None:
            return down
        up = [(s.cx, s.y), (s.cx, above), (t.cx, above), (t.cx, t.y)]
        return min((down, up), key=lambda points: _crossings(points, nodes, s, t))
    if s.host is not None:  # boundary event: down, then right
        return [(s.cx, s.y + s.h), (s.cx, t.cy), (t.x, t.cy)]
    if abs(s.cy - t.cy) < 0.5:
        return [(s.x + s.w, s.cy), (t.x, t.cy)]
    if s.tag in GATEWAYS and t.x > s.x + s.w:
        edge = s.y + s.h if t.cy > s.cy else s.y
        return [(s.cx, edge), (s.cx, t.cy), (t.x, t.cy)]
    if t.tag in GATEWAYS:
        edge = t.y + t.h if s.cy > t.cy else t.y
        return [(s.x + s.w, s.cy), (t.cx, s.cy), (t.cx, edge)]
    mid = (s.x + s.w + t.x) / 2
    return [(s.x + s.w, s.cy), (mid, s.cy), (mid, t.cy), (t.x, t.cy)]


def _crossings(points: list[tuple[float, float]], nodes: list[Node], s: Node, t: Node) -> int:
    """How many shapes the polyline runs through (the ends and their containers excepted)."""
    count = 0
    for node in nodes:
        if node is s or node is t or node.host in (s, t) or s.host is node or t.host is node:
            continue
        if node.inner is not None and (_inside(s, node) or _inside(t, node)):
            continue
        for (x1, y1), (x2, y2) in zip(points, points[1:], strict=False):
            if (
                min(x1, x2) < node.x + node.w
                and node.x < max(x1, x2)
                and min(y1, y2) < node.y + node.h
                and node.y < max(y1, y2)
            ) or (
                x1 == x2
                and node.x < x1 < node.x + node.w
                and min(y1, y2) < node.y + node.h
                and node.y < max(y1, y2)
            ):
                count += 1
                break
    return count


def _inside(node: Node, box: Node) -> bool:
    return box.x <= node.x and node.x + node.w <= box.x + box.w and box.y <= node.y <= box.y + box.h


def layout(root: Box, scope: Scope, lanes: list[str]) -> dict[str, tuple[float, float]]:
    """Lay out the whole process; return lane bands (empty without lanes)."""
    measure(root)
    place(root, MARGIN_X, MARGIN_Y)
    bands: dict[str, tuple[float, float]] = {}
    if lanes:
        bands = apply_lanes(scope.nodes, lanes)
        for flow in _all_flows(scope):
            flow.channel = None  # rows moved: use the channel under everything
    reattach(scope)
    nodes = _all_nodes(scope)
    bottom = max(n.y + n.h for n in nodes)
    if bands:
        bottom = max(bottom, max(top + h for top, h in bands.values()))
    channel = bottom + 25.0
    above = min(n.y for n in nodes) - 25.0
    if bands:
        above = min(min(top for top, _ in bands.values()), above + 25.0) - 25.0
    for flow in _all_flows(scope):
        if flow.detour or flow.target.x + flow.target.w / 2 <= flow.source.x:
            flow.waypoints = route(flow, channel, above, nodes)
            if flow.waypoints[1][1] == above:
                above -= 12.0
            else:
                channel += 12.0
        else:
            flow.waypoints = route(flow, channel)
    return bands


def _all_flows(scope: Scope) -> list[Flow]:
    flows = list(scope.flows)
    for node in scope.nodes:
        if node.inner is not None:
            flows.extend(_all_flows(node.inner))
    return flows


def all_nodes(scope: Scope) -> list[Node]:
    return _all_nodes(scope)


def all_flows(scope: Scope) -> list[Flow]:
    return _all_flows(scope)
