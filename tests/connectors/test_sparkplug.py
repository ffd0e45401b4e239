"""Sparkplug B: the payload codec, the host state machine, and the two against a real Mosquitto
with a simulated edge node."""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from connector_support import wait_for
from sparkplug_support import EdgeNode, HostClient

from taktflow.connectors.paho_support import stop_loop
from taktflow.connectors.sparkplug import (
    REBIRTH_METRIC,
    DataType,
    Metric,
    MetricDefinitions,
    Payload,
    PayloadMessage,
    SparkplugError,
    SparkplugHost,
    decode_payload,
    encode_payload,
    parse_topic,
    rebirth_request,
    state_birth,
    state_will,
)

G, N = "Plant1", "Line3"
T0 = 1_700_000_000_123  # 2023-11-14T22:13:20.123Z


# --------------------------------------------------------------------------------- codec
SCALARS = [
    (DataType.Int8, [-128, -1, 0, 127]),
    (DataType.Int16, [-32768, -1, 32767]),
    (DataType.Int32, [-(2**31), -1, 2**31 - 1]),
    (DataType.Int64, [-(2**63), -1, 2**63 - 1]),
    (DataType.UInt8, [0, 255]),
    (DataType.UInt16, [0, 65535]),
    (DataType.UInt32, [0, 2**32 - 1]),
    (DataType.UInt64, [0, 2**64 - 1]),
    (DataType.Float, [0.0, 1.1, -273.15, 3.4e38]),
    (DataType.Double, [0.1, -1e300, 2.5]),
    (DataType.Boolean, [True, False]),
    (DataType.String, ["", "RUNNING", "Prüfstand 7 °C"]),
    (DataType.Text, ["a\nlonger text"]),
    (DataType.UUID, ["3f1c2f0e-4d7e-4b9a-9a49-0c9b1f1e2d3c"]),
    (DataType.DateTime, [datetime(2024, 5, 1, 6, 30, 0, 123000, tzinfo=UTC)]),
    (DataType.Bytes, [b"\x00\x01\xff"]),
    (DataType.File, [b"%PDF-1.7"]),
]


@pytest.mark.parametrize(("datatype", "values"), SCALARS, ids=[d.name for d, _ in SCALARS])
def test_every_scalar_datatype_round_trips(datatype: DataType, values: list[Any]) -> None:
    metrics = [Metric(f"m{i}", v, datatype, alias=i, timestamp=T0) for i, v in enumerate(values)]
    decoded = decode_payload(encode_payload(Payload(metrics, seq=7, timestamp=T0)))
    assert decoded.seq == 7 and decoded.timestamp == T0
    assert [m.value for m in decoded.metrics] == values
    assert all(m.datatype == datatype and m.note is None for m in decoded.metrics)
    assert [(m.name, m.alias, m.timestamp) for m in decoded.metrics] == [
        (f"m{i}", i, T0) for i in range(len(values))
    ]


def test_float_values_come_back_as_written_not_as_float32_noise() -> None:
    decoded = decode_payload(encode_payload(Payload([Metric("t", 80.1, DataType.Float)])))
    assert decoded.metrics[0].value == 80.1  # not 80.0999984741211


def raw_metric(datatype: int, **value: Any) -> bytes:
    message = PayloadMessage(seq=0)
    message.metrics.add(name="x", datatype=datatype, **value)
    return message.SerializeToString()


@pytest.mark.parametrize(
    ("datatype", "field", "raw", "expected"),
    [
        # Sign-extended to the field's width, as Eclipse Tahu writes them...
        (DataType.Int8, "int_value", 0xFFFFFFFF, -1),
        (DataType.Int8, "int_value", 0xFFFFFF80, -128),
        (DataType.Int16, "int_value", 0xFFFF8000, -32768),
        (DataType.Int32, "int_value", 0x80000000, -(2**31)),
        (DataType.Int64, "long_value", 2**64 - 5, -5),
        # ...or only the type's width, as other stacks do: both are Sparkplug.
        (DataType.Int8, "int_value", 0xFF, -1),
        (DataType.Int16, "int_value", 0xFFFE, -2),
        (DataType.Int8, "int_value", 0x7F, 127),
        # UInt32 in long_value, as some stacks send it.
        (DataType.UInt32, "long_value", 2**32 - 1, 2**32 - 1),
    ],
)
def test_signed_integers_decode_to_negative_python_ints(
    datatype: DataType, field: str, raw: int, expected: int
) -> None:
    assert decode_payload(raw_metric(datatype, **{field: raw})).metrics[0].value == expected


def test_negative_ints_are_encoded_as_twos_complement_of_the_field() -> None:
    data = encode_payload(
        Payload([Metric("a", -1, DataType.Int8), Metric("b", -2, DataType.Int64)])
    )
    message = PayloadMessage.FromString(data)
    assert message.metrics[0].int_value == 0xFFFFFFFF
    assert message.metrics[1].long_value == 2**64 - 2


def test_an_integer_too_large_for_its_type_is_none_with_a_note() -> None:
    (metric,) = decode_payload(raw_metric(DataType.Int8, int_value=0x100)).metrics
    assert metric.value is None
    assert metric.note == "256 does not fit Int8 (reported as None)"


def test_null_metrics() -> None:
    data = encode_payload(Payload([Metric("a", None, DataType.Int32), Metric("b", None, 12)]))
    assert [m.is_null for m in PayloadMessage.FromString(data).metrics] == [True, True]
    decoded = decode_payload(data)
    assert [(m.value, m.note) for m in decoded.metrics] == [(None, None), (None, None)]


ARRAYS = [
    (DataType.Int8Array, [-128, -1, 127]),
    (DataType.Int16Array, [-30000, 30000]),
    (DataType.Int32Array, [-1, 315338746]),
    (DataType.Int64Array, [-(2**63), 2**63 - 1]),
    (DataType.UInt8Array, [23, 250]),
    (DataType.UInt16Array, [30, 52360]),
    (DataType.UInt32Array, [0, 2**32 - 1]),
    (DataType.UInt64Array, [52, 2**64 - 1]),
    (DataType.FloatArray, [1.23, 89.341]),
    (DataType.DoubleArray, [12.354213, 1022.9123213]),
    (DataType.BooleanArray, [True, False, True]),
    (DataType.StringArray, ["ABC", "hello", ""]),
    (DataType.DateTimeArray, [datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)]),
]


@pytest.mark.parametrize(("datatype", "values"), ARRAYS, ids=[d.name for d, _ in ARRAYS])
def test_array_datatypes_round_trip(datatype: DataType, values: list[Any]) -> None:
    decoded = decode_payload(encode_payload(Payload([Metric("a", values, datatype)])))
    assert decoded.metrics[0].value == values


def test_array_wire_format_is_the_specifications() -> None:
    def wire(datatype: DataType, values: list[Any]) -> bytes:
        data = encode_payload(Payload([Metric("a", values, datatype)]))
        return PayloadMessage.FromString(data).metrics[0].bytes_value

    assert wire(DataType.Int32Array, [123456789, 987654321]) == bytes.fromhex("15cd5b07b168de3a")
    bools = [False, False, True, True, False, True, False, False, True, True, False, True]
    assert wire(DataType.BooleanArray, bools) == bytes([0x0C, 0, 0, 0, 0x34, 0xD0])
    assert wire(DataType.StringArray, ["ABC", "hello"]) == b"ABC\x00hello\x00"


def test_datasets_decode_and_templates_are_reported_unsupported() -> None:
    dataset = {
        "columns": ["station", "torque", "ok"],
        "types": ["String", "Int16", "Boolean"],
        "rows": [["S1", -12, True], ["S2", None, False]],
    }
    message = PayloadMessage(seq=0)
    message.metrics.add(name="tpl", datatype=DataType.Template).template_value.version = "1"
    message.MergeFromString(encode_payload(Payload([Metric("ds", dataset, DataType.DataSet)])))
    tpl, ds = decode_payload(message.SerializeToString()).metrics
    assert ds.value == dataset and ds.note is None
    assert tpl.value is None
    assert tpl.note == "Template values are not supported (reported as None)"


def test_data_metrics_get_name_and_datatype_from_the_birth() -> None:
    birth = decode_payload(
        encode_payload(Payload([Metric("Temp", 1, DataType.Int16, alias=4)], seq=0))
    )
    data = encode_payload(
        Payload([Metric(None, -7, DataType.Int16, alias=4)], seq=1), datatypes=False
    )
    assert PayloadMessage.FromString(data).metrics[0].HasField("datatype") is False
    (metric,) = decode_payload(data, MetricDefinitions(birth.metrics)).metrics
    assert (metric.name, metric.value, metric.datatype, metric.note) == ("Temp", -7, 2, None)
    (unknown,) = decode_payload(
        encode_payload(Payload([Metric(None, 1, DataType.Int16, alias=9)]), datatypes=False),
        MetricDefinitions(birth.metrics),
    ).metrics
    assert unknown.name is None and unknown.note == "alias 9 is not in the birth certificate"


@pytest.mark.parametrize(
    "garbage", [b"\xff\xff\xff", b"garbage", b'{"state": "RUNNING"}', b"\x12\x05\x0a"]
)
def test_garbage_bytes_raise_a_clear_error(garbage: bytes) -> None:
    with pytest.raises(SparkplugError, match="^not a Sparkplug B protobuf payload"):
        decode_payload(garbage)
    with pytest.raises(SparkplugError, match=f"^spBv1.0/{G}/NDATA/{N}: not a Sparkplug B protobuf"):
        SparkplugHost().handle(f"spBv1.0/{G}/NDATA/{N}", garbage)


def test_invalid_utf8_in_a_metric_name_is_malformed() -> None:
    inner = b"\x0a\x02\xff\xfe"  # Metric.name = b"\xff\xfe"
    with pytest.raises(SparkplugError, match="a metric name is not UTF-8"):
        decode_payload(b"\x12" + bytes([len(inner)]) + inner + b"\x18\x00")


def test_encoding_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(SparkplugError, match="128 is out of range for Int8"):
        encode_payload(Payload([Metric("a", 128, DataType.Int8)]))
    with pytest.raises(SparkplugError, match="has no datatype"):
        encode_payload(Payload([Metric("a", 1)]))


def test_rebirth_request_and_state_messages() -> None:
    topic, payload = rebirth_request(G, N)
    assert topic == f"spBv1.0/{G}/NCMD/{N}"
    decoded = decode_payload(payload)
    assert decoded.seq is None  # commands carry no seq
    assert [(m.name, m.value, m.datatype) for m in decoded.metrics] == [
        (REBIRTH_METRIC, True, DataType.Boolean)
    ]
    assert state_will("taktflow", T0) == (
        "spBv1.0/STATE/taktflow",
        b'{"online": false, "timestamp": 1700000000123}',
    )
    assert json.loads(state_birth("taktflow", T0)[1]) == {"online": True, "timestamp": T0}
    with pytest.raises(SparkplugError):
        state_will("a/b")


# ------------------------------------------------------------------------- state machine
def nbirth(seq: int = 0, bd_seq: int = 0, **metrics: tuple[int, Any, int]) -> bytes:
    """NBIRTH with bdSeq, the rebirth metric and `name=(datatype, value, alias)`."""
    return encode_payload(
        Payload(
            [
                Metric("bdSeq", bd_seq, DataType.Int64),
                Metric(REBIRTH_METRIC, False, DataType.Boolean),
                *(Metric(k, v, dt, alias=a) for k, (dt, v, a) in metrics.items()),
            ],
            seq=seq,
            timestamp=T0,
        )
    )


def dbirth(seq: int, **metrics: tuple[int, Any, int]) -> bytes:
    items = [Metric(k, v, dt, alias=a) for k, (dt, v, a) in metrics.items()]
    return encode_payload(Payload(items, seq=seq, timestamp=T0))


def data(seq: int, **by_alias: Any) -> bytes:
    """DATA with metrics by alias only, no names and no datatypes (a1=..., a2=...)."""
    metrics = [Metric(None, v, _wire_type(v), alias=int(k[1:])) for k, v in by_alias.items()]
    return encode_payload(Payload(metrics, seq=seq, timestamp=T0), datatypes=False)


def _wire_type(value: Any) -> DataType:
    # Only picks the protobuf field; the datatype the host decodes with comes from the birth.
    if isinstance(value, bool):
        return DataType.Boolean
    if isinstance(value, float):
        return DataType.Double
    return DataType.String if isinstance(value, str) else DataType.Int32


def ndeath(bd_seq: int) -> bytes:
    return encode_payload(Payload([Metric("bdSeq", bd_seq, DataType.Int64)], timestamp=T0))


def ddeath(seq: int) -> bytes:
    return encode_payload(Payload([], seq=seq, timestamp=T0))


def topic(kind: str, device: str | None = None) -> str:
    return f"spBv1.0/{G}/{kind}/{N}" + (f"/{device}" if device else "")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def host(clock: Clock) -> SparkplugHost:
    """A host that saw the NBIRTH (seq 0) of node Line3 and the DBIRTHs of Press7 (seq 1) and
    Press8 (seq 2)."""
    h = SparkplugHost(clock=clock)
    h.handle(topic("NBIRTH"), nbirth(0, 3, Mode=(DataType.Int16, 1, 1)))
    press7 = dbirth(1, PartCount=(DataType.UInt32, 100, 2), State=(DataType.String, "RUNNING", 3))
    h.handle(topic("DBIRTH", "Press7"), press7)
    h.handle(topic("DBIRTH", "Press8"), dbirth(2, Temp=(DataType.Int16, -3, 4)))
    return h


def test_birth_and_data_messages_have_the_documented_shape() -> None:
    h = SparkplugHost()
    update = h.handle(topic("NBIRTH"), nbirth(0, 3, Mode=(DataType.Int16, -1, 1)))
    assert update.rebirth is None and update.problem is None
    assert update.messages == [
        {
            "group": G,
            "edge_node": N,
            "device": None,
            "type": "NBIRTH",
            "seq": 0,
            "timestamp": "2023-11-14T22:13:20.123+00:00",
            "metrics": {"bdSeq": 3, REBIRTH_METRIC: False, "Mode": -1},
            "online": True,
        }
    ]
    json.dumps(update.messages, allow_nan=False)  # JSON-ready


def test_data_metrics_given_by_alias_get_their_names(host: SparkplugHost) -> None:
    update = host.handle(topic("DDATA", "Press7"), data(3, a2=101, a3="ALARM"))
    assert update.rebirth is None and update.problem is None
    (message,) = update.messages
    assert message["metrics"] == {"PartCount": 101, "State": "ALARM"}
    assert (message["type"], message["device"], message["seq"]) == ("DDATA", "Press7", 3)
    node = host.handle(topic("NDATA"), data(4, a1=-2)).messages[0]
    assert (node["device"], node["metrics"]) == (None, {"Mode": -2})


def test_aliases_are_per_device(host: SparkplugHost) -> None:
    update = host.handle(topic("DDATA", "Press8"), data(3, a2=5))  # alias 2 is Press7's
    assert update.messages == []
    assert update.rebirth == (topic("NCMD"), update.rebirth[1])
    assert update.problem == (
        "metrics not in the birth certificate: alias 2: rebirth requested; "
        "DDATA dropped: none of its metrics could be named and typed"
    )


def test_seq_wraps_from_255_to_0_without_a_gap(host: SparkplugHost) -> None:
    for seq in [*range(3, 256), 0, 1]:
        update = host.handle(topic("DDATA", "Press7"), data(seq, a2=seq))
        assert update.rebirth is None and update.problem is None, seq


def test_a_seq_gap_requests_one_rebirth_and_still_reports_the_data(
    host: SparkplugHost, clock: Clock
) -> None:
    update = host.handle(topic("DDATA", "Press7"), data(5, a2=110))  # 3 and 4 were lost
    assert update.messages[0]["metrics"] == {"PartCount": 110}
    assert update.problem == "seq gap: expected 3, got 5: rebirth requested"
    rebirth_topic, payload = update.rebirth
    assert rebirth_topic == f"spBv1.0/{G}/NCMD/{N}"
    assert [(m.name, m.value) for m in decode_payload(payload).metrics] == [(REBIRTH_METRIC, True)]

    clock.now += 2
    again = host.handle(topic("DDATA", "Press7"), data(9, a2=111))
    assert again.rebirth is None  # asked already
    assert again.problem == "seq gap: expected 6, got 9 (rebirth already requested 2.0 s ago)"
    assert again.messages[0]["metrics"] == {"PartCount": 111}

    clock.now += 10  # no NBIRTH came: the request may have been lost, ask again
    assert host.handle(topic("DDATA", "Press7"), data(20, a2=112)).rebirth is not None

    host.handle(topic("NBIRTH"), nbirth(0, 3, Mode=(DataType.Int16, 1, 1)))
    host.handle(topic("DBIRTH", "Press7"), dbirth(1, PartCount=(DataType.UInt32, 112, 2)))
    assert host.handle(topic("DDATA", "Press7"), data(3, a2=113)).rebirth is not None  # at once


def test_data_before_any_birth_requests_a_rebirth_and_is_dropped() -> None:
    h = SparkplugHost()
    update = h.handle(topic("DDATA", "Press7"), data(17, a2=5))
    assert update.messages == []
    assert update.rebirth is not None and update.rebirth[0] == topic("NCMD")
    assert update.problem == (
        "DDATA before the node's NBIRTH: rebirth requested; "
        "DDATA dropped: none of its metrics could be named and typed"
    )
    nothing_new = h.handle(topic("NDATA"), data(18, a1=1))
    assert nothing_new.rebirth is None and "already requested" in (nothing_new.problem or "")


def test_a_data_metric_with_name_and_datatype_is_reported_even_before_the_birth() -> None:
    payload = encode_payload(Payload([Metric("Temp", 21.5, DataType.Double)], seq=4))
    update = SparkplugHost().handle(topic("NDATA"), payload)
    assert update.rebirth is not None
    assert update.messages[0]["metrics"] == {"Temp": 21.5}


def test_dbirth_before_nbirth_requests_a_rebirth() -> None:
    update = SparkplugHost().handle(
        topic("DBIRTH", "Press7"), dbirth(1, PartCount=(DataType.UInt32, 100, 2))
    )
    assert update.rebirth is not None
    assert update.problem == "DBIRTH before the node's NBIRTH: rebirth requested"
    assert update.messages[0]["metrics"] == {"PartCount": 100}


def test_an_unknown_alias_requests_a_rebirth_and_keeps_the_known_metrics(
    host: SparkplugHost,
) -> None:
    update = host.handle(topic("DDATA", "Press7"), data(3, a2=150, a99=1))
    assert update.messages[0]["metrics"] == {"PartCount": 150}
    assert update.rebirth is not None
    assert update.problem == "metrics not in the birth certificate: alias 99: rebirth requested"


def test_a_stale_ndeath_is_ignored(host: SparkplugHost) -> None:
    update = host.handle(topic("NDEATH"), ndeath(2))  # the will of the previous connection
    assert update.messages == [] and update.rebirth is None
    assert update.problem == "stale NDEATH ignored: bdSeq 2, the node's birth had 3"
    assert host.online(G, N) and host.online(G, N, "Press7")


def test_ndeath_marks_the_node_and_all_its_devices_offline(host: SparkplugHost) -> None:
    update = host.handle(topic("NDEATH"), ndeath(3))
    assert update.problem is None and update.rebirth is None
    assert [(m["device"], m["type"], m["online"], m["metrics"]) for m in update.messages] == [
        (None, "NDEATH", False, {}),
        ("Press7", "NDEATH", False, {}),
        ("Press8", "NDEATH", False, {}),
    ]
    assert update.messages[0]["seq"] is None
    assert not host.online(G, N) and not host.online(G, N, "Press7")
    # The broker's will after the node's own NDEATH: a duplicate, ignored without a word.
    assert host.handle(topic("NDEATH"), ndeath(3)).messages == []
    # Data after the death is not trusted: the node must be born again.
    assert host.handle(topic("DDATA", "Press7"), data(3, a2=1)).rebirth is not None


def test_ddeath_marks_one_device_offline(host: SparkplugHost) -> None:
    update = host.handle(topic("DDEATH", "Press7"), ddeath(3))
    assert update.problem is None and update.rebirth is None
    assert [(m["device"], m["type"], m["online"], m["seq"]) for m in update.messages] == [
        ("Press7", "DDEATH", False, 3)
    ]
    assert not host.online(G, N, "Press7")
    assert host.online(G, N, "Press8") and host.online(G, N)
    assert host.handle(topic("DDATA", "Press8"), data(4, a4=7)).messages[0]["metrics"] == {
        "Temp": 7
    }
    # DDATA of the dead device without a new DBIRTH: the host asks for a rebirth.
    update = host.handle(topic("DDATA", "Press7"), data(5, a2=1))
    assert update.rebirth is not None and update.messages == []


def test_nbirth_after_death_is_online_again_with_a_fresh_cache(host: SparkplugHost) -> None:
    host.handle(topic("NDEATH"), ndeath(3))
    update = host.handle(topic("NBIRTH"), nbirth(0, 4, Speed=(DataType.Float, 1.5, 1)))
    assert update.messages[0]["online"] is True and update.problem is None
    assert host.online(G, N) and not host.online(G, N, "Press7")
    assert host.handle(topic("NDATA"), data(1, a1=2.5)).messages[0]["metrics"] == {"Speed": 2.5}
    # Press7's aliases died with the old session: its DDATA needs a new DBIRTH first.
    stale = host.handle(topic("DDATA", "Press7"), data(2, a2=1))
    assert stale.messages == [] and stale.rebirth is not None
    host.handle(topic("DBIRTH", "Press7"), dbirth(3, Count=(DataType.UInt64, 0, 2)))
    fresh = host.handle(topic("DDATA", "Press7"), data(4, a2=1))
    assert fresh.messages[0]["metrics"] == {"Count": 1}
    assert host.handle(topic("NDEATH"), ndeath(3)).problem is not None  # the old bdSeq is stale


def test_nbirth_resets_the_cache_even_without_a_death(host: SparkplugHost) -> None:
    host.handle(topic("NBIRTH"), nbirth(0, 3, Mode=(DataType.Int16, 1, 1)))
    assert not host.online(G, N, "Press7")
    assert host.handle(topic("DDATA", "Press7"), data(1, a2=1)).rebirth is not None


def test_commands_and_host_states_are_ignored(host: SparkplugHost) -> None:
    for t in [topic("NCMD"), topic("DCMD", "Press7"), "spBv1.0/STATE/scada"]:
        assert host.handle(t, b"anything") == host.handle(t, b"")
        assert host.handle(t, b"x").messages == []
    # Our own rebirth command echoed back by the broker changes nothing.
    assert host.handle(*rebirth_request(G, N)).messages == []
    assert host.handle(topic("DDATA", "Press7"), data(3, a2=1)).problem is None


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("plant/line3/data", "not a Sparkplug B topic"),
        ("spBv1.0/Plant1/NDATA", "not a Sparkplug B topic"),
        ("spBv1.0/Plant1/NDATA/Line3/Press7", "NDATA has the wrong number of topic levels"),
        ("spBv1.0/Plant1/DDATA/Line3", "DDATA has the wrong number of topic levels"),
        ("spBv1.0/Plant1/NFOO/Line3", "unknown Sparkplug message type 'NFOO'"),
    ],
)
def test_bad_topics_raise_errors_naming_them(bad: str, why: str) -> None:
    with pytest.raises(SparkplugError) as error:
        SparkplugHost().handle(bad, nbirth())
    assert str(error.value).startswith(f"{bad}: {why}")


def test_payloads_without_seq_are_malformed(host: SparkplugHost) -> None:
    with pytest.raises(SparkplugError, match=f"^{topic('NDATA')}: payload has no seq$"):
        host.handle(topic("NDATA"), encode_payload(Payload([])))
    with pytest.raises(SparkplugError, match="seq 256 is not in 0-255"):
        host.handle(topic("NDATA"), encode_payload(Payload([], seq=256)))


def test_parse_topic() -> None:
    assert parse_topic("spBv1.0/G/DDATA/N/D") == ("DDATA", "G", "N", "D", None)
    assert parse_topic("spBv1.0/STATE/scada").host_id == "scada"


def test_unsupported_values_are_reported_as_problems_and_json_is_strict() -> None:
    message = PayloadMessage(seq=0)
    message.metrics.add(name="tpl", datatype=DataType.Template).template_value.version = "1"
    message.metrics.add(name="nan", datatype=DataType.Double, double_value=math.nan)
    message.metrics.add(name="when", datatype=DataType.DateTime, long_value=T0)
    message.metrics.add(name="raw", datatype=DataType.Bytes, bytes_value=b"\x00\xff")
    message.metrics.add(name="bdSeq", datatype=DataType.Int64, long_value=0)
    update = SparkplugHost().handle(topic("NBIRTH"), message.SerializeToString())
    assert update.problem == "metric 'tpl': Template values are not supported (reported as None)"
    metrics = update.messages[0]["metrics"]
    assert metrics == {
        "tpl": None,
        "nan": None,
        "when": "2023-11-14T22:13:20.123+00:00",
        "raw": "AP8=",
        "bdSeq": 0,
    }
    json.dumps(update.messages, allow_nan=False)


def test_historical_values_are_not_passed_to_the_rules(host: SparkplugHost) -> None:
    historical = Metric(None, 99, DataType.UInt32, alias=2, is_historical=True)
    current = Metric(None, 100, DataType.UInt32, alias=2)
    both = encode_payload(Payload([historical, current], seq=3), datatypes=False)
    assert host.handle(topic("DDATA", "Press7"), both).messages[0]["metrics"] == {"PartCount": 100}
    only = encode_payload(Payload([historical], seq=4), datatypes=False)
    update = host.handle(topic("DDATA", "Press7"), only)
    assert update.messages == []
    assert update.problem == "DDATA of historical values only: not passed to the rules"


def test_float_bits_survive_unchanged() -> None:
    value = struct.unpack("<f", struct.pack("<f", 0.1))[0]
    decoded = decode_payload(encode_payload(Payload([Metric("f", value, DataType.Float)])))
    assert struct.pack("<f", decoded.metrics[0].value) == struct.pack("<f", value)


# ----------------------------------------------------------------- over a real Mosquitto
DEVICES = {
    "Press7": [
        Metric("PartCount", 100, DataType.UInt32),
        Metric("State", "RUNNING", DataType.String),
        Metric("OilTemp", -3.5, DataType.Float),
    ],
    "Press8": [Metric("PartCount", 0, DataType.UInt32)],
}


@pytest.fixture
def mqtt_pair(broker: int, request: pytest.FixtureRequest) -> Any:
    """A host client subscribed to a group of this test's own, and an edge node in it."""
    group = f"G-{request.node.name}"[:60].replace("/", "_")
    host = HostClient(broker, group, f"taktflow-{request.node.name}"[:60]).start()
    edge = EdgeNode(broker, group, "Line3", DEVICES, bd_seq=5)
    try:
        yield host, edge
    finally:
        edge.close()
        host.stop()
    assert host.errors == [] and edge.errors == []


def test_host_names_ddata_sent_by_alias(mqtt_pair: tuple[HostClient, EdgeNode]) -> None:
    host, edge = mqtt_pair
    edge.start()
    host.wait_for_message(type="DBIRTH", device="Press8")
    edge.publish_ddata("Press7", {"PartCount": 101, "OilTemp": 41.2})
    edge.publish_ddata("Press7", {"State": "ALARM"})
    last = host.wait_for_message(type="DDATA", metrics={"State": "ALARM"})
    assert last["device"] == "Press7" and last["online"] is True
    types = [(m["type"], m["device"], m["seq"]) for m in host.messages()]
    assert types == [
        ("NBIRTH", None, 0),
        ("DBIRTH", "Press7", 1),
        ("DBIRTH", "Press8", 2),
        ("DDATA", "Press7", 3),
        ("DDATA", "Press7", 4),
    ]
    assert host.messages()[3]["metrics"] == {"PartCount": 101, "OilTemp": 41.2}
    assert host.problems() == [] and host.rebirths_sent == []


def test_an_edge_node_that_drops_off_is_reported_offline(
    mqtt_pair: tuple[HostClient, EdgeNode],
) -> None:
    host, edge = mqtt_pair
    edge.start()
    host.wait_for_message(type="DBIRTH", device="Press8")
    edge.kill()  # no DISCONNECT: Mosquitto publishes the NDEATH will
    host.wait_for_message(type="NDEATH", device=None)
    deaths = [(m["device"], m["online"]) for m in host.messages() if m["type"] == "NDEATH"]
    assert deaths == [(None, False), ("Press7", False), ("Press8", False)]
    assert not host.host.online(edge.group, "Line3")


def test_a_lost_message_makes_the_host_ask_for_a_rebirth(
    mqtt_pair: tuple[HostClient, EdgeNode],
) -> None:
    host, edge = mqtt_pair
    edge.start()
    host.wait_for_message(type="DBIRTH", device="Press8")
    edge.skip_seq()
    edge.publish_ddata("Press7", {"PartCount": 105})
    wait_for(lambda: edge.rebirths == 1)  # counted once the births are published
    # The node answered with a complete birth sequence (current values, same bdSeq).
    births = wait_for(lambda: len(host.messages()) >= 7 and host.messages()[4:7])
    assert births[0]["metrics"]["bdSeq"] == 5
    assert births[1]["metrics"] == {"PartCount": 105, "State": "RUNNING", "OilTemp": -3.5}
    edge.publish_ddata("Press7", {"PartCount": 106})
    host.wait_for_message(type="DDATA", seq=3, metrics={"PartCount": 106})
    assert host.rebirths_sent == [f"spBv1.0/{edge.group}/NCMD/Line3"]
    assert host.problems() == ["seq gap: expected 3, got 4: rebirth requested"]
    messages = host.messages()
    assert [(m["type"], m["device"], m["seq"]) for m in messages] == [
        ("NBIRTH", None, 0),
        ("DBIRTH", "Press7", 1),
        ("DBIRTH", "Press8", 2),
        ("DDATA", "Press7", 4),  # the message that revealed the gap is still reported
        ("NBIRTH", None, 0),
        ("DBIRTH", "Press7", 1),
        ("DBIRTH", "Press8", 2),
        ("DDATA", "Press7", 3),
    ]
    assert messages[3]["metrics"] == {"PartCount": 105}


def test_the_host_state_is_retained_and_its_will_replaces_it(broker: int) -> None:
    seen: list[dict[str, Any]] = []
    host = HostClient(broker, "G-state", "taktflow-state").start()
    watcher = HostClient(broker, "G-state-watch", "watcher")

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic == "spBv1.0/STATE/taktflow-state":
            seen.append(json.loads(msg.payload))

    watcher.client.on_message = on_message
    watcher.start()
    watcher.client.subscribe("spBv1.0/STATE/taktflow-state", qos=1)
    wait_for(lambda: seen and seen[-1]["online"] is True)  # retained birth
    # The host dies: its sockets close without a DISCONNECT, so the broker publishes its will.
    stop_loop(host.client)
    wait_for(lambda: seen[-1]["online"] is False)
    assert seen[-1]["timestamp"] == seen[0]["timestamp"]  # the CONNECT's, as Sparkplug 3.0 says
    watcher.stop()
