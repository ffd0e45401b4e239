"""Machine time: service-task actions (downtime records, OEE) and the demo plant's shift
calendar and reason codes (docs/downtime-and-oee.md)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from taktflow.engine.actions import ActionContext, ActionRegistry, BusinessError, Param
from taktflow.errors import NotFound, ValidationFailed
from taktflow.mfg.downtime import (
    close_downtime,
    downtime_reasons,
    load_reason_codes,
    open_downtime,
    pareto,
    record_repair,
    set_reason,
)
from taktflow.mfg.machine_models import ReasonCode
from taktflow.mfg.machine_time import load_calendar, oee, parse_moment, signal_reason
from taktflow.mfg.models import Machine

REASON_FILE = "reason_codes.yaml"
CALENDAR_FILE = "shifts.yaml"
#: How long a machine may stand before a stop becomes a downtime (workflow 6).
DEFAULT_THRESHOLD_S = 120


def _plain(view: Any) -> Any:
    """Decimals as exact text, for workflow data (JSON)."""
    if isinstance(view, dict):
        return {k: _plain(v) for k, v in view.items()}
    if isinstance(view, list):
        return [_plain(v) for v in view]
    if isinstance(view, Decimal):
        return str(view)
    return view


def register_machine_actions(registry: ActionRegistry) -> None:
    """Register this area's `mfg.*` actions."""

    def check_stop(
        ctx: ActionContext,
        machine: str,
        stopped_at: str | None = None,
        state: str | None = None,
        alarm_code: int | None = None,
        threshold_s: int = DEFAULT_THRESHOLD_S,
    ) -> dict[str, Any]:
        """Look at a machine stop before deciding whether it is a downtime: the machine (it
        must exist), when it stopped (default: now), when the threshold passes
        (`threshold_at`, for the workflow's timer) and the reason its alarm code or state
        names by itself, if any. Changes nothing."""
        found = ctx.session.get(Machine, machine)
        if found is None:
            raise NotFound(f"machine {machine!r} does not exist")
        if isinstance(threshold_s, bool) or threshold_s < 0:
            raise ValidationFailed(f"threshold_s {threshold_s!r} must be 0 or more seconds",
                                   details={"threshold_s": "negative"})  # fmt: skip
        at = parse_moment(stopped_at, "stopped_at") if stopped_at else ctx.now
        reason = signal_reason(ctx.session, state, alarm_code or None)
        named = ctx.session.get(ReasonCode, reason) if reason else None
        return {"machine": machine, "machine_name": found.name,
                "work_center": found.work_center, "state": state,
                "alarm_code": alarm_code or None, "stopped_at": at.isoformat(),
                "threshold_at": (at + timedelta(seconds=threshold_s)).isoformat(),
                "reason": reason, "reason_name": named.name if named else None}  # fmt: skip

    def open_record(
        ctx: ActionContext,
        machine: str,
        started_at: str | None = None,
        state: str | None = None,
        alarm_code: int | None = None,
    ) -> dict[str, Any]:
        """Open a downtime record of `machine` from `started_at` (default: now) with the state
        and alarm code it stopped with; the reason is set from the alarm code or state when
        reason_codes.yaml maps it. Its view, with `reasons` (the active downtime reasons, as
        options for the operator's form). A retried step opens one record."""
        view = open_downtime(
            ctx.session, machine=machine, now=ctx.now, state=state, alarm_code=alarm_code,
            started_at=parse_moment(started_at, "started_at") if started_at else ctx.now,
            idempotency_key=f"mfg.open_downtime:{ctx.instance_id}:{ctx.task_id}",
            instance_id=ctx.instance_id,
        )  # fmt: skip
        return _plain(view | {"reasons": downtime_reasons(ctx.session)})

    def give_reason(
        ctx: ActionContext, downtime_id: int, reason: str, note: str | None = None
    ) -> dict[str, Any]:
        """Set a downtime's reason (also after it closed). A reason that is not an active
        downtime reason code raises the business error `invalid_reason` (message: the reasons
        there are), which the workflow catches to ask again; nothing is changed then."""
        try:
            view = set_reason(ctx.session, downtime_id, reason, by=ctx.actor, note=note,
                              now=ctx.now)  # fmt: skip
        except ValidationFailed as exc:
            if isinstance(exc.details, dict) and "reason" in exc.details:
                raise BusinessError("invalid_reason", exc.message) from exc
            raise
        return _plain(view)

    def repair(ctx: ActionContext, downtime_id: int, note: str) -> dict[str, Any]:
        """Record what maintenance did about a downtime (and who: the task's user)."""
        return _plain(record_repair(ctx.session, downtime_id, note, by=ctx.actor))

    def close_record(
        ctx: ActionContext, downtime_id: int, ended_at: str | None = None
    ) -> dict[str, Any]:
        """Close a downtime at `ended_at` (the machine's restart; default: now) with its
        duration. A closed downtime stays as it was closed (`already_closed: true`)."""
        at = parse_moment(ended_at, "ended_at") if ended_at else ctx.now
        return _plain(close_downtime(ctx.session, downtime_id, ended_at=at, now=ctx.now))

    def machine_oee(
        ctx: ActionContext,
        start: str,
        end: str,
        machine: str | None = None,
        work_center: str | None = None,
    ) -> dict[str, Any]:
        """OEE of a machine or work center over [start, end) with its inputs (planned, run
        and down time, counts, ideal time, availability, performance, quality); numbers as
        exact text."""
        return _plain(oee(ctx.session, start=parse_moment(start, "start"),
                          end=parse_moment(end, "end"), machine=machine,
                          work_center=work_center, now=ctx.now))  # fmt: skip

    def downtime_pareto(
        ctx: ActionContext,
        start: str,
        end: str,
        machine: str | None = None,
        work_center: str | None = None,
    ) -> dict[str, Any]:
        """Downtime by reason over [start, end), longest first, with shares (Pareto)."""
        return _plain(pareto(ctx.session, start=parse_moment(start, "start"),
                             end=parse_moment(end, "end"), machine=machine,
                             work_center=work_center, now=ctx.now))  # fmt: skip

    window = [Param("start", "str", description="window start, ISO 8601 with time zone"),
              Param("end", "str", description="window end, ISO 8601 with time zone"),
              Param("machine", "str", required=False, description="a machine ..."),
              Param("work_center", "str", required=False,
                    description="... or a work center")]  # fmt: skip
    registry.register(
        "mfg.check_stop", check_stop,
        [Param("machine", "str", description="the machine that stopped"),
         Param("stopped_at", "str", required=False,
               description="when it stopped, ISO 8601 with time zone (default: now)"),
         Param("state", "str", required=False, description="the state it stopped in"),
         Param("alarm_code", "int", required=False, description="its alarm code, if any"),
         Param("threshold_s", "int", required=False,
               description=f"seconds before a stop is a downtime (default {DEFAULT_THRESHOLD_S})")],
    )  # fmt: skip
    registry.register(
        "mfg.open_downtime", open_record,
        [Param("machine", "str", description="the machine that stands"),
         Param("started_at", "str", required=False,
               description="when it stopped, ISO 8601 with time zone (default: now)"),
         Param("state", "str", required=False, description="the state it stopped in"),
         Param("alarm_code", "int", required=False, description="its alarm code, if any")],
    )  # fmt: skip
    registry.register(
        "mfg.set_downtime_reason", give_reason,
        [Param("downtime_id", "int", description="the downtime record"),
         Param("reason", "str", description="a downtime reason code (reason_codes.yaml)"),
         Param("note", "str", required=False, description="what the operator saw")],
    )  # fmt: skip
    registry.register(
        "mfg.record_downtime_repair", repair,
        [Param("downtime_id", "int", description="the downtime record"),
         Param("note", "str", description="what maintenance did")],
    )  # fmt: skip
    registry.register(
        "mfg.close_downtime", close_record,
        [Param("downtime_id", "int", description="the downtime record"),
         Param("ended_at", "str", required=False,
               description="when the machine ran again, ISO 8601 (default: now)")],
    )  # fmt: skip
    registry.register("mfg.oee", machine_oee, window)
    registry.register("mfg.downtime_pareto", downtime_pareto, window)


def seed_machine(session: Session, folder: Path) -> dict[str, Any]:
    """Load the downtime reason codes and the shift calendar from `folder` (idempotent; a
    plant folder without the files has none); counts of what was loaded."""
    counts: dict[str, Any] = {}
    if (Path(folder) / REASON_FILE).is_file():
        counts["reason_codes"] = load_reason_codes(session, Path(folder) / REASON_FILE)
    if (Path(folder) / CALENDAR_FILE).is_file():
        counts |= load_calendar(session, Path(folder) / CALENDAR_FILE)
    return counts
