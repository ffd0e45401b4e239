"""The rule engine: sequences of samples in, events and state out (pure, no clock)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taktflow.connectors.rules import (
    TRIGGERS,
    Emit,
    Event,
    Rule,
    RuleError,
    Sample,
    check_expression,
    evaluate,
)

T0 = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
EMIT = Emit(message="m", start_process=None, correlation={}, variables={}, message_id=None)


def rule(trigger: str, point: str | None = "p", emit: Emit = EMIT, **kw: Any) -> Rule:
    return Rule(id="r", trigger=trigger, point=point, emit=emit, **kw)


def at(ms: int, value: Any, **extra: Any) -> Sample:
    return Sample(now=T0 + timedelta(milliseconds=ms), values={"p": value, **extra})


def run(
    r: Rule, steps: list[tuple[int, Any]], state: dict | None = None
) -> tuple[list[int], list[Event], dict]:
    """Feed (ms, value) samples; return the offsets that fired, the events and the end state."""
    state = {} if state is None else state
    fired_at: list[int] = []
    events: list[Event] = []
    for ms, value in steps:
        out, state = evaluate(r, state, at(ms, value), connector="c")
        assert json.loads(json.dumps(state)) == state  # the caller persists it as JSON
        fired_at += [ms] * len(out)
        events += out
    return fired_at, events, state


def test_input_state_is_not_mutated() -> None:
    state = {"last": 1}
    snapshot = dict(state)
    evaluate(rule("change"), state, at(0, 5), connector="c")
    assert state == snapshot


@pytest.mark.parametrize(
    ("deadband", "steps", "fired"),
    [
        # The first sample only records: no "initial change" on a fresh start.
        (0, [(0, 1), (100, 1), (200, 2), (300, 2), (400, 3)], [200, 400]),
        # A move of exactly the deadband is noise; more than it reports.
        (0.5, [(0, 10.0), (100, 10.5), (200, 9.5), (300, 10.6)], [300]),
        # Compared with the last *reported* value, so a slow drift reports eventually.
        (1, [(0, 0), (100, 0.6), (200, 1.2), (300, 1.8), (400, 2.4)], [200, 400]),
        # Non-numbers compare with !=; a bool is a level, not a number.
        (5, [(0, "auto"), (100, "auto"), (200, "manual")], [200]),
        (5, [(0, False), (100, True)], [100]),
        # A failed read (None) is not a change.
        (0, [(0, 1), (100, None), (200, 1)], []),
    ],
)
def test_change(deadband: float, steps: list, fired: list[int]) -> None:
    assert run(rule("change", deadband=deadband), steps)[0] == fired


def test_change_previous_is_last_reported() -> None:
    emit = Emit("m", None, {}, {"v": "value", "was": "previous"}, None)
    _, events, _ = run(rule("change", emit=emit, deadband=1), [(0, 0), (1, 0.5), (2, 2)])
    assert [e.variables for e in events] == [{"v": 2, "was": 0}]


def test_change_restored_state_sees_change_while_down() -> None:
    _, _, state = run(rule("change"), [(0, "running")])
    persisted = json.loads(json.dumps(state))
    # Restart: the machine changed while the runtime was down.
    assert run(rule("change"), [(60_000, "stopped")], persisted)[0] == [60_000]
    # Without persisted state the same first sample would only be recorded.
    assert run(rule("change"), [(60_000, "stopped")])[0] == []


INCREASE = Emit("m", None, {}, {"delta": "delta", "reset": "reset", "total": "value"}, None)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([(0, 100), (1, 100), (2, 103), (3, 104)], [(3, False, 103), (1, False, 104)]),
        # A drop is a reset: the new value is what the counter counted since 0.
        ([(0, 100), (1, 102), (2, 3), (3, 5)], [(2, False, 102), (3, True, 3), (2, False, 5)]),
        # A reset to 0 counted nothing yet.
        ([(0, 100), (1, 0), (2, 1)], [(1, False, 1)]),
        # First sample without state: record only.
        ([(0, 5000)], []),
    ],
)
def test_increase(steps: list, expected: list) -> None:
    _, events, _ = run(rule("increase", emit=INCREASE), steps)
    assert [(e.variables["delta"], e.variables["reset"], e.variables["total"]) for e in events] == (
        expected
    )
    assert all(e.variables["delta"] > 0 for e in events)


def test_increase_refuses_text() -> None:
    with pytest.raises(RuleError, match="'r'.*needs a number"):
        run(rule("increase"), [(0, 1), (1, "x")])


@pytest.mark.parametrize(
    ("trigger", "debounce", "steps", "fired"),
    [
        ("rising_edge", 0, [(0, 0), (10, 1), (20, 1), (30, 0), (40, 1)], [10, 40]),
        ("falling_edge", 0, [(0, 0), (10, 1), (20, 1), (30, 0), (40, 1)], [30]),
        # A bounce shorter than the debounce fires nothing.
        ("rising_edge", 300, [(0, 0), (100, 1), (200, 1), (300, 0), (400, 0)], []),
        # Held for exactly the debounce time: fires at the sample that proves it.
        ("rising_edge", 300, [(0, 0), (100, 1), (200, 1), (400, 1), (500, 1)], [400]),
        # Longer than the debounce, fires once; the clock restarts after a bounce.
        ("rising_edge", 300, [(0, 0), (100, 1), (200, 0), (300, 1), (500, 1), (700, 1)], [700]),
        # The falling side is debounced too: a short dip does not make a second rising edge.
        ("rising_edge", 300, [(0, 0), (100, 1), (500, 1), (600, 0), (700, 1), (900, 1)], [500]),
        ("falling_edge", 300, [(0, True), (100, False), (450, False)], [450]),
        # First sample without state: a level, not an edge.
        ("rising_edge", 0, [(0, 1), (10, 1)], []),
        # Numbers: non-zero is true.
        ("rising_edge", 0, [(0, 0.0), (10, 2.5), (20, -1)], [10]),
    ],
)
def test_edges(trigger: str, debounce: int, steps: list, fired: list[int]) -> None:
    assert run(rule(trigger, debounce_ms=debounce), steps)[0] == fired


def test_edge_while_down_is_seen_after_restart() -> None:
    r = rule("rising_edge", debounce_ms=300)
    _, _, state = run(r, [(0, 0), (100, 0)])
    persisted = json.loads(json.dumps(state))
    # Down for a minute; the alarm came on meanwhile and is still on.
    fired, events, _ = run(r, [(60_000, 1), (60_200, 1), (60_300, 1)], persisted)
    assert fired == [60_300]
    assert events[0].at == T0 + timedelta(milliseconds=60_300)


@pytest.mark.parametrize(
    ("kw", "steps", "fired"),
    [
        # Fires once above; stays quiet until it falls below above - hysteresis.
        (
            {"above": 65, "hysteresis": 5},
            [(0, 60), (1, 66), (2, 70), (3, 62), (4, 66), (5, 59.9), (6, 66)],
            [1, 6],
        ),
        # Exactly at the limit is not above; exactly at the re-arm level does not re-arm.
        ({"above": 65, "hysteresis": 5}, [(0, 60), (1, 65), (2, 65.1), (3, 60), (4, 66)], [2]),
        (
            {"below": 10, "hysteresis": 2},
            [(0, 20), (1, 9), (2, 11), (3, 9), (4, 12.5), (5, 8)],
            [1, 5],
        ),
        # Already above at the first sample: baseline only; fires after a re-arm.
        ({"above": 65}, [(0, 80), (1, 81), (2, 50), (3, 70)], [3]),
    ],
)
def test_threshold(kw: dict, steps: list, fired: list[int]) -> None:
    assert run(rule("threshold", **kw), steps)[0] == fired


STATES = {0: "idle", 1: "running", 2: "alarm", 3: "alarm"}
STATE_EMIT = Emit("m", None, {}, {"s": "state", "was": "previous_state"}, None)


def test_state() -> None:
    r = rule("state", emit=STATE_EMIT, states=STATES)
    fired, events, state = run(r, [(0, 0), (1, 0), (2, 1), (3, 2), (4, 3), (5, 7), (6, 1.0)])
    assert fired == [2, 3, 5, 6]
    assert [(e.variables["s"], e.variables["was"]) for e in events] == [
        ("running", "idle"),
        ("alarm", "running"),  # 2 -> 3 is alarm -> alarm: no change
        ("unknown(7)", "alarm"),
        ("running", "unknown(7)"),  # a float register value still maps
    ]
    assert state["state"] == "running"


def test_state_with_text_keys_and_codes() -> None:
    r = rule("state", emit=STATE_EMIT, states={"0": "idle", 1: "running"})
    _, events, _ = run(r, [(0, 0), (1, "1"), (2, "x")])
    assert [e.variables["s"] for e in events] == ["running", "unknown(x)"]


def mqtt(ms: int, payload: Any, topic: str = "plant/a/station/10/result") -> Sample:
    return Sample(now=T0 + timedelta(milliseconds=ms), values={}, topic=topic, payload=payload)


RESULT = Rule(
    id="result",
    trigger="condition",
    point=None,
    condition="payload.serial is defined and payload.result == 'PASS'",
    emit=Emit(
        message="test_result",
        start_process=None,
        correlation={"serial": "payload.serial"},
        variables={"station": "topic.split('/')[3]", "torque": "payload.torque", "pair": "(1, 2)"},
        message_id="payload.run_id",
    ),
)


def test_condition_on_mqtt_payloads() -> None:
    state: dict = {}
    keys = []
    payloads = [
        {"serial": "S1", "result": "PASS", "torque": 12.5, "run_id": "R1"},
        {"serial": "S2", "result": "FAIL", "torque": 3, "run_id": "R2"},
        {"result": "PASS"},  # no serial: the condition guards it
        {"serial": "S1", "result": "PASS", "torque": 12.5, "run_id": "R1"},  # redelivery
    ]
    for i, payload in enumerate(payloads):
        events, state = evaluate(RESULT, state, mqtt(i, payload), connector="ts")
        keys += [e.idempotency_key for e in events]
        if i == 0:
            (e,) = events
            assert (e.kind, e.name, e.rule) == ("message", "test_result", "result")
            assert e.correlation == {"serial": "S1"}
            assert e.variables == {"station": "10", "torque": 12.5, "pair": [1, 2]}
    # Every matching message fires (no edge logic); the redelivery keeps its key.
    assert keys == ["ts/result/msg/R1", "ts/result/msg/R1"]


def test_condition_on_points_fires_when_it_becomes_true() -> None:
    r = rule("condition", point=None, condition="points.p > 5 and points.q == 'auto'")
    steps = [(0, 9), (1, 9), (2, 1), (3, 7), (4, 8), (5, 2), (6, 6)]
    state: dict = {}
    fired = []
    for ms, value in steps:
        events, state = evaluate(r, state, at(ms, value, q="auto"), connector="c")
        fired += [ms for _ in events]
    assert fired == [3, 6]


def test_message_id_missing_is_an_error() -> None:
    payload = {"serial": "S1", "result": "PASS", "torque": 1, "run_id": None}
    with pytest.raises(RuleError, match="message_id"):
        evaluate(RESULT, {}, mqtt(0, payload), connector="ts")


def test_condition_filter_suppresses_but_consumes() -> None:
    r = rule("increase", emit=INCREASE, condition="machine.order is not none")
    state: dict = {}
    out = []
    for ms, value, machine in [(0, 10, {}), (1, 12, {"order": None}), (2, 15, {"order": "WO1"})]:
        events, state = evaluate(r, state, at(ms, value), connector="c", machine=machine)
        out += [e.variables["delta"] for e in events]
    # The 2 parts counted without an order are consumed, not added to the next event.
    assert out == [3]
    assert state["seq"] == 1


def test_idempotency_keys_are_deterministic_across_retry() -> None:
    r = rule("increase")
    _, events, state = run(r, [(0, 0), (1, 1), (2, 2)])
    assert [e.idempotency_key for e in events] == ["c/r/1", "c/r/2"]
    persisted = json.loads(json.dumps(state))
    # The transaction holding the next event is lost in a crash: retrying from the same
    # persisted state yields the same key, so the inbox deduplicates.
    first, _ = evaluate(r, persisted, at(3, 5), connector="c")
    retry, _ = evaluate(r, json.loads(json.dumps(state)), at(3, 5), connector="c")
    assert first == retry
    assert first[0].idempotency_key == "c/r/3"
    # Samples that fire nothing do not use up a number.
    _, events, _ = run(r, [(0, 0), (1, 0), (2, 0), (3, 1)])
    assert [e.idempotency_key for e in events] == ["c/r/1"]


def test_start_event_and_context_names() -> None:
    emit = Emit(
        message=None,
        start_process="downtime",
        correlation={"machine": "machine.id"},
        variables={
            "connector": "connector",
            "now": "now",
            "temp": "points.t",
            "since": "since",
            "obj": "{'a': [1, (2, 3)]}",
        },
        message_id=None,
    )
    r = rule("rising_edge", emit=emit)
    state: dict = {}
    for ms, v in [(0, 0), (10, 1)]:
        events, state = evaluate(
            r, state, at(ms, v, t=71.5), connector="press", machine={"id": "p1"}
        )
    (e,) = events
    assert (e.kind, e.name) == ("start", "downtime")
    assert e.correlation == {"machine": "p1"}
    now = (T0 + timedelta(milliseconds=10)).isoformat()
    assert e.variables == {
        "connector": "press",
        "now": now,
        "temp": 71.5,
        "since": now,
        "obj": {"a": [1, [2, 3]]},
    }


@pytest.mark.parametrize(
    ("where", "text", "match"),
    [
        ("variables", "''.__class__.__mro__", "not allowed"),
        ("variables", "''.__class__", "not allowed|unsafe"),
        ("variables", "valeu", "'valeu' is undefined"),
        ("variables", "payload.nope", "nope"),
        ("variables", "1 / 0", "division"),
        ("variables", "payload.keys()", "not JSON data"),
        ("variables", "payload.a * 1e300 * 1e300", "not a JSON number"),
        ("correlation", "none", "is empty"),
        ("correlation", "''", "is empty"),
    ],
)
def test_expression_errors_name_rule_and_expression(where: str, text: str, match: str) -> None:
    kw = {"correlation": {}, "variables": {}, where: {"x": text}}
    r = rule("rising_edge", emit=Emit("m", None, kw["correlation"], kw["variables"], None))
    with pytest.raises(RuleError, match=match) as info:
        evaluate(r, {"level": False}, Sample(T0, {"p": 1}, payload={"a": 1}), connector="c")
    assert "'r'" in str(info.value)
    assert repr(text) in str(info.value)


def test_condition_error_is_a_rule_error() -> None:
    r = rule("change", condition="value.__class__.__subclasses__()")
    with pytest.raises(RuleError, match="condition"):
        run(r, [(0, 1), (1, 2)])


def test_check_expression() -> None:
    assert check_expression("payload.serial is defined and value > 3") is None
    assert check_expression("topic.split('/')[3]") is None
    error = check_expression("value >* 3")
    assert error is not None and "'*'" in error
    assert check_expression("  ") == "empty expression"
    assert check_expression("(1, ") is not None


def test_unknown_trigger() -> None:
    assert "condition" in TRIGGERS
    with pytest.raises(RuleError, match="unknown trigger"):
        evaluate(rule("sometimes"), {}, at(0, 1), connector="c")


PATH_CONTEXT = {
    "payload": {"key": "K1", "line": {"id": 7, "tags": ["a"]}, "_x": 0, "n": None, "items": 3},
    "topic": "plant/line1/result",
    "value": 4.5,
    "machine": {},
}


@pytest.mark.parametrize(
    "text",
    [
        "payload.key",
        "payload.line.id",
        "payload.line.tags",
        "payload._x",
        "payload.n",
        "value",
        " payload.key ",
        "payload.key is defined",
        "payload.missing is defined",
        "payload.line.missing is defined",
        "payload.items",  # a method of dict wins over the item in Jinja
        "payload.keys",
        "topic.upper",  # a method of str
        "payload.n.x is defined",
        "machine.id is defined",
    ],
)
def test_plain_paths_read_what_jinja_reads(text: str) -> None:
    # Paths are walked without Jinja when every step is a dict key; the answer must be
    # Jinja's in every case, including those the walk leaves to it.
    from taktflow.connectors import rules

    def outcome(evaluate_with: Any) -> Any:
        try:
            result = evaluate_with(text, dict(PATH_CONTEXT))
        except Exception as exc:  # noqa: BLE001 - the kind of failure is compared
            return type(exc).__name__
        return result if not callable(result) else f"callable {result.__name__}"

    assert outcome(rules._evaluate) == outcome(rules._evaluate_in_jinja)


def test_plain_paths_are_recognised() -> None:
    from taktflow.connectors import rules

    assert rules._path("payload.line.id") == (("payload", "line", "id"), False)
    assert rules._path("payload.key is defined") == (("payload", "key"), True)
    for text in ("payload['key']", "payload.key | int", "payload.key is not defined", "a.1"):
        assert rules._path(text) is None, text
