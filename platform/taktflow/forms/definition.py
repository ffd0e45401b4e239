"""Form definitions (forms/<name>.yaml): read, checked with lines, into plain dataclasses.

A definition is checked completely when it is deployed or linted, so that a broken form is
reported to the engineer with file and line, never to an operator opening a task. Every
problem is collected, not only the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import jinja2

from taktflow.errors import DefinitionError, DefinitionProblem
from taktflow.forms.templating import ENV
from taktflow.yamlflow.loader import Map, Pos, Seq, YamlProblem, load

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
DATA_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

#: Field types and the keys each accepts besides the common ones.
TYPE_KEYS: dict[str, set[str]] = {
    "text": {"min_length", "max_length", "pattern", "pattern_hint", "placeholder"},
    "textarea": {"max_length", "rows", "placeholder"},
    "integer": {"min", "max", "unit"},
    "decimal": {"min", "max", "unit", "decimals"},
    "select": {"options", "options_from", "lookup", "lookup_role"},
    "multiselect": {"options", "options_from", "lookup", "lookup_role"},
    "checkbox": set(),
    "date": set(),
    "time": set(),
    "datetime": set(),
    "measurement": {
        "unit",
        "decimals",
        "nominal",
        "nominal_from",
        "lower",
        "lower_from",
        "upper",
        "upper_from",
        "tolerance",
    },  # fmt: skip
    "scan": {"pattern", "pattern_hint", "max_length", "placeholder"},
    "signature": {"meaning", "signs"},
    "display": {"value", "from", "unit"},
}
COMMON_KEYS = {"name", "type", "label", "help", "required", "show_if", "default", "default_from"}
#: Types that hold no operator input.
NO_INPUT = {"display"}
#: Types without a default (the operator must act on them).
NO_DEFAULT = {"signature", "display"}
SHOW_IF_TESTS = ("equals", "not_equals", "in", "filled", "out_of_tolerance")
FORM_KEYS = {"form", "title", "description", "fields", "sections"}
SECTION_KEYS = {"title", "help", "fields", "show_if"}
DEFAULT_MAX_TEXT = 500
DEFAULT_MAX_TEXTAREA = 4000
#: Suffix of the key that records a measurement's verdict next to its value.
VERDICT_SUFFIX = "_verdict"


@dataclass(frozen=True)
class Option:
    value: Any
    label: str


@dataclass(frozen=True)
class ShowIf:
    field: str
    test: str
    operand: Any
    #: Where the condition is written, so that a problem found later points at it.
    pos: Pos | None = None


@dataclass
class Field:
    name: str
    type: str
    label: str
    help: str | None = None
    required: bool = False
    show_if: ShowIf | None = None
    default: Any = None
    default_from: str | None = None
    # type-specific settings, already checked
    min: float | None = None
    max: float | None = None
    unit: str | None = None
    decimals: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    pattern_hint: str | None = None
    placeholder: str | None = None
    rows: int | None = None
    options: list[Option] | None = None
    options_from: str | None = None
    lookup: str | None = None
    lookup_role: str | None = None
    limits: dict[str, Any] = field(default_factory=dict)  # nominal/lower/upper: number|path
    meaning: str | None = None
    signs: list[str] | None = None
    value: str | None = None
    value_from: str | None = None
    line: int = 0

    @property
    def takes_input(self) -> bool:
        return self.type not in NO_INPUT


@dataclass
class Section:
    title: str | None
    help: str | None
    fields: list[Field]
    show_if: ShowIf | None = None


@dataclass
class FormDefinition:
    name: str
    title: str
    description: str | None
    sections: list[Section]
    file: str = ""

    @property
    def fields(self) -> list[Field]:
        return [f for s in self.sections for f in s.fields]

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def section_of(self, name: str) -> Section | None:
        return next((s for s in self.sections if any(f.name == name for f in s.fields)), None)


def is_form_text(text: str, key: str = "form") -> bool:
    """Whether a .yaml file is a form definition (its first key is `form:`), not a workflow
    (`key` asks the same of other files, e.g. `connector:`)."""
    for line in text.splitlines():
        # A byte order mark (Windows editors write one) is not part of the first key.
        stripped = line.strip().lstrip("\ufeff").strip()
        if not stripped or stripped.startswith("#") or stripped == "---":
            continue
        return stripped.startswith(f"{key}:")
    return False


def parse_form(text: str, file: str = "<form>") -> FormDefinition:
    """The form in `text`; DefinitionError listing every problem with its line."""
    reader = _Reader(file)
    try:
        doc = load(text, kind="form")
    except YamlProblem as exc:
        reader.problem(exc.message, exc.pos)
        raise DefinitionError(reader.problems) from None
    form = reader.form(doc)
    if reader.problems or form is None:
        raise DefinitionError(reader.problems)
    form.file = file
    return form


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[DefinitionProblem] = []

    def problem(self, reason: str, pos: Pos | None, element: str | None = None) -> None:
        self.problems.append(
            DefinitionProblem(
                self.file,
                reason,
                element=element,
                line=pos.line if pos else None,
                column=pos.column if pos else None,
            )
        )

    # ------------------------------------------------------------------ form
    def form(self, doc: Any) -> FormDefinition | None:
        if not isinstance(doc, Map):
            self.problem("a form file is a mapping that starts with `form: <name>`", Pos(1, 1))
            return None
        self._unknown(doc, FORM_KEYS, "form")
        name = doc.get("form")
        if not isinstance(name, str) or not NAME.match(name):
            self.problem(
                f"form: the name must be lower-case letters, digits and '_' starting with a "
                f"letter, not {name!r}",
                doc.at("form"),
            )
            name = "form"
        title = self._text(doc, "title", "form") or name.replace("_", " ").capitalize()
        description = self._text(doc, "description", "form")
        if ("fields" in doc) == ("sections" in doc):
            self.problem(
                "form: give either `fields:` (one list) or `sections:` (titled groups of "
                "fields), not both and not neither",
                doc.pos,
            )
            return None
        sections: list[Section] = []
        if "fields" in doc:
            sections.append(Section(None, None, self._fields(doc["fields"], doc.at("fields"))))
        else:
            raw = doc["sections"]
            if not isinstance(raw, Seq) or not raw:
                self.problem("sections: expected a list of sections", doc.at("sections"))
                return None
            for index, item in enumerate(raw):
                pos = raw.item_pos[index]
                if not isinstance(item, Map):
                    self.problem("a section is a mapping with `title:` and `fields:`", pos)
                    continue
                self._unknown(item, SECTION_KEYS, "section")
                if "fields" not in item:
                    self.problem("section: `fields:` is missing", item.pos)
                    continue
                sections.append(
                    Section(
                        self._text(item, "title", "section"),
                        self._text(item, "help", "section"),
                        self._fields(item["fields"], item.at("fields")),
                        self._show_if(item, "section"),
                    )
                )
        form = FormDefinition(name, title, description, sections)
        self._cross_check(form)
        return form

    def _fields(self, raw: Any, pos: Pos) -> list[Field]:
        if not isinstance(raw, Seq) or not raw:
            self.problem("fields: expected a list of fields", pos)
            return []
        fields = []
        for index, item in enumerate(raw):
            if not isinstance(item, Map):
                self.problem(
                    "a field is a mapping with at least `name:` and `type:`", raw.item_pos[index]
                )
                continue
            made = self._field(item)
            if made is not None:
                fields.append(made)
        return fields

    # ------------------------------------------------------------------ one field
    def _field(self, item: Map) -> Field | None:
        name = item.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            self.problem(
                "field: `name:` must be lower-case letters, digits and '_' starting with a "
                f"letter (it becomes the task data key), not {name!r}",
                item.at("name"),
            )
            return None
        where = f"field {name!r}"
        kind = item.get("type")
        if not isinstance(kind, str) or kind not in TYPE_KEYS:  # a list or mapping is unhashable
            self.problem(
                f"{where}: unknown type {kind!r} (types: {', '.join(TYPE_KEYS)})",
                item.at("type"),
            )
            return None
        self._unknown(item, COMMON_KEYS | TYPE_KEYS[kind], where, kind)
        label = self._text(item, "label", where) or name.replace("_", " ").capitalize()
        made = Field(name=name, type=kind, label=label, line=item.pos.line)
        made.help = self._text(item, "help", where)
        made.required = self._bool(item, "required", where)
        made.show_if = self._show_if(item, where)
        made.default_from = self._path(item, "default_from", where)
        if "default" in item:
            made.default = item["default"]
        if kind in NO_DEFAULT and ("default" in item or "default_from" in item):
            key = "default" if "default" in item else "default_from"
            self.problem(f"{where}: a {kind} field has no default", item.at(key))
        if "default" in item and "default_from" in item:
            self.problem(f"{where}: give `default` or `default_from`, not both", item.pos)
        getattr(self, f"_type_{kind}", lambda f, i, w: None)(made, item, where)
        return made

    def _type_text(self, f: Field, item: Map, where: str) -> None:
        f.min_length = self._int(item, "min_length", where, minimum=0)
        f.max_length = self._int(item, "max_length", where, minimum=1) or DEFAULT_MAX_TEXT
        f.placeholder = self._text(item, "placeholder", where)
        self._pattern(f, item, where)

    def _type_textarea(self, f: Field, item: Map, where: str) -> None:
        f.max_length = self._int(item, "max_length", where, minimum=1) or DEFAULT_MAX_TEXTAREA
        f.rows = self._int(item, "rows", where, minimum=1) or 4
        f.placeholder = self._text(item, "placeholder", where)

    def _type_scan(self, f: Field, item: Map, where: str) -> None:
        f.max_length = self._int(item, "max_length", where, minimum=1) or 100
        f.placeholder = self._text(item, "placeholder", where)
        self._pattern(f, item, where)

    def _type_integer(self, f: Field, item: Map, where: str) -> None:
        f.min = self._number(item, "min", where, whole=True)
        f.max = self._number(item, "max", where, whole=True)
        f.unit = self._text(item, "unit", where)
        self._range(f, item, where)
        if f.default is not None and (not isinstance(f.default, int) or f.default is True):
            self.problem(f"{where}: default must be a whole number", item.at("default"))

    def _type_decimal(self, f: Field, item: Map, where: str) -> None:
        f.min = self._number(item, "min", where)
        f.max = self._number(item, "max", where)
        f.unit = self._text(item, "unit", where)
        f.decimals = self._int(item, "decimals", where, minimum=0)
        self._range(f, item, where)
        if f.default is not None and not _is_number(f.default):
            self.problem(f"{where}: default must be a number", item.at("default"))

    def _type_measurement(self, f: Field, item: Map, where: str) -> None:
        f.unit = self._text(item, "unit", where)
        f.decimals = self._int(item, "decimals", where, minimum=0)
        for limit in ("nominal", "lower", "upper"):
            fixed, path = limit in item, f"{limit}_from" in item
            if fixed and path:
                self.problem(f"{where}: give `{limit}` or `{limit}_from`, not both", item.pos)
                f.limits[limit] = None  # given, though wrongly: no "tolerance needs nominal" too
            elif fixed:
                f.limits[limit] = self._number(item, limit, where)
            elif path:
                f.limits[limit] = self._path(item, f"{limit}_from", where)
        if "tolerance" in item:
            f.limits["tolerance"] = self._number(item, "tolerance", where)
            if "nominal" not in f.limits or "lower" in f.limits or "upper" in f.limits:
                self.problem(
                    f"{where}: `tolerance` (plus or minus) goes with `nominal` or "
                    "`nominal_from`, instead of `lower`/`upper`",
                    item.at("tolerance"),
                )
            elif f.limits["tolerance"] is not None and f.limits["tolerance"] < 0:
                self.problem(f"{where}: tolerance must not be negative", item.at("tolerance"))
        elif "lower" not in f.limits and "upper" not in f.limits:
            self.problem(
                f"{where}: a measurement needs a tolerance: `lower`/`upper` limits (or "
                "`lower_from`/`upper_from` to take them from the task data), or `nominal` "
                "with `tolerance`",
                item.pos,
            )
        low, high = f.limits.get("lower"), f.limits.get("upper")
        if _is_number(low) and _is_number(high) and low > high:
            self.problem(f"{where}: lower limit {low} is above upper limit {high}", item.pos)

    def _type_select(self, f: Field, item: Map, where: str) -> None:
        sources = [k for k in ("options", "options_from", "lookup") if k in item]
        if len(sources) != 1:
            self.problem(
                f"{where}: give exactly one of `options` (a list), `options_from` (a task "
                "data list) or `lookup` (a named list such as users)",
                item.pos,
            )
            return
        if "options" in item:
            f.options = self._options(item, where)
        elif "options_from" in item:
            f.options_from = self._path(item, "options_from", where)
        else:
            f.lookup = self._text(item, "lookup", where)
            f.lookup_role = self._text(item, "lookup_role", where)
        if f.options is not None and "default" in item:
            values = f.default if isinstance(f.default, list) else [f.default]
            known = {str(o.value) for o in f.options}
            for value in values:
                if str(value) not in known:
                    self.problem(
                        f"{where}: default {value!r} is not one of the options", item.at("default")
                    )

    _type_multiselect = _type_select

    def _type_signature(self, f: Field, item: Map, where: str) -> None:
        f.meaning = self._text(item, "meaning", where)
        if not f.meaning:
            self.problem(
                f"{where}: a signature needs `meaning:` (what the signer confirms, e.g. "
                "'Released for production')",
                item.pos,
            )
        if "signs" in item:
            raw = item["signs"]
            # An empty list would sign every field (the default), not none: refuse it.
            if not isinstance(raw, Seq) or not raw or not all(isinstance(x, str) for x in raw):
                self.problem(f"{where}: signs: expected a list of field names", item.at("signs"))
            else:
                f.signs = list(raw)

    def _type_display(self, f: Field, item: Map, where: str) -> None:
        f.unit = self._text(item, "unit", where)
        if ("value" in item) == ("from" in item):
            self.problem(
                f"{where}: a display field shows `value:` (text, may use {{{{ data }}}}) or "
                "`from:` (a task data path); give one",
                item.pos,
            )
        f.value = self._text(item, "value", where)
        f.value_from = self._path(item, "from", where)
        if f.required:
            self.problem(f"{where}: a display field cannot be required", item.at("required"))

    # ------------------------------------------------------------------ pieces
    def _pattern(self, f: Field, item: Map, where: str) -> None:
        pattern = self._text(item, "pattern", where, template=False)
        if pattern is not None:
            try:
                re.compile(pattern)
                f.pattern = pattern
            except re.error as exc:
                self.problem(f"{where}: pattern is not a valid regular expression: {exc}",
                             item.at("pattern"))  # fmt: skip
        f.pattern_hint = self._text(item, "pattern_hint", where)

    def _range(self, f: Field, item: Map, where: str) -> None:
        if f.min is not None and f.max is not None and f.min > f.max:
            self.problem(f"{where}: min {f.min} is above max {f.max}", item.at("min"))

    def _options(self, item: Map, where: str) -> list[Option]:
        raw = item["options"]
        if not isinstance(raw, Seq) or not raw:
            self.problem(f"{where}: options: expected a non-empty list", item.at("options"))
            return []
        options: list[Option] = []
        for index, entry in enumerate(raw):
            pos = raw.item_pos[index]
            if isinstance(entry, Map):
                self._unknown(entry, {"value", "label"}, f"{where} option")
                value = entry.get("value")
                label = entry.get("label", value)
            else:
                value, label = entry, entry
            if not isinstance(value, str | int) or isinstance(value, bool):
                self.problem(f"{where}: option value must be text or a whole number", pos)
                continue
            if any(str(o.value) == str(value) for o in options):
                self.problem(f"{where}: option {value!r} is listed twice", pos)
                continue
            options.append(Option(value, str(label)))
        return options

    def _show_if(self, item: Map, where: str) -> ShowIf | None:
        if "show_if" not in item:
            return None
        raw, pos = item["show_if"], item.at("show_if")
        tests = [t for t in SHOW_IF_TESTS if isinstance(raw, Map) and t in raw]
        if not isinstance(raw, Map) or "field" not in raw or len(tests) != 1:
            self.problem(
                f"{where}: show_if is `{{field: NAME, equals: VALUE}}` (or not_equals, in, "
                "filled, out_of_tolerance)",
                pos,
            )
            return None
        self._unknown(raw, {"field", *SHOW_IF_TESTS}, f"{where} show_if")
        test = tests[0]
        operand = raw[test]
        if test == "in" and not isinstance(operand, Seq):
            self.problem(f"{where}: show_if `in:` expects a list of values", raw.at("in"))
            return None
        if test in ("equals", "not_equals") and isinstance(operand, Seq | Map):
            # A field's value never equals a list: the field would never (or always) show.
            self.problem(
                f"{where}: show_if `{test}:` expects one value (use `in:` for a list)",
                raw.at(test),
            )
            return None
        if test in ("filled", "out_of_tolerance") and not isinstance(operand, bool):
            self.problem(f"{where}: show_if `{test}:` expects true or false", raw.at(test))
        return ShowIf(str(raw["field"]), test, list(operand) if test == "in" else operand, pos)

    def _unknown(self, item: Map, allowed: set[str], where: str, kind: str | None = None) -> None:
        for key in item:
            if key not in allowed:
                article = "an" if kind and kind[0] in "aeiou" else "a"
                of = f" for {article} {kind} field" if kind else ""
                self.problem(
                    f"{where}: unknown key {key!r}{of} (expected one of: "
                    f"{', '.join(sorted(allowed))})",
                    item.key_pos.get(key, item.pos),
                )

    def _text(self, item: Map, key: str, where: str, *, template: bool = True) -> str | None:
        if key not in item or item[key] is None:
            return None
        value = item[key]
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.problem(f"{where}: {key} must be text", item.at(key))
            return None
        value = str(value)
        if template and ("{{" in value or "{%" in value):
            try:
                ENV.parse(value)
            except jinja2.TemplateSyntaxError as exc:
                self.problem(f"{where}: {key}: template error: {exc.message}", item.at(key))
        return value

    def _bool(self, item: Map, key: str, where: str) -> bool:
        value = item.get(key, False)
        if not isinstance(value, bool):
            self.problem(f"{where}: {key} must be true or false, not {value!r}", item.at(key))
            return False
        return value

    def _int(self, item: Map, key: str, where: str, *, minimum: int) -> int | None:
        if key not in item:
            return None
        value = item[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.problem(f"{where}: {key} must be a whole number >= {minimum}", item.at(key))
            return None
        return value

    def _number(self, item: Map, key: str, where: str, *, whole: bool = False) -> float | None:
        if key not in item:
            return None
        value = item[key]
        if not _is_number(value) or (whole and not isinstance(value, int)):
            kind = "a whole number" if whole else "a number"
            self.problem(f"{where}: {key} must be {kind}, not {value!r}", item.at(key))
            return None
        return value

    def _path(self, item: Map, key: str, where: str) -> str | None:
        if key not in item:
            return None
        value = item[key]
        if not isinstance(value, str) or not DATA_PATH.match(value):
            self.problem(
                f"{where}: {key} must be a task data path such as `order.quantity`, not {value!r}",
                item.at(key),
            )
            return None
        return value

    # ------------------------------------------------------------------ whole form
    def _cross_check(self, form: FormDefinition) -> None:
        names: dict[str, Field] = {}
        for f in form.fields:
            if f.name in names:
                self.problem(
                    f"field {f.name!r} is defined twice (first on line {names[f.name].line})",
                    Pos(f.line, 1),
                )
            names[f.name] = f
        for f in form.fields:
            verdict = f"{f.name}{VERDICT_SUFFIX}"
            if f.type == "measurement" and verdict in names:
                # Reported at the field to rename, since the measurement's name is the key.
                self.problem(
                    f"field {verdict!r} clashes with the verdict the measurement {f.name!r} "
                    "records",
                    Pos(names[verdict].line, 1),
                )
            for signed in f.signs or []:
                if signed not in names or not names[signed].takes_input:
                    self.problem(
                        f"field {f.name!r}: signs {signed!r}, which is not an input field of "
                        "this form",
                        Pos(f.line, 1),
                    )
        # The fields each field's visibility depends on (its own and its section's show_if).
        depends: dict[str, set[str]] = {}
        for s in form.sections:
            for f in s.fields:
                depends[f.name] = {c.field for c in (s.show_if, f.show_if) if c is not None}
        # (where, condition, fields it hides, line to report when the condition has no place)
        conditions = [(f"field {f.name!r}", f.show_if, {f.name}, f.line) for f in form.fields]
        conditions += [
            (f"section {s.title!r}", s.show_if, {f.name for f in s.fields},
             s.fields[0].line if s.fields else 1)
            for s in form.sections
        ]  # fmt: skip
        for where, cond, hides, line in conditions:
            if cond is None:
                continue
            # Pointing at the show_if itself, not at the field or section that holds it.
            pos = cond.pos or Pos(line, 1)
            target = names.get(cond.field)
            if target is None or not target.takes_input:
                self.problem(
                    f"{where}: show_if refers to {cond.field!r}, which is not an input field "
                    f"of this form (fields: {', '.join(n for n in names)})",
                    pos,
                )
            elif cond.test == "out_of_tolerance" and target.type != "measurement":
                self.problem(
                    f"{where}: out_of_tolerance applies to measurement fields; "
                    f"{cond.field!r} is a {target.type} field",
                    pos,
                )
            elif where == f"field {cond.field!r}":
                self.problem(f"{where}: show_if cannot depend on the field itself", pos)
            elif cond.field in hides:
                # The section would hide the very field that has to show it.
                self.problem(
                    f"{where}: show_if cannot depend on {cond.field!r}, a field of the section "
                    "itself",
                    pos,
                )
            elif _reaches(depends, cond.field, hides):
                # A circle (a shows b, b shows a) leaves no field to start from.
                self.problem(
                    f"{where}: show_if depends on {cond.field!r}, whose own visibility depends "
                    "back on this condition (a circle: no field to start from)",
                    pos,
                )


def _reaches(depends: dict[str, set[str]], start: str, goals: set[str]) -> bool:
    """Whether the visibility of `start` depends, directly or not, on one of `goals`."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in goals:
            return True
        if name not in seen:
            seen.add(name)
            todo.extend(depends.get(name, ()))
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
