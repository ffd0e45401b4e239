"""A manager approves a request on /approvals in the browser; the engine sees it done."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect


def test_manager_approves_a_request(
    page: Any, login: Any, backend: Any, release_check: str
) -> None:
    backend.user("olga", ["operator"])
    backend.user("mia", ["manager"], display_name="Mia (manager)")
    instance_id = backend.start(release_check, {"order_id": "PO-4711", "qty": 120})
    backend.complete(backend.task(instance_id)["task_id"], {"setup_min": 12}, actor="olga")
    approval = backend.task(instance_id)
    assert approval["lane"] == "manager"

    login("mia")
    page.goto("/approvals")
    card = page.locator(f'[data-task-id="{approval["task_id"]}"]')
    expect(card.locator("h2")).to_contain_text("Approve release")
    expect(card).to_contain_text("Release order PO-4711 to production?")
    # The request's data is shown with it.
    expect(card.locator("tr", has_text="order_id")).to_contain_text("PO-4711")
    expect(card.locator("tr", has_text="setup_min")).to_contain_text("12")

    card.locator("textarea[name=comment]").fill("Setup looks right.")
    with page.expect_navigation():
        card.locator("button[name=approved][value=yes]").click()
    assert page.url.endswith("/approvals")
    expect(page.locator(".flash.success")).to_have_text(
        re.compile(rf"Approve release.* done\. Instance {instance_id} is completed\.")
    )
    expect(page.locator("#no-approvals")).to_be_visible()

    view = backend.instance(instance_id)
    assert view["status"] == "completed"
    assert view["data"]["approved"] is True
    assert view["data"]["comment"] == "Setup looks right."
    assert any(e["kind"] == "task_completed" and e["actor"] == "mia" for e in view["history"])
