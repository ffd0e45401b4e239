"""Modbus points: decode/encode register values, plan block reads, read and write over TCP.

The pure half (Point, register_count, decode, encode, plan_reads) knows nothing about the
network, so definitions can be checked and tested without a PLC. The async half drives a
pymodbus ``AsyncModbusTcpClient`` and turns every failure into a ``ModbusError`` whose message
an engineer can act on without reading pymodbus internals.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ExceptionResponse

TABLES = ("coil", "discrete", "holding", "input")
TYPES = ("bool", "int16", "uint16", "int32", "uint32", "float32", "float64", "string")

# Modbus application protocol spec, 6.1-6.4: larger requests are illegal, not just slow.
MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000

Value = bool | int | float | str

BIT_TABLES = ("coil", "discrete")
WRITABLE = ("coil", "holding")

# struct format, register count, integer range (None for floats)
_NUMERIC: dict[str, tuple[str, int, tuple[int, int] | None]] = {
    "int16": ("h", 1, (-(2**15), 2**15 - 1)),
    "uint16": ("H", 1, (0, 2**16 - 1)),
    "int32": ("i", 2, (-(2**31), 2**31 - 1)),
    "uint32": ("I", 2, (0, 2**32 - 1)),
    "float32": ("f", 2, None),
    "float64": ("d", 4, None),
}
_FLOAT32_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]

_TABLE_LABEL = {
    "coil": ("coil", "coils"),
    "discrete": ("discrete input", "discrete inputs"),
    "holding": ("holding register", "holding registers"),
    "input": ("input register", "input registers"),
}


@dataclass(frozen=True)
class Point:
    """One named signal in a PLC's memory.

    ``word_order`` "big" means the high word comes first (Modbus convention, ABCD);
    ``byte_order`` "little" swaps the two bytes inside each register (BADC / DCBA devices).
    ``count`` is the number of registers of a string point and ignored for other types.
    Numbers read are ``raw * scale + offset``.
    """

    name: str
    table: str
    address: int
    type: str = "uint16"
    count: int = 1
    word_order: str = "big"
    byte_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    line: int = 0

    def __post_init__(self) -> None:
        # The default type only makes sense for registers; bit tables hold bool.
        if self.table in BIT_TABLES and self.type == "uint16":
            object.__setattr__(self, "type", "bool")


def _where(point: Point) -> str:
    return f"point {point.name!r}" + (f" (line {point.line})" if point.line else "")


def register_count(point: Point) -> int:
    """Registers (or bits, for coil/discrete) the point occupies."""
    if point.table in BIT_TABLES or point.type == "bool":
        return 1
    if point.type == "string":
        return point.count
    if point.type not in _NUMERIC:
        raise ValueError(f"{_where(point)}: unknown type {point.type!r}")
    return _NUMERIC[point.type][1]


def _swap_bytes(registers: list[int]) -> list[int]:
    return [((r & 0xFF) << 8) | ((r >> 8) & 0xFF) for r in registers]


def _to_bytes(point: Point, registers: list[int]) -> bytes:
    """Registers as read -> big-endian bytes in natural (ABCD) order."""
    regs = [int(r) & 0xFFFF for r in registers]
    if point.byte_order == "little":
        regs = _swap_bytes(regs)
    # Strings are byte sequences, not numbers: word order does not apply to them.
    if point.word_order == "little" and point.type != "string":
        regs.reverse()
    return b"".join(struct.pack(">H", r) for r in regs)


def _from_bytes(point: Point, data: bytes) -> list[int]:
    """Natural big-endian bytes -> registers as the device stores them."""
    regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if point.word_order == "little" and point.type != "string":
        regs.reverse()
    if point.byte_order == "little":
        regs = _swap_bytes(regs)
    return regs


def decode(point: Point, raw: list[int] | list[bool]) -> Value:
    """Turn the point's registers (or bits) into its value."""
    needed = register_count(point)
    if len(raw) < needed:
        raise ValueError(f"{_where(point)}: needs {needed} value(s), got {len(raw)}")
    if point.table in BIT_TABLES or point.type == "bool":
        return bool(raw[0])
    data = _to_bytes(point, [int(r) for r in raw[:needed]])
    if point.type == "string":
        # latin-1 maps every byte, so a garbled register never makes a read fail.
        return data.rstrip(b"\x00 ").decode("latin-1")
    fmt = _NUMERIC[point.type][0]
    value = struct.unpack(">" + fmt, data)[0]
    if point.scale == 1 and point.offset == 0:
        return value
    return value * point.scale + point.offset


def _number_text(number: float) -> str:
    if isinstance(number, int) or (abs(number) < 1e15 and number.is_integer()):
        return str(int(number))
    return f"{number:.10g}"


def _range_text(point: Point, low: float, high: float) -> str:
    """Allowed range in engineering units, as the user would enter values."""
    ends = sorted((low * point.scale + point.offset, high * point.scale + point.offset))
    if point.scale == 1 and point.offset == 0:
        ends = [low, high]
    return f"{_number_text(ends[0])}..{_number_text(ends[1])}"


def encode(point: Point, value: Any) -> list[int] | bool:
    """Turn a value into what ``write_point`` sends: a bool for coils, registers otherwise."""
    where = _where(point)
    if point.table not in WRITABLE:
        raise ValueError(
            f"{where}: {_TABLE_LABEL[point.table][1]} are read-only; "
            "only coils and holding registers can be written"
        )
    if point.table == "coil" or point.type == "bool":
        if not isinstance(value, bool) and value not in (0, 1):
            raise ValueError(f"{where}: expects true/false (or 0/1), got {value!r}")
        flag = bool(value)
        return flag if point.table == "coil" else [int(flag)]
    if point.type == "string":
        if not isinstance(value, str):
            raise ValueError(f"{where}: expects text, got {value!r}")
        try:
            data = value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"{where}: {value!r} has characters outside latin-1") from None
        room = 2 * point.count
        if len(data) > room:
            raise ValueError(f"{where}: at most {room} characters fit, got {len(data)}")
        return _from_bytes(point, data.ljust(room, b"\x00"))
    if point.type not in _NUMERIC:
        raise ValueError(f"{where}: unknown type {point.type!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expects a number, got {value!r}")
    if point.scale == 0:
        raise ValueError(f"{where}: scale 0 cannot be written (every value reads the same)")
    fmt, _, limits = _NUMERIC[point.type]
    exact = (value - point.offset) / point.scale
    if limits is None:
        high = _FLOAT32_MAX if point.type == "float32" else float("inf")
        if math.isfinite(exact) and abs(exact) > high:
            raise ValueError(
                f"{where}: {value!r} is out of range for {point.type} "
                f"(allowed {_range_text(point, -high, high)})"
            )
        raw: int | float = exact
    else:
        low, high = limits
        if not math.isfinite(exact):
            raise ValueError(f"{where}: {value!r} is not a finite number")
        scaled = point.scale != 1 or point.offset != 0
        # Scaling is inherently lossy (21.5 / 0.1 = 214.99999...), so round; an unscaled
        # integer point given 3.7 is a mistake worth reporting.
        if scaled:
            raw = round(exact)
        elif exact != int(exact):
            raise ValueError(f"{where}: {point.type} needs a whole number, got {value!r}")
        else:
            raw = int(exact)
        if not low <= raw <= high:
            raise ValueError(
                f"{where}: {value!r} is out of range for {point.type} "
                f"(allowed {_range_text(point, low, high)})"
            )
    return _from_bytes(point, struct.pack(">" + fmt, raw))


@dataclass
class ReadBlock:
    """One Modbus read request covering several points of one table."""

    table: str
    start: int
    count: int
    points: list[Point] = field(default_factory=list)


def plan_reads(
    points: Iterable[Point],
    max_registers: int = MAX_READ_REGISTERS,
    max_bits: int = MAX_READ_BITS,
    max_gap: int = 0,
) -> list[ReadBlock]:
    """Coalesce points into as few requests as the protocol limits allow.

    Points of one table whose addresses touch (or leave at most ``max_gap`` unused
    registers/bits between them) share a request. Blocks come out by table (in ``TABLES``
    order), then by address, so the same definition always produces the same requests.
    """
    if not 1 <= max_registers <= MAX_READ_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MAX_READ_REGISTERS}, not {max_registers}")
    if not 1 <= max_bits <= MAX_READ_BITS:
        raise ValueError(f"max_bits must be 1..{MAX_READ_BITS}, not {max_bits}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be 0 or more, not {max_gap}")
    by_table: dict[str, list[Point]] = {table: [] for table in TABLES}
    seen: set[str] = set()
    for point in points:
        if point.name in seen:
            # read_points returns values by name: a second point would hide the first.
            raise ValueError(f"{_where(point)}: the name is used twice")
        seen.add(point.name)
        if point.table not in by_table:
            raise ValueError(f"{_where(point)}: unknown table {point.table!r}")
        limit = max_bits if point.table in BIT_TABLES else max_registers
        size = register_count(point)
        if size > limit:
            raise ValueError(f"{_where(point)}: {size} registers exceed one request ({limit})")
        if point.address < 0 or point.address + size > 65536:
            raise ValueError(f"{_where(point)}: address {point.address} is outside 0..65535")
        by_table[point.table].append(point)

    blocks: list[ReadBlock] = []
    for table, members in by_table.items():
        limit = max_bits if table in BIT_TABLES else max_registers
        members.sort(key=lambda p: (p.address, register_count(p), p.name))
        block: ReadBlock | None = None
        for point in members:
            end = point.address + register_count(point)
            if block is not None:
                block_end = block.start + block.count
                if point.address - block_end <= max_gap and end - block.start <= limit:
                    block.count = max(block_end, end) - block.start
                    block.points.append(point)
                    continue
            block = ReadBlock(table, point.address, end - point.address, [point])
            blocks.append(block)
    return blocks


class ModbusError(Exception):
    """A Modbus request failed; the message names the connector and what to check.

    ``exception_code`` is the Modbus exception code when the device answered with one;
    ``unreachable`` is True when the PLC could not be reached or did not answer at all,
    so a poller can back off instead of retrying at full rate.
    """

    def __init__(
        self, message: str, *, exception_code: int | None = None, unreachable: bool = False
    ) -> None:
        super().__init__(message)
        self.exception_code = exception_code
        self.unreachable = unreachable


def _exception_text(code: int, device_id: int) -> str:
    texts = {
        1: "illegal function (the device does not support this request)",
        2: "illegal data address",
        3: "illegal data value",
        4: f"device {device_id} does not answer / device failure",
        5: "acknowledged, still processing (device busy with a long command)",
        6: "device busy",
        7: "negative acknowledge",
        8: "memory parity error",
        10: "gateway path unavailable",
        11: f"gateway: device {device_id} does not answer",
    }
    return f"{texts.get(code, 'unknown exception')} (Modbus exception {code})"


def _span(table: str, start: int, count: int) -> str:
    one, many = _TABLE_LABEL[table]
    return f"{one} {start}" if count == 1 else f"{many} {start}..{start + count - 1}"


def _endpoint(client: Any) -> str:
    params = getattr(client, "comm_params", None)
    host = getattr(params, "host", "?")
    port = getattr(params, "port", "?")
    return f"{host}:{port}"


async def _request(
    client: Any,
    device_id: int,
    connector: str,
    what: str,
    send: Callable[[], Awaitable[Any]],
) -> Any:
    try:
        response = await send()
    except ConnectionException:
        raise ModbusError(
            f"{connector}: the PLC at {_endpoint(client)} is unreachable "
            f"(connection refused or closed; {what})",
            unreachable=True,
        ) from None
    except ModbusIOException:
        timeout = getattr(getattr(client, "comm_params", None), "timeout_connect", None)
        within = f" within {timeout:g} s" if isinstance(timeout, int | float) else ""
        raise ModbusError(
            f"{connector}: the PLC at {_endpoint(client)} timed out: no answer{within} ({what})",
            unreachable=True,
        ) from None
    if isinstance(response, ExceptionResponse):
        code = response.exception_code
        raise ModbusError(
            f"{connector}: {what}: {_exception_text(code, device_id)}", exception_code=code
        )
    if response is None or response.isError():
        raise ModbusError(f"{connector}: {what}: invalid response {response!r}")
    return response


async def read_points(
    client: Any, device_id: int, blocks: list[ReadBlock], connector: str
) -> dict[str, Value]:
    """Read every block (one request each) and decode its points, by point name."""
    methods = {
        "coil": client.read_coils,
        "discrete": client.read_discrete_inputs,
        "holding": client.read_holding_registers,
        "input": client.read_input_registers,
    }
    values: dict[str, Value] = {}
    for block in blocks:
        method = methods[block.table]
        what = _span(block.table, block.start, block.count)
        response = await _request(
            client,
            device_id,
            connector,
            what,
            lambda m=method, b=block: m(b.start, count=b.count, device_id=device_id),
        )
        # Bit responses are padded to whole bytes, so only a short answer is wrong.
        got = response.bits if block.table in BIT_TABLES else response.registers
        if len(got) < block.count:
            raise ModbusError(f"{connector}: {what}: short answer ({len(got)} values)")
        for point in block.points:
            first = point.address - block.start
            values[point.name] = decode(point, got[first : first + register_count(point)])
    return values


async def write_point(
    client: Any, device_id: int, point: Point, value: Any, connector: str
) -> None:
    """Write one coil or holding-register point; ValueError for a value it cannot hold."""
    payload = encode(point, value)
    what = _span(point.table, point.address, register_count(point))
    if point.table == "coil":

        def send() -> Awaitable[Any]:
            return client.write_coil(point.address, payload, device_id=device_id)

    elif isinstance(payload, list) and len(payload) == 1:

        def send() -> Awaitable[Any]:
            return client.write_register(point.address, payload[0], device_id=device_id)

    else:

        def send() -> Awaitable[Any]:
            return client.write_registers(point.address, payload, device_id=device_id)

    await _request(client, device_id, connector, f"write {what}", send)
