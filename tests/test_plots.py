"""Plots built from the frames of a real flow on the digits sample (ONNX Runtime CPU)."""
from __future__ import annotations

import shutil

import numpy as np
import onnx
import pandas as pd
import pytest

from workbench import plots
from workbench.flow import FlowResult, run_flow
from workbench.plots import PRECISION_COLORS

from conftest import SAMPLES

PRECS = ["fp32", "fp16", "int8"]


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    d = tmp_path_factory.mktemp("flow")
    for f in ("digits_cnn.onnx", "digits_test.npz", "digits_calib.npz"):
        shutil.copy(SAMPLES / f, d / f)
    fr = run_flow(d / "digits_cnn.onnx", PRECS, "onnxruntime", data=d / "digits_test.npz", labels="label",
                  calib=d / "digits_calib.npz", iterations=20, warmup=2, layer_iterations=5, accuracy_limit=128,
                  layerwise_limit=32, progress=False)
    fr.saved = fr.save(d / "records")
    return fr


@pytest.fixture(scope="module")
def figures(flow):
    return plots.flow_figures(flow)


def _trace_precision(fig_name: str, tr) -> str | None:
    """The precision a trace stands for: its name (latency, pareto) or its legend group (the others)."""
    for key in (tr.legendgroup, tr.name):
        if key in PRECISION_COLORS:
            return key
    return None


def _trace_color(tr) -> str | None:
    c = tr.marker.color if tr.marker is not None else None
    if isinstance(c, str):
        return c
    return tr.line.color if getattr(tr, "line", None) is not None else None


def test_each_precision_keeps_its_colour_across_figures(figures):
    seen: dict[str, set[str]] = {}
    for name, fig in figures.items():
        for tr in fig.data:
            p = _trace_precision(name, tr)
            if p is None or (tr.name or "").endswith("first divergent"):
                continue
            seen.setdefault(p, set()).add(_trace_color(tr))
    assert set(seen) == set(PRECS)
    for p, colours in seen.items():
        assert colours == {PRECISION_COLORS[p]}, (p, colours)
    assert len({PRECISION_COLORS[p] for p in PRECS}) == len(PRECS)


def test_latency_figure_bars_and_whiskers(flow, figures):
    fig = figures["latency"]
    bars = [t for t in fig.data if t.type == "bar"]
    assert sorted(t.name for t in bars) == sorted(PRECS)
    lat = flow.latency.set_index("precision")
    for t in bars:
        row = lat.loc[t.name]
        assert list(t.y) == pytest.approx([row.p50_ms])
        assert list(t.error_y.array) == pytest.approx([row.p99_ms - row.p50_ms])
    p90 = next(t for t in fig.data if t.name == "p90")
    assert sorted(p90.y) == pytest.approx(sorted(flow.latency.p90_ms))
    assert "ms" in fig.layout.yaxis.title.text and "p50" in fig.layout.yaxis.title.text


def test_layer_figure_aligned_by_onnx_node(flow, figures):
    fig = figures["layers"]
    graph_nodes = {n.name for n in onnx.load(str(SAMPLES / "digits_cnn.onnx")).graph.node}
    assert len(fig.data) == len(PRECS)
    assert [t.legendgroup for t in fig.data] == PRECS
    expected = flow.layers.groupby(["variant", "onnx_node"]).time_ms.sum()
    for t in fig.data:
        assert set(t.x) <= graph_nodes | {"(unmapped)"}
        for node, y in zip(t.x, t.y):
            if y is None or (isinstance(y, float) and np.isnan(y)):
                assert (t.name, node) not in expected.index
            else:
                assert y == pytest.approx(expected[(t.name, node)])
    # the same nodes appear in every variant's trace: bars align per ONNX node
    assert len({tuple(t.x) for t in fig.data}) == 1
    assert fig.layout.xaxis.title.text == "ONNX node" and "ms" in fig.layout.yaxis.title.text
    few = plots.layer_figure(flow.layers, top_k=3)
    assert all(len(t.x) == 3 for t in few.data)


def test_heatmap_follows_topological_order(flow, figures):
    hm = figures["heatmap"].data[0]
    assert hm.type == "heatmap"
    assert list(hm.x) == [f"digits_cnn-{p}" for p in PRECS]
    rank = {n: i for i, n in enumerate(flow.node_order)}
    ranks = [rank.get(n, len(rank)) for n in hm.y]
    assert ranks == sorted(ranks)
    assert np.asarray(hm.z, dtype=float).shape == (len(hm.y), len(PRECS))


def test_op_share_stacks_to_100_percent(flow, figures):
    fig = figures["op_share"]
    assert fig.layout.barmode == "stack"
    totals = np.sum([np.asarray(t.y, dtype=float) for t in fig.data], axis=0)
    assert totals == pytest.approx([100.0] * len(PRECS))
    ops = {t.name for t in fig.data}
    assert "QLinearConv" in ops or "QuantizeLinear" in ops or "other" in ops  # the int8 variant's kernels
    assert "%" in fig.layout.yaxis.title.text


def test_pareto_points_and_hover_config(flow, figures):
    fig = figures["pareto"]
    pts = [t for t in fig.data if t.name in PRECISION_COLORS]
    assert sorted(t.name for t in pts) == sorted(PRECS)
    acc = flow.accuracy.set_index("precision")
    for t in pts:
        assert list(t.y) == pytest.approx([100 * acc.loc[t.name, "top1"]])
        assert "recipe" in t.hovertext[0]
    int8 = next(t for t in pts if t.name == "int8")
    assert flow.variants["digits_cnn-int8@onnxruntime"]["recipe"]["tool"] in int8.hovertext[0]
    assert fig.layout.xaxis.title.text == "latency p50 (ms)" and "%" in fig.layout.yaxis.title.text


def test_pareto_front_definition():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 1.5, 4.0], "y": [90.0, 95.0, 94.0, 89.0, 99.0]})
    front = plots.pareto_front(df, "x", "y")
    # every front point is undominated; every other point is dominated by one on the front
    for r in df.itertuples():
        dominated = any((o.x <= r.x and o.y >= r.y and (o.x, o.y) != (r.x, r.y)) for o in df.itertuples())
        assert ((front.x == r.x) & (front.y == r.y)).any() != dominated


def test_layer_error_along_topological_order(flow, figures):
    fig = figures["layer_error"]
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert sorted(t.name for t in lines) == ["digits_cnn-fp16", "digits_cnn-int8"]
    for t in lines:
        assert list(t.x) == sorted(t.x)
        d = flow.layerwise[flow.layerwise.variant == t.name].sort_values("order")
        assert list(t.y) == pytest.approx(list(d.snr_db))
    assert "dB" in fig.layout.yaxis.title.text


def test_build_figure_two_panels(flow, figures):
    fig = figures["builds"]
    assert fig.layout.yaxis.title.text == "build time (s)"
    assert fig.layout.yaxis2.title.text == "size (MiB)"
    sizes = {t.legendgroup: t.y[0] for t in fig.data if t.yaxis == "y2"}
    onnx_mib = flow.builds.set_index("precision").onnx_bytes / 2**20  # ORT writes no engine: the ONNX size
    for p in PRECS:
        assert sizes[p] == pytest.approx(onnx_mib[p])
    assert sizes["fp16"] < sizes["fp32"]


def _same(x, y) -> bool:
    if x is None or y is None:
        return x is None and y is None
    xa, ya = np.asarray(x, dtype=object).ravel(), np.asarray(y, dtype=object).ravel()
    if any(isinstance(v, str) for v in xa):
        return list(xa) == list(ya)
    return np.allclose(xa.astype(float), ya.astype(float), equal_nan=True)


def test_figures_from_saved_records_match(flow, figures):
    loaded = plots.flow_figures(FlowResult.load(flow.saved))
    for name, fig in figures.items():
        assert len(fig.data) == len(loaded[name].data), name
        for t, u in zip(fig.data, loaded[name].data):
            for attr in ("x", "y", "z"):
                if attr in t:
                    assert _same(t[attr], u[attr]), (name, t.name, attr)


def test_empty_frames_give_an_annotated_figure():
    e = pd.DataFrame()
    for fig in (plots.latency_figure(e), plots.layer_figure(e), plots.layer_heatmap(e), plots.op_share_figure(e),
                plots.pareto_figure(e, e), plots.layer_error_figure(e), plots.build_figure(e)):
        assert len(fig.data) == 0 and fig.layout.annotations[0].text
