"""The recipe's knobs through the real API: defaults filled in, and each bad value or bad
combination a 422 naming the field and saying what to change."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from openapi_schema_validator import OAS30Validator

from tests.helpers.errors import field_messages
from tests.helpers.specs import raw_spec


@pytest.fixture
def documented(client: FlaskClient) -> OAS30Validator:
    """The OpenAPI document's JobSpec, as a validator of request bodies."""
    components = client.get("/openapi.json").json["components"]
    return OAS30Validator({"$ref": "#/components/schemas/JobSpec", "components": components})


def test_the_knobs_default_to_the_recipe_of_before(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", json=raw_spec(head={}, training={"early_stopping": {}}))

    assert response.status_code == 201, response.json
    spec = response.json["spec"]
    training = spec["training"]
    assert training["lr_schedule"] == {
        "type": "constant",
        "warmup_epochs": 0,
        "min_learning_rate": 0.0,
    }
    assert (training["label_smoothing"], training["weight_decay"]) == (0.0, None)
    assert (training["momentum"], training["nesterov"], training["clipnorm"]) == (None, False, None)
    assert training["early_stopping"]["min_delta"] == 0.0
    assert spec["head"]["l2"] == 0.0
    assert training["feature_cache"] == "auto"


def test_a_spec_with_every_knob_is_accepted(
    client: FlaskClient, documented: OAS30Validator
) -> None:
    body = raw_spec(
        head={"l2": 0.0005},
        training={
            "optimizer": "sgd",
            "learning_rate": 0.01,
            "weight_decay": 0.0001,
            "momentum": 0.9,
            "nesterov": True,
            "clipnorm": 1.0,
            "label_smoothing": 0.1,
            "feature_cache": "off",
            "lr_schedule": {"type": "cosine", "warmup_epochs": 1, "min_learning_rate": 1e-5},
            "early_stopping": {"min_delta": 0.001},
        },
        schedule=[
            {"epochs": 3},
            {
                "epochs": 4,
                "learning_rate": 0.001,
                "lr_schedule": {"type": "exponential", "min_learning_rate": 1e-6},
            },
        ],
    )

    response = client.post("/v1/jobs", json=body)

    assert response.status_code == 201, response.json
    assert documented.is_valid(body)
    phases = response.json["spec"]["schedule"]
    assert phases[0]["lr_schedule"] is None  # training.lr_schedule applies
    assert phases[1]["lr_schedule"] == {
        "type": "exponential",
        "warmup_epochs": 0,
        "min_learning_rate": 1e-6,
    }


@pytest.mark.parametrize(
    ("training", "field", "words"),
    [
        ({"optimizer": "adam", "weight_decay": 0.01}, "weight_decay", "only adamw and sgd do"),
        ({"optimizer": "rmsprop", "weight_decay": 0.01}, "weight_decay", "only adamw and sgd"),
        ({"optimizer": "adam", "momentum": 0.9}, "momentum", "only sgd and rmsprop do"),
        ({"optimizer": "adamw", "momentum": 0.9}, "momentum", "only sgd and rmsprop"),
        (
            {"optimizer": "rmsprop", "momentum": 0.9, "nesterov": True},
            "nesterov",
            "only sgd does",
        ),
        ({"optimizer": "sgd", "nesterov": True}, "nesterov", "needs training.momentum above 0"),
        (
            {"loss": "sparse_categorical_crossentropy", "label_smoothing": 0.1},
            "label_smoothing",
            "Only with loss categorical_crossentropy",
        ),
        ({"label_smoothing": 0.6}, "label_smoothing", "less than or equal to 0.5"),
        ({"label_smoothing": -0.1}, "label_smoothing", "greater than or equal to 0"),
        ({"weight_decay": -1.0, "optimizer": "adamw"}, "weight_decay", "greater than or equal"),
        ({"momentum": 1.0, "optimizer": "sgd"}, "momentum", "less than 1"),
        ({"clipnorm": 0}, "clipnorm", "greater than 0"),
        ({"feature_cache": "on"}, "feature_cache", "Must be one of: auto, off"),
    ],
    ids=[
        "weight-decay-adam",
        "weight-decay-rmsprop",
        "momentum-adam",
        "momentum-adamw",
        "nesterov-rmsprop",
        "nesterov-without-momentum",
        "smoothing-sparse-loss",
        "smoothing-above-half",
        "smoothing-negative",
        "weight-decay-negative",
        "momentum-one",
        "clipnorm-zero",
        "feature-cache-unknown",
    ],
)
def test_a_bad_optimizer_or_loss_knob_is_422_naming_it(
    client: FlaskClient,
    documented: OAS30Validator,
    training: dict[str, Any],
    field: str,
    words: str,
) -> None:
    body = raw_spec(training=training)
    messages = field_messages(client, body, ["training", field])

    assert words in messages[0], messages
    assert client.get("/v1/jobs").json["jobs"] == []  # nothing was queued
    assert not documented.is_valid(body)  # the document refuses it too


def test_the_weight_decay_message_says_which_optimizers_take_it(client: FlaskClient) -> None:
    messages = field_messages(
        client,
        raw_spec(training={"optimizer": "adam", "weight_decay": 0.01}),
        ["training", "weight_decay"],
    )

    assert messages == [
        "Optimizer 'adam' takes no weight_decay; only adamw and sgd do (adamw is Adam with "
        "weight decay). Change training.optimizer or leave training.weight_decay out."
    ]


@pytest.mark.parametrize(
    ("body", "path", "words", "comparing"),
    [
        (
            raw_spec(training={"epochs": 2, "lr_schedule": {"warmup_epochs": 2}}),
            ["training", "lr_schedule", "warmup_epochs"],
            "fewer than the phase's epochs: the job has 2",
            True,
        ),
        (
            raw_spec(
                training={"lr_schedule": {"warmup_epochs": 2}},
                schedule=[{"epochs": 5}, {"epochs": 2}],
            ),
            ["training", "lr_schedule", "warmup_epochs"],
            "schedule[1] has 2",
            True,
        ),
        (
            raw_spec(schedule=[{"epochs": 5}, {"epochs": 1, "lr_schedule": {"warmup_epochs": 1}}]),
            ["schedule", "1", "lr_schedule", "warmup_epochs"],
            "schedule[1] has 1",
            True,
        ),
        (
            raw_spec(
                training={
                    "learning_rate": 0.001,
                    "lr_schedule": {"type": "cosine", "min_learning_rate": 0.001},
                }
            ),
            ["training", "lr_schedule", "min_learning_rate"],
            "below the learning rate it decays from: the job trains at 0.001",
            True,
        ),
        (
            raw_spec(
                training={"lr_schedule": {"type": "cosine", "min_learning_rate": 0.0001}},
                schedule=[
                    {"epochs": 2, "learning_rate": 0.01},
                    {"epochs": 2, "learning_rate": 1e-5},
                ],
            ),
            ["training", "lr_schedule", "min_learning_rate"],
            "schedule[1] trains at 1e-05",
            True,
        ),
        (
            raw_spec(
                schedule=[
                    {
                        "epochs": 2,
                        "learning_rate": 1e-5,
                        "lr_schedule": {"type": "exponential", "min_learning_rate": 1e-4},
                    }
                ]
            ),
            ["schedule", "0", "lr_schedule", "min_learning_rate"],
            "schedule[0] trains at 1e-05",
            True,
        ),
        (
            raw_spec(training={"lr_schedule": {"min_learning_rate": 1e-6}}),
            ["training", "lr_schedule", "min_learning_rate"],
            "Only with type cosine or exponential",
            False,
        ),
        (
            raw_spec(training={"lr_schedule": {"type": "exponential"}}),
            ["training", "lr_schedule", "min_learning_rate"],
            "needs a rate above 0 to decay to",
            False,
        ),
        (
            raw_spec(training={"lr_schedule": {"type": "linear"}}),
            ["training", "lr_schedule", "type"],
            "Must be one of: constant, cosine, exponential.",
            False,
        ),
        (
            raw_spec(training={"lr_schedule": {"warmup_epochs": 1.5}}),
            ["training", "lr_schedule", "warmup_epochs"],
            "write a JSON integer",
            False,
        ),
        (
            raw_spec(training={"lr_schedule": {"warmup": 1}}),
            ["training", "lr_schedule", "warmup"],
            "Did you mean 'warmup_epochs'?",
            False,
        ),
        (
            raw_spec(training={"early_stopping": {"min_delta": -0.1}}),
            ["training", "early_stopping", "min_delta"],
            "greater than or equal to 0",
            False,
        ),
        (
            raw_spec(head={"l2": 2}),
            ["head", "l2"],
            "less than or equal to 1",
            False,
        ),
        (
            raw_spec(head={"l2": "0.01"}),
            ["head", "l2"],
            "write a JSON number",
            False,
        ),
    ],
    ids=[
        "warmup-as-long-as-the-job",
        "warmup-longer-than-a-phase",
        "phase-warmup-as-long-as-its-phase",
        "floor-at-the-rate",
        "floor-above-a-phase-rate",
        "phase-floor-above-its-rate",
        "floor-with-constant",
        "exponential-to-zero",
        "unknown-type",
        "fractional-warmup",
        "misspelt-field",
        "negative-min-delta",
        "l2-above-one",
        "l2-string",
    ],
)
def test_a_bad_schedule_early_stopping_or_head_knob_is_422_naming_it(
    client: FlaskClient,
    documented: OAS30Validator,
    body: dict[str, Any],
    path: list[str],
    words: str,
    comparing: bool,
) -> None:
    messages = field_messages(client, body, path)

    assert words in messages[0], messages
    # A rule comparing a phase's epochs or learning rate with its schedule: JSON Schema cannot
    # compare two fields, so the document says it in descriptions only; the others it refuses.
    assert documented.is_valid(body) is comparing


def test_the_dry_run_refuses_the_same_combinations(client: FlaskClient) -> None:
    response = client.post(
        "/v1/jobs/validate", json=raw_spec(training={"optimizer": "adam", "momentum": 0.9})
    )

    assert response.status_code == 422, response.json
    assert "momentum" in response.json["errors"]["json"]["training"]


def test_the_document_states_each_knob_with_its_default(client: FlaskClient) -> None:
    schemas = client.get("/openapi.json").json["components"]["schemas"]

    training = schemas["Training"]["properties"]
    assert training["lr_schedule"]["allOf"] == [
        {"$ref": "#/components/schemas/LearningRateSchedule"}
    ]
    assert training["label_smoothing"]["maximum"] == 0.5
    assert training["weight_decay"]["default"] is None
    assert "adamw or sgd" in training["weight_decay"]["description"]
    assert "sgd or rmsprop" in training["momentum"]["description"]
    assert training["nesterov"]["default"] is False
    assert training["clipnorm"]["exclusiveMinimum"] is True
    schedule = schemas["LearningRateSchedule"]["properties"]
    assert schedule["type"]["enum"] == ["constant", "cosine", "exponential"]
    assert (schedule["warmup_epochs"]["default"], schedule["min_learning_rate"]["default"]) == (
        0,
        0.0,
    )
    phase = schemas["Phase"]["properties"]["lr_schedule"]
    assert {"$ref": "#/components/schemas/LearningRateSchedule"} in phase["anyOf"]
    assert schemas["EarlyStopping"]["properties"]["min_delta"]["default"] == 0.0
    assert schemas["Head"]["properties"]["l2"]["default"] == 0.0
