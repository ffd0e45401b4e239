"""A form meets a task: prepare() resolves texts, options, limits and defaults for one task;
validate() coerces what a page or an API client sent, applies the conditional rules, records
measurement verdicts and signatures, and names every field at fault."""

from __future__ import annotations

import math
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from markupsafe import Markup

from taktflow.errors import ValidationFailed
from taktflow.forms.definition import FormDefinition, Option, parse_form
from taktflow.forms.lookups import LookupRegistry
from taktflow.forms.submission import Signer, limits_of, prepare, validate, verdict

ROOT = Path(__file__).parents[2]
NOW = datetime(2026, 3, 1, 14, 30, 5, tzinfo=UTC)
PASSWORD = "correct horse 7"


def form_of(fields: str, name: str = "check") -> FormDefinition:
    """A form named `name` with the fields written (indented) in `fields`."""
    body = textwrap.indent(textwrap.dedent(fields).strip("\n"), "  ")
    return parse_form(f"form: {name}\nfields:\n{body}\n", f"forms/{name}.yaml")


def sections_form(text: str) -> FormDefinition:
    return parse_form(textwrap.dedent(text).lstrip("\n"), "forms/check.yaml")


def signer(display_name: str | None = "Quinn (quality)", tried: list[str] | None = None) -> Signer:
    def check(password: str) -> bool:
        if tried is not None:
            tried.append(password)
        return password == PASSWORD

    return Signer("quinn", display_name, check, lambda: NOW)


def submit(
    form: FormDefinition,
    raw: dict[str, Any],
    data: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    options.setdefault("signer", signer())
    return validate(form, raw, data or {}, **options)


def refused(
    form: FormDefinition,
    raw: dict[str, Any],
    data: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, str]:
    """The message per field of a submission that must be refused."""
    with pytest.raises(ValidationFailed) as info:
        submit(form, raw, data, **options)
    fields = info.value.details["fields"]
    assert fields, "a refusal names its fields"
    return fields


def one(field: str, raw: Any, data: dict[str, Any] | None = None) -> Any:
    """The stored value of a lone field `v` (written as `field`) for `raw`."""
    form = form_of(f"- name: v\n{textwrap.indent(textwrap.dedent(field).strip(), '  ')}")
    return submit(form, {"v": raw}, data)["v"]


def one_refused(field: str, raw: Any, data: dict[str, Any] | None = None) -> str:
    form = form_of(f"- name: v\n{textwrap.indent(textwrap.dedent(field).strip(), '  ')}")
    errors = refused(form, {"v": raw}, data)
    assert list(errors) == ["v"]
    return errors["v"]


# ---------------------------------------------------------------------- integers
@pytest.mark.parametrize(
    ("raw", "expected"),
    [("12", 12), (12, 12), (12.0, 12), (" 12 ", 12), ("+7", 7), ("-3", -3), ("0", 0)],
)
def test_integer_accepts_whole_numbers_as_text_or_json(raw: Any, expected: int) -> None:
    value = one("type: integer", raw)
    assert value == expected and type(value) is int


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_an_empty_integer_is_none(raw: Any) -> None:
    assert one("type: integer", raw) is None


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("12.5", "expected a whole number, not '12.5'"),
        ("12,0", "expected a whole number, not '12,0'"),
        (12.5, "expected a whole number, not 12.5"),
        (True, "expected a whole number"),
        (False, "expected a whole number"),
        ("abc", "expected a whole number, not 'abc'"),
        ("1e3", "expected a whole number, not '1e3'"),
        ([12], "expected a whole number, not [12]"),
    ],
)
def test_integer_refuses_anything_else(raw: Any, says: str) -> None:
    assert one_refused("type: integer", raw) == says


def test_integer_limits_name_the_unit() -> None:
    field = "type: integer\nunit: min\nmin: 0\nmax: 480"
    assert one(field, "480") == 480 and one(field, "0") == 0
    assert one_refused(field, "481") == "at most 480 min"
    assert one_refused(field, "-1") == "at least 0 min"
    assert one_refused("type: integer\nmax: 10", 11) == "at most 10"


def test_a_large_limit_is_written_out_in_the_message() -> None:
    assert one_refused("type: integer\nmax: 1000000\nunit: pcs", 1000001) == "at most 1000000 pcs"


# ---------------------------------------------------------------------- decimals
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("25,01", 25.01),
        ("25.01", 25.01),
        (" 25,01 ", 25.01),
        ("-0,5", -0.5),
        (",5", 0.5),
        ("25,", 25.0),
        ("+3", 3.0),
        (25, 25.0),
        (25.01, 25.01),
    ],
)
def test_decimal_accepts_a_decimal_point_or_comma(raw: Any, expected: float) -> None:
    value = one("type: decimal", raw)
    assert value == expected and type(value) is float


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("nan", "expected a number, not 'nan'"),
        ("inf", "expected a number, not 'inf'"),
        ("-Infinity", "expected a number, not '-Infinity'"),
        (math.nan, "expected a finite number"),
        (math.inf, "expected a finite number"),
        (-math.inf, "expected a finite number"),
        ("1.000,5", "expected a number, not '1.000,5'"),
        ("25 mm", "expected a number, not '25 mm'"),
        ("1e3", "expected a number, not '1e3'"),
        ("1" * 41, "expected a number"),
        (True, "expected a number"),
        ({"value": 1}, "expected a number, not {'value': 1}"),
    ],
)
def test_decimal_refuses_what_is_not_a_finite_number(raw: Any, says: str) -> None:
    assert says in one_refused("type: decimal", raw)


def test_decimal_places_are_limited() -> None:
    assert one("type: decimal\ndecimals: 2", "25,01") == 25.01
    assert one("type: decimal\ndecimals: 2", "25,1") == 25.1
    assert one_refused("type: decimal\ndecimals: 2", "25,012") == "use at most 2 decimal places"
    assert one_refused("type: decimal\ndecimals: 1", 2.25) == "use at most 1 decimal place"
    assert one_refused("type: decimal\ndecimals: 0", "2,5") == "use at most 0 decimal places"
    assert one("type: decimal\ndecimals: 0", "2") == 2.0


def test_decimal_limits_name_the_unit_and_the_exact_limit() -> None:
    field = "type: decimal\nunit: kg\nmin: 0.5\nmax: 12345.75"
    assert one(field, "0,5") == 0.5 and one(field, "12345,75") == 12345.75
    assert one_refused(field, "0,49") == "at least 0.5 kg"
    assert one_refused(field, "12345,76") == "at most 12345.75 kg"


# ---------------------------------------------------------------------- texts and scans
def test_text_is_stripped_and_checked_for_length() -> None:
    assert one("type: text", "  burr on edge  ") == "burr on edge"
    assert one("type: text", "") is None
    assert one_refused("type: text\nmax_length: 5", "abcdef") == "at most 5 characters (this is 6)"
    assert one("type: text\nmax_length: 5", "abcde") == "abcde"
    assert one_refused("type: text\nmin_length: 2", "a") == "at least 2 characters"
    assert one_refused("type: text", 12) == "expected text, not int"
    assert one_refused("type: text", "x" * 501) == "at most 500 characters (this is 501)"
    assert one("type: textarea", "x" * 4000) == "x" * 4000
    assert one_refused("type: textarea", "x" * 4001) == "at most 4000 characters (this is 4001)"


def test_text_pattern_must_match_the_whole_text() -> None:
    field = "type: text\npattern: '[a-z]+'"
    assert one(field, "burr") == "burr"
    assert one_refused(field, "Burr") == "'Burr' does not match: expected text matching [a-z]+"
    assert one_refused(field, "burr2") == "'burr2' does not match: expected text matching [a-z]+"


def test_scan_pattern_error_uses_the_hint() -> None:
    field = "type: scan\npattern: 'G-[0-9]{3}'\npattern_hint: a gauge number such as G-104"
    assert one(field, "G-104") == "G-104"
    assert one(field, " G-104\n") == "G-104", "a scanner's trailing Enter is dropped"
    for code in ("G-12", "G-1045", "xG-104"):
        assert one_refused(field, code) == (
            f"{code!r} does not match: expected a gauge number such as G-104"
        )
    assert one_refused("type: scan", "x" * 101) == "at most 100 characters (this is 101)"


# ---------------------------------------------------------------------- selects
SHIFT = """
type: select
options:
  - {value: early, label: Early shift}
  - late
  - 3
"""


@pytest.mark.parametrize(
    ("raw", "expected"), [("early", "early"), ("late", "late"), ("3", 3), (3, 3), ("", None)]
)
def test_select_keeps_the_option_value_and_its_type(raw: Any, expected: Any) -> None:
    value = one(SHIFT, raw)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("night", "'night' is not one of the options"),
        ("Early shift", "'Early shift' is not one of the options"),
        (True, "expected one of the options, not True"),
        (3.0, "expected one of the options, not 3.0"),
        (["early"], "expected one of the options, not ['early']"),
    ],
)
def test_select_refuses_what_is_not_an_option(raw: Any, says: str) -> None:
    assert one_refused(SHIFT, raw) == says


DEFECTS = "type: multiselect\noptions: [burr, chatter, 3]"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["burr", "chatter"], ["burr", "chatter"]),
        (["chatter", "burr", "chatter"], ["chatter", "burr"]),
        (["3", 3], [3]),
        ("burr", ["burr"]),
        ([], []),
        (None, []),
        ("", []),
    ],
)
def test_multiselect_gives_a_list_without_repeats(raw: Any, expected: list[Any]) -> None:
    assert one(DEFECTS, raw) == expected


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (["burr", "crack"], "'crack' is not one of the options"),
        ([True], "expected a list of options, not [True]"),
        ([{"value": "burr"}], "expected a list of options"),
        ({"burr": True}, "expected a list of options"),
    ],
)
def test_multiselect_refuses_what_is_not_an_option(raw: Any, says: str) -> None:
    assert says in one_refused(DEFECTS, raw)


# ---------------------------------------------------------------------- checkboxes
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("on", True),
        (True, True),
        ("true", True),
        ("YES", True),
        ("1", True),
        (None, False),
        ("", False),
        (False, False),
        ("false", False),
        ("off", False),
        ("no", False),
        ("0", False),
    ],
)
def test_checkbox_reads_html_and_json(raw: Any, expected: bool) -> None:
    assert one("type: checkbox", raw) is expected


def test_a_missing_checkbox_is_false() -> None:
    form = form_of("- name: done\n  type: checkbox")
    assert submit(form, {}) == {"done": False}


@pytest.mark.parametrize("raw", ["maybe", 2, [True]])
def test_checkbox_refuses_other_values(raw: Any) -> None:
    assert one_refused("type: checkbox", raw) == f"expected true or false, not {raw!r}"


# ---------------------------------------------------------------------- dates and times
@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("date", "2026-03-01", "2026-03-01"),
        ("date", " 2026-03-01 ", "2026-03-01"),
        ("time", "14:30", "14:30"),
        ("time", "14:30:05", "14:30:05"),
        ("time", "00:00", "00:00"),
        ("datetime", "2026-03-01T14:30", "2026-03-01T14:30"),
        ("datetime", "2026-03-01T14:30:05", "2026-03-01T14:30:05"),
        ("datetime", "2026-03-01 14:30", "2026-03-01T14:30"),
    ],
)
def test_dates_and_times_are_stored_as_iso_text(kind: str, raw: str, expected: str) -> None:
    assert one(f"type: {kind}", raw) == expected


@pytest.mark.parametrize(
    ("kind", "raw", "says"),
    [
        ("date", "01.03.2026", "expected a date like 2026-03-01, not '01.03.2026'"),
        ("date", "2026-02-30", "expected a date like 2026-03-01, not '2026-02-30'"),
        ("date", "2026-13-01", "expected a date like 2026-03-01"),
        ("date", "tomorrow", "expected a date like 2026-03-01"),
        ("date", 20260301, "expected a date as text"),
        ("time", "7:30", "expected a time like 14:30, not '7:30'"),
        ("time", "24:00", "expected a time like 14:30"),
        ("time", "14:60", "expected a time like 14:30"),
        ("time", "14:30:00.5", "expected a time like 14:30"),
        ("time", "2 pm", "expected a time like 14:30"),
        ("datetime", "2026-03-01T25:00", "expected a datetime like 2026-03-01T14:30"),
        ("datetime", "01.03.2026 14:30", "expected a datetime like 2026-03-01T14:30"),
        ("datetime", ["2026-03-01"], "expected a datetime as text"),
    ],
)
def test_bad_dates_and_times_are_refused(kind: str, raw: Any, says: str) -> None:
    assert says in one_refused(f"type: {kind}", raw)


# ---------------------------------------------------------------------- required
def test_required_fields_must_be_filled() -> None:
    form = form_of("""
        - name: note
          type: text
          required: true
        - name: pieces
          type: integer
          required: true
        - name: defects
          type: multiselect
          options: [burr]
          required: true
        - name: confirmed
          type: checkbox
          required: true
        - name: bore
          type: measurement
          lower: 1
          required: true
        """)
    assert refused(form, {"note": "   ", "pieces": "", "defects": []}) == {
        "note": "this field is required",
        "pieces": "this field is required",
        "defects": "this field is required",
        "confirmed": "tick this box to confirm",
        "bore": "this field is required",
    }
    values = submit(
        form, {"note": "ok", "pieces": "0", "defects": "burr", "confirmed": "on", "bore": "1"}
    )
    assert values["pieces"] == 0, "zero is a value, not an empty field"


def test_a_type_error_is_reported_instead_of_required() -> None:
    form = form_of("- name: pieces\n  type: integer\n  required: true")
    assert refused(form, {"pieces": "many"}) == {"pieces": "expected a whole number, not 'many'"}


# ---------------------------------------------------------------------- show_if
REVIEW = """
- name: disposition
  type: select
  options: [use_as_is, rework, scrap]
  required: true
- name: justification
  type: textarea
  required: true
  show_if: {field: disposition, equals: use_as_is}
- name: defect_codes
  type: multiselect
  options: [diameter, burr]
  required: true
  show_if: {field: disposition, not_equals: use_as_is}
- name: rework_hours
  type: integer
  required: true
  show_if: {field: disposition, in: [rework, scrap]}
"""


def test_show_if_equals_makes_a_field_required_only_when_shown() -> None:
    form = form_of(REVIEW)
    assert refused(form, {"disposition": "use_as_is"}) == {
        "justification": "this field is required"
    }
    values = submit(form, {"disposition": "use_as_is", "justification": "within the fit"})
    assert values == {"disposition": "use_as_is", "justification": "within the fit"}


def test_show_if_not_equals_and_in() -> None:
    form = form_of(REVIEW)
    assert refused(form, {"disposition": "rework"}) == {
        "defect_codes": "this field is required",
        "rework_hours": "this field is required",
    }
    values = submit(
        form,
        {"disposition": "scrap", "defect_codes": ["burr"], "rework_hours": "2", "junk": "x"},
    )
    assert values == {"disposition": "scrap", "defect_codes": ["burr"], "rework_hours": 2}


def test_hidden_fields_are_dropped_and_their_errors_ignored() -> None:
    form = form_of(REVIEW)
    values = submit(
        form,
        {
            "disposition": "use_as_is",
            "justification": "ok",
            "defect_codes": ["crack"],  # not an option, but hidden
            "rework_hours": "many",  # not a number, but hidden
        },
    )
    assert values == {"disposition": "use_as_is", "justification": "ok"}


def test_an_empty_controlling_field_counts_as_empty_for_every_test() -> None:
    options = "[use_as_is, rework, scrap]"
    form = form_of(REVIEW.replace(f"{options}\n  required: true", options))
    assert form.fields[0].required is False
    errors = refused(form, {})
    # not_equals holds for an empty value; equals and in do not.
    assert errors == {"defect_codes": "this field is required"}


def test_show_if_filled() -> None:
    form = form_of("""
        - name: remarks
          type: text
        - name: remarks_by
          type: text
          required: true
          show_if: {field: remarks, filled: true}
        - name: why_no_remarks
          type: text
          required: true
          show_if: {field: remarks, filled: false}
        """)
    assert refused(form, {"remarks": "chatter"}) == {"remarks_by": "this field is required"}
    assert refused(form, {"remarks": " "}) == {"why_no_remarks": "this field is required"}
    assert submit(form, {"remarks": "chatter", "remarks_by": "op-17", "why_no_remarks": "x"}) == {
        "remarks": "chatter",
        "remarks_by": "op-17",
    }


def test_show_if_equals_a_checkbox_and_a_number() -> None:
    form = form_of("""
        - name: rework
          type: checkbox
        - name: press
          type: select
          options: [1, 2]
        - name: rework_note
          type: text
          required: true
          show_if: {field: rework, equals: true}
        - name: press_two_note
          type: text
          required: true
          show_if: {field: press, equals: 2}
        """)
    assert submit(form, {"press": "1"}) == {"rework": False, "press": 1}
    assert refused(form, {"rework": "on", "press": "2"}) == {
        "rework_note": "this field is required",
        "press_two_note": "this field is required",
    }


def test_out_of_tolerance_with_nominal_from_and_tolerance() -> None:
    form = form_of("""
        - name: measured_mm
          type: measurement
          nominal_from: nominal_mm
          tolerance: 0.02
          required: true
        - name: note
          type: textarea
          required: true
          show_if: {field: measured_mm, out_of_tolerance: true}
        - name: in_note
          type: text
          required: true
          show_if: {field: measured_mm, out_of_tolerance: false}
        """)
    data = {"nominal_mm": 25.0}
    assert refused(form, {"measured_mm": "25,03"}, data) == {"note": "this field is required"}
    assert refused(form, {"measured_mm": "25,02"}, data) == {"in_note": "this field is required"}
    values = submit(form, {"measured_mm": "25,02", "in_note": "fine", "note": "x"}, data)
    assert values == {
        "measured_mm": 25.02,
        "measured_mm_verdict": "in",
        "in_note": "fine",
    }
    values = submit(form, {"measured_mm": "24,97", "note": "chatter marks"}, data)
    assert values == {
        "measured_mm": 24.97,
        "measured_mm_verdict": "out",
        "note": "chatter marks",
    }


def test_out_of_tolerance_with_limits_from_task_data() -> None:
    form = form_of("""
        - name: length
          type: measurement
          lower_from: spec.min
          upper_from: spec.max
        - name: note
          type: text
          required: true
          show_if: {field: length, out_of_tolerance: true}
        """)
    data = {"spec": {"min": 99.5, "max": 100.5}}
    assert refused(form, {"length": "100,6"}, data) == {"note": "this field is required"}
    assert refused(form, {"length": "99,4"}, data) == {"note": "this field is required"}
    assert submit(form, {"length": "100,5"}, data) == {"length": 100.5, "length_verdict": "in"}
    # An empty measurement is not out of tolerance.
    assert submit(form, {"length": ""}, data) == {"length": None}


def test_section_show_if_hides_every_field_of_the_section() -> None:
    form = sections_form("""
        form: check
        sections:
          - title: Result
            fields:
              - name: passed
                type: checkbox
          - title: Rework
            show_if: {field: passed, equals: false}
            fields:
              - name: reason
                type: text
                required: true
              - name: hours
                type: integer
                required: true
        """)
    assert refused(form, {}) == {
        "reason": "this field is required",
        "hours": "this field is required",
    }
    assert submit(form, {"passed": "on", "reason": "x", "hours": "abc"}) == {"passed": True}


def test_a_field_shown_by_a_hidden_field_is_hidden_too() -> None:
    form = form_of("""
        - name: rework
          type: checkbox
        - name: rework_by
          type: text
          show_if: {field: rework, equals: true}
        - name: rework_hours
          type: integer
          required: true
          show_if: {field: rework_by, filled: true}
        - name: no_rework_by
          type: text
          required: true
          show_if: {field: rework_by, filled: false}
        """)
    # rework unticked: rework_by is hidden, so it counts as empty even though it was sent.
    assert refused(form, {"rework_by": "op-17"}) == {"no_rework_by": "this field is required"}
    assert submit(form, {"rework_by": "op-17", "rework_hours": "x", "no_rework_by": "op-3"}) == {
        "rework": False,
        "no_rework_by": "op-3",
    }
    assert refused(form, {"rework": "on", "rework_by": "op-17"}) == {
        "rework_hours": "this field is required"
    }


def test_a_field_in_a_hidden_section_hides_the_fields_it_shows() -> None:
    form = sections_form("""
        form: check
        sections:
          - title: Start
            fields:
              - name: rework
                type: checkbox
          - title: Rework
            show_if: {field: rework, equals: true}
            fields:
              - name: reason
                type: select
                options: [burr, other]
          - title: Other reason
            fields:
              - name: other_reason
                type: text
                required: true
                show_if: {field: reason, equals: other}
        """)
    assert submit(form, {"reason": "other"}) == {"rework": False}
    assert refused(form, {"rework": "on", "reason": "other"}) == {
        "other_reason": "this field is required"
    }


# ---------------------------------------------------------------------- measurements
BORE = """
- name: bore
  type: measurement
  nominal: 25.0
  tolerance: 0.02
  decimals: 3
"""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("25,02", "in"),
        ("24,98", "in"),
        ("25", "in"),
        ("25,021", "out"),
        ("24,979", "out"),
        (26, "out"),
    ],
)
def test_measurement_verdict_at_the_exact_limits(raw: Any, expected: str) -> None:
    values = submit(form_of(BORE), {"bore": raw})
    assert values["bore_verdict"] == expected
    assert values["bore"] == float(str(raw).replace(",", "."))


def test_an_out_of_tolerance_measurement_is_still_recorded() -> None:
    assert submit(form_of(BORE + "  required: true"), {"bore": "30"}) == {
        "bore": 30.0,
        "bore_verdict": "out",
    }


def test_measurement_decimals_are_limited() -> None:
    assert refused(form_of(BORE), {"bore": "25,0125"}) == {"bore": "use at most 3 decimal places"}


def test_missing_limits_in_the_task_data_leave_that_side_open() -> None:
    nominal = form_of(
        "- name: bore\n  type: measurement\n  nominal_from: spec.bore\n  tolerance: 0.02"
    )
    assert submit(nominal, {"bore": "99"}, {}) == {"bore": 99.0, "bore_verdict": "in"}
    limits = form_of(
        "- name: bore\n  type: measurement\n  lower_from: spec.low\n  upper_from: spec.high"
    )
    data = {"spec": {"low": 10}}
    assert submit(limits, {"bore": "1000"}, data)["bore_verdict"] == "in"
    assert submit(limits, {"bore": "9,9"}, data)["bore_verdict"] == "out"
    data = {"spec": {"high": 10}}
    assert submit(limits, {"bore": "-1000"}, data)["bore_verdict"] == "in"
    assert submit(limits, {"bore": "10,1"}, data)["bore_verdict"] == "out"


def test_a_one_sided_measurement() -> None:
    form = form_of("- name: depth\n  type: measurement\n  upper: 5")
    assert submit(form, {"depth": "5"})["depth_verdict"] == "in"
    assert submit(form, {"depth": "-50"})["depth_verdict"] == "in"
    assert submit(form, {"depth": "5,001"})["depth_verdict"] == "out"


def test_limits_and_verdict_functions() -> None:
    bore = form_of(BORE).fields[0]
    assert limits_of(bore, {}) == {"nominal": 25.0, "lower": 24.98, "upper": 25.02}
    depth = form_of(
        "- name: depth\n  type: measurement\n  nominal_from: d\n  lower: 1\n  upper_from: d_max"
    ).fields[0]
    assert limits_of(depth, {"d": 3, "d_max": "7"}) == {"nominal": 3.0, "lower": 1.0, "upper": None}
    assert verdict(5.0, {"lower": None, "upper": None}) == "in"
    assert verdict(5.0, {"lower": 5.0, "upper": 5.0}) == "in"
    assert verdict(5.0, {"lower": 5.1}) == "out"


# ---------------------------------------------------------------------- options from data
def test_options_from_a_list_of_values_in_the_task_data() -> None:
    form = form_of("- name: machine\n  type: select\n  options_from: plant.machines")
    data = {"plant": {"machines": ["M1", "M2", 7]}}
    assert submit(form, {"machine": "M2"}, data) == {"machine": "M2"}
    assert submit(form, {"machine": "7"}, data) == {"machine": 7}
    assert refused(form, {"machine": "M3"}, data) == {"machine": "'M3' is not one of the options"}
    assert refused(form, {"machine": "M1"}, {}) == {"machine": "'M1' is not one of the options"}


def test_options_from_a_list_of_objects() -> None:
    form = form_of("- name: machine\n  type: multiselect\n  options_from: machines")
    by_id = {"machines": [{"id": 7, "name": "Press 7"}, {"id": "m8", "name": "Lathe"}]}
    assert submit(form, {"machine": ["7", "m8"]}, by_id) == {"machine": [7, "m8"]}
    by_value = {"machines": [{"value": "p7", "label": "Press 7"}, {"label": "no value"}, True]}
    assert submit(form, {"machine": "p7"}, by_value) == {"machine": ["p7"]}
    prepared = prepare(form, by_value, html=False)
    assert prepared["sections"][0]["fields"][0]["options"] == [{"value": "p7", "label": "Press 7"}]
    prepared = prepare(form, by_id, html=False)
    assert prepared["sections"][0]["fields"][0]["options"] == [
        {"value": 7, "label": "Press 7"},
        {"value": "m8", "label": "Lathe"},
    ]


def test_options_from_a_lookup() -> None:
    roles: list[str | None] = []

    def users(role: str | None) -> list[Option]:
        roles.append(role)
        people = {"quality": [Option("quinn", "Quinn")], None: [Option("olga", "Olga")]}
        return people.get(role, [])

    lookups = LookupRegistry()
    lookups.register("users", users)
    assert lookups.names() == ["users"]
    form = form_of("""
        - name: inspector
          type: select
          lookup: users
          lookup_role: quality
        - name: helper
          type: select
          lookup: users
        """)
    values = submit(form, {"inspector": "quinn", "helper": "olga"}, lookups=lookups)
    assert values == {"inspector": "quinn", "helper": "olga"}
    assert roles == ["quality", None]
    assert refused(form, {"inspector": "olga"}, lookups=lookups) == {
        "inspector": "'olga' is not one of the options"
    }
    # Without the registry there is nothing to choose from.
    assert refused(form, {"inspector": "quinn"}) == {
        "inspector": "'quinn' is not one of the options"
    }
    assert lookups.options("nothing") == []


# ---------------------------------------------------------------------- strict mode
def test_strict_mode_refuses_unknown_keys() -> None:
    form = form_of("""
        - name: bore
          type: measurement
          lower: 1
        - name: info
          type: display
          value: Measure it
        """)
    raw = {"bore": "2", "colour": "red", "bore_verdict": "in"}
    assert refused(form, raw, strict=True) == {
        "colour": "'colour' is not a field of form 'check'",
        "bore_verdict": "'bore_verdict' is not a field of form 'check'",
    }
    assert submit(form, raw) == {"bore": 2.0, "bore_verdict": "in"}
    assert submit(form, {"bore": "0"}, strict=True) == {"bore": 0.0, "bore_verdict": "out"}


def test_non_strict_mode_ignores_unknown_keys() -> None:
    form = form_of("- name: note\n  type: text")
    assert submit(form, {"note": "ok", "csrf_token": "abc", "action": "complete"}) == {"note": "ok"}


# ---------------------------------------------------------------------- signatures
SIGNED = """
- name: disposition
  type: select
  options: [use_as_is, rework]
  required: true
- name: justification
  type: textarea
  show_if: {field: disposition, equals: use_as_is}
- name: info
  type: display
  value: "Order {{ order_id }}"
- name: release
  type: signature
  meaning: "I release order {{ order_id }}."
  required: true
"""


def test_a_signature_records_signer_meaning_time_and_the_signed_values() -> None:
    tried: list[str] = []
    values = submit(
        form_of(SIGNED),
        {"disposition": "use_as_is", "justification": "within fit", "release": PASSWORD},
        {"order_id": "A-17"},
        signer=signer(tried=tried),
    )
    assert tried == [PASSWORD]
    assert values == {
        "disposition": "use_as_is",
        "justification": "within fit",
        "release": {
            "signer": "quinn",
            "signer_name": "Quinn (quality)",
            "signed_at": "2026-03-01T14:30:05+00:00",
            "meaning": "I release order A-17.",
            "values": {"disposition": "use_as_is", "justification": "within fit"},
        },
    }
    assert PASSWORD not in repr(values)


def test_a_signature_signs_only_shown_fields_and_accepts_an_api_object() -> None:
    values = submit(
        form_of(SIGNED),
        {"disposition": "rework", "justification": "hidden", "release": {"password": PASSWORD}},
        {"order_id": "<A&B>"},
        signer=signer(display_name=None),
    )
    assert values["release"]["values"] == {"disposition": "rework"}
    assert values["release"]["signer_name"] == "quinn"
    assert values["release"]["meaning"] == "I release order <A&B>.", "plain text, not HTML"
    assert PASSWORD not in repr(values)


def test_signs_names_a_subset() -> None:
    form = form_of("""
        - name: pieces
          type: integer
        - name: note
          type: text
        - name: qa
          type: signature
          meaning: Checked
          signs: [pieces]
        """)
    values = submit(form, {"pieces": "12", "note": "n", "qa": PASSWORD})
    assert values["qa"]["values"] == {"pieces": 12}
    assert values["note"] == "n"


def test_a_wrong_password_is_an_error_on_the_signature() -> None:
    form = form_of(SIGNED)
    for wrong in ("guess", PASSWORD.upper(), {"password": "guess"}):
        errors = refused(form, {"disposition": "rework", "release": wrong})
        assert errors == {"release": "the password is not the one of quinn: not signed"}


def test_a_password_that_is_not_text_is_not_checked() -> None:
    tried: list[str] = []
    errors = refused(
        form_of(SIGNED), {"disposition": "rework", "release": 1234}, signer=signer(tried=tried)
    )
    assert errors == {"release": "the password is not the one of quinn: not signed"}
    assert tried == []


def test_a_right_password_with_other_errors_asks_to_sign_again() -> None:
    with pytest.raises(ValidationFailed) as info:
        submit(form_of(SIGNED), {"disposition": "scrap", "release": PASSWORD})
    assert info.value.details == {
        "fields": {
            "disposition": "'scrap' is not one of the options",
            "release": "sign again once the other fields are corrected",
        }
    }
    assert PASSWORD not in info.value.message
    assert PASSWORD not in repr(info.value.to_dict())


def test_a_required_signature_needs_a_password() -> None:
    for missing in ({}, {"release": ""}, {"release": {"password": ""}}):
        errors = refused(form_of(SIGNED), {"disposition": "rework", **missing})
        assert errors == {"release": "enter your password to sign"}


def test_an_optional_signature_may_be_left_out() -> None:
    form = form_of(SIGNED.replace("  required: true\n", "", 2) + "- name: n\n  type: text")
    assert submit(form, {"disposition": "rework"}) == {"disposition": "rework", "n": None}


def test_a_hidden_signature_is_not_required() -> None:
    form = form_of("""
        - name: deviation
          type: checkbox
        - name: approval
          type: signature
          meaning: Deviation approved
          required: true
          show_if: {field: deviation, equals: true}
        """)
    assert submit(form, {"approval": "anything"}) == {"deviation": False}
    assert refused(form, {"deviation": "on"}) == {"approval": "enter your password to sign"}


# ---------------------------------------------------------------------- the refusal
def test_the_refusal_counts_the_fields_and_lists_each() -> None:
    form = form_of("""
        - name: pieces
          type: integer
          required: true
        - name: bore
          type: decimal
        """)
    with pytest.raises(ValidationFailed) as info:
        submit(form, {"bore": "abc"})
    message = info.value.message
    assert message.startswith("2 fields of form 'check' need attention: ")
    assert "pieces: this field is required" in message
    assert "bore: expected a number, not 'abc'" in message
    assert info.value.details == {
        "fields": {"pieces": "this field is required", "bore": "expected a number, not 'abc'"}
    }
    body = info.value.to_dict()["error"]
    assert body["code"] == "validation_failed" and info.value.http_status == 422

    with pytest.raises(ValidationFailed) as info:
        submit(form, {"pieces": "1", "bore": "abc"})
    assert info.value.message == (
        "1 field of form 'check' needs attention: bore: expected a number, not 'abc'"
    )


# ---------------------------------------------------------------------- prepare
PREPARED = """
form: check
title: "Check, order {{ order_id }}"
description: "Press {{ press.name }}"
sections:
  - title: "Order {{ order_id }}"
    help: "Planned {{ qty }} pieces"
    fields:
      - name: info
        type: display
        label: "Order {{ order_id }}"
        value: "{{ order_id }}: {{ qty }} pieces"
      - name: quantity
        type: display
        from: order.quantity
      - name: missing
        type: display
        from: order.nothing
      - name: pieces
        type: integer
        label: "Pieces of {{ order_id }}"
        help: "Planned {{ qty }}"
        unit: pcs
        min: 0
        max: 500
        default_from: qty
        required: true
  - title: Measure
    show_if: {field: pieces, filled: true}
    fields:
      - name: bore
        type: measurement
        unit: mm
        decimals: 3
        nominal_from: spec.bore
        tolerance: 0.02
      - name: note
        type: text
        max_length: 80
        pattern: "[a-z ]+"
        pattern_hint: lower-case words
        placeholder: e.g. burr
        default: none
        show_if: {field: bore, out_of_tolerance: true}
      - name: shift
        type: select
        options: [{value: early, label: Early shift}, late]
        default_from: order.nothing
      - name: release
        type: signature
        meaning: "Released {{ order_id }}"
"""

DATA = {
    "order_id": "A-17",
    "qty": 40,
    "press": {"name": "P3"},
    "order": {"quantity": 40},
    "spec": {"bore": 25.0},
}


def test_prepare_renders_texts_with_the_task_data() -> None:
    prepared = prepare(sections_form(PREPARED), DATA)
    assert prepared["name"] == "check"
    assert prepared["title"] == "Check, order A-17"
    assert prepared["description"] == "Press P3"
    first, second = prepared["sections"]
    assert (first["title"], first["help"], first["show_if"]) == (
        "Order A-17",
        "Planned 40 pieces",
        None,
    )
    assert second["show_if"] == {"field": "pieces", "filled": True}
    info, quantity, missing, pieces = first["fields"]
    assert (info["label"], info["value"]) == ("Order A-17", "A-17: 40 pieces")
    assert "default" not in info
    assert quantity["value"] == "40" and quantity["label"] == "Quantity"
    assert missing["value"] == ""
    assert pieces == {
        "name": "pieces",
        "type": "integer",
        "label": "Pieces of A-17",
        "help": "Planned 40",
        "required": True,
        "show_if": None,
        "unit": "pcs",
        "min": 0,
        "max": 500,
        "default": 40,
    }
    bore, note, shift, release = second["fields"]
    assert bore["limits"] == {"nominal": 25.0, "lower": 24.98, "upper": 25.02}
    assert (bore["unit"], bore["decimals"], bore["default"]) == ("mm", 3, None)
    assert note["show_if"] == {"field": "bore", "out_of_tolerance": True}
    assert (note["max_length"], note["pattern"], note["pattern_hint"], note["placeholder"]) == (
        80,
        "[a-z ]+",
        "lower-case words",
        "e.g. burr",
    )
    assert note["default"] == "none" and note["help"] is None
    assert shift["options"] == [
        {"value": "early", "label": "Early shift"},
        {"value": "late", "label": "late"},
    ]
    assert shift["default"] is None
    assert release["meaning"] == "Released {{ order_id }}", "the meaning is rendered when signed"
    assert "default" not in release


def test_prepare_without_task_data_shows_nothing_where_data_is_missing() -> None:
    prepared = prepare(sections_form(PREPARED), {}, html=False)
    assert prepared["title"] == "Check, order "
    fields = prepared["sections"][1]["fields"]
    assert fields[0]["limits"] == {"nominal": None, "lower": None, "upper": None}


def test_task_data_is_escaped_in_html_and_plain_in_the_api() -> None:
    form = sections_form(PREPARED)
    data = DATA | {"order_id": "<script>alert(1)</script>", "qty": "R&D"}
    html = prepare(form, data)
    assert isinstance(html["title"], Markup)
    assert html["title"] == "Check, order &lt;script&gt;alert(1)&lt;/script&gt;"
    info = html["sections"][0]["fields"][0]
    assert info["value"] == "&lt;script&gt;alert(1)&lt;/script&gt;: R&amp;D pieces"
    assert isinstance(info["value"], Markup)

    plain = prepare(form, data, html=False)
    assert plain["title"] == "Check, order <script>alert(1)</script>"
    assert type(plain["title"]) is str
    assert plain["sections"][0]["fields"][0]["value"] == "<script>alert(1)</script>: R&D pieces"
    assert type(plain["sections"][0]["fields"][0]["label"]) is str


def test_a_display_from_task_data_is_never_marked_safe() -> None:
    form = form_of("- name: info\n  type: display\n  from: note")
    value = prepare(form, {"note": "<b>x</b>"})["sections"][0]["fields"][0]["value"]
    assert value == "<b>x</b>" and not isinstance(value, Markup)


def test_text_without_template_is_escaped_too() -> None:
    form = form_of("- name: a\n  type: text\n  label: 'Width < 5 & height > 2'")
    label = prepare(form, {})["sections"][0]["fields"][0]["label"]
    assert label == "Width &lt; 5 &amp; height &gt; 2"
    assert prepare(form, {}, html=False)["sections"][0]["fields"][0]["label"] == (
        "Width < 5 & height > 2"
    )


@pytest.mark.parametrize(
    "label",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ order.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ 'x'|attr('__class__') }}",
        "{{ order.update({'id': 1}) }}",
    ],
)
def test_the_sandbox_refuses_attribute_tricks_without_raising(label: str) -> None:
    form = form_of(f'- name: a\n  type: text\n  label: "{label}"')
    data = {"order": {"id": 7}}
    for html in (True, False):
        shown = str(prepare(form, data, html=html)["sections"][0]["fields"][0]["label"])
        assert "class '" not in shown and "<built-in" not in shown and "uid=" not in shown
        assert "function" not in shown
    assert data == {"order": {"id": 7}}, "the task data is not changed"


def test_missing_data_shows_nothing_and_a_failing_template_shows_its_text() -> None:
    form = form_of("""
        - name: a
          type: text
          label: "{{ order.items[3].name }}|x"
        - name: b
          type: text
          label: "{{ 1 / zero }}"
        """)
    fields = prepare(form, {"zero": 0}, html=False)["sections"][0]["fields"]
    assert fields[0]["label"] == "|x"
    assert fields[1]["label"] == "{{ 1 / zero }}"


@pytest.mark.parametrize("path", sorted((ROOT / "forms").glob("*.yaml")), ids=lambda p: p.name)
def test_every_demo_form_prepares_and_accepts_an_empty_optional_submission(path: Path) -> None:
    form = parse_form(path.read_text(encoding="utf-8"), str(path))
    data = {
        "order_id": "A-17",
        "order_number": "A-17",
        # The other demo forms name what they are about from objects of the task data.
        "stop": {"machine_name": "A-17"},
        "purchase_order": {"number": "A-17"},
        "requisition": {"number": "A-17"},
        "nominal_mm": 25.0,
        "measured_mm": 25.03,
        "deviation_mm": 0.03,
        "planned_qty": 40,
        "scrap_allowance": 2,
    }
    for html in (True, False):
        prepared = prepare(form, data, html=html)
        # A form that starts something (the planner's new order) has no subject yet.
        if form.name != "production_order_request":
            assert "A-17" in prepared["title"]
    with pytest.raises(ValidationFailed) as info:
        submit(form, {}, data)
    required = {f.name for f in form.fields if f.required and f.show_if is None}
    assert required <= set(info.value.details["fields"])
