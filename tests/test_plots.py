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
        # the whisker is the range of the per-block medians (interleaved blocks)
        assert row.blocks == 5 and len(row.block_p50_ms) == 5
        assert list(t.error_y.array) == pytest.approx([row.p50_hi_ms - row.p50_ms])
        assert list(t.error_y.arrayminus) == pytest.approx([row.p50_ms - row.p50_lo_ms])
    p90 = next(t for t in fig.data if t.name == "p90")
    assert sorted(p90.y) == pytest.approx(sorted(flow.latency.p90_ms))
    assert "ms" in fig.layout.yaxis.title.text and "p50" in fig.layout.yaxis.title.text
    # bars start at 0 on a linear axis; a p99 above the axis is named in a note, not plotted
    assert fig.layout.yaxis.type == "linear" and fig.layout.yaxis.range[0] == 0
    top = fig.layout.yaxis.range[1]
    p99 = next(t for t in fig.data if t.name == "p99")
    off = flow.latency[flow.latency.p99_ms > top]
    assert len(p99.y) == len(flow.latency) - len(off)
    notes = " ".join(a.text for a in fig.layout.annotations)
    for v in off.variant:
        assert v in notes


def test_outliers_never_turn_bars_logarithmic():
    lat = pd.DataFrame({"variant": ["a", "b"], "backend": ["onnxruntime"] * 2, "precision": ["fp32", "int8"],
                        "p50_ms": [1.0, 0.8], "p90_ms": [1.2, 1.0], "p99_ms": [50.0, 1.1], "iterations": [100, 100]})
    fig = plots.latency_figure(lat)
    assert fig.layout.yaxis.type == "linear" and fig.layout.yaxis.range[1] < 50
    assert "a 50.00 ms" in fig.layout.annotations[0].text


def test_no_bars_on_log_axes_and_every_axis_has_a_title(figures):
    for name, fig in figures.items():
        lay = fig.layout
        axes = [k for k in lay.to_plotly_json() if k.startswith(("xaxis", "yaxis"))]
        assert axes, name
        for k in axes:
            ax = lay[k]
            assert ax.title.text, (name, k)
            if any(t.type == "bar" for t in fig.data):
                assert ax.type in (None, "linear", "category", "-"), (name, k, ax.type)
        assert "ms" in (lay.yaxis.title.text + lay.xaxis.title.text + str(fig.data[0].colorbar.title.text
                                                                         if name == "heatmap" else "")) \
            or name in ("op_share", "layer_error", "builds", "pareto"), name


def test_op_type_colours_differ_from_precision_colours(figures):
    prec = {c.lower() for c in PRECISION_COLORS.values()}
    assert not prec & {c.lower() for c in plots.OP_COLORS}
    for t in figures["op_share"].data:
        assert t.marker.color.lower() not in prec, t.name


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


def test_pareto_front_only_beyond_noise():
    lat = pd.DataFrame({"variant": ["a", "b", "c"], "backend": ["onnxruntime"] * 3, "precision": ["fp32", "fp16", "int8"],
                        "p50_ms": [1.0, 0.5, 0.9], "p90_ms": [1.1, 0.6, 1.0], "p99_ms": [1.2, 0.7, 1.1],
                        "p50_lo_ms": [0.95, 0.45, 0.85], "p50_hi_ms": [1.05, 0.55, 0.98]})
    # 98.9 % vs 99.1 %: one sample of 450; no trade-off although b is faster and "less accurate"
    acc = pd.DataFrame({"variant": ["a", "b", "c"], "backend": ["onnxruntime"] * 3, "top1": [0.991, 0.989, 0.990]})
    fig = plots.pareto_figure(lat, acc)
    assert not any("Pareto" in (t.name or "") for t in fig.data)
    assert "no trade-off beyond noise" in fig.layout.annotations[0].text
    lo, hi = fig.layout.yaxis.range
    assert hi - lo >= plots.ACCURACY_MIN_SPAN["top1"]  # 98.9-99.1 does not fill the axis
    # a real trade-off: 5 points less accuracy for half the latency
    acc2 = acc.assign(top1=[0.99, 0.94, 0.99])
    fig2 = plots.pareto_figure(lat, acc2)
    front = next(t for t in fig2.data if "Pareto" in (t.name or ""))
    assert list(front.x) == [0.5, 0.9] or list(front.x) == [0.5, 1.0]
    assert not fig2.layout.annotations


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
