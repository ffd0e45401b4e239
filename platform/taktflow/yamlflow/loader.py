"""Reading YAML with positions: every mapping, list and value keeps its line and column.

PyYAML's safe loader silently keeps the last of two equal keys, turns `2026-03-01` into a
date and `on`/`yes` into True. A workflow file is reviewed and edited by people, so here:
duplicate keys are errors, only `true`/`false` are booleans, dates stay text (the compiler
decides what a value means), anchors and aliases are refused, and every problem names the
line and column where it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

#: Larger workflow files are refused before parsing (a real one is a few kilobytes).
MAX_BYTES = 512 * 1024
#: Deeper nesting than this is refused (protects the recursive compiler).
MAX_DEPTH = 60


@dataclass(frozen=True)
class Pos:
    """1-based line and column of a value in the file."""

    line: int
    column: int

    @classmethod
    def of(cls, node: Node) -> Pos:
        return cls(node.start_mark.line + 1, node.start_mark.column + 1)


class YamlProblem(Exception):
    """The text is not YAML we accept; `pos` is where."""

    def __init__(self, message: str, pos: Pos | None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


class Map(dict[str, Any]):
    """A mapping that remembers where it and each of its keys and values are."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pos = Pos(1, 1)
        self.key_pos: dict[str, Pos] = {}
        self.value_pos: dict[str, Pos] = {}

    def at(self, key: str) -> Pos:
        """Where the value of `key` is (or the mapping itself when the key is absent)."""
        return self.value_pos.get(key, self.pos)


class Seq(list[Any]):
    """A list that remembers where it and each of its items are."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.pos = Pos(1, 1)
        self.item_pos: list[Pos] = [self.pos] * len(self)


class _Resolver(yaml.resolver.BaseResolver):
    """YAML 1.2-like plain scalars: null, true/false, ints, floats; everything else is text."""


_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789")
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)


class _Loader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    _Resolver,
):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Resolver.__init__(self)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise YamlProblem(
                "aliases (*name) are not supported: write the value out", _mark_pos(event)
            )
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise YamlProblem(
                f"anchors (&{anchor}) are not supported: write the value out", _mark_pos(event)
            )
        return super().compose_node(parent, index)


def _mark_pos(thing: Any) -> Pos | None:
    mark = getattr(thing, "start_mark", None) or getattr(thing, "problem_mark", None)
    if mark is None:
        return None
    return Pos(mark.line + 1, mark.column + 1)


def load(text: str) -> Any:
    """Parse one YAML document into Map / Seq / plain values; raise YamlProblem."""
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise YamlProblem(
            f"file is {size // 1024} KiB; workflow files are limited to {MAX_BYTES // 1024} KiB",
            None,
        )
    tab = _leading_tab(text)
    if tab is not None:
        raise YamlProblem("tab character in indentation: indent with spaces", tab)
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        pos = Pos(before.count("\n") + 1, len(before) - before.rfind("\n"))
        raise YamlProblem(
            f"character #x{exc.character:04x} is not allowed in a YAML file", pos
        ) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or str(exc)
        if exc.context:
            problem = f"{exc.context}, {problem}"
        raise YamlProblem(f"not valid YAML: {problem}", _mark_pos(exc)) from None
    except yaml.YAMLError as exc:  # e.g. unacceptable characters in the stream
        raise YamlProblem(f"not valid YAML: {exc}", None) from None
    finally:
        loader.dispose()
    if node is None:
        raise YamlProblem("file is empty", Pos(1, 1))
    return _convert(node, 0)


def _leading_tab(text: str) -> Pos | None:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip(" ")
        if stripped.startswith("\t"):
            return Pos(number, len(line) - len(stripped) + 1)
    return None


def _convert(node: Node, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep", Pos.of(node))
    if isinstance(node, MappingNode):
        result = Map()
        result.pos, result.key_pos, result.value_pos = Pos.of(node), {}, {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                raise YamlProblem(
                    "keys must be plain words, not lists, mappings or numbers", Pos.of(key_node)
                )
            key = key_node.value
            if key in result:
                first = result.key_pos[key]
                raise YamlProblem(
                    f"key {key!r} appears twice in this mapping (first on line {first.line})",
                    Pos.of(key_node),
                )
            result[key] = _convert(value_node, depth + 1)
            result.key_pos[key] = Pos.of(key_node)
            result.value_pos[key] = Pos.of(value_node)
        return result
    if isinstance(node, SequenceNode):
        items = Seq()
        items.pos, items.item_pos = Pos.of(node), []
        for item in node.value:
            items.append(_convert(item, depth + 1))
            items.item_pos.append(Pos.of(item))
        return items
    assert isinstance(node, ScalarNode)
    return _scalar(node)


def _scalar(node: ScalarNode) -> Any:
    tag, value = node.tag, node.value
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        return value.lower() == "true"
    if tag == "tag:yaml.org,2002:int":
        return int(value)
    if tag == "tag:yaml.org,2002:float":
        return float(value)
    if tag == "tag:yaml.org,2002:str":
        return value
    raise YamlProblem(f"YAML tag {tag} is not supported", Pos.of(node))
