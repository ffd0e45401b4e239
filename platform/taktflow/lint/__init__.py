"""`taktflow lint`: check workflow files (.yaml, .bpmn, .dmn) without deploying anything.

A lint run reports every problem it can find, each with file, line (or element id) and
severity, in three passes:

1. reading: YAML files are compiled (a YAML problem stops only that file);
2. deploy checks: exactly what `taktflow deploy` would refuse (XSD, parser, scripts,
   expressions, templates, service actions and their parameters);
3. design checks (lint.bpmn_checks / lint.dmn_checks): paths that never end, unreachable
   steps, gateways without a default, unknown forms, roles, processes and decisions,
   messages nothing sends, decision tables the engine would silently get wrong.

References resolve against the linted files plus the workflows folder, so linting one file
of a folder still knows the processes and decisions of the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from taktflow.engine.actions import ActionRegistry
from taktflow.engine.definitions import (
    BPMN,
    CONNECTOR,
    DMN,
    FORM,
    DefinitionParser,
    SourceFile,
    read_paths,
)
from taktflow.errors import DefinitionError, DefinitionProblem
from taktflow.forms.definition import FormDefinition, is_form_text, parse_form
from taktflow.forms.lookups import BUILTIN_LOOKUPS
from taktflow.lint.bpmn_checks import check_bpmn, defined_names
from taktflow.lint.dmn_checks import check_dmn, decision_ids
from taktflow.lint.findings import ERROR, WARNING, Finding, LintContext
from taktflow.yamlflow import COMPILERS

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)
FORM_SUFFIXES = (".yaml", ".yml")

__all__ = ["ERROR", "WARNING", "Finding", "LintContext", "LintReport", "lint_paths"]


@dataclass
class LintReport:
    findings: list[Finding] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == WARNING)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "errors": self.errors,
            "warnings": self.warnings,
            "findings": [f.to_dict() for f in self.findings],
        }


def lint_paths(
    paths: Iterable[str | Path],
    *,
    actions: ActionRegistry | None = None,
    workflows_path: str | Path | None = None,
    forms_path: str | Path | None = None,
    roles: Iterable[str] | None = None,
    connectors_path: str | Path | None = None,
) -> LintReport:
    """Lint files and folders. `None` for forms/roles/actions means: do not check those."""
    report = LintReport()
    problems: list[DefinitionProblem] = []
    files = read_paths(paths, COMPILERS, problems)
    report.findings.extend(_from_problem(p, "invalid-file") for p in problems)
    report.files = sorted({f.origin or f.name for f in files} | {p.file for p in problems})

    forms = _check_forms([f for f in files if f.kind == FORM], report.findings)
    connectors = _read_connectors([f for f in files if f.kind == CONNECTOR], report.findings)
    files = [f for f in files if f.kind not in (FORM, CONNECTOR)]
    known_forms = _forms(forms_path) if forms_path is not None else None
    if known_forms is not None or (forms_path is not None and forms):
        known_forms = (known_forms or set()) | {form.name for form in forms}
    context = LintContext(
        forms=known_forms,
        roles=set(roles) if roles is not None else None,
        actions=set(actions.names()) if actions is not None else None,
    )
    roots: list[tuple[SourceFile, Any]] = []
    for file in files:
        try:
            root = etree.fromstring(file.text.encode("utf-8"), _PARSER)
        except etree.XMLSyntaxError:
            continue  # the deploy checks below report it with its line
        roots.append((file, root))
    # What exists: the linted files, plus everything in the workflows folder.
    universe = list(roots)
    if workflows_path is not None and Path(workflows_path).is_dir():
        linted = {Path(f.origin or f.name).resolve() for f in files}
        extra_problems: list[DefinitionProblem] = []
        extra = [
            f
            for f in read_paths([workflows_path], COMPILERS, extra_problems)
            if Path(f.origin or f.name).resolve() not in linted
        ]
        for file in extra:
            try:
                universe.append((file, etree.fromstring(file.text.encode("utf-8"), _PARSER)))
            except etree.XMLSyntaxError:
                continue
    # Connectors send messages too: a message a machine sends is not "never sent".
    if connectors_path is not None and Path(connectors_path).is_dir():
        linted = {Path(c.file).resolve() for c in connectors}
        others = [
            f for f in read_paths([connectors_path], COMPILERS, [])
            if f.kind == CONNECTOR and Path(f.name).resolve() not in linted
        ]  # fmt: skip
        connectors_known = connectors + _read_connectors(others, [])
    else:
        connectors_known = list(connectors)
    for connector in connectors_known:
        context.sent_messages |= connector.messages
    caught: set[str] = set()
    decision_files: dict[str, SourceFile] = {}
    for file, root in universe:
        if file.kind == BPMN:
            names = defined_names(root)
            context.processes |= names["processes"]
            context.sent_messages |= names["messages_sent"]
            caught |= names["messages_caught"]
        elif file.kind == DMN:
            for did in decision_ids(root):
                context.decisions.add(did)
                decision_files.setdefault(did, file)

    design: list[Finding] = []
    for file, root in roots:
        found = check_bpmn(file.name, root, context) if file.kind == BPMN else []
        if file.kind == DMN:
            found = check_dmn(file.name, root)
        design.extend(_locate(f, file) for f in found)

    # The deploy checks, without the reference checks the design checks already make.
    parser = DefinitionParser(
        actions=actions,
        deployed_decisions=lambda ids: {d: decision_files[d] for d in ids if d in decision_files},
        deployed_processes=lambda ids: set(ids),
    )
    flagged = {(f.file, f.element) for f in design if f.rule.startswith("unknown-")}
    lines = {
        (file.name, el.get("id")): el.sourceline
        for file, root in roots
        if file.positions is None
        for el in root.iter()
        if isinstance(el.tag, str) and el.get("id")
    }
    try:
        parser.parse(files)
    except DefinitionError as exc:
        for problem in exc.problems:
            if (problem.file, problem.element) in flagged:
                continue
            if problem.line is None and problem.element:
                problem.line = lines.get((problem.file, problem.element))
            report.findings.append(_from_problem(problem, "deploy-check"))
    report.findings.extend(design)
    report.findings.extend(_check_connector_targets(connectors, caught, context.processes))
    report.findings = _unique(sorted(report.findings, key=_order))
    return report


def _forms(path: str | Path) -> set[str] | None:
    """Form names in the forms folder; None (do not check) while it holds no forms at all."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    names = set()
    for file in folder.rglob("*"):
        if file.suffix.lower() not in FORM_SUFFIXES:
            continue
        try:
            text = file.read_text(encoding="utf-8")
            names.add(parse_form(text, str(file)).name if is_form_text(text) else file.stem)
        except (OSError, UnicodeDecodeError, DefinitionError):
            names.add(file.stem)  # reported when the folder itself is linted
    return names or None


def _read_connectors(files: list[SourceFile], findings: list[Finding]) -> list[Any]:
    """Connector files, each problem with its line (rule invalid-connector)."""
    from taktflow.connectors.definition import parse_connector

    found = []
    for file in files:
        try:
            found.append(parse_connector(file.text, file.name))
        except DefinitionError as exc:
            findings.extend(_from_problem(p, "invalid-connector") for p in exc.problems)
    return found


def _check_connector_targets(
    connectors: list[Any], caught: set[str], processes: set[str]
) -> list[Finding]:
    """Events that would reach nothing: messages no workflow waits for, unknown processes."""
    findings = []
    for connector in connectors:
        for rule in connector.rules:
            message, start = rule.emit.message, rule.emit.start_process
            if message and message not in caught:
                findings.append(
                    Finding(
                        file=connector.file, severity=WARNING, rule="message-not-awaited",
                        line=rule.line, element=rule.id,
                        message=f"no workflow waits for message {message!r} "
                        "(the inbox keeps it until its time to live runs out)",
                    )
                )  # fmt: skip
            if start and start not in processes:
                findings.append(
                    Finding(
                        file=connector.file, severity=ERROR, rule="unknown-process",
                        line=rule.line, element=rule.id,
                        message=f"starts process {start!r}, which does not "
                        "exist",
                    )
                )  # fmt: skip
    return findings


def _check_forms(files: list[SourceFile], findings: list[Finding]) -> list[FormDefinition]:
    """Form definitions: every problem with its line, plus what a form names that is unknown."""
    forms = []
    for file in files:
        try:
            form = parse_form(file.text, file.name)
        except DefinitionError as exc:
            findings.extend(_from_problem(p, "invalid-form") for p in exc.problems)
            continue
        forms.append(form)
        if Path(file.name).stem != form.name:
            findings.append(
                Finding(
                    file=file.name, severity=WARNING, rule="form-name-mismatch", line=1,
                    message=f"form {form.name!r} is in a file named {Path(file.name).name!r}: "
                    f"name the file {form.name}.yaml so people find it",
                )
            )  # fmt: skip
        for f in form.fields:
            if f.lookup and f.lookup not in BUILTIN_LOOKUPS:
                findings.append(
                    Finding(
                        file=file.name, severity=ERROR, rule="unknown-lookup", line=f.line,
                        element=f.name,
                        message=f"field {f.name!r}: lookup {f.lookup!r} does not exist "
                        f"(lookups: {', '.join(BUILTIN_LOOKUPS)})",
                    )
                )  # fmt: skip
    return forms


def _from_problem(problem: DefinitionProblem, rule: str) -> Finding:
    return Finding(
        file=problem.file,
        severity=ERROR,
        rule=rule,
        message=problem.reason,
        element=problem.element,
        line=problem.line,
        column=problem.column,
    )


def _locate(finding: Finding, file: SourceFile) -> Finding:
    """Findings in compiled files point at the YAML step that produced the element."""
    if file.positions is None:
        return finding
    line = file.positions.get(finding.element or "") if finding.element else None
    return Finding(
        file=file.origin or finding.file,
        severity=finding.severity,
        rule=finding.rule,
        message=finding.message,
        element=finding.element,
        line=line,
        column=None,
    )


def _order(f: Finding) -> tuple:
    return (f.file, f.line or 0, f.element or "", f.rule, f.message)


def _unique(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple] = set()
    result = []
    for f in findings:
        key = (f.file, f.line, f.element, f.rule, f.message)
        if key not in seen:
            seen.add(key)
            result.append(f)
    return result
