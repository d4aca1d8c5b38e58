"""base_model.architecture: the spec's rules, checked by the API (which never imports Keras)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from schemas import JobSpecSchema
from service.contract.architectures import ARCHITECTURES
from service.contract.plan import TrainingPlan
from service.contract.preprocessing import FAMILY_MODES
from tests.helpers.specs import raw_spec

WEIGHTS = "s3://weights/mobilenet_v2_1.0_224_no_top.h5"


def _named(**base: Any) -> dict[str, Any]:
    return raw_spec(base_model={"architecture": "MobileNetV2", "weights_uri": WEIGHTS, **base})


def _errors(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.json
    assert client.get("/v1/jobs").json["jobs"] == []
    errors: dict[str, Any] = response.json["errors"]["json"]["base_model"]
    return errors


def test_api_md_form_is_accepted_and_queued(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", json=_named(options={"alpha": 1.0}))

    assert response.status_code in (201, 202), response.json
    base = response.json["spec"]["base_model"]
    assert base["architecture"] == "MobileNetV2" and base["weights_uri"] == WEIGHTS
    assert base["options"] == {"alpha": 1.0} and base["uri"] is None
    assert response.json["spec"]["dataset"]["preprocessing"] == "auto"


@pytest.mark.parametrize(
    ("base", "field", "words"),
    [
        ({"architecture": "MobileNetV9", "weights_uri": WEIGHTS}, "architecture", "Must be one"),
        ({"architecture": "MobileNetV2"}, "weights_uri", "Required with architecture"),
        (
            {"architecture": "MobileNetV2", "weights_uri": WEIGHTS, "uri": "s3://m/a.keras"},
            "architecture",
            "not both",
        ),
        ({}, "uri", "Give base_model.uri"),
        ({"uri": "s3://m/a.keras", "weights_uri": WEIGHTS}, "weights_uri", "Only with"),
        (
            {"architecture": "MobileNetV2", "weights_uri": "http://example.com/w.h5"},
            "weights_uri",
            "",
        ),
        (
            {"architecture": "MobileNetV2", "weights_uri": WEIGHTS, "format": "h5"},
            "format",
            "Only with base_model.uri",
        ),
    ],
    ids=[
        "unknown",
        "no-weights",
        "both",
        "neither",
        "weights-without-arch",
        "bad-scheme",
        "format-with-arch",
    ],
)
def test_bad_base_model_is_422_naming_the_field(
    client: FlaskClient, base: dict[str, Any], field: str, words: str
) -> None:
    errors = _errors(client, raw_spec(base_model=base))

    assert field in errors, errors
    assert words in " ".join(errors[field])


@pytest.mark.parametrize(
    ("architecture", "options", "name", "words"),
    [
        ("MobileNetV2", {"pooling": "avg"}, "pooling", "allowed: include_top, alpha"),
        ("MobileNetV2", {"classes": 10}, "classes", "Not an option"),
        ("MobileNetV2", {"weights": "imagenet"}, "weights", "Not an option"),
        ("ResNet50", {"alpha": 0.5}, "alpha", "allowed: include_top."),
        ("MobileNetV2", {"alpha": 0}, "alpha", "more than 0"),
        ("MobileNetV2", {"alpha": "wide"}, "alpha", "a number"),
        ("MobileNetV2", {"include_top": "yes"}, "include_top", "true or false"),
    ],
)
def test_options_are_an_allow_list(
    client: FlaskClient, architecture: str, options: dict[str, Any], name: str, words: str
) -> None:
    body = raw_spec(
        base_model={"architecture": architecture, "weights_uri": WEIGHTS, "options": options}
    )

    errors = _errors(client, body)

    assert words in " ".join(errors["options"][name]), errors


def test_file_weights_uri_is_refused_where_local_storage_is_off(client: FlaskClient) -> None:
    errors = _errors(client, _named(weights_uri="file:///etc/weights.h5"))

    assert "file://" in " ".join(errors["weights_uri"])


def test_preprocessing_auto_is_the_architecture_family_else_none() -> None:
    named = TrainingPlan.from_spec(JobSpecSchema().load(_named()))
    resnet = TrainingPlan.from_spec(
        JobSpecSchema().load(
            raw_spec(base_model={"architecture": "ResNet50", "weights_uri": WEIGHTS})
        )
    )
    file_base = TrainingPlan.from_spec(JobSpecSchema().load(raw_spec()))
    explicit = TrainingPlan.from_spec(
        JobSpecSchema().load(
            _named() | {"dataset": {"train": "s3://d/t/", "preprocessing": "none"}}
        )
    )

    assert named.data.preprocessing == "mobilenet_v2"
    assert resnet.data.preprocessing == "resnet50"
    assert file_base.data.preprocessing == "none"
    assert explicit.data.preprocessing == "none"  # given: kept, also "none"


def test_every_architecture_names_a_known_preprocessing_family() -> None:
    assert len(ARCHITECTURES) >= 40
    assert all(arch.family in FAMILY_MODES for arch in ARCHITECTURES.values())
