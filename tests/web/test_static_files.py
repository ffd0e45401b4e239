"""The stylesheet and scripts the pages link to are served (the browser tests would show a
404 as a console error; this catches it without a browser)."""

from __future__ import annotations

import re
from typing import Any


def test_every_static_file_a_page_links_to_is_served(client: Any) -> None:
    page = client.get("/login").get_data(as_text=True)
    linked = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
    assert "/static/taktflow.css" in linked
    for path in [*linked, "/static/taktflow-forms.js"]:
        response = client.get(path)
        assert response.status_code == 200, path
        response.close()
