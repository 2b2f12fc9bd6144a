"""One node-column name across every frame the library returns (issue 17).

The canonical names (docs/architecture.md, "Tables"): ``onnx_node`` — one ONNX node of the source graph
(unnamed nodes: their first output / ``<op_type>#<index>``); ``onnx_nodes`` — a list of such names (the
nodes one backend layer covers); a qualifier may come first (``kept_onnx_nodes``: the keep list of a
mixed-precision step); counts end in ``_count`` (``onnx_node_count``, ``node_count``); ``tensor`` /
``output`` for tensor names. This test calls every public frame-returning function on a sample model and fails when a
frame has a node column under any other name (``node``, ``nodes``, ``name``, ``node_name``, ...).
"""
from __future__ import annotations

import importlib
import re
import shutil

import pandas as pd
import pytest

from conftest import SAMPLES

CANONICAL = re.compile(r"^(\w+_)?onnx_nodes?$|^(\w+_)?node_count$")
#: node columns that are not about the ONNX graph: the Ray cluster node a sweep cell ran on
OTHER_NODES = {"ray_node"}
#: a column that names nodes (or is ambiguous about what it names) under another name
_NODEISH = re.compile(r"(^|_)nodes?($|_)|^name$|_name$|^names$")


def non_canonical(columns) -> list[str]:
    return [str(c) for c in columns
            if _NODEISH.search(str(c)) and not CANONICAL.match(str(c)) and str(c) not in OTHER_NODES]


def test_the_rule_catches_every_spelling_seen_before():
    old = ["node", "nodes", "name", "node_name", "onnx_node_name", "nodes_list", "layer_nodes", "ray_node_x",
           "kept_nodes", "onnx_nodes_kept"]
    assert non_canonical(old) == old
    assert non_canonical(["onnx_node", "onnx_nodes", "onnx_node_count", "node_count", "tensor", "layer",
                          "layer_type", "variant_tensor", "ray_node", "kept_onnx_nodes", "added_onnx_nodes"]) == []


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """name of the call → the frame it returned, for every public frame-returning call."""
    import workbench as wb
    from workbench import plots, report
    lw_mod = importlib.import_module("workbench.compare.layerwise")
    from workbench.compare import speed
    from workbench.edit.diff import diff_models
    from workbench.measure.mapping import spread
    from workbench.measure.repeat import speed_verdicts
    from workbench.precision import list_recipes
    from workbench.precision.fp16safety import fp16_safety
    from workbench.shapes import diagnose

    d = tmp_path_factory.mktemp("columns")
    for f in ("digits_cnn.onnx", "digits_test.npz", "digits_calib.npz", "transformer_block.onnx"):
        shutil.copy(SAMPLES / f, d / f)
    model = wb.load(d / "digits_cnn.onnx")
    fr = wb.run_flow(model, "fp32,fp16,int8", "onnxruntime", data=d / "digits_test.npz", labels="label",
                     calib=d / "digits_calib.npz", iterations=3, warmup=0, layer_iterations=2, blocks=1,
                     accuracy_limit=32, layerwise_limit=8, progress=False)
    out: dict[str, pd.DataFrame] = {f"FlowResult.{k}": getattr(fr, k) for k in fr.FRAMES}
    out["FlowResult.summary"] = fr.summary()
    out["FlowResult.load.layerwise"] = wb.FlowResult.load(fr.save(d / "saved")).layerwise
    out["report.summary_frame"] = report.summary_frame(fr)
    out["report.accuracy_frame"] = report.accuracy_frame(fr)
    ins = wb.inspect(model)
    for k in ("summary", "ops_frame", "params_frame", "io_frame", "nodes_frame", "tensors_frame"):
        out[f"Inspection.{k}"] = getattr(ins, k)()
    h = wb.History(model)
    h.apply("remove_node", node="/classifier/relu/Relu")
    h.apply("rename", nodes={"/classifier/fc1/Gemm": "head"})
    out["History.versions"] = h.versions
    out["History.diff"] = h.diff(0, -1)
    out["diff_models"] = diff_models(model, h.model)
    out["fp16_safety"] = fp16_safety(d / "transformer_block.onnx")
    out["list_recipes"] = list_recipes()
    out["diagnose.to_frame"] = diagnose(model).to_frame()
    bs = fr.buildsets["onnxruntime"]
    out["BuildSet.to_frame"] = bs.to_frame()
    feeds = fr.batches[0]
    eng = bs["fp32"].engine
    lat = wb.measure_latency(eng, feeds, iterations=3, warmup=0, progress=False)
    out["LatencyResult.to_frame"] = lat.to_frame()
    out["speed_verdicts"] = speed_verdicts(fr.latency)
    layers = wb.profile_layers(eng, feeds, iterations=2, warmup=0, progress=False)
    out["profile_layers"] = layers
    out["mapping.spread"] = spread(layers)
    out["plots.layers_by_node"] = plots.layers_by_node(fr.layers)
    ex = speed.explain_flow(fr)
    assert ex, "the flow has an fp16 / int8 profile to explain"
    out["SpeedAttribution.table"] = next(iter(ex.values())).table
    out["SpeedAttribution.by_category"] = next(iter(ex.values())).by_category()
    out["attribution_frame"] = speed.attribution_frame(ex)
    cmp = fr.comparisons["onnxruntime"]
    out["Comparison.metrics"] = cmp.metrics
    out["Comparison.summary"] = cmp.summary()
    out["Comparison.verdicts"] = cmp.verdicts()
    var = bs["int8"].variant
    lw = lw_mod.layerwise(model, var, data=fr.batches[:1], limit=None, progress=False)
    out["layerwise"] = lw
    out["layerwise_tidy"] = lw_mod.layerwise_tidy(lw)
    out["first_divergence.to_frame"] = lw_mod.first_divergence(model, var, data=fr.batches[:1], limit=None,
                                                               progress=False).to_frame()
    out["RunResult.to_frame"] = wb.run_model(model).to_frame()
    mixed = wb.propose_mixed_precision(model, "int8", target="snr_db>=60", data=d / "digits_test.npz",
                                       calib=d / "digits_calib.npz", max_steps=1, search_limit=16,
                                       layerwise_limit=8, latency=False, progress=False)
    out["MixedPrecisionResult.steps"] = mixed.steps
    return out


def test_every_public_frame_uses_the_canonical_node_column(frames):
    bad = {name: non_canonical(df.columns) for name, df in frames.items() if non_canonical(df.columns)}
    assert not bad, f"non-canonical node columns (use onnx_node / onnx_nodes): {bad}"
    # the frames that are about nodes carry the canonical column (not an empty pass)
    for name in ("FlowResult.layers", "FlowResult.layerwise", "FlowResult.load.layerwise", "Inspection.nodes_frame",
                 "History.diff", "fp16_safety", "profile_layers", "plots.layers_by_node", "layerwise",
                 "layerwise_tidy", "first_divergence.to_frame", "mapping.spread"):
        assert "onnx_node" in frames[name].columns and len(frames[name]), name
    assert "onnx_nodes" in frames["profile_layers"].columns
    assert "onnx_node_count" in frames["SpeedAttribution.table"].columns
    steps = frames["MixedPrecisionResult.steps"]
    assert {"kept_onnx_nodes", "added_onnx_nodes"} <= set(steps.columns) and len(steps.kept_onnx_nodes.iloc[-1]) == 1
    diff = frames["History.diff"]
    nodes, others = diff[diff.kind == "node"], diff[diff.kind != "node"]
    assert len(nodes) and nodes.onnx_node.notna().all() and nodes.tensor.isna().all()
    assert others.onnx_node.isna().all() and others.tensor.notna().all()


def test_frames_join_on_the_node_column(frames):
    """The point of one name: a profile, the per-node error and the fp16 findings join without renaming."""
    layers = frames["plots.layers_by_node"]
    lw = frames["FlowResult.layerwise"]
    joined = layers.merge(lw[["onnx_node", "cosine"]], on="onnx_node")
    assert len(joined) and set(joined.onnx_node) <= set(frames["Inspection.nodes_frame"].onnx_node)


def test_column_constants_of_every_module_are_canonical():
    """Frames built from a module-level column list (sweeps, builds, latency, ...) without running them here."""
    mods = ["workbench.sweeps", "workbench.builds", "workbench.measure.latency", "workbench.measure.layers",
            "workbench.compare.outputs", "workbench.compare.speed", "workbench.edit.diff", "workbench.flow",
            "workbench.precision.fp16safety", "workbench.shapes", "workbench.widgets.sweep_panel"]
    bad = {}
    for name in mods:
        m = importlib.import_module(name)
        for attr, val in vars(m).items():
            if attr.lstrip("_").endswith("COLUMNS") and isinstance(val, (list, tuple)):
                if non_canonical(val):
                    bad[f"{name}.{attr}"] = non_canonical(val)
    assert not bad, bad
