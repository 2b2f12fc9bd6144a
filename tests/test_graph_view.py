"""Graph viewer, Python side: payload, groups and visibility, overlays, diff, HTML export, widget
traitlets, Netron on loopback, ``workbench view``. (Browser tests: tests/test_graph_browser.py.)"""
from __future__ import annotations

import html
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.cli import main as cli_main
from workbench.errors import UsageError
from workbench import colors
from workbench.graph import CHUNK, DIFF_COLORS, GraphPayload, scope_parts
from workbench.synthetic import chain_model
from workbench.widgets.graph_view import GraphView, export_html

ROOT = Path(__file__).resolve().parents[1]


def scoped_model() -> onnx.ModelProto:
    """Two transformer-like layers with ONNX-exporter style names, plus an If with two bodies."""
    nodes, prev = [], "x"
    for layer in range(2):
        for part, op in [("attn/q_proj", "Relu"), ("attn/k_proj", "Sigmoid"), ("attn", "Neg"), ("mlp/fc1", "Abs")]:
            out = f"l{layer}_{part.replace('/', '_')}"
            nodes.append(helper.make_node(op, [prev], [out], name=f"/encoder/layer.{layer}/{part}/{op}"))
            prev = out
    then_g = helper.make_graph([helper.make_node("Relu", [prev], ["then_out"], name="then_relu")], "then", [],
                               [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [1, 4])])
    else_g = helper.make_graph([helper.make_node("Neg", [prev], ["else_out"], name="else_neg")], "else", [],
                               [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [1, 4])])
    nodes.append(helper.make_node("Constant", [], ["cond"], name="/head/cond",
                                  value=helper.make_tensor("c", TensorProto.BOOL, [], [True])))
    nodes.append(helper.make_node("If", ["cond"], ["y"], name="/head/If", then_branch=then_g, else_branch=else_g))
    g = helper.make_graph(nodes, "scoped", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def with_qdq(proto: onnx.ModelProto, op_type: str = "Conv") -> tuple[onnx.ModelProto, set[str]]:
    """An int8-like variant: QuantizeLinear → DequantizeLinear on the first input of every ``op_type``."""
    p = onnx.ModelProto()
    p.CopyFrom(proto)
    g = p.graph
    g.initializer.extend([numpy_init("qdq_scale", np.array(0.02, np.float32)),
                          numpy_init("qdq_zero", np.array(0, np.int8))])
    new_nodes, added = [], set()
    for k, node in enumerate(g.node):
        if node.op_type == op_type:
            x = node.input[0]
            q, dq = f"qdq/{k}/QuantizeLinear", f"qdq/{k}/DequantizeLinear"
            new_nodes.append(helper.make_node("QuantizeLinear", [x, "qdq_scale", "qdq_zero"], [f"{x}_q{k}"], name=q))
            new_nodes.append(helper.make_node("DequantizeLinear", [f"{x}_q{k}", "qdq_scale", "qdq_zero"], [f"{x}_dq{k}"], name=dq))
            node.input[0] = f"{x}_dq{k}"
            added |= {q, dq}
        new_nodes.append(node)
    del g.node[:]
    g.node.extend(new_nodes)
    return p, added


def numpy_init(name, arr):
    return onnx.numpy_helper.from_array(arr, name)


# ---------------------------------------------------------------------------------------- payload
def test_resnet50_payload_has_every_node_and_edge(light):
    path = light("resnet50")
    proto = onnx.load(path)
    p = GraphPayload.from_model(path)
    op_names = [r.name for r in p.recs if r.kind == "op"]
    assert len(op_names) == len(proto.graph.node) == p.op_count
    assert [r.op for r in p.recs if r.kind == "op"] == [n.op_type for n in proto.graph.node]
    # independent edge count: every node input produced by another node
    produced = {o for n in proto.graph.node for o in n.output}
    expected = sum(1 for n in proto.graph.node for i in n.input if i in produced)
    is_op = np.array([r.kind == "op" for r in p.recs])
    mask = is_op[p.edge_src] & is_op[p.edge_dst]
    assert int(mask.sum()) == expected
    # producer → consumer pairs match onnx
    prod = {o: k for k, n in enumerate(proto.graph.node) for o in n.output}
    want = sorted((prod[i], k) for k, n in enumerate(proto.graph.node) for i in n.input if i in prod)
    got = sorted(zip(p.edge_src[mask].tolist(), p.edge_dst[mask].tolist()))
    assert got == want
    # graph inputs/outputs are pseudo nodes
    assert {r.name for r in p.recs if r.kind == "input"} == {f"input:{n}" for n in wb.load(path).input_names}
    assert {r.name for r in p.recs if r.kind == "output"} == {f"output:{o.name}" for o in proto.graph.output}


def test_details_shapes_and_initializer_stats(sample):
    path = sample("digits_cnn.onnx")
    p = GraphPayload.from_model(path)
    d = p.details("/features/conv1/Conv")
    assert d["op"] == "Conv" and d["scope"] == "features/conv1"
    x = d["inputs"][0]
    assert x["name"] == "image" and x["dtype"] == "float32" and x["shape"][1:] == [1, 8, 8]
    w = next(t for t in d["inputs"] if t.get("initializer"))
    arr = onnx.numpy_helper.to_array(next(t for t in onnx.load(path).graph.initializer if t.name == w["name"]))
    assert w["shape"] == list(arr.shape)
    assert w["stats"]["mean"] == pytest.approx(float(arr.mean()), rel=1e-6)
    assert w["stats"]["max"] == pytest.approx(float(arr.max()))
    assert d["outputs"][0]["consumers"] == ["/features/relu1/Relu"]
    assert "pads" in d["attributes"] or "kernel_shape" in d["attributes"]


def test_scope_parts():
    assert scope_parts("/encoder/layer.0/attn/MatMul") == ["encoder", "layer.0", "attn"]
    assert scope_parts("encoder/MatMul") == ["encoder"]
    assert scope_parts("MatMul_3") == [] and scope_parts("/MatMul") == []


def test_scopes_and_subgraph_groups():
    p = GraphPayload.from_model(scoped_model())
    for gid in ["/encoder", "/encoder/layer.0", "/encoder/layer.0/attn", "/encoder/layer.0/attn/q_proj",
                "/encoder/layer.1/mlp/fc1", "/head"]:
        assert gid in p.groups, gid
    i = p.node_id("/encoder/layer.1/attn/k_proj/Sigmoid")
    assert p.ancestors(i) == ["/encoder", "/encoder/layer.1", "/encoder/layer.1/attn", "/encoder/layer.1/attn/k_proj"]
    subs = [g for g in p.groups.values() if g.kind == "subgraph"]
    assert sorted(g.label for g in subs) == ["If · else_branch", "If · then_branch"]
    assert all(g.parent == "/head" for g in subs)
    # body nodes read an outer tensor and feed the If through their outputs
    body = p.node_id("then_relu")
    if_ = p.node_id("/head/If")
    pairs = set(zip(p.edge_src.tolist(), p.edge_dst.tolist()))
    assert (p.node_id("/encoder/layer.1/mlp/fc1/Abs"), body) in pairs and (body, if_) in pairs


def test_transformer_sample_scopes(sample):
    p = GraphPayload.from_model(sample("transformer_block.onnx"))
    names = [n.name for n in onnx.load(ROOT / "sample_models" / "transformer_block.onnx").graph.node]
    want = {"/".join([""] + scope_parts(n)[:k]) for n in names for k in range(1, len(scope_parts(n)) + 1)}
    assert want and want <= set(p.groups)


def test_collapse_expand_changes_visible_subset():
    p = GraphPayload.from_model(scoped_model())
    closed = p.visible([])
    boxes = {it["id"] for it in closed["items"] if it["k"] == "group"}
    assert boxes == {"/encoder", "/head"}
    assert not any(it["k"] == "op" for it in closed["items"])
    # the two boxes are linked by one aggregated edge (encoder output feeds the If body)
    n = len(p.recs)
    ids = {it["id"]: it["i"] for it in closed["items"] if it["k"] == "group"}
    assert any(e[0] == ids["/encoder"] and e[1] == ids["/head"] for e in closed["edges"])
    opened = p.visible(["/encoder", "/encoder/layer.0"])
    names = {it["n"] for it in opened["items"]}
    assert {"attn", "mlp"} <= names and "layer.1" in names
    frames = {f["id"] for f in opened["frames"]}
    assert frames == {"/encoder", "/encoder/layer.0"}
    # edges only between visible items, no self loops
    vis = {it["i"] for it in opened["items"]}
    assert all(a in vis and b in vis and a != b for a, b, *_ in opened["edges"])
    assert all(it["i"] < n for it in opened["items"] if it["k"] == "op")


def test_unscoped_chain_is_chunked():
    p = GraphPayload.from_model(chain_model(1000), infer_shapes=False)
    chunks = [g for g in p.groups.values() if g.kind == "chunk"]
    assert len(chunks) == -(-(1000 + 2) // CHUNK)
    assert sum(g.size for g in chunks) == 1000
    v = p.visible([])
    assert len(v["items"]) == len(chunks)
    assert len(v["edges"]) == len(chunks) - 1  # a chain of boxes


def test_100k_graph_stays_small_when_collapsed():
    p = GraphPayload.from_model(chain_model(100_000, scoped=True), infer_shapes=False)
    assert p.op_count == 100_000
    default = p.default_expanded()
    v = p.visible(default)
    assert len(v["items"]) <= 800 and len(json.dumps(v)) < 400_000
    top = p.visible([])
    assert len(top["items"]) == 100 + 2  # 100 blocks + the input and output
    # expanding one block shows its 10 layers instead of one box
    g = "/block42"
    after = p.visible([g])
    assert len(after["items"]) == len(top["items"]) - 1 + len(p.groups[g].children) == len(top["items"]) + 9
    inner = p.visible([g, g + "/layer3"])
    assert len(inner["items"]) == len(after["items"]) - 1 + 100
    assert sum(1 for it in inner["items"] if it["k"] == "op") == 100


# ---------------------------------------------------------------------------------------- overlays
def test_overlay_thresholds_and_gradient():
    p = GraphPayload.from_model(scoped_model())
    names = [r.name for r in p.recs if r.kind == "op"]
    values = {n: float(k) for k, n in enumerate(names)}
    lg = p.set_overlay(values, label="latency ms", thresholds=[2, 5])
    assert lg["kind"] == "bins" and len(lg["items"]) == 3
    for n, x in values.items():
        want = lg["items"][0 if x < 2 else 1 if x < 5 else 2]["color"]
        assert p.node_colors[p.node_id(n)] == want
    # groups aggregate with max: /encoder/layer.1 holds values 4..7
    k = p.group_index["/encoder/layer.1"]
    assert p.overlay_group[k] == max(values[n] for n in names if n.startswith("/encoder/layer.1/"))
    lg = p.set_overlay(values, label="err", colormap="viridis")
    lo, hi = min(values.values()), max(values.values())
    assert p.node_colors[p.node_id(names[0])] == colors.sample("viridis", 0.0) == lg["stops"][0]
    assert p.node_colors[p.node_id(names[-1])] == colors.sample("viridis", 1.0)
    assert (lg["lo"], lg["hi"]) == (lo, hi)
    with pytest.raises(UsageError):
        p.set_overlay({"nope": 1.0}, label="x")
    with pytest.raises(UsageError):
        p.set_overlay(values, label="x", thresholds=[3, 1])


def test_overlay_from_dataframe_and_visible_colors():
    view = GraphView(scoped_model())
    names = [r.name for r in view.payload.recs if r.kind == "op"][:4]
    df = pd.DataFrame({"onnx_node": names, "time_ms": [0.1, 0.2, 0.3, 4.0]})
    lg = view.set_overlay(df, label="latency ms", thresholds=[1.0])
    assert view.legend == lg
    view.expand("/encoder/layer.0/attn/q_proj")
    item = next(it for it in view._view["items"] if it["n"] == names[0])
    assert item["v"] == pytest.approx(0.1) and item["c"] == lg["items"][0]["color"]
    # per-layer frame (profile_layers): a layer's time is split over its onnx_nodes
    layers = pd.DataFrame({"layer": ["a"], "onnx_nodes": [names[:2]], "time_ms": [1.0]})
    view.set_overlay(layers, label="ms")
    assert view.payload.overlay_node[view.payload.node_id(names[0])] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------- diff
def test_diff_marks_qdq_nodes_added(light):
    proto = onnx.load(light("squeezenet"))
    int8, added = with_qdq(proto)
    p = GraphPayload.diff(proto, int8)
    status = {r.name: r.status for r in p.recs if r.kind == "op"}
    assert {n for n, s in status.items() if s == "added"} == added
    convs = {n.name for n in proto.graph.node if n.op_type == "Conv"}
    assert {n for n, s in status.items() if s == "changed"} == convs  # their input tensor changed
    assert not any(s == "removed" for s in status.values())
    assert p.node_colors[p.node_id(next(iter(added)))] == DIFF_COLORS["added"]
    back = GraphPayload.diff(int8, proto)
    assert {r.name for r in back.recs if r.status == "removed"} == added


def test_diff_of_real_int8_variant(sample):
    precision = pytest.importorskip("workbench.precision")
    m = wb.load(sample("digits_cnn.onnx"))
    v = precision.make_variant(m, "int8", calib=str(ROOT / "sample_models" / "digits_calib.npz"), progress=False)
    view = GraphView.diff(m, v)  # a Variant is accepted as is
    recs = [r for r in view.payload.recs if r.kind == "op"]
    qdq = [r for r in recs if r.op in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq and all(r.status == "added" for r in qdq)
    assert {r.name for r in recs if r.status != "added"} >= {n.name for n in m.graph.node if n.op_type == "Conv"}


# ---------------------------------------------------------------------------------------- export / widget
def test_html_export_contains_every_node(light, tmp_path):
    path = light("resnet50")
    out = tmp_path / "view.html"
    html = export_html(path, out)
    assert out.read_text() == html
    data = json.loads(re.search(r'<script type="application/json" id="wb-graph-data">(.*?)</script>', html, re.S).group(1))
    names = {n["n"] for n in data["graph"]["nodes"]}
    proto = onnx.load(path)
    assert len(proto.graph.node) == sum(1 for n in data["graph"]["nodes"] if n["k"] == "op")
    assert all((n.name or f"{n.op_type}#{k}") in names for k, n in enumerate(proto.graph.node))
    assert "<script src" not in html and "https://" not in html.split('id="wb-graph-esm"')[0]
    assert "mountStandalone" in html


def test_widget_selected_traitlet_and_details(light):
    view = GraphView(light("resnet50"))
    assert isinstance(view.selected, list) and view.selected == []
    assert "selected" in view.keys and "expanded" in view.keys
    name = view.payload.recs[200].name
    view.collapse(*view.expanded)
    assert not any(it["k"] == "op" for it in view._view["items"] if it["n"] == name)
    view.selected = [name]  # as if clicked (or set from Python): details + its groups open
    assert view._details["name"] == name and view._details["op"] == view.payload.recs[200].op
    assert any(it["n"] == name for it in view._view["items"])
    view._search = "Conv"
    assert view._search_results and all(r["o"] == "Conv" or "conv" in r["n"].lower() for r in view._search_results)
    with pytest.raises(UsageError):
        view.expand("/no/such/group")


def test_side_by_side_syncs_selection(light):
    path = light("squeezenet")
    int8, _ = with_qdq(onnx.load(path))
    box = GraphView.side_by_side(path, int8)
    a, b = box.panes
    name = next(r.name for r in a.payload.recs if r.op == "Relu")
    a.selected = [name]
    assert b.selected == [name] and b._details["name"] == name


# ---------------------------------------------------------------------------------------- netron / CLI
def test_netron_serves_on_loopback_and_stops(light):
    from workbench.widgets.netron import serve_netron

    path = light("squeezenet")
    with serve_netron(path) as srv:
        assert srv.address[0] == "127.0.0.1" and srv.address[1] > 0
        assert srv.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(srv.url, timeout=10) as r:
            assert r.status == 200 and b"netron" in r.read().lower()
        assert srv.running
    assert not srv.running
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(srv.url, timeout=3)


def test_netron_serves_in_memory_model():
    from workbench.widgets.netron import serve_netron

    m = wb.load(scoped_model(), name="edited")
    srv = serve_netron(m)
    try:
        with urllib.request.urlopen(srv.url + "/data/edited.onnx", timeout=10) as r:
            assert onnx.load_from_string(r.read()).graph.node[0].name == m.graph.node[0].name
    finally:
        srv.stop()


def test_cli_view_html(light, tmp_path, capsys):
    out = tmp_path / "v.html"
    assert cli_main(["view", str(light("squeezenet")), "--html", str(out)]) == 0
    assert "squeezenet" in out.read_text() and "wrote" in capsys.readouterr().out
    assert cli_main(["view", str(tmp_path / "missing.onnx")]) == 2
    assert "not found" in capsys.readouterr().err


def test_overlay_menu_fp16_safety_colours_flagged_nodes_by_severity(sample):
    """``with_overlay_menu``: the "fp16 safety" entry runs ``view.set_overlay(wb.fp16_safety(m)..., reduce="max")``
    (the code it shows runs in a fresh namespace with the same result); each flagged node gets the colour
    of its worst finding, the others none; with a flow result the time / error entries join it."""
    from workbench.widgets.graph_view import FP16_SAFETY_COLORS, GraphView, overlay_calls

    m = wb.load(sample("transformer_block.onnx"))
    flagged = wb.fp16_safety_overlay(m)
    assert flagged
    view = GraphView(m)
    box = view.with_overlay_menu()
    box.menu.value = "fp16 safety"
    colors = dict(zip((r.name for r in view.payload.recs), view.payload.node_colors))
    for name, score in flagged.items():
        assert colors[name] == FP16_SAFETY_COLORS[int(score) - 1], name
    assert all(c is None for n, c in colors.items() if n not in flagged)
    table = wb.fp16_safety(m)
    for name in flagged:  # each finding's check and reason in the node's details, under its value
        d = view.payload.details(name)["overlay"]
        assert d["value"] == flagged[name] and all(c in d["note"] for c in table[table.onnx_node == name].check)
    assert "note" not in view.payload.details(next(n for n in colors if n not in flagged)).get("overlay", {})
    text = html.unescape(box.code.value.removeprefix("<pre>").removesuffix("</pre>"))
    ns: dict = {}
    exec(compile(text, "<pasted>", "exec"), ns)  # noqa: S102 - the code the menu showed
    assert ns["view"].payload.node_colors == view.payload.node_colors and ns["view"].legend == view.legend
    fr = type("FR", (), {"layers": pd.DataFrame({"variant": ["a", "a"], "onnx_node": list(flagged)[:2],
                                                 "time_ms": [1.0, 2.0]}),
                         "layerwise": pd.DataFrame()})()
    assert list(overlay_calls(fr)) == ["fp16 safety", "time ms: a"]
    box = view.with_overlay_menu(fr)
    box.menu.value = "time ms: a"
    assert view.legend["label"] == "ms (a)" and "fr.layers[fr.layers.variant == 'a']" in html.unescape(box.code.value)
