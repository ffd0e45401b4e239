"""Who may do what: one table of actions and the roles that may perform them, and the lane
rule for tasks. Every API endpoint and page names its action here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taktflow.auth.service import Principal
from taktflow.errors import PermissionDenied

ALL = "*"

#: action -> roles that may do it (ALL: any logged-in user). admin may do everything.
PERMISSIONS: dict[str, frozenset[str] | str] = {
    "process.read": ALL,
    "process.deploy": frozenset({"engineer"}),
    "instance.read": ALL,
    # Operators work tasks; processes start from planning, quality, maintenance, management
    # or machines.
    "instance.start": frozenset(
        {"planner", "quality", "maintenance", "supervisor", "manager", "director", "engineer"}
    ),
    "instance.control": frozenset({"supervisor", "manager", "engineer"}),
    "message.send": frozenset({"planner", "supervisor", "manager", "engineer"}),
    "task.assign": frozenset({"supervisor", "manager"}),
    # Machine connections: the engineers who set them up and the people who run the floor.
    "connector.read": frozenset({"engineer", "supervisor", "manager"}),
    # Sending a dead-lettered event or machine write again: after fixing its cause.
    "connector.replay": frozenset({"engineer"}),
    # A new production order from the planner's page (it starts order release).
    "order.create": frozenset({"planner"}),
    # The ERP interface: an ERP's API token belongs to a user with the planner role.
    "erp.write": frozenset({"planner"}),
    "erp.read": frozenset({"planner", "supervisor", "manager", "director", "engineer"}),
    # The plant's reports (inventory, genealogy, order cost, trial balance, journal): the
    # people who plan, check, run and pay for production; not the shop floor's operators and
    # maintenance.
    "report.read": frozenset(
        {"planner", "quality", "supervisor", "manager", "director", "engineer"}
    ),
}


def allowed(principal: Principal, action: str) -> bool:
    roles = PERMISSIONS[action]
    return principal.is_admin or roles == ALL or bool(principal.roles & set(roles))


def require(principal: Principal, action: str) -> None:
    """Raise PermissionDenied with the reason unless `principal` may do `action`."""
    if not allowed(principal, action):
        roles = PERMISSIONS[action]
        wanted = ", ".join(sorted(roles)) if roles != ALL else "any"
        raise PermissionDenied(
            f"{action} needs one of the roles {wanted} (or admin); "
            f"{principal.username} has {', '.join(sorted(principal.roles)) or 'none'}",
            details={"action": action},
        )


def may_work_on(principal: Principal, task: Mapping[str, Any]) -> bool:
    """A task is for the users whose roles include its lane (admins see all). A task in no
    lane is for everyone (the linter warns about those)."""
    lane = task.get("lane")
    return principal.is_admin or lane is None or lane in principal.roles


def require_task(principal: Principal, task: Mapping[str, Any], what: str) -> None:
    if not may_work_on(principal, task):
        raise PermissionDenied(
            f"cannot {what} task {task['task_id']}: it is for lane {task['lane']!r} and "
            f"{principal.username} has roles {', '.join(sorted(principal.roles)) or 'none'}",
            details={"action": f"task.{what}", "lane": task["lane"]},
        )
