"""The connectors page in the browser: the demo connectors with their stored values, the
runtime's state and the (empty) dead letters."""

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
    station = page.locator('[data-connector="test_station"]')
    # No runtime has reported: the page says so and how to start one.
    expect(station.locator(".runtime")).to_contain_text("not running")
    expect(station).to_contain_text("taktflow connectors run")
    expect(page.locator("#dead-letter-table")).to_contain_text("None")
