"""A form meets a task: labels and options resolved from the task data, and submissions checked.

`prepare` gives what a screen or an API client needs to show the form for one task.
`validate` checks what the operator sent, field by field, and returns the values to store, or
raises ValidationFailed naming every field at fault. The web page and the API both call it, so
the same rules hold for people and systems. Nothing is stored until it passes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from taktflow.errors import ValidationFailed
from taktflow.forms.definition import VERDICT_SUFFIX, Field, FormDefinition, Option, ShowIf
from taktflow.forms.lookups import LookupRegistry
from taktflow.forms.templating import lookup_path, plain_text, render_text

IN, OUT = "in", "out"
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)$")
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$")


@dataclass
class Signer:
    """Who submits, and how to check the password a signature asks for again."""

    username: str
    display_name: str | None
    check_password: Callable[[str], bool]
    now: Callable[[], datetime]


# ---------------------------------------------------------------------- prepare
def options_of(f: Field, data: Mapping[str, Any], lookups: LookupRegistry | None) -> list[Option]:
    """The choices of a select field for this task."""
    if f.options is not None:
        return f.options
    if f.options_from:
        raw = lookup_path(data, f.options_from)
        options = []
        for item in raw if isinstance(raw, list) else []:
            if isinstance(item, Mapping):
                value = item.get("value", item.get("id"))
                label = item.get("label", item.get("name", value))
            else:
                value, label = item, item
            if isinstance(value, str | int) and not isinstance(value, bool):
                options.append(Option(value, str(label)))
        return options
    if f.lookup and lookups is not None:
        return lookups.options(f.lookup, f.lookup_role)
    return []


def limits_of(f: Field, data: Mapping[str, Any]) -> dict[str, float | None]:
    """A measurement's nominal, lower and upper limit for this task (None where not known)."""
    out: dict[str, float | None] = {}
    for key in ("nominal", "lower", "upper"):
        raw = f.limits.get(key)
        value = lookup_path(data, raw) if isinstance(raw, str) else raw
        out[key] = float(value) if _is_number(value) else None
    tolerance = f.limits.get("tolerance")
    if _is_number(tolerance) and out["nominal"] is not None:
        # Rounded so that 25.0 +- 0.02 gives 24.98, not 24.979999999999997.
        places = 12
        out["lower"] = round(out["nominal"] - tolerance, places)
        out["upper"] = round(out["nominal"] + tolerance, places)
    return out


def default_of(f: Field, data: Mapping[str, Any]) -> Any:
    if f.default_from:
        return lookup_path(data, f.default_from)
    return f.default


def verdict(value: float, limits: Mapping[str, float | None]) -> str:
    """In or out of tolerance (a missing limit leaves that side open)."""
    low, high = limits.get("lower"), limits.get("upper")
    if low is not None and value < low:
        return OUT
    if high is not None and value > high:
        return OUT
    return IN


def prepare(
    form: FormDefinition,
    data: Mapping[str, Any],
    lookups: LookupRegistry | None = None,
    *,
    html: bool = True,
) -> dict[str, Any]:
    """The form for one task: texts rendered with its data, options, limits and defaults.

    With `html`, texts are escaped Markup for templates; otherwise plain strings (API).
    """
    text = render_text if html else plain_text
    sections = []
    for section in form.sections:
        fields = []
        for f in section.fields:
            item: dict[str, Any] = {
                "name": f.name,
                "type": f.type,
                "label": text(f.label, data),
                "help": text(f.help, data) if f.help else None,
                "required": f.required,
                "show_if": _show_if_dict(f.show_if),
            }
            for key in ("unit", "min", "max", "decimals", "min_length", "max_length", "pattern",
                        "pattern_hint", "placeholder", "rows", "meaning"):  # fmt: skip
                value = getattr(f, key)
                if value is not None:
                    item[key] = value
            if f.type in ("select", "multiselect"):
                choices = options_of(f, data, lookups)
                item["options"] = [{"value": o.value, "label": o.label} for o in choices]
            if f.type == "measurement":
                item["limits"] = limits_of(f, data)
            if f.type == "display":
                if f.value_from:
                    shown = lookup_path(data, f.value_from)
                    item["value"] = "" if shown is None else str(shown)
                else:
                    item["value"] = text(f.value, data)
            elif f.type not in ("signature",):
                item["default"] = default_of(f, data)
            fields.append(item)
        sections.append(
            {
                "title": text(section.title, data) if section.title else None,
                "help": text(section.help, data) if section.help else None,
                "show_if": _show_if_dict(section.show_if),
                "fields": fields,
            }
        )
    return {
        "name": form.name,
        "title": text(form.title, data),
        "description": text(form.description, data) if form.description else None,
        "sections": sections,
    }


def _show_if_dict(cond: ShowIf | None) -> dict[str, Any] | None:
    return None if cond is None else {"field": cond.field, cond.test: cond.operand}


# ---------------------------------------------------------------------- validate
def validate(
    form: FormDefinition,
    raw: Mapping[str, Any],
    data: Mapping[str, Any],
    *,
    signer: Signer,
    lookups: LookupRegistry | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """The values to store for a submission, or ValidationFailed with a message per field.

    `raw` holds strings from an HTML form or JSON values from the API; `strict` refuses keys
    that are not fields of the form (the API), instead of ignoring them (the web page).
    """
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for f in form.fields:
        if not f.takes_input or f.type == "signature":
            continue
        try:
            values[f.name] = _coerce(f, raw.get(f.name), data, lookups)
        except _Bad as exc:
            errors[f.name] = str(exc)
    if strict:
        known = {f.name for f in form.fields if f.takes_input}
        for key in raw:
            if key not in known:
                errors[key] = f"{key!r} is not a field of form {form.name!r}"
    shown = _visibility(form, values, data)
    for f in form.fields:
        if not f.takes_input:
            continue
        if not shown[f.name]:
            errors.pop(f.name, None)
            values.pop(f.name, None)
            continue
        if f.name in errors or f.type == "signature":
            continue
        if f.required and _empty(values.get(f.name), f):
            errors[f.name] = (
                "tick this box to confirm" if f.type == "checkbox" else "this field is required"
            )
        if f.type == "measurement" and values.get(f.name) is not None:
            extras[f"{f.name}{VERDICT_SUFFIX}"] = verdict(values[f.name], limits_of(f, data))
    # Signatures last: they sign the values that passed.
    for f in form.fields:
        if f.type != "signature" or not shown[f.name]:
            continue
        password = raw.get(f.name)
        if isinstance(password, Mapping):
            password = password.get("password")
        if password in (None, ""):
            if f.required:
                errors[f.name] = "enter your password to sign"
            continue
        if not isinstance(password, str) or not signer.check_password(password):
            errors[f.name] = f"the password is not the one of {signer.username}: not signed"
            continue
        if errors:
            errors[f.name] = "sign again once the other fields are corrected"
            continue
        signed = f.signs or [g.name for g in form.fields if g.takes_input and g.type != "signature"]
        values[f.name] = {
            "signer": signer.username,
            "signer_name": signer.display_name or signer.username,
            "signed_at": signer.now().isoformat(timespec="seconds"),
            "meaning": plain_text(f.meaning, data),
            "values": {name: values[name] for name in signed if name in values},
        }
    if errors:
        count = len(errors)
        summary = "; ".join(f"{name}: {message}" for name, message in errors.items())
        raise ValidationFailed(
            f"{count} field{'s' if count > 1 else ''} of form {form.name!r} "
            f"need{'' if count > 1 else 's'} attention: {summary}",
            details={"fields": errors},
        )
    return values | extras


class _Bad(Exception):
    pass


def _coerce(f: Field, raw: Any, data: Mapping[str, Any], lookups: LookupRegistry | None) -> Any:
    """The typed value of one field, None when empty, or _Bad with what is wrong."""
    if f.type == "checkbox":
        word = raw.strip().lower() if isinstance(raw, str) else None
        # The words for "no" too: refusing "false" as "expected true or false" is no answer.
        if raw is None or raw is False or word in ("", "off", "false", "no", "0"):
            return False
        if raw is True or word in ("on", "true", "yes", "1"):
            return True
        raise _Bad(f"expected true or false, not {raw!r}")
    if f.type == "multiselect":
        items = raw if isinstance(raw, list) else ([] if raw in (None, "") else [raw])
        choices = {str(o.value): o.value for o in options_of(f, data, lookups)}
        picked: list[Any] = []
        for item in items:
            if not isinstance(item, str | int) or isinstance(item, bool):
                raise _Bad(f"expected a list of options, not {raw!r}")
            if str(item) not in choices:
                raise _Bad(f"{item!r} is not one of the options")
            if choices[str(item)] not in picked:
                picked.append(choices[str(item)])
        return picked
    if isinstance(raw, str):
        raw = raw.strip()
    if raw is None or raw == "":
        return None
    if f.type in ("text", "textarea", "scan"):
        return _text(f, raw)
    if f.type == "integer":
        return _bounded(f, _integer(raw))
    if f.type in ("decimal", "measurement"):
        value = _decimal(raw)
        if f.decimals is not None and round(value, f.decimals) != value:
            raise _Bad(f"use at most {f.decimals} decimal place{'s' if f.decimals != 1 else ''}")
        return _bounded(f, value)
    if f.type == "select":
        if not isinstance(raw, str | int) or isinstance(raw, bool):
            raise _Bad(f"expected one of the options, not {raw!r}")
        for option in options_of(f, data, lookups):
            if str(option.value) == str(raw):
                return option.value
        raise _Bad(f"{raw!r} is not one of the options")
    if f.type in ("date", "time", "datetime"):
        return _moment(f.type, raw)
    raise _Bad(f"unsupported field type {f.type}")  # pragma: no cover - definition checks types


def _text(f: Field, raw: Any) -> str:
    if not isinstance(raw, str):
        raise _Bad(f"expected text, not {type(raw).__name__}")
    if f.max_length is not None and len(raw) > f.max_length:
        raise _Bad(f"at most {f.max_length} characters (this is {len(raw)})")
    if f.min_length is not None and len(raw) < f.min_length:
        raise _Bad(f"at least {f.min_length} characters")
    if f.pattern and re.fullmatch(f.pattern, raw) is None:
        hint = f.pattern_hint or f"text matching {f.pattern}"
        raise _Bad(f"{raw!r} does not match: expected {hint}")
    return raw


def _integer(raw: Any) -> int:
    if isinstance(raw, bool):
        raise _Bad("expected a whole number")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and re.fullmatch(r"[+-]?\d{1,18}", raw):
        return int(raw)
    raise _Bad(f"expected a whole number, not {raw!r}")


def _decimal(raw: Any) -> float:
    if isinstance(raw, bool):
        raise _Bad("expected a number")
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str) and len(raw) <= 40 and _NUMBER.match(raw):
        # A decimal comma is what many shop-floor keyboards and scales send.
        value = float(raw.replace(",", "."))
    else:
        raise _Bad(f"expected a number, not {raw!r}")
    if not math.isfinite(value):
        raise _Bad("expected a finite number")
    return value


def _bounded(f: Field, value: float) -> Any:
    unit = f" {f.unit}" if f.unit else ""
    if f.min is not None and value < f.min:
        raise _Bad(f"at least {_fmt(f.min)}{unit}")
    if f.max is not None and value > f.max:
        raise _Bad(f"at most {_fmt(f.max)}{unit}")
    return value


def _moment(kind: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise _Bad(f"expected a {kind} as text")
    try:
        if kind == "date":
            return date.fromisoformat(raw).isoformat()
        if kind == "time":
            if not _TIME.match(raw):
                raise ValueError
            return time.fromisoformat(raw).isoformat(timespec="minutes" if len(raw) == 5
                                                     else "seconds")  # fmt: skip
        moment = datetime.fromisoformat(raw)
        return moment.isoformat(timespec="minutes" if len(raw) == 16 else "seconds")
    except ValueError:
        example = {"date": "2026-03-01", "time": "14:30", "datetime": "2026-03-01T14:30"}[kind]
        raise _Bad(f"expected a {kind} like {example}, not {raw!r}") from None


def _visibility(
    form: FormDefinition, values: Mapping[str, Any], data: Mapping[str, Any]
) -> dict[str, bool]:
    """Which fields are shown for these values (a field under a hidden one counts as empty)."""
    shown: dict[str, bool] = {}

    def visible(f: Field, depth: int = 0) -> bool:
        if f.name in shown:
            return shown[f.name]
        result = True
        section = form.section_of(f.name)
        for cond in (section.show_if if section else None, f.show_if):
            if cond is None or depth > len(form.fields):
                continue
            target = form.field(cond.field)
            value = None
            if target is not None and visible(target, depth + 1):
                value = values.get(cond.field)
            if not holds(cond, value, target, data):
                result = False
        shown[f.name] = result
        return result

    for f in form.fields:
        visible(f)
    return shown


def holds(cond: ShowIf, value: Any, target: Field | None, data: Mapping[str, Any]) -> bool:
    """Whether a show_if condition holds for the controlling field's value."""
    if cond.test == "filled":
        return (not _empty(value, target)) == cond.operand
    if cond.test == "out_of_tolerance":
        if value is None or target is None:
            return False
        return (verdict(value, limits_of(target, data)) == OUT) == cond.operand
    if cond.test == "in":
        return any(_same(value, o) for o in cond.operand)
    same = _same(value, cond.operand)
    return same if cond.test == "equals" else not same


def _same(value: Any, operand: Any) -> bool:
    if value is None:
        return operand is None
    if isinstance(value, list):
        return any(_same(v, operand) for v in value)
    if isinstance(value, bool) or isinstance(operand, bool):
        return value is operand
    if _is_number(value) and _is_number(operand):
        return float(value) == float(operand)
    return str(value) == str(operand)


def _empty(value: Any, f: Field | None) -> bool:
    return value is None or value == "" or value == [] or value is False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(number: float) -> str:
    # Not `:g`, which keeps six digits: a max of 12345.75 would read "at most 12345.8".
    return str(int(number)) if float(number).is_integer() else repr(float(number))
