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


def _setup_cell_backend(tmp_path, monkeypatch) -> str:
    """Every notebook starts with the generator's SETUP cell; run it as the kernel would (a fresh namespace,
    in a folder with sample_models/) and return the backend it chose. (This replaces a test that only
    grepped the notebooks' text for the TensorRT check.)"""
    setup = _generator().SETUP
    for name in NAMES:
        nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
        first = next(c for c in nb["cells"] if c["cell_type"] == "code")
        assert "".join(first["source"]) == setup, f"{name}: first code cell is not the shared SETUP"
    shutil.copytree(SAMPLES, tmp_path / "sample_models", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(setup, "<SETUP cell>", "exec"), ns)  # noqa: S102 - the notebooks' own first cell
    assert (tmp_path / "out" / "notebooks").is_dir()  # its outputs land beside sample_models/, here tmp_path
    return ns["backend"]


def test_notebooks_use_onnxruntime_without_tensorrt(tmp_path, monkeypatch):
    from workbench.backends import get_backend

    ok, _ = get_backend("tensorrt").available()
    if ok:
        pytest.skip("TensorRT and a GPU are usable here: test_notebooks_pick_tensorrt_when_usable covers it")
    assert _setup_cell_backend(tmp_path, monkeypatch) == "onnxruntime"


@pytest.mark.gpu
@pytest.mark.trt
def test_notebooks_pick_tensorrt_when_usable(trt_backend, tmp_path, monkeypatch):
    """The GPU branch: with TensorRT usable every notebook runs on it."""
    assert _setup_cell_backend(tmp_path, monkeypatch) == "tensorrt"


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
