"""The OpenAPI document is valid OpenAPI 3 and lists exactly the routes the app serves."""

from __future__ import annotations

import re
from typing import Any

from openapi_spec_validator import validate


def test_the_document_is_valid_and_matches_the_routes(client: Any, app: Any) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    validate(doc)
    documented = {
        (method.upper(), path) for path, operations in doc["paths"].items() for method in operations
    }
    served = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = rule.rule.removeprefix("/api/v1")
        actions = re.search(r"<any\(([^)]*)\):action>", path)
        variants = (
            [path.replace(actions.group(0), a.strip()) for a in actions.group(1).split(",")]
            if actions
            else [path]
        )
        for variant in variants:
            variant = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", variant)
            served |= {(m, variant) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == served


def test_every_protected_operation_says_who_may_call_it(client: Any) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            assert op["description"].startswith("Who: "), (method, path)
            if op.get("security") != []:
                assert {"401", "403"} <= set(op["responses"]), (method, path)
