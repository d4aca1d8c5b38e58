"""The champion a job compares its model with (spec ``compare_with``), staged for the trainer.

``compare_with.model_uri`` names the model itself; ``compare_with.alias_uri`` an alias object
whose current ``target`` names it (its ``keras_uri``, and its ``manifest_uri``). The model is
downloaded like a base model; its manifest (the alias target's, or a ``manifest.json`` beside a
model file or SavedModel folder) gives its class names in output order and the input size it
was trained at. Without a manifest the trainer reads it as a plain Keras model.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from service.contract.layout import MANIFEST_FILE
from service.contract.plan import CompareWith
from service.contract.request import ChampionModel
from service.contract.uri import parse_uri
from service.jobs.aliases import Alias
from service.jobs.errors import InvalidAlias
from service.worker.errors import JobFailure
from service.worker.staging import Stager

MODEL_FIELD = "compare_with.model_uri"
ALIAS_FIELD = "compare_with.alias_uri"


def stage_champion(stager: Stager, compare: CompareWith, dest: Path) -> ChampionModel:
    """Download the champion under ``dest`` with what its manifest says of it.

    Raises:
        JobFailure: ``invalid_model`` (no alias or model there, an alias that names no model)
            or ``storage``.
    """
    if compare.alias_uri is not None:
        model_uri, manifest_uri = _alias_target(stager, compare.alias_uri)
        field_name = ALIAS_FIELD
    else:
        assert compare.model_uri is not None, "the schema requires model_uri or alias_uri"
        model_uri, field_name = compare.model_uri, MODEL_FIELD
        manifest_uri = _manifest_beside(model_uri)
    path = stager.stage_model(model_uri, dest, field_name, "the champion model")
    manifest = _read_manifest(stager, manifest_uri, field_name)
    class_names = manifest.get("class_names")
    input_shape = manifest.get("input_shape")
    return ChampionModel(
        uri=model_uri,
        path=str(path),
        class_names=[str(name) for name in class_names] if isinstance(class_names, list) else None,
        input_shape=_shape(input_shape),
    )


def _alias_target(stager: Stager, alias_uri: str) -> tuple[str, str | None]:
    data = stager.read_small(alias_uri, ALIAS_FIELD, "the alias")
    if data is None:
        raise JobFailure(
            "invalid_model",
            f"compare_with.alias_uri: no alias is stored at {alias_uri}. Promote a model to it "
            "first, or compare with a model_uri.",
            field=ALIAS_FIELD,
        )
    try:
        # The reader the API and `finetune alias` use: the same objects are aliases everywhere.
        target = Alias.from_json(data).current.target
    except InvalidAlias as exc:
        raise JobFailure(
            "invalid_model",
            f"compare_with.alias_uri: {alias_uri} is not an alias object (JSON with a version "
            f"and a target of job_id, keras_uri, saved_model_uri and manifest_uri): {exc}.",
            field=ALIAS_FIELD,
        ) from exc
    return target.keras_uri, target.manifest_uri


def _manifest_beside(model_uri: str) -> str:
    """``manifest.json`` in the folder of a model file, or beside a SavedModel folder."""
    parsed = parse_uri(model_uri)
    key = parsed.key.rstrip("/")
    folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    return str(replace(parsed, key=folder + MANIFEST_FILE))


def _read_manifest(stager: Stager, uri: str | None, field_name: str) -> dict[str, Any]:
    if uri is None:
        return {}
    data = stager.read_small(uri, field_name, "the champion's manifest")
    if data is None:
        return {}
    try:
        manifest = json.loads(data)
    except ValueError:
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _shape(value: Any) -> list[int] | None:
    """A manifest's (height, width, channels), or None where it holds none."""
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) for v in value):
        return [int(v) for v in value]
    return None
