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


def load(text: str, kind: str = "workflow") -> Any:
    """Parse one YAML document into Map / Seq / plain values; raise YamlProblem.

    `kind` names the file in messages (workflow, form, connector, simulation).
    """
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        raise YamlProblem(
            f"character #x{ord(bad.group()):04x} is not allowed in a {kind} file",
            _pos_at(text, bad.start()),
        )
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        hint = ": split it into workflows that call each other" if kind == "workflow" else ""
        raise YamlProblem(
            f"file is {size:,} bytes; {kind} files are limited to {MAX_BYTES:,} bytes "
            f"({MAX_BYTES // 1024} KiB){hint}",
            Pos(1, 1),
        )
    tab = _leading_tab(text)
    if tab is not None:
        raise YamlProblem("tab character in indentation: indent with spaces", tab)
    deep = _too_deep(text)
    if deep is not None:
        raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep", deep)
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        raise YamlProblem(
            f"character #x{exc.character:04x} is not allowed in a {kind} file",
            _pos_at(text, exc.position),
        ) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise YamlProblem(*_explain(exc)) from None
    except yaml.YAMLError as exc:  # e.g. unacceptable characters in the stream
        raise YamlProblem(f"not valid YAML: {exc}", None) from None
    except RecursionError:
        raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep", None) from None
    finally:
        loader.dispose()
    if node is None:
        raise YamlProblem("file is empty (or holds only comments)", Pos(1, 1))
    return _convert(node, 0, kind)


# Characters XML cannot carry (so no BPMN can hold them): C0 controls other than tab, line
# feed and carriage return; lone surrogates; U+FFFE and U+FFFF.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _pos_at(text: str, offset: int) -> Pos:
    before = text[:offset]
    return Pos(before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)


def _too_deep(text: str) -> Pos | None:
    """Flow collections ([ and {) nested deeper than MAX_DEPTH, found before PyYAML recurses."""
    depth = 0
    quote = ""
    for offset, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            continue
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return _pos_at(text, offset)
        elif char in "]}":
            depth = max(depth - 1, 0)
        elif char == "\n":
            quote = ""
    return None


def _explain(exc: yaml.MarkedYAMLError) -> tuple[str, Pos | None]:
    """PyYAML's parser words, translated for people who edit workflow files."""
    problem = exc.problem or str(exc)
    context = exc.context or ""
    pos = _mark_pos(exc)
    if "expected <block end>" in problem or "expected <block end>" in context:
        return (
            "wrong indentation: this line is indented differently from the lines above it "
            "(keys of one mapping line up; list items start with '- ' at the same column)",
            pos,
        )
    if "mapping values are not allowed here" in problem:
        return (
            "unexpected ':' — quote a value that contains ': ' (e.g. title: \"Note: check\"), "
            "or check the indentation",
            pos,
        )
    if "end of stream" in problem and "quoted scalar" in context and exc.context_mark:
        start = exc.context_mark
        return (
            "the quote that starts here is never closed",
            Pos(start.line + 1, start.column + 1),
        )
    if "found character '\\t'" in problem:
        return ("tab character: indent with spaces", pos)
    if context:
        problem = f"{context}, {problem}"
    return (f"not valid YAML: {problem}", pos)


def _leading_tab(text: str) -> Pos | None:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip(" ")
        if stripped.startswith("\t"):
            return Pos(number, len(line) - len(stripped) + 1)
    return None


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def _convert(node: Node, depth: int, kind: str) -> Any:
    if depth > MAX_DEPTH:
        raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep", Pos.of(node))
    if isinstance(node, MappingNode | SequenceNode) and node.tag not in _PLAIN_TAGS:
        raise YamlProblem(f"YAML tag {node.tag} is not supported", Pos.of(node))
    if isinstance(node, MappingNode):
        result = Map()
        result.pos, result.key_pos, result.value_pos = Pos.of(node), {}, {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                shown = key_node.value if isinstance(key_node, ScalarNode) else "this key"
                raise YamlProblem(
                    f'key {shown!r} must be a word: quote it ("{shown}":) or use another name'
                    if isinstance(key_node, ScalarNode)
                    else "keys must be words, not lists or mappings",
                    Pos.of(key_node),
                )
            key = key_node.value
            if key in result:
                first = result.key_pos[key]
                raise YamlProblem(
                    f"key {key!r} appears twice in this mapping (first on line {first.line})",
                    Pos.of(key_node),
                )
            result[key] = _convert(value_node, depth + 1, kind)
            result.key_pos[key] = Pos.of(key_node)
            result.value_pos[key] = Pos.of(value_node)
        return result
    if isinstance(node, SequenceNode):
        items = Seq()
        items.pos, items.item_pos = Pos.of(node), []
        for item in node.value:
            items.append(_convert(item, depth + 1, kind))
            items.item_pos.append(Pos.of(item))
        return items
    assert isinstance(node, ScalarNode)
    return _scalar(node, kind)


def _scalar(node: ScalarNode, kind: str) -> Any:
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
        bad = _FORBIDDEN.search(value)
        if bad is not None:  # written as an escape ("\x00"): XML could not carry it
            raise YamlProblem(
                f"character #x{ord(bad.group()):04x} is not allowed in a {kind} file",
                Pos.of(node),
            )
        return value
    raise YamlProblem(f"YAML tag {tag} is not supported", Pos.of(node))
