"""``finetune submit --wait --report report.md --junit junit.xml``: the installed console script
against a real ``python -m service serve`` (API and worker), tiny model, 32x32 images."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.helpers.data import write_image_folder
from tests.helpers.models import pretrain_tiny_cnn
from tests.helpers.net import free_port
from tests.helpers.processes import VENV_BIN, embedded_service

pytestmark = pytest.mark.slow

FINETUNE = VENV_BIN / "finetune"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("ci")
    pretrain_tiny_cnn(root / "model.keras", epochs=2, per_class=20)
    write_image_folder(root / "train", ["a", "b"], per_class=12, digits=[0, 1])
    write_image_folder(root / "test", ["a", "b"], per_class=6, digits=[0, 1], seed=9)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNE_")}
    env["FINETUNE_STATE_URI"] = f"file://{root / 'state'}"
    env["FINETUNE_WORK_DIR"] = str(root / "work")
    service = embedded_service(port, env, root, api_workers=1)
    try:
        yield f"http://127.0.0.1:{port}", root
    finally:
        service.stop()


def _submit(url: str, root: Path, name: str, gate: dict[str, object]) -> tuple[int, str, Path]:
    spec = {
        "base_model": {"uri": f"file://{root / 'model.keras'}"},
        "dataset": {
            "train": f"file://{root / 'train'}/",
            "test": f"file://{root / 'test'}/",
            "preprocessing": "rescale",
        },
        "head": {"cut_at": "gap"},
        "freeze": "base",
        "training": {"epochs": 1, "seed": 5, "batch_size": 8},
        "output": {"uri": f"file://{root / name}/"},
        "gate": gate,
    }
    folder = root / f"ci-{name}"
    folder.mkdir()
    (folder / "job.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k not in ("FINETUNE_URL", "FINETUNE_TOKEN")}
    run = subprocess.run(
        [
            str(FINETUNE),
            "--url",
            url,
            "submit",
            "job.json",
            "--wait",
            "--quiet",
            "--report",
            "report.md",
            "--junit",
            "junit.xml",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
        cwd=folder,
    )
    return run.returncode, run.stdout + run.stderr, folder


def test_a_passed_gate_reports_the_evaluation_and_a_passing_test_case(
    served: tuple[str, Path],
) -> None:
    url, root = served
    code, output, folder = _submit(url, root, "v1", {"metric": "test_accuracy", "min": 0.0})

    assert code == 0, output
    report = (folder / "report.md").read_text()
    assert "**Gate: passed**" in report
    assert "### Evaluation on 12 test images" in report
    assert "| accuracy |" in report and "| macro_f1 |" in report
    assert "| a |" in report and "| b |" in report, "the per-class table"
    assert f"file://{root / 'v1'}/saved_model/" in report
    assert "confusion_matrix.png" in report
    suite = ElementTree.parse(folder / "junit.xml").getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "1"
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    case = suite.find("testcase")
    assert case is not None and case.get("name") == "gate"
    assert case.find("failure") is None
    system_out = case.find("system-out")
    assert system_out is not None and "accuracy=" in (system_out.text or "")


def test_a_missed_gate_is_a_failing_test_case_and_exit_code_3(served: tuple[str, Path]) -> None:
    url, root = served
    code, output, folder = _submit(url, root, "v2", {"metric": "test_accuracy", "min": 1.5})

    assert code == 3, output
    report = (folder / "report.md").read_text()
    assert "**Gate: failed**" in report and "test_accuracy" in report and "1.5" in report
    assert "### Evaluation on 12 test images" in report, "what missed is shown"
    suite = ElementTree.parse(folder / "junit.xml").getroot()
    assert suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert failure is not None and failure.get("type") == "gate_failed"
    assert "below the gate's min 1.5" in (failure.get("message") or "")
    assert not (root / "v2").exists() or not any((root / "v2").iterdir())


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"


def test_the_ci_examples_use_the_reports_and_their_spec_loads() -> None:
    import yaml

    from schemas import JobSpecSchema

    spec = JobSpecSchema().load(yaml.safe_load((EXAMPLES / "refresh-job.yaml").read_text()))
    assert spec["dataset"]["test"] and spec["compare_with"]["alias_uri"]
    assert spec["gate"]["metric"] == "test_accuracy" and spec["gate"]["min_delta"] is not None
    for name in ("github-actions.yml", "gitlab-ci.yml"):
        text = (EXAMPLES / name).read_text()
        assert "--report" in text and "--junit junit.xml" in text, name
        assert yaml.safe_load(text), name
