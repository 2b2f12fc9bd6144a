"""docs/extending.md: each example (a backend, a precision, a plot, an edit) is one file; this test writes
the doc's code blocks to files *verbatim*, imports them, and checks the new thing shows up where the doc
says. A doc example that stops working fails here."""
from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

import workbench

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def _examples() -> dict[str, str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    out = {}
    for b in blocks:
        m = re.match(r"# (\w+)\.py\n", b)
        if m:
            out[m.group(1)] = b
    return out


@pytest.fixture
def example(tmp_path, monkeypatch):
    """Import one of the doc's example files (written verbatim) as a module."""
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = []

    def load(name: str):
        (tmp_path / f"{name}.py").write_text(_examples()[name])
        loaded.append(name)
        return importlib.import_module(name)

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


def test_the_doc_has_the_four_examples():
    assert set(_examples()) == {"my_backend", "my_precision", "my_plot", "my_edit"}


def test_add_a_backend(example, sample, tmp_path, capsys):
    from workbench.backends import backend_names
    from workbench.backends.base import _REGISTRY
    from workbench.builds import build_variants
    from workbench.cli import main
    from workbench.data import synthetic_inputs
    from workbench.errors import BackendUnavailable
    from workbench.measure.latency import measure_latency
    from workbench.measure.layers import profile_layers

    example("my_backend")
    try:
        assert "onnx-reference" in backend_names()
        model = workbench.load(sample("digits_cnn.onnx"))
        bs = build_variants(model, "fp32,fp16", "onnx-reference", progress=False)
        assert [r.status for r in bs] == ["ok", "skipped"] and "fp32 only" in bs["fp16"].reason
        feeds = synthetic_inputs(model, batch=1)
        lat = measure_latency(bs["fp32"].engine, feeds, warmup=0, iterations=2)
        assert lat.timer == "host" and lat.backend == "onnx-reference"
        with pytest.raises(BackendUnavailable):
            profile_layers(bs["fp32"].engine, feeds)
        assert main(["build", str(sample("digits_cnn.onnx")), "--backend", "onnx-reference",
                     "--precision", "fp32", "--out", str(tmp_path / "o")]) == 0
        assert json.loads((tmp_path / "o" / "build.json").read_text())["backend"] == "onnx-reference"
    finally:
        _REGISTRY.pop("onnx-reference", None)


def test_add_a_precision(example, sample):
    from workbench.backends.onnxruntime import OnnxRuntimeBackend
    from workbench.builds import build_variants
    from workbench.precision import list_recipes, parse_precisions, unregister_precision

    example("my_precision")
    from workbench.plots import PRECISION_COLORS  # a derived view: read after registering

    try:
        assert workbench.variant.PRECISIONS[-1] == "fp32copy" and parse_precisions("fp32,fp32copy")[-1] == "fp32copy"
        assert PRECISION_COLORS["fp32copy"] == "#117733"
        assert "fp32copy" in list(list_recipes()["precision"])
        assert OnnxRuntimeBackend("cuda").supports("fp32copy") == (False, "example: not on the CUDA provider")
        bs = build_variants(sample("digits_cnn.onnx"), "fp32copy", progress=False)
        assert bs["fp32copy"].status == "ok"
    finally:
        unregister_precision("fp32copy")


def test_add_a_plot(example, sample):
    from workbench.flow import run_flow
    from workbench.plots import FIGURES, flow_figures
    from workbench.report import report_html

    example("my_plot")
    try:
        fr = run_flow(sample("digits_cnn.onnx"), "fp32,fp16", iterations=3, warmup=0, layer_iterations=2,
                      layerwise=False, progress=False)
        figs = flow_figures(fr)
        assert "p50_bars" in figs and len(figs["p50_bars"].data) == 2
        assert {t.marker.color for t in figs["p50_bars"].data} == {"#0072B2", "#E69F00"}
        assert "id='p50_bars'" in report_html(fr) or 'id="p50_bars"' in report_html(fr)
    finally:
        FIGURES.pop("p50_bars", None)


def test_add_an_edit(example, sample):
    from workbench.edit.history import History
    from workbench.edit.ops import REGISTRY

    example("my_edit")
    try:
        model = workbench.load(sample("digits_cnn.onnx"))
        first = model.proto.graph.node[0].name
        h = History(model)
        h.apply("rename_node", node=first, to="stem")
        assert h.model.proto.graph.node[0].name == "stem" and h.current.valid is True
        assert "rename_node" in h.current.code
        assert "rename_node" in REGISTRY and REGISTRY["rename_node"].preserves_outputs
    finally:
        REGISTRY.pop("rename_node", None)
