"""The script sandbox: every BPMN script and expression runs through it.

Script tasks, pre/post scripts, gateway conditions and timer, service-parameter, DMN and
message expressions are compiled with RestrictedPython's `compile_restricted` plus a stricter
policy (`_SandboxPolicy`), cached by source, and run against guarded builtins:

- no names or attributes starting with `_`, no frame/code/traceback attributes, no `class`,
  `yield`, `with`, `async`, `match`, `nonlocal`; no `open`, `eval`, `exec`, `exit`, ...; `import`
  only of the read-only stand-ins for `math`, `json`, `datetime` and `decimal`;
- operations that can make huge values (`+ * ** << %`, str.format/join/replace/..., range,
  str()/repr() of shared-reference structures, format widths) are size-checked before they run;
- the compiler puts `_tick_()` into every loop body, comprehension, def and lambda and every
  few statements: it counts steps and, every few milliseconds, checks the thread's CPU time and
  the process's RSS growth. That works in any thread (no signals); every `except`/`finally`
  body first re-raises a pending violation, so a script cannot catch a limit and carry on.

A broken rule or limit raises `SandboxError`, an ordinary Exception: SpiffWorkflow puts the task
in ERROR and raises `WorkflowTaskException` with `error_type == "SandboxError"`. Task data is
written back only when a script succeeds (it runs on a deep copy).

Residual risks of any in-process sandbox: one long C call cannot be interrupted (comparing or
hashing large shared-reference structures, `set()` of many ints with colliding hashes, sorting
a million references to one long string), and the RSS tripwire is process-wide. For hard
limits run scripts in worker processes with RLIMIT_AS and kill-on-timeout as well.
"""

from __future__ import annotations

import _string
import ast
import builtins
import copy
import datetime as _dt
import dis
import json as _json
import keyword
import logging
import math as _math
import operator
import os
import re
import string
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import (
    MAX_EMAX,
    MIN_EMIN,
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Context,
    Decimal,
    InvalidOperation,
)
from functools import lru_cache
from typing import Any, Literal, NoReturn

from RestrictedPython import compile_restricted_eval, compile_restricted_exec
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.transformer import (
    INSPECT_ATTRIBUTES,
    IOPERATOR_TO_STR,
    RestrictingNodeTransformer,
    copy_locations,
)
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.exceptions import SpiffWorkflowException

__all__ = [
    "DEFAULT_HELPERS",
    "Limits",
    "SandboxCompileError",
    "SandboxError",
    "SandboxedEnvironment",
    "SandboxedScriptEngine",
    "check_source",
]

log = logging.getLogger(__name__)

# PythonScriptEngine finds the failing line by looking for this file name in the traceback.
SCRIPT_FILENAME = "<string>"


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Limits for one execution (one script or one expression); override any by keyword."""

    max_steps: int = 1_000_000  # loop iterations + calls + callbacks from C (sorted key=, map)
    max_cpu_s: float = 2.0  # CPU time of the running thread
    max_rss_growth: int | None = 256 << 20  # process RSS growth in bytes; None = off
    max_seq: int = 1_000_000  # items made by range(), repetition, extend, zip, ...
    max_str: int = 1_000_000  # characters made by + * % join format str() repr() ...
    max_int_bits: int = 100_000  # size of int results of ** * <<
    max_width: int = 10_000  # width/precision in format specs, length of a format spec
    max_print: int = 64_000  # characters of print() output kept per execution
    max_data: int | None = 5_000_000  # estimated size of task data written back; None = off


DEFAULT_LIMITS = Limits()
# Task data nested deeper than this breaks deepcopy/JSON later: refuse it when writing it back.
MAX_DATA_DEPTH = 100


class SandboxError(Exception):
    """A script broke a sandbox rule or limit; the message says which."""


class SandboxCompileError(SandboxError, SyntaxError):
    """A script or expression refused before it ran; `lineno` is the offending line."""

    def __str__(self) -> str:
        # SyntaxError would append "(<string>, line N)"; the message names the line already.
        return str(self.msg)


class _Abort(BaseException):
    """Raised inside a script when a rule or limit is hit. A BaseException, so that
    `except Exception:` in a script cannot catch it (bare except/finally re-raise it)."""


# ---------------------------------------------------------------- per-execution state


def _open_statm() -> None:
    global _STATM, _PAGE
    try:
        _STATM = os.open("/proc/self/statm", os.O_RDONLY)
        _PAGE = os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: no RSS tripwire
        _STATM, _PAGE = None, 0


_STATM: int | None = None
_PAGE = 0
_open_statm()
# /proc/self was resolved when the file was opened: a forked child must open its own.
os.register_at_fork(after_in_child=_open_statm)


def _rss() -> int:
    assert _STATM is not None
    return int(os.pread(_STATM, 64, 0).split()[1]) * _PAGE


# CPU time and memory are checked when this much wall time has passed since the last check,
# at the next step: a loop of slow C calls overruns the limit by at most one call.
_CHECK_INTERVAL_S = 0.005
_clock = time.perf_counter  # ~50 ns; time.thread_time() is a system call (~0.6 us)


class _Run:
    """State of one execution; kept in a thread-local so limits work in any thread."""

    __slots__ = (
        "limits",
        "max_steps",
        "steps",
        "violation",
        "cpu0",
        "rss0",
        "next_check",
        "out",
        "out_len",
    )

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.max_steps = limits.max_steps
        self.steps = 0
        self.violation: str | None = None
        self.cpu0 = time.thread_time()
        self.rss0: int | None = None  # taken at the first check: most scripts never get there
        self.next_check = _clock() + _CHECK_INTERVAL_S
        self.out: list[str] = []
        self.out_len = 0

    def fail(self, message: str) -> NoReturn:
        if self.violation is None:
            self.violation = message
        raise _Abort(self.violation)

    def check(self, steps: int) -> bool:
        if self.violation is not None:
            raise _Abort(self.violation)
        lim = self.limits
        if steps > lim.max_steps:
            self.fail(
                f"step limit exceeded ({lim.max_steps:,} loop iterations/function calls): "
                "endless loop?"
            )
        now = _clock()
        if now >= self.next_check:
            self.next_check = now + _CHECK_INTERVAL_S
            if time.thread_time() - self.cpu0 > lim.max_cpu_s:
                self.fail(f"CPU time limit exceeded ({lim.max_cpu_s:g} s)")
            if lim.max_rss_growth is not None and _STATM is not None:
                if self.rss0 is None:
                    self.rss0 = _rss()
                elif _rss() - self.rss0 > lim.max_rss_growth:
                    self.fail(
                        "memory limit exceeded (process memory grew by more than "
                        f"{lim.max_rss_growth >> 20} MiB)"
                    )
        return True

    def write(self, text: str) -> bool:
        """Keep print() output up to max_print; False once full."""
        room = self.limits.max_print - self.out_len
        if room <= 0:
            return False
        piece = text[:room]
        self.out.append(piece)
        self.out_len += len(piece)
        return True


class _TLS(threading.local):
    run: _Run | None = None


_tls = _TLS()


def _limits() -> Limits:
    run = _tls.run
    return run.limits if run is not None else DEFAULT_LIMITS


def _violation(message: str) -> NoReturn:
    """Refuse an operation. Inside an execution the refusal is sticky: handlers re-raise it."""
    run = _tls.run
    if run is None:  # guard called by application code outside an execution
        raise SandboxError(message)
    run.fail(message)


def _tick_() -> bool:
    """Injected into every loop body, comprehension, def and lambda: counts a step, checks CPU
    and memory every few milliseconds, re-raises a pending violation."""
    run = _tls.run
    if run is None:  # e.g. a lambda kept by application code and called later
        raise SandboxError("script code cannot run outside a sandboxed execution")
    run.steps = steps = run.steps + 1
    if steps <= run.max_steps and run.violation is None and _clock() < run.next_check:
        return True  # the common path: one Python frame
    return run.check(steps)


def _handler_enter_() -> None:
    """Injected as the first statement of every except/finally body: once a rule or limit was
    hit, no handler code runs, so a script cannot catch the abort and carry on."""
    run = _tls.run
    if run is not None and run.violation is not None:
        raise _Abort(run.violation)


def _counted(func: Any) -> Any:
    """Wrap a callable handed to C code (sorted key=, map, ...): each call counts as a step, so
    C-level loops over script callbacks stay within the step/CPU/memory limits."""
    if func is None:
        return None
    code = getattr(func, "__code__", None)
    if code is not None and code.co_filename == SCRIPT_FILENAME:
        return func  # script lambdas and defs tick by themselves

    def counted(*args: Any, **kwargs: Any) -> Any:
        run = _tls.run
        if run is not None:
            run.steps += 1
            run.check(run.steps)
        return func(*args, **kwargs)

    return counted


# ---------------------------------------------------------------- size estimates

_SCALARS = frozenset(
    {int, float, bool, type(None), complex, Decimal, _dt.datetime, _dt.date, _dt.time}
    | {_dt.timedelta, _dt.timezone}
)
_TEXT = frozenset({str, bytes})
_SEQ = frozenset({str, bytes, list, tuple})
_INTS = frozenset({int, bool})
_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
_ITERABLES = frozenset({list, tuple, set, frozenset, *_VIEWS})


def _measure(obj: Any, budget: float, data: bool = False) -> float:
    """Estimated characters of str()/repr()/JSON of `obj`, counting shared references every
    time they occur (so `[[x] * 1000] * 1000` is big); stops once over `budget` (which also
    ends cycles). With `data`, also refuse what task data cannot hold: nesting deeper than
    MAX_DATA_DEPTH (or circular) and iterators (generators, map, zip ...)."""
    size = 0.0
    stack: list[tuple[Any, int]] = [(obj, 0)]
    seen: set[int] | None = set() if budget == float("inf") else None
    while stack:
        o, depth = stack.pop()
        t = type(o)
        if t is str or t is bytes:
            size += len(o) + 2
        elif t in _SCALARS:
            size += 8 if t is not Decimal or not o.is_finite() else 8 + abs(o.adjusted())
        elif t is dict or t in _ITERABLES or t is slice or isinstance(o, BaseException):
            if data and depth >= MAX_DATA_DEPTH:
                raise SandboxError(
                    f"task data nested more than {MAX_DATA_DEPTH} levels deep (or circular)"
                )
            if seen is not None:  # no size limit: visit each container once
                if id(o) in seen:
                    continue
                seen.add(id(o))
            if t is dict:
                size += 2 + 4 * len(o)
                items: Any = [*o.keys(), *o.values()] if size <= budget else ()
            elif t is slice:
                size += 20
                items = (o.start, o.stop, o.step)
            elif t in _ITERABLES:
                size += 2 + 2 * len(o)
                items = o if size <= budget else ()
            else:
                size += 20
                items = o.args
            stack.extend((item, depth + 1) for item in items)
        elif data and isinstance(o, Iterator):
            raise SandboxError(
                f"a {t.__name__} object cannot be stored in task data; make a list of it"
            )
        else:
            size += 8
        if size > budget:
            return size
    return size


def _check_render(obj: Any) -> None:
    t = type(obj)
    if t is str or t is bytes or (t in _SCALARS and t is not Decimal):
        return
    lim = _limits()
    if _measure(obj, lim.max_str) > lim.max_str:
        _violation(f"{t.__name__} too large to convert to text (limit {lim.max_str:,} characters)")


def _safe_arg(arg: Any, limit: int = 2000) -> Any:
    """Exception arguments leaving the sandbox are bounded, so logging them cannot blow up."""
    t = type(arg)
    if t is str:
        return arg if len(arg) <= limit else arg[:limit] + "..."
    if (t in _SCALARS and t is not Decimal) or _measure(arg, limit) <= limit:
        return arg
    return f"<{t.__name__} too large to show>"


def _check_len(obj: Any) -> Any:
    lim = _limits()
    cap = lim.max_str if type(obj) in _TEXT else lim.max_seq
    if len(obj) > cap:
        _violation(f"{type(obj).__name__} result too large ({len(obj):,} > limit {cap:,})")
    return obj


def _check_decimal_int(value: Any) -> None:
    # int(Decimal('1e999999')) runs for half a minute inside C: refuse before it starts.
    if isinstance(value, Decimal) and value.is_finite() and value.adjusted() > 4300:
        _violation("Decimal too large to convert to int (more than 4300 digits)")


_DIGITS = re.compile(r"\d+")
_STRFTIME_WIDTH = re.compile(r"%[-_0^#]*(\d+)")


def _check_spec(value: Any, spec: Any) -> None:
    """Format specs: bounded length and width/precision (datetime specs are strftime formats)."""
    if type(spec) is not str or not spec:
        return
    lim = _limits()
    if len(spec) > lim.max_width:
        _violation(f"format spec too long ({len(spec):,} > limit {lim.max_width:,} characters)")
    if isinstance(value, _dt.date | _dt.time):
        _check_strftime(spec)
        return
    for m in _DIGITS.finditer(spec):
        if len(m.group()) > 6 or int(m.group()) > lim.max_width:
            _violation(
                f"format width/precision {m.group()[:12]} too large (limit {lim.max_width:,})"
            )


def _check_strftime(fmt: Any) -> None:
    # glibc strftime accepts widths ('%10000Y') and Python retries with ever larger buffers.
    if type(fmt) is not str:
        return
    lim = _limits()
    widths = [int(w) if len(w) <= 6 else lim.max_width + 1 for w in _STRFTIME_WIDTH.findall(fmt)]
    if len(fmt) > lim.max_width or sum(widths) > lim.max_width:
        _violation(f"date format too long or too wide (limit {lim.max_width:,})")


# ---------------------------------------------------------------- operator guards


def _add_(a: Any, b: Any) -> Any:
    result = a + b
    if type(result) in _SEQ:
        _check_len(result)  # at most twice the limit was built: fine
    return result


def _check_repeat(seq: Any, n: int) -> None:
    if n > 0:
        lim = _limits()
        cap = lim.max_str if type(seq) in _TEXT else lim.max_seq
        if len(seq) * n > cap:
            _violation(
                f"{type(seq).__name__} repetition would make {len(seq) * n:,} items (limit {cap:,})"
            )


def _check_mul(a: Any, b: Any) -> None:
    ta, tb = type(a), type(b)
    if ta in _INTS and tb in _INTS:
        if a.bit_length() + b.bit_length() > _limits().max_int_bits:
            _violation(f"integer result too large (limit {_limits().max_int_bits:,} bits)")
    elif ta in _SEQ and tb in _INTS:
        _check_repeat(a, b)
    elif tb in _SEQ and ta in _INTS:
        _check_repeat(b, a)


def _mul_(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is float or tb is float:
        return a * b  # the common case, no check needed
    _check_mul(a, b)
    return a * b


def _pow_(a: Any, b: Any, mod: Any = None) -> Any:
    if type(a) in _INTS and type(b) in _INTS:
        if mod is not None:
            bits = mod.bit_length() if type(mod) in _INTS else 0
            if max(b.bit_length(), bits) > 4096:
                _violation("pow(a, b, mod) with operands over 4096 bits is not allowed")
        elif b > 1 and a not in (0, 1, -1) and b * _math.log2(abs(a)) > _limits().max_int_bits:
            _violation(f"integer power too large (limit {_limits().max_int_bits:,} bits)")
    return pow(a, b) if mod is None else pow(a, b, mod)


def _lshift_(a: Any, b: Any) -> Any:
    if type(a) in _INTS and type(b) in _INTS and b > 0 and a:
        if a.bit_length() + b > _limits().max_int_bits:
            _violation(f"shift result too large (limit {_limits().max_int_bits:,} bits)")
    return a << b


_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def _mod_(a: Any, b: Any) -> Any:
    t = type(a)
    if t is str or t is bytes:  # printf-style formatting
        fmt = a if t is str else a.decode("latin-1")
        if "%" in fmt:
            lim = _limits()
            total = 0
            for m in _PERCENT.finditer(fmt):
                for number in m.group(1, 2):
                    if number == "*":
                        _violation("'*' width/precision in % formatting is not allowed")
                    if number:
                        if len(number) > 6 or int(number) > lim.max_width:
                            _violation(
                                f"% format width/precision {number[:12]} too large "
                                f"(limit {lim.max_width:,})"
                            )
                        total += int(number)
            if total > lim.max_str:
                _violation("% format widths too large in total")
            _check_render(b)
            for value in b if type(b) is tuple else (b,):
                _check_decimal_int(value)
    return a % b


_IOPS = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "|=": operator.ior,
    "^=": operator.ixor,
    "&=": operator.iand,
    "@=": operator.imatmul,
}


def _iadd(x: Any, y: Any) -> Any:
    result = operator.iadd(x, y)  # lists grow in place: at most twice the limit, then refused
    if type(result) in _SEQ:
        _check_len(result)
    return result


def _imul(x: Any, y: Any) -> Any:
    _check_mul(x, y)
    return operator.imul(x, y)


_CHECKED_IOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+=": _iadd,
    "*=": _imul,
    "**=": _pow_,
    "<<=": _lshift_,
    "%=": _mod_,
}


def _inplacevar_(op: str, x: Any, y: Any) -> Any:
    checked = _CHECKED_IOPS.get(op)
    if checked is not None:
        return checked(x, y)
    return _IOPS[op](x, y)


def _augitem_(obj: Any, key: Any, op: str, value: Any) -> None:
    """`obj[key] op= value`; RestrictedPython refuses it, the policy rewrites it to this."""
    _write_(obj)[key] = _inplacevar_(op, obj[key], value)


def _format_(value: Any, conversion: int = -1, spec: Any = "") -> str:
    """f-string fields: `f'{x!r:>10}'` becomes `_format_(x, ord('r'), '>10')`."""
    if conversion == 115:  # !s
        value = _safe_str(value)
    elif conversion == 114:  # !r
        value = _safe_repr(value)
    elif conversion == 97:  # !a
        value = _safe_ascii(value)
    else:
        _check_render(value)
    _check_spec(value, spec)
    return format(value, spec)


# ---------------------------------------------------------------- method wrappers

_BLOCKED_PREFIXES = ("_", "f_", "gi_", "cr_", "ag_", "tb_", "co_")
_BLOCKED_NAMES = frozenset(INSPECT_ATTRIBUTES) | {"mro", "func_globals", "func_code"}


class _SafeFormatter(string.Formatter):
    """str.format / format_map with guarded field lookup ('{0.__class__}' is refused) and
    bounded widths and total size."""

    def __init__(self) -> None:
        self.total = 0

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        first, rest = _string.formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attr, key in rest:
            obj = _getattr_(obj, key) if is_attr else obj[key]
        return obj, first

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is None:
            return value
        if conversion not in ("s", "r", "a"):
            raise ValueError(f"Unknown conversion specifier {conversion}")
        return _format_(value, ord(conversion), "")

    def format_field(self, value: Any, format_spec: str) -> str:
        out = _format_(value, -1, format_spec)
        self.total += len(out)
        if self.total > _limits().max_str:
            _violation(f"str.format() result too large (limit {_limits().max_str:,})")
        return out


def _s_format(s: str, *args: Any, **kwargs: Any) -> str:
    return _SafeFormatter().vformat(s, args, kwargs)


def _s_format_map(s: str, mapping: Any) -> str:
    return _SafeFormatter().vformat(s, (), mapping)


def _s_join(s: Any, iterable: Any) -> Any:
    items = iterable if type(iterable) in (list, tuple) else list(iterable)
    try:
        total = sum(map(len, items)) + len(s) * max(len(items) - 1, 0)
    except TypeError:
        return s.join(items)  # raises the usual TypeError
    if total > _limits().max_str:
        _violation(f"join() result too large ({total:,} > limit {_limits().max_str:,})")
    return s.join(items)


def _s_replace(s: Any, old: Any, new: Any, count: int = -1) -> Any:
    n = (len(s) + 1) if not old else s.count(old)
    if count >= 0:
        n = min(n, count)
    if len(s) + n * (len(new) - len(old)) > _limits().max_str:
        _violation(f"replace() result too large (limit {_limits().max_str:,})")
    return s.replace(old, new, count)


def _pad(name: str) -> Callable[..., Any]:
    def pad(s: Any, width: Any, *rest: Any) -> Any:
        if type(width) in _INTS and width > _limits().max_str:
            _violation(f"{name}() width too large (limit {_limits().max_str:,})")
        return getattr(s, name)(width, *rest)

    return pad


def _s_expandtabs(s: Any, tabsize: int = 8) -> Any:
    tab = "\t" if type(s) is str else b"\t"
    if type(tabsize) in _INTS and len(s) + s.count(tab) * tabsize > _limits().max_str:
        _violation("expandtabs() result too large")
    return s.expandtabs(tabsize)


def _s_translate(s: Any, table: Any) -> Any:
    if type(s) is str and isinstance(table, dict):
        longest = max((len(v) for v in table.values() if type(v) is str), default=1)
        if len(s) * max(longest, 1) > _limits().max_str:
            _violation("translate() result too large")
    return s.translate(table)


def _l_extend(lst: list[Any], iterable: Any) -> None:
    items = iterable if hasattr(iterable, "__len__") else list(iterable)
    if len(lst) + len(items) > _limits().max_seq:
        _violation(f"list.extend() result too large (limit {_limits().max_seq:,})")
    lst.extend(items)


def _l_sort(lst: list[Any], *, key: Any = None, reverse: bool = False) -> None:
    lst.sort(key=_counted(key), reverse=reverse)


def _i_to_bytes(i: int, length: Any = 1, *args: Any, **kwargs: Any) -> bytes:
    if type(length) in _INTS and length > _limits().max_str:
        _violation("int.to_bytes() length too large")
    return i.to_bytes(length, *args, **kwargs)


def _d_as_integer_ratio(d: Decimal) -> tuple[int, int]:
    _check_decimal_int(d)
    return d.as_integer_ratio()


def _check_many(parts: tuple[Any, ...], what: str) -> None:
    """Many sized arguments processed in one C call (zip(*rows), set.union(*lists)) multiply
    the work: bound its total, which a loop in the script would have counted step by step."""
    if len(parts) > 8:
        total = sum(len(p) if hasattr(p, "__len__") else 0 for p in parts) + len(parts)
        if total > _limits().max_seq:
            _violation(f"{what}: arguments too large in total (limit {_limits().max_seq:,} items)")


def _set_method(name: str) -> Callable[..., Any]:
    def method(s: Any, *others: Any) -> Any:
        _check_many(others, f"{type(s).__name__}.{name}()")
        return getattr(s, name)(*others)

    return method


def _strftime(d: Any, fmt: Any) -> str:
    _check_strftime(fmt)
    return d.strftime(fmt)


def _strptime(text: Any, fmt: Any) -> _dt.datetime:
    _check_strftime(fmt)  # a long format also compiles a long regular expression
    return _dt.datetime.strptime(text, fmt)


_TEXT_METHODS = {
    "join": _s_join,
    "replace": _s_replace,
    "ljust": _pad("ljust"),
    "rjust": _pad("rjust"),
    "center": _pad("center"),
    "zfill": _pad("zfill"),
    "expandtabs": _s_expandtabs,
    "translate": _s_translate,
}
_SET_METHODS = {
    n: _set_method(n)
    for n in ("union", "intersection", "difference", "update")
    + ("intersection_update", "difference_update")
}
# type -> attribute -> replacement taking the instance first. Reached through the type of the
# instance, so the class-level form (str.join(sep, parts)) must be refused: see _getattr_.
_METHOD_WRAPPERS: dict[type, dict[str, Callable[..., Any]]] = {
    str: {**_TEXT_METHODS, "format": _s_format, "format_map": _s_format_map},
    bytes: _TEXT_METHODS,
    list: {"extend": _l_extend, "sort": _l_sort},
    set: _SET_METHODS,
    frozenset: {k: v for k, v in _SET_METHODS.items() if not k.endswith("update")},
    Decimal: {"as_integer_ratio": _d_as_integer_ratio},
    int: {"to_bytes": _i_to_bytes},
    bool: {"to_bytes": _i_to_bytes},
    _dt.datetime: {"strftime": _strftime, "strptime": lambda d, t, f: _strptime(t, f)},
    _dt.date: {"strftime": _strftime},
    _dt.time: {"strftime": _strftime},
}
_CLASS_WRAPPERS: dict[tuple[type, str], Callable[..., Any]] = {
    (_dt.datetime, "strptime"): _strptime,
}


# ---------------------------------------------------------------- attribute / item / write guards


def _getattr_(obj: Any, name: Any, *default: Any) -> Any:
    """`obj.name`, getattr() and hasattr(): no `_` names or frame/code attributes, and the
    size-checked replacements of methods that can build huge values."""
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    if name.startswith(_BLOCKED_PREFIXES) or name in _BLOCKED_NAMES:
        _violation(f"access to attribute {name!r} is not allowed in scripts")
    wrappers = _METHOD_WRAPPERS.get(type(obj))
    if wrappers is not None:
        wrapper = wrappers.get(name)
        if wrapper is not None:
            return lambda *args, **kwargs: wrapper(obj, *args, **kwargs)
    elif isinstance(obj, type):
        cls = _REAL_TYPES.get(obj, obj)
        wrapper = _CLASS_WRAPPERS.get((cls, name))
        if wrapper is not None:
            return wrapper
        if name in _METHOD_WRAPPERS.get(cls, ()):
            _violation(f"{cls.__name__}.{name}() must be called on an instance in scripts")
    try:
        return getattr(obj, name, *default)
    except AttributeError as exc:
        # A fresh error: AttributeError.obj may point to an object the script must not get.
        raise AttributeError(str(exc)) from None


_getitem_ = operator.getitem  # C-level item access: scripts only reach data and helpers


class _ListWriter:
    """What `_write_` returns for lists: slice assignment is size-checked."""

    __slots__ = ("ob",)

    def __init__(self, ob: list[Any]) -> None:
        object.__setattr__(self, "ob", ob)

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(key, slice):
            value = value if type(value) in (list, tuple) else list(value)
            if len(self.ob) + len(value) > _limits().max_seq:
                _violation(f"list slice assignment too large (limit {_limits().max_seq:,})")
        self.ob[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.ob[key]

    def __setattr__(self, name: str, value: Any) -> None:
        _violation("cannot set attributes on a list")

    __delattr__ = __setattr__  # type: ignore[assignment]


def _type_name(obj: Any) -> str:
    """The type name for messages, without the sandbox's internal class names."""
    if type(obj) is _SafeModule:
        return "module"
    return "type" if isinstance(obj, type) else type(obj).__name__


def _write_(ob: Any) -> Any:
    """Target of `x[k] = v`, `del x[k]`, `x.a = v`: only dicts and lists can be changed."""
    t = type(ob)
    if t is dict:
        return ob
    if t is list:
        return _ListWriter(ob)
    _violation(f"cannot modify {_type_name(ob)} objects in scripts (only dict and list)")


def _apply_(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Calls with *args/**kwargs: many large star-arguments are bounded like zip()."""
    _check_many(args, "call with *arguments")
    return func(*args, **kwargs)


class _PrintCollector:
    """print() in scripts goes to the execution's buffer (then to print_sink), not stdout."""

    def __init__(self, _getattr_: Any = None) -> None:
        pass

    def _call_print(
        self, *objects: Any, sep: Any = " ", end: Any = "\n", file: Any = None, flush: Any = False
    ) -> None:
        if file is not None:
            _violation("print(file=...) is not allowed in scripts")
        run = _tls.run
        if run is None:
            return
        sep = " " if sep is None else _safe_str(sep)
        for i, obj in enumerate(objects):
            # piece by piece: print(*many_big_strings) must not build one huge string
            if (i and not run.write(sep)) or not run.write(_safe_str(obj)):
                return
        run.write("\n" if end is None else _safe_str(end))

    def __call__(self) -> str:  # RestrictedPython's `printed` variable
        run = _tls.run
        return "".join(run.out) if run is not None else ""


_GUARDS: dict[str, Any] = {
    "_getattr_": _getattr_,
    "_getitem_": _getitem_,
    "_write_": _write_,
    "_getiter_": iter,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
    "_inplacevar_": _inplacevar_,
    "_apply_": _apply_,
    "_print_": _PrintCollector,
    "_add_": _add_,
    "_mul_": _mul_,
    "_pow_": _pow_,
    "_lshift_": _lshift_,
    "_mod_": _mod_,
    "_augitem_": _augitem_,
    "_format_": _format_,
    "_handler_enter_": _handler_enter_,
    "_tick_": _tick_,
}
_GUARD_NAMES = frozenset(_GUARDS) | {"__builtins__"}


# ---------------------------------------------------------------- builtins


class _ProxyMeta(type):
    """Stand-ins for `int` and `str`: isinstance(x, int) and type(x) is int still work, calls
    are checked (int(Decimal('1e999999')), str(huge_structure))."""

    _real: type
    _factory: Callable[..., Any]

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, cls._real)

    def __subclasscheck__(cls, sub: Any) -> bool:
        return issubclass(sub, cls._real)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._factory(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        try:
            return getattr(cls._real, name)
        except AttributeError:
            # not `raise ... from` the original: its .obj would be the real type
            raise AttributeError(
                f"type object {cls.__name__!r} has no attribute {name!r}"
            ) from None

    def __repr__(cls) -> str:
        return repr(cls._real)


def _safe_int(*args: Any, **kwargs: Any) -> int:
    if args:
        _check_decimal_int(args[0])
    return int(*args, **kwargs)


def _safe_str(*args: Any, **kwargs: Any) -> str:
    if len(args) == 1 and not kwargs:
        _check_render(args[0])
    return str(*args, **kwargs)


def _safe_repr(obj: Any) -> str:
    _check_render(obj)
    return repr(obj)


def _safe_ascii(obj: Any) -> str:
    _check_render(obj)
    return ascii(obj)


def _int_from_bytes(data: Any, *args: Any, **kwargs: Any) -> int:
    if len(data) * 8 > _limits().max_int_bits:
        _violation("int.from_bytes() result too large")
    return int.from_bytes(data, *args, **kwargs)


_SafeInt = _ProxyMeta(
    "int", (), {"_real": int, "_factory": staticmethod(_safe_int), "from_bytes": _int_from_bytes}
)
_SafeStr = _ProxyMeta("str", (), {"_real": str, "_factory": staticmethod(_safe_str)})
_REAL_TYPES: dict[Any, type] = {_SafeInt: int, _SafeStr: str}


def _safe_range(*args: Any) -> range:
    try:
        r = range(*args)
        n = len(r)
    except OverflowError:
        n = sys.maxsize
    if n > _limits().max_seq:
        _violation(f"range() too large ({n:,} items > limit {_limits().max_seq:,})")
    return r


def _safe_round(number: Any, ndigits: Any = None) -> Any:
    if ndigits is None:
        _check_decimal_int(number)
        return round(number)
    if type(ndigits) in _INTS and not -10_000 <= ndigits <= 10_000:
        _violation("round() ndigits out of range (-10000 to 10000)")
    return round(number, ndigits)


def _safe_sum(iterable: Any, start: Any = 0) -> Any:
    if type(start) in (list, tuple):  # sum(lists, []) is quadratic in C: concatenate linearly
        out = list(start)
        for x in iterable:
            if type(x) is not type(start):
                raise TypeError(
                    f"can only concatenate {type(start).__name__} to {type(start).__name__}"
                )
            out.extend(x)
            if len(out) > _limits().max_seq:
                _violation(f"sum() of sequences too large (limit {_limits().max_seq:,})")
        return out if type(start) is list else tuple(out)
    return sum(iterable, start)


def _safe_sorted(iterable: Any, *, key: Any = None, reverse: bool = False) -> list[Any]:
    return sorted(iterable, key=_counted(key), reverse=reverse)


def _safe_min(*args: Any, **kwargs: Any) -> Any:
    if "key" in kwargs:
        kwargs["key"] = _counted(kwargs["key"])
    return min(*args, **kwargs)


def _safe_max(*args: Any, **kwargs: Any) -> Any:
    if "key" in kwargs:
        kwargs["key"] = _counted(kwargs["key"])
    return max(*args, **kwargs)


def _safe_map(func: Any, *iterables: Any) -> Any:
    return map(_counted(func), *iterables)


def _safe_filter(func: Any, iterable: Any) -> Any:
    return filter(_counted(func), iterable)


def _safe_zip(*iterables: Any, strict: bool = False) -> Any:
    _check_many(iterables, "zip()")  # list(zip(big, big, ...)) builds len(big) * n items
    return zip(*iterables, strict=strict)


def _safe_iter(obj: Any, *sentinel: Any) -> Any:
    if sentinel:  # iter(callable, sentinel) can be an endless C-level iterator
        _violation("iter(callable, sentinel) is not allowed in scripts")
    return iter(obj)


def _safe_format(value: Any, spec: Any = "") -> str:
    return _format_(value, -1, spec)


def _safe_getattr(obj: Any, name: Any, *default: Any) -> Any:
    return _getattr_(obj, name, *default)


def _safe_hasattr(obj: Any, name: Any) -> bool:
    try:
        _getattr_(obj, name)
    except AttributeError:
        return False
    return True


_TYPE_NAMES: dict[type, Any] = {
    t: t
    for t in (float, bool, list, dict, tuple, set, frozenset, complex, Decimal, type(None))
    + (_dt.datetime, _dt.date, _dt.time, _dt.timedelta)
}
_TYPE_NAMES.update({int: _SafeInt, str: _SafeStr})


def _safe_type(*args: Any) -> Any:
    """type(x) for data values (type(x) is list, type(n) == int). Real type objects would
    allow type(int)('X', (), {...}): class creation, code running outside the sandbox."""
    if len(args) != 1:
        _violation("type() with 3 arguments (class creation) is not allowed in scripts")
    t = _TYPE_NAMES.get(type(args[0]))
    if t is None:
        _violation(f"type() is only available for data values, not {_type_name(args[0])}")
    return t


def _floor(x: Any) -> Any:
    _check_decimal_int(x)
    return _math.floor(x)


def _ceil(x: Any) -> Any:
    _check_decimal_int(x)
    return _math.ceil(x)


def _trunc(x: Any) -> Any:
    _check_decimal_int(x)
    return _math.trunc(x)


def _json_dumps(
    obj: Any,
    *,
    indent: Any = None,
    sort_keys: bool = False,
    separators: Any = None,
    ensure_ascii: bool = True,
    default: Any = None,
) -> str:
    if indent is not None and (len(indent) if isinstance(indent, str) else indent) > 16:
        _violation("json.dumps() indent too large (limit 16)")
    if separators is not None and sum(len(s) for s in separators) > 16:
        _violation("json.dumps() separators too long")
    _check_render(obj)
    if default is not None:
        user_default = _counted(default)

        def default(o: Any) -> Any:  # its results are serialized too: check them
            result = user_default(o)
            _check_render(result)
            return result

    out = _json.dumps(
        obj,
        indent=indent,
        sort_keys=sort_keys,
        separators=separators,
        ensure_ascii=ensure_ascii,
        default=default,
    )
    return _check_len(out)


def _json_loads(s: Any, *, parse_float: Any = None) -> Any:
    if parse_float not in (None, float, Decimal):
        raise TypeError("json.loads(parse_float=...) accepts only float or Decimal")
    return _json.loads(s, parse_float=parse_float)


class _SafeModule:
    """Read-only stand-in for a module. Deliberately without __name__: `from json import
    decoder` would otherwise fall back to sys.modules['json.decoder']."""

    __slots__ = ("_label", "_attrs")

    def __init__(self, label: str, attrs: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_label", label)
        object.__setattr__(self, "_attrs", dict(attrs))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._attrs[name]
        except KeyError:
            pass
        if name.startswith("_"):  # protocol probes (copy, pickle): never from scripts
            raise AttributeError(name)
        _violation(
            f"{name!r} is not available from {self._label!r} in scripts "
            f"(available: {', '.join(sorted(self._attrs))})"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"{self._label!r} is read-only in scripts")

    def __repr__(self) -> str:
        return f"<sandbox module {self._label}>"


_MATH_NAMES = (
    "acos acosh asin asinh atan atan2 atanh copysign cos cosh degrees dist e erf exp expm1 "
    "fabs fmod frexp fsum gcd hypot inf isclose isfinite isinf isnan isqrt ldexp log log10 "
    "log1p log2 modf nan pi pow radians remainder sin sinh sqrt tan tanh tau"
).split()
# Not exposed: factorial, comb, perm, prod, lcm (huge ints computed in C, not interruptible).
_MODULES: dict[str, _SafeModule] = {
    "math": _SafeModule(
        "math",
        {**{n: getattr(_math, n) for n in _MATH_NAMES}, "floor": _floor, "ceil": _ceil}
        | {"trunc": _trunc},
    ),
    "json": _SafeModule(
        "json",
        {"dumps": _json_dumps, "loads": _json_loads, "JSONDecodeError": _json.JSONDecodeError},
    ),
    "datetime": _SafeModule(
        "datetime",
        {
            "datetime": _dt.datetime,
            "date": _dt.date,
            "time": _dt.time,
            "timedelta": _dt.timedelta,
            "timezone": _dt.timezone,
        },
    ),
    "decimal": _SafeModule(
        "decimal",
        {
            "Decimal": Decimal,
            "InvalidOperation": InvalidOperation,
            "ROUND_HALF_UP": ROUND_HALF_UP,
            "ROUND_HALF_EVEN": ROUND_HALF_EVEN,
            "ROUND_UP": ROUND_UP,
            "ROUND_DOWN": ROUND_DOWN,
            "ROUND_FLOOR": ROUND_FLOOR,
            "ROUND_CEILING": ROUND_CEILING,
        },
    ),
}
_ALLOWED_IMPORTS = ", ".join(sorted(_MODULES))
# Modules C code may import through the script's __import__ (see _safe_import).
_C_IMPORTS = frozenset({"time", "_strptime"})


def _safe_import(
    name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
) -> Any:
    if type(fromlist) is list:
        # C code (datetime.strftime -> time, strptime -> _strptime) imports through the
        # __import__ of the running frame's builtins with a list fromlist, and reads the module
        # from sys.modules itself: the script never gets it. `import` statements pass a tuple
        # or None. Allow only what cannot have import side effects.
        if level == 0 and (name in sys.modules or name in _C_IMPORTS):
            return builtins.__import__(name, globals, locals, fromlist, level)
    elif level == 0 and name in _MODULES:
        return _MODULES[name]
    elif level:
        _violation("relative imports are not allowed in scripts")
    _violation(f"import of {name!r} is not allowed in scripts (available: {_ALLOWED_IMPORTS})")


def _forbidden(name: str) -> Callable[..., NoReturn]:
    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        _violation(f"{name}() is not available in scripts")

    refuse.__name__ = name
    return refuse


_FORBIDDEN = (
    "open input breakpoint help exit quit vars globals locals dir compile eval exec object "
    "setattr delattr memoryview bytearray bytes id hash super classmethod staticmethod property "
    "copyright credits license aiter anext"
).split()
_EXCEPTIONS = (
    "ArithmeticError AssertionError AttributeError Exception IndexError KeyError LookupError "
    "NameError NotImplementedError OverflowError RecursionError RuntimeError StopIteration "
    "TypeError UnicodeError ValueError ZeroDivisionError"
).split()
_PLAIN_BUILTINS = (
    "abs all any bin bool callable chr complex dict divmod enumerate float frozenset hex "
    "isinstance issubclass len list next oct ord reversed set slice tuple"
).split()

_SAFE_BUILTINS: dict[str, Any] = {
    **{n: _forbidden(n) for n in _FORBIDDEN},
    **{n: getattr(builtins, n) for n in _EXCEPTIONS + _PLAIN_BUILTINS},
    "int": _SafeInt,
    "str": _SafeStr,
    "repr": _safe_repr,
    "ascii": _safe_ascii,
    "format": _safe_format,
    "range": _safe_range,
    "round": _safe_round,
    "pow": _pow_,
    "sum": _safe_sum,
    "sorted": _safe_sorted,
    "min": _safe_min,
    "max": _safe_max,
    "map": _safe_map,
    "filter": _safe_filter,
    "zip": _safe_zip,
    "iter": _safe_iter,
    "getattr": _safe_getattr,
    "hasattr": _safe_hasattr,
    "type": _safe_type,
    "__import__": _safe_import,
}


# ---------------------------------------------------------------- helpers


def _to_decimal(x: Any, what: str) -> Decimal:
    if isinstance(x, bool) or not isinstance(x, int | float | Decimal):
        raise TypeError(f"{what} must be a number, not {type(x).__name__}")
    # repr() of a float is its shortest round-trip form: 2.675 -> Decimal('2.675'), not
    # 2.67499999999999982236431605997495353221893310546875.
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(x)


def _result(value: Decimal, *inputs: Any) -> Any:
    """Decimal if any input was a Decimal, else float if any was a float, else int."""
    if any(isinstance(i, Decimal) for i in inputs):
        return value
    if any(isinstance(i, float) for i in inputs):
        return float(value)
    return int(value)


def _context(digits: int, rounding: str, what: str) -> Context:
    if digits > 10_000:
        raise ValueError(f"{what}: number too large for this precision")
    return Context(prec=max(digits, 1), rounding=rounding, Emax=MAX_EMAX, Emin=MIN_EMIN)


def round_half_up(x: int | float | Decimal, ndigits: int = 0) -> int | float | Decimal:
    """Commercial rounding: halves round away from zero (2.675 -> 2.68, -0.5 -> -1).

    Computed in Decimal, so float input is rounded by its shortest decimal representation;
    returns a float for float input, a Decimal for Decimal input and an int for int input.
    """
    if type(ndigits) is not int or not -100 <= ndigits <= 100:
        raise ValueError("round_half_up() ndigits must be a whole number from -100 to 100")
    if isinstance(x, int) and not isinstance(x, bool) and ndigits >= 0:
        return x
    d = _to_decimal(x, "round_half_up() value")
    if not d.is_finite():
        return x
    ctx = _context(max(d.adjusted(), 0) + ndigits + 3, ROUND_HALF_UP, "round_half_up()")
    return _result(d.quantize(Decimal(1).scaleb(-ndigits), context=ctx), x)


def _to_multiple(x: Any, step: Any, rounding: str, name: str) -> Any:
    dx, ds = _to_decimal(x, f"{name}() value"), _to_decimal(step, f"{name}() step")
    if not ds.is_finite() or ds <= 0:
        raise ValueError(f"{name}() step must be a positive number, not {step!r}")
    if not dx.is_finite():
        return x
    if isinstance(x, int) and isinstance(step, int):
        q = -(-x // step) if rounding == ROUND_CEILING else x // step
        return q * step
    # Enough digits for the whole quotient and the product q * step; directed rounding of the
    # quotient cannot move it past the integer that ceil/floor pick.
    digits = max(dx.adjusted() - ds.adjusted() + 2, 0) + len(ds.as_tuple().digits) + 2
    ctx = _context(digits, rounding, f"{name}()")
    q = ctx.divide(dx, ds).to_integral_value(rounding=rounding)
    return _result(ctx.multiply(q, ds), x, step)


def round_up(x: int | float | Decimal, step: int | float | Decimal) -> int | float | Decimal:
    """The smallest multiple of `step` that is >= x: round_up(113, 50) == 150,
    round_up(0.31, 0.1) == 0.4 (exact, via Decimal). Type as for round_half_up."""
    return _to_multiple(x, step, ROUND_CEILING, "round_up")


def round_down(x: int | float | Decimal, step: int | float | Decimal) -> int | float | Decimal:
    """The largest multiple of `step` that is <= x: round_down(113, 50) == 100."""
    return _to_multiple(x, step, ROUND_FLOOR, "round_down")


DEFAULT_HELPERS: Mapping[str, Any] = types.MappingProxyType(
    {
        "datetime": _dt.datetime,
        "date": _dt.date,
        "timedelta": _dt.timedelta,
        "timezone": _dt.timezone,
        "Decimal": Decimal,
        "math": _MODULES["math"],
        "json": _MODULES["json"],
        "round_half_up": round_half_up,
        "round_up": round_up,
        "round_down": round_down,
    }
)


# ---------------------------------------------------------------- compile policy

_BINOP_GUARDS = {
    ast.Add: "_add_",
    ast.Mult: "_mul_",
    ast.Pow: "_pow_",
    ast.LShift: "_lshift_",
    ast.Mod: "_mod_",
}


def _call(name: str, args: list[ast.expr], loc: Any) -> ast.Call:
    node = ast.Call(func=ast.Name(name, ast.Load()), args=args, keywords=[])
    copy_locations(node, loc)
    return node


def _call_stmt(name: str, loc: Any) -> ast.Expr:
    stmt = ast.Expr(value=_call(name, [], loc))
    copy_locations(stmt, loc)
    return stmt


def _prepend_call(body: list[ast.stmt], name: str, loc: Any) -> None:
    body.insert(0, _call_stmt(name, loc))


def _names_exception_class(node: ast.expr) -> bool:
    if isinstance(node, ast.Tuple):
        return all(_names_exception_class(e) for e in node.elts)
    return isinstance(node, ast.Name) or (
        isinstance(node, ast.Attribute) and _names_exception_class(node.value)
    )


class _SandboxPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy, plus: no class/yield/with; size-checked `+ * ** << %`;
    `a[k] += v` allowed through `_augitem_`; f-string fields through `_format_`; `_tick_()` in
    every loop body, comprehension, def and lambda; except/finally bodies re-raise aborts."""

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self.error(node, "class definitions are not allowed in scripts")
        return node

    def visit_Yield(self, node: ast.Yield | ast.YieldFrom) -> ast.AST:
        self.error(node, "generator functions (yield) are not allowed in scripts")
        return node

    visit_YieldFrom = visit_Yield  # type: ignore[assignment]

    def visit_With(self, node: ast.With) -> ast.AST:
        self.error(node, "with statements are not allowed in scripts")
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node = self.node_contents_visit(node)
        name = _BINOP_GUARDS.get(type(node.op))
        return node if name is None else _call(name, [node.left, node.right], node)

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        if isinstance(node.target, ast.Subscript):
            if isinstance(node.target.slice, ast.Slice):
                self.error(node, "augmented assignment to a slice is not allowed in scripts")
                return node
            args = [
                self.visit(node.target.value),
                self.visit(node.target.slice),
                ast.Constant(IOPERATOR_TO_STR[type(node.op)]),
                self.visit(node.value),
            ]
            stmt = ast.Expr(value=_call("_augitem_", args, node))
            copy_locations(stmt, node)
            return stmt
        return super().visit_AugAssign(node)

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.AST:
        node = self.node_contents_visit(node)
        spec = node.format_spec if node.format_spec is not None else ast.Constant("")
        node.value = _call("_format_", [node.value, ast.Constant(node.conversion), spec], node)
        node.conversion = -1
        node.format_spec = None
        return node

    def visit_While(self, node: ast.While) -> ast.AST:
        node = self.node_contents_visit(node)
        _prepend_call(node.body, "_tick_", node)
        return node

    def visit_For(self, node: ast.For) -> Any:
        node = super().visit_For(node)
        _prepend_call(node.body, "_tick_", node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        node = super().visit_FunctionDef(node)
        _prepend_call(node.body, "_tick_", node)
        return node

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        node = super().visit_Lambda(node)
        body = ast.BoolOp(op=ast.And(), values=[_call("_tick_", [], node.body), node.body])
        copy_locations(body, node.body)
        node.body = body
        return node

    def visit_comprehension(self, node: ast.comprehension) -> Any:
        node = super().visit_comprehension(node)
        node.ifs.insert(0, _call("_tick_", [], node.iter))
        return node

    def visit_Module(self, node: ast.Module) -> Any:
        node = super().visit_Module(node)
        _spread_ticks(node)
        return node

    def visit_Try(self, node: ast.Try) -> Any:
        for handler in node.handlers:
            if handler.type is not None and not _names_exception_class(handler.type):
                self.error(handler, "except clauses may only name exception classes")
        node = super().visit_Try(node)
        for body in [h.body for h in node.handlers] + ([node.finalbody] if node.finalbody else []):
            _prepend_call(body, "_handler_enter_", body[0])
        return node


# Straight-line code gets a `_tick_()` every so many statements too, so that a long run of
# slow calls without any loop (`s = sorted(big)` x 1000) is still checked.
_STRAIGHT_LINE = 8


def _spread_ticks(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(node, field, None)
            if not isinstance(stmts, list) or len(stmts) <= _STRAIGHT_LINE:
                continue
            spread: list[ast.stmt] = []
            for i, stmt in enumerate(stmts):
                if i and not i % _STRAIGHT_LINE:
                    spread.append(_call_stmt("_tick_", stmt))
                spread.append(stmt)
            setattr(node, field, spread)


def _self_jumps(code: types.CodeType) -> Iterator[int]:
    """Backstop: a jump onto itself (3.11 compiles `while True: pass` like that) would be a
    loop without a `_tick_()`; the injection prevents it, this check proves it."""
    for ins in dis.get_instructions(code):
        if ins.opname.startswith("JUMP_BACKWARD") and ins.argval == ins.offset:
            yield (ins.positions.lineno if ins.positions else None) or 0
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _self_jumps(const)


@dataclass(frozen=True, slots=True)
class _Refusal:
    syntax: bool  # a Python syntax error rather than a sandbox refusal
    message: str  # "line N: reason"
    reason: str
    lineno: int
    offset: int | None
    text: str | None

    def exception(self) -> SyntaxError:
        details = (SCRIPT_FILENAME, self.lineno, self.offset, self.text)
        if self.syntax:
            return SyntaxError(self.reason, details)
        return SandboxCompileError(self.message, details)


_RP_LINE = re.compile(r"Line (\d+|None): ")


@lru_cache(maxsize=4096)
def _compile(source: str, mode: str) -> types.CodeType | _Refusal:
    """Compile once per (source, mode); refusals are cached too."""
    lines = source.splitlines() or [""]

    def line(n: int) -> str:
        return lines[min(max(n, 1), len(lines)) - 1]

    text = source
    first = 1
    if mode == "eval":  # conditions arrive with the whitespace of the XML around them
        text = source.strip()
        first = source[: len(source) - len(source.lstrip())].count("\n") + 1
    try:
        tree = ast.parse(text, SCRIPT_FILENAME, mode)
    except SyntaxError as exc:
        lineno = (exc.lineno or 1) + first - 1
        reason = str(exc.msg)
        if mode == "eval":
            try:
                ast.parse(text, SCRIPT_FILENAME, "exec")
                reason = "only an expression is allowed here, not a statement"
            except SyntaxError:
                pass
        return _Refusal(True, f"line {lineno}: {reason}", reason, lineno, exc.offset, line(lineno))
    except ValueError:  # null bytes
        reason = "source code cannot contain null bytes"
        return _Refusal(True, f"line 1: {reason}", reason, 1, None, line(1))
    except (RecursionError, MemoryError):  # the parser's own stack
        reason = "source nested too deeply"
        return _Refusal(True, f"line 1: {reason}", reason, 1, None, line(1))
    if first > 1:
        ast.increment_lineno(tree, first - 1)
    compiler = compile_restricted_exec if mode == "exec" else compile_restricted_eval
    try:
        result = compiler(tree, filename=SCRIPT_FILENAME, policy=_SandboxPolicy)
    except (RecursionError, MemoryError):
        reason = "script nested too deeply"
        return _Refusal(False, f"line 1: {reason}", reason, 1, None, line(1))
    errors = list(result.errors)
    if not errors and result.code is not None:
        for lineno in _self_jumps(result.code):
            errors.append(f"Line {lineno}: loop without a step check is not allowed")
    if errors or result.code is None:
        parts = []
        for error in errors or ["Line 1: refused"]:
            m = _RP_LINE.match(error)
            n = int(m.group(1)) if m and m.group(1) != "None" else 1
            parts.append((max(n, 1), error[m.end() :] if m else error))
        lineno = parts[0][0]
        message = "; ".join(f"line {n}: {reason.rstrip('.')}" for n, reason in parts)
        return _Refusal(False, message, parts[0][1], lineno, 1, line(lineno))
    return result.code


def _compiled(source: str, mode: str) -> types.CodeType:
    result = _compile(source, mode)
    if isinstance(result, _Refusal):
        raise result.exception()
    return result


def check_source(source: str, mode: Literal["exec", "eval"]) -> str | None:
    """Check a script (`exec`) or expression (`eval`) without running it.

    Returns None if the sandbox would accept it, else one line "line N: <reason>" for Python
    syntax errors and sandbox refusals alike. Used by the deploy validator and the linter.
    """
    if mode not in ("exec", "eval"):
        raise ValueError(f"mode must be 'exec' or 'eval', not {mode!r}")
    result = _compile(source, mode)
    if isinstance(result, _Refusal):
        return result.message
    return _static_refusal(source, mode)


def _static_refusal(source: str, mode: str) -> str | None:
    """What the runtime guards would refuse and can be seen without running: imports of
    modules scripts may not use, and calls of builtins that are not available."""
    tree = ast.parse(source if mode == "exec" else source.strip(), mode=mode)
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]] if not node.level else ["."]
        for name in names:
            if name not in _MODULES:
                return (
                    f"line {node.lineno}: import of {name!r} is not allowed in scripts "
                    f"(available: {_ALLOWED_IMPORTS})"
                )
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FORBIDDEN
        ):
            return f"line {node.lineno}: {node.func.id}() is not available in scripts"
    return None


# ---------------------------------------------------------------- running


@lru_cache(maxsize=1024)
def _is_plain_name(text: str) -> bool:
    """A name eval would look up in the data: an identifier, no keyword, no leading '_'
    (the sandbox refuses those, and its guards have such names)."""
    return text.isidentifier() and not keyword.iskeyword(text) and not text.startswith("_")


def _run(
    code: types.CodeType,
    g: dict[str, Any],
    is_eval: bool,
    limits: Limits,
    print_sink: Callable[[str], None] | None,
) -> Any:
    """Run restricted code with its limits; aborts become SandboxError (task ERROR)."""
    run, previous = _Run(limits), _tls.run
    _tls.run = run
    try:
        result = eval(code, g) if is_eval else exec(code, g)
    except _Abort as abort:
        raise SandboxError(run.violation or str(abort)).with_traceback(
            abort.__traceback__
        ) from None
    except Exception as exc:
        if run.violation is not None:  # the abort was swallowed, then something else failed
            raise SandboxError(run.violation).with_traceback(exc.__traceback__) from None
        exc.args = tuple(_safe_arg(a) for a in exc.args)  # raise ValueError(huge) stays small
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit, GeneratorExit ...: never out of the engine
        raise SandboxError(f"{type(exc).__name__} raised by script") from None
    finally:
        _tls.run = previous
        if run.out:
            text = "".join(run.out)
            if print_sink is not None:
                print_sink(text)
            else:
                log.info("script output: %s", text.rstrip())
    if run.violation is not None:  # swallowed by the script, which then completed
        raise SandboxError(run.violation)
    return result


class SandboxedEnvironment(TaskDataEnvironment):
    """A TaskDataEnvironment that runs everything in the sandbox.

    `helpers` are added to DEFAULT_HELPERS; like the builtins they can be shadowed by task
    data of the same name (a data field `date` wins over the helper). Task data can never
    shadow the sandbox's guards, and scripts cannot name anything starting with `_`.
    Subclasses override `call_service` for service tasks.
    """

    def __init__(
        self,
        helpers: Mapping[str, Any] | None = None,
        limits: Limits | None = None,
        print_sink: Callable[[str], None] | None = None,
    ) -> None:
        merged = {**DEFAULT_HELPERS, **(helpers or {})}
        bad = [k for k in merged if not isinstance(k, str) or not k.isidentifier() or k[0] == "_"]
        if bad:
            raise ValueError(f"helper names must be identifiers not starting with '_': {bad}")
        super().__init__(merged)
        self.limits = limits or DEFAULT_LIMITS
        self.print_sink = print_sink
        self._builtins = {**_SAFE_BUILTINS, **merged, **_GUARDS}

    def _globals(self, data: dict[str, Any]) -> dict[str, Any]:
        for name in _GUARD_NAMES & data.keys():  # data can never shadow a guard
            del data[name]
        data["__builtins__"] = self._builtins
        return data

    def evaluate(
        self,
        expression: str,
        context: dict[str, Any],
        external_context: dict[str, Any] | None = None,
    ) -> Any:
        """Evaluate an expression; like the base class, task data wins over external context.
        Expressions should not change data: they run on the data itself, not a copy."""
        self._prepare_context(context)
        external = external_context or {}
        name = expression.strip()
        if _is_plain_name(name) and (name in context or name in external):
            # A bare data name (a correlation property, `key`: one per delivered message)
            # needs no compiled code; eval would read the same object.
            result = context[name] if name in context else external[name]
        else:
            g = self._globals({**external, **context})
            result = _run(_compiled(expression, "eval"), g, True, self.limits, self.print_sink)
        if type(result) not in _SCALARS and type(result) is not str:
            # the result leaves the sandbox (service parameters, DMN outputs): bounded data
            budget = self.limits.max_data
            size = _measure(result, float("inf") if budget is None else budget, data=True)
            if budget is not None and size > budget:
                raise SandboxError(f"expression result too large (limit {budget:,})")
        return result

    def execute(
        self,
        script: str,
        context: dict[str, Any],
        external_context: dict[str, Any] | None = None,
    ) -> bool:
        """Run a script on a deep copy of the task data; write the result back only if it
        succeeds. `del x` removes x; functions and modules are not written to task data."""
        self._prepare_context(context)
        external = external_context or {}
        code = _compiled(script, "exec")
        g = self._globals(copy.deepcopy({**context, **external}))
        _run(code, g, False, self.limits, self.print_sink)
        self._commit(context, g, external)
        return True

    def _commit(self, context: dict[str, Any], g: dict[str, Any], external: Mapping) -> None:
        updates = {}
        for key, value in g.items():
            if (type(key) is str and key[:1] == "_") or key in external:
                continue  # __builtins__, _print, data keys scripts cannot see
            if callable(value) or type(value) is _SafeModule:
                continue  # functions, classes and modules are not task data
            updates[key] = value
        budget = self.limits.max_data
        limit = float("inf") if budget is None else float(budget)
        used = 0.0
        for value in updates.values():
            used += _measure(value, limit - used, data=True)
            if used > limit:
                raise SandboxError(f"task data too large or circular (limit {budget:,})")
        # all checks passed: now change the task data, all at once
        for key in [k for k in context if k not in updates and k not in external]:
            if not (type(key) is str and key[:1] == "_"):
                del context[key]  # `del x`, or x now names a function
        context.update(updates)


class SandboxedScriptEngine(PythonScriptEngine):
    """PythonScriptEngine with the sandbox, and fixes for two SpiffWorkflow 3.2.0 error paths:
    non-str exception arguments (`{}[5]` became a bare TypeError) and `call_service` (its
    error path raised NameError). Expression errors name the reason, not only the expression.
    """

    def __init__(
        self, environment: SandboxedEnvironment | None = None, limits: Limits | None = None
    ) -> None:
        if environment is None:
            environment = SandboxedEnvironment(limits=limits)
        elif limits is not None:
            raise TypeError("pass limits to the SandboxedEnvironment, not to the engine as well")
        elif not isinstance(environment, SandboxedEnvironment):
            raise TypeError("SandboxedScriptEngine needs a SandboxedEnvironment")
        super().__init__(environment=environment)

    def evaluate(self, task: Any, expression: str, external_context: Any = None) -> Any:
        try:
            return self.environment.evaluate(expression, task.data, external_context)
        except SpiffWorkflowException as exc:
            exc.add_note(f"Error evaluating expression '{expression}'")
            raise
        except Exception as exc:
            raise WorkflowTaskException(
                f"Error evaluating expression '{expression}': {_describe(exc)}",
                task=task,
                exception=exc,
            ) from exc

    def create_task_exec_exception(self, task: Any, script: str, err: Exception) -> Exception:
        if isinstance(err, SpiffWorkflowException):
            return super().create_task_exec_exception(task, script, err)
        line_number, error_line = self.get_error_line_number_and_content(script, err)
        return WorkflowTaskException(
            _describe(err),
            task=task,
            exception=err,
            line_number=line_number,
            error_line=error_line,
        )

    def get_error_line_number_and_content(self, script: str, err: Exception) -> tuple[int, str]:
        line_number = 0
        if isinstance(err, SyntaxError):
            line_number = err.lineno or 0
        else:
            tb = err.__traceback__
            while tb is not None:  # the innermost frame of the script itself
                if tb.tb_frame.f_code.co_filename == SCRIPT_FILENAME:
                    line_number = tb.tb_lineno
                tb = tb.tb_next
        lines = script.splitlines()
        error_line = lines[line_number - 1] if 0 < line_number <= len(lines) else ""
        return line_number, error_line

    def call_service(self, task: Any, **kwargs: Any) -> Any:
        try:
            return self.environment.call_service(task.data, **kwargs)
        except WorkflowTaskException:
            raise
        except Exception as err:
            name = task.task_spec.bpmn_name or task.task_spec.name
            raise WorkflowTaskException(
                f"service call in task {name!r} failed: {_describe(err)}", task=task, exception=err
            ) from err


def _describe(err: BaseException) -> str:
    """'Type: message', whatever the exception's arguments are."""
    if isinstance(err, SyntaxError) and not isinstance(err, SandboxCompileError):
        message = str(err.msg)
    elif err.args and isinstance(err.args[0], str) and not isinstance(err, KeyError):
        message = err.args[0]
    else:
        message = str(err)
    return f"{type(err).__name__}: {message}" if message else type(err).__name__
