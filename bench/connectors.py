"""Connector benchmark: MQTT QoS 1 messages into taktflow's durable inbox, vs plain paho.

On loopback with a private Mosquitto; the plain paho client is measured in the same run.

Figures (events/s are the median of --rounds rounds of --messages messages each, ~90-byte JSON
payloads with a unique message id, one MQTT connector with one `condition` rule whose
`message_id` is that id):

- backlog events/s: the messages are published while the connector is stopped (its MQTT 5
  persistent session keeps them at the broker); timed from starting `ConnectorRuntime.run`
  until the connector reports the last one committed to the inbox (status `events_out`,
  checked afterwards by counting the connector's rows in `inbox_message`).
- live events/s: the connector runs while another process publishes the messages as fast as
  QoS 1 allows; timed from the first publish to the last committed inbox row.
- dispatched: the same start, until no inbox row of the round is `pending` any more (nothing
  waits for these messages, so the dispatch only marks them buffered). The runtime keeps
  running until then, so no round leaves work for the next.
- plain: the same two figures for the reference consumer, a plain paho client (manual ack,
  MQTT 5 persistent session) that inserts one row per message into SQLite (WAL,
  synchronous=NORMAL), commits and then acknowledges; `ratio` is taktflow / plain.
- diagnosis: calls of the engine's `record_connector_events` (events per call = batch size,
  milliseconds per call, share of the committed-rows time spent in it), database commits per
  event (storing and dispatching), and microseconds of CPU per event (Linux /proc) of the
  bench process as a whole and of its threads by kind (paho's network thread, the MQTT
  committer and dispatcher threads if the runtime has them), of Mosquitto and of the
  publisher. With CPython's GIL only one thread of the process runs Python at a time, so
  process CPU close to wall time per event means the process is the bottleneck.
- latency: M instances of a one-step YAML workflow wait for message `bench_step`, each
  correlated by its own key; another process publishes one message per key at a steady
  --rate, each carrying its publish time. The latency of a message is publish -> the moment
  the transaction that delivered it to its instance (and thereby completed the instance) is
  committed and visible to another database connection: a reader polls the
  `message_received` rows of `audit_event`, which that transaction writes, every 5 ms, so a
  figure is late by at most 5 ms. `delivery began` is the same from the audit row's own
  timestamp (the clock reading when the delivering transaction started), a lower bound.
  100 more instances take warm-up messages first, at the same rate; the measured messages are
  published once those are delivered (a dispatcher process has started, the spec is parsed).
  Delivery runs as `connectors run` runs it (--dispatch). A worker thread (`engine.run_worker`,
  as `taktflow serve` runs one) is running, in case delivery is left to it.
  `taktflow.process.tune_for_service()` is applied at start-up, as `taktflow serve`, `worker`
  and `connectors run` do (--no-gc-tune: not).

    .venv/bin/python bench/connectors.py [--messages 10000] [--rounds 5] [--rate 500]
        [--latency-messages 3000] [--database-url URL] [--no-gc-tune] [--json]

The last line reads `connectors: backlog N events/s (R x plain), live ..., latency p99 M ms`.

The default database is a migrated temporary SQLite file; --database-url names another
(PostgreSQL; it is migrated, and the bench leaves its rows there). The plain client always
writes SQLite. Nothing here asserts a timing: it prints figures (`--json`: one JSON document
on stdout; progress always goes to stderr). taktflow is imported lazily, so that the
publisher process (spawned) starts quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from taktflow.connectors.paho_support import stop_loop

MOSQUITTO = "/usr/sbin/mosquitto"
#: A stalled consumer (no new commit for this long) ends the bench with its status.
STALL_S = 30.0
#: How often the latency reader looks for newly committed deliveries.
WATCH_INTERVAL_S = 0.005
#: Latency messages sent (and instances started) before the measured ones, not counted.
LATENCY_WARMUP = 100
WAITER = """\
process: bench_step
steps:
  - wait: Machine event
    message: bench_step
    correlate: [key]
    into: event
"""


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- broker
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """A Mosquitto of the bench's own on a free loopback port (no persistence file: the
    sessions live as long as the broker, which is all the bench needs)."""

    def __init__(self, binary: str, folder: Path, max_inflight: int) -> None:
        self.binary, self.folder, self.max_inflight = binary, folder, max_inflight
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Broker:
        for _ in range(5):
            port = free_port()
            conf = self.folder / "mosquitto.conf"
            conf.write_text(
                f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                # The default of 1000 silently drops QoS 1 messages for an offline session.
                "max_queued_messages 10000000\n"
                # Unacknowledged QoS 1 messages in flight to one client. Mosquitto 2.0.11 keeps
                # to it until acknowledgements come in bursts (a consumer that acks a batch
                # after each commit), then sends hundreds more: see docs/performance.md.
                f"max_inflight_messages {self.max_inflight}\n"
            )
            process = subprocess.Popen([self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)  # fmt: skip
            deadline = time.monotonic() + 5
            while process.poll() is None and time.monotonic() < deadline and not listening(port):
                time.sleep(0.05)
            if process.poll() is None and listening(port):
                self.port, self.process = port, process
                return self
            process.kill()
            process.wait()
        raise SystemExit(f"{self.binary} did not start (tried five ports)")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def mosquitto_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.splitlines()[0].removeprefix("mosquitto version ").strip() if out else "?"


# ---------------------------------------------------------------------- publisher process
def payload(prefix: str, key: str, i: int) -> str:
    # ~90 bytes: a unique message id (the rule's message_id), a correlation key, the publish
    # time (seconds since the epoch; the latency part reads it back from the audit row).
    return json.dumps(
        {"msg_id": f"{prefix}-{i:06d}", "key": f"{key}-{i:06d}", "machine": "CNC-07",
         "count": i, "sent": round(time.time(), 6)},
        separators=(",", ":"),
    )  # fmt: skip


def _publisher_main(port: int, pipe: Any) -> None:
    """Another process, as a machine would be: publishes the jobs it is sent, QoS 1, and
    answers with the time of the first publish and of the last broker acknowledgement."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}",
                         protocol=MQTTProtocolVersion.MQTTv5)  # fmt: skip
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    pipe.send("ready")
    while (job := pipe.recv()) is not None:
        topic, prefix, key, n, rate = job
        infos = []
        first = time.time()
        for i in range(n):
            if rate:
                delay = first + i / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
            infos.append(client.publish(topic, payload(prefix, key, i), qos=1))
        for info in infos:
            info.wait_for_publish(120)
        pipe.send({"first": first, "acked": time.time(), "rate": n / (time.time() - first)})
    client.disconnect()
    stop_loop(client)


class Publisher:
    def __init__(self, port: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(target=_publisher_main, args=(port, child), daemon=True)
        self.process.start()
        if not self.pipe.poll(60) or self.pipe.recv() != "ready":
            raise SystemExit("the publisher process did not connect to the broker")
        self.pid = self.process.pid

    def send(self, topic: str, prefix: str, key: str, n: int, rate: float | None = None) -> None:
        self.pipe.send((topic, prefix, key, n, rate))

    def result(self, timeout: float = 600) -> dict[str, float]:
        if not self.pipe.poll(timeout):
            raise SystemExit("the publisher did not finish")
        return self.pipe.recv()

    def publish(self, topic: str, prefix: str, key: str, n: int) -> dict[str, float]:
        self.send(topic, prefix, key, n)
        return self.result()

    def close(self) -> None:
        if self.process.is_alive():
            self.pipe.send(None)
            self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()


# ---------------------------------------------------------------------- consumers
def connector_yaml(ident: str, port: int, message: str) -> str:
    return f"""\
connector: {ident}
type: mqtt
mqtt:
  url: "mqtt://127.0.0.1:{port}"
  client_id: taktflow-{ident}
  session_expiry_s: 600
subscriptions:
  - {{topic: "bench/{ident}/+/event", qos: 1}}
rules:
  - id: event
    trigger: condition
    condition: payload.key is defined
    message: {message}
    message_id: payload.msg_id
    correlation: {{key: payload.key}}
    variables: {{sent: payload.sent, count: payload.count}}
"""


def topic_of(ident: str) -> str:
    return f"bench/{ident}/cnc-07/event"


#: The database the dispatcher process delivers from; None: a thread of the bench delivers.
DISPATCH: dict[str, str | None] = {"url": None}


class TaktflowConsumer:
    """`taktflow connectors run` for one connector: the runtime in its own thread and loop."""

    def __init__(self, engine: Any, ident: str, port: int, message: str = "bench_event") -> None:
        from taktflow.connectors.definition import parse_connector
        from taktflow.connectors.runtime import ConnectorRuntime

        definition = parse_connector(connector_yaml(ident, port, message), f"{ident}.yaml")
        dispatcher = None
        if DISPATCH["url"]:
            # As `taktflow connectors run` does: delivery in a child process.
            from taktflow.connectors.runtime import ProcessDispatcher

            dispatcher = ProcessDispatcher(
                [sys.executable, "-c", "from taktflow.cli import main; main()", "connectors",
                 "dispatch"], env={**os.environ, "TAKTFLOW_DATABASE_URL": DISPATCH["url"]},
            )  # fmt: skip
        self.runtime = ConnectorRuntime([definition], engine, dispatcher=dispatcher)
        self.stop_event: asyncio.Event | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self.stop_event = asyncio.Event()
            await self.runtime.run(self.stop_event)

        self.loop.run_until_complete(main())
        self.loop.close()

    def start(self) -> TaktflowConsumer:
        self.thread.start()
        return self

    def status(self) -> dict[str, Any]:
        return self.runtime.statuses()[0]

    def connected(self) -> bool:
        return self.status()["state"] == "connected"

    def done(self) -> int:
        status = self.status()
        return status["events_out"] + status["duplicates"] + status["rule_errors"]

    def stop(self) -> None:
        while self.stop_event is None and self.thread.is_alive():
            time.sleep(0.01)
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)
        if self.thread.is_alive():
            raise SystemExit("the connector runtime did not stop within 30 s")


class PlainConsumer:
    """The reference: paho with manual ack and an MQTT 5 persistent session; each message is
    one INSERT into SQLite (WAL, synchronous=NORMAL) and a commit, then its acknowledgement."""

    def __init__(self, db_path: str, ident: str, port: int) -> None:
        self.db = sqlite3.connect(db_path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY, msg_id TEXT UNIQUE NOT "
            "NULL, topic TEXT NOT NULL, payload TEXT NOT NULL, received_at REAL NOT NULL)"
        )
        self.db.commit()
        self.port, self.ident, self.count = port, ident, 0
        self.error: str | None = None
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"plain-{ident}",
            protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True,
        )  # fmt: skip
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(f"bench/{self.ident}/+/event", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
            self.db.execute(
                "INSERT OR IGNORE INTO inbox (msg_id, topic, payload, received_at) "
                "VALUES (?, ?, ?, ?)",
                (data["msg_id"], msg.topic, msg.payload.decode(), time.time()),
            )
            self.db.commit()
            client.ack(msg.mid, msg.qos)
            self.count += 1
        except Exception as exc:  # noqa: BLE001 - an exception would end paho's loop thread
            self.error = f"{type(exc).__name__}: {exc}"

    def start(self) -> PlainConsumer:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 600
        self.client.connect("127.0.0.1", self.port, clean_start=False, properties=properties)
        self.client.loop_start()
        return self

    def connected(self) -> bool:
        return self.subscribed.is_set()

    def done(self) -> int:
        if self.error:
            raise SystemExit(f"plain client failed: {self.error}")
        return self.count

    def stop(self) -> None:
        self.client.disconnect()
        stop_loop(self.client)
        self.db.close()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting until {what}")
        time.sleep(0.01)


def wait_for_count(consumer: Any, n: int, what: str) -> float:
    """time.time() when consumer.done() first reached n (polled every 5 ms)."""
    last, moved = -1, time.monotonic()
    while True:
        count = consumer.done()
        if count >= n:
            return time.time()
        if count != last:
            last, moved = count, time.monotonic()
        elif time.monotonic() - moved > STALL_S:
            status = consumer.status() if hasattr(consumer, "status") else {}
            raise SystemExit(f"{what}: stalled at {count}/{n} for {STALL_S:.0f} s; {status}")
        time.sleep(0.005)


# ---------------------------------------------------------------------- probes
class Probe:
    """Counts what the runtime did, for the diagnosis: calls of the engine's
    `record_connector_events` (events per call, time per call; the call includes delivering
    the events if the engine delivers right after the commit) and database commits."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.calls = self.events = self.commits = 0
        self.seconds = 0.0
        real = engine.record_connector_events

        def timed(*args: Any, **kwargs: Any) -> Any:
            events = args[2] if len(args) > 2 else kwargs.get("events")
            if events is not None and not isinstance(events, list | tuple):
                events = list(events)
                args = (*args[:2], events, *args[3:])
            t0 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1
                self.events += len(events) if events is not None else 0

        engine.record_connector_events = timed
        event.listen(engine.bind, "commit", self._commit)

    def _commit(self, conn: Any) -> None:
        self.commits += 1

    def snapshot(self) -> tuple[int, int, int, float]:
        return self.calls, self.events, self.commits, self.seconds


def _cpu_of(stat: Path) -> float | None:
    """CPU seconds (user + system) of a process or thread from its /proc stat file."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_kind(name: str) -> str:
    for prefix, kind in (("paho-mqtt-client", "paho"), ("taktflow-mqtt", "committer"),
                         ("taktflow-dispatch", "dispatcher")):  # fmt: skip
        if name.startswith(prefix):
            return kind
    return "other"


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far: by each live thread of this process (keyed kind#id), by this
    whole process, and by the given other processes (Linux /proc; empty elsewhere)."""
    found: dict[str, float] = {}
    for thread in threading.enumerate():
        used = _cpu_of(Path(f"/proc/self/task/{thread.native_id}/stat"))
        if used is not None:
            found[f"{_thread_kind(thread.name)}#{thread.native_id}"] = used
    if found:
        found["process"] = time.process_time()
        for name, pid in pids.items():
            used = _cpu_of(Path(f"/proc/{pid}/stat"))
            if used is not None:
                found[name] = used
    return found


def cpu_per_event(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """Microseconds of CPU per event by thread kind and process, between two snapshots."""
    used: dict[str, float] = {}
    for key, value in after.items():
        kind = key.split("#")[0]
        used[kind] = used.get(kind, 0.0) + value - before.get(key, 0.0)
    return {kind: 1e6 * seconds / n for kind, seconds in used.items()}


# ---------------------------------------------------------------------- throughput
class Throughput:
    def __init__(self, engine: Any, bind: Any, broker: Broker, publisher: Publisher,
                 plain_db: str, token: str) -> None:  # fmt: skip
        self.engine, self.bind, self.broker, self.publisher = engine, bind, broker, publisher
        self.plain_db, self.token = plain_db, token
        self.probe = Probe(engine)
        self.pids = {"mosquitto": broker.pid, "publisher": publisher.pid}
        self.reset()

    def reset(self) -> None:
        self.diagnosis: dict[str, list[dict[str, float]]] = {"backlog": [], "live": []}
        self.cpu: dict[str, dict[str, list[dict[str, float]]]] = {
            side: {"backlog": [], "live": []} for side in ("taktflow", "plain")
        }

    def consumer(self, side: str, ident: str) -> Any:
        if side == "taktflow":
            return TaktflowConsumer(self.engine, ident, self.broker.port)
        return PlainConsumer(self.plain_db, ident, self.broker.port)

    def stored(self, side: str, ident: str) -> int:
        if side == "plain":
            with sqlite3.connect(self.plain_db) as db:
                (count,) = db.execute(
                    "SELECT count(*) FROM inbox WHERE msg_id LIKE ?", (f"{ident}-%",)
                ).fetchone()
            return count
        from sqlalchemy import text

        with self.bind.connect() as conn:
            return conn.execute(
                text("SELECT count(*) FROM inbox_message WHERE source = :s"),
                {"s": f"connector:{ident}"},
            ).scalar_one()

    def pending(self, ident: str) -> int:
        from sqlalchemy import text

        with self.bind.connect() as conn:
            return conn.execute(
                text("SELECT count(*) FROM inbox_message WHERE source = :s AND status = :p"),
                {"s": f"connector:{ident}", "p": "pending"},
            ).scalar_one()

    def dispatched(self, ident: str, consumer: TaktflowConsumer) -> float:
        """time.time() when no inbox row of the connector is pending any more (polled every
        0.1 s): each was delivered or, as here nothing waits for them, buffered."""
        last, moved = -1, time.monotonic()
        while (pending := self.pending(ident)) > 0:
            if pending != last:
                last, moved = pending, time.monotonic()
            elif time.monotonic() - moved > STALL_S:
                raise SystemExit(f"{pending} inbox rows stay pending; {consumer.status()}")
            time.sleep(0.1)
        return time.time()

    def round(self, side: str, mode: str, n: int, label: str) -> dict[str, float]:
        """One round: {"committed": events/s} (taktflow: also "dispatched")."""
        ident = f"{self.token}-{label}-{side[0]}{mode[0]}"
        topic = topic_of(ident)
        if mode == "backlog":
            # First connection: creates the persistent session and its subscription.
            consumer = self.consumer(side, ident).start()
            wait_until(consumer.connected, f"{side} subscribed")
            consumer.stop()
            self.publisher.publish(topic, ident, ident, n)
            before, cpu = self.probe.snapshot(), cpu_snapshot(self.pids)
            t0 = time.time()
            consumer = self.consumer(side, ident).start()
            t1 = wait_for_count(consumer, n, f"{side} {mode}")
        else:
            consumer = self.consumer(side, ident).start()
            wait_until(consumer.connected, f"{side} subscribed")
            before, cpu = self.probe.snapshot(), cpu_snapshot(self.pids)
            self.publisher.send(topic, ident, ident, n)
            t1 = wait_for_count(consumer, n, f"{side} {mode}")
            t0 = self.publisher.result()["first"]
        # The runtime keeps running until its events are dispatched, so that no round leaves
        # work behind for the next one.
        t2 = self.dispatched(ident, consumer) if side == "taktflow" else t1
        cpu = cpu_per_event(cpu, cpu_snapshot(self.pids), n)
        consumer.stop()
        stored = self.stored(side, ident)
        if stored != n:
            raise SystemExit(f"{side} {mode}: {stored} rows stored for {n} messages")
        figures = {"committed": n / (t1 - t0)}
        self.cpu[side][mode].append({**cpu, "wall": 1e6 * (t2 - t0) / n})
        if side == "taktflow":
            status = consumer.status()
            if status["events_out"] != n:
                raise SystemExit(f"taktflow {mode}: status after the round: {status}")
            calls, events, commits, seconds = (
                b - a for a, b in zip(before, self.probe.snapshot(), strict=True)
            )
            self.diagnosis[mode].append(
                {"calls": calls, "events": events, "commits": commits,
                 "ms_per_call": 1000 * seconds / calls if calls else 0.0,
                 "share_in_call": seconds / (t1 - t0)}
            )  # fmt: skip
            figures["dispatched"] = n / (t2 - t0)
        return figures


def median_by_key(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({key for row in rows for key in row})
    return {key: statistics.median(row.get(key, 0.0) for row in rows) for key in keys}


def diagnose(rounds: list[dict[str, float]]) -> dict[str, float | None]:
    """The probe's figures over the measured rounds of the taktflow side."""
    calls, events = sum(d["calls"] for d in rounds), sum(d["events"] for d in rounds)
    if not calls:  # the runtime no longer calls record_connector_events
        return dict.fromkeys(("events_per_call", "commits_per_event", "ms_per_call",
                              "share_in_call"))  # fmt: skip
    return {
        "events_per_call": events / calls,
        "commits_per_event": sum(d["commits"] for d in rounds) / events,
        "ms_per_call": statistics.median(d["ms_per_call"] for d in rounds),
        "share_in_call": statistics.median(d["share_in_call"] for d in rounds),
    }


def run_throughput(args: argparse.Namespace, bench: Throughput) -> dict[str, Any]:
    progress(f"throughput warm-up ({min(500, args.messages)} messages per case, not counted)")
    for side in ("taktflow", "plain"):
        for mode in ("backlog", "live"):
            bench.round(side, mode, min(500, args.messages), "w")
    bench.reset()
    rounds: dict[str, dict[str, list[dict[str, float]]]] = {
        side: {"backlog": [], "live": []} for side in ("taktflow", "plain")
    }
    for r in range(args.rounds):
        # Alternate which side goes first, so drifts of this shared machine hit both.
        sides = ["taktflow", "plain"] if r % 2 == 0 else ["plain", "taktflow"]
        for mode in ("backlog", "live"):
            for side in sides:
                rounds[side][mode].append(bench.round(side, mode, args.messages, f"r{r}"))
        t, p = rounds["taktflow"], rounds["plain"]
        progress(
            f"round {r + 1}/{args.rounds}: backlog taktflow {t['backlog'][-1]['committed']:6.0f}"
            f"/s ({t['backlog'][-1]['dispatched']:.0f}/s dispatched), plain "
            f"{p['backlog'][-1]['committed']:6.0f}/s; live taktflow "
            f"{t['live'][-1]['committed']:6.0f}/s ({t['live'][-1]['dispatched']:.0f}/s "
            f"dispatched), plain {p['live'][-1]['committed']:6.0f}/s"
        )
    result: dict[str, Any] = {}
    for mode in ("backlog", "live"):
        t = [f["committed"] for f in rounds["taktflow"][mode]]
        d = [f["dispatched"] for f in rounds["taktflow"][mode]]
        p = [f["committed"] for f in rounds["plain"][mode]]
        result[mode] = {
            "taktflow_per_s": statistics.median(t),
            "dispatched_per_s": statistics.median(d),
            "plain_per_s": statistics.median(p),
            "ratio": statistics.median(t) / statistics.median(p),
            "taktflow_rounds": t,
            "dispatched_rounds": d,
            "plain_rounds": p,
            **diagnose(bench.diagnosis[mode]),
            # Median microseconds of CPU per event, from the start to the last dispatch.
            "cpu_us_per_event": {side: median_by_key(bench.cpu[side][mode])
                                 for side in ("taktflow", "plain")},
        }  # fmt: skip
    return result


# ---------------------------------------------------------------------- latency
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def wait_for_seen(seen: dict[str, Any], n: int, consumer: Any, what: str) -> None:
    """Until `n` deliveries are seen; stops the bench when none comes for STALL_S."""
    last_count, moved, shown = -1, time.monotonic(), time.monotonic()
    while len(seen) < n:
        if len(seen) != last_count:
            last_count, moved = len(seen), time.monotonic()
        elif time.monotonic() - moved > STALL_S:
            raise SystemExit(
                f"{what}: {len(seen)}/{n} deliveries seen, none for {STALL_S:.0f} s; "
                f"connector {consumer.status()}"
            )
        if time.monotonic() - shown > 5:
            progress(f"  {len(seen)}/{n} deliveries committed")
            shown = time.monotonic()
        time.sleep(0.05)


def run_latency(args: argparse.Namespace, engine: Any, url: str, broker: Broker,
                publisher: Publisher, token: str) -> dict[str, Any]:  # fmt: skip
    from sqlalchemy import create_engine, text

    from taktflow.db import engine_options
    from taktflow.engine.runtime import WorkflowEngine
    from taktflow.yamlflow import COMPILERS

    total = args.latency_messages + LATENCY_WARMUP
    key, warm_key = f"{token}-l", f"{token}-w"
    engine.deploy_text("bench_step.yaml", WAITER)
    progress(f"latency: starting {total} waiting instances ({LATENCY_WARMUP} for warm-up)")
    t0 = time.perf_counter()
    for i in range(total):
        measured_one = i >= LATENCY_WARMUP
        number = i - LATENCY_WARMUP if measured_one else i
        engine.start("bench_step", {"key": f"{key if measured_one else warm_key}-{number:06d}"})
        if (i + 1) % 1000 == 0:
            progress(f"  {i + 1}/{total} instances started")
    start_rate = total / (time.perf_counter() - t0)

    with engine.bind.connect() as conn:
        first_audit = conn.execute(text("SELECT coalesce(max(id), 0) FROM audit_event")).scalar()
    seen: dict[str, tuple[float, float, float]] = {}  # key -> (sent, visible, delivery began)
    stop = threading.Event()

    def watch() -> None:
        # Its own database engine, as another process would have.
        reader = create_engine(url, **engine_options(url))
        last = first_audit
        # LIMIT: without it PostgreSQL's planner, with no statistics on the new rows yet,
        # scans the whole audit table on every poll (and takes CPU from the run it measures).
        query = text(
            "SELECT id, at, details FROM audit_event WHERE id > :last "
            "AND kind = 'message_received' ORDER BY id LIMIT 1000"
        )
        with reader.connect() as conn:
            while not stop.is_set():
                rows = conn.execute(query, {"last": last}).all()
                conn.rollback()  # end the read transaction: the next poll sees new commits
                visible = time.time()
                for row_id, at, details in rows:
                    last = row_id
                    found = json.loads(details)
                    if isinstance(at, str):
                        at = datetime.fromisoformat(at)
                    began = at.replace(tzinfo=UTC).timestamp()
                    seen[found["correlation"]["key"]] = (found["data"]["sent"], visible, began)
                time.sleep(WATCH_INTERVAL_S)
        reader.dispose()

    # The worker of `taktflow serve` (own engine, interval 1 s): idle if the connector
    # delivers by itself after its commit, the deliverer if the runtime leaves that to it.
    worker_bind = create_engine(url, **engine_options(url))
    worker = WorkflowEngine(worker_bind, compilers=COMPILERS)
    watcher = threading.Thread(target=watch, daemon=True)
    working = threading.Thread(target=worker.run_worker, args=(1.0, stop), daemon=True)
    consumer = TaktflowConsumer(engine, f"{token}-lat", broker.port, message="bench_step")
    try:
        consumer.start()
        wait_until(consumer.connected, "the latency connector subscribed")
        watcher.start()
        working.start()
        # Warm-up: the first deliveries pay for what is loaded once (a dispatcher process
        # starting, specs parsed); the measured messages are published once they are through.
        publisher.send(topic_of(f"{token}-lat"), f"{token}-latw", warm_key, LATENCY_WARMUP,
                       args.rate)  # fmt: skip
        publisher.result(LATENCY_WARMUP / args.rate + 120)
        wait_for_seen(seen, LATENCY_WARMUP, consumer, "warm-up")
        progress(
            f"latency: publishing {args.latency_messages} messages at {args.rate:.0f}/s "
            f"({args.latency_messages / args.rate:.0f} s; instances started at "
            f"{start_rate:.0f}/s)"
        )
        publisher.send(topic_of(f"{token}-lat"), f"{token}-lat", key, args.latency_messages,
                       args.rate)  # fmt: skip
        sent = publisher.result(args.latency_messages / args.rate + 120)
        wait_for_seen(seen, total, consumer, "latency")
    finally:
        stop.set()
        consumer.stop()
        watcher.join(5)
        working.join(10)
        worker_bind.dispose()

    measured = [seen[f"{key}-{i:06d}"] for i in range(args.latency_messages)]
    visible = [1000 * (v - s) for s, v, _ in measured]
    began = [1000 * (b - s) for s, _, b in measured]
    span = max(v for _, v, _ in measured) - min(s for s, _, _ in measured)
    return {
        "messages": args.latency_messages,
        "rate_target_per_s": args.rate,
        "rate_published_per_s": sent["rate"],
        "rate_delivered_per_s": args.latency_messages / span,
        "instances_started_per_s": start_rate,
        "visible_ms": {q: percentile(visible, v) for q, v in
                       (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))},
        "delivery_began_ms": {q: percentile(began, v) for q, v in
                              (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))},
        "poll_interval_ms": WATCH_INTERVAL_S * 1000,
    }  # fmt: skip


# ---------------------------------------------------------------------- main
def migrated(url: str, folder: str) -> str:
    from flask_migrate import upgrade

    from taktflow.app import MIGRATIONS_DIR, create_app

    app = create_app({"database_url": url, "env": "testing", "instance_path": folder})
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR)
        from taktflow.db import db

        db.engine.dispose()
    return url


def report(result: dict[str, Any]) -> None:
    tp, lat = result.get("throughput"), result.get("latency")
    tuned = ", garbage collector tuned" if result["gc_tuned"] else ""
    print(
        f"{result['machine']}, {result['date']}, database {result['database']}{tuned}, "
        f"delivery in a {result['dispatch']}"
    )
    if tp:
        for mode in ("backlog", "live"):
            f = tp[mode]
            print(
                f"{mode:7}: taktflow {f['taktflow_per_s']:7.0f} events/s "
                f"(range {min(f['taktflow_rounds']):.0f}-{max(f['taktflow_rounds']):.0f}), "
                f"plain paho+SQLite {f['plain_per_s']:7.0f}/s "
                f"(range {min(f['plain_rounds']):.0f}-{max(f['plain_rounds']):.0f}), "
                f"ratio {f['ratio']:.2f}"
            )
            print(f"         taktflow events dispatched (buffered): {f['dispatched_per_s']:.0f}/s")
            if f["events_per_call"] is not None:
                print(
                    f"         taktflow: {f['events_per_call']:.1f} events per "
                    f"record_connector_events call, {f['ms_per_call']:.2f} ms per call "
                    f"({100 * f['share_in_call']:.0f} % of the time), "
                    f"{f['commits_per_event']:.2f} database commits per event"
                )
            for side, cpu in f["cpu_us_per_event"].items():
                if "process" in cpu:
                    parts = ", ".join(f"{k} {v:.0f}" for k, v in cpu.items()
                                      if k not in ("process", "wall") and v >= 0.5)  # fmt: skip
                    print(f"         {side} CPU us per event: process {cpu['process']:.0f} "
                          f"({parts}); wall {cpu['wall']:.0f}")  # fmt: skip
    if lat:
        v, b = lat["visible_ms"], lat["delivery_began_ms"]
        print(
            f"latency at {lat['rate_target_per_s']:.0f}/s (published "
            f"{lat['rate_published_per_s']:.0f}/s, delivered {lat['rate_delivered_per_s']:.0f}/s"
            f", {lat['messages']} messages): publish -> step committed p50 {v['p50']:.1f} ms, "
            f"p95 {v['p95']:.1f} ms, p99 {v['p99']:.1f} ms, max {v['max']:.1f} ms"
        )
        print(
            f"         publish -> delivery began p50 {b['p50']:.1f} ms, p99 {b['p99']:.1f} ms"
            f" (audit timestamp; the figures above include <= {lat['poll_interval_ms']:.0f} ms"
            " of polling)"
        )
    if tp:
        print(
            f"connectors: backlog {tp['backlog']['taktflow_per_s']:.0f} events/s "
            f"({tp['backlog']['ratio']:.2f} x plain), live {tp['live']['taktflow_per_s']:.0f} "
            f"events/s ({tp['live']['ratio']:.2f} x plain)"
            + (f", latency p99 {lat['visible_ms']['p99']:.1f} ms" if lat else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=500.0, help="latency: messages per second")
    parser.add_argument("--latency-messages", type=int, default=3000,
                        help="latency: measured messages (one waiting instance each)")  # fmt: skip
    parser.add_argument("--database-url", help="default: a migrated temporary SQLite file")
    parser.add_argument("--max-inflight", type=int, default=20,
                        help="Mosquitto max_inflight_messages (20: its default)")  # fmt: skip
    parser.add_argument("--mosquitto", default=MOSQUITTO, help="the mosquitto binary")
    parser.add_argument("--no-gc-tune", dest="gc_tuned", action="store_false",
                        help="leave the garbage collector untuned (`taktflow serve`, `worker` "
                        "and `connectors run` tune it)")  # fmt: skip
    parser.add_argument("--dispatch", choices=("process", "thread"),
                        help="deliver in a child process or in a thread of the runtime "
                        "(default: as `taktflow connectors run` does: a process)")  # fmt: skip
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    if args.rounds < 1 and not args.skip_throughput:
        parser.error("--rounds must be at least 1 (to measure latency only: --skip-throughput)")
    binary = shutil.which(args.mosquitto) or (
        args.mosquitto if os.access(args.mosquitto, os.X_OK) else None
    )
    if binary is None:
        sys.exit(
            f"mosquitto not found at {args.mosquitto}: install it (Debian: apt-get install "
            "mosquitto) or name it with --mosquitto PATH"
        )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from taktflow.db import engine_options
    from taktflow.engine.runtime import WorkflowEngine
    from taktflow.yamlflow import COMPILERS

    token = "b" + uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as folder:
        url = migrated(args.database_url or f"sqlite:///{folder}/bench.db", folder)
        if args.dispatch is None:  # as `taktflow connectors run` chooses
            args.dispatch = "process"
        DISPATCH["url"] = None if args.dispatch == "thread" else url
        bind = create_engine(url, **engine_options(url))
        engine = WorkflowEngine(bind, compilers=COMPILERS)
        broker = Broker(binary, Path(folder), args.max_inflight)
        if args.gc_tuned:
            from taktflow.process import tune_for_service

            tune_for_service()
        publisher = None
        result: dict[str, Any] = {
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python "
            f"{platform.python_version()}, Mosquitto {mosquitto_version(binary)}, "
            f"max_inflight_messages {args.max_inflight}",
            "date": datetime.now().astimezone().isoformat(timespec="seconds"),
            "database": make_url(url).get_backend_name(),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "messages": args.messages,
            "rounds": args.rounds,
            "gc_tuned": args.gc_tuned,
            "dispatch": args.dispatch,
        }
        try:
            broker.start()
            publisher = Publisher(broker.port)
            if not args.skip_throughput:
                bench = Throughput(engine, bind, broker, publisher, f"{folder}/plain.db", token)
                result["throughput"] = run_throughput(args, bench)
            if not args.skip_latency:
                result["latency"] = run_latency(args, engine, url, broker, publisher, token)
        finally:
            if publisher is not None:
                publisher.close()
            broker.stop()
            bind.dispose()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
