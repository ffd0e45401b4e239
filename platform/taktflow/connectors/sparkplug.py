"""Sparkplug B for MQTT connectors: the payload codec and the host application's state machine.

Sparkplug B is the MQTT convention of industrial edge devices. An edge node announces its metrics
(names, aliases, datatypes, current values) in BIRTH certificates and then sends only changes,
usually by alias; a host application has to remember the births to name the values, check the
per-node sequence number to notice lost messages, and ask the node to be born again (an NCMD
`Node Control/Rebirth`) when it no longer knows the node's state.

`SparkplugHost.handle(topic, payload)` does all of that for one connector and returns a
`SparkplugUpdate`: JSON-ready dicts for the rules, a rebirth request to publish, and a
description of anything wrong. It does no I/O itself, so the connector decides how to publish.

The codec uses the `protobuf` package with the message classes built at import time from a
descriptor written out here (the schema is Eclipse Tahu's `sparkplug_b.proto`), so there is no
generated file and no protoc step; `pysparkplug` is not used because it pins paho-mqtt < 2.

Supported metric values: every scalar datatype (Int8 ... UInt64, Float, Double, Boolean,
String, Text, UUID, DateTime, Bytes, File), the array types (Int8Array ... DateTimeArray) and
DataSets. Templates and property-set datatypes are reported as unsupported: the metric's value
is None and a note says why (the host adds such notes to `SparkplugUpdate.problem`).
"""

from __future__ import annotations

import base64
import json
import math
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, NamedTuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

NAMESPACE = "spBv1.0"
REBIRTH_METRIC = "Node Control/Rebirth"
BDSEQ_METRIC = "bdSeq"
#: Message types an edge node publishes, and the commands a host (or another host) sends.
NODE_TYPES = ("NBIRTH", "NDEATH", "NDATA", "NCMD")
DEVICE_TYPES = ("DBIRTH", "DDEATH", "DDATA", "DCMD")
#: Seconds after which a rebirth request that got no NBIRTH may be sent again.
REBIRTH_RETRY_S = 10.0


class SparkplugError(ValueError):
    """A payload or topic that is not valid Sparkplug B: no retry can fix it."""


class DataType(IntEnum):
    """Sparkplug B datatype codes (specification 3.0, section 6.4.16)."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34


# ---------------------------------------------------------------------------------- schema
_PACKAGE = "org.eclipse.tahu.protobuf"
_F = descriptor_pb2.FieldDescriptorProto
_MAX_FIELD = 536_870_912  # exclusive end of "extensions N to max"


def _add_message(
    parent: Any, name: str, fields: list[tuple[Any, ...]], extensions_from: int | None = None
) -> descriptor_pb2.DescriptorProto:
    """Add message `name` to `parent`; fields are (name, number, type[, label|oneof, type_name]).

    A fifth element names a nested message type (relative to Payload); a string fourth element
    puts the field into that oneof, which must be the message's only one (`value` in Tahu).
    """
    msg = parent.add(name=name)
    for name_, number, type_, *rest in fields:
        f = msg.field.add(name=name_, number=number, type=type_, label=_F.LABEL_OPTIONAL)
        if rest and rest[0] == "repeated":
            f.label = _F.LABEL_REPEATED
        elif rest and rest[0] == "value":
            if not msg.oneof_decl:
                msg.oneof_decl.add(name="value")
            f.oneof_index = 0
        if len(rest) > 1:
            f.type_name = f".{_PACKAGE}.Payload.{rest[1]}"
    if extensions_from is not None:
        msg.extension_range.add(start=extensions_from, end=_MAX_FIELD)
    return msg


def _schema() -> descriptor_pb2.FileDescriptorProto:
    """Tahu's sparkplug_b.proto (proto2) as a descriptor: same names, numbers and types."""
    file = descriptor_pb2.FileDescriptorProto(
        name="taktflow/sparkplug_b.proto", package=_PACKAGE, syntax="proto2"
    )
    u32, u64, flt, dbl = _F.TYPE_UINT32, _F.TYPE_UINT64, _F.TYPE_FLOAT, _F.TYPE_DOUBLE
    bln, txt, byt, msg = _F.TYPE_BOOL, _F.TYPE_STRING, _F.TYPE_BYTES, _F.TYPE_MESSAGE
    payload = file.message_type.add(name="Payload")
    nested = payload.nested_type

    template = _add_message(nested, "Template", [
        ("version", 1, txt), ("metrics", 2, msg, "repeated", "Metric"),
        ("parameters", 3, msg, "repeated", "Template.Parameter"), ("template_ref", 4, txt),
        ("is_definition", 5, bln),
    ], extensions_from=6)  # fmt: skip
    parameter = _add_message(template.nested_type, "Parameter", [
        ("name", 1, txt), ("type", 2, u32), ("int_value", 3, u32, "value"),
        ("long_value", 4, u64, "value"), ("float_value", 5, flt, "value"),
        ("double_value", 6, dbl, "value"), ("boolean_value", 7, bln, "value"),
        ("string_value", 8, txt, "value"),
        ("extension_value", 9, msg, "value", "Template.Parameter.ParameterValueExtension"),
    ])  # fmt: skip
    _add_message(parameter.nested_type, "ParameterValueExtension", [], extensions_from=1)

    dataset = _add_message(nested, "DataSet", [
        ("num_of_columns", 1, u64), ("columns", 2, txt, "repeated"),
        ("types", 3, u32, "repeated"), ("rows", 4, msg, "repeated", "DataSet.Row"),
    ], extensions_from=5)  # fmt: skip
    value = _add_message(dataset.nested_type, "DataSetValue", [
        ("int_value", 1, u32, "value"), ("long_value", 2, u64, "value"),
        ("float_value", 3, flt, "value"), ("double_value", 4, dbl, "value"),
        ("boolean_value", 5, bln, "value"), ("string_value", 6, txt, "value"),
        ("extension_value", 7, msg, "value", "DataSet.DataSetValue.DataSetValueExtension"),
    ])  # fmt: skip
    _add_message(value.nested_type, "DataSetValueExtension", [], extensions_from=1)
    _add_message(dataset.nested_type, "Row", [
        ("elements", 1, msg, "repeated", "DataSet.DataSetValue"),
    ], extensions_from=2)  # fmt: skip

    property_value = _add_message(nested, "PropertyValue", [
        ("type", 1, u32), ("is_null", 2, bln), ("int_value", 3, u32, "value"),
        ("long_value", 4, u64, "value"), ("float_value", 5, flt, "value"),
        ("double_value", 6, dbl, "value"), ("boolean_value", 7, bln, "value"),
        ("string_value", 8, txt, "value"),
        ("propertyset_value", 9, msg, "value", "PropertySet"),
        ("propertysets_value", 10, msg, "value", "PropertySetList"),
        ("extension_value", 11, msg, "value", "PropertyValue.PropertyValueExtension"),
    ])  # fmt: skip
    _add_message(property_value.nested_type, "PropertyValueExtension", [], extensions_from=1)
    _add_message(nested, "PropertySet", [
        ("keys", 1, txt, "repeated"), ("values", 2, msg, "repeated", "PropertyValue"),
    ], extensions_from=3)  # fmt: skip
    _add_message(nested, "PropertySetList", [
        ("propertyset", 1, msg, "repeated", "PropertySet"),
    ], extensions_from=2)  # fmt: skip
    _add_message(nested, "MetaData", [
        ("is_multi_part", 1, bln), ("content_type", 2, txt), ("size", 3, u64), ("seq", 4, u64),
        ("file_name", 5, txt), ("file_type", 6, txt), ("md5", 7, txt), ("description", 8, txt),
    ], extensions_from=9)  # fmt: skip

    metric = _add_message(nested, "Metric", [
        ("name", 1, txt), ("alias", 2, u64), ("timestamp", 3, u64), ("datatype", 4, u32),
        ("is_historical", 5, bln), ("is_transient", 6, bln), ("is_null", 7, bln),
        ("metadata", 8, msg, None, "MetaData"), ("properties", 9, msg, None, "PropertySet"),
        ("int_value", 10, u32, "value"), ("long_value", 11, u64, "value"),
        ("float_value", 12, flt, "value"), ("double_value", 13, dbl, "value"),
        ("boolean_value", 14, bln, "value"), ("string_value", 15, txt, "value"),
        ("bytes_value", 16, byt, "value"), ("dataset_value", 17, msg, "value", "DataSet"),
        ("template_value", 18, msg, "value", "Template"),
        ("extension_value", 19, msg, "value", "Metric.MetricValueExtension"),
    ])  # fmt: skip
    _add_message(metric.nested_type, "MetricValueExtension", [], extensions_from=1)

    for name, number, type_, *rest in [
        ("timestamp", 1, u64), ("metrics", 2, msg, "repeated", "Metric"), ("seq", 3, u64),
        ("uuid", 4, txt), ("body", 5, byt),
    ]:  # fmt: skip
        f = payload.field.add(name=name, number=number, type=type_, label=_F.LABEL_OPTIONAL)
        if rest:
            f.label = _F.LABEL_REPEATED
            f.type_name = f".{_PACKAGE}.Payload.{rest[1]}"
    payload.extension_range.add(start=6, end=_MAX_FIELD)
    return file


# A pool of our own: another library registering the same proto in the default pool (a generated
# sparkplug_b_pb2, say) would otherwise clash with ours.
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_schema())
#: The protobuf message class of a Sparkplug B payload (org.eclipse.tahu.protobuf.Payload).
PayloadMessage: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName(f"{_PACKAGE}.Payload")
)

# ----------------------------------------------------------------------------- value codec
# (bits, signed) of the integer datatypes; DateTime is milliseconds since the epoch.
_INTEGERS = {
    DataType.Int8: (8, True), DataType.Int16: (16, True), DataType.Int32: (32, True),
    DataType.Int64: (64, True), DataType.UInt8: (8, False), DataType.UInt16: (16, False),
    DataType.UInt32: (32, False), DataType.UInt64: (64, False), DataType.DateTime: (64, False),
}  # fmt: skip
_LONG = {DataType.Int64, DataType.UInt64, DataType.DateTime}
_STRINGS = {DataType.String, DataType.Text, DataType.UUID}
_BYTES = {DataType.Bytes, DataType.File}
# struct codes of the fixed-width arrays (little endian, packed).
_ARRAYS = {
    DataType.Int8Array: "b", DataType.Int16Array: "h", DataType.Int32Array: "i",
    DataType.Int64Array: "q", DataType.UInt8Array: "B", DataType.UInt16Array: "H",
    DataType.UInt32Array: "I", DataType.UInt64Array: "Q", DataType.FloatArray: "f",
    DataType.DoubleArray: "d", DataType.DateTimeArray: "Q",
}  # fmt: skip
_FIELD_BITS = {"int_value": 32, "long_value": 64}
_KNOWN = {int(datatype) for datatype in DataType}


class _Unsupported(Exception):
    """A metric value this codec cannot represent: the metric gets None and this note."""


def _datatype_name(datatype: int) -> str:
    try:
        return DataType(datatype).name
    except ValueError:
        return f"datatype {datatype}"


def _from_wire_int(raw: int, field_name: str, datatype: int) -> int:
    bits, signed = _INTEGERS[DataType(datatype)]
    field_bits = _FIELD_BITS[field_name]
    # Signed values narrower than the field occur on the wire in two forms, both allowed by the
    # specification: sign-extended to the field's 32/64 bits (Eclipse Tahu) or only the type's
    # own width (0xFF for Int8 -1). Anything else does not fit the type.
    if raw >= 1 << bits and not (signed and raw >= (1 << field_bits) - (1 << (bits - 1))):
        raise _Unsupported(f"{raw} does not fit {_datatype_name(datatype)}")
    value = raw & ((1 << bits) - 1)
    if signed and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def _to_wire_int(value: Any, datatype: int) -> tuple[str, int]:
    bits, signed = _INTEGERS[DataType(datatype)]
    if isinstance(value, datetime) and datatype == DataType.DateTime:
        value = _epoch_ms(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SparkplugError(f"{_datatype_name(datatype)} needs an int, not {value!r}")
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not low <= value <= high:
        raise SparkplugError(f"{value} is out of range for {_datatype_name(datatype)}")
    field_name = "long_value" if datatype in _LONG else "int_value"
    # Negative values are sign-extended to the field's width, as Eclipse Tahu writes them.
    return field_name, value & ((1 << _FIELD_BITS[field_name]) - 1)


def _shortest_float32(value: float) -> float:
    """The shortest decimal that is the same float32: 1.1 instead of 1.100000023841858."""
    if not math.isfinite(value):
        return value
    packed = struct.pack("<f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return value


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise SparkplugError(f"DateTime {moment} has no time zone")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return delta // timedelta(milliseconds=1)


def _datetime(ms: int) -> datetime:
    # Integer arithmetic: ms / 1000 as a float would turn .123 into .122999 for some values.
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _decode_array(datatype: int, data: bytes) -> list[Any]:
    if datatype == DataType.BooleanArray:
        if len(data) < 4:
            raise _Unsupported("BooleanArray shorter than its 4-byte count")
        (count,) = struct.unpack_from("<I", data)
        bits = data[4:]
        if len(bits) * 8 < count:
            raise _Unsupported(f"BooleanArray of {count} values has only {len(bits)} bytes")
        # Most significant bit first (specification example: F,F,T,T,F,T,F,F -> 0x34).
        return [bool(bits[i // 8] & (0x80 >> (i % 8))) for i in range(count)]
    if datatype == DataType.StringArray:
        if data and not data.endswith(b"\0"):
            raise _Unsupported("StringArray does not end with a null byte")
        try:
            return [part.decode("utf-8") for part in data.split(b"\0")[:-1]]
        except UnicodeDecodeError as exc:
            raise _Unsupported(f"StringArray is not UTF-8: {exc}") from None
    code = _ARRAYS[DataType(datatype)]
    size = struct.calcsize(code)
    if len(data) % size:
        raise _Unsupported(f"{len(data)} bytes are not a whole {_datatype_name(datatype)}")
    values = list(struct.unpack(f"<{len(data) // size}{code}", data))
    if datatype == DataType.FloatArray:
        return [_shortest_float32(v) for v in values]
    if datatype == DataType.DateTimeArray:
        return [_datetime(v) for v in values]
    return values


def _encode_array(datatype: int, values: Any) -> bytes:
    values = list(values)
    if datatype == DataType.BooleanArray:
        packed = bytearray((len(values) + 7) // 8)
        for i, item in enumerate(values):
            if item:
                packed[i // 8] |= 0x80 >> (i % 8)
        return struct.pack("<I", len(values)) + bytes(packed)
    if datatype == DataType.StringArray:
        return b"".join(str(item).encode("utf-8") + b"\0" for item in values)
    if datatype == DataType.DateTimeArray:
        values = [_epoch_ms(v) if isinstance(v, datetime) else v for v in values]
    try:
        return struct.pack(f"<{len(values)}{_ARRAYS[DataType(datatype)]}", *values)
    except struct.error as exc:
        raise SparkplugError(f"{_datatype_name(datatype)}: {exc}") from None


def _decode_value(holder: Any, datatype: int) -> Any:
    """The Python value of a Metric or DataSetValue whose `value` oneof is set."""
    field_name = holder.WhichOneof("value")
    raw = getattr(holder, field_name)
    if datatype in _INTEGERS and field_name in _FIELD_BITS:
        # Either field is accepted: some stacks put UInt32 into long_value.
        value = _from_wire_int(raw, field_name, datatype)
        return _datetime(value) if datatype == DataType.DateTime else value
    if datatype in (DataType.Float, DataType.Double) and field_name in (
        "float_value",
        "double_value",
    ):
        return _shortest_float32(raw) if field_name == "float_value" else raw
    if datatype == DataType.Boolean and field_name == "boolean_value":
        return raw
    if datatype in _STRINGS and field_name == "string_value":
        return _text(raw, "string value")
    if datatype in _BYTES and field_name == "bytes_value":
        return bytes(raw)
    if datatype in _ARRAYS or datatype in (DataType.BooleanArray, DataType.StringArray):
        if field_name == "bytes_value":
            return _decode_array(datatype, bytes(raw))
    if datatype == DataType.DataSet and field_name == "dataset_value":
        return _decode_dataset(raw)
    if datatype == DataType.Template:
        raise _Unsupported("Template values are not supported")
    if datatype in (DataType.PropertySet, DataType.PropertySetList):
        raise _Unsupported(f"{_datatype_name(datatype)} is not a metric datatype")
    if datatype not in _KNOWN or datatype == DataType.Unknown:
        raise _Unsupported(f"unknown datatype {datatype}")
    raise _Unsupported(f"{_datatype_name(datatype)} value in {field_name}")


def _text(value: str | bytes, what: str) -> str:
    # proto2 does not check UTF-8: protobuf hands over the bytes of an invalid string field.
    if isinstance(value, bytes):
        raise _Unsupported(f"{what} is not UTF-8")
    return value


def _decode_dataset(dataset: Any) -> dict[str, Any]:
    columns = [_text(column, "DataSet column name") for column in dataset.columns]
    types = list(dataset.types)
    if len(columns) != len(types):
        raise _Unsupported(f"DataSet has {len(columns)} columns but {len(types)} types")
    rows = []
    for row in dataset.rows:
        if len(row.elements) != len(columns):
            raise _Unsupported(f"DataSet row of {len(row.elements)} values for {len(columns)}")
        rows.append([
            _decode_value(element, datatype) if element.WhichOneof("value") else None
            for element, datatype in zip(row.elements, types, strict=True)
        ])  # fmt: skip
    return {"columns": columns, "types": [_datatype_name(t) for t in types], "rows": rows}


def _set_value(holder: Any, datatype: int, value: Any, *, in_dataset: bool = False) -> None:
    """Put `value` of `datatype` into the `value` oneof of a Metric or DataSetValue."""
    if datatype in _INTEGERS:
        field_name, raw = _to_wire_int(value, datatype)
        setattr(holder, field_name, raw)
    elif datatype in (DataType.Float, DataType.Double):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SparkplugError(f"{_datatype_name(datatype)} needs a number, not {value!r}")
        name = "float_value" if datatype == DataType.Float else "double_value"
        setattr(holder, name, float(value))
    elif datatype == DataType.Boolean:
        holder.boolean_value = bool(value)
    elif datatype in _STRINGS:
        holder.string_value = str(value)
    elif in_dataset:
        raise SparkplugError(f"{_datatype_name(datatype)} cannot be a DataSet column")
    elif datatype in _BYTES:
        if not isinstance(value, bytes | bytearray):
            raise SparkplugError(f"{_datatype_name(datatype)} needs bytes, not {value!r}")
        holder.bytes_value = bytes(value)
    elif datatype in _ARRAYS or datatype in (DataType.BooleanArray, DataType.StringArray):
        holder.bytes_value = _encode_array(datatype, value)
    elif datatype == DataType.DataSet:
        _encode_dataset(holder.dataset_value, value)
    else:
        raise SparkplugError(f"encoding {_datatype_name(datatype)} values is not supported")


def _encode_dataset(target: Any, dataset: dict[str, Any]) -> None:
    columns, types = list(dataset["columns"]), [_datatype_code(t) for t in dataset["types"]]
    if len(columns) != len(types):
        raise SparkplugError("a DataSet needs one type per column")
    target.num_of_columns = len(columns)
    target.columns.extend(columns)
    target.types.extend(types)
    for values in dataset.get("rows", []):
        if len(values) != len(types):
            raise SparkplugError(f"DataSet row {values!r} does not have {len(types)} values")
        row = target.rows.add()
        for datatype, item in zip(types, values, strict=True):
            element = row.elements.add()
            if item is not None:
                _set_value(element, datatype, item, in_dataset=True)


def _datatype_code(datatype: int | str) -> int:
    return DataType[datatype] if isinstance(datatype, str) else int(datatype)


# --------------------------------------------------------------------------- payload codec
@dataclass(frozen=True)
class Metric:
    """One metric of a payload, decoded or to be encoded.

    `value` is a Python value: int, float, bool, str, bytes (Bytes, File), datetime in UTC
    (DateTime), a list (arrays), or a dict {"columns", "types", "rows"} (DataSet). None means
    null, or, when `note` is set, a value this codec cannot represent (a Template, a datatype
    it does not know, an integer too large for its type). `timestamp` is in milliseconds
    since the epoch, as on the wire.
    """

    name: str | None = None
    value: Any = None
    datatype: int | None = None
    alias: int | None = None
    timestamp: int | None = None
    is_historical: bool = False
    is_transient: bool = False
    note: str | None = None

    @property
    def label(self) -> str:
        """How messages refer to the metric: its name, or its alias if it has none."""
        return repr(self.name) if self.name is not None else f"alias {self.alias}"


@dataclass(frozen=True)
class Payload:
    """A Sparkplug B payload: `timestamp` in ms since the epoch, `seq` 0-255 (None on NDEATH)."""

    metrics: list[Metric] = field(default_factory=list)
    seq: int | None = None
    timestamp: int | None = None
    uuid: str | None = None
    body: bytes | None = None


class MetricDefinitions:
    """The metrics one BIRTH certificate announced: aliases and datatypes, to decode DATA.

    DATA messages carry a metric's alias instead of its name and usually no datatype; both
    come from here. Built from a decoded birth with `MetricDefinitions(payload.metrics)`.
    """

    def __init__(self, metrics: Iterable[Metric] = ()) -> None:
        self.by_alias: dict[int, tuple[str, int | None]] = {}
        self.by_name: dict[str, int | None] = {}
        self.problems: list[str] = []
        for metric in metrics:
            if metric.name is None:
                self.problems.append(f"birth metric {metric.label} has no name")
                continue
            if metric.datatype is None:
                self.problems.append(f"birth metric {metric.label} has no datatype")
            self.by_name[metric.name] = metric.datatype
            if metric.alias is not None:
                if metric.alias in self.by_alias:
                    other = self.by_alias[metric.alias][0]
                    self.problems.append(
                        f"alias {metric.alias} is used by {other!r} and {metric.name!r}"
                    )
                self.by_alias[metric.alias] = (metric.name, metric.datatype)

    def resolve(self, name: str | None, alias: int | None) -> tuple[str | None, int | None]:
        """(name, datatype) of a DATA metric; None for what the birth did not announce."""
        if name is None and alias is not None and alias in self.by_alias:
            return self.by_alias[alias]
        if name is not None and name in self.by_name:
            return name, self.by_name[name]
        if alias is not None and alias in self.by_alias:
            return name, self.by_alias[alias][1]
        return name, None


def decode_payload(data: bytes, definitions: MetricDefinitions | None = None) -> Payload:
    """Decode a Sparkplug B payload; `definitions` name and type the metrics of DATA messages.

    Raises SparkplugError for bytes that are not a Sparkplug B protobuf payload. A single
    metric whose value cannot be represented does not fail the payload: it gets value None and
    a `note`. A metric whose datatype is unknown (not on the wire and not in `definitions`)
    gets a note too, and so does one given by an alias the definitions do not have (its name
    stays None): the host treats both as a reason to ask for a rebirth.
    """
    try:
        message = PayloadMessage.FromString(bytes(data))
    except (DecodeError, TypeError) as exc:
        raise SparkplugError(f"not a Sparkplug B protobuf payload ({exc})") from None
    try:
        return _payload(message, definitions)
    except _Unsupported as exc:
        raise SparkplugError(str(exc)) from None


def _payload(message: Any, definitions: MetricDefinitions | None) -> Payload:
    metrics = []
    for raw in message.metrics:
        name = _text(raw.name, "a metric name") if raw.HasField("name") else None
        alias = raw.alias if raw.HasField("alias") else None
        datatype = raw.datatype if raw.HasField("datatype") else None
        if definitions is not None:
            known_name, known_type = definitions.resolve(name, alias)
            name = known_name
            datatype = datatype if datatype is not None else known_type
        value, note = None, None
        if name is None and alias is not None and definitions is not None:
            note = f"alias {alias} is not in the birth certificate"
        elif raw.is_null:
            pass
        elif datatype is None:
            note = "no datatype (the metric is not in the birth certificate)"
        elif raw.WhichOneof("value") is not None:
            try:
                value = _decode_value(raw, datatype)
            except _Unsupported as exc:
                note = f"{exc} (reported as None)"
        metrics.append(
            Metric(
                name=name,
                value=value,
                datatype=datatype,
                alias=alias,
                timestamp=raw.timestamp if raw.HasField("timestamp") else None,
                is_historical=raw.is_historical,
                is_transient=raw.is_transient,
                note=note,
            )
        )
    return Payload(
        metrics=metrics,
        seq=message.seq if message.HasField("seq") else None,
        timestamp=message.timestamp if message.HasField("timestamp") else None,
        uuid=_text(message.uuid, "the uuid") if message.HasField("uuid") else None,
        body=bytes(message.body) if message.HasField("body") else None,
    )


def encode_payload(payload: Payload, *, datatypes: bool = True) -> bytes:
    """Encode `payload`. Each metric needs a datatype (to pick the protobuf field), but with
    `datatypes=False` it is left off the wire, as the specification asks of DATA and CMD
    messages. A None value is sent as is_null. Templates cannot be encoded (SparkplugError).
    """
    message = PayloadMessage()
    if payload.timestamp is not None:
        message.timestamp = payload.timestamp
    if payload.seq is not None:
        message.seq = payload.seq
    if payload.uuid is not None:
        message.uuid = payload.uuid
    if payload.body is not None:
        message.body = payload.body
    for metric in payload.metrics:
        if metric.datatype is None:
            raise SparkplugError(f"metric {metric.label} has no datatype")
        raw = message.metrics.add()
        if metric.name is not None:
            raw.name = metric.name
        if metric.alias is not None:
            raw.alias = metric.alias
        if metric.timestamp is not None:
            raw.timestamp = metric.timestamp
        if datatypes:
            raw.datatype = metric.datatype
        if metric.is_historical:
            raw.is_historical = True
        if metric.is_transient:
            raw.is_transient = True
        if metric.value is None:
            raw.is_null = True
        else:
            _set_value(raw, metric.datatype, metric.value)
    return message.SerializeToString()


def now_ms() -> int:
    """The current time in milliseconds since the epoch, as Sparkplug timestamps are."""
    return time.time_ns() // 1_000_000


def json_value(value: Any) -> Any:
    """A decoded metric value as JSON: datetimes become ISO 8601 strings, bytes base64 text,
    and NaN or infinite floats None (strict JSON and PostgreSQL's json types have neither)."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: json_value(item) for key, item in value.items()}
    return value


def iso_timestamp(ms: int | None) -> str | None:
    """Milliseconds since the epoch as an ISO 8601 UTC string (None stays None)."""
    return None if ms is None else _datetime(ms).isoformat(timespec="milliseconds")


# ----------------------------------------------------------------------------------- topics
class SparkplugTopic(NamedTuple):
    """A parsed Sparkplug topic. For `spBv1.0/STATE/<host_id>` only `host_id` is set."""

    message_type: str
    group: str | None = None
    edge_node: str | None = None
    device: str | None = None
    host_id: str | None = None


def parse_topic(topic: str) -> SparkplugTopic:
    """Split a Sparkplug B topic; SparkplugError if it is not one."""
    parts = topic.split("/")
    if parts[0] != NAMESPACE:
        raise SparkplugError(f"{topic}: not a Sparkplug B topic (it must start with {NAMESPACE}/)")
    if len(parts) == 3 and parts[1] == "STATE" and parts[2]:
        return SparkplugTopic("STATE", host_id=parts[2])
    if len(parts) < 4 or not all(parts[1:]):
        raise SparkplugError(
            f"{topic}: not a Sparkplug B topic ({NAMESPACE}/<group>/<type>/<edge_node>[/<device>])"
        )
    group, message_type, edge_node = parts[1], parts[2], parts[3]
    if message_type in NODE_TYPES and len(parts) == 4:
        return SparkplugTopic(message_type, group, edge_node)
    if message_type in DEVICE_TYPES and len(parts) == 5:
        return SparkplugTopic(message_type, group, edge_node, parts[4])
    if message_type in NODE_TYPES or message_type in DEVICE_TYPES:
        raise SparkplugError(f"{topic}: {message_type} has the wrong number of topic levels")
    raise SparkplugError(f"{topic}: unknown Sparkplug message type {message_type!r}")


def node_topic(message_type: str, group: str, edge_node: str, device: str | None = None) -> str:
    """`spBv1.0/<group>/<message_type>/<edge_node>[/<device>]`."""
    topic = f"{NAMESPACE}/{group}/{message_type}/{edge_node}"
    return topic if device is None else f"{topic}/{device}"


def rebirth_request(group: str, edge_node: str) -> tuple[str, bytes]:
    """The NCMD that asks an edge node to publish its NBIRTH and DBIRTHs again.

    Publish it with QoS 0 and retain off. It has a timestamp but no seq (commands carry none).
    """
    payload = Payload(
        metrics=[Metric(name=REBIRTH_METRIC, value=True, datatype=DataType.Boolean)],
        timestamp=now_ms(),
    )
    return node_topic("NCMD", group, edge_node), encode_payload(payload)


def state_topic(host_id: str) -> str:
    """The host application's own STATE topic, `spBv1.0/STATE/<host_id>` (Sparkplug 3.0)."""
    if not host_id or any(c in host_id for c in "/+#"):
        raise SparkplugError(f"invalid Sparkplug host id {host_id!r}")
    return f"{NAMESPACE}/STATE/{host_id}"


def state_will(host_id: str, timestamp: int | None = None) -> tuple[str, bytes]:
    """The STATE death certificate to register as the MQTT will (QoS 1, retained).

    Its timestamp is the time of the CONNECT (default: now); give the same `timestamp` to
    `state_birth`. Publish it yourself, with the current time, before a clean disconnect.
    """
    payload = {"online": False, "timestamp": now_ms() if timestamp is None else timestamp}
    return state_topic(host_id), json.dumps(payload).encode("utf-8")


def state_birth(host_id: str, timestamp: int) -> tuple[str, bytes]:
    """The STATE birth certificate (QoS 1, retained) to publish right after subscribing.

    `timestamp` must be the one of the will registered in the preceding CONNECT: Sparkplug 3.0
    edge nodes compare the two to tell a current STATE from an old one.
    """
    payload = {"online": True, "timestamp": timestamp}
    return state_topic(host_id), json.dumps(payload).encode("utf-8")


# ------------------------------------------------------------------------------ host state
@dataclass
class SparkplugUpdate:
    """What one MQTT message changed.

    `messages`: one JSON-ready dict per node or device that changed (see `SparkplugHost`).
    `rebirth`: (topic, payload) of an NCMD to publish (QoS 0) because the host lost track of
    the node. `problem`: what was wrong or ignored, for the connector's log; it does not name
    the topic (the caller knows it).
    """

    messages: list[dict[str, Any]] = field(default_factory=list)
    rebirth: tuple[str, bytes] | None = None
    problem: str | None = None

    def _note(self, text: str) -> None:
        self.problem = text if self.problem is None else f"{self.problem}; {text}"


@dataclass
class _Device:
    definitions: MetricDefinitions | None = None  # None: no DBIRTH in this node's session
    online: bool = False


@dataclass
class _Node:
    born: bool = False  # an NBIRTH arrived and no NDEATH since
    online: bool = False
    seen: bool = False  # an NBIRTH or NDEATH arrived since this host started
    bd_seq: int | None = None  # of the last NBIRTH, kept after death to spot duplicate wills
    seq: int | None = None
    definitions: MetricDefinitions | None = None
    devices: dict[str, _Device] = field(default_factory=dict)
    rebirth_at: float | None = None


class SparkplugHost:
    """The Sparkplug B host application state of one connector: births, seq, deaths.

    `handle(topic, payload)` takes every message of the connector's Sparkplug subscriptions
    and returns a `SparkplugUpdate` whose `messages` are what the rules see as `payload`:

        {"group": str, "edge_node": str, "device": str | None (None at node level),
         "type": "NBIRTH" | "NDATA" | "NDEATH" | "DBIRTH" | "DDATA" | "DDEATH",
         "seq": int | None, "timestamp": ISO 8601 UTC str | None,
         "metrics": {name: JSON value}, "online": bool}

    Births report all their metrics, DATA the metrics it carries (if one metric appears more
    than once, the last value wins, which the specification makes the most recent one).
    Historical metrics (is_historical: store-and-forward data, not current values) are left
    out. An NDEATH produces one message for the node and one per device that was online, all
    of type "NDEATH" and online False; a DDEATH one for its device; their `metrics` are empty.

    The host asks for a rebirth (`update.rebirth`) when it cannot trust its picture of a node:
    a seq gap, a DBIRTH/DATA/DDEATH before the node's NBIRTH, DDATA of a device without a
    DBIRTH, or a metric it cannot name or type. DATA that revealed a gap is still reported with
    every metric it could name. A node is asked once; again only if `rebirth_retry_s` passed
    without an NBIRTH (the NCMD or the births may have been lost), so a stream of DATA from a
    confused node does not become a stream of commands.

    State lives in memory: after a restart the first DATA of every node triggers a rebirth,
    which rebuilds it. Not thread-safe: the connector calls `handle` from paho's network thread
    only, one message at a time, so there is no lock.
    """

    def __init__(
        self,
        *,
        rebirth_retry_s: float = REBIRTH_RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rebirth_retry_s = rebirth_retry_s
        self.clock = clock
        self._nodes: dict[tuple[str, str], _Node] = {}

    def online(self, group: str, edge_node: str, device: str | None = None) -> bool:
        """Whether the node (or its device) is online as far as this host knows."""
        node = self._nodes.get((group, edge_node))
        if node is None:
            return False
        if device is None:
            return node.online
        return node.online and device in node.devices and node.devices[device].online

    def handle(self, topic: str, payload: bytes) -> SparkplugUpdate:
        """Process one MQTT message; SparkplugError if its topic or payload is malformed."""
        parsed = parse_topic(topic)
        if parsed.message_type in ("STATE", "NCMD", "DCMD"):
            return SparkplugUpdate()  # host states and commands, ours or another host's
        assert parsed.group is not None and parsed.edge_node is not None
        node = self._nodes.setdefault((parsed.group, parsed.edge_node), _Node())
        update = SparkplugUpdate()
        kind = parsed.message_type
        try:
            if kind == "NBIRTH":
                self._nbirth(parsed, node, payload, update)
            elif kind == "NDEATH":
                self._ndeath(parsed, node, payload, update)
            elif kind == "DDEATH":
                self._ddeath(parsed, node, payload, update)
            else:
                self._data_or_dbirth(parsed, node, payload, update)
        except SparkplugError as exc:
            raise SparkplugError(f"{topic}: {exc}") from None
        return update

    # ---------------------------------------------------------------------- message types
    def _nbirth(self, t: SparkplugTopic, node: _Node, data: bytes, update: SparkplugUpdate) -> None:
        payload = decode_payload(data)
        seq = _required_seq(payload)
        bd_seq = _bd_seq(payload)
        if bd_seq is None:
            update._note("NBIRTH has no bdSeq metric: its NDEATH cannot be told from a stale one")
        definitions = MetricDefinitions(payload.metrics)
        for problem in definitions.problems:
            update._note(problem)
        # A new session: everything known about the node and its devices is replaced. The
        # devices' DBIRTHs follow; until then their DDATA triggers a rebirth request.
        node.born, node.online, node.seen, node.bd_seq, node.seq = True, True, True, bd_seq, seq
        node.definitions, node.devices, node.rebirth_at = definitions, {}, None
        update.messages.append(self._message(t, payload, update))

    def _ndeath(self, t: SparkplugTopic, node: _Node, data: bytes, update: SparkplugUpdate) -> None:
        payload = decode_payload(data)
        bd_seq = _bd_seq(payload)
        checkable = bd_seq is not None and node.bd_seq is not None
        if checkable and bd_seq != node.bd_seq:
            update._note(
                f"stale NDEATH ignored: bdSeq {bd_seq}, the node's birth had {node.bd_seq}"
            )
            return
        if node.seen and not node.born:
            # The node is dead already: typically the broker's copy (the will) of an NDEATH the
            # node published itself before disconnecting, which the specification says to ignore.
            return
        if not node.seen:
            update._note("NDEATH of a node whose NBIRTH this host has not seen: bdSeq not checked")
        elif not checkable:
            update._note("bdSeq missing in the NBIRTH or the NDEATH: NDEATH accepted unchecked")
        update.messages.append(self._offline(t, None, "NDEATH", payload))
        for name, device in node.devices.items():
            if device.online:
                update.messages.append(self._offline(t, name, "NDEATH", payload))
        node.born = node.online = False
        node.seen = True
        node.bd_seq = node.bd_seq if node.bd_seq is not None else bd_seq
        node.seq, node.definitions, node.devices = None, None, {}

    def _ddeath(self, t: SparkplugTopic, node: _Node, data: bytes, update: SparkplugUpdate) -> None:
        assert t.device is not None
        payload = decode_payload(data)
        seq = _required_seq(payload)
        if node.born:
            self._check_seq(t, node, seq, update)
        else:
            self._request_rebirth(t, node, update, "DDEATH before the node's NBIRTH")
        node.devices[t.device] = _Device(definitions=None, online=False)
        update.messages.append(self._offline(t, t.device, "DDEATH", payload))

    def _data_or_dbirth(
        self, t: SparkplugTopic, node: _Node, data: bytes, update: SparkplugUpdate
    ) -> None:
        kind = t.message_type
        device = node.devices.get(t.device) if t.device is not None else None
        definitions: MetricDefinitions | None = None
        if kind == "NDATA":
            definitions = node.definitions
        elif kind == "DDATA" and device is not None:
            definitions = device.definitions
        payload = decode_payload(data, definitions if kind != "DBIRTH" else None)
        seq = _required_seq(payload)
        if not node.born:
            self._request_rebirth(t, node, update, f"{kind} before the node's NBIRTH")
        else:
            self._check_seq(t, node, seq, update)
            if kind == "DDATA" and definitions is None:
                self._request_rebirth(
                    t, node, update, f"DDATA of device {t.device!r} without DBIRTH"
                )
        if kind == "DBIRTH":
            born = MetricDefinitions(payload.metrics)
            for problem in born.problems:
                update._note(problem)
            if node.born:
                assert t.device is not None
                node.devices[t.device] = _Device(definitions=born, online=True)
        elif definitions is not None:
            unknown = [m.label for m in payload.metrics if not _resolved(m)]
            if unknown:
                reason = f"metrics not in the birth certificate: {', '.join(unknown)}"
                self._request_rebirth(t, node, update, reason)
        if kind == "DBIRTH" or any(_resolved(m) and not m.is_historical for m in payload.metrics):
            update.messages.append(self._message(t, payload, update))
        elif not all(_resolved(m) for m in payload.metrics):
            update._note(f"{kind} dropped: none of its metrics could be named and typed")
        elif payload.metrics:
            update._note(f"{kind} of historical values only: not passed to the rules")

    # --------------------------------------------------------------------------- helpers
    def _check_seq(self, t: SparkplugTopic, node: _Node, seq: int, update: SparkplugUpdate) -> None:
        expected = None if node.seq is None else (node.seq + 1) % 256
        node.seq = seq
        if expected is not None and seq != expected:
            self._request_rebirth(t, node, update, f"seq gap: expected {expected}, got {seq}")

    def _request_rebirth(
        self, t: SparkplugTopic, node: _Node, update: SparkplugUpdate, reason: str
    ) -> None:
        assert t.group is not None and t.edge_node is not None
        now = self.clock()
        if update.rebirth is not None:
            update._note(reason)
        elif node.rebirth_at is None or now - node.rebirth_at >= self.rebirth_retry_s:
            node.rebirth_at = now
            update.rebirth = rebirth_request(t.group, t.edge_node)
            update._note(f"{reason}: rebirth requested")
        else:
            update._note(f"{reason} (rebirth already requested {now - node.rebirth_at:.1f} s ago)")

    def _message(
        self, t: SparkplugTopic, payload: Payload, update: SparkplugUpdate
    ) -> dict[str, Any]:
        """The rules' view of a birth or DATA message: the metrics it could name and type."""
        metrics: dict[str, Any] = {}
        for metric in payload.metrics:
            if not _resolved(metric) or metric.is_historical:
                continue
            if metric.note is not None:
                update._note(f"metric {metric.label}: {metric.note}")
            metrics[metric.name] = json_value(metric.value)
        return {
            "group": t.group,
            "edge_node": t.edge_node,
            "device": t.device,
            "type": t.message_type,
            "seq": payload.seq,
            "timestamp": iso_timestamp(payload.timestamp),
            "metrics": metrics,
            "online": True,  # a node or device that sends a message is connected
        }

    def _offline(
        self, t: SparkplugTopic, device: str | None, kind: str, payload: Payload
    ) -> dict[str, Any]:
        return {
            "group": t.group,
            "edge_node": t.edge_node,
            "device": device,
            "type": kind,
            "seq": payload.seq,
            "timestamp": iso_timestamp(payload.timestamp),
            "metrics": {},
            "online": False,
        }


def _resolved(metric: Metric) -> bool:
    return metric.name is not None and metric.datatype is not None


def _required_seq(payload: Payload) -> int:
    # Every message of an edge node but NDEATH carries seq; without it the order is unknowable.
    if payload.seq is None:
        raise SparkplugError("payload has no seq")
    if payload.seq > 255:
        raise SparkplugError(f"seq {payload.seq} is not in 0-255")
    return payload.seq


def _bd_seq(payload: Payload) -> int | None:
    for metric in payload.metrics:
        if metric.name == BDSEQ_METRIC and isinstance(metric.value, int):
            return metric.value
    return None
