"""Which keys of a loaded spec the plans read: the spec is wrapped in dicts that record reads."""

from __future__ import annotations

from typing import Any

from service.contract.plan import JobPlan
from tests.helpers.specs import loaded_spec

#: A spec with every optional section present, so that the plans read every key they know.
FULL_SPEC_SECTIONS: dict[str, Any] = {
    "name": "full",
    "labels": {"team": "vision"},
    "dataset": {"train": "s3://data/digits/train/", "validation": "s3://data/digits/validation/"},
    "head": {},
    "training": {"early_stopping": {}, "augmentation": {}},
    "schedule": [
        {"epochs": 1},
        {
            "epochs": 2,
            "learning_rate": 0.01,
            "freeze": "base",
            "lr_schedule": {"type": "cosine", "warmup_epochs": 1},
        },
    ],
    "gate": {"metric": "val_accuracy", "min": 0.5},
    "promote": {"alias_uri": "s3://models/digits/production.json"},
    "notify": {"webhook_url": "https://ci.example.com/hooks/finetune"},
}


class RecordingDict(dict[str, Any]):
    """A spec object that notes each key read by subscript, and refuses ``get``.

    ``get`` with a fallback would be a second default beside the schema's.
    """

    def __init__(self, raw: dict[str, Any], path: str, reads: list[str]) -> None:
        super().__init__({key: _wrap(value, _join(path, key), reads) for key, value in raw.items()})
        self._path = path
        self._reads = reads

    def __getitem__(self, key: str) -> Any:
        self._reads.append(_join(self._path, key))
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        raise AssertionError(f"the plan read {_join(self._path, key)!r} with get()")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _wrap(value: Any, path: str, reads: list[str]) -> Any:
    if isinstance(value, dict):
        return RecordingDict(value, path, reads)
    if isinstance(value, list):
        return [_wrap(item, f"{path}[{index}]", reads) for index, item in enumerate(value)]
    return value


#: Specs that between them make the plans read every key they know (some keys are read only
#: in one shape of spec: ``training.epochs`` only without a schedule).
SPEC_SHAPES: dict[str, dict[str, Any]] = {
    "full": FULL_SPEC_SECTIONS,
    "no schedule": {**FULL_SPEC_SECTIONS, "schedule": None},
    "architecture": {
        **FULL_SPEC_SECTIONS,
        "base_model": {"architecture": "MobileNetV2", "weights_uri": "s3://models/mnv2.h5"},
    },
}


def keys_read(sections: dict[str, Any]) -> list[str]:
    """The dotted keys (``schedule[1].freeze``) JobPlan.from_spec reads of a loaded spec."""
    reads: list[str] = []
    JobPlan.from_spec(RecordingDict(loaded_spec(**sections), "", reads))
    return sorted(set(reads))


def keys_read_by_the_plan() -> list[tuple[str, str]]:
    """Each key the plans read, with the name of a SPEC_SHAPES spec they read it in."""
    found: dict[str, str] = {}
    for shape, sections in SPEC_SHAPES.items():
        for key in keys_read(sections):
            found.setdefault(key, shape)
    return sorted(found.items())
