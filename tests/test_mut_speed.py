"""Fast behavioural tests for workbench.compare.speed (mutation target `speed`, tools/mutate.py): "why is this
variant slower / faster than fp32" on hand-made per-layer frames whose per-category deltas are computed by
hand from the rows (fp32 time of the same nodes vs the variant's, fused layers counted for their compute op).
"""
from __future__ import annotations

import html
import math
from types import SimpleNamespace

import pandas as pd
import pytest
from onnx import helper as h

import workbench as wb
from workbench.compare.speed import (CATEGORIES, COLUMNS, SpeedAttribution, attribution_frame, explain_flow,
                                     explain_profiles, explain_speed, speed_section_html)
from workbench.variant import Variant


def _frame(rows, **cols):
    df = pd.DataFrame([{"layer": r[0], "layer_type": r[1], "onnx_nodes": r[2], "onnx_node": r[3], "time_ms": r[4]}
                       for r in rows], columns=["layer", "layer_type", "onnx_nodes", "onnx_node", "time_ms"])
    for k, v in cols.items():
        df[k] = v
    return df


def _variant(ops: dict, name="m", precision="int8", recipe=None):
    g = h.make_graph([h.make_node(o, [], [n + "_o"], name=n) for n, o in ops.items()], "g", [], [])
    return Variant(model=wb.load(h.make_model(g), name=name), precision=precision, recipe=recipe or {})


def _cats(ex):
    return ex.by_category().set_index("category")["delta_ms"].to_dict()


def test_node_lists_in_every_form_the_frames_hold():
    fp32 = _frame([("a", "Relu", "a;b", "a", 2.0), ("c", "Neg", "c,d", "c", 4.0), ("e", "Abs", None, "e", 1.0),
                   ("f", "Exp", float("nan"), "f", 3.0), ("u", "Copy", [], "<unmapped>", 0.5),
                   ("t", "Tanh", ("t",), "t", 1.5)])
    var = _frame([("a", "Relu", ["a", "b"], "a", 1.0), ("c", "Neg", ["c", "d"], "c", 1.0), ("e", "Abs", [], "e", 1.0),
                  ("f", "Exp", [], "f", 1.0), ("t", "Tanh", ["t"], "t", 1.0)])
    v = _variant({"a": "Relu", "b": "Add", "c": "Neg", "d": "Mul", "e": "Abs", "f": "Exp", "t": "Tanh"})
    ex = explain_speed(fp32, var, variant=v)
    t = ex.table.set_index("op_type")
    assert "Add" not in t.index and "Mul" not in t.index  # the anchor computes: it takes the whole layer
    # a;b and c,d split into two nodes each, the layer's time going to its anchor (both compute ops)
    assert t.loc["Relu", "fp32_ms"] == 2.0 and t.loc["Relu", "onnx_node_count"] == 1
    assert t.loc["Neg", "fp32_ms"] == 4.0 and t.loc["Neg", "variant_ms"] == 1.0
    assert t.loc["Abs", "fp32_ms"] == 1.0 and t.loc["Exp", "fp32_ms"] == 3.0  # no list: the onnx_node stands
    assert t.loc["(unmapped)", "fp32_ms"] == 0.5 and t.loc["(unmapped)", "variant_ms"] == 0.0
    assert t.loc["(unmapped)", "category"] == "backend overhead" and t.loc["(unmapped)", "onnx_node_count"] == 0
    assert ex.fp32_total_ms == 12.0 and ex.variant_total_ms == 5.0


def test_fused_layers_count_for_their_compute_ops():
    ops = {"q": "QuantizeLinear", "dq": "DequantizeLinear", "conv": "Conv", "relu": "Relu", "cast": "Cast"}
    v = _variant(ops)
    fp32 = _frame([("conv", "Conv", ["conv"], "conv", 6.0), ("relu", "Relu", ["relu"], "relu", 2.0)])
    var = _frame([("fused", "X", ["dq", "conv", "relu", "q"], "dq", 3.0),     # anchor is plumbing: split over compute
                  ("qq", "X", ["q", "dq"], "q", 1.0),                           # only plumbing: split over all
                  ("cc", "X", ["cast"], "cast", 0.0)])
    ex = explain_speed(fp32, var, variant=v)
    t = ex.table.set_index("op_type")
    assert t.loc["Conv", "variant_ms"] == 1.5 and t.loc["Relu", "variant_ms"] == 1.5
    assert t.loc["Conv", "category"] == "lowered" and t.loc["Conv", "delta_ms"] == -4.5
    assert t.loc["QuantizeLinear", "variant_ms"] == 0.5 and t.loc["DequantizeLinear", "variant_ms"] == 0.5
    assert t.loc["QuantizeLinear", "category"] == "unfused Q/DQ"
    assert t.loc["Cast", "variant_ms"] == 0.0 and t.loc["Cast", "category"] == "inserted Cast"
    assert ex.variant_total_ms == 4.0 and ex.delta_ms == -4.0
    assert t.loc["Conv", "onnx_node_count"] == 1 and t.loc["QuantizeLinear", "onnx_node_count"] == 1


def test_categories_by_graph_recipe_and_arguments():
    fp32 = _frame([("conv", "Conv", ["conv"], "conv", 4.0), ("ln", "LayerNormalization", ["ln"], "ln", 2.0),
                   ("relu", "Relu", ["relu"], "relu", 1.0)])
    var = _frame([("conv", "Conv", ["conv"], "conv", 2.0), ("ln", "LayerNormalization", ["ln"], "ln", 2.5),
                  ("mul", "Mul", ["smooth_mul"], "smooth_mul", 0.25), ("c", "Cast", ["c1"], "c1", 0.5)])
    v = _variant({"conv": "Conv", "ln": "LayerNormalization", "smooth_mul": "Mul", "c1": "Cast"},
                 recipe={"kept_high_precision": ["ln"]})
    ex = explain_speed(fp32, var, variant=v)
    assert ex.variant == "m-int8" and ex.precision == "int8"
    assert _cats(ex) == pytest.approx({"lowered": -2.0, "kept fp32": 0.5, "removed": -1.0, "inserted Cast": 0.5,
                                       "recipe op": 0.25})
    assert list(ex.by_category()["category"]) == ["lowered", "kept fp32", "removed", "inserted Cast", "recipe op"]
    # kept= wins over the recipe's list; precision= over the variant's
    ex2 = explain_speed(fp32, var, variant=v, kept=["conv"], precision="fp16")
    assert _cats(ex2)["kept fp32"] == -2.0 and _cats(ex2)["lowered"] == 0.5 and ex2.precision == "fp16"
    # without a variant graph nothing is "removed": relu is a source node with no variant time -> lowered
    ex3 = explain_speed(fp32, var, kept=["ln"], source_nodes=["conv", "ln", "relu", "smooth_mul"])
    # relu (-1) and smooth_mul (+0.25, named a source node) are lowered too
    assert _cats(ex3) == pytest.approx({"lowered": -2.75, "kept fp32": 0.5, "inserted Cast": 0.5})
    assert ex3.variant == "" and ex3.precision == ""
    t3 = ex3.table.set_index("op_type")
    assert t3.loc["Mul", "category"] == "lowered"  # a named source node that fp32 never timed


def test_model_gives_op_types_of_removed_nodes_and_shares_sum_to_one():
    g = h.make_graph([h.make_node("Relu", [], ["r"], name="relu"), h.make_node("Conv", [], ["c"], name="conv")],
                     "g", [], [])
    model = wb.load(h.make_model(g), name="src")
    fp32 = _frame([("conv", "Conv", ["conv"], "conv", 4.0), ("r", "SomethingElse", ["relu", "conv"], "relu", 1.0)])
    var = _frame([("conv", "Conv", ["conv"], "conv", 1.0)])
    v = _variant({"conv": "Conv"})
    ex = explain_speed(fp32, var, variant=v, model=model)
    t = ex.table
    assert list(t.columns) == COLUMNS
    assert t["share_of_delta"].sum() == pytest.approx(1.0)
    assert t.loc[0, "delta_ms"] == -3.0 and t.loc[0, "share_of_delta"] == pytest.approx(0.75)  # sorted by |delta|
    removed = t[t.category == "removed"]
    # fused layer anchored on relu (a compute op): its 1 ms goes to relu; the model names relu's op type
    assert removed["op_type"].tolist() == ["Relu"] and removed["fp32_ms"].tolist() == [1.0]


def test_op_types_from_the_profiles_when_there_is_no_graph():
    fp32 = _frame([("a", "Conv", ["a"], "a", 2.0)])
    var = _frame([("a", "Conv", ["a"], "a", 1.0), ("x", "Cast", ["x"], "x", 0.5),
                  ("y", "DequantizeLinear", ["y"], "y", 0.25), ("z", 7, ["z"], "z", 0.125),
                  ("w", "Add", ["w1", "w2"], "w1", 0.5)])
    ex = explain_speed(fp32, var)
    t = ex.table.set_index("op_type")
    assert t.loc["Conv", "category"] == "lowered" and t.loc["Cast", "category"] == "inserted Cast"
    assert t.loc["DequantizeLinear", "category"] == "unfused Q/DQ"
    # a non-text layer type and a two-node layer give no op type: "?"
    assert t.loc["?", "category"] == "recipe op" and t.loc["?", "variant_ms"] == pytest.approx(0.625)
    assert t.loc["?", "onnx_node_count"] == 2


def test_identical_profiles_and_empty_frames():
    fp32 = _frame([("a", "Conv", ["a"], "a", 2.0)])
    ex = explain_speed(fp32, fp32.copy())
    assert ex.delta_ms == 0 and (ex.table["share_of_delta"] == 0.0).all() and ex.speedup == 1.0
    assert ex.summary() == ["variant () is 0 ms slower than fp32 (2 → 2 ms per run, 1.00x)"]
    empty = explain_speed(_frame([]), _frame([]))
    assert empty.fp32_total_ms == 0.0 and empty.variant_total_ms == 0.0 and math.isnan(empty.speedup)
    assert list(empty.by_category().columns) == ["category", "fp32_ms", "variant_ms", "delta_ms"]
    assert len(empty.by_category()) == 0 and len(empty.table) == 0


def _ex():
    t = pd.DataFrame([["lowered", "Conv", 4.0, 1.0, -3.0, 0.0, 2], ["lowered", "Gemm", 1.0, 1.5, 0.5, 0.0, 1],
                      ["lowered", "MatMul", 1.0, 0.75, -0.25, 0.0, 1], ["lowered", "Add", 1.0, 0.9, -0.1, 0.0, 1],
                      ["inserted Cast", "Cast", 0.0, 0.4, 0.4, 0.0, 3], ["kept fp32", "Softmax", 1.0, 1.0, 0.0, 0.0, 1]],
                     columns=COLUMNS)
    return SpeedAttribution(t, fp32_total_ms=8.0, variant_total_ms=5.55, variant="m-int8", precision="int8")


def test_summary_sentences():
    ex = _ex()
    assert ex.delta_ms == pytest.approx(-2.45) and ex.speedup == pytest.approx(8.0 / 5.55)
    lines = ex.summary()
    assert lines[0] == "m-int8 (int8) is 2.45 ms faster than fp32 (8 → 5.55 ms per run, 1.44x)"
    # categories by |delta| (the zero one left out), each with its three largest op deltas
    assert lines[1:] == ["lowered: -2.85 ms (Conv -3, Gemm +0.5, MatMul -0.25)", "inserted Cast: +0.4 ms (Cast +0.4)"]
    tiny = SpeedAttribution(pd.concat([ex.table, pd.DataFrame([["recipe op", "Mul", 0.0, 1e-9, 1e-9, 0.0, 1]],
                                                              columns=COLUMNS)]), 8.0, 5.55)
    assert tiny.summary()[-1] == "recipe op: +1e-09 ms (Mul +1e-09)"  # only |delta| < 1e-9 is left out
    slow = SpeedAttribution(ex.table, fp32_total_ms=1.0, variant_total_ms=2.0)
    assert slow.summary()[0] == "variant () is 1 ms slower than fp32 (1 → 2 ms per run, 0.50x)"
    assert slow.speedup == 0.5


def test_by_category_in_category_order():
    g = _ex().by_category()
    assert g["category"].tolist() == ["lowered", "kept fp32", "inserted Cast"]
    assert g.set_index("category").loc["lowered"].tolist() == pytest.approx([7.0, 4.15, -2.85])
    assert list(g.columns) == ["category", "fp32_ms", "variant_ms", "delta_ms"]


def test_to_json_is_strict_json():
    import json

    j = _ex().to_json()
    assert j["variant"] == "m-int8" and j["precision"] == "int8" and j["fp32_total_ms"] == 8.0
    assert j["variant_total_ms"] == 5.55 and j["delta_ms"] == pytest.approx(-2.45)
    assert j["speedup"] == pytest.approx(8.0 / 5.55) and j["summary"] == _ex().summary()
    assert j["rows"][0] == {"category": "lowered", "op_type": "Conv", "fp32_ms": 4.0, "variant_ms": 1.0,
                            "delta_ms": -3.0, "share_of_delta": 0.0, "onnx_node_count": 2}
    assert len(j["rows"]) == 6
    nan = SpeedAttribution(_ex().table, 1.0, 0.0).to_json()
    assert nan["speedup"] is None
    json.dumps(nan, allow_nan=False)


def test_waterfall_figure():
    fig = _ex().figure(top=2)
    w = fig.data[0]
    assert w.type == "waterfall"
    assert list(w.x) == ["fp32 total", "lowered: Conv", "lowered: Gemm", "4 more", "int8 total"]
    assert list(w.y) == pytest.approx([8.0, -3.0, 0.5, 0.4 - 0.25 - 0.1 + 0.0, 5.55])
    assert list(w.measure) == ["absolute", "relative", "relative", "relative", "total"]
    assert w.decreasing.marker.color == "#2a9d8f" and w.increasing.marker.color == "#e76f51"
    assert w.totals.marker.color == "#264653"
    assert fig.layout.title.text == "Why m-int8 is faster than fp32 (1.44x)"
    assert fig.layout.yaxis.title.text == "ms per run" and fig.layout.showlegend is False
    all_rows = _ex().figure()  # default top 12: every row, no "more" bar
    assert len(all_rows.data[0].x) == 8 and "more" not in " ".join(all_rows.data[0].x)
    plain = SpeedAttribution(_ex().table.head(1), 1.0, 2.0).figure()
    assert plain.data[0].x[-1] == "variant total" and plain.layout.title.text == "Why  is slower than fp32 (0.50x)"
    # the look: plotly_white, fixed margins, no legend (a waterfall needs none)
    assert fig.layout.template.layout.plot_bgcolor == "white"
    assert (fig.layout.margin.l, fig.layout.margin.r, fig.layout.margin.t, fig.layout.margin.b) == (60, 20, 60, 120)
    # slower by less than a millisecond, and exactly as fast: both "slower" (faster means delta < 0)
    assert "is slower than fp32" in SpeedAttribution(_ex().table, 1.0, 1.5, variant="v").figure().layout.title.text
    assert "is slower than fp32" in SpeedAttribution(_ex().table, 1.0, 1.0, variant="v").figure().layout.title.text
    assert SpeedAttribution(_ex().table, 1.0, 1.0).summary()[0].startswith("variant () is 0 ms slower")


def test_waterfall_default_shows_twelve_bars():
    t = pd.DataFrame([["lowered", f"Op{i}", 1.0, 0.5, -0.5 - i / 100, 0.0, 1] for i in range(14)], columns=COLUMNS)
    w = SpeedAttribution(t, 14.0, 6.0).figure().data[0]
    assert len(w.x) == 1 + 12 + 1 + 1 and w.x[-2] == "2 more"
    assert w.y[-2] == pytest.approx(-0.5 - 0.01 * 1 - 0.5 - 0.01 * 0)  # Op1 and Op0: the two smallest |delta|


def _combined():
    rows = []
    for backend, scale in (("onnxruntime", 1.0), ("tensorrt", 0.5)):
        for prec, vname, t in (("fp32", "m", 4.0), ("int8", "m-int8", 1.0), ("fp16", "m-fp16", 3.0)):
            rows.append({"layer": "conv", "layer_type": "Conv", "onnx_nodes": ["conv"], "onnx_node": "conv",
                         "time_ms": t * scale, "precision": prec, "variant": vname, "backend": backend})
    return pd.DataFrame(rows)


def test_explain_profiles_per_backend_and_variant():
    layers = _combined()
    out = explain_profiles(layers)
    assert list(out) == ["m-int8@onnxruntime", "m-fp16@onnxruntime", "m-int8@tensorrt", "m-fp16@tensorrt"]
    assert out["m-int8@tensorrt"].fp32_total_ms == 2.0 and out["m-int8@tensorrt"].variant_total_ms == 0.5
    assert out["m-fp16@onnxruntime"].precision == "fp16" and out["m-fp16@onnxruntime"].variant == ""
    v = _variant({"conv": "Conv"}, name="m", precision="int8", recipe={"kept_high_precision": ["conv"]})
    out2 = explain_profiles(layers, variants={"m-int8": v})
    assert out2["m-int8@onnxruntime"].variant == "m-int8"
    assert _cats(out2["m-int8@onnxruntime"]) == {"kept fp32": -3.0}
    no_backend = explain_profiles(layers[layers.backend == "tensorrt"].drop(columns="backend"))
    assert list(no_backend) == ["m-int8", "m-fp16"]
    ref16 = explain_profiles(layers, reference="fp16")
    assert "m-int8@onnxruntime" in ref16 and ref16["m-int8@onnxruntime"].fp32_total_ms == 3.0
    assert "m@onnxruntime" in ref16
    assert explain_profiles(None) == {} and explain_profiles(layers.iloc[:0]) == {}
    assert explain_profiles(layers, reference="bf16") == {}
    # backends and variants keep the order of the frame (tensorrt rows first here), not alphabetical order
    trt_first = pd.concat([layers[layers.backend == "tensorrt"], layers[layers.backend == "onnxruntime"]])
    assert list(explain_profiles(trt_first)) == ["m-int8@tensorrt", "m-fp16@tensorrt", "m-int8@onnxruntime",
                                                 "m-fp16@onnxruntime"]
    only_trt_ref = layers[~((layers.backend == "onnxruntime") & (layers.precision == "fp32"))]
    assert list(explain_profiles(only_trt_ref)) == ["m-int8@tensorrt", "m-fp16@tensorrt"]


def test_explain_flow_uses_build_set_variants_and_model():
    v = _variant({"conv": "Conv"}, name="m", precision="int8", recipe={"kept_high_precision": ["conv"]})
    fr = SimpleNamespace(layers=_combined(), buildsets=[SimpleNamespace(variants={"m-int8": v}),
                                                         SimpleNamespace(variants=None), SimpleNamespace()],
                         model=None)
    out = explain_flow(fr)
    assert out["m-int8@tensorrt"].variant == "m-int8" and _cats(out["m-int8@tensorrt"]) == {"kept fp32": -1.5}
    assert out["m-fp16@tensorrt"].variant == ""
    assert explain_flow(SimpleNamespace()) == {}
    # the flow's model names the op type of a node the variant graph no longer has
    g = h.make_graph([h.make_node("Conv", [], ["c"], name="conv"), h.make_node("Relu", [], ["r"], name="relu")],
                     "g", [], [])
    rows = [{"layer": "conv", "layer_type": "Conv", "onnx_nodes": ["conv"], "onnx_node": "conv", "time_ms": 2.0},
            {"layer": "fused", "layer_type": "X", "onnx_nodes": ["relu", "conv"], "onnx_node": "relu", "time_ms": 1.0}]
    fp32 = pd.DataFrame(rows).assign(precision="fp32", variant="m", backend="b")
    var = pd.DataFrame(rows[:1]).assign(precision="int8", variant="m-int8", backend="b", time_ms=1.0)
    fr2 = SimpleNamespace(layers=pd.concat([fp32, var], ignore_index=True), model=wb.load(h.make_model(g), name="m"),
                          buildsets=[SimpleNamespace(variants={"m-int8": _variant({"conv": "Conv"})})])
    t = explain_flow(fr2)["m-int8@b"].table.set_index("category")
    assert t.loc["removed", "op_type"] == "Relu" and t.loc["removed", "delta_ms"] == -1.0


def test_attribution_frame():
    out = explain_profiles(_combined())
    f = attribution_frame(out)
    assert list(f.columns) == ["variant", "precision", *COLUMNS, "fp32_total_ms", "variant_total_ms"]
    assert f["variant"].tolist() == list(out) and f["precision"].tolist() == ["int8", "fp16", "int8", "fp16"]
    assert f["fp32_total_ms"].tolist() == [4.0, 4.0, 2.0, 2.0]
    assert f["variant_total_ms"].tolist() == [1.0, 3.0, 0.5, 1.5]
    assert f.index.tolist() == [0, 1, 2, 3]  # one tidy frame: a fresh index, not each table's own
    e = attribution_frame({})
    assert len(e) == 0 and list(e.columns) == list(f.columns)


def test_report_section():
    calls = []

    def table_html(df, max_rows):
        calls.append((len(df), max_rows))
        return "<table>T</table>"

    layers = _combined()
    cast = layers[(layers.precision == "int8") & (layers.backend == "onnxruntime")].assign(
        layer="c", layer_type="Cast", onnx_nodes=[["c1"]], onnx_node="c1", time_ms=0.25)
    fr = SimpleNamespace(layers=pd.concat([layers, cast], ignore_index=True), buildsets=[], model=None)
    s = speed_section_html(fr, table_html, max_figures=3)
    assert s.startswith("<h3 id='why-speed'>Why faster / slower than fp32</h3>\n<p class='meta'>per-layer time of "
                        "each variant minus fp32 on the same backend, attributed to the ONNX nodes each layer ran "
                        "(workbench.compare.speed.explain_flow)</p>\n<p><b>")
    assert s.endswith("\n<table>T</table>") and calls == [(5, 80)]
    assert s.count("<div class='figure'><div style=") == 3 and "fig-why-2" in s and "fig-why-3" not in s
    assert s.count("</script>        </div></div>\n") == 3  # each figure's div closed, then the next part
    assert "<html" not in s and len(s) < 100_000  # fragments, plotly.js loaded once by the report
    assert s.count('{"displaylogo": false, "responsive": true}') == 3
    first = explain_profiles(fr.layers)["m-int8@onnxruntime"].summary()
    assert len(first) == 3
    assert (f"<p><b>{html.escape(first[0])}</b></p><ul><li>{html.escape(first[1])}</li>"
            f"<li>{html.escape(first[2])}</li></ul>") in s
    six = pd.concat([layers, layers[layers.backend == "tensorrt"].assign(backend="third")], ignore_index=True)
    assert speed_section_html(SimpleNamespace(layers=six), table_html).count("<div class='figure'>") == 4
    assert speed_section_html(SimpleNamespace(layers=None), table_html) == ""
    bad = SimpleNamespace(layers=pd.DataFrame({"precision": ["fp32"], "time_ms": [1.0], "backend": ["b"]}))
    err = speed_section_html(bad, table_html)  # no 'variant' column: the attribution fails, the report goes on
    assert err.startswith("<h3>Why faster / slower than fp32</h3><p class='err'>attribution failed: ")
    assert "variant" in err  # the error itself (the missing column), escaped
    assert err.endswith("</p>")
    assert CATEGORIES[0] == "lowered"


def test_every_unmapped_layer_counts_and_mapped_layers_after_it_too():
    fp32 = _frame([("copy1", "Memcpy", [], "<unmapped>", 0.5), ("copy2", "Memcpy", None, "<unmapped>", 0.25),
                   ("conv", "Conv", ["conv"], "conv", 2.0)])
    var = _frame([("conv", "Conv", ["conv"], "conv", 1.0)])
    t = explain_speed(fp32, var).table.set_index("category")
    assert t.loc["backend overhead", "fp32_ms"] == 0.75 and t.loc["backend overhead", "variant_ms"] == 0.0
    assert t.loc["lowered", "fp32_ms"] == 2.0 and t.loc["lowered", "delta_ms"] == -1.0


def test_source_nodes_decide_the_categories():
    fp32 = _frame([("conv", "Conv", ["conv"], "conv", 4.0), ("cast", "Cast", ["cast"], "cast", 1.0),
                   ("extra", "Mul", ["extra"], "extra", 2.0)])
    var = _frame([("conv", "Conv", ["conv"], "conv", 2.0), ("cast", "Cast", ["cast"], "cast", 0.5),
                   ("extra", "Mul", ["extra"], "extra", 1.5), ("k", "Softmax", ["k"], "k", 0.25)])
    v = _variant({"conv": "Conv", "cast": "Cast", "extra": "Mul", "k": "Softmax"}, recipe={"kept_high_precision": ["k"]})
    # the fp32 graph's own Cast is a source node computed at the variant's precision, not an inserted Cast
    t = explain_speed(fp32, var, variant=v).table.set_index("op_type")
    assert t.loc["Cast", "category"] == "lowered" and t.loc["Conv", "category"] == "lowered"
    # named source nodes win over "every node the fp32 profile timed": extra is not one, so the recipe added it;
    # k (kept, timed only in the variant) is a kept source node
    t2 = explain_speed(fp32, var, variant=v, source_nodes=["conv", "cast", "k"]).table.set_index("op_type")
    assert t2.loc["Mul", "category"] == "recipe op" and t2.loc["Softmax", "category"] == "kept fp32"
    assert t2.loc["Conv", "category"] == "lowered"
    t3 = explain_speed(fp32, var, source_nodes=["conv", "cast", "k"], kept=["k"]).table.set_index("op_type")
    assert t3.loc["Mul", "category"] == "recipe op" and t3.loc["Softmax", "category"] == "kept fp32"


def test_small_total_change_still_gets_shares():
    fp32 = _frame([("a", "Conv", ["a"], "a", 1.0), ("b", "Relu", ["b"], "b", 1.0)])
    var = _frame([("a", "Conv", ["a"], "a", 0.75), ("b", "Relu", ["b"], "b", 0.75)])
    t = explain_speed(fp32, var).table
    assert t["share_of_delta"].tolist() == pytest.approx([0.5, 0.5])  # delta 0.5 ms: shares of it



def test_a_layer_without_a_time_adds_nothing_instead_of_turning_the_table_nan():
    """A profile row with no time (NaN, None) counts 0 ms: every table number stays finite and the table
    still adds up to the totals (pandas' sums skip NaN, so a NaN per node would break that reconciliation)."""
    v = _variant({"a": "Relu", "b": "Neg"})
    fp32 = _frame([("a", "Relu", ["a"], "a", 2.0), ("b", "Neg", ["b"], "b", float("nan"))])
    var = _frame([("a", "Relu", ["a"], "a", 1.0), ("b", "Neg", ["b"], "b", None)])
    ex = explain_speed(fp32, var, variant=v)
    nums = ex.table[["fp32_ms", "variant_ms", "delta_ms"]]
    assert nums.notna().all().all()
    assert ex.fp32_total_ms == 2.0 and ex.variant_total_ms == 1.0
    assert nums["fp32_ms"].sum() == 2.0 and nums["variant_ms"].sum() == 1.0 and nums["delta_ms"].sum() == -1.0


def test_speedup_of_sub_millisecond_totals_is_their_ratio():
    """fp32 0.9 ms vs variant 0.3 ms: 3x (tiny models run well under a millisecond); a variant with no time
    has no speedup (NaN)."""
    v = _variant({"a": "Relu"})
    ex = explain_speed(_frame([("a", "Relu", ["a"], "a", 0.9)]), _frame([("a", "Relu", ["a"], "a", 0.3)]), variant=v)
    assert ex.speedup == pytest.approx(3.0)
    none = explain_speed(_frame([("a", "Relu", ["a"], "a", 0.9)]), _frame([]), variant=v)
    assert math.isnan(none.speedup)
