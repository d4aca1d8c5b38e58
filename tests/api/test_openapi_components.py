"""The OpenAPI document as client generators read it: valid OpenAPI 3.0, one named component per
object, enum and form, examples that fit their schemas, and a generated client with every model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from schemas import examples
from service.api.jobs import SPEC_EXAMPLES
from tests.helpers.generated_client import generate_client, imported_client

#: Keys under which the document holds data, not schemas.
_DATA_KEYS = ("example", "examples", "default", "enum")


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    """The served document."""
    body: dict[str, Any] = client.get("/openapi.json").json
    return body


def _nodes(node: Any, where: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every dict of the document's schemas with its path, skipping data (examples, defaults)."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            if key not in _DATA_KEYS:
                yield from _nodes(value, (*where, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _nodes(value, (*where, str(index)))


def test_the_document_is_valid_openapi_3_0(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.0.")
    validate(document)


def test_every_object_with_known_properties_is_a_component(document: dict[str, Any]) -> None:
    inline = [
        "/".join(where)
        for where, node in _nodes(document)
        if "properties" in node
        and len(where) != 3  # components/schemas/<Name> is the component itself
        and "not" not in where  # a rule's refused combinations, not an object of their own
    ]
    assert inline == []


def test_a_job_refers_to_the_job_spec_component(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["Job"]["properties"]["spec"]["allOf"] == [
        {"$ref": "#/components/schemas/JobSpec"}
    ]
    assert schemas["JobList"]["properties"]["jobs"]["items"] == {"$ref": "#/components/schemas/Job"}


def test_no_enum_lists_null_beside_its_values(document: dict[str, Any]) -> None:
    # An enum of values and null becomes three types in a generated client; a nullable enum
    # is anyOf [$ref to the enum, null] instead.
    mixed = [
        "/".join(where)
        for where, node in _nodes(document)
        if None in node.get("enum", []) and len(node["enum"]) > 1
    ]
    assert mixed == []


def _media_examples(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) for every example of a request or response body."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            bodies = {"request": operation.get("requestBody", {})}
            bodies.update(operation.get("responses", {}))
            for status, body in bodies.items():
                for media in body.get("content", {}).values():
                    where = f"{method.upper()} {path} {status}"
                    if "example" in media:
                        yield where, media["schema"], media["example"]
                    for name, example in media.get("examples", {}).items():
                        yield f"{where} {name}", media["schema"], example["value"]


def test_every_example_fits_its_schema(document: dict[str, Any]) -> None:
    checked = []
    for where, schema, example in _media_examples(document):
        # The root carries the components, so that their $refs resolve.
        validator = OAS30Validator({**schema, "components": document["components"]})
        problems = [error.message for error in validator.iter_errors(example)]
        assert problems == [], where
        checked.append(where)
    assert any(where.startswith("GET /v1/jobs/{job_id} 200") for where in checked), checked


def test_openapi_python_client_generates_every_model_without_a_warning(
    document: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document))
    output = generate_client(str(path), tmp_path / "client")
    assert "warning" not in output.lower(), output
    with imported_client(tmp_path / "client") as client:
        models = client.models
        # Every component is a model of its own, under its own name.
        for name in document["components"]["schemas"]:
            assert hasattr(models, name), name
        # The typed models read the documented jobs and specs and write them back unchanged.
        for job in (
            examples.JOB_RUNNING_EXAMPLE,
            examples.JOB_SUCCEEDED_EXAMPLE,
            examples.JOB_GATE_FAILED_EXAMPLE,
        ):
            parsed = models.Job.from_dict(job)
            assert isinstance(parsed.spec, models.JobSpec)
            assert isinstance(parsed.status, models.JobStatus)
            assert parsed.to_dict() == job
        assert models.JobList.from_dict(examples.JOB_LIST_EXAMPLE).to_dict() == (
            examples.JOB_LIST_EXAMPLE
        )
        for example in SPEC_EXAMPLES.values():
            assert models.JobSpec.from_dict(example["value"]).to_dict() == example["value"]
        succeeded = models.Job.from_dict(examples.JOB_SUCCEEDED_EXAMPLE)
        assert isinstance(succeeded.result, models.Result)
        assert succeeded.result.keras_uri == examples.JOB_SUCCEEDED_EXAMPLE["result"]["keras_uri"]
        assert isinstance(succeeded.spec.schedule[1].freeze, models.FreezeFirstN)
