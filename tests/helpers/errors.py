"""Reading the API's error answers in tests."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient


def field_messages(client: FlaskClient, body: dict[str, Any], path: list[str]) -> list[str]:
    """POSTs ``body`` as a job spec, expects a 422, and returns the messages at ``path``.

    ``path`` names the field as the answer nests it: ``["schedule", "1", "lr_schedule",
    "warmup_epochs"]`` (list items by their index as a string, as JSON writes it).
    """
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.json
    node = response.json["errors"]["json"]
    for part in path:
        assert part in node, (part, node)
        node = node[part]
    return list(node)
