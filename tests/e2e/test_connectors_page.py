"""The connectors page in the browser: the demo connectors with their stored values."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect


def test_an_engineer_sees_the_connectors_and_their_last_values(
    page: Any, login: Any, backend: Any
) -> None:
    backend.user("erik", ["engineer"])
    from taktflow.app import workflow_engine

    backend.call(lambda: workflow_engine().record_connector_events(
        "press_1", {"point:part_counter": 41}, []))  # fmt: skip
    login("erik")
    page.goto("/connectors")
    card = page.locator('[data-connector="press_1"]')
    expect(card).to_contain_text("127.0.0.1:5020")
    expect(card.locator("tr", has_text="part_counter")).to_contain_text("41")
    expect(page.locator('[data-connector="test_station"]')).to_contain_text("No values stored")
