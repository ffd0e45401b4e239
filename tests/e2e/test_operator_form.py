"""An operator fills a form in the browser: the live tolerance verdict, a server-side
validation error next to its field, the fix, the submit, and the inbox without the task."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect


def test_operator_sees_a_validation_error_fixes_it_and_submits(
    page: Any, login: Any, backend: Any, page_errors: Any
) -> None:
    page_errors.allow(r"status of 422")  # the refused submission, shown as the page itself
    backend.user("olga", ["operator"])
    backend.deploy_paths("forms/first_article.yaml", "workflows/first_article.yaml")
    instance_id = backend.start("first_article", {"order_id": "PO-88", "nominal_mm": 25.0})
    task_id = backend.task(instance_id)["task_id"]

    login("olga")
    page.goto("/tasks")
    row = page.locator(f'[data-task-id="{task_id}"]')
    expect(row).to_contain_text("Measure first article")
    row.locator("a").first.click()
    expect(page.locator("#form-title")).to_have_text("First article, order PO-88")

    # The note field appears only once the value is out of tolerance.
    note = page.locator('[data-field="out_of_tolerance_note"]')
    expect(note).to_be_hidden()
    page.fill("#f-measured_mm", "25,09")
    expect(page.locator("#f-measured_mm-verdict")).to_have_text("✘ out of tolerance")
    expect(note).to_be_visible()
    # A scanner types the code and Enter: the focus moves on, nothing is submitted.
    page.fill("#f-gauge_id", "G-10")
    page.press("#f-gauge_id", "Enter")
    expect(page.locator("#f-out_of_tolerance_note")).to_be_focused()

    with page.expect_navigation():
        page.click("#complete")
    expect(page.locator("#form-errors")).to_contain_text("nothing was saved")
    expect(page.locator("#f-gauge_id-error")).to_contain_text("a gauge number such as G-104")
    expect(page.locator("#f-out_of_tolerance_note-error")).to_have_text("this field is required")
    expect(page.locator("#f-measured_mm")).to_have_value("25,09")  # what was typed stays
    assert backend.task(instance_id)["task_id"] == task_id  # still open: nothing stored

    page.fill("#f-gauge_id", "G-104")
    page.fill("#f-out_of_tolerance_note", "burr at the edge")
    with page.expect_navigation():
        page.click("#complete")
    assert page.url.endswith("/tasks")
    expect(page.locator(".flash.success")).to_contain_text("“Measure first article” done.")
    expect(page.locator(f'[data-task-id="{task_id}"]')).to_have_count(0)

    data = backend.instance(instance_id)["data"]
    assert (data["measured_mm"], data["measured_mm_verdict"]) == (25.09, "out")
    assert (data["gauge_id"], data["out_of_tolerance_note"]) == ("G-104", "burr at the edge")
