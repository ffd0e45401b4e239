"""What the linter reports: one finding per problem, with where it is and how bad it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERROR = "error"
WARNING = "warning"
SEVERITIES = (ERROR, WARNING)


@dataclass(frozen=True)
class Finding:
    """One problem in one file.

    `rule` is a short stable name (e.g. "unreachable") so that tools and tests can match a
    finding without parsing its message.
    """

    file: str
    severity: str
    rule: str
    message: str
    element: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        element = f"element {self.element!r}: " if self.element else ""
        return f"{where}: {self.severity}: {element}{self.message} [{self.rule}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "element": self.element,
            "severity": self.severity,
            "rule": self.rule,
            "message": self.message,
        }


@dataclass
class LintContext:
    """What exists outside the file being checked. `None` means "unknown: do not check"."""

    #: Form names available in the forms folder (forms/<name>.yaml).
    forms: set[str] | None = None
    #: Role names users can hold; lanes holding user or manual tasks must be one of these.
    roles: set[str] | None = None
    #: Registered service-task action names.
    actions: set[str] | None = None
    #: Process ids defined anywhere (linted files, workflows folder).
    processes: set[str] = field(default_factory=set)
    #: Decision ids defined anywhere.
    decisions: set[str] = field(default_factory=set)
    #: Message names that some workflow sends (throw events, send tasks, message end events).
    sent_messages: set[str] = field(default_factory=set)
