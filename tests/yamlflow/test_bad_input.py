"""Broken YAML workflows: each must be refused with exactly one problem that names the file,
the line and column of the mistake and says what is wrong in words a process engineer
understands, never with a crash or a Python traceback.

The table states what a good answer is. Where the compiler answers differently (a crash, a
wrong line, a misleading message), the case states the answer it should give and fails.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from taktflow.cli import cli
from taktflow.config import Config
from taktflow.db import db
from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import DefinitionError, DefinitionProblem
from taktflow.yamlflow import compile_text
from taktflow.yamlflow.loader import MAX_BYTES, MAX_DEPTH

FILE = "workflows/press_line.yaml"
GOOD_BPMN = Path(__file__).parents[1] / "engine" / "bpmn" / "sequence.bpmn"
#: Python exception class names and traceback text that must never reach a user.
LEAKS = re.compile(r"Traceback|File \"|\b[A-Z][A-Za-z]*(?:Error|Exception)\b")


def y(text: str) -> str:
    """A YAML file written indented in this module: dedented, without the first newline."""
    return textwrap.dedent(text).lstrip("\n")


@dataclass(frozen=True)
class Bad:
    id: str
    text: str
    line: int
    column: int
    #: Each must appear in the problem's reason.
    says: tuple[str, ...]


def bad(id: str, text: str, line: int, column: int, *says: str) -> Any:
    return pytest.param(Bad(id, text, line, column, says), id=id)


def _deep_groups(levels: int) -> str:
    out, indent = ["process: press_line", "steps:"], "  "
    for level in range(levels):
        out += [f"{indent}- group: Level {level}", f"{indent}  steps:"]
        indent += "    "
    out.append(f"{indent}- task: Innermost")
    return "\n".join(out) + "\n"


def _huge() -> str:
    step = "  - task: Check part\n    instructions: " + "x" * 200 + "\n"
    text = "process: press_line\nsteps:\n"
    return text + step * (MAX_BYTES // len(step) + 1)


# Each group adds two levels (its mapping, its steps list): the title of group k is at depth
# 3 + 2k, on line 3 + 2k, after 2 + 4k spaces and "- group: ". The first one deeper than
# MAX_DEPTH is where the depth check trips.
_DEEP_GROUP = (MAX_DEPTH - 1) // 2
_DEEP_LEVELS = _DEEP_GROUP + 2
_DEEP_LINE = 3 + 2 * _DEEP_GROUP
_DEEP_COLUMN = 2 + 4 * _DEEP_GROUP + len("- group: ") + 1

CASES = [
    # ------------------------------------------------------------------ YAML syntax
    bad(
        "yaml-unclosed-flow-list",
        y("""
            process: press_line
            steps:
              - task: Load press
                instructions: [Load coil
              - task: Start press
            """),
        5,
        9,
        "expected ',' or ']'",
    ),
    bad(
        "yaml-bad-indentation",
        y("""
            process: press_line
            steps:
              - task: Load press
               lane: operator
            """),
        4,
        4,
        "indent",
    ),
    bad(
        "yaml-colon-in-plain-text",
        y("""
            process: press_line
            steps:
              - task: Check: dimensions
            """),
        3,
        16,
        "unexpected ':'",
    ),
    bad(
        "yaml-unterminated-quote",
        y("""
            process: press_line
            steps:
              - task: "Load press
              - task: Start press
            """),
        3,
        11,
        "never closed",
    ),
    bad(
        "yaml-two-documents",
        y("""
            process: press_line
            steps:
              - task: Load press
            ---
            process: other
            """),
        4,
        1,
        "expected a single document",
    ),
    bad(
        "yaml-tab-in-indentation",
        "process: press_line\nsteps:\n  - task: Load press\n  \tlane: operator\n",
        4,
        3,
        "tab character in indentation",
    ),
    bad("yaml-empty-file", "", 1, 1, "file is empty"),
    bad(
        "yaml-only-comments",
        "# press line workflow\n# TODO: write the steps\n",
        1,
        1,
        "file is empty",
    ),
    bad(
        "yaml-anchor",
        y("""
            process: press_line
            steps:
              - task: Load press
                timeout: &escalate
                  after: PT1H
                  steps: []
            """),
        4,
        14,
        "anchors (&escalate) are not supported",
    ),
    bad(
        "yaml-alias",
        y("""
            process: press_line
            steps:
              - task: Load press
                timeout: *escalate
            """),
        4,
        14,
        "aliases (*name) are not supported",
    ),
    bad(
        "yaml-python-tag",
        y("""
            process: press_line
            steps:
              - task: !!python/name:os.system Load press
            """),
        3,
        11,
        "YAML tag tag:yaml.org,2002:python/name:os.system is not supported",
    ),
    bad(
        # Tags on a mapping or a list must be refused like tags on text, not dropped.
        "yaml-python-tag-on-a-mapping",
        y("""
            process: press_line
            steps:
              - task: Load press
                timeout: !!python/object/new:os.system {after: PT1H, steps: []}
            """),
        4,
        14,
        "YAML tag",
        "not supported",
    ),
    bad(
        "yaml-number-as-key",
        y("""
            process: press_line
            steps:
              - script: Count strokes
                set:
                  42: strokes + 1
            """),
        5,
        7,
        "key '42' must be a word",
    ),
    bad(
        "yaml-list-as-key",
        y("""
            process: press_line
            ? [operator, setter]
            : lanes
            steps:
              - task: Load press
            """),
        2,
        3,
        "keys must be words",
    ),
    bad(
        "yaml-boolean-as-key",
        y("""
            process: press_line
            steps:
              - task: Load press
                true: 1
            """),
        4,
        5,
        "key 'true' must be a word",
    ),
    bad(
        "yaml-nul-character",
        "process: press_line\nsteps:\n  - task: Load\x00press\n",
        3,
        15,
        "#x0000",
        "not allowed",
    ),
    bad(
        "yaml-control-character",
        "process: press_line\nsteps:\n  - task: Load press\x07\n",
        3,
        21,
        "#x0007",
        "not allowed",
    ),
    bad(
        # A NUL written as a YAML escape passes the reader and must still be refused.
        "yaml-escaped-nul-in-text",
        'process: press_line\nsteps:\n  - task: "Load\\x00press"\n',
        3,
        11,
        "not allowed",
    ),
    bad(
        # What a JSON upload with "\ud800" in it gives to deploy_text.
        "yaml-lone-surrogate",
        "process: press_line\nsteps:\n  - task: Load press\ud800\n",
        3,
        21,
        "not allowed",
    ),
    bad("file-too-large", _huge(), 1, 1, f"({MAX_BYTES // 1024} KiB)"),
    bad(
        "steps-nested-too-deep",
        _deep_groups(_DEEP_LEVELS),
        _DEEP_LINE,
        _DEEP_COLUMN,
        f"nested more than {MAX_DEPTH} levels deep",
    ),
    bad(
        # The same limit, written in flow style: the parser must not hit Python's recursion
        # limit before the depth check can say where.
        "flow-lists-nested-too-deep",
        "process: press_line\nsteps: " + "[" * 3000 + "]" * 3000 + "\n",
        2,
        8 + MAX_DEPTH,
        f"nested more than {MAX_DEPTH} levels deep",
    ),
    # ------------------------------------------------------------------ shape and types
    bad(
        "top-level-is-a-list",
        y("""
            - task: Load press
            - task: Start press
            """),
        1,
        1,
        "a workflow file is a mapping",
    ),
    bad(
        "steps-is-text",
        y("""
            process: press_line
            steps: Load press
            """),
        2,
        8,
        "'steps' must be a list of steps, not the text 'Load press'",
    ),
    bad(
        "title-is-a-list",
        y("""
            process: press_line
            steps:
              - task: [Load, press]
            """),
        3,
        11,
        "'task' must be a title (text), not a list",
    ),
    bad(
        "interrupting-is-text",
        y("""
            process: press_line
            steps:
              - task: Load press
                timeout:
                  after: PT1H
                  interrupting: no
                  steps: []
            """),
        6,
        21,
        "'interrupting' must be true or false, not the text 'no'",
    ),
    bad(
        "params-is-a-list",
        y("""
            process: press_line
            steps:
              - service: Book strokes
                action: taktflow.echo
                params: [strokes, shift]
            """),
        5,
        13,
        "'params' must be a mapping of names to expressions, not a list",
    ),
    bad(
        "empty-lanes-list",
        y("""
            process: press_line
            lanes: []
            steps:
              - task: Load press
            """),
        2,
        8,
        "'lanes'",
        "empty",
    ),
    bad(
        "script-value-is-a-list",
        y("""
            process: press_line
            steps:
              - script: Plan shift
                set:
                  stations: [1, 2]
            """),
        5,
        17,
        "the value of 'stations' must be an expression, not a list",
    ),
    # ------------------------------------------------------------------ unknown keys
    bad(
        "unknown-key-process",
        y("""
            process: press_line
            stesp:
              - task: Load press
            """),
        2,
        1,
        "workflow: unknown key 'stesp'",
        "did you mean 'steps'?",
    ),
    bad(
        "unknown-key-step",
        y("""
            process: press_line
            lanes: [operator]
            steps:
              - task: Load press
                lnae: operator
            """),
        5,
        5,
        "step \"Load press\": unknown key 'lnae'",
        "did you mean 'lane'?",
    ),
    bad(
        "unknown-key-timeout",
        y("""
            process: press_line
            steps:
              - task: Load press
                timeout:
                  afer: PT1H
                  steps: []
            """),
        5,
        7,
        "timeout: unknown key 'afer'",
        "did you mean 'after'?",
    ),
    bad(
        "unknown-key-choose-branch",
        y("""
            process: press_line
            steps:
              - choose: Coil left?
                branches:
                  - condition: coil_left > 0
                    steps: []
            """),
        5,
        9,
        "branch: unknown key 'condition'",
        "expected one of: when, label, steps",
    ),
    bad(
        "unknown-key-parallel-branch",
        y("""
            process: press_line
            steps:
              - parallel: Prepare
                branches:
                  - steps:
                      - task: Load coil
                  - name: tooling
                    steps:
                      - task: Mount die
            """),
        7,
        9,
        "branch: unknown key 'name'",
        "(expected one of: label, steps)",
    ),
    bad(
        "unknown-key-table",
        y("""
            process: press_line
            steps:
              - decision: Die for thickness
                table:
                  hit_policy: first
                  inputs: [thickness]
                  outputs: [die]
                  rules:
                    - when: ["< 2"]
                      then: [D1]
            """),
        5,
        7,
        "table: unknown key 'hit_policy'",
    ),
    bad(
        "unknown-key-table-rule",
        y("""
            process: press_line
            steps:
              - decision: Die for thickness
                table:
                  inputs: [thickness]
                  outputs: [die]
                  rules:
                    - when: ["< 2"]
                      then: [D1]
                      else: [D2]
            """),
        10,
        11,
        "table rule 1: unknown key 'else'",
    ),
    # ------------------------------------------------------------------ missing keys
    bad(
        "missing-process-id",
        y("""
            name: Press line
            steps:
              - task: Load press
            """),
        1,
        1,
        "missing 'process'",
    ),
    bad(
        "missing-steps",
        y("""
            process: press_line
            name: Press line
            """),
        1,
        1,
        "missing 'steps'",
    ),
    bad(
        "missing-service-action",
        y("""
            process: press_line
            steps:
              - task: Load press
              - service: Book strokes
                params: {strokes: strokes}
            """),
        4,
        5,
        "step \"Book strokes\": missing 'action'",
    ),
    bad(
        "missing-branch-condition",
        y("""
            process: press_line
            steps:
              - choose: Coil left?
                branches:
                  - label: coil left
                    steps: []
            """),
        5,
        9,
        "missing 'when'",
    ),
    bad(
        "missing-for-each-variable",
        y("""
            process: press_line
            steps:
              - for_each: Check each part
                items: parts
                steps:
                  - task: Check part
            """),
        3,
        5,
        "missing 'as'",
    ),
    # ------------------------------------------------------------------ duplicates
    bad(
        "duplicate-key",
        y("""
            process: press_line
            steps:
              - task: Load press
            process: press_line_2
            """),
        4,
        1,
        "key 'process' appears twice in this mapping (first on line 1)",
    ),
    bad(
        "duplicate-key-in-set",
        y("""
            process: press_line
            steps:
              - script: Count
                set:
                  strokes: strokes + 1
                  strokes: 0
            """),
        6,
        7,
        "key 'strokes' appears twice",
    ),
    bad(
        "duplicate-step-id",
        y("""
            process: press_line
            steps:
              - task: Load press
                id: load
              - task: Load coil
                id: load
            """),
        6,
        9,
        "id 'load' is already used by the step on line 3",
    ),
    bad(
        "step-id-is-the-process-id",
        y("""
            process: press_line
            steps:
              - task: Run press line
                id: press_line
            """),
        4,
        9,
        "is the process id",
    ),
    # ------------------------------------------------------------------ references
    bad(
        "goto-unknown-id",
        y("""
            process: press_line
            steps:
              - task: Load press
                id: load_press
              - choose: Another coil?
                branches:
                  - when: coils_left > 0
                    steps:
                      - goto: laod_press
            """),
        9,
        19,
        "goto 'laod_press': no step has this id",
        "did you mean 'load_press'?",
    ),
    bad(
        "unknown-lane",
        y("""
            process: press_line
            lanes: [operator, setter]
            steps:
              - task: Mount die
                lane: seter
            """),
        5,
        11,
        "unknown lane 'seter'",
        "did you mean 'setter'?",
    ),
    bad(
        "lane-without-lanes",
        y("""
            process: press_line
            steps:
              - task: Mount die
                lane: setter
            """),
        4,
        11,
        "lane 'setter' is not declared",
    ),
    # ------------------------------------------------------------------ step kinds
    bad(
        "step-with-two-kinds",
        y("""
            process: press_line
            steps:
              - task: Load press
                service: Book strokes
            """),
        4,
        5,
        "step has both 'task' and 'service'",
    ),
    bad(
        "step-without-kind",
        y("""
            process: press_line
            steps:
              - tsak: Load press
                lane: operator
            """),
        3,
        5,
        "step has no kind",
        "did you mean 'task'?",
    ),
    bad(
        "step-is-text",
        y("""
            process: press_line
            steps:
              - Load press
            """),
        3,
        5,
        "a step is a mapping that starts with its kind",
    ),
    # ------------------------------------------------------------------ paths
    bad(
        "cycle-without-exit",
        y("""
            process: press_line
            steps:
              - task: Load coil
                id: load_coil
              - manual: Press parts
              - goto: load_coil
            """),
        3,
        5,
        'step "load_coil" can never reach an end',
    ),
    bad(
        "cycle-through-both-branches",
        y("""
            process: press_line
            steps:
              - task: Check die
                id: check_die
              - choose: Die ok?
                branches:
                  - when: die_ok
                    steps:
                      - goto: check_die
                otherwise:
                  - manual: Regrind die
                  - goto: check_die
            """),
        3,
        5,
        'step "check_die" can never reach an end',
    ),
    bad(
        "step-after-end",
        y("""
            process: press_line
            steps:
              - task: Load press
              - end: Line stopped
              - task: Start press
            """),
        5,
        5,
        'step "Start press" can never be reached',
    ),
    bad(
        "step-after-goto",
        y("""
            process: press_line
            steps:
              - task: Load press
                id: load_press
              - choose: Again?
                branches:
                  - when: again
                    steps:
                      - manual: Clean die
                      - goto: load_press
                      - task: Never done
            """),
        11,
        13,
        'step "Never done" can never be reached',
    ),
    bad(
        # Same as above, but the goto opens the branch: the step after it must not be
        # dropped silently.
        "step-after-goto-that-opens-a-branch",
        y("""
            process: press_line
            steps:
              - task: Load press
                id: load_press
              - choose: Again?
                branches:
                  - when: again
                    steps:
                      - goto: load_press
                      - task: Never done
            """),
        10,
        13,
        'step "Never done" can never be reached',
    ),
    bad(
        "goto-first-skips-steps",
        y("""
            process: press_line
            steps:
              - goto: unload
              - task: Load press
              - task: Unload
                id: unload
            """),
        4,
        5,
        'step "Load press" can never be reached',
    ),
    bad(
        "goto-into-a-group",
        y("""
            process: press_line
            steps:
              - group: Die change
                steps:
                  - task: Mount die
                    id: mount_die
              - choose: Die ok?
                branches:
                  - when: not die_ok
                    steps:
                      - goto: mount_die
            """),
        11,
        19,
        "goto 'mount_die': cannot jump into or out of a group or loop",
    ),
    bad(
        "goto-into-a-for-each",
        y("""
            process: press_line
            steps:
              - for_each: Check each part
                items: parts
                as: part
                steps:
                  - task: Check part
                    id: check_part
              - choose: Recheck?
                branches:
                  - when: recheck
                    steps:
                      - goto: check_part
            """),
        13,
        19,
        "goto 'check_part': cannot jump into or out of a group or loop",
    ),
    bad(
        "parallel-branch-ends",
        y("""
            process: press_line
            steps:
              - parallel: Prepare
                branches:
                  - steps:
                      - task: Load coil
                  - steps:
                      - task: Mount die
                      - end: No die
            """),
        7,
        9,
        "a parallel branch may not end or goto",
    ),
    bad(
        "repeat-until-false",
        y("""
            process: press_line
            steps:
              - repeat: Press until done
                until: false
                steps:
                  - manual: Press part
            """),
        4,
        12,
        "until is always false, so the loop never ends",
    ),
    bad(
        "repeat-body-ends",
        y("""
            process: press_line
            steps:
              - repeat: Press until done
                until: done
                steps:
                  - manual: Press part
                  - end: Stop
            """),
        6,
        7,
        "the repeated steps end the path, so the loop never repeats",
    ),
    # ------------------------------------------------------------------ expressions
    bad(
        "expression-does-not-parse",
        y("""
            process: press_line
            steps:
              - script: Count strokes
                set:
                  total: strokes *
            """),
        5,
        14,
        "'set.total': line 1: invalid syntax",
    ),
    bad(
        "sandbox-forbidden-builtin",
        y("""
            process: press_line
            steps:
              - script: Read setup
                set:
                  setup: open('/etc/passwd').read()
            """),
        5,
        14,
        "open() is not available in scripts",
    ),
    bad(
        "sandbox-import",
        y("""
            process: press_line
            steps:
              - service: Book strokes
                action: taktflow.echo
                params:
                  strokes: __import__('os').system('reboot')
            """),
        6,
        16,
        "'params.strokes'",
        '"__import__" is an invalid variable name',
    ),
    bad(
        "sandbox-eval-in-condition",
        y("""
            process: press_line
            steps:
              - choose: Coil left?
                branches:
                  - when: eval('coil_left > 0')
                    steps: []
            """),
        5,
        15,
        "'when': line 1: Eval calls are not allowed",
    ),
    bad(
        "sandbox-dunder-attribute",
        y("""
            process: press_line
            steps:
              - script: Inspect
                set:
                  kind: order.__class__
            """),
        5,
        13,
        '"__class__" is an invalid attribute name',
    ),
    bad(
        "statement-where-an-expression-goes",
        y("""
            process: press_line
            steps:
              - repeat: Press until ok
                until: verdict = 'ok'
                steps:
                  - manual: Press part
            """),
        4,
        12,
        "only an expression is allowed here, not a statement",
    ),
    bad(
        "instructions-template-error",
        y("""
            process: press_line
            steps:
              - task: Load press
                instructions: "Load coil {{ coil_id }"
            """),
        4,
        19,
        "instructions: template error",
    ),
    # ------------------------------------------------------------------ timers
    bad(
        "timer-date-without-time-zone",
        y("""
            process: press_line
            steps:
              - wait: Shift start
                until: 2026-03-02T14:00:00
            """),
        4,
        12,
        "has no time zone: add Z or an offset",
    ),
    bad(
        "timeout-date-without-time-zone",
        y("""
            process: press_line
            steps:
              - task: Load press
                timeout:
                  at: 2026-03-02T14:00
                  steps: []
            """),
        5,
        11,
        "has no time zone",
    ),
    bad(
        "malformed-iso-duration",
        y("""
            process: press_line
            steps:
              - wait: Cool down
                for: PT4X
            """),
        4,
        10,
        "'for' is 'PT4X', which is not an ISO 8601 duration",
    ),
    bad(
        "iso-duration-hours-without-t",
        y("""
            process: press_line
            steps:
              - task: Load press
                timeout:
                  after: P1H
                  steps: []
            """),
        5,
        14,
        "'after' is 'P1H', which is not an ISO 8601 duration",
    ),
    bad(
        "duration-in-plain-words",
        y("""
            process: press_line
            steps:
              - wait: Cool down
                for: 4h
            """),
        4,
        10,
        "ISO 8601",
    ),
    bad(
        "timeout-with-after-and-at",
        y("""
            process: press_line
            steps:
              - task: Load press
                timeout:
                  after: PT1H
                  at: 2026-03-02T14:00:00Z
                  steps: []
            """),
        5,
        7,
        "timeout needs exactly one of after or at",
    ),
    # ------------------------------------------------------------------ decision tables
    bad(
        "table-rule-with-too-few-tests",
        y("""
            process: press_line
            steps:
              - decision: Die for sheet
                table:
                  inputs: [thickness, width]
                  outputs: [die]
                  rules:
                    - when: ["< 2", "< 1000"]
                      then: [D1]
                    - when: [">= 2"]
                      then: [D2]
            """),
        10,
        17,
        "table rule 2: when has 1 tests for 2 inputs",
    ),
    bad(
        # Plain values are valid tests ("a value"): rule 1 is fine, rule 2 is the mistake.
        "table-rule-with-too-few-values",
        y("""
            process: press_line
            steps:
              - decision: Die for sheet
                table:
                  inputs: [material, thickness]
                  outputs: [die]
                  rules:
                    - when: [steel, 2]
                      then: [D1]
                    - when: [alu]
                      then: [D2]
            """),
        10,
        17,
        "table rule 2: when has 1 tests for 2 inputs",
    ),
    bad(
        "table-rule-with-too-many-outputs",
        y("""
            process: press_line
            steps:
              - decision: Die for sheet
                table:
                  inputs: [thickness]
                  outputs: [die]
                  rules:
                    - when: ["< 2"]
                      then: [D1, fast]
            """),
        9,
        17,
        "then has 2 values for 1 outputs",
    ),
    bad(
        "table-unknown-hit-policy",
        y("""
            process: press_line
            steps:
              - decision: Die for sheet
                table:
                  hit: any
                  inputs: [thickness]
                  outputs: [die]
                  rules:
                    - when: ["< 2"]
                      then: [D1]
            """),
        5,
        12,
        "hit 'any' is not supported (use first, unique or collect)",
    ),
    bad(
        "table-test-that-does-not-parse",
        y("""
            process: press_line
            steps:
              - decision: Die for sheet
                table:
                  inputs: [thickness]
                  outputs: [die]
                  rules:
                    - when: ["< < 2"]
                      then: [D1]
            """),
        8,
        18,
        "test '< < 2' is not a value",
    ),
    # ------------------------------------------------------------------ for_each
    bad(
        "for-each-result-without-collect",
        y("""
            process: press_line
            steps:
              - for_each: Check each part
                items: parts
                as: part
                result: check
                steps:
                  - task: Check part
            """),
        6,
        5,
        "give result and collect together",
    ),
    bad(
        "for-each-as-equals-items",
        y("""
            process: press_line
            steps:
              - for_each: Check each part
                items: parts
                as: parts
                steps:
                  - task: Check part
            """),
        5,
        9,
        "'as' must differ from 'items'",
    ),
    # ------------------------------------------------------------------ ids and names
    bad(
        "invalid-step-id",
        y("""
            process: press_line
            steps:
              - task: Load press
                id: 1st-load
            """),
        4,
        9,
        "'id' is '1st-load', which is not an id",
    ),
    bad(
        "step-id-with-double-underscore",
        y("""
            process: press_line
            steps:
              - task: Load press
                id: load__press
            """),
        4,
        9,
        "'id' is 'load__press', which is not an id",
    ),
    bad(
        "invalid-process-id",
        y("""
            process: press line 3
            steps:
              - task: Load press
            """),
        1,
        10,
        "'process' is 'press line 3', which is not a process id",
    ),
    bad(
        "invalid-variable-name",
        y("""
            process: press_line
            steps:
              - script: Count
                set:
                  press.strokes: 1
            """),
        5,
        7,
        "'press.strokes' is not a variable name",
    ),
    bad(
        "invalid-error-code",
        y("""
            process: press_line
            steps:
              - end: Die broken
                error: die broken!
            """),
        4,
        12,
        "'error' is 'die broken!', which is not a name",
    ),
    # ------------------------------------------------------------------ messages
    bad(
        "wait-for-two-things",
        y("""
            process: press_line
            steps:
              - wait: Coil arrives
                message: coil_delivered
                signal: line_stop
            """),
        3,
        5,
        "a wait needs exactly one of message, signal, for or until (got message, signal)",
    ),
    bad(
        "signal-with-payload",
        y("""
            process: press_line
            steps:
              - send: Stop line
                signal: line_stop
                payload: {line: line_id}
            """),
        5,
        5,
        "a signal carries no payload",
    ),
    bad(
        "message-correlated-two-ways",
        y("""
            process: press_line
            steps:
              - wait: Coil arrives
                message: coil_delivered
                correlate: [order_id]
              - wait: Second coil arrives
                message: coil_delivered
                correlate: [coil_id]
            """),
        7,
        14,
        "message 'coil_delivered' is correlated by coil_id here but by order_id elsewhere",
    ),
]


# ---------------------------------------------------------------------- the table
def test_the_table_is_large_and_ids_are_unique() -> None:
    ids = [case.values[0].id for case in CASES]
    assert len(ids) >= 30
    assert len(ids) == len(set(ids))


def refusal(text: str, file: str = FILE) -> DefinitionProblem:
    """The one problem compile_text reports; a crash or a second problem fails the test."""
    try:
        compiled = compile_text(file, text)
    except DefinitionError as exc:
        assert len(exc.problems) == 1, [str(p) for p in exc.problems]
        return exc.problems[0]
    except Exception as exc:  # noqa: BLE001 - any other exception is a compiler crash
        pytest.fail(f"compiler crashed instead of reporting a problem: {type(exc).__name__}: {exc}")
    pytest.fail(f"compiled without a problem (process {compiled.process_id!r})")


@pytest.mark.parametrize("case", CASES)
def test_broken_workflow_is_refused_with_one_located_problem(case: Bad) -> None:
    problem = refusal(case.text)
    assert problem.file == FILE
    assert (problem.line, problem.column) == (case.line, case.column), problem.reason
    for words in case.says:
        assert words in problem.reason
    assert str(problem).startswith(f"{FILE}:{case.line}:{case.column}: ")
    assert str(problem) == f"{FILE}:{case.line}:{case.column}: {problem.reason}"
    assert not LEAKS.search(problem.reason), problem.reason
    assert problem.element is None


def test_a_fixed_file_compiles() -> None:
    """The cases are broken only where they mean to be: fixing that place makes them compile."""
    fixed = {
        "unknown-key-step": ("lnae:", "lane:"),
        "step-after-end": ("  - end: Line stopped\n", ""),
        "malformed-iso-duration": ("PT4X", "PT4H"),
        "timer-date-without-time-zone": ("14:00:00\n", "14:00:00+01:00\n"),
        "table-rule-with-too-few-tests": ('[">= 2"]', '[">= 2", "-"]'),
        "goto-unknown-id": ("laod_press", "load_press"),
        "cycle-without-exit": ("  - goto: load_coil\n", ""),
        "for-each-result-without-collect": ("result: check\n", "result: check\n    collect: c\n"),
    }
    texts = {case.values[0].id: case.values[0].text for case in CASES}
    for case_id, (old, new) in fixed.items():
        assert old in texts[case_id], case_id
        compiled = compile_text(FILE, texts[case_id].replace(old, new))
        assert compiled.process_id == "press_line"


# ---------------------------------------------------------------------- through the engine
def test_a_broken_yaml_deploys_nothing(engine: WorkflowEngine, tmp_path: Path) -> None:
    engine.deploy_paths([GOOD_BPMN])
    before = engine.processes()
    assert [p["process_id"] for p in before] == ["sequence"]

    broken = tmp_path / "press_line.yaml"
    broken.write_text(
        y("""
        process: press_line
        steps:
          - task: Load press
            id: load_press
          - goto: laod_press
        """)
    )
    good = tmp_path / "good.yaml"
    good.write_text("process: good_line\nsteps:\n  - task: Load press\n")

    with pytest.raises(DefinitionError) as caught:
        engine.deploy_paths([good, broken])
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.column) == (str(broken), 5, 11)
    assert "goto 'laod_press': no step has this id" in problem.reason
    # All or nothing: the good file in the same batch was not deployed either.
    assert engine.processes() == before

    with pytest.raises(DefinitionError) as caught:
        engine.deploy_text("press_line.yaml", "process: press_line\nsteps:\n\t- task: A\n")
    [problem] = caught.value.problems
    assert str(problem) == "press_line.yaml:3:1: tab character in indentation: indent with spaces"
    assert engine.processes() == before

    # The good file was refused only because of its broken neighbour.
    engine.deploy_paths([good])
    assert [p["process_id"] for p in engine.processes()] == ["good_line", "sequence"]


def test_a_problem_found_after_compiling_names_the_yaml_line(
    engine: WorkflowEngine, tmp_path: Path
) -> None:
    """The YAML is valid, the action is not registered: found in the BPMN, reported in the
    YAML at the step that made it."""
    path = tmp_path / "press_line.yaml"
    path.write_text(
        y("""
        process: press_line
        steps:
          - task: Load press
          - service: Book strokes
            action: erp.book_strokes
            params: {strokes: strokes}
        """)
    )
    with pytest.raises(DefinitionError) as caught:
        engine.deploy_paths([path])
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.element) == (str(path), 4, "book_strokes")
    assert "unknown action 'erp.book_strokes'" in problem.reason
    assert str(problem).startswith(f"{path}:4: ")
    assert not LEAKS.search(problem.reason), problem.reason
    assert engine.processes() == []


# ---------------------------------------------------------------------- valid input refused
# Found while writing the cases above: valid workflows (per language.py) that are refused,
# and the size limit's edges.
def test_a_service_step_without_params_deploys(engine: WorkflowEngine) -> None:
    """`params` is optional, and taktflow.now has no parameters at all."""
    text = y("""
        process: press_line
        steps:
          - service: Stamp time
            action: taktflow.now
            result: stamped_at
        """)
    [result] = engine.deploy_text("press_line.yaml", text)
    assert result["process_id"] == "press_line"
    instance_id = engine.start("press_line")["instance_id"]
    assert engine.instance(instance_id)["data"]["stamped_at"] == "2026-03-02T06:00:00+00:00"


def test_a_decision_table_with_plain_value_tests_compiles() -> None:
    """language.RULE: a test is "a value, '< 58', '58..62', a list, or -"; SpiffWorkflow
    compares a plain value with ==."""
    text = y("""
        process: press_line
        steps:
          - decision: Die for sheet
            table:
              inputs: [material, thickness, coated]
              outputs: [die]
              rules:
                - when: [steel, 2, true]
                  then: [D1]
                - when: [alu, "< 2", -]
                  then: [D2]
        """)
    compiled = compile_text(FILE, text)
    [dmn] = compiled.dmn.values()
    assert "<text>'steel'</text>" in dmn and "<text>2</text>" in dmn


def test_a_file_at_the_size_limit_is_read() -> None:
    head = "process: press_line\nsteps:\n  - task: Load press\n# "
    text = head + "x" * (MAX_BYTES - len(head) - 1) + "\n"
    assert len(text.encode()) == MAX_BYTES
    assert compile_text(FILE, text).process_id == "press_line"


def test_a_file_just_over_the_size_limit_is_not_said_to_be_at_it() -> None:
    text = "process: press_line\nsteps:\n  - task: Load press\n# " + "x" * MAX_BYTES + "\n"
    problem = refusal(text)
    assert f"limited to {MAX_BYTES:,} bytes" in problem.reason
    # Rounded down, the size would read "file is 512 KiB; ... limited to 512 KiB".
    assert f"file is {len(text.encode()):,} bytes" in problem.reason, problem.reason


def test_a_binary_yaml_file_is_refused_with_its_line(
    engine: WorkflowEngine, tmp_path: Path
) -> None:
    path = tmp_path / "press_line.yaml"
    path.write_bytes(b"process: press_line\nsteps:\n  - task: Load \xff\xfe press\n")
    with pytest.raises(DefinitionError) as caught:
        engine.deploy_paths([path])
    [problem] = caught.value.problems
    assert problem.file == str(path)
    assert (problem.line, problem.column) == (3, 16), str(problem)
    assert not LEAKS.search(problem.reason), problem.reason
    assert engine.processes() == []


# ---------------------------------------------------------------------- through the CLI
CONFIG_VARS = [f"TAKTFLOW_{f.name.upper()}" for f in fields(Config) if f.name != "extra"]


@pytest.fixture
def taktflow(db_url: str, tmp_path: Path) -> Callable[..., Any]:
    """Run `taktflow --database-url DB ARGS...` in-process, as tests/test_cli.py does."""

    def run(*args: str) -> Any:
        env: dict[str, str | None] = {name: None for name in CONFIG_VARS}
        env["TAKTFLOW_INSTANCE_PATH"] = str(tmp_path / "instance")
        obj: dict[str, Any] = {}
        result = CliRunner().invoke(
            cli, ["--database-url", db_url, *args], obj=obj, env=env, catch_exceptions=False
        )
        if obj.get("app") is not None:
            with obj["app"].app_context():
                db.engine.dispose()
        return result

    return run


def test_cli_deploy_of_a_broken_yaml_exits_2_with_file_line_column(
    taktflow: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        y("""
        process: press_line
        lanes: [operator, setter]
        steps:
          - task: Mount die
            lane: seter
        """)
    )

    result = taktflow("deploy", str(path))

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {path}:5:11: step \"Mount die\": unknown lane 'seter' "
        "(lanes: operator, setter); did you mean 'setter'?"
    ]
    assert not LEAKS.search(result.stderr)

    listed = taktflow("processes", "--json")
    assert listed.exit_code == 0 and listed.stdout.strip() == "[]"
