"""Compile settings chosen per device from measurements (service/trainer/devices.py)."""

from __future__ import annotations

from service.trainer.devices import compile_settings, training_device


def test_a_cpu_under_tensorflow_trains_without_xla() -> None:
    assert compile_settings("cpu").jit_compile is False


def test_an_accelerator_lets_keras_decide_on_xla() -> None:
    assert compile_settings("gpu").jit_compile == "auto"
    assert compile_settings("tpu").jit_compile == "auto"


def test_this_machine_trains_on_its_cpu() -> None:
    assert training_device() == "cpu"
    assert compile_settings().device == "cpu"
