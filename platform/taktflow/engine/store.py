"""SQL for the engine's hot path, and row <-> dict helpers.

Every step of every instance runs the statements of `HotPath`, so they are hand-written SQL
executed on the DBAPI cursor of the unit of work's connection (same transaction as
everything else in the unit). Measured here, SQLAlchemy's Core machinery around one
statement cost 30-150 us against 3-10 us for the driver call itself, which summed to more
than the workflow step; the benchmark target (docs/performance.md) needs it gone.
Colder queries (views, listings, deployment) stay in SQLAlchemy.

The SQL is written once with `?` placeholders; for PostgreSQL (psycopg, "format" style) they
become `%s`. Timestamps are stored as naive UTC, on SQLite in SQLAlchemy's own text format,
so that rows written here and rows read through SQLAlchemy's UTCDateTime agree.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select

from taktflow.engine import models as m

PI = m.ProcessInstance
HT = m.HumanTask
IW = m.InstanceWait
AE = m.AuditEvent

INSTANCE_COLUMNS = (
    PI.id,
    PI.process_id,
    PI.version_id,
    PI.status,
    PI.resume_status,
    PI.error,
    PI.lock_version,
    PI.called_versions,
    PI.started_by,
    PI.created_at,
    PI.updated_at,
)
_INSTANCE_SQL_COLUMNS = (
    "id, process_id, version_id, status, resume_status, error, lock_version, "
    "called_versions, started_by, created_at, updated_at"
)


@dataclass
class InstanceRow:
    """The columns of process_instance that steps read and write (the state travels apart)."""

    id: int
    process_id: str
    version_id: int
    status: str
    resume_status: str | None
    error: str | None
    lock_version: int
    called_versions: str
    started_by: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def called(self) -> dict[str, int]:
        return json.loads(self.called_versions)


@dataclass
class InboxRow:
    id: int
    kind: str
    name: str
    correlation: str
    payload: str
    source: str | None
    delivered_to: str
    attempts: int


# Colder reads through SQLAlchemy (views and listings).
SELECT_INSTANCE = select(*INSTANCE_COLUMNS).where(PI.id == bindparam("b_id"))
SELECT_STATE = select(PI.state).where(PI.id == bindparam("b_id"))
SELECT_TASKS_OF = (
    select(HT).where(HT.instance_id == bindparam("b_id")).order_by(HT.created_at, HT.task_id)
)
SELECT_ALL_TASKS = select(HT).order_by(HT.created_at, HT.task_id)
SELECT_WAITS_OF = select(IW).where(IW.instance_id == bindparam("b_id")).order_by(IW.id)
SELECT_HISTORY = select(AE).where(AE.instance_id == bindparam("b_id")).order_by(AE.id)


class HotPath:
    """The hot-path statements for one database dialect, run on a DBAPI cursor."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"
        self._sql: dict[str, str] = {}

    # -- plumbing
    def _q(self, sql: str) -> str:
        """Translate placeholders once per statement text."""
        text = self._sql.get(sql)
        if text is None:
            text = sql.replace("?", "%s") if self.pg else sql
            self._sql[sql] = text
        return text

    def ts(self, value: datetime | None) -> Any:
        """An aware datetime as the database stores it (naive UTC)."""
        if value is None:
            return None
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return naive if self.pg else naive.isoformat(sep=" ", timespec="microseconds")

    @staticmethod
    def read_ts(value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)

    @staticmethod
    def _in(values: Sequence[Any]) -> str:
        return ", ".join("?" for _ in values)

    # -- process versions
    def latest_version(self, cur: Any, process_id: str) -> tuple[int, int, str] | None:
        cur.execute(
            self._q(
                "SELECT id, version, called_processes FROM process_version "
                "WHERE process_id = ? AND is_latest = ?"
            ),
            (process_id, True),
        )
        return cur.fetchone()

    def latest_starting(self, cur: Any) -> list[tuple[int, str, str, str]]:
        """(id, process_id, starts JSON, called JSON) of every latest version with start events
        that wait for a message or signal."""
        cur.execute(
            self._q(
                "SELECT id, process_id, message_starts, called_processes FROM process_version "
                "WHERE is_latest = ? AND message_starts <> '[]'"
            ),
            (True,),
        )
        return cur.fetchall()

    # -- instances
    def insert_instance(self, cur: Any, values: Mapping[str, Any]) -> int:
        cur.execute(
            self._q(
                "INSERT INTO process_instance (process_id, version_id, status, resume_status, "
                "state, serializer_version, called_versions, error, lock_version, started_by, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
            ),
            (
                values["process_id"],
                values["version_id"],
                values["status"],
                values["resume_status"],
                values["state"],
                values["serializer_version"],
                values["called_versions"],
                values["error"],
                values["lock_version"],
                values["started_by"],
                self.ts(values["created_at"]),
                self.ts(values["updated_at"]),
            ),
        )
        return cur.fetchone()[0]

    def load_instance(self, cur: Any, instance_id: int) -> InstanceRow | None:
        cur.execute(
            self._q(f"SELECT {_INSTANCE_SQL_COLUMNS} FROM process_instance WHERE id = ?"),
            (instance_id,),
        )
        found = cur.fetchone()
        return self._instance(found) if found is not None else None

    def _instance(self, found: Sequence[Any]) -> InstanceRow:
        row = InstanceRow(*found)
        row.created_at = self.read_ts(row.created_at)  # type: ignore[assignment]
        row.updated_at = self.read_ts(row.updated_at)  # type: ignore[assignment]
        return row

    def load_state(self, cur: Any, instance_id: int) -> str:
        cur.execute(self._q("SELECT state FROM process_instance WHERE id = ?"), (instance_id,))
        return cur.fetchone()[0]

    def update_instance(
        self, cur: Any, row: InstanceRow, state: str, read_lock: int, new_lock: int
    ) -> bool:
        """Write the instance if its lock version is still `read_lock`; False if it is not."""
        cur.execute(
            self._q(
                "UPDATE process_instance SET state = ?, status = ?, resume_status = ?, "
                "error = ?, updated_at = ?, lock_version = ? WHERE id = ? AND lock_version = ?"
            ),
            (
                state,
                row.status,
                row.resume_status,
                row.error,
                self.ts(row.updated_at),
                new_lock,
                row.id,
                read_lock,
            ),
        )
        return cur.rowcount == 1

    # -- human tasks
    def task_with_instance(
        self, cur: Any, task_id: str
    ) -> tuple[str | None, str | None, str | None, InstanceRow] | None:
        """(title, lane, claimed_by, instance row) of a ready task, in one query."""
        columns = ", ".join(f"i.{c.strip()}" for c in _INSTANCE_SQL_COLUMNS.split(","))
        cur.execute(
            self._q(
                f"SELECT t.title, t.lane, t.claimed_by, {columns} FROM human_task t "
                "JOIN process_instance i ON i.id = t.instance_id WHERE t.task_id = ?"
            ),
            (task_id,),
        )
        found = cur.fetchone()
        if found is None:
            return None
        return found[0], found[1], found[2], self._instance(found[3:])

    def tasks_of(self, cur: Any, instance_id: int) -> list[dict[str, Any]]:
        cur.execute(
            self._q(
                "SELECT task_id, instance_id, process_id, element_id, kind, title, lane, form, "
                "instructions, created_at FROM human_task WHERE instance_id = ?"
            ),
            (instance_id,),
        )
        names = (
            "task_id", "instance_id", "process_id", "element_id", "kind", "title", "lane",
            "form", "instructions", "created_at",
        )  # fmt: skip
        rows = []
        for found in cur.fetchall():
            values = dict(zip(names, found, strict=True))
            values["created_at"] = self.read_ts(values["created_at"])
            rows.append(values)
        return rows

    def insert_tasks(self, cur: Any, tasks: list[dict[str, Any]]) -> None:
        cur.executemany(
            self._q(
                "INSERT INTO human_task (task_id, instance_id, process_id, element_id, kind, "
                "title, lane, form, instructions, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            [
                (
                    t["task_id"], t["instance_id"], t["process_id"], t["element_id"], t["kind"],
                    t["title"], t["lane"], t["form"], t["instructions"], self.ts(t["created_at"]),
                )
                for t in tasks
            ],
        )  # fmt: skip

    def delete_tasks(self, cur: Any, task_ids: Sequence[str]) -> None:
        cur.execute(
            self._q(f"DELETE FROM human_task WHERE task_id IN ({self._in(task_ids)})"),
            tuple(task_ids),
        )

    # -- waits
    def waits_of(self, cur: Any, instance_id: int) -> list[tuple[int, dict[str, Any]]]:
        cur.execute(
            self._q(
                "SELECT id, kind, name, element_id, correlation, due_at FROM instance_wait "
                "WHERE instance_id = ? ORDER BY id"
            ),
            (instance_id,),
        )
        return [
            (
                wid,
                {
                    "kind": kind,
                    "name": name,
                    "element_id": element_id,
                    "correlation": correlation,
                    "due_at": self.read_ts(due_at),
                },
            )
            for wid, kind, name, element_id, correlation, due_at in cur.fetchall()
        ]

    def insert_wait(self, cur: Any, instance_id: int, w: Mapping[str, Any]) -> int:
        key = None
        if w["kind"] == m.WAIT_MESSAGE:
            wanted = json.loads(w["correlation"]) if w["correlation"] else {}
            key = correlation_key(flat_correlation(wanted))
        cur.execute(
            self._q(
                "INSERT INTO instance_wait (instance_id, kind, name, element_id, correlation, "
                "correlation_key, due_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
            ),
            (
                instance_id,
                w["kind"],
                w["name"],
                w["element_id"],
                w["correlation"],
                key,
                self.ts(w["due_at"]),
            ),
        )
        return cur.fetchone()[0]

    def delete_waits(self, cur: Any, wait_ids: Sequence[int]) -> None:
        cur.execute(
            self._q(f"DELETE FROM instance_wait WHERE id IN ({self._in(wait_ids)})"),
            tuple(wait_ids),
        )

    def waiting_for(
        self, cur: Any, kind: str, name: str, given: Mapping[str, Any] | None = None
    ) -> list[tuple[int, str | None]]:
        """(instance id, correlation) of active instances that may take this message/signal.

        For a message with correlation values `given`, only waits whose correlation is a
        subset of them are read, through the index on correlation_key (a message carries few
        correlation properties, so few subsets). The caller still compares the values.

        One equality look-up per subset, joined by UNION ALL: given `correlation_key IN
        (...)` instead, PostgreSQL's planner, before it has statistics on a table that grew
        quickly, reads every wait for the name and filters them (2 ms per message with 3,000
        instances waiting).
        """
        sql = (
            "SELECT w.instance_id, w.correlation FROM instance_wait w "
            "JOIN process_instance i ON i.id = w.instance_id "
            "WHERE w.kind = ? AND w.name = ? AND i.status = ?"
        )
        params: list[Any] = [kind, name, m.ACTIVE]
        if kind == m.WAIT_MESSAGE and given is not None and len(given) <= MAX_KEYED_PROPERTIES:
            items = sorted(given.items())
            keys = [
                correlation_key(dict(subset))
                for size in range(len(items) + 1)
                for subset in itertools.combinations(items, size)
            ]
            sql = " UNION ALL ".join([f"{sql} AND w.correlation_key = ?"] * len(keys))
            params = [value for key in keys for value in (kind, name, m.ACTIVE, key)]
        cur.execute(self._q(sql + " ORDER BY 1"), tuple(params))
        return cur.fetchall()

    # -- inbox
    def insert_inbox(
        self, cur: Any, values: Mapping[str, Any], received_at: Any, expires_at: Any
    ) -> int | None:
        """Insert an inbox row; None when the idempotency key exists already. The times are
        as the database stores them (`ts`)."""
        cur.execute(
            self._q(
                "INSERT INTO inbox_message (idempotency_key, kind, name, correlation, payload, "
                "status, source, received_at, expires_at, processed_at, delivered_to, started, "
                "attempts, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, '[]', '[]', 0, NULL) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
            ),
            (
                values["idempotency_key"],
                values["kind"],
                values["name"],
                values["correlation"],
                values["payload"],
                m.INBOX_PENDING,
                values["source"],
                received_at,
                expires_at,
            ),
        )
        found = cur.fetchone()
        return found[0] if found is not None else None

    def pending_inbox_row(self, cur: Any, message_id: int) -> InboxRow | None:
        """The row if it is still pending; on PostgreSQL it is locked, or skipped if another
        dispatcher holds it."""
        lock = " FOR UPDATE SKIP LOCKED" if self.pg else ""
        cur.execute(
            self._q(
                "SELECT id, kind, name, correlation, payload, source, delivered_to, attempts "
                f"FROM inbox_message WHERE id = ? AND status = ?{lock}"
            ),
            (message_id, m.INBOX_PENDING),
        )
        found = cur.fetchone()
        return InboxRow(*found) if found is not None else None

    def inbox_row(self, cur: Any, message_id: int) -> InboxRow:
        cur.execute(
            self._q(
                "SELECT id, kind, name, correlation, payload, source, delivered_to, attempts "
                "FROM inbox_message WHERE id = ?"
            ),
            (message_id,),
        )
        return InboxRow(*cur.fetchone())

    def due_rows(self, cur: Any, now: datetime, limit: int) -> list[tuple[int, str | None]]:
        """(id, source) of the oldest pending rows that may be dispatched now, in order: not
        waiting for a retry, and not behind a row of the same source that is."""
        # The status is written into the text, not bound: a planner can match a literal, not
        # a parameter, with the partial index of pending rows (ix_inbox_message_pending).
        pending = f"status = '{m.INBOX_PENDING}'"
        cur.execute(
            self._q(
                f"SELECT id, source FROM inbox_message WHERE {pending} "
                "AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
                "AND (source IS NULL OR source NOT IN ("
                f"SELECT DISTINCT source FROM inbox_message WHERE {pending} "
                "AND next_attempt_at > ? AND source IS NOT NULL)) "
                "ORDER BY id LIMIT ?"
            ),
            (self.ts(now), self.ts(now), limit),
        )
        return [(row[0], row[1]) for row in cur.fetchall()]

    def pending_kinds(self, cur: Any, ids: Sequence[int]) -> list[tuple[int, str, str]]:
        """(id, kind, name) of those of these inbox rows that are still pending."""
        cur.execute(
            self._q(
                f"SELECT id, kind, name FROM inbox_message WHERE id IN ({self._in(ids)}) "
                "AND status = ?"
            ),
            (*ids, m.INBOX_PENDING),
        )
        return cur.fetchall()

    def names_taken(self, cur: Any, kind: str, names: Sequence[str]) -> set[str]:
        """Which of these message/signal names an active instance waits for (one indexed
        look-up per name that stops at the first wait: thousands may wait for one name)."""
        taken = set()
        for name in names:
            cur.execute(
                self._q(
                    "SELECT 1 FROM instance_wait w JOIN process_instance i ON i.id = w.instance_id "
                    "WHERE w.kind = ? AND w.name = ? AND i.status = ? LIMIT 1"
                ),
                (kind, name, m.ACTIVE),
            )
            if cur.fetchone() is not None:
                taken.add(name)
        return taken

    def buffer_untaken(self, cur: Any, ids: Sequence[int], processed_at: datetime) -> list[int]:
        """Mark these pending rows buffered at once (nothing waits for them); the ids done."""
        cur.execute(
            self._q(
                "UPDATE inbox_message SET status = ?, processed_at = ?, attempts = attempts + 1 "
                f"WHERE id IN ({self._in(ids)}) AND status = ? RETURNING id"
            ),
            (m.INBOX_BUFFERED, self.ts(processed_at), *ids, m.INBOX_PENDING),
        )
        return [row[0] for row in cur.fetchall()]

    def finish_inbox(
        self,
        cur: Any,
        message_id: int,
        status: str,
        delivered: list[int],
        started: list[int],
        processed_at: datetime,
        attempts: int,
    ) -> None:
        cur.execute(
            self._q(
                "UPDATE inbox_message SET status = ?, delivered_to = ?, started = ?, "
                "processed_at = ?, attempts = ? WHERE id = ?"
            ),
            (
                status,
                json.dumps(delivered),
                json.dumps(started),
                self.ts(processed_at),
                attempts,
                message_id,
            ),
        )

    def buffered_for(
        self, cur: Any, names: Sequence[str], now: datetime
    ) -> list[tuple[int, str, str]]:
        """(id, name, correlation) of unexpired buffered messages with one of these names."""
        cur.execute(
            self._q(
                "SELECT id, name, correlation FROM inbox_message WHERE status = ? AND kind = ? "
                f"AND name IN ({self._in(names)}) AND expires_at > ? ORDER BY id"
            ),
            (m.INBOX_BUFFERED, m.WAIT_MESSAGE, *names, self.ts(now)),
        )
        return cur.fetchall()

    def claim_buffered(self, cur: Any, message_id: int, delivered_to: str, now: datetime) -> bool:
        cur.execute(
            self._q(
                "UPDATE inbox_message SET status = ?, delivered_to = ?, processed_at = ? "
                "WHERE id = ? AND status = ?"
            ),
            (m.INBOX_DELIVERED, delivered_to, self.ts(now), message_id, m.INBOX_BUFFERED),
        )
        return cur.rowcount == 1

    def unclaim_buffered(self, cur: Any, message_id: int, delivered_to: str) -> None:
        cur.execute(
            self._q("UPDATE inbox_message SET status = ?, delivered_to = ? WHERE id = ?"),
            (m.INBOX_BUFFERED, delivered_to, message_id),
        )

    # -- audit
    def insert_audit(self, cur: Any, events: Iterable[Mapping[str, Any]]) -> None:
        cur.executemany(
            self._q(
                "INSERT INTO audit_event (instance_id, at, kind, actor, task_id, element_id, "
                "details) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ),
            [
                (
                    e["instance_id"], self.ts(e["at"]), e["kind"], e["actor"], e["task_id"],
                    e["element_id"], e["details"],
                )
                for e in events
            ],
        )  # fmt: skip


def task_dict(t: Any) -> dict[str, Any]:
    """A human_task row (ORM object, Core row or plain mapping) as the API shows it."""
    get = t.get if isinstance(t, Mapping) else lambda k: getattr(t, k)
    created = get("created_at")
    return {
        "task_id": get("task_id"),
        "instance_id": get("instance_id"),
        "process_id": get("process_id"),
        "name": get("element_id"),
        "title": get("title"),
        "kind": get("kind"),
        "lane": get("lane"),
        "form": get("form"),
        "instructions": get("instructions"),
        "created_at": created.isoformat() if isinstance(created, datetime) else created,
        "claimed_by": _maybe(get, "claimed_by"),
    }


def _maybe(get: Any, key: str) -> Any:
    """A column the hot path's own task rows (built in memory) do not carry."""
    try:
        return get(key)
    except (AttributeError, KeyError):
        return None


def wait_dict(w: Any) -> dict[str, Any]:
    """A wait (row or mapping) as the API shows it: correlation flattened, due time as text."""
    get = w.get if isinstance(w, Mapping) else lambda k: getattr(w, k)
    entry: dict[str, Any] = {
        "kind": get("kind"),
        "name": get("name"),
        "element_id": get("element_id"),
    }
    if entry["kind"] == m.WAIT_TIMER:
        due = get("due_at")
        entry["due"] = due.isoformat() if due else None
    if entry["kind"] == m.WAIT_MESSAGE:
        correlation = get("correlation")
        entry["correlation"] = flat_correlation(json.loads(correlation)) if correlation else {}
    return entry


def audit_dict(a: Any) -> dict[str, Any]:
    return {
        "id": a.id,
        "at": a.at.isoformat(),
        "kind": a.kind,
        "actor": a.actor,
        "task_id": a.task_id,
        "element_id": a.element_id,
        "details": json.loads(a.details),
    }


#: Messages with more correlation properties than this look at every wait of their name.
MAX_KEYED_PROPERTIES = 5


def correlation_key(flat: Mapping[str, Any]) -> str:
    """An index key for a flat correlation: a hash of its properties with their values as text
    (correlation values compare by text: "7" from a URL matches 7 from a form)."""
    text = json.dumps({k: _correlation_text(v) for k, v in flat.items()}, sort_keys=True)
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _correlation_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def flat_correlation(structured: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """{'po_key': {'po_number': 'PO-42'}} -> {'po_number': 'PO-42'}."""
    flat: dict[str, Any] = {}
    for props in structured.values():
        flat.update(props)
    return flat
