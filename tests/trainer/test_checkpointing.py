"""Checkpoints after every epoch, and a resumed run that continues where one stopped."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest

from service.contract.messages import CheckpointWritten, EpochEnded
from service.trainer.run import train
from tests.trainer.support import Recorder, make_request

SCHEDULE: list[dict[str, Any]] = [
    {"epochs": 2, "learning_rate": 0.003, "freeze": "base"},
    {"epochs": 2, "learning_rate": 0.0005, "freeze": {"first_n": 5}},
]


def _request(tmp_path: Path, base: Path, train_dir: Path, name: str) -> Any:
    request = make_request(
        tmp_path / name, base, train_dir, head={"cut_at": "gap"}, schedule=SCHEDULE
    )
    return dataclasses.replace(request, checkpoint_dir=str(tmp_path / name / "checkpoints"))


@pytest.fixture(scope="module")
def straight(
    tmp_path_factory: pytest.TempPathFactory, pretrained_keras: Path, digits_train: Path
) -> tuple[Recorder, Any, Path]:
    """One uninterrupted run with checkpoints (shared by the tests of this module)."""
    root = tmp_path_factory.mktemp("straight")
    recorder = Recorder()
    outcome = train(_request(root, pretrained_keras, digits_train, "full"), recorder)
    return recorder, outcome, root


def test_every_epoch_leaves_a_complete_checkpoint(straight: tuple[Recorder, Any, Path]) -> None:
    recorder, _, root = straight
    reported = recorder.of_type(CheckpointWritten)
    assert [(m.epoch, m.phase_index) for m in reported] == [(1, 0), (2, 0), (3, 1), (4, 1)]
    for message in reported:
        folder = Path(message.path)
        assert sorted(p.name for p in folder.iterdir()) == [
            "model.weights.npz",
            "optimizer.npz",
            "state.json",
        ]
    assert not list((root / "full" / "checkpoints").glob(".tmp-*"))
    # The worker sees the checkpoint of an epoch before the epoch's progress message.
    kinds = recorder.kinds(CheckpointWritten, EpochEnded)
    assert kinds == ["CheckpointWritten", "EpochEnded"] * 4


@pytest.mark.parametrize("stop_after", [1, 3], ids=["inside-phase-1", "inside-phase-2"])
def test_resumed_run_continues_and_ends_close_to_an_uninterrupted_one(
    tmp_path: Path,
    pretrained_keras: Path,
    digits_train: Path,
    stop_after: int,
    straight: tuple[Recorder, Any, Path],
) -> None:
    recorder, uninterrupted, _ = straight
    checkpoint = Path(recorder.of_type(CheckpointWritten)[stop_after - 1].path)
    saved = tmp_path / "saved-checkpoint"
    shutil.copytree(checkpoint, saved)

    resumed_recorder = Recorder()
    request = dataclasses.replace(
        _request(tmp_path, pretrained_keras, digits_train, "resumed"), resume_from=str(saved)
    )
    resumed = train(request, resumed_recorder)

    epochs_run = [m.epoch for m in resumed_recorder.of_type(EpochEnded)]
    assert epochs_run == list(range(stop_after + 1, 5))  # nothing before the checkpoint again
    assert [entry["epoch"] for entry in resumed.history] == [1, 2, 3, 4]
    assert [entry["phase"] for entry in resumed.history] == [0, 0, 1, 1]
    assert resumed.history[:stop_after] == uninterrupted.history[:stop_after]
    for name in ("loss", "accuracy"):
        assert resumed.metrics[name] == pytest.approx(uninterrupted.metrics[name], abs=0.15)
