"""API fixtures: one user (with an API token) per role, and a way to call as each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from taktflow.config import DEFAULT_ROLES

ROLES = DEFAULT_ROLES.split(",")
WORKFLOW = """\
process: release_check
lanes: [operator, manager]
steps:
  - task: Record setup
    lane: operator
  - task: Approve release
    lane: manager
"""
FORM = """\
form: setup_sheet
fields:
  - name: setup_min
    type: integer
    required: true
"""


@pytest.fixture
def tokens(app: Any) -> dict[str, str]:
    """role -> API token of a user who holds only that role (user name = role)."""
    from taktflow.app import accounts

    found = {}
    with app.app_context():
        for role in ROLES:
            accounts().create_user(role, [role])  # tokens only: no slow password hashing
            _, found[role] = accounts().create_token(role, f"{role} token")
    return found


Call = Callable[..., Any]


@pytest.fixture
def call(client: Any, tokens: dict[str, str]) -> Call:
    """call(method, path, role=None, json=..., data=...) -> response (role None: no token)."""

    def run(method: str, path: str, role: str | None = None, **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if role is not None:
            headers["Authorization"] = f"Bearer {tokens[role]}"
        return client.open(f"/api/v1{path}", method=method, headers=headers, **kw)

    return run


@pytest.fixture
def deployed(call: Call) -> str:
    response = call("POST", "/processes", "engineer",
                    json={"name": "release_check.yaml", "text": WORKFLOW})  # fmt: skip
    assert response.status_code == 201, response.json
    response = call("POST", "/processes", "engineer",
                    json={"name": "setup_sheet.yaml", "text": FORM})  # fmt: skip
    assert response.status_code == 201, response.json
    return "release_check"
