"""Modbus points: codec, read planning, and real requests against a simulated PLC."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from pymodbus.client import AsyncModbusTcpClient

from taktflow.connectors.modbus_points import (
    ModbusError,
    Point,
    ReadBlock,
    decode,
    encode,
    plan_reads,
    read_points,
    register_count,
    write_point,
)

T = TypeVar("T")

ORDERS = list(itertools.product(("big", "little"), ("big", "little")))


def hr(name: str, address: int, type: str = "uint16", **kw: Any) -> Point:
    return Point(name=name, table="holding", address=address, type=type, **kw)


# ---------------------------------------------------------------- codec


@pytest.mark.parametrize(
    ("type", "count", "expected"),
    [
        ("bool", 1, 1),
        ("int16", 1, 1),
        ("uint16", 1, 1),
        ("int32", 1, 2),
        ("uint32", 1, 2),
        ("float32", 1, 2),
        ("float64", 1, 4),
        ("string", 6, 6),
    ],
)
def test_register_count(type: str, count: int, expected: int) -> None:
    assert register_count(hr("p", 0, type, count=count)) == expected


def test_bit_tables_default_to_bool_and_take_one_bit() -> None:
    for table in ("coil", "discrete"):
        point = Point(name="p", table=table, address=3)
        assert point.type == "bool"
        assert register_count(point) == 1
    assert Point(name="p", table="holding", address=0).type == "uint16"


@pytest.mark.parametrize(
    ("type", "value", "word", "byte", "registers"),
    [
        ("float32", 1.5, "big", "big", [0x3FC0, 0x0000]),
        ("float32", 1.5, "little", "big", [0x0000, 0x3FC0]),
        ("float32", 1.5, "big", "little", [0xC03F, 0x0000]),
        ("float32", 1.5, "little", "little", [0x0000, 0xC03F]),
        ("uint32", 0x12345678, "big", "big", [0x1234, 0x5678]),
        ("uint32", 0x12345678, "little", "big", [0x5678, 0x1234]),
        ("uint32", 0x12345678, "big", "little", [0x3412, 0x7856]),
        ("uint32", 0x12345678, "little", "little", [0x7856, 0x3412]),
        ("int32", -2, "big", "big", [0xFFFF, 0xFFFE]),
        ("int32", -2, "little", "big", [0xFFFE, 0xFFFF]),
        ("int16", -2, "big", "big", [0xFFFE]),
        ("int16", -2, "big", "little", [0xFEFF]),
        ("uint16", 0x1234, "little", "little", [0x3412]),
        ("float64", 1.0, "big", "big", [0x3FF0, 0, 0, 0]),
        ("float64", 1.0, "little", "big", [0, 0, 0, 0x3FF0]),
        ("float64", 1.0, "big", "little", [0xF03F, 0, 0, 0]),
    ],
)
def test_known_register_values(
    type: str, value: float, word: str, byte: str, registers: list[int]
) -> None:
    point = hr("p", 0, type, word_order=word, byte_order=byte)
    assert encode(point, value) == registers
    decoded = decode(point, registers)
    assert decoded == value
    assert isinstance(decoded, type_of(value))


def type_of(value: Any) -> type:
    return float if isinstance(value, float) else int


SAMPLES = {
    "int16": [-32768, -1, 0, 1, 32767],
    "uint16": [0, 1, 0xABCD, 65535],
    "int32": [-(2**31), -70000, 0, 70000, 2**31 - 1],
    "uint32": [0, 65536, 0xDEADBEEF, 2**32 - 1],
    "float32": [0.0, -1.25, 3.5e10, 1e-3],
    "float64": [0.0, -1.25, 3.141592653589793, 1e300],
}


@pytest.mark.parametrize(("word", "byte"), ORDERS)
@pytest.mark.parametrize("type", sorted(SAMPLES))
def test_round_trip_every_type_and_order(type: str, word: str, byte: str) -> None:
    point = hr("p", 0, type, word_order=word, byte_order=byte)
    for value in SAMPLES[type]:
        registers = encode(point, value)
        assert isinstance(registers, list)
        assert len(registers) == register_count(point)
        assert all(0 <= r <= 0xFFFF for r in registers)
        result = decode(point, registers)
        if type == "float32":
            assert result == pytest.approx(value, rel=1e-7)
        else:
            assert result == value
            assert isinstance(result, type_of(value))


def test_scale_and_offset() -> None:
    temp = hr("temp", 0, "int16", scale=0.1, offset=-40.0, unit="°C")
    assert decode(temp, [615]) == pytest.approx(21.5)
    assert encode(temp, 21.5) == [615]
    # Lossy scaling rounds instead of refusing 21.5 / 0.1 = 214.999...
    assert encode(hr("t", 0, "int16", scale=0.1), 21.5) == [215]
    assert isinstance(decode(hr("t", 0, "int16", scale=1.0, offset=0.0), [5]), int)
    assert isinstance(decode(hr("t", 0, "int16", scale=2.0), [5]), float)
    assert decode(hr("t", 0, "uint32", scale=0.5), [0, 3]) == 1.5


def test_strings() -> None:
    point = hr("order", 0, "string", count=4)
    assert decode(point, [0x4142, 0x4300, 0, 0]) == "ABC"
    assert decode(point, [0x4142, 0x2020, 0x2000, 0]) == "AB"
    assert decode(point, [0xE400, 0, 0, 0]) == "ä"  # latin-1, never a decode error
    assert encode(point, "ABC") == [0x4142, 0x4300, 0, 0]
    swapped = hr("order", 0, "string", count=2, byte_order="little")
    assert decode(swapped, [0x4241, 0x0043]) == "ABC"
    assert encode(swapped, "ABC") == [0x4241, 0x0043]
    # Word order does not reorder the characters of a string.
    assert decode(hr("s", 0, "string", count=2, word_order="little"), [0x4142, 0x4344]) == "ABCD"
    with pytest.raises(ValueError, match=r"'order'.*at most 8 characters"):
        encode(point, "ABCDEFGHI")
    with pytest.raises(ValueError, match="latin-1"):
        encode(point, "€")


def test_bits() -> None:
    coil = Point(name="run", table="coil", address=1)
    assert decode(coil, [True]) is True
    assert decode(coil, [0]) is False
    assert encode(coil, True) is True
    assert encode(coil, 0) is False
    with pytest.raises(ValueError, match="'run'.*true/false"):
        encode(coil, 2)


@pytest.mark.parametrize(
    ("point", "value", "message"),
    [
        (hr("speed", 0, "uint16", line=12), 70000, r"'speed' \(line 12\).*uint16.*0\.\.65535"),
        (hr("speed", 0, "uint16"), -1, r"'speed'.*0\.\.65535"),
        (hr("temp", 0, "int16"), 32768, r"'temp'.*-32768\.\.32767"),
        (hr("temp", 0, "int16", scale=0.1), 4000, r"'temp'.*-3276\.8\.\.3276\.7"),
        (hr("count", 0, "uint32"), 2**32, r"'count'.*0\.\.4294967295"),
        (hr("count", 0, "int32"), -(2**31) - 1, r"'count'.*int32"),
        (hr("level", 0, "float32"), 1e39, r"'level'.*float32.*3\.402823466e\+38"),
        (hr("speed", 0, "uint16"), 3.7, r"'speed'.*whole number"),
        (hr("speed", 0, "uint16"), "fast", r"'speed'.*expects a number"),
        (hr("speed", 0, "uint16"), True, r"'speed'.*expects a number"),
        (hr("speed", 0, "uint16", scale=0), 1, r"'speed'.*scale 0"),
        (Point(name="door", table="discrete", address=0), True, r"'door'.*read-only"),
        (Point(name="rpm", table="input", address=0), 1, r"'rpm'.*read-only"),
    ],
)
def test_encode_refuses(point: Point, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode(point, value)


def test_decode_needs_enough_registers() -> None:
    with pytest.raises(ValueError, match="needs 2"):
        decode(hr("p", 0, "float32"), [1])


# ---------------------------------------------------------------- plan_reads


def spans(blocks: list[ReadBlock]) -> list[tuple[str, int, int, list[str]]]:
    return [(b.table, b.start, b.count, [p.name for p in b.points]) for b in blocks]


def test_plan_coalesces_adjacent_points_per_table() -> None:
    points = [
        hr("b", 2, "float32"),
        Point(name="c1", table="coil", address=5),
        hr("a", 0, "uint16"),
        hr("c", 1, "int16"),  # overlaps nothing; fills the gap between a and b
        hr("far", 50, "uint16"),
        Point(name="c0", table="coil", address=4),
        Point(name="in", table="input", address=7, type="uint32"),
        Point(name="d", table="discrete", address=0),
    ]
    assert spans(plan_reads(points)) == [
        ("coil", 4, 2, ["c0", "c1"]),
        ("discrete", 0, 1, ["d"]),
        ("holding", 0, 4, ["a", "c", "b"]),
        ("holding", 50, 1, ["far"]),
        ("input", 7, 2, ["in"]),
    ]
    # Same input in another order: same requests.
    assert spans(plan_reads(reversed(points))) == spans(plan_reads(points))


def test_plan_gap_and_overlap() -> None:
    points = [hr("a", 0), hr("b", 3), hr("c", 10)]
    assert [b.count for b in plan_reads(points)] == [1, 1, 1]
    assert spans(plan_reads(points, max_gap=2)) == [
        ("holding", 0, 4, ["a", "b"]),
        ("holding", 10, 1, ["c"]),
    ]
    overlapping = [hr("whole", 0, "uint32"), hr("low", 1, "uint16")]
    assert spans(plan_reads(overlapping)) == [("holding", 0, 2, ["whole", "low"])]


def test_plan_respects_protocol_limits() -> None:
    regs = [hr(f"r{i}", i) for i in range(300)]
    blocks = plan_reads(regs)
    assert [(b.start, b.count) for b in blocks] == [(0, 125), (125, 125), (250, 50)]
    # A 2-register value never straddles two requests.
    floats = [hr(f"f{i}", 2 * i, "float32") for i in range(100)]
    assert all(b.count <= 125 and b.count % 2 == 0 for b in plan_reads(floats))
    coils = [Point(name=f"c{i}", table="coil", address=i) for i in range(4500)]
    assert [b.count for b in plan_reads(coils)] == [2000, 2000, 500]
    assert [b.count for b in plan_reads(regs[:10], max_registers=4)] == [4, 4, 2]


def test_plan_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="max_registers"):
        plan_reads([], max_registers=126)
    with pytest.raises(ValueError, match="max_bits"):
        plan_reads([], max_bits=2001)
    with pytest.raises(ValueError, match="'a'.*used twice"):
        plan_reads([hr("a", 0), hr("a", 5)])
    with pytest.raises(ValueError, match="'s'.*exceed"):
        plan_reads([hr("s", 0, "string", count=126)])
    with pytest.raises(ValueError, match="'x'.*outside"):
        plan_reads([hr("x", 65535, "uint32")])


# ---------------------------------------------------------------- against a simulated PLC


def run(
    plc: Any,
    body: Callable[[AsyncModbusTcpClient], Awaitable[T]],
    timeout: float = 1.0,
    **client_options: Any,
) -> T:
    """Run ``body(client)`` with a client connected to ``plc.host:plc.port`` on a new loop."""

    async def main() -> T:
        # The async client must be built inside a running loop; retries=0 keeps failures fast.
        client = AsyncModbusTcpClient(
            plc.host, port=plc.port, timeout=timeout, retries=0, **client_options
        )
        try:
            await client.connect()
            return await body(client)
        finally:
            client.close()

    return asyncio.run(main())


def test_read_every_table_in_planned_requests(plc: Any) -> None:
    plc.set("coil", 2, [True, False, True])
    plc.set("discrete", 10, [True])
    plc.set("holding", 0, [0x3FC0, 0x0000, 615, 0x4142, 0x4300, 0xFFFE])
    plc.set("input", 20, [0x5678, 0x1234, 7])
    points = [
        Point(name="run", table="coil", address=2),
        Point(name="fault", table="coil", address=3),
        Point(name="lamp", table="coil", address=4),
        Point(name="door", table="discrete", address=10),
        hr("pressure", 0, "float32", unit="bar"),
        hr("temp", 2, "int16", scale=0.1, offset=-40.0),
        hr("order", 3, "string", count=2),
        hr("delta", 5, "int16"),
        Point(name="count", table="input", address=20, type="uint32", word_order="little"),
        Point(name="mode", table="input", address=22),
    ]
    blocks = plan_reads(points)
    assert len(blocks) == 4
    requests: list[Any] = []

    def trace(sending: bool, pdu: Any) -> Any:
        if sending:
            requests.append(pdu)
        return pdu

    # Count requests on the wire through pymodbus' own PDU trace hook.
    values = run(plc, lambda client: read_points(client, 1, blocks, "press7"), trace_pdu=trace)
    assert values == {
        "run": True,
        "fault": False,
        "lamp": True,
        "door": True,
        "pressure": 1.5,
        "temp": pytest.approx(21.5),
        "order": "ABC",
        "delta": -2,
        "count": 0x12345678,
        "mode": 7,
    }
    assert len(requests) == 4


def test_write_then_read_back(plc: Any) -> None:
    level = hr("level", 40, "float32", word_order="little", byte_order="little")
    speed = hr("speed", 44, "uint16", scale=0.5)
    name = hr("recipe", 50, "string", count=3)
    lamp = Point(name="lamp", table="coil", address=9)

    async def body(client: AsyncModbusTcpClient) -> dict[str, Any]:
        await write_point(client, 1, level, -2.75, "press7")
        await write_point(client, 1, speed, 600.0, "press7")
        await write_point(client, 1, name, "PX-9", "press7")
        await write_point(client, 1, lamp, True, "press7")
        return await read_points(client, 1, plan_reads([level, speed, name, lamp]), "press7")

    assert run(plc, body) == {"level": -2.75, "speed": 600.0, "recipe": "PX-9", "lamp": True}
    assert plc.get("holding", 44) == [1200]
    assert plc.get("holding", 40, 2) == [0x0000, 0x30C0]  # -2.75 = 0xC0300000, DCBA


def test_illegal_address_names_connector_and_registers(plc: Any) -> None:
    blocks = plan_reads([hr("beyond", 199, "uint32")])  # the PLC has 200 registers

    with pytest.raises(ModbusError) as caught:
        run(plc, lambda client: read_points(client, 1, blocks, "press7"))
    assert str(caught.value) == (
        "press7: holding registers 199..200: illegal data address (Modbus exception 2)"
    )
    assert caught.value.exception_code == 2
    assert not caught.value.unreachable

    with pytest.raises(ModbusError, match=r"press7: write coil 500: illegal data address"):
        point = Point(name="x", table="coil", address=500)
        run(plc, lambda client: write_point(client, 1, point, True, "press7"))


def test_unknown_device_id(plc: Any) -> None:
    # The simulator answers for a device id it does not have with exception 4.
    blocks = plan_reads([Point(name="rpm", table="input", address=0)])
    with pytest.raises(ModbusError) as caught:
        run(plc, lambda client: read_points(client, 3, blocks, "press7"))
    assert str(caught.value) == (
        "press7: input register 0: device 3 does not answer / device failure (Modbus exception 4)"
    )


def test_silent_plc_times_out() -> None:
    # A listening socket that never accepts: the kernel completes the TCP handshake, so the
    # client connects, sends, and waits for an answer that never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        plc = SimpleNamespace(host="127.0.0.1", port=silent.getsockname()[1])
        blocks = plan_reads([hr("a", 0)])
        started = time.monotonic()
        with pytest.raises(ModbusError) as caught:
            run(plc, lambda client: read_points(client, 1, blocks, "press7"), timeout=0.3)
    assert time.monotonic() - started < 2
    assert caught.value.unreachable
    assert str(caught.value) == (
        f"press7: the PLC at 127.0.0.1:{plc.port} timed out: no answer within 0.3 s "
        "(holding register 0)"
    )


def test_stopped_plc_is_reported_unreachable_quickly(plc: Any) -> None:
    blocks = plan_reads([hr("a", 0)])
    endpoint = f"{plc.host}:{plc.port}"

    async def stop_then_read(client: AsyncModbusTcpClient) -> Any:
        # Stopped while connected: the request goes out and nothing answers.
        await asyncio.to_thread(plc.stop)
        return await read_points(client, 1, blocks, "press7")

    started = time.monotonic()
    with pytest.raises(ModbusError) as caught:
        run(plc, stop_then_read, timeout=0.3)
    assert time.monotonic() - started < 2
    assert caught.value.unreachable
    assert f"press7: the PLC at {endpoint}" in str(caught.value)

    # Nothing listening any more: connect fails and the read is refused at once.
    started = time.monotonic()
    with pytest.raises(ModbusError, match=rf"press7: the PLC at {endpoint} is unreachable"):
        run(plc, lambda client: read_points(client, 1, blocks, "press7"), timeout=0.3)
    assert time.monotonic() - started < 2
