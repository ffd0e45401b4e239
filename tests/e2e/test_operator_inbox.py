"""The operator's inbox refreshes itself (htmx) and shows new tasks without a reload."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

#: tasks.html: hx-trigger="every 5s" on #task-table.
REFRESH_MS = 5_000


def test_operator_sees_a_new_task_without_reloading(
    page: Any, login: Any, backend: Any, release_check: str
) -> None:
    backend.user("olga", ["operator"])
    first = backend.start(release_check, {"order_id": "PO-1"})
    first_task = backend.task(first)["task_id"]

    # A fake clock: the 5 s refresh happens when the test says so (no real waiting).
    page.clock.install()
    login("olga")
    assert page.url.endswith("/tasks")
    expect(page.locator(f'#tasks tr[data-task-id="{first_task}"]')).to_contain_text("Record setup")
    expect(page.locator("#tasks tbody tr")).to_have_count(1)
    page.evaluate("window.__not_reloaded = true")

    second = backend.start(release_check, {"order_id": "PO-2"})
    second_task = backend.task(second)["task_id"]
    expect(page.locator("#tasks tbody tr")).to_have_count(1)  # not before the refresh
    # The page's clock still runs in real time too: the short wait below makes sure that the
    # row comes from the refresh that run_for() fired, not from waiting 5 real seconds.
    page.clock.run_for(REFRESH_MS + 100)
    row = page.wait_for_selector(f'#tasks tr[data-task-id="{second_task}"]', timeout=2_000)
    assert f"#{second}" in row.inner_text()
    expect(page.locator("#tasks tbody tr")).to_have_count(2)
    assert page.evaluate("window.__not_reloaded") is True  # swapped in, not reloaded
