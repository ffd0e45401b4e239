"""Design checks on DMN decision tables, for what SpiffWorkflow evaluates differently from
what the table says (see ../shared/notes/spiffworkflow.md, "DMN" and "More traps").

SpiffWorkflow implements two hit policies: COLLECT (without aggregation) and, in effect,
first-match for everything else. UNIQUE returns the first match without checking that only
one rule matches; FIRST is therefore right; PRIORITY, RULE ORDER and OUTPUT ORDER silently
act as first-match; a COLLECT aggregation (SUM, COUNT, MIN, MAX) is ignored.
"""

from __future__ import annotations

import re
from typing import Any

from taktflow.engine.sandbox import check_source
from taktflow.lint.findings import ERROR, WARNING, Finding

_OPERATOR = re.compile(r"^(<=|>=|==|!=|<|>)")


def _local(el: Any) -> str:
    return el.tag.rsplit("}", 1)[-1] if isinstance(el.tag, str) else ""


def _find_all(el: Any, name: str) -> list[Any]:
    return [c for c in el.iter() if _local(c) == name]


def _children(el: Any, name: str) -> list[Any]:
    return [c for c in el if _local(c) == name]


def _text(el: Any) -> str:
    texts = _children(el, "text")
    return (texts[0].text or "").strip() if texts else ""


def decision_ids(root: Any) -> set[str]:
    return {d.get("id") for d in _children(root, "decision") if d.get("id")}


def check_dmn(file: str, root: Any) -> list[Finding]:
    findings: list[Finding] = []

    def add(severity: str, rule: str, el: Any, message: str) -> None:
        findings.append(
            Finding(file, severity, rule, message, element=el.get("id"), line=el.sourceline)
        )

    for table in _find_all(root, "decisionTable"):
        policy = (table.get("hitPolicy") or "UNIQUE").upper()
        aggregation = table.get("aggregation")
        if policy in ("PRIORITY", "RULE ORDER", "OUTPUT ORDER"):
            add(
                ERROR,
                "hit-policy",
                table,
                f"hit policy {policy} is not implemented: SpiffWorkflow silently returns the "
                "first matching rule; use FIRST and order the rules, or COLLECT",
            )
        elif policy == "ANY":
            add(
                WARNING,
                "hit-policy",
                table,
                "hit policy ANY acts as first-match: rules that disagree are not reported",
            )
        elif policy == "COLLECT" and aggregation:
            add(
                ERROR,
                "hit-policy",
                table,
                f"COLLECT {aggregation} is not implemented: the aggregation is ignored and "
                "each output comes back as a list; compute it in a script after the decision",
            )
        rules = _children(table, "rule")
        inputs = _children(table, "input")
        seen: dict[tuple[str, ...], int] = {}
        has_default = False
        for number, rule in enumerate(rules, start=1):
            cells = [_text(entry) for entry in _children(rule, "inputEntry")]
            normal = tuple("-" if c in ("", "-") else c for c in cells)
            if all(c == "-" for c in normal):
                has_default = True
            if policy == "UNIQUE" and normal in seen:
                add(
                    WARNING,
                    "unique-overlap",
                    rule,
                    f"rule {number} has the same tests as rule {seen[normal]}: with UNIQUE "
                    "SpiffWorkflow takes the first match without reporting the overlap",
                )
            seen.setdefault(normal, number)
            for entry, cell in zip(_children(rule, "inputEntry"), cells, strict=False):
                _check_input_cell(number, entry, cell, add)
            for entry in _children(rule, "outputEntry"):
                text = _text(entry)
                if text and check_source(text, "eval"):
                    add(
                        ERROR,
                        "dmn-cell-syntax",
                        entry,
                        f"rule {number}: output {text!r} is not a valid expression "
                        f"({check_source(text, 'eval')}); quote text: 'A'",
                    )
        if rules and not has_default and policy != "COLLECT" and inputs:
            add(
                WARNING,
                "dmn-no-default-rule",
                table,
                "no rule matches every input (all '-'): when no rule matches, the outputs "
                "are not set and later steps fail on them",
            )
    return sorted(findings, key=lambda f: (f.line or 0, f.rule))


def _check_input_cell(number: int, entry: Any, cell: str, add: Any) -> None:
    if cell in ("", "-"):
        return
    if re.match(r"^(not\s+)?in\s", cell):
        add(
            ERROR,
            "dmn-in-operator",
            entry,
            f"rule {number}: test {cell!r} fails at run time: SpiffWorkflow glues the cell to "
            "the input without a space ('materialnot in [...]'); write '? in [...]' instead",
        )
        return
    # As SpiffWorkflow prepares a cell: `?` stands for the input; a cell that is a complete
    # expression is compared with ==; otherwise it is appended to the input.
    if "?" in cell:
        probe = cell.replace("?", "value")
    elif _OPERATOR.match(cell):
        probe = f"value {cell}"
    else:
        probe = f"value == ({cell})"
    error = check_source(probe, "eval")
    if error:
        add(
            ERROR,
            "dmn-cell-syntax",
            entry,
            f"rule {number}: test {cell!r} is not valid ({error.split(': ', 1)[-1]})",
        )
