"""The simulated factory: the press model, its Modbus TCP server and `taktflow simulate`."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pymodbus.client import AsyncModbusTcpClient

from taktflow.cli import cli
from taktflow.connectors.modbus_points import Point, decode, plan_reads, read_points, write_point
from taktflow.connectors.simulator import (
    ALARM,
    ALARM_CODES,
    IDLE,
    RUNNING,
    SETUP,
    SimulatedPlc,
    SimulatedPress,
    encode_any,
    load_simulation,
)
from taktflow.errors import DefinitionError

POINTS = {
    "part_counter": Point("part_counter", "holding", 0, "uint32"),
    "reject_counter": Point("reject_counter", "holding", 2, "uint32"),
    "state_code": Point("state_code", "holding", 4, "uint16"),
    "alarm_code": Point("alarm_code", "holding", 5, "uint16"),
    "oil_temp": Point("oil_temp", "input", 0, "float32"),
    "reset": Point("reset", "coil", 0),
}


def quiet_press(**options: Any) -> SimulatedPress:
    """A press without alarms or rejects unless a test asks for them."""
    defaults: dict[str, Any] = {"cycle_s": 2.0, "alarms_per_hour": 0, "reject_rate": 0, "seed": 7}
    return SimulatedPress(**{**defaults, **options})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connector_yaml(port: int) -> str:
    return f"""connector: sim_press
type: modbus
modbus: {{host: 127.0.0.1, port: {port}, device_id: 1}}
points:
  part_counter: {{table: holding, address: 0, type: uint32}}
  reject_counter: {{table: holding, address: 2, type: uint32}}
  state_code: {{table: holding, address: 4, type: uint16}}
  alarm_code: {{table: holding, address: 5, type: uint16}}
  oil_temp: {{table: input, address: 0, type: float32}}
  reset: {{table: coil, address: 0}}
"""


# ---------------------------------------------------------------- behaviour model


def test_same_seed_same_history_whatever_the_step_size() -> None:
    options = {"alarms_per_hour": 30, "reject_rate": 0.1, "alarm_s": (20, 60), "seed": 42}
    fine, coarse, other = quiet_press(**options), quiet_press(**options), quiet_press(seed=43)
    for second in range(1, 3601):
        fine.step(second)
    coarse.step(3600)
    other.step(3600)
    assert fine.registers() == coarse.registers()
    assert fine.parts > 0 and fine.rejects > 0
    assert other.registers() != fine.registers()


def test_parts_accumulate_at_about_the_cycle_rate() -> None:
    press = quiet_press(cycle_s=2.0, cycle_noise=0.1)
    press.step(1000)
    assert 475 <= press.parts <= 525
    assert press.state == RUNNING


def test_speed_multiplies_simulated_time() -> None:
    slow, fast = quiet_press(), quiet_press(speed=10)
    slow.step(1000)
    fast.step(100)
    assert fast.registers() == slow.registers()


def test_rejects_never_exceed_parts() -> None:
    press = quiet_press(cycle_s=1.0, reject_rate=0.1)
    for minute in range(1, 181):
        press.step(minute * 60)
        assert press.rejects <= press.parts
    assert 0.08 < press.rejects / press.parts < 0.12


def test_an_alarm_stops_production_then_it_resumes() -> None:
    press = quiet_press(cycle_s=1.0, alarms_per_hour=60, alarm_s=(50, 60), seed=3)
    now = 0
    while press.state != ALARM:
        now += 1
        press.step(now)
        assert now < 3600, "no alarm within an hour at 60 alarms per hour"
    assert press.alarm_code in ALARM_CODES
    assert press.registers()["state_code"] == 2
    parts, temp = press.parts, press.oil_temp
    press.step(now + 48)  # the alarm began within the last second and lasts at least 50 s
    assert press.state == ALARM and press.parts == parts
    assert press.oil_temp < temp  # a stopped press cools down
    now += 61
    press.step(now)
    assert press.state != ALARM or press.parts > parts  # over, maybe followed by another
    while press.parts == parts:
        now += 1
        press.step(now)
        assert now < 7200
    assert press.registers()["part_counter"] > parts


def test_reset_zeroes_counters_and_sets_up_before_running() -> None:
    press = quiet_press(setup_s=120)
    press.step(600)
    assert press.parts > 0
    press.reset(600)
    assert press.registers()["part_counter"] == 0 and press.rejects == 0
    assert press.state == SETUP
    press.step(700)
    assert press.state == SETUP and press.parts == 0
    press.step(800)
    assert press.state == RUNNING and press.parts > 0


def test_oil_warms_while_running_and_cools_while_idle() -> None:
    press = quiet_press()
    start = press.oil_temp
    press.step(3600)
    hot = press.oil_temp
    assert hot > start + 20
    press.stop(3600)
    assert press.state == IDLE
    press.step(7200)
    assert press.oil_temp < hot - 15
    assert press.parts == press.registers()["part_counter"]
    press.start(7200)
    assert press.state == RUNNING


def test_register_image_follows_the_point_layout() -> None:
    press = quiet_press()
    press.step(100)
    swapped = {**POINTS, "part_counter": Point("part_counter", "holding", 10, "uint32",
                                               word_order="little")}  # fmt: skip
    writes = {(table, address): values for table, address, values in press.image(swapped)}
    assert decode(swapped["part_counter"], writes[("holding", 10)]) == press.parts
    assert decode(POINTS["oil_temp"], writes[("input", 0)]) == pytest.approx(press.oil_temp, 1e-3)
    assert ("coil", 0) not in writes  # reset is written by clients, never by the press
    assert encode_any(POINTS["reset"], True) == [True]


# ---------------------------------------------------------------- settings


def test_load_simulation_reads_machines_and_their_connector(tmp_path: Path) -> None:
    (tmp_path / "press.yaml").write_text(connector_yaml(5999), encoding="utf-8")
    settings = tmp_path / "simulation.yaml"
    settings.write_text(
        "machines:\n  - id: p\n    connector: press\n    cycle_s: 3\n    alarm_s: [5, 10]\n"
        "    speed: 20\n    seed: 9\n",
        encoding="utf-8",
    )
    machine = load_simulation(settings, tmp_path).machines[0]
    assert (machine.id, machine.cycle_s, machine.alarm_s, machine.speed) == ("p", 3, (5, 10), 20)
    assert machine.connector.modbus is not None and machine.connector.modbus.port == 5999
    assert machine.seed == 9 and machine.press().cycle_s == 3


def test_load_simulation_names_the_line_of_an_unknown_key(tmp_path: Path) -> None:
    (tmp_path / "press.yaml").write_text(connector_yaml(5999), encoding="utf-8")
    settings = tmp_path / "simulation.yaml"
    settings.write_text(
        "machines:\n  - id: p\n    connector: press\n    cycel_s: 3\n    speed: -1\n",
        encoding="utf-8",
    )
    with pytest.raises(DefinitionError) as caught:
        load_simulation(settings, tmp_path)
    found = [(p.line, p.reason) for p in caught.value.problems]
    assert found[0][0] == 4 and "unknown key 'cycel_s'" in found[0][1]
    assert found[1][0] == 5 and "speed" in found[1][1]


def test_load_simulation_reports_a_missing_connector(tmp_path: Path) -> None:
    settings = tmp_path / "simulation.yaml"
    settings.write_text("machines:\n  - id: p\n    connector: nowhere\n", encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_simulation(settings, tmp_path)
    assert "cannot read connector" in str(caught.value.problems[0])


def test_the_demo_settings_load() -> None:
    root = Path(__file__).resolve().parents[2]
    settings = load_simulation(root / "seed_data/simulation.yaml", root / "connectors")
    [press_1] = settings.machines
    assert press_1.id == "press_1" and press_1.connector.modbus is not None
    assert press_1.connector.modbus.port == 5020


# ---------------------------------------------------------------- over Modbus TCP


def test_simulated_plc_serves_rising_counters_and_resets_on_coil() -> None:
    async def main() -> None:
        press = SimulatedPress(cycle_s=1.0, cycle_noise=0, alarms_per_hour=0, speed=100, seed=1)
        plc = SimulatedPlc(press, POINTS, host="127.0.0.1", port=0, tick_s=0.05)
        await plc.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=plc.port, timeout=1, retries=0)
        try:
            assert plc.port != 0
            await client.connect()
            blocks = plan_reads(p for p in POINTS.values() if p.name != "reset")
            first = await read_points(client, 1, blocks, "sim")
            await asyncio.sleep(0.4)
            later = await read_points(client, 1, blocks, "sim")
            assert later["part_counter"] > first["part_counter"]
            assert later["state_code"] == RUNNING
            assert later["oil_temp"] > 25

            await write_point(client, 1, POINTS["reset"], True, "sim")
            await asyncio.sleep(0.2)
            after = await read_points(client, 1, blocks, "sim")
            assert after["state_code"] == SETUP
            assert after["part_counter"] == 0
        finally:
            client.close()
            await plc.stop()

    asyncio.run(main())


def test_cli_simulate_serves_until_the_duration(tmp_path: Path) -> None:
    port = free_port()
    connector = tmp_path / "press.yaml"
    connector.write_text(connector_yaml(port), encoding="utf-8")
    settings = tmp_path / "simulation.yaml"
    settings.write_text(
        f"machines:\n  - id: press_x\n    connector: {connector}\n    speed: 50\n    seed: 1\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli, ["simulate", "--file", str(settings), "--duration", "1"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert f"press_x: simulated PLC on 127.0.0.1:{port} (Modbus TCP, device 1)" in result.stdout


def test_cli_simulate_reports_bad_settings(tmp_path: Path) -> None:
    settings = tmp_path / "simulation.yaml"
    settings.write_text("machines:\n  - id: p\n    connector: nowhere\n    x: 1\n")
    result = CliRunner().invoke(cli, ["simulate", "--file", str(settings), "--duration", "0"])
    assert result.exit_code != 0
    assert "simulation.yaml:4" in result.stderr and "unknown key 'x'" in result.stderr
