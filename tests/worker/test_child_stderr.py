"""A trainer child's stderr: TensorFlow's start-up lines dropped, everything else passed on."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from service.worker.child_runner import TrainerProcess
from service.worker.child_stderr import (
    NO_GPU_LINES,
    StderrFilter,
    dropped_lines,
    machine_has_nvidia_device,
)

# Verbatim from a TensorFlow 2.21 start on a CPU-only machine (see the test below for live ones).
START_UP = b"""\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796239216.489548   21955 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1796239216.489959   21955 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1796239216.567699   21955 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1796239225.932529   21955 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
"""  # noqa: E501
KEPT = b"""\
double free or corruption (out)
W0000 00:00:1796239225.1 21955 op_kernel.cc:1857] OP_REQUIRES failed : RESOURCE_EXHAUSTED
Traceback (most recent call last):
"""


def _filtered(text: bytes, has_gpu: bool) -> tuple[bytes, list[str]]:
    sink = io.BytesIO()
    passed = StderrFilter(io.BytesIO(text), sink, dropped_lines(has_gpu))
    passed.join(10)
    return sink.getvalue(), passed.last_lines()


def test_start_up_lines_are_dropped_and_the_rest_passes_unchanged() -> None:
    out, last = _filtered(START_UP + KEPT, has_gpu=False)

    assert out == KEPT
    assert last == KEPT.decode().splitlines()


def test_a_failed_cuda_start_is_kept_where_the_machine_has_a_gpu() -> None:
    cuda = [line for line in START_UP.splitlines(True) if NO_GPU_LINES[0].match(line)]

    out, _ = _filtered(START_UP, has_gpu=True)

    assert out == b"".join(cuda) and cuda


def test_gpu_presence_is_read_from_the_driver_device(tmp_path: Path) -> None:
    assert not machine_has_nvidia_device(tmp_path)
    (tmp_path / "nvidiactl").touch()
    assert machine_has_nvidia_device(tmp_path)


@pytest.mark.slow
def test_a_real_trainer_child_starts_without_the_chatter(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A real child imports TensorFlow (it prints the lines above); none reaches our stderr."""
    plain = subprocess.run(
        [sys.executable, "-c", "import tensorflow as tf; tf.constant(1)"],
        capture_output=True,
        check=True,
    )
    assert b"oneDNN custom operations are on" in plain.stderr  # what there is to drop

    child = TrainerProcess()
    assert child.ready.wait(120)
    child.close()
    err = capfd.readouterr().err

    assert child.stderr.dropped >= 3  # it printed them, to the filter

    assert "oneDNN" not in err and "cuda drivers" not in err and "absl::InitializeLog" not in err
    if not machine_has_nvidia_device():
        assert "cuInit" not in err
