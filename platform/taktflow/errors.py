"""The domain error tree. Services raise these; the API maps them to HTTP status codes and JSON,
the CLI to a one-line message and an exit status."""

from __future__ import annotations

from typing import Any


class TaktflowError(Exception):
    """Base of every error taktflow reports to a user."""

    code = "error"
    http_status = 400
    exit_status = 1

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON body for API responses and `--json` CLI output."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}


class NotFound(TaktflowError):
    """The named process, version, instance or task does not exist."""

    code = "not_found"
    http_status = 404
    exit_status = 3


class Conflict(TaktflowError):
    """The object changed meanwhile, or is in a state that forbids the operation."""

    code = "conflict"
    http_status = 409
    exit_status = 4


class ValidationFailed(TaktflowError):
    """Input data was well formed but not acceptable; details name each field."""

    code = "validation_failed"
    http_status = 422
    exit_status = 2


class BadRequest(TaktflowError):
    """Input could not be read at all (malformed JSON, wrong shape)."""

    code = "bad_request"
    http_status = 400
    exit_status = 2


class Unauthorized(TaktflowError):
    """No valid credentials: log in, or send an API token."""

    code = "unauthorized"
    http_status = 401
    exit_status = 5


class PermissionDenied(TaktflowError):
    """The user may not do this; the message says why."""

    code = "forbidden"
    http_status = 403
    exit_status = 5


class DefinitionError(TaktflowError):
    """A workflow, decision, form or connector file is invalid.

    `problems` lists every problem found, each with the file, the element id or line, and the
    reason, so that one deploy reports all of them at once.
    """

    code = "invalid_definition"
    http_status = 422
    exit_status = 2

    def __init__(self, problems: list[DefinitionProblem]) -> None:
        self.problems = problems
        message = "; ".join(str(p) for p in problems[:5])
        if len(problems) > 5:
            message += f"; and {len(problems) - 5} more"
        super().__init__(message, details=[p.to_dict() for p in problems])


class DefinitionProblem:
    """One problem in one definition file."""

    def __init__(
        self,
        file: str,
        reason: str,
        *,
        element: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.file = file
        self.reason = reason
        self.element = element
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        if self.element:
            where += f": element {self.element!r}"
        return f"{where}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "element": self.element,
            "reason": self.reason,
        }
