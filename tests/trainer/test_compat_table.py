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


# The full matrix only: tests/trainer/test_architectures.py builds and fine-tunes a model of each
# family in the fast subset; docs/MODELS.md holds the whole table.
@pytest.mark.full
@pytest.mark.parametrize("name", ["MobileNetV3Small", "MobileNetV2"])
def test_small_architectures_load_freeze_fit_and_export(name: str, tmp_path: Path) -> None:
    script = _script()
    row = script.check_architecture(name, tmp_path)

    assert row.stages == dict.fromkeys(script.STAGES, "ok"), row.stages
    assert row.size == 32 and row.layers > 100 and row.params > 0
    assert (tmp_path / "out" / "saved_model").is_dir()


def test_table_is_rewritten_between_its_markers(tmp_path: Path) -> None:
    script = _script()
    doc = tmp_path / "MODELS.md"
    doc.write_text(f"# Models\n\n{script.BEGIN}\nold\n{script.END}\n\nAfter.\n")
    rows = [script.Row("VGG16", 32, 14_714_688, 19, dict.fromkeys(script.STAGES, "ok"), 12.0)]

    script.write_markdown(doc, script.table(rows, "python bench/compat_table.py --only VGG16"))

    text = doc.read_text()
    assert "old" not in text and text.endswith("\n\nAfter.\n")
    assert "| VGG16 | 32 | 14,714,688 | 19 | ok | ok | ok | ok | 12 |" in text
    assert "1 of 1 rows green" in text
