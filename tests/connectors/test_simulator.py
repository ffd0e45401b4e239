"""The simulated factory: the press model, its Modbus TCP server and `taktflow simulate`."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from connector_support import Mosquitto, wait_for
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pymodbus.client import AsyncModbusTcpClient

from taktflow.cli import cli
from taktflow.connectors.modbus_points import Point, decode, plan_reads, read_points, write_point
from taktflow.connectors.paho_support import stop_loop
from taktflow.connectors.simulator import (
    ALARM,
    ALARM_CODES,
    IDLE,
    RUNNING,
    SETUP,
    SimulatedPlc,
    SimulatedPress,
    SimulatedTestStation,
    StationPublisher,
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
    settings = load_simulation(
        root / "seed_data/simulation.yaml", root / "connectors", "mqtt://127.0.0.1:1884"
    )
    assert [m.id for m in settings.machines] == ["press_1", "laser_1", "press_2"]
    press_1 = settings.machines[0]
    assert press_1.id == "press_1" and press_1.connector.modbus is not None
    assert press_1.connector.modbus.port == 5020
    [station] = settings.stations
    # The connector file names no broker: the configured one (TAKTFLOW_MQTT_URL) is used.
    assert (station.id, station.url) == ("test_station", "mqtt://127.0.0.1:1884")
    assert station.topic == "plant/p1/station/10/result"
    assert 0 < station.fail_rate < 0.2 and station.speed > 1


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


# ---------------------------------------------------------------- the test station (model)

LIMITS = {"torque": (11.0, 13.0), "angle": (30.0, 60.0)}


def station(**options: Any) -> SimulatedTestStation:
    defaults: dict[str, Any] = {"cycle_s": 10.0, "fail_rate": 0.1, "seed": 11, "epoch": 1.8e9,
                                "run_prefix": "ts-run"}  # fmt: skip
    return SimulatedTestStation(**{**defaults, **options})


def test_a_station_result_is_one_part_with_its_verdict_and_measured_values() -> None:
    results = station(serial_prefix="SN10-", serial_start=41).step(10_000)
    assert 950 <= len(results) <= 1050  # one part per 10 s cycle
    first = results[0]
    assert set(first) == {"serial", "run_id", "result", "torque", "angle", "defects", "timestamp"}
    assert first["serial"] == "SN10-000041" and results[1]["serial"] == "SN10-000042"
    assert len({r["run_id"] for r in results}) == len(results)
    for r in results:
        inside = {name: low <= r[name] <= high for name, (low, high) in LIMITS.items()}
        if r["result"] == "PASS":
            assert all(inside.values()) and r["defects"] == []
        else:
            # One value beyond its limit, and the defect names it and the side.
            [defect] = r["defects"]
            name, side = defect.rsplit("_", 1)
            assert [n for n, ok in inside.items() if not ok] == [name]
            assert (r[name] < LIMITS[name][0]) == (side == "low")
    # A passing part's torque is spread around the middle of its limits, not at the edges.
    torques = [r["torque"] for r in results if r["result"] == "PASS"]
    mean = sum(torques) / len(torques)
    assert 11.9 < mean < 12.1
    assert 0.15 < (sum((t - mean) ** 2 for t in torques) / len(torques)) ** 0.5 < 0.35
    # Real time: the epoch of the start plus the simulated time of the part (speed 1).
    assert first["timestamp"].endswith("Z")
    assert first["timestamp"].startswith("2027-01-15T08:")


def test_a_station_with_the_same_seed_repeats_its_results_whatever_the_step_size() -> None:
    fine, coarse = station(), station()
    stepped = [r for second in range(1, 2001) for r in fine.step(second)]
    assert stepped == coarse.step(2000)
    other = station(seed=12).step(2000)
    assert [r["torque"] for r in other[:100]] != [r["torque"] for r in stepped[:100]]


def test_run_ids_never_repeat_across_runs_even_with_the_same_seed() -> None:
    one, two = SimulatedTestStation(seed=1), SimulatedTestStation(seed=1)
    ids = [r["run_id"] for r in one.step(500)] + [r["run_id"] for r in two.step(500)]
    assert len(ids) == len(set(ids)) > 20


def test_the_station_fail_rate_and_speed() -> None:
    results = station(fail_rate=0.05, cycle_s=1.0).step(4000)
    failed = sum(r["result"] == "FAIL" for r in results)
    assert 0.04 < failed / len(results) < 0.06
    slow, fast = station(), station(speed=10)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "timestamp"} for r in rs]  # noqa: E731
    assert strip(fast.step(100)) == strip(slow.step(1000))


# ---------------------------------------------------------------- test station settings


def station_file(folder: Path, port: int | None = None, ident: str = "station_t") -> str:
    url = f"  url: mqtt://127.0.0.1:{port}\n" if port else ""
    (folder / f"{ident}.yaml").write_text(
        f"connector: {ident}\ntype: mqtt\nmqtt:\n{url}  client_id: c-{ident}\n"
        'subscriptions:\n  - {topic: "plant/+/station/10/result", qos: 1}\n',
        encoding="utf-8",
    )
    return ident


def test_a_machine_with_an_mqtt_connector_is_a_test_station(tmp_path: Path) -> None:
    station_file(tmp_path)
    settings = tmp_path / "simulation.yaml"
    settings.write_text(
        "machines:\n  - id: ts\n    connector: station_t\n    topic: plant/p2/station/10/result\n"
        '    cycle_s: 12\n    fail_rate: 0.2\n    torque: [5, 6.5]\n    serial_prefix: "0042"\n'
        "    serial_start: 100\n    speed: 4\n    seed: 3\n",
        encoding="utf-8",
    )
    loaded = load_simulation(settings, tmp_path, "mqtt://broker.plant:1883")
    assert loaded.machines == []
    [made] = loaded.stations
    assert (made.url, made.topic, made.cycle_s, made.fail_rate, made.speed, made.seed) == (
        "mqtt://broker.plant:1883", "plant/p2/station/10/result", 12, 0.2, 4, 3,
    )  # fmt: skip
    assert made.limits == {"torque": (5, 6.5), "angle": (30, 60)}
    first = made.station().step(20)[0]
    assert first["serial"] == "0042000100" and first["run_id"].startswith("ts-")
    # A url in the simulation file goes before the connector's (or the configured) broker.
    settings.write_text(settings.read_text() + "    url: mqtt://127.0.0.1:2883\n")
    assert load_simulation(settings, tmp_path).stations[0].url == "mqtt://127.0.0.1:2883"


def test_bad_station_settings_are_reported_with_their_lines(tmp_path: Path) -> None:
    station_file(tmp_path)
    (tmp_path / "press.yaml").write_text(connector_yaml(5999), encoding="utf-8")
    settings = tmp_path / "simulation.yaml"
    settings.write_text(
        "machines:\n"
        "  - id: ts\n"  # 2
        "    connector: station_t\n"
        "    topic: plant/p1/station/11/result\n"  # 4: not subscribed
        "    fail_rate: 1.5\n"  # 5
        "    torque: [13, 11]\n"  # 6
        "    reject_rate: 0.1\n"  # 7: a press's key
        "    url: http://broker\n"  # 8
        "    serial_prefix: SN 10\n"  # 9
        "  - id: ts2\n"  # 10
        "    connector: station_t\n"
        "    topic: plant/+/station/10/result\n"  # 12: a wildcard
        "  - id: p\n"  # 13
        "    connector: press\n"
        "    fail_rate: 0.1\n"  # 15: a station's key
        "  - id: ts\n"  # 16: the id again
        "    connector: station_t\n",
        encoding="utf-8",
    )
    with pytest.raises(DefinitionError) as caught:
        load_simulation(settings, tmp_path)
    text = "\n".join(str(p) for p in caught.value.problems)
    lines = sorted(p.line for p in caught.value.problems if p.line is not None)
    assert lines == [4, 5, 6, 7, 8, 9, 12, 15, 16], text
    assert "simulation.yaml:4" in text and "does not subscribe to topic" in text
    assert "unknown key 'reject_rate' (allowed for a test station" in text
    assert "unknown key 'fail_rate' (allowed for a press" in text
    assert "torque is [min, max] limits with min < max" in text
    assert "machine id 'ts' is used twice (first on line 2)" in text


# ---------------------------------------------------------------- over MQTT (Mosquitto)


class Collector:
    """Subscribes to a topic (MQTT 3.1.1, QoS 1) and keeps what arrives; with a client id, a
    persistent session that survives a broker restart."""

    def __init__(self, port: int, topic: str, client_id: str = "") -> None:
        self.results: list[dict[str, Any]] = []
        self.qos: set[int] = set()
        self.topics: set[str] = set()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv311, clean_session=not client_id,
        )  # fmt: skip
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, 1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._message
        self.port = port

    def _message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.results.append(json.loads(msg.payload))
        self.qos.add(msg.qos)
        self.topics.add(msg.topic)

    def __enter__(self) -> Collector:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self.subscribed.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        stop_loop(self.client)

    def serials(self) -> set[str]:
        return {r["serial"] for r in self.results}


class Publishing:
    """A StationPublisher in an event loop of its own thread, as `taktflow simulate` runs it."""

    def __init__(self, publisher: StationPublisher) -> None:
        self.publisher = publisher
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> StationPublisher:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.publisher.start(), self.loop).result(5)
        return self.publisher

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.publisher.stop(5), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def station_settings(tmp_path: Path, port: int, extra: str = "") -> Any:
    station_file(tmp_path, port)
    settings = tmp_path / "simulation.yaml"
    settings.write_text(
        "machines:\n  - id: ts\n    connector: station_t\n    topic: plant/p1/station/10/result\n"
        + extra,
        encoding="utf-8",
    )
    [made] = load_simulation(settings, tmp_path).stations
    return made


def test_the_station_publishes_results_where_its_connector_subscribes(
    broker: int, tmp_path: Path
) -> None:
    settings = station_settings(tmp_path, broker, "    cycle_s: 1\n    speed: 50\n    seed: 4\n"
                                "    serial_prefix: SN-\n")  # fmt: skip
    said: list[str] = []
    with (
        Collector(broker, "plant/+/station/10/result") as got,
        Publishing(settings.publisher(announce=said.append)),
    ):
        wait_for(lambda: len(got.results) >= 20)
    assert got.qos == {1} and got.topics == {"plant/p1/station/10/result"}
    first = got.results[0]
    assert first["serial"] == "SN-000001" and first["result"] in ("PASS", "FAIL")
    assert isinstance(first["torque"], float) and isinstance(first["angle"], float)
    assert first["run_id"].startswith("ts-") and first["timestamp"].endswith("Z")
    assert f"ts: connected to mqtt://127.0.0.1:{broker}" in said


def test_the_fail_rate_holds_over_hundreds_of_parts(broker: int, tmp_path: Path) -> None:
    settings = station_settings(tmp_path, broker, "    cycle_s: 1\n    speed: 500\n"
                                "    fail_rate: 0.1\n    seed: 21\n")  # fmt: skip
    with Collector(broker, "plant/+/station/10/result") as got, Publishing(settings.publisher()):
        wait_for(lambda: len(got.results) >= 400, timeout=10)
    results = got.results[:400]
    failed = sum(r["result"] == "FAIL" for r in results)
    assert 0.06 <= failed / 400 <= 0.14
    # With a fixed seed, exactly the parts the model fails (in order: QoS 1 from one client).
    expected = settings.station().step(2)[:400]  # 2 s at speed 500: about a thousand parts
    assert [(r["serial"], r["result"]) for r in results] == [
        (r["serial"], r["result"]) for r in expected
    ]


def test_the_speed_factor_speeds_up_the_parts_per_real_second(broker: int, tmp_path: Path) -> None:
    counts = {}
    for speed in (1, 40):
        settings = station_settings(
            tmp_path, broker, f"    cycle_s: 1\n    cycle_noise: 0\n    speed: {speed}\n"
        )
        with Collector(broker, "plant/+/station/10/result") as got:
            publisher = settings.publisher()  # its simulated time starts now
            started = time.monotonic()
            with Publishing(publisher):
                time.sleep(1.5)
                elapsed = time.monotonic() - started
            wait_for(lambda: len(got.results) >= publisher.published)  # noqa: B023
        counts[speed] = (publisher.published, elapsed)
    slow, (fast, elapsed) = counts[1][0], counts[40]
    assert slow <= 2
    # One part per simulated second, 40 simulated seconds per real one; the station's last
    # tick may come a little before the end.
    assert 40 * (elapsed - 0.5) <= fast <= 40 * elapsed + 1


def test_a_broker_that_is_down_is_waited_for_and_nothing_is_lost(
    broker: int, tmp_path: Path
) -> None:
    # `broker` only makes the test skip where there is no Mosquitto: this one runs its own, in
    # a folder the mosquitto user can reach (pytest's are root's alone, and there a Mosquitto
    # started as root silently stores nothing: a restart would lose the queued messages).
    folder = Path(tempfile.mkdtemp(prefix="taktflow-mosquitto-"))
    folder.chmod(0o755)
    own = Mosquitto(folder).start()
    try:
        settings = station_settings(tmp_path, own.port, "    cycle_s: 1\n    speed: 100\n")
        topic = "plant/+/station/10/result"
        with Collector(own.port, topic, client_id="collector") as got:
            own.stop()  # the collector's session (and what is queued for it) is kept on disk
            said: list[str] = []
            with Publishing(settings.publisher(announce=said.append)) as publisher:
                wait_for(lambda: publisher.published >= 50)
                assert not publisher.connected
                assert any("not reachable (yet); retrying" in line for line in said)
                own.start()
                # paho retries with a doubling pause (1, 2, 4 s...): allow for a few.
                wait_for(lambda: publisher.connected and got.results, timeout=15)
                own.restart()  # and once more while it publishes
                wait_for(lambda: any("lost the broker" in line for line in said))
                wait_for(lambda: publisher.connected, timeout=10)
                time.sleep(0.3)
            # Every part the station tested reached the collector, the queued ones included.
            expected = {f"SN{n:06d}" for n in range(1, publisher.published + 1)}
            wait_for(lambda: got.serials() >= expected, timeout=10)
            assert publisher.dropped == 0
    finally:
        own.stop()
        shutil.rmtree(folder, ignore_errors=True)
