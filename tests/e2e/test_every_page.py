"""Every page an admin can open renders in Chromium without a console error (the `page`
fixture fails the test on any), including the diagram and form preview pages."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect


def test_every_page_renders_without_console_errors(page: Any, login: Any, backend: Any) -> None:
    backend.user("ada", ["admin"])
    backend.deploy_paths("forms/first_article.yaml", "workflows/first_article.yaml")
    instance_id = backend.start("first_article", {"order_id": "PO-1", "nominal_mm": 25.0})
    task_id = backend.task(instance_id)["task_id"]
    login("ada")
    pages = {
        "/": "h1",
        "/tasks": "h1",
        f"/tasks/{task_id}": "#form-title",
        "/approvals": "h1",
        "/instances": "h1",
        f"/instances/{instance_id}": "h1",
        "/processes": "h1",
        "/processes/first_article": "h1",
        "/forms": "#forms",
        "/forms/first_article": "#preview",
        "/forms/preview": "#source",
        "/connectors": "h1",
        "/orders/new": "h1",
        "/dashboard": "h1",
        "/reports": "h1",
        "/reports/inventory": "h1",
        "/reports/genealogy": "h1",
        "/reports/orders": "h1",
        "/reports/sales-orders": "h1",
        "/reports/trial-balance": "h1",
        "/reports/journal": "h1",
    }
    for path, selector in pages.items():
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        expect(page.locator(selector).first).to_be_visible()
        if path.startswith(("/instances/", "/processes/")):
            page.wait_for_function("document.body.dataset.bpmn === 'rendered'")
