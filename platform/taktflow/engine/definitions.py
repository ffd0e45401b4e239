"""Reading and checking workflow definition files (BPMN, DMN) before anything is deployed.

Every problem is collected with its file, element id (or line) and reason, so one deploy
reports all of them; a batch with any problem deploys nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment as JinjaSandbox
from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs import BpmnProcessSpec
from SpiffWorkflow.bpmn.specs.defaults import (
    StartEvent,
)
from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import SignalEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import CallActivity, SubWorkflowTask
from SpiffWorkflow.spiff.parser import VALIDATOR
from SpiffWorkflow.spiff.specs.defaults import ServiceTask

from taktflow.engine.actions import ActionRegistry
from taktflow.engine.sandbox import check_source
from taktflow.engine.specs import TaktflowBpmnParser
from taktflow.errors import DefinitionError, DefinitionProblem

BPMN = "bpmn"
DMN = "dmn"
SUFFIXES = {".bpmn": BPMN, ".dmn": DMN}
#: A form definition (forms/*.yaml): deployed with the workflows, never parsed as BPMN.
FORM = "form"
#: A connector file (connectors/*.yaml): linted, never deployed (the connector runtime reads it).
CONNECTOR = "connector"
NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core",
}

#: Converts a file of another format (e.g. a YAML workflow) into BPMN/DMN source files.
Compiler = Callable[["SourceFile"], list["SourceFile"]]

# Refuse external entities and network access: definition files come from users.
_XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=False
)
_JINJA = JinjaSandbox()


@dataclass
class SourceFile:
    """One definition file's text, as deployed. `origin` is set for compiled files."""

    name: str
    text: str
    kind: str
    origin: str | None = None
    #: The text of the file this one was compiled from (e.g. the YAML workflow).
    origin_text: str | None = None
    #: Element id -> line in the origin file, for reporting problems where the author looks.
    positions: dict[str, int] | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass
class ParsedDecision:
    decision_id: str
    name: str | None
    file: SourceFile


@dataclass
class ParsedProcess:
    """A process ready to be stored as a version."""

    process_id: str
    name: str | None
    file: SourceFile
    spec: BpmnProcessSpec
    #: Embedded subprocess specs, keyed by subprocess id (stored with the version).
    embedded: dict[str, BpmnProcessSpec]
    #: Process ids named by call activities (bound to their latest version at start).
    called: list[str]
    decisions: list[str]
    #: [{"kind": "message"|"signal", "name": ...}] of the process's start events.
    starts: list[dict[str, str]]
    extra_hash: list[str] = field(default_factory=list)

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256()
        digest.update(self.process_id.encode())
        digest.update(b"\0")
        digest.update(self.file.text.encode("utf-8"))
        for item in sorted(self.extra_hash):
            digest.update(b"\0" + item.encode())
        return digest.hexdigest()


def read_paths(
    paths: Iterable[str | Path],
    compilers: Mapping[str, Compiler] | None = None,
    problems: list[DefinitionProblem] | None = None,
) -> list[SourceFile]:
    """Read files and folders (recursively) of definitions; compile other formats to BPMN/DMN.

    Problems (missing paths, wrong types, unreadable files) are appended to `problems` when a
    list is given, so that they are reported together with the content problems of the other
    files; without a list they are raised at once.
    """
    compilers = compilers or {}
    suffixes = set(SUFFIXES) | set(compilers)
    collect = problems is not None
    problems = problems if problems is not None else []
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes)
            if not inside:
                problems.append(
                    DefinitionProblem(
                        str(path),
                        f"folder holds no definition files ({', '.join(sorted(suffixes))})",
                    )
                )
            found.extend(inside)
        elif path.is_file():
            if path.suffix.lower() not in suffixes:
                problems.append(
                    DefinitionProblem(
                        str(path),
                        f"unsupported file type {path.suffix or '(none)'!r} "
                        f"(expected {', '.join(sorted(suffixes))})",
                    )
                )
            else:
                found.append(path)
        else:
            problems.append(DefinitionProblem(str(path), "no such file or folder"))
    files: list[SourceFile] = []
    for path in found:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            problems.append(_not_utf8(str(path), exc))
            continue
        except OSError as exc:
            problems.append(DefinitionProblem(str(path), f"cannot read file: {exc.strerror}"))
            continue
        files.extend(_to_sources(str(path), text, compilers, problems))
    if problems and not collect:
        raise DefinitionError(problems)
    return files


def _not_utf8(name: str, exc: UnicodeDecodeError) -> DefinitionProblem:
    before = exc.object[: exc.start]
    line = before.count(b"\n") + 1
    column = len(before) - (before.rfind(b"\n") + 1) + 1
    return DefinitionProblem(
        name,
        f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} cannot be read (save the file "
        "as UTF-8)",
        line=line,
        column=column,
    )


def sources_from_text(
    name: str, text: str, compilers: Mapping[str, Compiler] | None = None
) -> list[SourceFile]:
    """A single uploaded file as source files (compiled if it is not BPMN/DMN)."""
    problems: list[DefinitionProblem] = []
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES and suffix not in (compilers or {}):
        known = sorted(set(SUFFIXES) | set(compilers or {}))
        raise DefinitionError(
            [DefinitionProblem(name, f"unsupported file type (expected {', '.join(known)})")]
        )
    files = _to_sources(name, text, compilers or {}, problems)
    if problems:
        raise DefinitionError(problems)
    return files


def _to_sources(
    name: str, text: str, compilers: Mapping[str, Compiler], problems: list[DefinitionProblem]
) -> list[SourceFile]:
    suffix = Path(name).suffix.lower()
    if suffix in SUFFIXES:
        return [SourceFile(name, text, SUFFIXES[suffix])]
    try:
        return compilers[suffix](SourceFile(name, text, suffix.lstrip(".")))
    except DefinitionError as exc:
        problems.extend(exc.problems)
        return []


def _xml(file: SourceFile, problems: list[DefinitionProblem]) -> Any:
    try:
        root = etree.fromstring(file.text.encode("utf-8"), _XML_PARSER)
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else None
        problems.append(DefinitionProblem(file.name, f"not well-formed XML: {exc.msg}", line=line))
        return None
    return root


def _problem_from(
    exc: Exception, file: SourceFile, element: str | None = None
) -> DefinitionProblem:
    if isinstance(exc, ValidationException):
        line = exc.line_number if isinstance(exc.line_number, int) and exc.line_number else None
        message = str(exc).split("\n")[0]
        return DefinitionProblem(file.name, message, element=exc.id or element, line=line)
    return DefinitionProblem(file.name, f"{type(exc).__name__}: {exc}", element=element)


class DefinitionParser:
    """Parses one batch of files together with what is already deployed."""

    def __init__(
        self,
        *,
        actions: ActionRegistry | None = None,
        deployed_decisions: Callable[[set[str]], dict[str, SourceFile]] | None = None,
        deployed_processes: Callable[[set[str]], set[str]] | None = None,
        validate_xsd: bool = True,
    ) -> None:
        self.actions = actions
        self.deployed_decisions = deployed_decisions or (lambda ids: {})
        self.deployed_processes = deployed_processes or (lambda ids: set())
        self.validate_xsd = validate_xsd

    def parse(
        self, files: list[SourceFile], problems: list[DefinitionProblem] | None = None
    ) -> tuple[list[ParsedProcess], list[ParsedDecision]]:
        """Check and parse a batch; raise DefinitionError listing every problem found,
        including `problems` already found while reading the files."""
        problems = list(problems or [])
        parser = TaktflowBpmnParser(validator=VALIDATOR if self.validate_xsd else None)
        decisions: list[ParsedDecision] = []
        decision_files: dict[str, SourceFile] = {}
        # process id -> (file, <process> element)
        processes: dict[str, tuple[SourceFile, Any]] = {}

        for file in files:
            if file.kind != DMN:
                continue
            root = _xml(file, problems)
            if root is None:
                continue
            try:
                parser.add_dmn_xml(root, filename=file.name)
            except Exception as exc:  # noqa: BLE001 - any parser failure is a definition problem
                problems.append(_problem_from(exc, file))
                continue
            dmn_ns = root.nsmap.get(None) or root.nsmap.get("dmn")
            for decision in root.findall(f"{{{dmn_ns}}}decision"):
                did = decision.get("id")
                if did in decision_files:
                    problems.append(
                        DefinitionProblem(
                            file.name,
                            f"decision id also defined in {decision_files[did].name}",
                            element=did,
                        )
                    )
                    continue
                decision_files[did] = file
                decisions.append(ParsedDecision(did, decision.get("name"), file))
                break  # SpiffWorkflow uses the first decision of a DMN file

        bpmn_roots: list[tuple[SourceFile, Any]] = []
        lanes_by_file: dict[str, dict[str, str]] = {}
        for file in files:
            if file.kind != BPMN:
                continue
            root = _xml(file, problems)
            if root is None:
                continue
            bpmn_roots.append((file, root))
            lanes_by_file[file.name] = {
                (ref.text or "").strip(): ref.getparent().get("name")
                for ref in root.iterfind(".//bpmn:flowNodeRef", NS)
            }
            for node in root.iterfind(".//bpmn:process", NS):
                pid = node.get("id")
                if pid in processes:
                    problems.append(
                        DefinitionProblem(
                            file.name,
                            f"process id also defined in {processes[pid][0].name}",
                            element=pid,
                            line=node.sourceline,
                        )
                    )
                elif node.get("isExecutable", "true").lower() != "false":
                    processes[pid] = (file, node)

        # Decisions referenced but not in this batch come from the deployed versions.
        referenced = {
            ref
            for _, root in bpmn_roots
            for ref in root.xpath(
                ".//bpmn:businessRuleTask//spiffworkflow:calledDecisionId/text()", namespaces=NS
            )
        }
        missing = {r.strip() for r in referenced} - set(decision_files)
        for did, dfile in self.deployed_decisions(missing).items():
            root = _xml(dfile, problems)
            if root is not None:
                try:
                    parser.add_dmn_xml(root, filename=dfile.name)
                    decision_files[did] = dfile
                except Exception as exc:  # noqa: BLE001
                    problems.append(_problem_from(exc, dfile))

        # Keep going after a bad file so that one deploy reports every problem of the batch.
        bad_files: set[str] = set()
        for file, root in bpmn_roots:
            try:
                parser.add_bpmn_xml(root, filename=file.name)
            except Exception as exc:  # noqa: BLE001
                problems.append(_problem_from(exc, file))
                bad_files.add(file.name)

        called_anywhere: set[str] = set()
        parsed: list[ParsedProcess] = []
        for pid, (file, node) in processes.items():
            if file.name in bad_files:
                continue
            try:
                spec = parser.get_spec(pid)
                embedded: dict[str, BpmnProcessSpec] = {}
                called: dict[str, str] = {}
                self._walk(parser, spec, embedded, called)
                _own_lanes(embedded.values(), lanes_by_file[file.name])
            except Exception as exc:  # noqa: BLE001
                problems.append(_problem_from(exc, file, element=pid))
                continue
            used = sorted(
                {
                    r.strip()
                    for r in node.xpath(
                        ".//bpmn:businessRuleTask//spiffworkflow:calledDecisionId/text()",
                        namespaces=NS,
                    )
                }
            )
            process = ParsedProcess(
                process_id=pid,
                name=node.get("name"),
                file=file,
                spec=spec,
                embedded=embedded,
                called=sorted(called),
                decisions=used,
                starts=_starts(spec),
                extra_hash=[f"{d}={decision_files[d].sha256}" for d in used if d in decision_files],
            )
            if file.origin_text is not None:
                # Edits to the YAML that compile to the same BPMN still make a new version,
                # so the version always holds the YAML it was deployed from.
                origin_hash = hashlib.sha256(file.origin_text.encode("utf-8")).hexdigest()
                process.extra_hash.append(f"origin:{origin_hash}")
            for element_id, called_id in ((v, k) for k, v in called.items()):
                called_anywhere.add(called_id)
                process.extra_hash.append(f"calls:{called_id}@{element_id}")
            problems.extend(self._check(process, called))
            parsed.append(process)

        known = set(processes) | self.deployed_processes(called_anywhere - set(processes))
        for process in parsed:
            for element_id, called_id in _call_sites(process):
                if called_id not in known:
                    problems.append(
                        DefinitionProblem(
                            process.file.name,
                            f"calls process {called_id!r}, which is neither deployed nor in "
                            "this deployment",
                            element=element_id,
                        )
                    )
        if problems:
            raise DefinitionError(_locate(problems, files))
        return parsed, decisions

    def _walk(
        self,
        parser: TaktflowBpmnParser,
        spec: BpmnProcessSpec,
        embedded: dict[str, BpmnProcessSpec],
        called: dict[str, str],
    ) -> None:
        for ts in spec.task_specs.values():
            if isinstance(ts, CallActivity):
                called.setdefault(ts.spec, ts.bpmn_id)
            elif isinstance(ts, SubWorkflowTask) and ts.spec not in embedded:
                sub = parser.get_spec(ts.spec)
                embedded[ts.spec] = sub
                self._walk(parser, sub, embedded, called)

    def _check(self, process: ParsedProcess, called: dict[str, str]) -> list[DefinitionProblem]:
        """Scripts, expressions, templates and service actions of every element."""
        problems: list[DefinitionProblem] = []
        name = process.file.name

        def expect(source: Any, mode: str, element: str, what: str) -> None:
            if not isinstance(source, str) or not source.strip():
                return
            error = check_source(source, mode)  # type: ignore[arg-type]
            if error:
                problems.append(DefinitionProblem(name, f"{what}: {error}", element=element))

        for spec in [process.spec, *process.embedded.values()]:
            for ts in spec.task_specs.values():
                element = getattr(ts, "bpmn_id", None)
                if element is None:  # SpiffWorkflow's own bookkeeping specs (Start, End...)
                    continue
                expect(getattr(ts, "script", None), "exec", element, "script")
                expect(getattr(ts, "prescript", None), "exec", element, "pre-script")
                expect(getattr(ts, "postscript", None), "exec", element, "post-script")
                for condition, target in getattr(ts, "cond_task_specs", []) or []:
                    if condition is not None:
                        expect(condition.args[0], "eval", element, f"condition towards {target}")
                event = getattr(ts, "event_definition", None)
                if isinstance(event, TimerEventDefinition):
                    expect(event.expression, "eval", element, "timer expression")
                if isinstance(event, MessageEventDefinition | SignalEventDefinition):
                    expect(getattr(event, "expression", None), "eval", element, "message payload")
                if isinstance(ts, ServiceTask):
                    for pname, param in (ts.operation_params or {}).items():
                        expect(param.get("value"), "eval", element, f"parameter {pname!r}")
                    problems.extend(self._check_action(name, element, ts))
                instructions = (getattr(ts, "extensions", None) or {}).get("instructionsForEndUser")
                if instructions:
                    try:
                        _JINJA.parse(instructions)
                    except TemplateSyntaxError as exc:
                        problems.append(
                            DefinitionProblem(
                                name,
                                f"instructions template, line {exc.lineno}: {exc.message}",
                                element=element,
                            )
                        )
        return problems

    def _check_action(self, file: str, element: str, ts: Any) -> list[DefinitionProblem]:
        if self.actions is None:
            return []
        if ts.operation_name not in self.actions:
            known = ", ".join(self.actions.names()) or "none"
            return [
                DefinitionProblem(
                    file,
                    f"service task calls unknown action {ts.operation_name!r} "
                    f"(registered: {known})",
                    element=element,
                )
            ]
        action = self.actions.get(ts.operation_name)
        given = set(ts.operation_params or {})
        problems = []
        for p in action.params:
            if p.required and p.name not in given:
                problems.append(
                    DefinitionProblem(
                        file,
                        f"action {action.name} needs parameter {p.name!r} ({p.type})",
                        element=element,
                    )
                )
        declared = {p.name for p in action.params}
        if not action.extra_params:
            for extra in sorted(given - declared):
                problems.append(
                    DefinitionProblem(
                        file,
                        f"action {action.name} has no parameter {extra!r} "
                        f"(parameters: {', '.join(sorted(declared)) or 'none'})",
                        element=element,
                    )
                )
        return problems


def _locate(problems: list[DefinitionProblem], files: list[SourceFile]) -> list[DefinitionProblem]:
    """Problems in compiled files point at the line of the step in the file they came from."""
    compiled = {f.name: f for f in files if f.positions is not None}
    for problem in problems:
        source = compiled.get(problem.file)
        if source is None:
            continue
        if problem.element and source.positions and problem.element in source.positions:
            problem.line = source.positions[problem.element]
        elif problem.line is not None:
            # A line of the generated XML means nothing in the YAML file: say where it was.
            problem.reason += f" (line {problem.line} of the compiled {source.kind.upper()})"
            problem.line = None
        problem.file = source.origin or problem.file
    return problems


def _own_lanes(specs: Iterable[BpmnProcessSpec], lanes: Mapping[str, str]) -> None:
    """A task inside an embedded subprocess keeps the lane its flowNodeRef gives it.

    SpiffWorkflow hands every task of a subprocess the subprocess's own lane, so a quality
    task in a group drawn in the operator lane would be offered to operators. Tasks with no
    lane of their own keep the inherited one.
    """
    for spec in specs:
        for ts in spec.task_specs.values():
            own = lanes.get(getattr(ts, "bpmn_id", None) or "")
            if own is not None:
                ts.lane = own


def _call_sites(process: ParsedProcess) -> list[tuple[str, str]]:
    sites = []
    for spec in [process.spec, *process.embedded.values()]:
        for ts in spec.task_specs.values():
            if isinstance(ts, CallActivity):
                sites.append((ts.bpmn_id, ts.spec))
    return sites


def _starts(spec: BpmnProcessSpec) -> list[dict[str, str]]:
    starts = []
    for ts in spec.task_specs.values():
        if isinstance(ts, StartEvent):
            event = ts.event_definition
            if isinstance(event, MessageEventDefinition):
                starts.append({"kind": "message", "name": event.name})
            elif isinstance(event, SignalEventDefinition):
                starts.append({"kind": "signal", "name": event.name})
    return starts
