"""SQLite writers queue for the write turn (threads and processes) instead of meeting
SQLite's lock. The waiting connections run with SQLite's busy timeout at 0: had they reached
BEGIN IMMEDIATE while another writer held SQLite's lock, they would fail at once with
"database is locked", so each success shows the queue, not SQLite, made them wait."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from taktflow.db import WRITE_OPTION, engine_options
from taktflow.sqlite_writers import LOCK_FILE_SUFFIX, QueuedWriterConnection, writer_lock


def connect(path: Path, timeout: float = 10.0) -> QueuedWriterConnection:
    conn = sqlite3.connect(
        path, timeout=timeout, factory=QueuedWriterConnection, isolation_level=None,
        check_same_thread=False,
    )  # fmt: skip
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=0")  # SQLite's own lock would fail at once
    return conn


def write_in_thread(
    conn: QueuedWriterConnection, value: int, began: Callable[[], None]
) -> tuple[threading.Thread, list[Exception]]:
    """A started thread that inserts `value` in a write transaction of its own, calling
    `began` once it has the turn; the errors it met are in the list."""
    errors: list[Exception] = []

    def write() -> None:
        try:
            conn.begin_write()
            began()
            conn.execute("INSERT INTO t VALUES (?)", (value,))
            conn.commit()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    return thread, errors


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "writers.db"
    conn = connect(path)
    conn.execute("CREATE TABLE t (n INTEGER)")
    conn.close()
    return path


def test_a_writer_of_another_thread_waits_for_the_commit_and_then_writes(database: Path) -> None:
    holder, waiter = connect(database), connect(database)
    holder.begin_write()
    holder.execute("INSERT INTO t VALUES (1)")
    order: list[str] = []
    thread, errors = write_in_thread(waiter, 2, lambda: order.append("waiter began"))
    thread.join(0.3)
    assert thread.is_alive() and order == []  # queued, not failed
    order.append("holder committed")
    holder.commit()
    thread.join(10)
    assert errors == []
    assert order == ["holder committed", "waiter began"]
    assert [n for (n,) in holder.execute("SELECT n FROM t ORDER BY n")] == [1, 2]


def test_rollback_and_close_hand_the_turn_on(database: Path) -> None:
    first, second = connect(database, timeout=0.2), connect(database, timeout=0.2)
    first.begin_write()
    assert first.holds_write_turn
    first.rollback()
    assert not first.holds_write_turn
    second.begin_write()
    second.close()
    first.begin_write()  # would time out had close kept the turn
    first.commit()


def test_a_writer_that_waits_past_its_timeout_gets_sqlites_message(database: Path) -> None:
    holder, waiter = connect(database), connect(database, timeout=0.2)
    holder.begin_write()
    failures: list[Exception] = []

    def write() -> None:
        try:
            waiter.begin_write()
        except sqlite3.OperationalError as exc:
            failures.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(10)
    assert [str(e) for e in failures] == ["database is locked"]
    assert not waiter.holds_write_turn
    holder.commit()
    waiter.begin_write()  # the failed wait left nothing behind
    waiter.commit()


def test_a_second_write_transaction_in_the_same_thread_is_refused_at_once(
    database: Path,
) -> None:
    first, second = connect(database, timeout=30), connect(database, timeout=30)
    first.begin_write()
    with pytest.raises(sqlite3.OperationalError, match="already open in this thread"):
        second.begin_write()
    first.commit()
    second.begin_write()
    second.commit()


def test_in_memory_databases_are_not_queued() -> None:
    assert writer_lock(":memory:") is None
    assert writer_lock("file:x?mode=memory") is None


HOLDER = """
import sqlite3, sys
from taktflow.sqlite_writers import QueuedWriterConnection
conn = sqlite3.connect(sys.argv[1], timeout=10, factory=QueuedWriterConnection,
                       isolation_level=None)
conn.begin_write()
conn.execute("INSERT INTO t VALUES (1)")
print("holding", flush=True)
sys.stdin.readline()
conn.commit()
print("committed", flush=True)
"""


def test_a_writer_of_another_process_waits_through_the_lock_file(database: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(database)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as child:  # fmt: skip
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "holding"
        assert Path(f"{database}{LOCK_FILE_SUFFIX}").exists()
        waiter = connect(database)
        began = threading.Event()
        thread, errors = write_in_thread(waiter, 2, began.set)
        thread.join(0.3)
        assert thread.is_alive() and not began.is_set()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "committed"
        thread.join(10)
        assert errors == [] and began.is_set()
        assert [n for (n,) in waiter.execute("SELECT n FROM t ORDER BY n")] == [1, 2]
        waiter.close()
        assert child.wait(10) == 0


def test_engine_write_transactions_hold_the_turn_and_reads_do_not(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    bind = create_engine(url, **engine_options(url))
    try:
        with bind.connect() as conn:
            conn.execute(text("SELECT 1"))
            assert not conn.connection.dbapi_connection.holds_write_turn
        writer = bind.execution_options(**{WRITE_OPTION: True})
        with writer.begin() as conn:
            raw = conn.connection.dbapi_connection
            assert isinstance(raw, QueuedWriterConnection) and raw.holds_write_turn
        assert not raw.holds_write_turn
        with pytest.raises(RuntimeError), writer.begin() as conn:
            raw = conn.connection.dbapi_connection
            raise RuntimeError("rolled back")
        assert not raw.holds_write_turn
    finally:
        bind.dispose()


GREEDY = """
import sqlite3, sys, time
from taktflow.sqlite_writers import QueuedWriterConnection
conn = sqlite3.connect(sys.argv[1], timeout=10, factory=QueuedWriterConnection,
                       isolation_level=None)
print("writing", flush=True)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:  # back-to-back write transactions of 50 ms each
    conn.begin_write()
    conn.execute("INSERT INTO t VALUES (0)")
    time.sleep(0.05)
    conn.commit()
"""


def test_a_process_that_writes_back_to_back_lets_a_waiting_process_in(database: Path) -> None:
    # Without the waiting room the waiter would only find the turn free by chance, in the
    # microseconds between two of the other's transactions, and give up after its timeout.
    with subprocess.Popen(
        [sys.executable, "-c", GREEDY, str(database), "4"], stdout=subprocess.PIPE, text=True,
    ) as child:  # fmt: skip
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing"
        waiter = connect(database, timeout=2.0)
        for n in (1, 2, 3):
            waiter.begin_write()
            waiter.execute("INSERT INTO t VALUES (?)", (n,))
            waiter.commit()
        assert child.poll() is None  # the other was still writing all along
        assert [n for (n,) in waiter.execute("SELECT n FROM t WHERE n > 0 ORDER BY n")] == [
            1, 2, 3,
        ]  # fmt: skip
        waiter.close()
        assert child.wait(10) == 0
