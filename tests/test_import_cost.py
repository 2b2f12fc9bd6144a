"""`workbench inspect` and `import workbench` stay light: pandas (~60 MB RSS, ~0.5 s) and ONNX Runtime's
quantization package load only when a table is built or a model is calibrated. The inspect benchmark caught
both being loaded on every start (peak RSS 115 MiB vs Polygraphy's 45; after the fix 55)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"
ROOT = Path(__file__).resolve().parents[1]  # `python -c` imports the package from its cwd
HEAVY = ("pandas", "onnxruntime.quantization", "plotly", "ipywidgets")


def _loaded_after(code: str) -> dict[str, bool]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_importing_the_library_loads_no_heavy_package():
    got = _loaded_after("import workbench, workbench.precision, workbench.edit, workbench.shapes")
    assert not any(got.values()), got


def test_inspect_command_loads_no_heavy_package():
    got = _loaded_after(f"from workbench.cli import main\nmain(['inspect', {str(LIGHT)!r}, '--json'])")
    assert not any(got.values()), got


def test_tables_still_load_pandas_when_asked(tmp_path):
    # the lazy import is real: the table-building calls still work and bring pandas in
    got = _loaded_after(f"import workbench as wb\nm = wb.load({str(LIGHT)!r})\nwb.edit.diff_models(m, m)")
    assert got["pandas"] is True
