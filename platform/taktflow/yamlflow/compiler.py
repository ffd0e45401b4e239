"""YAML workflow -> BPMN 2.0 (+ DMN for inline decision tables).

`compile_text` checks everything it can before writing XML: keys and types against the
language table, references between steps (lanes, goto targets, ids), expressions and
scripts against the sandbox, and that every path can end. The first problem stops it with
a DefinitionError naming file, line and column. Output is deterministic: the same YAML
gives byte-identical XML.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from taktflow.engine.sandbox import check_source
from taktflow.errors import DefinitionError, DefinitionProblem
from taktflow.yamlflow import language as lang
from taktflow.yamlflow.graph import Box, Expanded, Flow, Fork, Hosted, Leaf, Loop, Node, Row, Scope
from taktflow.yamlflow.loader import Map, Pos, Seq, YamlProblem, load

#: Step kinds whose step is a single activity that a loop can be put on directly.
_SIMPLE = {"task", "manual", "service", "script", "decision", "call"}


@dataclass
class Compiled:
    """The result of compiling one YAML workflow."""

    process_id: str
    name: str
    bpmn: str
    #: decision id -> DMN XML, for inline decision tables.
    dmn: dict[str, str]
    #: BPMN element id -> where the step that produced it is in the YAML file.
    positions: dict[str, Pos]
    lanes: list[str]


class _Problem(Exception):
    def __init__(self, message: str, pos: Pos | None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def compile_text(file: str, text: str) -> Compiled:
    """Compile one YAML workflow; raise DefinitionError (file:line:column) on the first problem."""
    try:
        try:
            data = load(text)
        except YamlProblem as exc:
            raise _Problem(exc.message, exc.pos) from None
        return _Compiler(file).run(data)
    except _Problem as exc:
        line = exc.pos.line if exc.pos else None
        column = exc.pos.column if exc.pos else None
        raise DefinitionError(
            [DefinitionProblem(file, exc.message, line=line, column=column)]
        ) from None
    except RecursionError:
        raise DefinitionError(
            [DefinitionProblem(file, "steps are nested too deeply to compile")]
        ) from None


# ---------------------------------------------------------------------------- validation
def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_keys(where: str, value: Map, fields: dict[str, lang.Field]) -> None:
    for key in value:
        if key not in fields:
            allowed = ", ".join(fields)
            raise _Problem(
                f"{where}: unknown key {key!r} (expected one of: {allowed})"
                f"{_suggest(key, list(fields))}",
                value.key_pos[key],
            )
    for key, f in fields.items():
        if f.required and key not in value:
            raise _Problem(f"{where}: missing {key!r} ({f.doc})", value.pos)
    for key, f in fields.items():
        if key in value:
            _check_type(where, key, value[key], f.type, value.at(key))


def _check_type(where: str, key: str, value: Any, type_name: str, pos: Pos) -> None:
    def bad(extra: str = "") -> _Problem:
        got = _kind_of(value)
        return _Problem(
            f"{where}: {key!r} must be {lang.describe(type_name)}{extra}, not {got}", pos
        )

    simple_str = {
        "title",
        "text",
        "template",
        "step_id",
        "process_id",
        "variable",
        "name",
        "target",
        "duration",
        "date",
    }
    if type_name in simple_str:
        if not isinstance(value, str):
            raise bad()
        if type_name in ("title", "duration", "date") and not value.strip():
            raise bad()
        pattern = {
            "step_id": lang.STEP_ID,
            "target": lang.STEP_ID,
            "process_id": lang.PROCESS_ID,
            "variable": lang.VARIABLE,
            "name": lang.NAME,
        }.get(type_name)
        if pattern is not None and not pattern.match(value):
            raise _Problem(
                f"{where}: {key!r} is {value!r}, which is not {lang.describe(type_name)}", pos
            )
    elif type_name == "bool":
        if not isinstance(value, bool):
            raise bad()
    elif type_name in ("names", "variables"):
        if isinstance(value, Seq) and not value:
            raise _Problem(
                f"{where}: {key!r} is an empty list; list at least one, or leave the key out",
                pos,
            )
        if not isinstance(value, Seq):
            raise bad()
        pattern = lang.NAME if type_name == "names" else lang.VARIABLE
        seen: set[str] = set()
        for item, item_pos in zip(value, value.item_pos, strict=True):
            if not isinstance(item, str) or not pattern.match(item):
                raise _Problem(
                    f"{where}: {key!r} holds {item!r}, which is not "
                    f"{'a name' if type_name == 'names' else 'a variable name'}",
                    item_pos,
                )
            if item in seen:
                raise _Problem(f"{where}: {key!r} lists {item!r} twice", item_pos)
            seen.add(item)
    elif type_name == "expression":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            if not isinstance(value, bool):
                raise bad()
    elif type_name == "expressions":
        if not isinstance(value, Map):
            raise bad()
        for name, expr in value.items():
            if not lang.VARIABLE.match(name):
                raise _Problem(f"{where}: {name!r} is not a variable name", value.key_pos[name])
            if not isinstance(expr, str | int | float | bool) and expr is not None:
                raise _Problem(
                    f"{where}: the value of {name!r} must be an expression, not {_kind_of(expr)}",
                    value.at(name),
                )
    elif type_name in ("steps", "values", "choices", "branches", "on_error", "on_message"):
        if not isinstance(value, Seq):
            raise bad()
    elif type_name == "timeout":
        if not isinstance(value, Map | Seq):
            raise bad()
    elif type_name in lang.OBJECTS:
        if not isinstance(value, Map):
            raise bad()
    else:  # pragma: no cover - the language table names only known types
        raise AssertionError(type_name)


def _kind_of(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    if isinstance(value, Map):
        return "a mapping"
    if isinstance(value, Seq):
        return "a list"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"the text {value!r}"


def _expr_text(value: Any) -> str:
    """Numbers and booleans in expression positions are literals."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return "None"
    if isinstance(value, int | float):
        return repr(value)
    return str(value).strip()


def _slug(title: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", title.lower())
    slug = "_".join(words)[:48].strip("_")
    if not slug:
        return "step"
    if not slug[0].isalpha():
        slug = f"step_{slug}"
    return slug


# ---------------------------------------------------------------------------- compiler
@dataclass
class _Part:
    """What a list of steps compiled to: where it starts, its open ends, its box."""

    entry: Node | None
    exits: list[tuple[Node, str | None, str | None, bool]]  # node, condition, label, default
    box: Box | None
    open: bool = True
    #: Set when the steps are only a goto: (exits list to extend, target, pos, scope id).
    goto: Any = None


@dataclass
class _StepInfo:
    id: str
    kind: str
    step: Map
    pos: Pos
    scope_id: str
    entry: Node | None = None


@dataclass
class _Decision:
    id: str
    name: str
    table: Map
    pos: Pos


class _Compiler:
    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[str, Pos] = {}
        self.used_ids: set[str] = set()
        self.steps: dict[str, _StepInfo] = {}
        self.lanes: list[str] = []
        self.flow_count = 0
        self.end_count = 0
        self.messages: dict[str, list[str]] = {}  # message name -> correlation keys
        self.signals: set[str] = set()
        self.errors: set[str] = set()
        self.decisions: list[_Decision] = []
        self.gotos: list[tuple[list[tuple[Node, str | None, str | None, bool]], str, Pos, str]] = []
        self.goto_targets: set[str] = set()
        self.pending_lane: str | None = None

    # ------------------------------------------------------------------ entry
    def run(self, data: Any) -> Compiled:
        from taktflow.yamlflow.emit import write_bpmn, write_dmn

        if not isinstance(data, Map):
            raise _Problem(
                f"a workflow file is a mapping (process:, steps: ...), not {_kind_of(data)}",
                getattr(data, "pos", Pos(1, 1)),
            )
        _check_keys("workflow", data, lang.PROCESS)
        self.process_id = data["process"]
        self.name = data.get("name") or self.process_id.replace("_", " ").capitalize()
        self.description = data.get("description")
        self.lanes = list(data.get("lanes") or [])
        if self.lanes:
            for lane, lane_pos in zip(self.lanes, data["lanes"].item_pos, strict=True):
                self.positions[f"lane__{re.sub(r'[^A-Za-z0-9_]', '_', lane)}"] = lane_pos
        start = data.get("start")
        if start is not None:
            _check_keys("start", start, lang.START)
            given = [k for k in ("message", "signal") if k in start]
            if len(given) != 1:
                raise _Problem("start: give exactly one of message or signal", start.pos)
            if "into" in start and given[0] != "message":
                raise _Problem("start: 'into' only goes with message", start.key_pos["into"])
        steps = data["steps"]
        if not steps:
            raise _Problem("steps: a workflow needs at least one step", data.at("steps"))
        self.used_ids.add(self.process_id)
        # First pass: ids of every step (so that goto may jump forward), shapes checked.
        self._collect(steps, self.process_id, "steps")
        for _, target, pos, _ in self._goto_sites:
            if target not in self.steps:
                known = ", ".join(sorted(s for s in self.steps if self.steps[s].kind != "goto"))
                raise _Problem(
                    f"goto {target!r}: no step has this id (steps: {known})"
                    f"{_suggest(target, list(self.steps))}",
                    pos,
                )
            self.goto_targets.add(target)

        self.scope = Scope(self.process_id)
        start_node = self._node(
            self.scope, f"{self.process_id}__start", "startEvent", "Start", data.pos
        )
        if start is not None:
            kind = "message" if "message" in start else "signal"
            value = start[kind]
            if kind == "message":
                self.messages.setdefault(value, [])
                into = start.get("into") or re.sub(r"\W", "_", value)
                start_node.body = _start_message_body(value, into)
            else:
                self.signals.add(value)
                start_node.body = _event_body(kind, value)
            start_node.name = value.replace("_", " ")
        part = self._steps(steps, self.scope)
        self.pending_lane = None
        body: list[Box] = [Leaf(start_node)]
        if part.goto:
            self._retarget_goto(part, start_node)
        if part.entry is not None:
            self._flow(self.scope, start_node, part.entry)
            body.append(part.box)  # type: ignore[arg-type]
        exits = (
            part.exits if part.entry is not None or part.goto else [(start_node, None, None, False)]
        )
        if part.open:
            end = self._end(self.scope, "Done", None)
            self._connect(self.scope, exits, end)
            body.append(Leaf(end))
        self._resolve_gotos()
        self._check_can_end(self.scope)
        self._assign_lanes(self.scope)
        root = Row(body)
        xml = write_bpmn(self, root)
        dmn = {d.id: write_dmn(self, d) for d in self.decisions}
        return Compiled(
            process_id=self.process_id,
            name=self.name,
            bpmn=xml,
            dmn=dmn,
            positions=dict(self.positions),
            lanes=self.lanes,
        )

    # ------------------------------------------------------------------ first pass
    @property
    def _goto_sites(self) -> list[tuple[None, str, Pos, str]]:
        return self.__dict__.setdefault("_gotos_found", [])

    def _collect(self, steps: Any, scope_id: str, where: str) -> None:
        if not isinstance(steps, Seq):
            raise _Problem(f"{where} must be a list of steps, not {_kind_of(steps)}", Pos(1, 1))
        for step, pos in zip(steps, steps.item_pos, strict=True):
            kind = self._kind(step, pos)
            where_step = self._where(kind, step)
            _check_keys(where_step, step, lang.STEPS[kind])
            if kind == "goto":
                self._goto_sites.append((None, step["goto"], step.at("goto"), scope_id))
                self.steps.setdefault(
                    f"goto@{pos.line}:{pos.column}",
                    _StepInfo(f"goto@{pos.line}", "goto", step, pos, scope_id),
                )
                continue
            step_id = step.get("id")
            if step_id is not None:
                if "__" in step_id:
                    raise _Problem(f"{where_step}: ids may not contain '__'", step.at("id"))
                if step_id in self.used_ids:
                    other = self.steps.get(step_id)
                    if other is not None:
                        raise _Problem(
                            f"{where_step}: id {step_id!r} is already used by the step on "
                            f"line {other.pos.line}",
                            step.at("id"),
                        )
                    raise _Problem(
                        f"{where_step}: id {step_id!r} is the process id; pick another",
                        step.at("id"),
                    )
            else:
                step_id = self._fresh(_slug(step[kind]))
            self.used_ids.add(step_id)
            step["__id"] = step_id  # not a YAML key: set after the key check
            inner_scope = scope_id
            if kind in ("group",) or (kind == "for_each" and not self._direct_loop(step)):
                inner_scope = step_id
            elif kind == "for_each":  # the loop sits on the one inner step: no jumping in
                inner_scope = f"{step_id}#inside"
            self.steps[step_id] = _StepInfo(step_id, kind, step, pos, scope_id)
            for key in ("steps", "otherwise"):
                if key in step:
                    self._collect(step[key], inner_scope, f"{where_step}: {key}")
            for key in ("branches",):
                for branch, bpos in zip(
                    step.get(key) or [],
                    (step.get(key) or Seq()).item_pos if isinstance(step.get(key), Seq) else [],
                    strict=False,
                ):
                    fields = lang.CHOICE if kind == "choose" else lang.BRANCH
                    if not isinstance(branch, Map):
                        raise _Problem(
                            f"{where_step}: each branch is a mapping ({', '.join(fields)}), "
                            f"not {_kind_of(branch)}",
                            bpos,
                        )
                    _check_keys(f"{where_step}: branch", branch, fields)
                    self._collect(
                        branch.get("steps") or Seq(), scope_id, f"{where_step}: branch steps"
                    )
            for handler, _hpos, fields in self._handlers(step, where_step):
                _check_keys(f"{where_step}: {fields[0]}", handler, fields[1])
                self._collect(
                    handler.get("steps") or Seq(), scope_id, f"{where_step}: {fields[0]} steps"
                )

    def _handlers(self, step: Map, where: str) -> list[tuple[Map, Pos, tuple[str, dict]]]:
        found = []
        timeout = step.get("timeout")
        if timeout is not None:
            items = [timeout] if isinstance(timeout, Map) else list(timeout)
            positions = [timeout.pos] if isinstance(timeout, Map) else timeout.item_pos
            for item, pos in zip(items, positions, strict=True):
                if not isinstance(item, Map):
                    raise _Problem(
                        f"{where}: each timeout is a mapping (after or at, steps), not "
                        f"{_kind_of(item)}",
                        pos,
                    )
                found.append((item, pos, ("timeout", lang.TIMEOUT)))
        for key, fields in (("on_error", lang.ON_ERROR), ("on_message", lang.ON_MESSAGE)):
            handlers = step.get(key)
            if handlers is None:
                continue
            for item, pos in zip(handlers, handlers.item_pos, strict=True):
                if not isinstance(item, Map):
                    raise _Problem(
                        f"{where}: each {key} entry is a mapping ({', '.join(fields)}), not "
                        f"{_kind_of(item)}",
                        pos,
                    )
                found.append((item, pos, (key, fields)))
        return found

    def _kind(self, step: Any, pos: Pos) -> str:
        if not isinstance(step, Map):
            raise _Problem(
                f"a step is a mapping that starts with its kind (e.g. `- task: Approve`), "
                f"not {_kind_of(step)}",
                pos,
            )
        kinds = [k for k in step if k in lang.STEPS]
        if not kinds:
            first = next(iter(step), "")
            raise _Problem(
                f"step has no kind: start it with one of {', '.join(lang.STEPS)}"
                f"{_suggest(first, list(lang.STEPS))}",
                step.key_pos.get(first, pos),
            )
        if len(kinds) > 1:
            # A kind's name may also be a key of another kind (for_each has `parallel:`):
            # the step's first key decides.
            owners = [k for k in kinds if all(o in lang.STEPS[k] for o in kinds)]
            if len(owners) == 1:
                return owners[0]
            raise _Problem(
                f"step has both {kinds[0]!r} and {kinds[1]!r}: a step does one thing; "
                "split it into two steps",
                step.key_pos[kinds[1]],
            )
        return kinds[0]

    def _where(self, kind: str, step: Map) -> str:
        if kind == "goto":
            return "goto"
        if "id" in step and isinstance(step["id"], str):
            return f'step "{step["id"]}"'
        title = step.get(kind)
        return f'step "{title}"' if isinstance(title, str) else f"{kind} step"

    def _fresh(self, base: str) -> str:
        candidate, n = base, 2
        while candidate in self.used_ids:
            candidate = f"{base}_{n}"
            n += 1
        return candidate

    def _direct_loop(self, step: Map) -> bool:
        body = step.get("steps")
        if not isinstance(body, Seq) or len(body) != 1 or not isinstance(body[0], Map):
            return False
        only = body[0]
        kinds = [k for k in only if k in lang.STEPS]
        return (
            len(kinds) == 1
            and kinds[0] in _SIMPLE
            and "timeout" not in only
            and "on_error" not in only
            and "on_message" not in only
        )

    # ------------------------------------------------------------------ graph helpers
    def _node(
        self, scope: Scope, node_id: str, tag: str, name: str | None, pos: Pos | None, **kw: Any
    ) -> Node:
        node = Node(node_id, tag, name, pos, scope, **kw)
        scope.nodes.append(node)
        if pos is not None:
            self.positions[node_id] = pos
        return node

    def _flow(
        self,
        scope: Scope,
        source: Node,
        target: Node,
        condition: str | None = None,
        label: str | None = None,
        default: bool = False,
        detour: bool = False,
    ) -> Flow:
        self.flow_count += 1
        flow = Flow(f"flow__{self.flow_count}", source, target, condition, label, detour)
        scope.flows.append(flow)
        if default:
            source.default_flow = flow.id
        return flow

    def _connect(
        self,
        scope: Scope,
        exits: list[tuple[Node, str | None, str | None, bool]],
        target: Node,
        detour: bool = False,
    ) -> None:
        for source, condition, label, default in exits:
            self._flow(scope, source, target, condition, label, default, detour)

    def _end(self, scope: Scope, name: str, pos: Pos | None) -> Node:
        self.end_count += 1
        suffix = "" if self.end_count == 1 else f"_{self.end_count}"
        return self._node(scope, f"{self.process_id}__end{suffix}", "endEvent", name, pos)

    def _merge(self, scope: Scope, base: str, exits: list, pos: Pos | None) -> Node:
        merge = self._node(scope, f"{base}__merge", "exclusiveGateway", None, pos)
        self._connect(scope, exits, merge)
        return merge

    def _expr(self, where: str, key: str, value: Any, pos: Pos, mode: str = "eval") -> str:
        text = _expr_text(value)
        if not text:
            raise _Problem(f"{where}: {key!r} is empty; write an expression", pos)
        error = check_source(text, mode)  # type: ignore[arg-type]
        if error:
            raise _Problem(f"{where}: {key!r}: {error}", pos)
        return text

    def _lane(self, where: str, step: Map) -> str | None:
        lane = step.get("lane")
        if lane is None:
            return None
        if not self.lanes:
            raise _Problem(
                f"{where}: lane {lane!r} is not declared (the workflow has no `lanes:`)",
                step.at("lane"),
            )
        if lane not in self.lanes:
            raise _Problem(
                f"{where}: unknown lane {lane!r} (lanes: {', '.join(self.lanes)})"
                f"{_suggest(lane, self.lanes)}",
                step.at("lane"),
            )
        return lane

    # ------------------------------------------------------------------ steps
    def _steps(self, steps: Seq, scope: Scope) -> _Part:
        entry: Node | None = None
        exits: list = []
        boxes: list[Box] = []
        is_open = True
        leading_goto = None
        for step, pos in zip(steps, steps.item_pos, strict=True):
            kind = self._kind(step, pos)
            if kind == "goto":
                if not is_open:
                    raise _Problem("goto can never be reached: the step before ends the path", pos)
                self.gotos.append((exits, step["goto"], step.at("goto"), scope.id))
                if entry is None:
                    # A goto as the first step (e.g. of a branch): whatever leads here jumps.
                    leading_goto = self.gotos[-1]
                exits, is_open = [], False
                continue
            info = self.steps[step["__id"]]
            if not is_open:
                if info.id in self.goto_targets:
                    # Reached only by goto: starts a new row of the diagram.
                    pass
                else:
                    raise _Problem(
                        f"{self._where(kind, step)} can never be reached: the step before "
                        "ends the path (end or goto)",
                        pos,
                    )
            part = self._step(kind, step, pos, scope)
            node = part.entry
            if info.id in self.goto_targets and node is not None:
                merge = self._node(scope, f"{info.id}__in", "exclusiveGateway", None, pos)
                self._flow(scope, merge, node)
                boxes.append(Leaf(merge))
                node = merge
            info.entry = node
            if node is not None:
                if entry is None:
                    entry = node
                elif is_open:
                    self._connect(scope, exits, node)
                if part.box is not None:
                    boxes.append(part.box)
                exits = part.exits
                is_open = part.open
            else:
                # An empty part (no node): exits flow straight through.
                pass
        if leading_goto is not None:
            if entry is not None:
                first = self.steps[entry.id] if entry.id in self.steps else None
                raise _Problem(
                    "steps after a goto that starts a list of steps can only be reached by "
                    "another goto; move them to where that goto can find them",
                    first.pos if first else entry.pos,
                )
            return _Part(None, [], None, open=False, goto=leading_goto)
        if entry is None:
            return _Part(None, exits, None, open=is_open)
        box = boxes[0] if len(boxes) == 1 else Row(boxes)
        return _Part(entry, exits, box, open=is_open)

    def _step(self, kind: str, step: Map, pos: Pos, scope: Scope) -> _Part:
        where = self._where(kind, step)
        step_id = step["__id"]
        title = step[kind]
        handler = getattr(self, f"_step_{kind}")
        return handler(step, step_id, title, where, pos, scope)

    def _activity(self, step: Map, node: Node, where: str, scope: Scope) -> _Part:
        """An activity with its timeouts and error handlers (boundary events)."""
        boundary = self._boundaries(step, node, where, scope)
        if not boundary:
            return _Part(node, [(node, None, None, False)], Leaf(node))
        exits = [(node, None, None, False)]
        paths: list[tuple[Node, Box | None]] = []
        for event, part, rejoins in boundary:
            paths.append((event, part.box))
            if part.entry is None:
                exits.extend(part.exits or [(event, None, None, False)])
            elif rejoins:
                exits.extend(part.exits)
        merge = None
        if len(exits) > 1:
            merge = self._merge(scope, node.id, exits, node.pos)
            exits = [(merge, None, None, False)]
        box = Hosted(
            host=Leaf(node) if node.inner is None else self._expanded[node.id],
            paths=paths,
            merge=Leaf(merge) if merge else None,
        )
        return _Part(node, exits, box)

    def _boundaries(
        self, step: Map, host: Node, where: str, scope: Scope
    ) -> list[tuple[Node, _Part, bool]]:
        result = []
        count = 0
        for handler, hpos, (what, _) in self._handlers(step, where):
            count += 1
            suffix = "" if count == 1 else f"_{count}"
            if what == "timeout":
                has_after, has_at = "after" in handler, "at" in handler
                if has_after == has_at:
                    raise _Problem(f"{where}: timeout needs exactly one of after or at", hpos)
                interrupting = handler.get("interrupting", True)
                timer = self._timer(where, handler, "after" if has_after else "at")
                event = self._node(
                    scope,
                    f"{host.id}__timeout{suffix}",
                    "boundaryEvent",
                    f"after {handler['after']}" if has_after else f"at {handler['at']}",
                    hpos,
                    attrs={"attachedToRef": host.id}
                    | ({} if interrupting else {"cancelActivity": "false"}),
                    host=host,
                )
                event.body = timer
            elif what == "on_message":
                name = handler["message"]
                keys = list(handler.get("correlate") or [])
                self._remember_message(where, name, keys, handler.at("message"))
                interrupting = handler.get("interrupting", True)
                event = self._node(
                    scope,
                    f"{host.id}__message{suffix}",
                    "boundaryEvent",
                    name,
                    hpos,
                    attrs={"attachedToRef": host.id}
                    | ({} if interrupting else {"cancelActivity": "false"}),
                    host=host,
                )
                event.body = _catch_body(name, handler.get("into") or re.sub(r"\W", "_", name),
                                         keys)  # fmt: skip
            else:
                code = handler.get("code")
                if code is not None:
                    self.errors.add(code)
                event = self._node(
                    scope,
                    f"{host.id}__error{suffix}",
                    "boundaryEvent",
                    code or "any error",
                    hpos,
                    attrs={"attachedToRef": host.id},
                    host=host,
                )
                event.body = _error_body(code)
                interrupting = True
            event.lane = host.lane
            part = self._steps(handler.get("steps") or Seq(), scope)
            if part.entry is not None:
                self._flow(scope, event, part.entry)
            if part.entry is None and part.goto:
                self._retarget_goto(part, event)
            if not interrupting and part.open:
                end = self._node(scope, f"{event.id}__end", "endEvent", "Reminder done", hpos)
                self._connect(scope, part.exits or [(event, None, None, False)], end)
                part = _Part(
                    part.entry or end,
                    [],
                    Row([b for b in (part.box, Leaf(end)) if b is not None]),
                    open=False,
                )
            result.append((event, part, interrupting and part.open))
        return result

    def _timer(self, where: str, spec: Map, key: str) -> Any:
        value = spec[key]
        pos = spec.at(key)
        if key in ("after", "for"):
            if lang.ISO_DURATION.match(value.strip().upper()):
                expression, tag = repr(value.strip().upper()), "timeDuration"
            elif re.match(r"^(PT?\d|\d+(\.\d+)?\s*[a-zA-Z]+$)", value.strip(), re.IGNORECASE):
                raise _Problem(
                    f"{where}: {key!r} is {value!r}, which is not an ISO 8601 duration "
                    "(e.g. PT30M, PT4H, P1D, P1DT12H)",
                    pos,
                )
            else:
                expression, tag = self._expr(where, key, value, pos), "timeDuration"
        else:
            match = lang.ISO_DATETIME.match(value.strip())
            if match:
                if not match.group("offset"):
                    raise _Problem(
                        f"{where}: {key!r} {value!r} has no time zone: add Z or an offset "
                        "like +01:00",
                        pos,
                    )
                expression, tag = repr(value.strip()), "timeDate"
            elif re.match(r"^\d{4}-\d{2}-\d{2}", value.strip()):
                raise _Problem(
                    f"{where}: {key!r} {value!r} is not a date-time like 2026-03-02T14:00:00+01:00",
                    pos,
                )
            else:
                expression, tag = self._expr(where, key, value, pos), "timeDate"
        return _timer_body(tag, expression)

    # --- one method per step kind -------------------------------------------------
    def _human(
        self, tag: str, step: Map, step_id: str, title: str, where: str, pos: Pos, scope: Scope
    ) -> _Part:
        lane = self._lane(where, step)
        if lane is None and self.lanes:
            raise _Problem(
                f"{where}: the workflow has lanes, so say whose task this is: "
                f"lane: one of {', '.join(self.lanes)}",
                pos,
            )
        instructions = step.get("instructions")
        if instructions is not None:
            from jinja2 import TemplateSyntaxError
            from jinja2.sandbox import SandboxedEnvironment

            try:
                SandboxedEnvironment().parse(instructions)
            except TemplateSyntaxError as exc:
                raise _Problem(
                    f"{where}: instructions: template error on its line {exc.lineno}: "
                    f"{exc.message}",
                    step.at("instructions"),
                ) from None
        node = self._node(scope, step_id, tag, title, pos, lane=lane)
        node.body = _human_body(step.get("form"), instructions)
        return self._activity(step, node, where, scope)

    def _step_task(self, *args: Any) -> _Part:
        return self._human("userTask", *args)

    def _step_manual(self, *args: Any) -> _Part:
        return self._human("manualTask", *args)

    def _step_service(
        self, step: Map, step_id: str, title: str, where: str, pos: Pos, scope: Scope
    ) -> _Part:
        params = {}
        for name, value in (step.get("params") or {}).items():
            params[name] = self._expr(where, f"params.{name}", value, step["params"].at(name))
        if step["action"] in self.used_ids:
            # SpiffWorkflow finds elements by id, and the action's name is an id in the XML.
            raise _Problem(
                f"{where}: action {step['action']!r} has the same name as a step id or the "
                "process id; rename that step (id: ...)",
                step.at("action"),
            )
        node = self._node(scope, step_id, "serviceTask", title, pos)
        node.body = _service_body(step["action"], params, step.get("result"))
        return self._activity(step, node, where, scope)

    def _step_script(
        self, step: Map, step_id: str, title: str, where: str, pos: Pos, scope: Scope
    ) -> _Part:
        assignments = step["set"]
        if not assignments:
            raise _Problem(f"{where}: 'set' is empty; give variable: expression", step.at("set"))
        lines = []
        for name, value in assignments.items():
            expr = self._expr(where, f"set.{name}", value, assignments.at(name))
            lines.append(f"{name} = {expr}")
        script = "\n".join(lines)
        error = check_source(script, "exec")
        if error:
            raise _Problem(f"{where}: set: {error}", step.at("set"))
        node = self._node(scope, step_id, "scriptTask", title, pos)
        node.body = _script_body(script)
        return self._activity(step, node, where, scope)

    def _step_decision(
        self, step: Map, step_id: str, title: str, where: str, pos: Pos, scope: Scope
    ) -> _Part:
        if ("use" in step) == ("table" in step):
            raise _Problem(
                f"{where}: give exactly one of use (a deployed decision id) or table "
                "(an inline decision table)",
                pos,
            )
        if "use" in step:
            decision_id = step["use"]
        else:
            decision_id = f"{self.process_id}_{step_id}"
            self._check_table(where, step["table"], step.at("table"))
            self.decisions.append(_Decision(decision_id, title, step["table"], step.at("table")))
        node = self._node(scope, step_id, "businessRuleTask", title, pos)
        node.body = _decision_body(decision_id)
        return self._activity(step, node, where, scope)

    def _check_table(self, where: str, table: Map, pos: Pos) -> None:
        _check_keys(f"{where}: table", table, lang.TABLE)
        hit = table.get("hit", "first")
        if hit not in lang.HIT_POLICIES:
            raise _Problem(
                f"{where}: table: hit {hit!r} is not supported (use first, unique or collect)",
                table.at("hit"),
            )
        inputs = table["inputs"]
        if not inputs:
            raise _Problem(f"{where}: table: inputs is empty", table.at("inputs"))
        for expr, ipos in zip(inputs, inputs.item_pos, strict=True):
            self._expr(f"{where}: table", "inputs", expr, ipos)
        outputs = table["outputs"]
        rules = table["rules"]
        if not rules:
            raise _Problem(f"{where}: table: rules is empty", table.at("rules"))
        for number, (rule, rpos) in enumerate(zip(rules, rules.item_pos, strict=True), start=1):
            if not isinstance(rule, Map):
                raise _Problem(
                    f"{where}: table rule {number} must be a mapping with when and then, not "
                    f"{_kind_of(rule)}",
                    rpos,
                )
            _check_keys(f"{where}: table rule {number}", rule, lang.RULE)
            when, then = rule["when"], rule["then"]
            if len(when) != len(inputs):
                raise _Problem(
                    f"{where}: table rule {number}: when has {len(when)} tests for "
                    f"{len(inputs)} inputs",
                    rule.at("when"),
                )
            if len(then) != len(outputs):
                raise _Problem(
                    f"{where}: table rule {number}: then has {len(then)} values for "
                    f"{len(outputs)} outputs",
                    rule.at("then"),
                )
            for cell, cpos in zip(when, when.item_pos, strict=True):
                test = input_cell(cell)
                if test is None:
                    continue
                if "?" in test:
                    probe = test.replace("?", "value")
                elif re.match(r"^(<=|>=|==|!=|<|>)", test):
                    probe = f"value {test}"
                else:
                    probe = f"value == ({test})"
                if check_source(probe, "eval"):
                    raise _Problem(
                        f"{where}: table rule {number}: test {cell!r} is not a value, a "
                        "comparison like '< 58', a range like '58..62' or a list",
                        cpos,
                    )
            for cell, cpos in zip(then, then.item_pos, strict=True):
                if isinstance(cell, Map | Seq):
                    raise _Problem(
                        f"{where}: table rule {number}: output values are text, numbers or "
                        "true/false",
                        cpos,
                    )

    def _step_call(
        self, step: Map, step_id: str, title: str, where: str, pos: Pos, scope: Scope
    ) -> _Part:
        pre = [
            f"{name} = {self._expr(where, f'in.{name}', value, step['in'].at(name))}"
            for name, value in (step.get("in") or {}).items()
        ]
        post = [
            f"{name} = {self._expr(where, f'out.{name}', value, step['out'].at(name))}"
            for name, value in (step.get("out") or {}).items()
        ]
        node = self._node(
            scope, step_id, "callActivity", title, pos, attrs={"calledElement": step["process"]}
        )
        node.body = _call_body("\n".join(pre), "\n".join(post))
        return self._activity(step, node, where, scope)

    def _step_choose(
        self, step: Map, step_id: str, title: str, where: str, pos: Pos, scope: Scope
    ) -> _Part:
        branches = step["branches"]
        if not branches:
            raise _Problem(f"{where}: branches is empty", step.at("branches"))
        split = self._node(scope, step_id, "exclusiveGateway", title, pos)
        parts: list[tuple[_Part, str | None, str | None, bool]] = []
        earlier: list[str] = []
        for branch, _bpos in zip(branches, branches.item_pos, strict=True):
            condition = self._expr(where, "when", branch["when"], branch.at("when"))
            label = branch.get("label") or condition
            # SpiffWorkflow tests a gateway's flows in the order of their targets' height in
            # the diagram, not in file order. Excluding the earlier conditions keeps "the
            # first branch whose condition holds" true whatever the layout.
            guarded = " and ".join([*(f"not ({c})" for c in earlier), f"({condition})"])
            earlier.append(condition)
            parts.append(
                (
                    self._steps(branch.get("steps") or Seq(), scope),
                    guarded if len(earlier) > 1 else condition,
                    label,
                    False,
                )
            )
        # Without `otherwise`, the workflow goes on after the choose when no condition holds.
        otherwise = step.get("otherwise") or Seq()
        parts.append((self._steps(otherwise, scope), None, "otherwise", True))
        return self._fork(split, parts, "exclusiveGateway", where, pos, scope)

    def _step_parallel(
        self, step: Map, step_id: str, title: str, where: str, pos: Pos, scope: Scope
    ) -> _Part:
        branches = step["branches"]
        if len(branches) < 2:
            raise _Problem(f"{where}: parallel needs two or more branches", step.at("branches"))
        split = self._node(scope, step_id, "parallelGateway", title, pos)
        parts = []
        for branch, bpos in zip(branches, branches.item_pos, strict=True):
            part = self._steps(branch["steps"], scope)
            if not part.open:
                raise _Problem(
                    f"{where}: a parallel branch may not end or goto (the join would wait "
                    "for it forever); end after the parallel step instead",
                    bpos,
                )
            parts.append((part, None, branch.get("label"), False))
        return self._fork(split, parts, "parallelGateway", where, pos, scope)

    def _fork(
        self, split: Node, parts: list, tag: str, where: str, pos: Pos, scope: Scope
    ) -> _Part:
        open_exits: list = []
        boxes: list[Box | None] = []
        for part, condition, label, default in parts:
            if part.entry is not None:
                self._flow(scope, split, part.entry, condition, label, default)
                boxes.append(part.box)
                if part.open:
                    open_exits.append(part.exits)
            elif part.goto:
                self._retarget_goto(part, split, condition, label, default)
                boxes.append(None)
            else:
                # An empty branch goes straight to the join.
                open_exits.append([(split, condition, label, default)])
                boxes.append(None)
        if not open_exits:
            return _Part(split, [], Fork(Leaf(split), boxes, None), open=False)
        join = None
        exits = [e for group in open_exits for e in group]
        if len(open_exits) > 1 or tag == "parallelGateway":
            join = self._node(scope, f"{split.id}__join", tag, None, pos)
            self._connect(scope, exits, join)
            exits = [(join, None, None, False)]
        return _Part(split, exits, Fork(Leaf(split), boxes, Leaf(join) if join else None))

    def _step_wait(
        self, step: Map, step_id: str, title: str, where: str, pos: Pos, scope: Scope
    ) -> _Part:
        given = [k for k in ("message", "signal", "for", "until") if k in step]
        if len(given) != 1:
            raise _Problem(
                f"{where}: a wait needs exactly one of message, signal, for or until"
                + (f" (got {', '.join(given)})" if given else ""),
                pos,
            )
        what = given[0]
        for key in ("correlate", "into"):
            if key in step and what != "message":
                raise _Problem(f"{where}: {key!r} only goes with message", step.key_pos[key])
        if what == "message":
            name = step["message"]
            keys = list(step.get("correlate") or [])
            self._remember_message(where, name, keys, step.at("message"))
            into = step.get("into") or re.sub(r"\W", "_", name)
            node = self._node(
                scope, step_id, "receiveTask", title, pos, attrs={"messageRef": _msg_id(name)}
            )
            node.body = _receive_body(into, keys)
            return self._activity(step, node, where, scope)
        if "on_message" in step:
            raise _Problem(
                f"{where}: on_message goes with waits for a message (or with tasks); to wait "
                "for a signal or a time that a message may cut short, use a group with "
                "on_message",
                step.key_pos["on_message"],
            )
        if "timeout" in step:
            raise _Problem(
                f"{where}: a timeout goes with waits for a message (or with tasks); to wait "
                "for a signal or a time with a deadline, use a group with a timeout",
                step.key_pos["timeout"],
            )
        node = self._node(scope, step_id, "intermediateCatchEvent", title, pos)
        if what == "signal":
            self.signals.add(step["signal"])
            node.body = _event_body("signal", step["signal"])
        else:
            node.body = self._timer(where, step, what)
        return _Part(node, [(node, None, None, False)], Leaf(node))

    def _remember_message(self, where: str, name: str, keys: list[str], pos: Pos) -> None:
        known = self.messages.get(name)
        if known and keys and sorted(known) != sorted(keys):
            raise _Problem(
                f"{where}: message {name!r} is correlated by {', '.join(keys)} here but by "
                f"{', '.join(known)} elsewhere in this workflow",
                pos,
            )
        self.messages[name] = keys or known or []

    def _step_send(
        self, step: Map, step_id: str, title: str, where: str, pos: Pos, scope: Scope
    ) -> _Part:
        given = [k for k in ("message", "signal") if k in step]
        if len(given) != 1:
            raise _Problem(f"{where}: send needs exactly one of message or signal", pos)
        payload = {
            name: self._expr(where, f"payload.{name}", value, step["payload"].at(name))
            for name, value in (step.get("payload") or {}).items()
        }
        if "correlate" in step and given[0] != "message":
            raise _Problem(
                f"{where}: 'correlate' only goes with message", step.key_pos["correlate"]
            )
        node = self._node(scope, step_id, "intermediateThrowEvent", title, pos)
        if given[0] == "message":
            name = step["message"]
            keys = list(step.get("correlate") or [])
            # The receiver matches on the correlation keys, read from the payload; a key not
            # given in the payload is sent with the value of the variable of that name.
            for key in keys:
                payload.setdefault(key, key)
            self._remember_message(where, name, keys, step.at("message"))
            expression = "{" + ", ".join(f"{k!r}: {v}" for k, v in payload.items()) + "}"
            node.body = _send_body(name, expression)
        else:
            if payload:
                raise _Problem(f"{where}: a signal carries no payload", step.key_pos["payload"])
            self.signals.add(step["signal"])
            node.body = _event_body("signal", step["signal"])
        return _Part(node, [(node, None, None, False)], Leaf(node))

    def _step_for_each(
        self, step: Map, step_id: str, title: str, where: str, pos: Pos, scope: Scope
    ) -> _Part:
        if ("result" in step) != ("collect" in step):
            raise _Problem(
                f"{where}: give result and collect together (each pass's result is "
                "collected into the list)",
                step.key_pos.get("result") or step.key_pos["collect"],
            )
        if step["as"] == step["items"]:
            raise _Problem(f"{where}: 'as' must differ from 'items'", step.at("as"))
        # SpiffWorkflow names the loop's data items by their XML ids, which must be unique in
        # the file: two loops over `pallet`, or a step with that id, would clash. The items
        # get ids of their own, and scripts run for each pass copy them to and from the names
        # the engineer chose.
        item_id = f"{step['as']}__{step_id}"
        pre = f"{step['as']} = {item_id}"
        if step.get("result") is not None:
            output_id, collect = f"{step['result']}__{step_id}", step["collect"]
            post = f"{output_id} = {step['result']}"
        else:
            # Without an output SpiffWorkflow merges each pass's data back, the item variable
            # included, and the next pass fails ("input item already exists"). Each pass
            # hands its item back into the list it came from instead (an update in place):
            # that keeps the passes apart, and — unlike a separate output list, which must be
            # empty when the loop starts — lets a loop be entered again (a goto back to it).
            output_id, collect = f"{item_id}__out", step["items"]
            post = f"{output_id} = {step['as']}"
        loop = _chain(
            _multi_instance_body(
                step["items"],
                item_id,
                collect,
                output_id,
                sequential=not step.get("parallel", False),
            ),
            _pre_script_body(pre),
            _post_script_body(post),
        )
        if self._direct_loop(step):
            inner = step["steps"][0]
            kind = self._kind(inner, step["steps"].item_pos[0])
            part = self._step(kind, inner, step["steps"].item_pos[0], scope)
            node = part.entry
            assert node is not None
            original = node.body
            node.body = _chain(original, loop)
            self.positions.setdefault(step_id, pos)
            return part
        node, box = self._subprocess(step, step_id, title, where, pos, scope)
        node.body = _chain(node.body, loop)
        return _Part(node, [(node, None, None, False)], box)

    def _subprocess(
        self, step: Map, step_id: str, title: str, where: str, pos: Pos, scope: Scope
    ) -> tuple[Node, Box]:
        inner_scope = Scope(step_id, parent=scope)
        node = self._node(scope, step_id, "subProcess", title, pos, inner=inner_scope)
        node.lane = self._first_lane(step["steps"])
        start = self._node(inner_scope, f"{step_id}__start", "startEvent", None, pos)
        part = self._steps(step["steps"], inner_scope)
        items: list[Box] = [Leaf(start)]
        exits = [(start, None, None, False)]
        if part.entry is not None:
            self._flow(inner_scope, start, part.entry)
            items.append(part.box)  # type: ignore[arg-type]
            exits = part.exits
        if part.open:
            end = self._node(inner_scope, f"{step_id}__end", "endEvent", None, pos)
            self._connect(inner_scope, exits, end)
            items.append(Leaf(end))
        box = Expanded(node, Row(items))
        self._expanded[step_id] = box
        return node, box

    @property
    def _expanded(self) -> dict[str, Expanded]:
        return self.__dict__.setdefault("_expanded_boxes", {})

    def _first_lane(self, steps: Seq) -> str | None:
        for step in steps:
            if isinstance(step, Map) and isinstance(step.get("lane"), str):
                return step["lane"]
        return None

    def _step_group(
        self, step: Map, step_id: str, title: str, where: str, pos: Pos, scope: Scope
    ) -> _Part:
        node, _ = self._subprocess(step, step_id, title, where, pos, scope)
        return self._activity(step, node, where, scope)

    def _step_repeat(
        self, step: Map, step_id: str, title: str, where: str, pos: Pos, scope: Scope
    ) -> _Part:
        until = self._expr(where, "until", step["until"], step.at("until"))
        if until in ("False", "0", "None"):
            raise _Problem(
                f"{where}: until is always false, so the loop never ends", step.at("until")
            )
        merge = self._node(scope, step_id, "exclusiveGateway", title, pos)
        body = self._steps(step["steps"], scope)
        if body.entry is None:
            raise _Problem(f"{where}: repeat needs at least one step", step.at("steps"))
        if not body.open:
            raise _Problem(
                f"{where}: the repeated steps end the path, so the loop never repeats",
                step.at("steps"),
            )
        self._flow(scope, merge, body.entry)
        test = self._node(scope, f"{step_id}__until", "exclusiveGateway", f"until {until}", pos)
        self._connect(scope, body.exits, test)
        back = self._flow(scope, test, merge, None, "again", default=True, detour=True)
        box = Loop(Leaf(merge), body.box, Leaf(test), back)  # type: ignore[arg-type]
        return _Part(merge, [(test, until, "done", False)], box)

    def _step_end(
        self, step: Map, step_id: str, title: str, where: str, pos: Pos, scope: Scope
    ) -> _Part:
        node = self._node(scope, step_id, "endEvent", title, pos)
        code = step.get("error")
        if code is not None:
            self.errors.add(code)
            node.body = _error_body(code)
        return _Part(node, [], Leaf(node), open=False)

    # ------------------------------------------------------------------ gotos and checks
    def _retarget_goto(
        self,
        part: Any,
        source: Node,
        condition: str | None = None,
        label: str | None = None,
        default: bool = False,
    ) -> None:
        exits, target, tpos, scope_id = part.goto
        exits.append((source, condition, label, default))

    def _resolve_gotos(self) -> None:
        for exits, target, pos, scope_id in self.gotos:
            info = self.steps[target]
            if info.scope_id != scope_id or info.entry is None:
                raise _Problem(f"goto {target!r}: cannot jump into or out of a group or loop", pos)
            scope = info.entry.scope
            for source, condition, label, default in exits:
                self._flow(scope, source, info.entry, condition, label, default, detour=True)

    def _check_can_end(self, scope: Scope) -> None:
        """Every node must have a way to an end event (else: a cycle without exit)."""
        incoming: dict[int, list[Node]] = {}
        for flow in scope.flows:
            incoming.setdefault(id(flow.target), []).append(flow.source)
        can_end: set[int] = set()
        todo = [n for n in scope.nodes if n.tag == "endEvent"]
        while todo:
            node = todo.pop()
            if id(node) in can_end:
                continue
            can_end.add(id(node))
            todo.extend(incoming.get(id(node), []))
            if node.tag == "boundaryEvent" and node.host is not None:
                todo.append(node.host)
        for node in scope.nodes:
            if node.inner is not None:
                self._check_can_end(node.inner)
        stuck = [n for n in scope.nodes if id(n) not in can_end and n.pos is not None]
        steps = [n for n in stuck if n.id in self.steps] or stuck
        if steps:
            node = min(steps, key=lambda n: (n.pos.line, n.pos.column))  # type: ignore[union-attr]
            raise _Problem(
                f'step "{node.id}" can never reach an end: every path from it loops back '
                "(goto) with no way out; add a branch that continues or ends",
                node.pos,
            )

    def _assign_lanes(self, scope: Scope) -> None:
        """Automated steps, gateways and events are drawn in the lane of the step that leads
        to them (the first incoming flow), so the diagram reads along the main path."""
        if not self.lanes:
            return
        first_source: dict[int, Node] = {}
        for flow in scope.flows:
            first_source.setdefault(id(flow.target), flow.source)
        by_id = {node.id: node for node in scope.nodes}
        for node in scope.nodes:
            # A join (or merge, or loop test) belongs with the step it closes, so the main
            # path stays in its lane after a branch that went elsewhere.
            base, sep, suffix = node.id.rpartition("__")
            if sep and suffix in ("join", "merge", "until") and base in by_id:
                first_source[id(node)] = by_id[base]
        for _ in range(len(scope.nodes) + 1):
            changed = False
            for node in scope.nodes:
                if node.lane is not None:
                    continue
                source = node.host or first_source.get(id(node))
                if source is not None and source.lane is not None:
                    node.lane, changed = source.lane, True
            if not changed:
                break
        for node in scope.nodes:
            if node.lane is None:
                node.lane = self.lanes[0]


# ---------------------------------------------------------------------------- XML bodies
def input_cell(cell: Any) -> str | None:
    """A decision table test as SpiffWorkflow evaluates it (None: matches anything)."""
    if cell is None or (isinstance(cell, str) and cell.strip() in ("", "-")):
        return None
    if isinstance(cell, bool):
        return "True" if cell else "False"
    if isinstance(cell, int | float):
        return repr(cell)
    if isinstance(cell, Seq | list):
        return f"? in [{', '.join(repr(v) for v in cell)}]"
    text = str(cell).strip()
    if re.match(r"^(<=|>=|==|!=|<|>)", text):
        return text
    bounds = re.match(r"^(-?\d+(?:\.\d+)?)\s*\.\.\s*(-?\d+(?:\.\d+)?)$", text)
    if bounds:
        return f"{bounds.group(1)} <= ? <= {bounds.group(2)}"
    return repr(text)


def output_cell(cell: Any) -> str:
    if isinstance(cell, bool):
        return "True" if cell else "False"
    if cell is None:
        return "None"
    return repr(cell)


def _msg_id(name: str) -> str:
    return "message__" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _chain(*bodies: Any) -> Any:
    def body(element: Any) -> None:
        for b in bodies:
            if b is not None:
                b(element)

    return body


def _human_body(form: str | None, instructions: str | None) -> Any:
    from taktflow.yamlflow import emit

    return lambda el: emit.human(el, form, instructions)


def _service_body(action: str, params: dict[str, str], result: str | None) -> Any:
    from taktflow.yamlflow import emit

    return lambda el: emit.service(el, action, params, result)


def _script_body(script: str) -> Any:
    from taktflow.yamlflow import emit

    return lambda el: emit.script(el, script)


def _decision_body(decision_id: str) -> Any:
    from taktflow.yamlflow import emit

    return lambda el: emit.decision(el, decision_id)


def _call_body(pre: str, post: str) -> Any:
    from taktflow.yamlflow import emit

    return lambda el: emit.scripts(el, pre, post)


def _receive_body(into: str, keys: list[str]) -> Any:
    from taktflow.yamlflow import emit

    return lambda el: emit.receive(el, into, keys)


def _catch_body(name: str, into: str, keys: list[str]) -> Any:
    from taktflow.yamlflow import emit

    return lambda el: emit.message_catch(el, _msg_id(name), into, keys)


def _send_body(name: str, expression: str) -> Any:
    from taktflow.yamlflow import emit

    return lambda el: emit.send(el, _msg_id(name), expression)


def _start_message_body(name: str, into: str) -> Any:
    from taktflow.yamlflow import emit

    return lambda el: emit.message_event(el, _msg_id(name), into)


def _event_body(kind: str, name: str) -> Any:
    from taktflow.yamlflow import emit

    if kind == "message":
        return lambda el: emit.message_event(el, _msg_id(name))
    return lambda el: emit.signal_event(el, name)


def _error_body(code: str | None) -> Any:
    from taktflow.yamlflow import emit

    return lambda el: emit.error_event(el, code)


def _timer_body(tag: str, expression: str) -> Any:
    from taktflow.yamlflow import emit

    return lambda el: emit.timer_event(el, tag, expression)


def _pre_script_body(line: str) -> Any:
    from taktflow.yamlflow import emit

    return lambda el: emit.prepend_pre_script(el, line)


def _post_script_body(line: str) -> Any:
    from taktflow.yamlflow import emit

    return lambda el: emit.append_post_script(el, line)


def _multi_instance_body(
    items: str, item: str, collect: str | None, result: str | None, sequential: bool
) -> Any:
    from taktflow.yamlflow import emit

    return lambda el: emit.multi_instance(el, items, item, collect, result, sequential)


__all__ = ["Compiled", "compile_text", "input_cell", "output_cell"]
