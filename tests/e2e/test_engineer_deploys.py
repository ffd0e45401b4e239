"""An engineer deploys a workflow by upload; the instance page draws it with its state."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

PACKING = """\
process: packing_check
name: Packing check
lanes: [operator, quality]
steps:
  - task: Count parts
    lane: operator
  - task: Check labels
    lane: quality
"""


def test_engineer_uploads_a_workflow_and_sees_its_instance(
    page: Any, login: Any, backend: Any
) -> None:
    backend.user("erik", ["engineer"])
    login("erik")
    page.goto("/processes")
    expect(page.locator("#processes")).to_contain_text("Nothing deployed yet.")
    page.set_input_files(
        "#file",
        files=[{"name": "packing_check.yaml", "mimeType": "text/yaml", "buffer": PACKING.encode()}],
    )
    with page.expect_navigation():
        page.click("#deploy button[type=submit]")
    # Deployed (tasks without forms only draw lint warnings, shown next to the result).
    row = page.locator("#processes tr", has_text="packing_check")
    expect(row).to_contain_text("Packing check")
    expect(row).to_contain_text("v1")
    expect(row.locator("a")).to_have_attribute("href", "/processes/packing_check")
    expect(page.locator("#problems")).to_have_count(0)

    instance_id = backend.start("packing_check", {"order_id": "PO-9"})
    backend.complete(backend.task(instance_id)["task_id"], {"count": 40}, actor="olga")

    page.goto(f"/instances/{instance_id}")
    page.wait_for_selector("body[data-bpmn=rendered]")
    shape = 'g.djs-element[data-element-id="{}"]'.format
    expect(page.locator(shape("check_labels"))).to_have_class(re.compile(r"\bactive\b"))
    expect(page.locator(shape("count_parts"))).to_have_class(re.compile(r"\bcompleted\b"))
    expect(page.locator(shape("count_parts"))).not_to_have_class(re.compile(r"\bactive\b"))
    # The marker's style really applies (bpmn-js draws with inline styles).
    fill = page.locator(shape("check_labels") + " .djs-visual > :nth-child(1)").evaluate(
        "e => getComputedStyle(e).fill"
    )
    assert fill == "rgb(187, 222, 251)"
    expect(page.locator("#status")).to_have_text("active")
