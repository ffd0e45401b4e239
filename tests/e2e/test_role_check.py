"""Role checks hold in the browser: an operator is refused the approvals page."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect


def test_operator_is_refused_the_approvals_page(page: Any, page_errors: Any, login: Any,
                                                backend: Any) -> None:  # fmt: skip
    backend.user("olga", ["operator"])
    login("olga")
    expect(page.locator("nav[aria-label=Main]")).not_to_contain_text("Approvals")
    # Chromium logs every 4xx document as a console error: expected here.
    page_errors.allow(r"/approvals: Failed to load resource: .* status of 403")
    response = page.goto("/approvals")
    assert response is not None and response.status == 403
    expect(page.locator("h1")).to_have_text("Not allowed")
    expect(page.locator("#reason")).to_be_visible()
