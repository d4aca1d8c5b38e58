"""The CLI's parts without a service: spec files, exit codes, progress views, error text."""

from __future__ import annotations

import io
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.cli.client import format_field_errors
from service.cli.dry_run_report import summarize
from service.cli.errors import CliError
from service.cli.exit_codes import ExitCode, for_job
from service.cli.main import build_parser
from service.cli.progress import LiveBar, PlainLines, describe_progress, make_view
from service.cli.spec_file import load_spec
from tests.helpers.processes import REPO


def test_spec_files_in_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "base_model: {uri: 's3://m/x.keras'}\nlabels: {day: 2024-01-02}\n"
    )
    (tmp_path / "b.json").write_text('{"base_model": {"uri": "s3://m/x.keras"}}')
    assert load_spec(str(tmp_path / "a.yaml"))["base_model"]["uri"] == "s3://m/x.keras"
    assert load_spec(str(tmp_path / "b.json")) == {"base_model": {"uri": "s3://m/x.keras"}}


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("missing.yaml", None, "no such file"),
        ("list.yaml", "- 1\n- 2\n", "a job spec is a mapping"),
        ("broken.json", '{"a": ', "not valid JSON"),
        ("broken.yaml", "a: [1\n", "not valid YAML"),
        ("code.yaml", "a: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ],
)
def test_bad_spec_files_are_client_errors(
    tmp_path: Path, name: str, text: str | None, words: str
) -> None:
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(CliError) as caught:
        load_spec(str(tmp_path / name))
    assert words in caught.value.message
    assert caught.value.exit_code is ExitCode.CLIENT_ERROR


@pytest.mark.parametrize(
    ("job", "code"),
    [
        ({"status": "succeeded"}, 0),
        ({"status": "failed", "error": {"code": "invalid_dataset"}}, 1),
        ({"status": "failed", "error": {"code": "gate_failed"}}, 3),
        ({"status": "cancelled"}, 4),
    ],
)
def test_exit_code_for_each_final_status(job: dict[str, Any], code: int) -> None:
    assert for_job(job) == code


def test_exit_codes_are_distinct_and_documented_in_help() -> None:
    assert len({int(code) for code in ExitCode}) == len(ExitCode)
    epilog = build_parser().epilog or ""
    for code in ExitCode:
        assert f"\n  {int(code)}  " in "\n" + epilog


def test_field_errors_read_as_dotted_paths() -> None:
    errors = {
        "json": {"training": {"epochs": ["Too small."]}, "schedule": {"0": {"epochs": ["x"]}}}
    }
    assert format_field_errors(errors) == ["training.epochs: Too small.", "schedule[0].epochs: x"]


_JOB = {
    "id": "ftj_1",
    "status": "running",
    "progress": {"phase": "training", "epoch": 3, "epochs": 10, "percent": 30.0},
    "metrics": {"loss": 0.5, "accuracy": 0.75},
}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_a_live_bar_redrawn_in_place() -> None:
    stream = _Terminal()
    view = make_view(stream)
    assert isinstance(view, LiveBar)
    view.update(_JOB)
    view.event({"type": "info", "message": "Phase 1 of 2"})
    view.update({**_JOB, "progress": {**_JOB["progress"], "epoch": 4, "percent": 40.0}})
    view.close()
    text = stream.getvalue()
    assert text.count("\r\x1b[2K") >= 3, "the bar is redrawn, not printed again"
    assert "█" in text and "epoch 4/10" in text and "loss 0.5000" in text
    assert "Phase 1 of 2\n" in text


def test_a_pipe_gets_plain_lines_only_when_something_changed() -> None:
    stream = io.StringIO()
    view = make_view(stream)
    assert isinstance(view, PlainLines)
    view.update(_JOB)
    view.update(_JOB)  # no change: no line
    view.event({"type": "epoch", "message": "Epoch 3/10: loss 0.5."})
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(
        "ftj_1 running training epoch 3/10 (30.0%) loss 0.5000 accuracy 0.7500"
    )
    assert lines[1].endswith("[epoch] Epoch 3/10: loss 0.5.")


def test_console_script_is_declared_and_needs_no_tensorflow() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["finetune"] == "service.cli.main:main"
    code = (
        "import sys, service.cli.main as m; m.build_parser();"
        "bad = [n for n in ('tensorflow', 'keras', 'flask', 'boto3') if n in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_queued_job_says_queued_once() -> None:
    queued = {"id": "ftj_1", "status": "queued", "progress": {"phase": "queued", "percent": 0}}
    assert describe_progress(queued) == "queued (0.0%)"
    assert describe_progress(_JOB).startswith("running training epoch 3/10")


def test_plain_lines_stamp_events_with_their_own_time() -> None:
    stream = io.StringIO()
    view = PlainLines(stream)
    happened = datetime(2020, 5, 17, 8, 9, 10, tzinfo=UTC)
    view.event({"type": "created", "message": "Job created.", "time": "2020-05-17T08:09:10.000Z"})
    local = happened.astimezone().strftime("%H:%M:%S")
    assert stream.getvalue() == f"{local}   [created] Job created.\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["--url", "http://elsewhere:1", "status", "ftj_1"],
        ["status", "ftj_1", "--url", "http://elsewhere:1"],
    ],
)
def test_common_options_go_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(["--json", *argv, "--request-timeout", "5"])
    assert (args.url, args.json, args.request_timeout) == ("http://elsewhere:1", True, 5.0)
    assert build_parser().parse_args(["status", "ftj_1"]).url == "http://127.0.0.1:8080"


_REPORT = {
    "valid": True,
    "model": {
        "format": "keras",
        "layer_count": 14,
        "params": 6421,
        "input_shape": [None, 32, 32, 3],
        "layers": [{"index": i, "name": f"layer{i}"} for i in range(14)],
    },
    "data": {
        "train": {
            "format": "image_folder",
            "class_names": ["a", "b"],
            "sampled": True,
            "examples_in_sample": 8,
            "image_shapes": [[32, 32, 3]],
        },
        "validation": None,
    },
    "image_shape": [32, 32, 3],
    "preprocessing": "rescale",
    "precision": "float32",
    "head": {
        "cut_layer": "gap",
        "feature_shape": [32],
        "layers": ["predictions"],
        "output_units": 2,
    },
    "phases": [
        {
            "index": 0,
            "epochs": 3,
            "learning_rate": 0.001,
            "freeze": {"first_n": 2},
            "frozen_layers": ["input", "conv1"],
            "trainable_params": 900,
            "non_trainable_params": 300,
        }
    ],
    "warnings": ["dataset.train: only 8 images."],
}


def test_the_dry_run_summary_names_what_to_check_in_a_few_lines() -> None:
    lines = summarize(_REPORT)
    assert len(lines) <= 10
    text = "\n".join(lines)
    assert "14 layers" in text and "6,421 params" in text
    assert "2 classes (a, b)" in text
    assert "cut at gap" in text and "2 outputs" in text
    assert "2 base layers frozen (input, conv1)" in text
    assert "warning    dataset.train: only 8 images." in text
    assert "layer13" not in text, "every layer is for --json"


def test_yaml_exponents_are_numbers_as_in_json(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("training: {learning_rate: 1e-4, epochs: 3}\nname: '2e3'\n")
    spec = load_spec(str(tmp_path / "job.yaml"))
    assert spec == {"training": {"learning_rate": 0.0001, "epochs": 3}, "name": "2e3"}
