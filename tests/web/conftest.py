"""Web fixtures: log in through the real login form, read CSRF tokens from pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest


def csrf_token_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no CSRF token"
    return match.group(1)


@pytest.fixture
def csrf() -> Callable[[str], str]:
    """csrf(page_html) -> the CSRF token in it."""
    return csrf_token_of


@pytest.fixture
def sign_in() -> Callable[[Any, str, str], Any]:
    """sign_in(client, username, password) -> the login response (302 on success)."""

    def run(client: Any, username: str, password: str) -> Any:
        page = client.get("/login").get_data(as_text=True)
        return client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": csrf_token_of(page)},
        )

    return run
