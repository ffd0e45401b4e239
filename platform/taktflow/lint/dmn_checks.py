"""Design checks on DMN files: decision tables SpiffWorkflow evaluates differently from what
they say, and cells that fail only when a rule is tried.

What SpiffWorkflow 3.2.0 does (dmn/engine/DMNEngine.py, dmn/parser/DMNParser.py):

- Hit policies: UNIQUE stops at the first matching rule and never checks uniqueness; COLLECT
  returns a list per output and ignores any aggregation; every other policy collects all
  matches and returns the first, so FIRST is right and ANY, PRIORITY, RULE ORDER and OUTPUT
  ORDER silently act as first-match. Unlike UNIQUE they evaluate every rule, so a later rule
  that raises fails the decision even when an earlier rule matched.
- Input cells are Python: `-` or an empty cell matches anything; a `?` stands for the input
  value; a cell that parses on its own is compared with `(input) == (cell)`; otherwise it is
  appended to the input expression *without a space* (`material` + `not in [...]` becomes
  `materialnot in [...]`). The parse test is `ast.parse` on the raw cell, so a cell with
  leading spaces takes the append route, and a blank cell compares the input with `()`.
- Output cells are Python expressions; an empty one gives "".
- One decision per file (more are refused when a business rule task loads the file), the
  first decision table only, and only <input>, <output> and <rule> inside the table.

Expressions are checked with the platform's sandbox compiler, which is what evaluates them.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Callable
from typing import Any

from taktflow.engine.sandbox import check_source
from taktflow.lint.findings import ERROR, WARNING, Finding

#: Policies SpiffWorkflow evaluates as the DMN standard says (FIRST: by collecting all
#: matches and taking the first).
SUPPORTED_POLICIES = frozenset({"UNIQUE", "FIRST", "COLLECT"})
FIRST_MATCH_POLICIES = frozenset({"PRIORITY", "RULE ORDER", "OUTPUT ORDER"})
# SpiffWorkflow's own pattern: a `?` outside quotes stands for the input value.
_PLACEHOLDER = re.compile(r"(\?)(?=(?:[^\'\"]|[\'\"][^\'\"]*[\'\"])*$)")
# Cells that start with a keyword operator glue onto an input expression ending in a name.
_KEYWORD_OPERATOR = re.compile(r"(not\s+in|in|is\s+not|is)\b")
_PLACEHOLDER_INPUT = "value"

Add = Callable[[str, str, Any, str], None]


def _local(el: Any) -> str:
    tag = el.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(el: Any, name: str) -> list[Any]:
    return [c for c in el if _local(c) == name]


def _root(root: Any) -> Any:
    return root.getroot() if hasattr(root, "getroot") else root


def _text(el: Any) -> str | None:
    """The raw text of the element's <text> child, as SpiffWorkflow reads it (last one wins,
    not stripped); None when there is none or it is empty."""
    value = None
    for child in _children(el, "text"):
        value = child.text
    return value


def decision_ids(root: Any) -> set[str]:
    """The decision a DMN file offers. SpiffWorkflow registers only the first decision of a
    file, so that is the only one a business rule task can call."""
    for decision in _children(_root(root), "decision"):
        return {decision.get("id")} if decision.get("id") else set()
    return set()


def check_dmn(file: str, root: Any) -> list[Finding]:
    """All design findings for one parsed DMN document, sorted by line."""
    root = _root(root)
    findings: list[Finding] = []

    def add(severity: str, rule: str, el: Any, message: str) -> None:
        element = el.get("id") if isinstance(el.tag, str) else None
        findings.append(
            Finding(
                file=file,
                severity=severity,
                rule=rule,
                message=message,
                element=element,
                line=el.sourceline,
            )
        )

    decisions = [el for el in root.iter() if _local(el) == "decision"]
    for extra in decisions[1:]:
        add(
            ERROR,
            "dmn-multiple-decisions",
            extra,
            "SpiffWorkflow reads one decision per DMN file and refuses a file with more when "
            "a business rule task uses it; move this decision to a file of its own",
        )
    for decision in decisions:
        tables = _children(decision, "decisionTable")
        if not tables:
            add(
                ERROR,
                "dmn-no-table",
                decision,
                "decision without a decision table: SpiffWorkflow evaluates only decision "
                "tables, so a business rule task using it fails to load",
            )
        for table in tables:
            _check_table(table, add)
    return sorted(findings, key=lambda f: (f.line or 0, f.rule, f.element or "", f.message))


def _check_table(table: Any, add: Add) -> None:
    policy = (table.get("hitPolicy") or "UNIQUE").upper()
    _check_policy(table, policy, add)
    _check_structure(table, add)
    inputs = _children(table, "input")
    outputs = _children(table, "output")
    expressions = [_input_expression(i, number, add) for number, i in enumerate(inputs, start=1)]
    rules = _children(table, "rule")
    used_columns: set[int] = set()
    seen: dict[tuple[str, ...], int] = {}
    has_catch_all = False
    for number, rule in enumerate(rules, start=1):
        entries = _children(rule, "inputEntry")
        cells = [_text(entry) for entry in entries]
        if len(entries) > len(inputs) or len(_children(rule, "outputEntry")) > len(outputs):
            add(
                ERROR,
                "dmn-unsupported-content",
                rule,
                f"rule {number} has more cells than the table has input or output columns: "
                "SpiffWorkflow fails to load the table",
            )
        # '-' and empty both mean "any"; compare tests as written, ignoring spaces around them.
        tests = tuple(_normal(c) for c in cells) + ("-",) * max(0, len(inputs) - len(cells))
        if all(t == "-" for t in tests):
            has_catch_all = True
        if policy == "UNIQUE":
            if tests in seen:
                add(
                    WARNING,
                    "unique-overlap",
                    rule,
                    f"rule {number} has the same input tests as rule {seen[tests]}: UNIQUE is "
                    f"not checked, SpiffWorkflow returns rule {seen[tests]} and never rule "
                    f"{number}; change the tests or drop one rule",
                )
            seen.setdefault(tests, number)
        for column, (entry, cell) in enumerate(zip(entries, cells, strict=False)):
            if cell is not None and cell != "-":
                used_columns.add(column)
            expression = expressions[column] if column < len(expressions) else None
            _check_input_cell(number, entry, cell, expression, add)
        for entry in _children(rule, "outputEntry"):
            _check_output_cell(number, entry, add)
    for column in sorted(used_columns):
        if (
            column < len(inputs)
            and expressions[column] is None
            and not _has_expression(inputs[column])
        ):
            add(
                WARNING,
                "dmn-input-no-expression",
                inputs[column],
                f"input column {column + 1} has no input expression: SpiffWorkflow then looks "
                f"up its label {inputs[column].get('label')!r} in the task data, which fails "
                "unless a variable has exactly that name; write the expression",
            )
    if policy != "COLLECT" and not has_catch_all:
        add(
            WARNING,
            "dmn-no-default-rule",
            table,
            "no rule with '-' in every input: when no rule matches, the outputs are not set "
            "and later steps that read them fail; add a last rule that matches anything",
        )


def _normal(cell: str | None) -> str:
    text = (cell or "").strip()
    return "-" if text in ("", "-") else text


def _check_policy(table: Any, policy: str, add: Add) -> None:
    aggregation = table.get("aggregation")
    if policy == "ANY":
        add(
            WARNING,
            "hit-policy",
            table,
            "hit policy ANY acts as first-match, rules that disagree are not reported",
        )
    elif policy in FIRST_MATCH_POLICIES:
        add(
            ERROR,
            "hit-policy",
            table,
            f"hit policy {policy} is not implemented: SpiffWorkflow silently returns the first "
            "matching rule; use FIRST and order the rules, or COLLECT",
        )
    elif policy == "COLLECT" and aggregation:
        add(
            ERROR,
            "hit-policy",
            table,
            f"COLLECT {aggregation}: aggregation is ignored: outputs come back as lists of all "
            f"matches; drop the aggregation and compute the {aggregation.lower()} in a script",
        )
    elif policy not in SUPPORTED_POLICIES:
        add(
            ERROR,
            "hit-policy",
            table,
            f"unknown hit policy {policy!r}: SpiffWorkflow silently returns the first matching "
            "rule; use UNIQUE, FIRST or COLLECT",
        )


def _check_structure(table: Any, add: Add) -> None:
    """What makes SpiffWorkflow fail to load the table, with a message that says why (its own
    error for an XML comment is an AttributeError about `endswith`)."""

    def comments(el: Any, where: str) -> None:
        for child in el:
            if not isinstance(child.tag, str):
                add(
                    ERROR,
                    "dmn-unsupported-content",
                    child,
                    f"XML comment or processing instruction inside {where}: SpiffWorkflow "
                    "fails to load the table; move it outside the decision table",
                )

    comments(table, "a decision table")
    for child in table:
        name = _local(child)
        if isinstance(child.tag, str) and not name.endswith(("input", "output", "rule")):
            add(
                ERROR,
                "dmn-unsupported-content",
                child,
                f"<{name}> inside a decision table: SpiffWorkflow refuses the table (it reads "
                "only <input>, <output> and <rule>); remove it",
            )
    missing_id = [table] if table.get("id") is None else []
    for child in table:
        kind = _local(child)
        if kind in ("input", "output", "rule") and child.get("id") is None:
            missing_id.append(child)
        if kind == "rule":
            comments(child, "a rule")
            for entry in child:
                entry_kind = _local(entry)
                if entry_kind not in ("inputEntry", "outputEntry"):
                    continue
                comments(entry, "a rule cell")
                if entry.get("id") is None:
                    missing_id.append(entry)
                if entry_kind == "inputEntry" and not _children(entry, "text"):
                    add(
                        ERROR,
                        "dmn-unsupported-content",
                        entry,
                        "input cell without <text>: SpiffWorkflow fails to load the table; "
                        "write <text>-</text> for 'any'",
                    )
    for el in missing_id:
        add(
            ERROR,
            "dmn-unsupported-content",
            el,
            f"<{_local(el)}> without an id: SpiffWorkflow fails to load the table; give it one",
        )


def _has_expression(input_el: Any) -> bool:
    return any(_text(e) for e in _children(input_el, "inputExpression"))


def _input_expression(input_el: Any, column: int, add: Add) -> str | None:
    """The column's input expression if it is usable; reports one that is not."""
    expression = None
    element = input_el
    for candidate in _children(input_el, "inputExpression"):
        expression, element = _text(candidate), candidate
    if not expression:
        return None
    error = _python_error(expression, "exec") or check_source(expression, "eval")
    if error:
        add(
            ERROR,
            "dmn-cell-syntax",
            element,
            f"input expression {expression!r} of column {column} is not a valid expression "
            f"({_reason(error)}): every rule that tests this column fails",
        )
        return None
    return expression


def _python_error(text: str, mode: str) -> str | None:
    """SyntaxError message of `ast.parse` (SpiffWorkflow's own test), or None."""
    try:
        with warnings.catch_warnings():
            # Odd cells (e.g. "'a' is 'a'") make the compiler warn; only errors matter here.
            warnings.simplefilter("ignore")
            ast.parse(text, mode=mode)
    except SyntaxError as exc:
        return str(exc.msg)
    except (ValueError, RecursionError, MemoryError) as exc:
        return str(exc) or type(exc).__name__
    return None


def _sandbox_error(text: str) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return check_source(text, "eval")


def _reason(error: str) -> str:
    return re.sub(r"^line \d+: ", "", error)


def _check_input_cell(
    number: int, entry: Any, cell: str | None, expression: str | None, add: Add
) -> None:
    if cell is None or cell == "-":
        return
    if not cell.strip():
        add(
            ERROR,
            "dmn-blank-cell",
            entry,
            f"rule {number}: the cell holds only spaces, which SpiffWorkflow compares with () "
            "so the rule never matches; leave it empty or write '-'",
        )
        return
    if cell.strip() == "-":
        add(
            ERROR,
            "dmn-cell-syntax",
            entry,
            f"rule {number}: {cell!r} is '-' with spaces around it, which SpiffWorkflow does "
            "not read as 'any' and fails on; write '-' alone",
        )
        return
    marked = _PLACEHOLDER.sub("dmninputexpr", cell)
    if "dmninputexpr" in marked:
        error = _sandbox_error(marked)
        if error:
            add(
                ERROR,
                "dmn-cell-syntax",
                entry,
                f"rule {number}: test {cell!r} is not a valid expression ({_reason(error)})",
            )
        return
    value = expression if expression is not None else _PLACEHOLDER_INPUT
    spaces = (
        " (it starts with spaces, so SpiffWorkflow appends it to the input instead of "
        "comparing; remove them)"
        if cell != cell.lstrip()
        else ""
    )
    needs_eq = _python_error(cell, "exec") is None
    if not needs_eq:
        error = _python_error(f"v {cell}", "exec")
        if error:
            add(
                ERROR,
                "dmn-cell-syntax",
                entry,
                f"rule {number}: test {cell!r} is not valid Python ({error}){spaces}; quote "
                "text: 'steel'",
            )
            return
        if re.search(r"\w$", value) and _KEYWORD_OPERATOR.match(cell):
            glued = value + cell
            add(
                ERROR,
                "dmn-in-operator",
                entry,
                f"rule {number}: test {cell!r} fails at run time: SpiffWorkflow appends the "
                f"cell to the input without a space ({glued!r}); write it with the input "
                f"placeholder, e.g. '? {cell.strip()}', or use one rule per value",
            )
            return
    prepared = f"({value}) == ({cell})" if needs_eq else value + cell
    error = _sandbox_error(prepared)
    if error:
        add(
            ERROR,
            "dmn-cell-syntax",
            entry,
            f"rule {number}: test {cell!r} becomes {prepared!r}, which is not a valid "
            f"expression ({_reason(error)}){spaces}",
        )


def _check_output_cell(number: int, entry: Any, add: Add) -> None:
    text = _text(entry)
    if not text:
        return  # an empty output sets ""
    # SpiffWorkflow refuses the file if ast.parse fails, and evaluates the cell on use.
    error = _python_error(text, "exec") or _sandbox_error(text)
    if error:
        add(
            ERROR,
            "dmn-cell-syntax",
            entry,
            f"rule {number}: output {text!r} is not a valid expression ({_reason(error)}); "
            "write text in quotes: 'A'",
        )
