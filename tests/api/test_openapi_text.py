"""The OpenAPI document's prose is Markdown, as /docs renders it (no reStructuredText)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from service.app import create_app
from service.config import Config

#: What reStructuredText writes and Markdown shows literally: ``literal``, :role:`target`.
_RESTRUCTURED_TEXT = re.compile(r"``|:[a-z]+:`")


def _texts(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _texts(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _texts(value, f"{path}/{index}")
    elif isinstance(node, str) and path.rsplit("/", 1)[-1] in ("description", "summary"):
        yield path, node


def test_descriptions_and_summaries_are_markdown(tmp_path: Path) -> None:
    client = create_app(Config(state_uri=f"file://{tmp_path / 'state'}")).test_client()
    document = client.get("/openapi.json").get_json()
    texts = dict(_texts(document))
    assert "/paths//v1/jobs/post/description" in texts, "view docstrings are descriptions"
    assert "`base_model.uri`" in texts["/paths//v1/jobs/post/description"]
    offending = {path: text for path, text in texts.items() if _RESTRUCTURED_TEXT.search(text)}
    assert not offending
