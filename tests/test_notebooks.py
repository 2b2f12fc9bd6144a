"""The six workshop notebooks: committed without outputs, in sync with their generator, and each runs
top to bottom on a CPU (nbclient, a real kernel). ``WB_QUICK=1`` makes them use fewer iterations."""
from __future__ import annotations

import importlib.util
import json
import shutil
import time

import pytest

from conftest import ROOT, SAMPLES

NOTEBOOKS = ROOT / "notebooks"
NAMES = ["01_load_and_inspect", "02_visualize", "03_edit_with_graphsurgeon", "04_build_precisions",
         "05_profile_layers", "06_accuracy_int8_mixed"]
TIMEOUT_S = 300  # per cell


def _generator():
    spec = importlib.util.spec_from_file_location("_make_notebooks", NOTEBOOKS / "_make_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_notebooks_match_the_generator_and_have_no_outputs(tmp_path):
    written = _generator().main(tmp_path)
    assert sorted(p.stem for p in written) == NAMES
    for p in written:
        committed = NOTEBOOKS / p.name
        assert committed.exists(), f"{committed} missing: run python notebooks/_make_notebooks.py"
        assert json.loads(committed.read_text()) == json.loads(p.read_text()), \
            f"{p.name} differs from notebooks/_make_notebooks.py: regenerate it"
        nb = json.loads(committed.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None


def test_notebooks_pick_tensorrt_when_installed():
    for name in NAMES:
        text = (NOTEBOOKS / f"{name}.ipynb").read_text()
        assert 'wb.get_backend(\\"tensorrt\\").available()[0]' in text, name


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("nb")
    shutil.copytree(SAMPLES, d / "sample_models", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return d


@pytest.mark.notebook
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, workdir, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("WB_QUICK", "1")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    t0 = time.perf_counter()
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()  # raises CellExecutionError with the failing cell and traceback
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    first = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert "backend:" in first
    print(f"{name}: {time.perf_counter() - t0:.1f} s")
