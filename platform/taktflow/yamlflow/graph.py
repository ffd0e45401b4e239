"""The flow graph a YAML workflow compiles to, before it is laid out and written as BPMN.

Nodes and flows mirror BPMN elements one to one. Boxes describe the block structure the
YAML had (sequence, branches, loops, boundary paths); the layout works on boxes, so that
the diagram keeps the shape the engineer wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taktflow.yamlflow.loader import Pos

TASK_SIZE = (100.0, 80.0)
EVENT_SIZE = (36.0, 36.0)
GATEWAY_SIZE = (50.0, 50.0)

ACTIVITIES = {
    "userTask",
    "manualTask",
    "serviceTask",
    "scriptTask",
    "businessRuleTask",
    "callActivity",
    "receiveTask",
    "subProcess",
}
GATEWAYS = {"exclusiveGateway", "parallelGateway", "eventBasedGateway"}


@dataclass(eq=False)
class Node:
    id: str
    tag: str
    name: str | None
    pos: Pos | None
    scope: Scope
    #: Extra XML attributes (e.g. attachedToRef, cancelActivity, calledElement).
    attrs: dict[str, str] = field(default_factory=dict)
    #: Writes the element's children (extension elements, event definitions, loops).
    body: Callable[[Any], None] | None = None
    lane: str | None = None
    #: For subProcess: the scope inside it.
    inner: Scope | None = None
    #: For boundary events: the activity they are attached to.
    host: Node | None = None
    #: Id of the outgoing flow that is the gateway's default.
    default_flow: str | None = None
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0

    def __post_init__(self) -> None:
        if not self.w:
            if self.tag in ACTIVITIES:
                self.w, self.h = TASK_SIZE
            elif self.tag in GATEWAYS:
                self.w, self.h = GATEWAY_SIZE
            else:
                self.w, self.h = EVENT_SIZE

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass(eq=False)
class Flow:
    id: str
    source: Node
    target: Node
    condition: str | None = None
    name: str | None = None
    #: Drawn through a channel below the block (loops back, gotos).
    detour: bool = False
    #: y of the channel a detour runs through (None: under the whole diagram).
    channel: float | None = None
    waypoints: list[tuple[float, float]] = field(default_factory=list)


@dataclass(eq=False)
class Scope:
    """A process or an embedded subprocess: the nodes and flows directly inside it."""

    id: str
    nodes: list[Node] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    parent: Scope | None = None


# ---------------------------------------------------------------------------- boxes
class Box:
    """A laid-out block: width, height and the y of its main axis, relative to its top."""

    w: float = 0.0
    h: float = 0.0
    axis: float = 0.0


@dataclass(eq=False)
class Leaf(Box):
    node: Node


@dataclass(eq=False)
class Row(Box):
    items: list[Box]


@dataclass(eq=False)
class Fork(Box):
    """A split gateway, branches stacked top to bottom, and a join gateway (either optional)."""

    split: Leaf | None
    branches: list[Box | None]
    join: Leaf | None


@dataclass(eq=False)
class Hosted(Box):
    """An activity with boundary events; each event's path runs in a row below it."""

    host: Box
    paths: list[tuple[Node, Box | None]]
    merge: Leaf | None


@dataclass(eq=False)
class Expanded(Box):
    """An expanded subprocess drawn around its inner block."""

    node: Node
    inner: Box


@dataclass(eq=False)
class Loop(Box):
    """merge gateway, body, test gateway; the flow back runs below the body."""

    merge: Leaf
    body: Box
    test: Leaf
    back: Flow | None = None
