"""The compatibility table's script on its fast subset: small architectures, every stage green.

bench/compat_table.py builds each allowed keras.applications architecture with weights=None at
its smallest input size and takes the saved .keras file through the service's loader, the dry
run's freeze rules, a two-phase fit and the export; docs/MODELS.md holds the whole table.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "compat_table.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compat_table", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compat_table"] = module
    spec.loader.exec_module(module)
    return module


# MobileNetV3Small in the fast subset (make test), MobileNetV2 in the full matrix only (a worker
# test fine-tunes MobileNetV2 from published weights in both); docs/MODELS.md holds every one.
@pytest.mark.parametrize(
    "name", ["MobileNetV3Small", pytest.param("MobileNetV2", marks=pytest.mark.full)]
)
def test_small_architectures_load_freeze_fit_and_export(name: str, tmp_path: Path) -> None:
    script = _script()
    row = script.check_architecture(name, tmp_path)

    assert row.stages == dict.fromkeys(script.STAGES, "ok"), row.stages
    assert row.size == 32 and row.layers > 100 and row.params > 0
    assert (tmp_path / "out" / "saved_model").is_dir()


def test_rows_are_merged_into_the_table_between_its_markers(tmp_path: Path) -> None:
    script = _script()
    doc = tmp_path / "MODELS.md"
    doc.write_text(f"# Models\n\n{script.BEGIN}\nold\n{script.END}\n\nAfter.\n")
    green = dict.fromkeys(script.STAGES, "ok")
    vgg = script.Row("VGG16", 32, 14_714_688, 19, green, 12.0, "2026-12-02 20:00 Keras 3.15.1")
    script.write_markdown(doc, script.table([vgg]))
    crashed = {"load": "the process was killed by signal 11 (SIGSEGV)"}
    later = script.Row("MobileNet", 32, stages=crashed, seconds=3.0, measured="2026-12-03 07:00")

    # A later run of other architectures keeps the rows it did not run.
    script.write_markdown(doc, script.table([*script.read_rows(doc), later]))

    text = doc.read_text()
    assert "old" not in text and text.endswith("\n\nAfter.\n")
    assert (
        "| VGG16 | 32 | 14,714,688 | 19 | ok | ok | ok | ok | 12 | 2026-12-02 20:00 Keras 3.15.1 |"
        in text
    )
    assert "| MobileNet | 32 | 0 | 0 | the process was killed by signal 11 (SIGSEGV) | - |" in text
    assert text.index("| MobileNet |") < text.index("| VGG16 |")  # in the allowed list's order
    assert f"2 of {len(script._allowed())} allowed architectures measured, 1 green" in text
    assert "Not yet measured: MobileNetV2, " in text
    assert [row.name for row in script.read_rows(doc)] == ["MobileNet", "VGG16"]
