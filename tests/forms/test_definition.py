"""Form definitions (forms/*.yaml): the demo forms parse, every key lands in its dataclass, and
every broken file is refused with the line (and column) of each mistake, never a traceback."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taktflow.errors import DefinitionError, DefinitionProblem
from taktflow.forms.definition import (
    DEFAULT_MAX_TEXT,
    DEFAULT_MAX_TEXTAREA,
    TYPE_KEYS,
    FormDefinition,
    Option,
    ShowIf,
    is_form_text,
    parse_form,
)

ROOT = Path(__file__).parents[2]
FILE = "forms/press_check.yaml"


def y(text: str) -> str:
    """A YAML file written indented in this module: dedented, without the first newline."""
    return textwrap.dedent(text).lstrip("\n")


def problems_of(text: str) -> list[DefinitionProblem]:
    """The problems parse_form reports; any other exception fails the test with its traceback."""
    with pytest.raises(DefinitionError) as info:
        parse_form(text, FILE)
    assert info.value.problems, "a DefinitionError must list its problems"
    for problem in info.value.problems:
        assert problem.file == FILE
        assert "Traceback" not in problem.reason
    return info.value.problems


# ---------------------------------------------------------------------- the demo forms
DEMO_FORMS = sorted((ROOT / "forms").glob("*.yaml"))


def test_there_are_demo_forms() -> None:
    assert {p.stem for p in DEMO_FORMS} >= {"deviation_review", "first_article", "record_setup"}


@pytest.mark.parametrize("path", DEMO_FORMS, ids=lambda p: p.name)
def test_every_demo_form_parses(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert is_form_text(text)
    form = parse_form(text, str(path))
    assert form.name == path.stem
    assert form.file == str(path)
    assert form.fields
    assert all(f.line > 0 for f in form.fields)


def test_the_first_article_demo_form_reads_as_documented() -> None:
    form = parse_form((ROOT / "forms" / "first_article.yaml").read_text(), "first_article.yaml")
    measured = form.field("measured_mm")
    assert measured is not None
    assert measured.type == "measurement"
    assert measured.limits == {"nominal": "nominal_mm", "tolerance": 0.02}
    assert measured.decimals == 3 and measured.unit == "mm" and measured.required
    note = form.field("out_of_tolerance_note")
    assert note is not None and note.show_if is not None
    assert (note.show_if.field, note.show_if.test, note.show_if.operand) == (
        "measured_mm",
        "out_of_tolerance",
        True,
    )


# ---------------------------------------------------------------------- every key
EVERY_KEY = y("""
    # Every field type with every key it accepts.
    form: full_check
    title: "Full check, order {{ order_id }}"
    description: Everything a form can hold.
    sections:
      - title: "Texts for {{ order_id }}"
        help: Type what you see.
        fields:
          - name: note
            type: text
            label: Note
            help: "A short note on {{ order_id }}"
            required: true
            default: none seen
            min_length: 2
            max_length: 80
            pattern: "[a-z ]+"
            pattern_hint: lower-case words
            placeholder: e.g. burr
          - name: remarks
            type: textarea
            label: Remarks
            default_from: order.remarks
            max_length: 1000
            rows: 6
            placeholder: anything else
          - name: lot
            type: scan
            pattern: "L-[0-9]{2,8}"
            pattern_hint: a lot number such as L-77
            max_length: 20
            placeholder: scan the lot
      - title: Numbers
        show_if: {field: note, filled: true}
        fields:
          - name: pieces
            type: integer
            unit: pcs
            min: 0
            max: 500
            default: 10
          - name: weight
            type: decimal
            unit: kg
            min: 0.5
            max: 99.5
            decimals: 2
            default: 1.25
          - name: bore
            type: measurement
            unit: mm
            decimals: 3
            nominal: 25.0
            tolerance: 0.02
          - name: length
            type: measurement
            lower_from: limits.low
            upper: 120
          - name: depth
            type: measurement
            nominal_from: spec.depth
            lower: 9.5
            upper_from: spec.depth_max
      - title: Choices
        fields:
          - name: shift
            type: select
            options:
              - {value: early, label: Early shift}
              - late
              - 3
            default: late
          - name: defects
            type: multiselect
            options: [burr, chatter, other]
            default: [burr, other]
            show_if: {field: shift, in: [early, late]}
          - name: machine
            type: select
            options_from: machines
            show_if: {field: shift, not_equals: 3}
          - name: inspector
            type: select
            lookup: users
            lookup_role: quality
            show_if: {field: pieces, equals: 10}
          - name: rework
            type: checkbox
            default: false
            show_if: {field: bore, out_of_tolerance: true}
          - name: checked_on
            type: date
          - name: checked_at
            type: time
          - name: started
            type: datetime
      - title: Release
        fields:
          - name: order_info
            type: display
            value: "Order {{ order_id }}"
          - name: quantity
            type: display
            from: order.quantity
          - name: release
            type: signature
            label: Release
            meaning: Released for production
            signs: [note, pieces, bore]
    """)


def test_a_form_with_every_type_and_key_parses_into_its_dataclasses() -> None:
    form = parse_form(EVERY_KEY, "forms/full_check.yaml")
    assert isinstance(form, FormDefinition)
    assert form.name == "full_check"
    assert form.title == "Full check, order {{ order_id }}"
    assert form.description == "Everything a form can hold."
    assert form.file == "forms/full_check.yaml"
    assert [s.title for s in form.sections] == [
        "Texts for {{ order_id }}",
        "Numbers",
        "Choices",
        "Release",
    ]
    assert form.sections[0].help == "Type what you see."
    assert form.sections[1].show_if == ShowIf("note", "filled", True, form.sections[1].show_if.pos)
    assert {f.type for f in form.fields} == set(TYPE_KEYS), "the form uses every type"

    def get(name: str) -> Any:
        found = form.field(name)
        assert found is not None, name
        return found

    note = get("note")
    assert (note.label, note.help, note.required, note.default) == (
        "Note",
        "A short note on {{ order_id }}",
        True,
        "none seen",
    )
    assert (note.min_length, note.max_length, note.pattern, note.pattern_hint) == (
        2,
        80,
        "[a-z ]+",
        "lower-case words",
    )
    assert note.placeholder == "e.g. burr"
    assert note.line == 9, "the line of the field's first key"
    assert form.section_of("note") is form.sections[0]

    remarks = get("remarks")
    assert (remarks.default_from, remarks.max_length, remarks.rows) == ("order.remarks", 1000, 6)
    assert remarks.placeholder == "anything else"
    assert remarks.required is False and remarks.default is None

    lot = get("lot")
    assert lot.label == "Lot", "the label defaults to the name"
    assert (lot.pattern, lot.pattern_hint, lot.max_length, lot.placeholder) == (
        "L-[0-9]{2,8}",
        "a lot number such as L-77",
        20,
        "scan the lot",
    )

    pieces = get("pieces")
    assert (pieces.unit, pieces.min, pieces.max, pieces.default) == ("pcs", 0, 500, 10)
    weight = get("weight")
    assert (weight.unit, weight.min, weight.max, weight.decimals, weight.default) == (
        "kg",
        0.5,
        99.5,
        2,
        1.25,
    )
    bore = get("bore")
    assert (bore.unit, bore.decimals) == ("mm", 3)
    assert bore.limits == {"nominal": 25.0, "tolerance": 0.02}
    assert get("length").limits == {"lower": "limits.low", "upper": 120}
    assert get("depth").limits == {
        "nominal": "spec.depth",
        "lower": 9.5,
        "upper": "spec.depth_max",
    }

    shift = get("shift")
    assert shift.options == [
        Option("early", "Early shift"),
        Option("late", "late"),
        Option(3, "3"),
    ]
    assert isinstance(shift.options[2].value, int)
    assert shift.default == "late"
    defects = get("defects")
    assert [o.value for o in defects.options] == ["burr", "chatter", "other"]
    assert defects.default == ["burr", "other"]
    assert (defects.show_if.field, defects.show_if.test, defects.show_if.operand) == (
        "shift",
        "in",
        ["early", "late"],
    )
    machine = get("machine")
    assert (machine.options, machine.options_from, machine.lookup) == (None, "machines", None)
    assert (machine.show_if.test, machine.show_if.operand) == ("not_equals", 3)
    inspector = get("inspector")
    assert (inspector.options, inspector.lookup, inspector.lookup_role) == (
        None,
        "users",
        "quality",
    )
    assert (inspector.show_if.test, inspector.show_if.operand) == ("equals", 10)
    rework = get("rework")
    assert rework.default is False
    assert (rework.show_if.test, rework.show_if.operand) == ("out_of_tolerance", True)
    assert [get(n).type for n in ("checked_on", "checked_at", "started")] == [
        "date",
        "time",
        "datetime",
    ]

    info = get("order_info")
    assert (info.value, info.value_from, info.takes_input) == ("Order {{ order_id }}", None, False)
    quantity = get("quantity")
    assert (quantity.value, quantity.value_from) == (None, "order.quantity")
    release = get("release")
    assert (release.meaning, release.signs, release.takes_input) == (
        "Released for production",
        ["note", "pieces", "bore"],
        True,
    )


def test_defaults_of_a_minimal_form() -> None:
    form = parse_form(
        y("""
            form: tiny
            fields:
              - name: first_note
                type: text
              - name: long_note
                type: textarea
              - name: code
                type: scan
            """)
    )
    assert form.title == "Tiny", "the title defaults to the name"
    assert form.description is None
    assert len(form.sections) == 1 and form.sections[0].title is None
    first, long, code = form.fields
    assert first.label == "First note"
    assert first.max_length == DEFAULT_MAX_TEXT
    assert (long.max_length, long.rows) == (DEFAULT_MAX_TEXTAREA, 4)
    assert code.max_length == 100
    assert form.field("nothing") is None and form.section_of("nothing") is None


def test_only_true_and_false_are_booleans_and_dates_stay_text() -> None:
    form = parse_form(
        y("""
            form: words
            fields:
              - name: answer
                type: select
                options: [yes, no, on, off]
                default: no
              - name: day
                type: text
                default: 2026-03-01
            """)
    )
    assert [o.value for o in form.fields[0].options] == ["yes", "no", "on", "off"]
    assert form.fields[0].default == "no"
    assert form.fields[1].default == "2026-03-01"


# ---------------------------------------------------------------------- broken files
@dataclass(frozen=True)
class Bad:
    text: str
    line: int
    #: None where the column says nothing useful (the problem is about a whole field).
    column: int | None
    #: Each must appear in the (first) problem's reason.
    says: tuple[str, ...]
    count: int = 1


def bad(id: str, text: str, line: int, column: int | None, *says: str, count: int = 1) -> Any:
    return pytest.param(Bad(y(text), line, column, says, count), id=id)


CASES = [
    # ------------------------------------------------------------------ reading the YAML
    bad(
        "yaml-unclosed-quote",
        """
        form: press_check
        title: "Press check
        fields: []
        """,
        2,
        8,
        "never closed",
    ),
    bad(
        "yaml-bad-indentation",
        """
        form: press_check
        fields:
          - name: force
            type: integer
           label: Force
        """,
        5,
        4,
        "indent",
    ),
    bad(
        "yaml-tab-indentation",
        "form: press_check\nfields:\n\t- name: force\n",
        3,
        1,
        "tab character",
    ),
    bad("yaml-empty-file", "", 1, 1, "file is empty"),
    bad("yaml-only-comments", "# nothing yet\n\n", 1, 1, "file is empty"),
    bad(
        "yaml-duplicate-key",
        """
        form: press_check
        fields:
          - name: force
            type: integer
            type: decimal
        """,
        5,
        5,
        "'type' appears twice",
        "first on line 4",
    ),
    bad(
        "yaml-anchor",
        """
        form: press_check
        fields:
          - &force {name: force, type: integer}
        """,
        3,
        5,
        "anchors (&force) are not supported",
    ),
    bad(
        "yaml-control-character-says-form-file",
        "form: press_check\ntitle: a\x01b\nfields: []\n",
        2,
        9,
        "is not allowed in a form file",
    ),
    bad(
        "yaml-two-documents",
        """
        form: press_check
        ---
        form: other
        """,
        2,
        1,
        "expected a single document",
    ),
    # ------------------------------------------------------------------ the form
    bad("not-a-mapping-list", "- force\n- torque\n", 1, 1, "a form file is a mapping"),
    bad("not-a-mapping-text", "just some text\n", 1, 1, "starts with `form: <name>`"),
    bad(
        "form-name-with-capitals",
        """
        form: Press-Check
        fields:
          - name: force
            type: integer
        """,
        1,
        7,
        "lower-case letters",
        "'Press-Check'",
    ),
    bad(
        "form-name-missing",
        """
        title: Press check
        fields:
          - name: force
            type: integer
        """,
        1,
        1,
        "form: the name must be",
        "not None",
    ),
    bad(
        "form-fields-and-sections",
        """
        form: press_check
        fields:
          - name: force
            type: integer
        sections:
          - title: More
            fields:
              - name: torque
                type: integer
        """,
        1,
        1,
        "either `fields:`",
        "not both and not neither",
    ),
    bad("form-neither-fields-nor-sections", "form: press_check\n", 1, 1, "not neither"),
    bad(
        "form-unknown-key",
        """
        form: press_check
        titel: Press check
        fields:
          - name: force
            type: integer
        """,
        2,
        1,
        "form: unknown key 'titel'",
        "(expected one of: description, fields, form, sections, title)",
    ),
    bad(
        "form-title-not-text",
        """
        form: press_check
        title: [Press, check]
        fields:
          - name: force
            type: integer
        """,
        2,
        8,
        "form: title must be text",
    ),
    bad(
        "form-title-template-error",
        """
        form: press_check
        title: "Press check {{ order_id"
        fields:
          - name: force
            type: integer
        """,
        2,
        8,
        "form: title: template error",
    ),
    bad(
        "form-fields-empty",
        """
        form: press_check
        fields: []
        """,
        2,
        9,
        "fields: expected a list of fields",
    ),
    # ------------------------------------------------------------------ sections
    bad(
        "sections-not-a-list",
        """
        form: press_check
        sections:
          title: Press
        """,
        3,
        3,
        "sections: expected a list of sections",
    ),
    bad(
        "section-not-a-mapping",
        """
        form: press_check
        sections:
          - Press
        """,
        3,
        5,
        "a section is a mapping",
    ),
    bad(
        "section-without-fields",
        """
        form: press_check
        sections:
          - title: Press
            help: Check the press.
        """,
        3,
        5,
        "section: `fields:` is missing",
    ),
    bad(
        "section-unknown-key",
        """
        form: press_check
        sections:
          - title: Press
            colour: red
            fields:
              - name: force
                type: integer
        """,
        4,
        5,
        "section: unknown key 'colour'",
        "(expected one of: fields, help, show_if, title)",
    ),
    bad(
        "section-title-template-error",
        """
        form: press_check
        sections:
          - title: "{% if %}"
            fields:
              - name: force
                type: integer
        """,
        3,
        12,
        "section: title: template error",
    ),
    # ------------------------------------------------------------------ fields
    bad(
        "field-not-a-mapping",
        """
        form: press_check
        fields:
          - force
        """,
        3,
        5,
        "a field is a mapping with at least `name:` and `type:`",
    ),
    bad(
        "field-unknown-key",
        """
        form: press_check
        fields:
          - name: note
            type: text
            maximum: 5
        """,
        5,
        5,
        "field 'note': unknown key 'maximum' for a text field",
        "(expected one of: default, default_from, help, label, max_length, min_length, name, "
        "pattern, pattern_hint, placeholder, required, show_if, type)",
    ),
    bad(
        "field-key-of-another-type",
        """
        form: press_check
        fields:
          - name: done
            type: checkbox
            unit: mm
        """,
        5,
        5,
        "unknown key 'unit' for a checkbox field",
    ),
    bad(
        "field-unknown-type",
        """
        form: press_check
        fields:
          - name: force
            type: number
        """,
        4,
        11,
        "unknown type 'number'",
        "types: text, textarea, integer",
    ),
    bad(
        "field-type-is-a-list",
        """
        form: press_check
        fields:
          - name: force
            type: [integer]
        """,
        4,
        11,
        "unknown type ['integer']",
    ),
    bad(
        "field-type-missing",
        """
        form: press_check
        fields:
          - name: force
        """,
        3,
        5,
        "unknown type None",
    ),
    bad(
        "field-name-with-dash",
        """
        form: press_check
        fields:
          - name: gauge-id
            type: scan
        """,
        3,
        11,
        "`name:` must be lower-case letters",
        "'gauge-id'",
    ),
    bad(
        "field-name-missing",
        """
        form: press_check
        fields:
          - type: scan
            label: Gauge
        """,
        3,
        5,
        "`name:` must be",
        "not None",
    ),
    bad(
        "field-name-twice",
        """
        form: press_check
        fields:
          - name: force
            type: integer
          - name: torque
            type: integer
          - name: force
            type: decimal
        """,
        7,
        1,
        "field 'force' is defined twice (first on line 3)",
    ),
    bad(
        "field-name-twice-across-sections",
        """
        form: press_check
        sections:
          - title: Before
            fields:
              - name: force
                type: integer
          - title: After
            fields:
              - name: force
                type: integer
        """,
        9,
        1,
        "field 'force' is defined twice (first on line 5)",
    ),
    bad(
        "field-required-not-a-boolean",
        """
        form: press_check
        fields:
          - name: force
            type: integer
            required: yes
        """,
        5,
        15,
        "required must be true or false, not 'yes'",
    ),
    bad(
        "field-label-template-error",
        """
        form: press_check
        fields:
          - name: force
            type: integer
            label: "Force on {{ press.name }"
        """,
        5,
        12,
        "field 'force': label: template error",
    ),
    bad(
        "field-help-template-error",
        """
        form: press_check
        fields:
          - name: force
            type: integer
            help: "{% for %}"
        """,
        5,
        11,
        "field 'force': help: template error",
    ),
    bad(
        "field-default-and-default-from",
        """
        form: press_check
        fields:
          - name: force
            type: integer
            default: 3
            default_from: press.force
        """,
        3,
        5,
        "give `default` or `default_from`, not both",
    ),
    bad(
        "field-default-from-bad-path",
        """
        form: press_check
        fields:
          - name: force
            type: integer
            default_from: press..force
        """,
        5,
        19,
        "default_from must be a task data path",
        "'press..force'",
    ),
    # ------------------------------------------------------------------ numbers
    bad(
        "integer-min-above-max",
        """
        form: press_check
        fields:
          - name: force
            type: integer
            min: 10
            max: 5
        """,
        5,
        10,
        "min 10 is above max 5",
    ),
    bad(
        "decimal-min-above-max",
        """
        form: press_check
        fields:
          - name: weight
            type: decimal
            min: 2.5
            max: 1.5
        """,
        5,
        10,
        "min 2.5 is above max 1.5",
    ),
    bad(
        "integer-min-not-whole",
        """
        form: press_check
        fields:
          - name: force
            type: integer
            min: 1.5
        """,
        5,
        10,
        "min must be a whole number, not 1.5",
    ),
    bad(
        "decimal-max-not-a-number",
        """
        form: press_check
        fields:
          - name: weight
            type: decimal
            max: heavy
        """,
        5,
        10,
        "max must be a number, not 'heavy'",
    ),
    bad(
        "integer-default-not-whole",
        """
        form: press_check
        fields:
          - name: force
            type: integer
            default: 2.5
        """,
        5,
        14,
        "default must be a whole number",
    ),
    bad(
        "decimal-default-text",
        """
        form: press_check
        fields:
          - name: weight
            type: decimal
            default: heavy
        """,
        5,
        14,
        "default must be a number",
    ),
    bad(
        "decimal-negative-decimals",
        """
        form: press_check
        fields:
          - name: weight
            type: decimal
            decimals: -1
        """,
        5,
        15,
        "decimals must be a whole number >= 0",
    ),
    bad(
        "textarea-no-rows",
        """
        form: press_check
        fields:
          - name: remarks
            type: textarea
            rows: 0
        """,
        5,
        11,
        "rows must be a whole number >= 1",
    ),
    bad(
        "text-max-length-zero",
        """
        form: press_check
        fields:
          - name: note
            type: text
            max_length: 0
        """,
        5,
        17,
        "max_length must be a whole number >= 1",
    ),
    # ------------------------------------------------------------------ measurements
    bad(
        "measurement-without-tolerance",
        """
        form: press_check
        fields:
          - name: bore
            type: measurement
            nominal: 25.0
        """,
        3,
        5,
        "field 'bore': a measurement needs a tolerance",
        "`nominal` with `tolerance`",
    ),
    bad(
        "measurement-tolerance-with-lower",
        """
        form: press_check
        fields:
          - name: bore
            type: measurement
            nominal: 25.0
            tolerance: 0.02
            lower: 24.9
        """,
        6,
        16,
        "`tolerance` (plus or minus) goes with `nominal`",
    ),
    bad(
        "measurement-tolerance-with-upper",
        """
        form: press_check
        fields:
          - name: bore
            type: measurement
            nominal_from: spec.bore
            upper_from: spec.bore_max
            tolerance: 0.02
        """,
        7,
        16,
        "instead of `lower`/`upper`",
    ),
    bad(
        "measurement-tolerance-without-nominal",
        """
        form: press_check
        fields:
          - name: bore
            type: measurement
            tolerance: 0.02
        """,
        5,
        16,
        "`tolerance` (plus or minus) goes with `nominal` or `nominal_from`",
    ),
    bad(
        "measurement-negative-tolerance",
        """
        form: press_check
        fields:
          - name: bore
            type: measurement
            nominal: 25.0
            tolerance: -0.02
        """,
        6,
        16,
        "tolerance must not be negative",
    ),
    bad(
        "measurement-lower-above-upper",
        """
        form: press_check
        fields:
          - name: bore
            type: measurement
            lower: 25.1
            upper: 24.9
        """,
        3,
        5,
        "lower limit 25.1 is above upper limit 24.9",
    ),
    bad(
        "measurement-nominal-and-nominal-from",
        """
        form: press_check
        fields:
          - name: bore
            type: measurement
            nominal: 25.0
            nominal_from: spec.bore
            tolerance: 0.02
        """,
        3,
        5,
        "give `nominal` or `nominal_from`, not both",
    ),
    bad(
        "measurement-lower-from-bad-path",
        """
        form: press_check
        fields:
          - name: bore
            type: measurement
            lower_from: "spec/bore"
            upper: 25.1
        """,
        5,
        17,
        "lower_from must be a task data path",
    ),
    bad(
        "measurement-verdict-clash",
        """
        form: press_check
        fields:
          - name: bore
            type: measurement
            lower: 24.9
          - name: bore_verdict
            type: text
        """,
        6,
        1,
        "field 'bore_verdict' clashes with the verdict the measurement 'bore' records",
    ),
    # ------------------------------------------------------------------ selects
    bad(
        "select-without-options",
        """
        form: press_check
        fields:
          - name: shift
            type: select
        """,
        3,
        5,
        "give exactly one of `options`",
        "`options_from`",
        "`lookup`",
    ),
    bad(
        "select-with-two-option-sources",
        """
        form: press_check
        fields:
          - name: shift
            type: select
            options: [early, late]
            lookup: users
        """,
        3,
        5,
        "give exactly one of `options`",
    ),
    bad(
        "multiselect-with-options-and-options-from",
        """
        form: press_check
        fields:
          - name: defects
            type: multiselect
            options: [burr]
            options_from: defects
        """,
        3,
        5,
        "give exactly one of",
    ),
    bad(
        "select-empty-options",
        """
        form: press_check
        fields:
          - name: shift
            type: select
            options: []
        """,
        5,
        14,
        "options: expected a non-empty list",
    ),
    bad(
        "select-option-twice",
        """
        form: press_check
        fields:
          - name: shift
            type: select
            options: [early, late, early]
        """,
        5,
        28,
        "option 'early' is listed twice",
    ),
    bad(
        "select-option-twice-as-number-and-text",
        """
        form: press_check
        fields:
          - name: press
            type: select
            options:
              - 3
              - {value: "3", label: Press three}
        """,
        7,
        9,
        "option '3' is listed twice",
    ),
    bad(
        "select-option-without-value",
        """
        form: press_check
        fields:
          - name: shift
            type: select
            options:
              - {label: Early}
        """,
        6,
        9,
        "option value must be text or a whole number",
    ),
    bad(
        "select-option-unknown-key",
        """
        form: press_check
        fields:
          - name: shift
            type: select
            options:
              - {value: early, text: Early}
        """,
        6,
        24,
        "field 'shift' option: unknown key 'text'",
        "(expected one of: label, value)",
    ),
    bad(
        "select-default-not-an-option",
        """
        form: press_check
        fields:
          - name: shift
            type: select
            options: [early, late]
            default: night
        """,
        6,
        14,
        "default 'night' is not one of the options",
    ),
    bad(
        "multiselect-default-not-an-option",
        """
        form: press_check
        fields:
          - name: defects
            type: multiselect
            options: [burr, chatter]
            default: [burr, crack]
        """,
        6,
        14,
        "default 'crack' is not one of the options",
    ),
    bad(
        "select-options-from-bad-path",
        """
        form: press_check
        fields:
          - name: machine
            type: select
            options_from: "machines[0]"
        """,
        5,
        19,
        "options_from must be a task data path",
        "'machines[0]'",
    ),
    # ------------------------------------------------------------------ patterns
    bad(
        "text-bad-pattern",
        """
        form: press_check
        fields:
          - name: gauge
            type: scan
            pattern: "G-[0-9"
        """,
        5,
        14,
        "pattern is not a valid regular expression",
    ),
    # ------------------------------------------------------------------ show_if
    bad(
        "show-if-without-test",
        """
        form: press_check
        fields:
          - name: done
            type: checkbox
          - name: note
            type: text
            show_if: {field: done}
        """,
        7,
        14,
        "show_if is `{field: NAME, equals: VALUE}`",
    ),
    bad(
        "show-if-with-two-tests",
        """
        form: press_check
        fields:
          - name: done
            type: checkbox
          - name: note
            type: text
            show_if: {field: done, equals: true, filled: true}
        """,
        7,
        14,
        "show_if is `{field: NAME",
    ),
    bad(
        "show-if-as-an-expression",
        """
        form: press_check
        fields:
          - name: done
            type: checkbox
          - name: note
            type: text
            show_if: done == true
        """,
        7,
        14,
        "show_if is `{field: NAME",
    ),
    bad(
        "show-if-unknown-key",
        """
        form: press_check
        fields:
          - name: done
            type: checkbox
          - name: note
            type: text
            show_if: {field: done, equals: true, when: always}
        """,
        7,
        42,
        "field 'note' show_if: unknown key 'when'",
        "equals, field, filled, in, not_equals, out_of_tolerance",
    ),
    bad(
        "show-if-in-not-a-list",
        """
        form: press_check
        fields:
          - name: shift
            type: select
            options: [early, late]
          - name: note
            type: text
            show_if: {field: shift, in: 5}
        """,
        8,
        33,
        "show_if `in:` expects a list of values",
    ),
    bad(
        "show-if-equals-a-list",
        """
        form: press_check
        fields:
          - name: shift
            type: select
            options: [early, late]
          - name: note
            type: text
            show_if: {field: shift, equals: [early, late]}
        """,
        8,
        37,
        "show_if `equals:` expects one value (use `in:` for a list)",
    ),
    bad(
        "show-if-filled-not-a-boolean",
        """
        form: press_check
        fields:
          - name: remarks
            type: text
          - name: note
            type: text
            show_if: {field: remarks, filled: yes}
        """,
        7,
        39,
        "show_if `filled:` expects true or false",
    ),
    bad(
        "show-if-unknown-field",
        """
        form: press_check
        fields:
          - name: done
            type: checkbox
          - name: note
            type: text
            show_if: {field: finished, equals: true}
        """,
        7,
        14,
        "field 'note': show_if refers to 'finished', which is not an input field",
        "(fields: done, note)",
    ),
    bad(
        "show-if-on-a-display-field",
        """
        form: press_check
        fields:
          - name: info
            type: display
            value: Check the press
          - name: note
            type: text
            show_if: {field: info, filled: true}
        """,
        8,
        14,
        "show_if refers to 'info', which is not an input field",
    ),
    bad(
        "show-if-out-of-tolerance-on-a-decimal",
        """
        form: press_check
        fields:
          - name: weight
            type: decimal
          - name: note
            type: text
            show_if: {field: weight, out_of_tolerance: true}
        """,
        7,
        14,
        "out_of_tolerance applies to measurement fields; 'weight' is a decimal field",
    ),
    bad(
        "show-if-on-itself",
        """
        form: press_check
        fields:
          - name: note
            type: text
            show_if: {field: note, filled: true}
        """,
        5,
        14,
        "field 'note': show_if cannot depend on the field itself",
    ),
    bad(
        "show-if-in-a-circle",
        """
        form: press_check
        fields:
          - name: first
            type: text
            show_if: {field: second, filled: true}
          - name: second
            type: text
            show_if: {field: first, filled: true}
        """,
        5,
        14,
        "field 'first': show_if depends on 'second'",
        "a circle",
        count=2,
    ),
    bad(
        "section-show-if-unknown-field",
        """
        form: press_check
        sections:
          - title: Press
            fields:
              - name: force
                type: integer
          - title: Rework
            show_if: {field: rework, equals: true}
            fields:
              - name: note
                type: text
        """,
        8,
        14,
        "section 'Rework': show_if refers to 'rework'",
    ),
    bad(
        "section-show-if-on-its-own-field",
        """
        form: press_check
        sections:
          - title: Rework
            show_if: {field: rework, equals: true}
            fields:
              - name: rework
                type: checkbox
              - name: note
                type: text
        """,
        4,
        14,
        "section 'Rework': show_if cannot depend on 'rework', a field of the section itself",
    ),
    # ------------------------------------------------------------------ signatures
    bad(
        "signature-without-meaning",
        """
        form: press_check
        fields:
          - name: force
            type: integer
          - name: release
            type: signature
        """,
        5,
        5,
        "field 'release': a signature needs `meaning:`",
    ),
    bad(
        "signature-signs-unknown-field",
        """
        form: press_check
        fields:
          - name: force
            type: integer
          - name: release
            type: signature
            meaning: Released
            signs: [force, torque]
        """,
        5,
        1,
        "field 'release': signs 'torque', which is not an input field of this form",
    ),
    bad(
        "signature-signs-display-field",
        """
        form: press_check
        fields:
          - name: info
            type: display
            from: order.id
          - name: release
            type: signature
            meaning: Released
            signs: [info]
        """,
        6,
        1,
        "signs 'info', which is not an input field",
    ),
    bad(
        "signature-signs-nothing",
        """
        form: press_check
        fields:
          - name: force
            type: integer
          - name: release
            type: signature
            meaning: Released
            signs: []
        """,
        8,
        12,
        "signs: expected a list of field names",
    ),
    bad(
        "signature-with-default",
        """
        form: press_check
        fields:
          - name: release
            type: signature
            meaning: Released
            default: secret
        """,
        6,
        14,
        "field 'release': a signature field has no default",
    ),
    bad(
        "signature-with-default-from",
        """
        form: press_check
        fields:
          - name: release
            type: signature
            meaning: Released
            default_from: order.signature
        """,
        6,
        19,
        "a signature field has no default",
    ),
    # ------------------------------------------------------------------ display
    bad(
        "display-without-value-or-from",
        """
        form: press_check
        fields:
          - name: info
            type: display
            label: Order
        """,
        3,
        5,
        "a display field shows `value:`",
        "give one",
    ),
    bad(
        "display-with-value-and-from",
        """
        form: press_check
        fields:
          - name: info
            type: display
            value: "{{ order_id }}"
            from: order_id
        """,
        3,
        5,
        "a display field shows `value:`",
    ),
    bad(
        "display-required",
        """
        form: press_check
        fields:
          - name: info
            type: display
            from: order_id
            required: true
        """,
        6,
        15,
        "a display field cannot be required",
    ),
    bad(
        "display-with-default",
        """
        form: press_check
        fields:
          - name: info
            type: display
            from: order_id
            default: "?"
        """,
        6,
        14,
        "a display field has no default",
    ),
    bad(
        "display-from-bad-path",
        """
        form: press_check
        fields:
          - name: info
            type: display
            from: "order id"
        """,
        5,
        11,
        "from must be a task data path",
    ),
    bad(
        "display-value-template-error",
        """
        form: press_check
        fields:
          - name: info
            type: display
            value: "{{ order_id }"
        """,
        5,
        12,
        "field 'info': value: template error",
    ),
]


def test_the_table_is_large_and_ids_are_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) >= 30
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES)
def test_a_broken_form_is_refused_with_its_line(case: Bad) -> None:
    problems = problems_of(case.text)
    shown = [str(p) for p in problems]
    assert len(problems) == case.count, shown
    first = problems[0]
    assert first.line == case.line, shown
    if case.column is not None:
        assert first.column == case.column, shown
    for fragment in case.says:
        assert fragment in first.reason, shown


def test_every_problem_in_a_file_is_reported() -> None:
    text = y("""
        form: press_check
        colour: red
        fields:
          - name: force
            type: integer
            min: 10
            max: 5
          - name: bore
            type: measurement
            nominal: 25.0
            tolerance: -0.02
          - name: shift
            type: select
            options: [early, late]
            default: night
          - name: note
            type: text
            show_if: {field: finished, filled: true}
          - name: release
            type: signature
        """)
    problems = problems_of(text)
    found = [(p.line, p.reason.split(":")[0]) for p in problems]
    assert sorted(found) == [
        (2, "form"),
        (6, "field 'force'"),
        (11, "field 'bore'"),
        (15, "field 'shift'"),
        (18, "field 'note'"),
        (19, "field 'release'"),
    ]
    error = DefinitionError(problems)
    assert "and 1 more" in error.message
    assert f"{FILE}:2:1: form: unknown key 'colour'" in error.message
    assert len(error.details) == 6


def test_problems_in_several_sections_are_all_reported() -> None:
    text = y("""
        form: press_check
        sections:
          - title: One
            fields:
              - name: force
                type: number
          - title
          - title: Three
            fields: []
          - title: Four
            fields:
              - name: Torque
                type: integer
        """)
    assert [(p.line, p.column) for p in problems_of(text)] == [(6, 15), (7, 5), (9, 13), (12, 15)]


# ---------------------------------------------------------------------- is_form_text
@pytest.mark.parametrize(
    "text",
    [
        "form: press_check\nfields: []\n",
        "# A form for the press.\n\nform: press_check\n",
        "---\nform: press_check\n",
        "\n   \n# comment\n---\n  # indented comment\nform: x\n",
        "\ufeffform: press_check\n",
        "form:\n  press_check\n",
    ],
    ids=["plain", "comments-and-blank-lines", "document-start", "everything", "bom", "bare-key"],
)
def test_is_form_text_recognises_forms(text: str) -> None:
    assert is_form_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "process: first_article\nsteps: []\n",
        "# form: in a comment\nprocess: x\n",
        "---\nprocess: x\nform: y\n",
        "formal: x\n",
        "forms: [x]\n",
        "",
        "# only a comment\n",
        "steps:\n  - task: Check\n    form: check\n",
    ],
    ids=[
        "workflow",
        "form-in-a-comment",
        "form-after-process",
        "formal",
        "forms",
        "empty",
        "comment-only",
        "form-inside-a-step",
    ],
)
def test_is_form_text_leaves_workflows_alone(text: str) -> None:
    assert not is_form_text(text)


def test_a_form_with_a_byte_order_mark_parses() -> None:
    text = "\ufeffform: press_check\nfields:\n  - name: force\n    type: integer\n"
    assert is_form_text(text)
    assert parse_form(text).fields[0].line == 3


# ---------------------------------------------------------------------- no traceback, ever
ODD_VALUES = ["[1, [2]]", "{a: {b: 1}}", "null", "-3", "0.5", "true", "text", "'{{ x'", '""']
COMMON = ["name", "type", "label", "help", "required", "show_if", "default", "default_from"]


def _odd_form(kind: str, key: str, value: str) -> str:
    """A form whose field of type `kind` has `key` set to `value`, next to a valid field."""
    settings = {"name": "odd", "type": kind, key: value}
    lines = ["form: odd", "fields:", "  - name: other", "    type: text"]
    lines += [f"  {'- ' if i == 0 else '  '}{k}: {v}" for i, (k, v) in enumerate(settings.items())]
    return "\n".join(lines) + "\n"


def test_odd_values_in_every_key_never_raise_anything_but_a_definition_error() -> None:
    crashes = []
    checked = 0
    for kind, keys in TYPE_KEYS.items():
        for key in COMMON + sorted(keys):
            for value in ODD_VALUES:
                text = _odd_form(kind, key, value)
                checked += 1
                try:
                    parse_form(text, FILE)
                except DefinitionError as exc:
                    if not exc.problems or not all(p.line for p in exc.problems):
                        crashes.append(f"{kind}.{key}={value}: a problem without a line")
                except Exception as exc:  # noqa: BLE001 - the point of the test
                    crashes.append(f"{kind}.{key}={value}: {type(exc).__name__}: {exc}")
    assert checked > 1000
    assert crashes == []


def test_the_odd_form_helper_writes_what_it_says() -> None:
    assert _odd_form("integer", "min", "[1]") == (
        "form: odd\nfields:\n  - name: other\n    type: text\n"
        "  - name: odd\n    type: integer\n    min: [1]\n"
    )
    assert _odd_form("integer", "type", "null").endswith("  - name: odd\n    type: null\n")
    assert _odd_form("integer", "name", "-3").endswith("  - name: -3\n    type: integer\n")


def test_a_display_field_may_show_a_unit_and_messages_use_the_right_article() -> None:
    form = parse_form(
        "form: f\nfields:\n  - {name: qty, type: display, from: qty, unit: pcs}\n", "f.yaml"
    )
    assert form.fields[0].unit == "pcs"
    with pytest.raises(DefinitionError) as caught:
        parse_form("form: f\nfields:\n  - {name: n, type: integer, size: 3}\n", "f.yaml")
    assert "unknown key 'size' for an integer field" in caught.value.problems[0].reason
