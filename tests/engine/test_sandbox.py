"""Tests for the script sandbox: pure (no database, no Flask), run through real BpmnWorkflows."""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import datetime as dt
import json
import math
import os
import types
from decimal import Decimal
from functools import lru_cache
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pytest
from SpiffWorkflow import TaskState
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.spiff.parser import SpiffBpmnParser

from taktflow.engine.sandbox import (
    DEFAULT_HELPERS,
    Limits,
    SandboxCompileError,
    SandboxedEnvironment,
    SandboxedScriptEngine,
    SandboxError,
    check_source,
    round_down,
    round_half_up,
    round_up,
)

NS = (
    'xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"'
)
# Small limits keep the endless-loop payloads fast; the size limits stay at their defaults.
FAST = Limits(max_cpu_s=0.2, max_steps=100_000)
ENGINE = SandboxedScriptEngine(limits=FAST)
# SpiffWorkflow's own engine with the same helpers (real modules), for comparison.
DEFAULT = PythonScriptEngine(
    environment=TaskDataEnvironment(
        {
            "datetime": dt.datetime,
            "date": dt.date,
            "timedelta": dt.timedelta,
            "timezone": dt.timezone,
            "Decimal": Decimal,
            "math": math,
            "json": json,
            "round_half_up": round_half_up,
            "round_up": round_up,
            "round_down": round_down,
        }
    )
)
SANDBOX_ERRORS = ("SandboxError", "SandboxCompileError")


@lru_cache(maxsize=256)
def spec_from(body: str) -> BpmnProcessSpec:
    parser = SpiffBpmnParser()
    parser.add_bpmn_str(
        f'<?xml version="1.0"?><bpmn:definitions {NS} id="d" targetNamespace="x">'
        f'<bpmn:process id="p" isExecutable="true">{body}</bpmn:process>'
        "</bpmn:definitions>".encode()
    )
    return parser.get_spec("p")


def script_spec(script: str) -> BpmnProcessSpec:
    return spec_from(
        '<bpmn:startEvent id="s"/>'
        f'<bpmn:scriptTask id="t" name="Calculate"><bpmn:script>{escape(script)}</bpmn:script>'
        '</bpmn:scriptTask><bpmn:endEvent id="e"/>'
        '<bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="t"/>'
        '<bpmn:sequenceFlow id="f2" sourceRef="t" targetRef="e"/>'
    )


def run_script(
    script: str, engine: PythonScriptEngine = ENGINE, data: dict[str, Any] | None = None
) -> tuple[BpmnWorkflow, Exception | None, Any]:
    """Run `script` in a one-task process; return the workflow, the error and the task."""
    wf = BpmnWorkflow(script_spec(script), script_engine=engine)
    wf.task_tree.data.update(copy.deepcopy(data or {}))
    err = None
    try:
        wf.do_engine_steps()
    except Exception as exc:
        err = exc
    return wf, err, wf.get_next_task(spec_name="t")


def without_modules(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not isinstance(v, types.ModuleType)}


# ---------------------------------------------------------------- ordinary scripts

ORDINARY = {
    "comprehensions": (
        {"bom": {"steel_kg": 1.25, "bolt_m8": 4}, "qty": 10},
        "material = {k: v * qty for k, v in bom.items()}\n"
        "odd = {i for i in range(6) if i % 2}\n"
        "squares = [i * i for i in range(5)]\n"
        "pairs = [(a, b) for a in range(3) for b in range(a)]\n"
        "total = sum(v for v in bom.values())",
        {
            "material": {"steel_kg": 12.5, "bolt_m8": 40},
            "odd": {1, 3, 5},
            "squares": [0, 1, 4, 9, 16],
            "pairs": [(1, 0), (2, 0), (2, 1)],
            "total": 5.25,
        },
    ),
    "dict_and_list_ops": (
        {"order": {"lines": [{"qty": 10}, {"qty": 3}], "status": "new"}, "tmp": 1},
        "order['lines'][0]['qty'] += 5\n"
        "order['lines'].append({'qty': 1})\n"
        "order['total'] = sum(l['qty'] for l in order['lines'])\n"
        "order.update(status='released')\n"
        "order.setdefault('prio', 2)\n"
        "first, *rest = [l['qty'] for l in order['lines']]\n"
        "tail = order['lines'][1:]\n"
        "del order['lines'][2]\n"
        "keys = sorted(order)\n"
        "del tmp",
        {
            "order": {
                "lines": [{"qty": 15}, {"qty": 3}],
                "status": "released",
                "total": 19,
                "prio": 2,
            },
            "first": 15,
            "rest": [3, 1],
            "tail": [{"qty": 3}, {"qty": 1}],
            "keys": ["lines", "prio", "status", "total"],
        },
    ),
    "string_formatting": (
        {"qty": 1234.5678, "order_id": "PO-7", "n": 42},
        "a = f'{order_id}/{qty:,.2f}/{n:>5}/{n!r}'\n"
        "b = '{}-{:03d}-{name}'.format(order_id, 7, name='x')\n"
        "c = '%s:%05.1f:%d' % (order_id, 3.14159, n)\n"
        "d = '{o[id]}'.format_map({'o': {'id': order_id}})\n"
        "e = order_id.lower().replace('-', '_').center(9, '*')\n"
        "f = ', '.join(s.strip() for s in ' a , b ,c'.split(','))\n"
        "g = str(n).zfill(6) + repr('x') + format(0.5, '.0%')",
        {
            "a": "PO-7/1,234.57/   42/42",
            "b": "PO-7-007-x",
            "c": "PO-7:003.1:42",
            "d": "PO-7",
            "e": "***po_7**",
            "f": "a, b, c",
            "g": "000042'x'50%",
        },
    ),
    "sorting_and_builtins": (
        {"jobs": [["J1", 2], ["J2", 5], ["J3", 1]]},
        "by_prio = [name for name, prio in sorted(jobs, key=lambda j: -j[1])]\n"
        "top = max(jobs, key=lambda j: j[1])[0]\n"
        "low = min(p for name, p in jobs)\n"
        "numbered = list(enumerate(name for name, p in jobs))\n"
        "zipped = dict(zip(['a', 'b'], [1, 2]))\n"
        "flags = [any(p > 4 for name, p in jobs), all(p > 0 for name, p in jobs)]\n"
        "rev = list(reversed([1, 2, 3]))\n"
        "kinds = [isinstance(1, int), type('s') is str, type(1.5) == float]",
        {
            "by_prio": ["J2", "J1", "J3"],
            "top": "J2",
            "low": 1,
            "numbered": [(0, "J1"), (1, "J2"), (2, "J3")],
            "zipped": {"a": 1, "b": 2},
            "flags": [True, True],
            "rev": [3, 2, 1],
            "kinds": [True, True, True],
        },
    ),
    "datetime_and_decimal": (
        {"start": "2024-03-01T06:00:00", "price": "12.345"},
        "from datetime import datetime, timedelta\n"
        "from decimal import Decimal, ROUND_HALF_UP\n"
        "due = (datetime.fromisoformat(start) + timedelta(hours=8, minutes=15)).isoformat()\n"
        "day = datetime.fromisoformat(start).strftime('%d.%m.%Y')\n"
        "shift = f'{datetime.fromisoformat(start):%H:%M}'\n"
        "cost = str((Decimal(price) * 7).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP))\n"
        "weeks = (date(2024, 3, 29) - date(2024, 3, 1)).days // 7\n"
        "utc = datetime(2024, 1, 1, tzinfo=timezone.utc).isoformat()",
        {
            "due": "2024-03-01T14:15:00",
            "day": "01.03.2024",
            "shift": "06:00",
            "cost": "86.42",
            "weeks": 4,
            "utc": "2024-01-01T00:00:00+00:00",
        },
    ),
    "rounding_helpers": (
        {"qty": 113, "rate": 2.675},
        "a = round_half_up(rate, 2)\n"
        "b = round_half_up(Decimal('2.345'), 2)\n"
        "c = round_up(qty, 50)\n"
        "d = round_down(qty, 50)\n"
        "e = round_up(0.31, 0.1)\n"
        "f = round_half_up(2.5)\n"
        "g = round(2.5)",
        {"a": 2.68, "b": Decimal("2.35"), "c": 150, "d": 100, "e": 0.4, "f": 3.0, "g": 2},
    ),
    "math_and_json": (
        {"values": [3, 4], "raw": '{"a": [1, 2.5]}'},
        "import math\n"
        "import json\n"
        "hyp = math.sqrt(sum(v * v for v in values))\n"
        "up = math.ceil(2.1) + math.floor(2.9)\n"
        "text = json.dumps({'b': 1, 'a': [1, 2]}, sort_keys=True)\n"
        "parsed = json.loads(raw)\n"
        "close = math.isclose(0.1 + 0.2, 0.3)",
        {
            "hyp": 5.0,
            "up": 5,
            "text": '{"a": [1, 2], "b": 1}',
            "parsed": {"a": [1, 2.5]},
            "close": True,
        },
    ),
    "functions_loops_exceptions": (
        {"items": ["5", "x", "7"], "limit": 3},
        "def fact(n):\n"
        "    return 1 if n < 2 else n * fact(n - 1)\n"
        "def parse(s, default=0):\n"
        "    try:\n"
        "        return int(s)\n"
        "    except ValueError:\n"
        "        return default\n"
        "    finally:\n"
        "        pass\n"
        "numbers = [parse(s) for s in items]\n"
        "f10 = fact(10)\n"
        "n = 0\n"
        "while True:\n"
        "    n += 1\n"
        "    if n % 2:\n"
        "        continue\n"
        "    if n > limit:\n"
        "        break\n"
        "counts = {'a': 1}\n"
        "counts['a'] += 2\n"
        "counts['a'] *= 2\n"
        "scale = lambda x, k=2: x * k\n"
        "scaled = list(map(scale, [1, 2]))\n"
        "evens = list(filter(lambda x: x % 2 == 0, range(6)))\n"
        "big = 2 ** 64 + (1 << 10)",
        {
            "numbers": [5, 0, 7],
            "f10": 3628800,
            "n": 4,
            "counts": {"a": 6},
            "scaled": [2, 4],
            "evens": [0, 2, 4],
            "big": 18446744073709552640,
        },
    ),
    "sets_and_conversions": (
        {"a": [1, 2, 3, 3], "b": [3, 4]},
        "u = sorted(set(a) | set(b))\n"
        "i = set(a) & set(b)\n"
        "d = set(a).difference(b)\n"
        "n = int('42') + int(3.9) + int(Decimal('2.5'))\n"
        "x = float('1.5') * 2\n"
        "s = str(12) + str([1, 'a']) + ascii('ä')\n"
        "t = tuple(a) * 2\n"
        "has = 3 in a and 'b' not in 'abc'[0]",
        {
            "u": [1, 2, 3, 4],
            "i": {3},
            "d": {1, 2},
            "n": 47,
            "x": 3.0,
            "s": "12[1, 'a']'\\xe4'",
            "t": (1, 2, 3, 3, 1, 2, 3, 3),
            "has": True,
        },
    ),
}


@pytest.mark.parametrize("name", ORDINARY)
def test_ordinary_script_gives_same_task_data_as_default_engine(name: str) -> None:
    data, script, expected = ORDINARY[name]
    wf, err, task = run_script(script, ENGINE, data)
    assert err is None
    assert wf.is_completed()
    assert {k: task.data.get(k) for k in expected} == expected
    _, default_err, default_task = run_script(script, DEFAULT, data)
    assert default_err is None
    assert task.data == without_modules(default_task.data)


def test_del_removes_key_and_functions_modules_are_not_task_data() -> None:
    script = "import math\ndef f():\n    return 1\ng = lambda: 2\nx = f() + g()\ndel old"
    _, err, task = run_script(script, data={"old": 1, "keep": "k"})
    assert err is None
    assert task.data == {"keep": "k", "x": 3}


def test_task_data_shadows_helpers_but_not_guards() -> None:
    data = {"date": "2024-03-01", "_getattr_": "evil", "_tick_": 0, "qty": 2}
    _, err, task = run_script("d = date\ny = qty * len([1, 2])\nz = 'a'.upper()", data=data)
    assert err is None
    assert task.data == {**data, "d": "2024-03-01", "y": 4, "z": "A"}


# ---------------------------------------------------------------- escape corpus

LOOP = "while True:\n    pass"
LOOP_IN = "    while True:\n        pass"  # the same loop, one level in
ESCAPES = {
    # refused at compile time
    "subclasses": "probe = len(().__class__.__base__.__subclasses__())",
    "mro_attr": "m = ''.__class__.__mro__",
    "func_globals": "def f():\n    pass\ng = f.__globals__",
    "func_code": "def f():\n    pass\nc = f.__code__",
    "builtins_name": "op = __builtins__['open']",
    "dunder_import": "os = __import__('os')",
    "traceback_frame": "try:\n    1 / 0\nexcept Exception as e:\n    f = e.__traceback__.tb_frame",
    "generator_frame_walk": "g = (i for i in [1])\nf = g.gi_frame.f_back.f_globals",
    "generator_code": "g = (i for i in [1])\nc = g.gi_code",
    "fstring_class": "s = f'{(1).__class__}'",
    "fullwidth_dunder": "c = ().__ｃｌａｓｓ__",
    "class_def": "class Evil:\n    pass",
    "generator_function": "def gen():\n    yield 1",
    "async_def": "async def f():\n    pass",
    "walrus_guard": "(_getattr_ := getattr)",
    "underscore_name": "_x = 1",
    "eval_call": "x = eval('1 + 1')",
    "exec_call": "exec('x = 1')",
    "breakpoint_call": "breakpoint()",
    "with_statement": "with open('/etc/passwd') as f:\n    pass",
    "match_statement": "match 1:\n    case 1:\n        pass",
    "except_call": "def f():\n    return ValueError\ntry:\n    pass\nexcept f():\n    pass",
    "star_import": "from math import *",
    "nonlocal": "def f():\n    x = 1\n    def g():\n        nonlocal x\n    return g",
    # refused at run time by the guards
    "getattr_concat": "cls = getattr((), '__cl' + 'ass__')",
    "getattr_frame_concat": "g = (i for i in [1])\nf = getattr(g, 'gi_' + 'frame')",
    "getattr_func_globals": "def f():\n    pass\nb = getattr(f, '__glo' + 'bals__')",
    "getattr_self": "s = getattr(len, '__self__')",
    "hasattr_probe": "h = hasattr(1, '__class__')",
    "int_mro": "m = int.mro()",
    "format_attr": "s = '{0.__class__}'.format(1)",
    "format_map_attr": "s = '{x.__class__}'.format_map({'x': 1})",
    "unbound_str_format": "s = str.format('{0.__class__}', 1)",
    "import_os": "import os\ncwd = os.getcwd()",
    "import_sys": "import sys",
    "import_subprocess": "import subprocess",
    "from_os_import": "from os import system",
    "import_operator": "import operator",
    "import_submodule": "from json import decoder",
    "relative_import": "from . import x",
    "open_file": "data = open('/etc/passwd').read()",
    "input_call": "x = input()",
    "exit_call": "exit()",
    "quit_call": "quit()",
    "vars_call": "v = vars()",
    "globals_call": "g = globals()",
    "locals_call": "l = locals()",
    "dir_call": "d = dir()",
    "compile_call": "c = compile('1', 'f', 'eval')",
    "setattr_call": "setattr(json, 'dumps', 1)",
    "eval_alias": "e = eval\nx = e('1')",
    "type_three_args": "T = type('T', (), {})",
    "type_of_type": "t = type(type(1))",
    "module_write": "json.dumps = len",
    "object_write": "d = Decimal(1)\nd.real = 2",
    "iter_sentinel": "i = iter(int, 1)",
    "bytes_call": "b = bytes(10)",
    "caught_then_loop": "try:\n    getattr(1, '__class__')\nexcept:\n    pass",
    # size bombs
    "pow_tower": "x = 10**10**10",
    "pow_builtin": "x = pow(7, 10**9)",
    "shift": "x = 1 << 10**10",
    "square_loop": "x = 3\nwhile True:\n    x = x * x",
    "str_repeat": "s = 'a' * 10**10",
    "list_repeat": "l = [0] * 10**10",
    "range_list": "l = list(range(10**12))",
    "range_loop": "for i in range(10**12):\n    pass",
    "str_doubling": "s = 'ab'\nwhile True:\n    s += s",
    "list_extend_self": "l = [1]\nwhile True:\n    l.extend(l)",
    "slice_doubling": "l = [1]\nwhile True:\n    l[len(l):] = l",
    "join_bomb": "s = ','.join(['a' * 1000] * 10000)",
    "replace_bomb": "s = 'a' * 1000\nt = s.replace('', 'b' * 10000)",
    "ljust_bomb": "s = 'a'.ljust(10**10)",
    "fstring_width": "s = f'{1:>{10**9}}'",
    "format_width": "s = '{:>1000000000}'.format(1)",
    "percent_width": "s = '%1000000000d' % 1",
    "percent_star": "s = '%*d' % (10**9, 1)",
    "decimal_to_int": "x = int(Decimal('1e999999'))",
    "round_ndigits": "x = round(5, -10**9)",
    "to_bytes": "b = (1).to_bytes(10**10, 'big')",
    "json_indent": "s = json.dumps([1], indent=10**9)",
    "shared_ref_str": "s = str([[[0] * 1000] * 1000] * 1000)",
    "shared_ref_repr": "s = repr([[[0] * 1000] * 1000] * 1000)",
    "shared_ref_ascii": "s = ascii([[[0] * 1000] * 1000] * 1000)",
    "shared_ref_print": "print([[[0] * 1000] * 1000] * 1000)",
    "shared_ref_json_default": "s = json.dumps([1j], default=lambda o: [[[0] * 999] * 999] * 9)",
    "shared_ref_dict_view": "d = {'k': [[0] * 1000] * 1000}\ns = str([d.values()] * 10)",
    "shared_ref_task_data": "x = [[[0] * 1000] * 1000] * 1000",
    "zip_star": "l = [0] * 10**6\nn = len(list(zip(*[l] * 200)))",
    "set_union_star": "l = list(range(10**6))\nn = len(set().union(*[l] * 30))",
    "strftime_width": "s = datetime(2024, 1, 1).strftime('%9000Y' * 3)",
    "deep_nesting": "a = []\nfor i in range(1000):\n    a = [a]",
    "circular_data": "a = []\na.append(a)",
    "generator_in_data": "g = (x for x in [1, 2])",
    "attribute_error_obj": (
        "try:\n    int.nope\nexcept AttributeError as e:\n    t = e.obj\n"
        "x = getattr(t, '__cl' + 'ass__')"
    ),
    # endless loops and CPU/memory
    "while_true": "while True:\n    pass",
    "while_true_one_line": "while True: pass",
    "busy_counter": "n = 0\nwhile n >= 0:\n    n += 1",
    "swallow_then_loop": f"try:\n{LOOP_IN}\nexcept:\n    pass\n{LOOP}",
    "swallow_exception_then_loop": f"try:\n{LOOP_IN}\nexcept Exception:\n    pass\n{LOOP}",
    "loop_in_finally": f"try:\n{LOOP_IN}\nfinally:\n{LOOP_IN}",
    "recursion_then_loop": (
        f"def f():\n    return f()\ntry:\n    f()\nexcept RecursionError:\n{LOOP_IN}"
    ),
    "nested_comprehension": "x = [[i for i in range(1000)] for j in range(1000)]",
    "map_callback": "x = list(map(str.upper, ['a'] * 10**6))",
    "sorted_key": "x = sorted(range(10**6), key=lambda v: -v)",
    "cpu_heavy_steps": "l = list(range(100000))\nfor i in range(90000):\n    s = sum(l)",
    "mutate_then_loop": "order['qty'] = 99\norder['lines'].append(3)\nwhile True:\n    pass",
}

DATA = {"printer": "ZT-410", "order": {"qty": 5, "lines": [1, 2]}}


def test_escape_corpus_is_large() -> None:
    assert len(ESCAPES) >= 60


@pytest.mark.parametrize("name", ESCAPES)
def test_escape_ends_in_task_error_with_data_unchanged(name: str) -> None:
    wf, err, task = run_script(ESCAPES[name], ENGINE, DATA)
    assert isinstance(err, WorkflowTaskException), repr(err)
    assert err.error_type in SANDBOX_ERRORS, str(err)
    assert task.state == TaskState.ERROR
    assert not wf.is_completed()
    assert task.data == DATA  # nothing of a failed script is written back, not even nested


def test_default_engine_is_not_a_sandbox() -> None:
    # The reason for all this: SpiffWorkflow's own engine runs the probe without complaint.
    _, err, task = run_script(ESCAPES["subclasses"], DEFAULT)
    assert err is None
    assert task.data["probe"] > 100


# ---------------------------------------------------------------- clear messages


def error_of(script: str, engine: PythonScriptEngine = ENGINE) -> WorkflowTaskException:
    _, err, task = run_script(script, engine, DATA)
    assert isinstance(err, WorkflowTaskException)
    assert task.state == TaskState.ERROR
    return err


def test_step_limit_message() -> None:
    err = error_of("n = 0\nwhile True:\n    n += 1")
    assert str(err).startswith(
        "SandboxError: step limit exceeded (100,000 loop iterations/function calls)"
    )
    assert err.line_number == 2  # the loop that ran too long
    assert err.error_line == "while True:"


def test_cpu_limit_message() -> None:
    engine = SandboxedScriptEngine(limits=Limits(max_cpu_s=0.1, max_steps=10**9))
    err = error_of("l = list(range(100000))\nwhile True:\n    s = sum(l)", engine)
    assert "CPU time limit exceeded (0.1 s)" in str(err)


def test_cpu_limit_holds_for_a_few_slow_steps() -> None:
    # CPU time is checked by elapsed time, not every N steps: 15 slow steps still hit it.
    engine = SandboxedScriptEngine(limits=Limits(max_cpu_s=0.01, max_steps=10**9))
    err = error_of(
        "l = list(range(10**6))\nfor i in range(15):\n    s = sum(sorted(l))\ndel l", engine
    )
    assert "CPU time limit exceeded (0.01 s)" in str(err)


def test_cpu_limit_holds_for_straight_line_code() -> None:
    # No loop at all: the compiler also puts a step check every few statements.
    engine = SandboxedScriptEngine(limits=Limits(max_cpu_s=0.01, max_steps=10**9))
    script = "l = list(range(10**6))\n" + "s = sum(sorted(l))\n" * 40 + "del l"
    err = error_of(script, engine)
    assert "CPU time limit exceeded (0.01 s)" in str(err)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS tripwire needs /proc")
def test_memory_limit_message() -> None:
    engine = SandboxedScriptEngine(
        limits=Limits(max_rss_growth=64 << 20, max_cpu_s=10, max_steps=10**9)
    )
    err = error_of("l = []\nwhile True:\n    l.append([0] * 100000)", engine)
    assert "memory limit exceeded (process memory grew by more than 64 MiB)" in str(err)


def test_import_message_lists_what_is_allowed() -> None:
    err = error_of("import os")
    assert str(err).startswith(
        "SandboxError: import of 'os' is not allowed in scripts "
        "(available: datetime, decimal, json, math)"
    )


def test_attribute_and_builtin_messages() -> None:
    err = error_of("x = getattr(1, '__cl' + 'ass__')")
    assert "access to attribute '__class__' is not allowed in scripts" in str(err)
    err = error_of("x = 1\nopen('/etc/passwd')")
    assert "open() is not available in scripts" in str(err)
    assert err.line_number == 2


def test_size_messages() -> None:
    err = error_of("s = 'ab' * 10**9")
    assert "str repetition would make 2,000,000,000 items (limit 1,000,000)" in str(err)
    err = error_of("x = [[[0] * 1000] * 1000] * 1000")
    assert "task data too large or circular (limit 5,000,000)" in str(err)
    err = error_of("g = (x for x in [1])")
    assert "a generator object cannot be stored in task data; make a list of it" in str(err)


def test_compile_error_names_line_and_reason() -> None:
    err = error_of("x = 1\ny = ().__class__\nz = 3")
    assert err.error_type == "SandboxCompileError"
    assert err.line_number == 2
    assert err.error_line == "y = ().__class__"
    assert '"__class__" is an invalid attribute name' in str(err)


def test_python_syntax_error_stays_a_syntax_error() -> None:
    err = error_of("x = 1\ny = (")
    assert err.error_type == "SyntaxError"
    assert err.line_number == 2


def test_non_str_exception_argument_is_reported() -> None:
    # SpiffWorkflow 3.2.0 turns KeyError(5) into a TypeError in its error wrapper.
    err = error_of("d = {}\nx = d[5]")
    assert err.error_type == "KeyError"
    assert str(err).startswith("KeyError: 5")
    assert err.line_number == 2


def test_attribute_error_does_not_leak_the_real_type() -> None:
    _, err, task = run_script(
        "try:\n    int.nope\nexcept AttributeError as e:\n    leak = e.obj is None"
    )
    assert err is None
    assert task.data["leak"] is True


# ---------------------------------------------------------------- gateway conditions


def gateway_spec(condition: str) -> BpmnProcessSpec:
    return spec_from(
        '<bpmn:startEvent id="s"/><bpmn:exclusiveGateway id="gw" default="f_no"/>'
        '<bpmn:endEvent id="yes"/><bpmn:endEvent id="no"/>'
        '<bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="gw"/>'
        '<bpmn:sequenceFlow id="f_yes" sourceRef="gw" targetRef="yes">'
        f"<bpmn:conditionExpression>{escape(condition)}</bpmn:conditionExpression>"
        '</bpmn:sequenceFlow><bpmn:sequenceFlow id="f_no" sourceRef="gw" targetRef="no"/>'
    )


@pytest.mark.parametrize(
    "condition,qty,end",
    [("qty > 100 and ok == True", 120, "yes"), ("qty > 100 and ok == True", 80, "no")],
)
def test_gateway_condition_routes(condition: str, qty: int, end: str) -> None:
    wf = BpmnWorkflow(gateway_spec(condition), script_engine=ENGINE)
    wf.task_tree.data.update({"qty": qty, "ok": True})
    wf.do_engine_steps()
    assert wf.is_completed()
    assert wf.get_next_task(spec_name=end).state == TaskState.COMPLETED


@pytest.mark.parametrize(
    "condition,error_type,reason",
    [
        ("().__class__", "SandboxCompileError", '"__class__" is an invalid attribute name'),
        ("getattr(qty, '__cl' + 'ass__')", "SandboxError", "access to attribute '__class__'"),
        ("len(range(10**12)) > 0", "SandboxError", "range() too large"),
    ],
)
def test_gateway_condition_is_sandboxed(condition: str, error_type: str, reason: str) -> None:
    wf = BpmnWorkflow(gateway_spec(condition), script_engine=ENGINE)
    wf.task_tree.data.update({"qty": 120, "ok": True})
    with pytest.raises(WorkflowTaskException) as info:
        wf.do_engine_steps()
    assert info.value.error_type == error_type
    assert reason in str(info.value)
    assert wf.get_next_task(spec_name="gw").state == TaskState.ERROR


def test_environment_evaluate_context_wins_over_external_context() -> None:
    env = SandboxedEnvironment()
    assert env.evaluate("a + b", {"a": 1}, {"b": 2, "a": 100}) == 3
    with pytest.raises(SandboxCompileError):
        env.evaluate("a.__class__", {"a": 1})
    with pytest.raises(SandboxError, match="expression result too large"):
        env.evaluate("[[[0] * 1000] * 1000] * 1000", {})


@pytest.mark.parametrize(
    "expression", ["key", " key ", "qty", "len", "missing", "_hidden", "None", "rows"]
)
def test_environment_evaluate_bare_names_as_compiled_code_would(expression: str) -> None:
    # Bare names are read from the data without compiling; the answer, or the error, must
    # be the one the sandboxed code gives.
    env = SandboxedEnvironment(limits=Limits(max_data=50))
    data = {"key": "K-1", "_hidden": 1, "rows": list(range(100))}
    external = {"qty": 3, "key": "shadowed"}

    def outcome(run: Any) -> Any:
        try:
            return run()
        except Exception as exc:  # noqa: BLE001 - the kind of failure is compared
            return type(exc).__name__

    fast = outcome(lambda: env.evaluate(expression, dict(data), dict(external)))
    compiled = outcome(lambda: env.evaluate(f"({expression.strip()})", dict(data), external))
    assert fast == compiled


# ---------------------------------------------------------------- threads, print


def test_limits_work_in_worker_threads() -> None:
    def job(i: int) -> tuple[TaskState, Any]:
        if i % 2:
            _, _, task = run_script("while True:\n    pass")
        else:
            _, _, task = run_script(f"n = sum(x for x in range({i} * 100))")
        return task.state, task.data.get("n")

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(job, range(8)))
    assert [state for state, _ in results] == [TaskState.COMPLETED, TaskState.ERROR] * 4
    assert [n for _, n in results[::2]] == [0, 19900, 79800, 179700]


def test_print_goes_to_sink_not_stdout_or_task_data(capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    engine = SandboxedScriptEngine(environment=SandboxedEnvironment(print_sink=lines.append))
    _, err, task = run_script("print('lot', 7, sep='-')\nprint([1, 2])\nx = 1", engine)
    assert err is None
    assert lines == ["lot-7\n[1, 2]\n"]
    assert task.data == {"x": 1}
    assert capsys.readouterr().out == ""


def test_print_output_is_capped() -> None:
    lines: list[str] = []
    env = SandboxedEnvironment(limits=Limits(max_print=10), print_sink=lines.append)
    env.execute("for i in range(100):\n    print('abcdef')", {})
    assert lines == ["abcdef\nabc"]


# ---------------------------------------------------------------- check_source


def test_check_source_accepts_good_scripts_and_expressions() -> None:
    assert check_source("x = [i * 2 for i in range(3)]\ny = f'{x}'", "exec") is None
    assert check_source("import math\nz = math.pi", "exec") is None
    assert check_source("qty > 100 and ok", "eval") is None
    assert check_source("\n   qty > 100\n", "eval") is None


def test_check_source_names_the_line() -> None:
    assert check_source("a = 1\nb = 2\nc = (", "exec") == "line 3: '(' was never closed"
    message = check_source("a = 1\nb = ().__class__\nc = 3", "exec")
    assert message is not None
    assert message.startswith('line 2: "__class__" is an invalid attribute name')
    assert "\n" not in message
    assert check_source("class A:\n    pass", "exec") == (
        "line 1: class definitions are not allowed in scripts"
    )


def test_check_source_eval_mode_rejects_statements() -> None:
    assert check_source("x = 1", "eval") == (
        "line 1: only an expression is allowed here, not a statement"
    )
    assert check_source("qty >", "eval") == "line 1: invalid syntax"
    assert check_source("\n\n   qty >\n", "eval") == "line 3: invalid syntax"


def test_check_source_does_not_execute() -> None:
    assert check_source("while True:\n    pass", "exec") is None
    # Refused statically, with its line, and the file was not written.
    assert check_source("x = 1\nopen('/tmp/taktflow-never').write('y')", "exec") == (
        "line 2: open() is not available in scripts"
    )
    assert not os.path.exists("/tmp/taktflow-never")
    assert check_source("import math\nimport os", "exec") == (
        "line 2: import of 'os' is not allowed in scripts (available: datetime, decimal, json, "
        "math)"
    )
    with pytest.raises(ValueError):
        check_source("x", "single")  # type: ignore[arg-type]


# ---------------------------------------------------------------- helpers, limits, engine


def test_round_half_up() -> None:
    assert round_half_up(2.675, 2) == 2.68
    assert isinstance(round_half_up(2.675, 2), float)
    assert round_half_up(-0.5) == -1.0
    assert round_half_up(Decimal("2.345"), 2) == Decimal("2.35")
    assert isinstance(round_half_up(Decimal("2.345"), 2), Decimal)
    assert round_half_up(125, -1) == 130
    assert round_half_up(7) == 7
    with pytest.raises(TypeError):
        round_half_up("1.5")  # type: ignore[arg-type]


def test_round_up_and_down_to_a_multiple() -> None:
    assert round_up(113, 50) == 150
    assert round_down(113, 50) == 100
    assert round_up(100, 50) == 100
    assert round_up(0.31, 0.1) == 0.4
    assert round_down(0.39, 0.1) == 0.3
    assert round_up(Decimal("1.05"), Decimal("0.1")) == Decimal("1.1")
    assert round_down(-113, 50) == -150
    assert round_up(10**30 + 1, Decimal(1000)) == Decimal(10**30 + 1000)
    with pytest.raises(ValueError):
        round_up(5, 0)


def test_default_helpers_are_read_only() -> None:
    assert set(DEFAULT_HELPERS) == {
        "datetime",
        "date",
        "timedelta",
        "timezone",
        "Decimal",
        "math",
        "json",
        "round_half_up",
        "round_up",
        "round_down",
    }
    with pytest.raises(TypeError):
        DEFAULT_HELPERS["open"] = open  # type: ignore[index]


def test_environment_helpers_are_added() -> None:
    env = SandboxedEnvironment(helpers={"lot_size": lambda qty: round_up(qty, 25)})
    data: dict[str, Any] = {"qty": 60}
    env.execute("lots = lot_size(qty)\nr = round_half_up(0.125, 2)", data)
    assert data == {"qty": 60, "lots": 75, "r": 0.13}
    with pytest.raises(ValueError):
        SandboxedEnvironment(helpers={"_hidden": 1})


def test_limits() -> None:
    limits = Limits(max_steps=5)
    assert limits.max_steps == 5
    assert limits.max_cpu_s == 2.0
    assert limits.max_data == 5_000_000
    with pytest.raises(TypeError):
        Limits(max_stepz=5)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_steps = 6  # type: ignore[misc]
    env = SandboxedEnvironment(limits=Limits(max_steps=5))
    with pytest.raises(SandboxError, match=r"step limit exceeded \(5 "):
        env.execute("for i in range(10):\n    pass", {})


def test_engine_refuses_unsandboxed_environment_and_double_limits() -> None:
    with pytest.raises(TypeError):
        SandboxedScriptEngine(environment=TaskDataEnvironment())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SandboxedScriptEngine(environment=SandboxedEnvironment(), limits=FAST)


class FailingErp(SandboxedEnvironment):
    def call_service(self, context: dict[str, Any], **kwargs: Any) -> str:
        raise RuntimeError(f"ERP down for {kwargs['operation_name']}")


def test_call_service_error_is_a_task_error_naming_the_task() -> None:
    spec = spec_from(
        '<bpmn:startEvent id="s"/><bpmn:serviceTask id="svc" name="Post to ERP">'
        "<bpmn:extensionElements>"
        '<spiffworkflow:serviceTaskOperator id="erp/Post" resultVariable="journal">'
        "<spiffworkflow:parameters>"
        f'<spiffworkflow:parameter id="amount" type="float" value={quoteattr("qty * 2")}/>'
        "</spiffworkflow:parameters></spiffworkflow:serviceTaskOperator>"
        '</bpmn:extensionElements></bpmn:serviceTask><bpmn:endEvent id="e"/>'
        '<bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="svc"/>'
        '<bpmn:sequenceFlow id="f2" sourceRef="svc" targetRef="e"/>'
    )
    wf = BpmnWorkflow(spec, script_engine=SandboxedScriptEngine(environment=FailingErp()))
    wf.task_tree.data.update({"qty": 2})
    with pytest.raises(WorkflowTaskException) as info:
        wf.do_engine_steps()
    assert str(info.value).startswith(
        "service call in task 'Post to ERP' failed: RuntimeError: ERP down for erp/Post"
    )
    assert info.value.error_type == "RuntimeError"
    assert wf.get_next_task(spec_name="svc").state == TaskState.ERROR
