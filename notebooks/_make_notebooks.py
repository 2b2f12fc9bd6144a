"""Write the six workshop notebooks (01-06) from the cells below, without outputs.

    python notebooks/_make_notebooks.py          # rewrites notebooks/0*.ipynb

Edit the cells here, not the .ipynb files: the notebooks stay reviewable as plain Python. Every notebook
runs top to bottom on a CPU (ONNX Runtime) and picks TensorRT when it is installed with a GPU.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''\
import os
from pathlib import Path
import workbench as wb

ROOT = Path.cwd() if (Path.cwd() / "sample_models").exists() else Path.cwd().parent
SAMPLES = ROOT / "sample_models"
OUT = ROOT / "out" / "notebooks"
OUT.mkdir(parents=True, exist_ok=True)
MODEL = SAMPLES / "digits_cnn.onnx"
TEST = SAMPLES / "digits_test.npz"      # keys: image [450,1,8,8], label [450]
CALIB = SAMPLES / "digits_calib.npz"    # key: image [256,1,8,8] (train split)
backend = "tensorrt" if wb.get_backend("tensorrt").available()[0] else "onnxruntime"
QUICK = bool(os.environ.get("WB_QUICK"))  # CI sets this: fewer iterations
ITERS = 20 if QUICK else 200
print("backend:", backend)'''


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


NOTEBOOKS: dict[str, tuple[str, list]] = {}

NOTEBOOKS["01_load_and_inspect"] = ("Load and inspect an ONNX model", [
    md("""
# 01 · Load and inspect an ONNX model

The workbench starts from an ONNX file. `wb.load` reads it **read-only** (the source file is never
written), checks external data, and gives the model a content hash. `wb.inspect` summarises it: inputs
and outputs, op counts, parameters, FLOPs, shapes.

We use `digits_cnn.onnx`, a small CNN trained on scikit-learn's 8×8 digits (98.9 % top-1)."""),
    code(SETUP),
    code('''
m = wb.load(MODEL)
m'''),
    md("`inspect` returns plain data with tables (`pandas` DataFrames) and a readable HTML view."),
    code('''
ins = wb.inspect(m)
ins'''),
    code('''
ins.io_frame()'''),
    code('''
ins.ops_frame()'''),
    md("""
Per node: op type, output shapes and estimated FLOPs (Conv, Gemm and MatMul are counted; one MAC = 2 FLOPs).
Names follow the torch modules the model was exported from (`/features/conv1/Conv`)."""),
    code('''
nodes = ins.nodes_frame()
nodes[["index", "onnx_node", "op_type", "output_shapes", "flops"]]'''),
    md("""
The batch dimension of `image` is dynamic (`batch`). Without `shapes=`, `inspect` counts **per sample**:
it assumes batch 1 and says so (`ins.assumed_batch`, and a line in its warnings)."""),
    code('''
print(ins.assumed_batch, "->", ins.warnings[0])
print(f"{ins.params:,} parameters, {ins.flops / 1e6:.2f} MFLOPs per image")
share = nodes.groupby("op_type").flops.sum() / nodes.flops.sum()
(100 * share).round(1).sort_values(ascending=False).head().rename("share of FLOPs (%)")'''),
    md("""
`shapes=` fixes the dynamic dims for shape inference and FLOPs (the same syntax as the CLI's
`--shapes`): a batch of 32 images is 32 times the work."""),
    code('''
print(f"{wb.inspect(m, shapes='image:32x1x8x8').flops / 1e6:.1f} MFLOPs per batch of 32")'''),
    md("""
The same from a terminal: `workbench inspect sample_models/digits_cnn.onnx`.

### Exercises
1. Which layer holds most of the FLOPs? Does it also hold most of the parameters?
2. Inspect `sample_models/transformer_block.onnx` with `shapes="x:1x128x64"`, then with `x:1x512x64`.
   Which op types grow fastest with the sequence length, and why?
3. `m.hash` identifies the graph content. Load the file twice: same hash? Save a copy with
   `m.save(OUT / "copy.onnx")` and compare."""),
])

NOTEBOOKS["02_visualize"] = ("Visualize the graph", [
    md("""
# 02 · Visualize the graph

`GraphView` is a notebook widget: groups follow the name scopes (`/features/...`), click a group to
open it, click nodes to select them (shift-click adds). Python holds the whole graph and sends only
what is visible, so large models stay responsive.

Overlays colour nodes by any number per node — FLOPs here, latency and error in notebooks 05 and 06."""),
    code(SETUP),
    code('''
from workbench.widgets.graph_view import GraphView, export_html

m = wb.load(MODEL)
view = GraphView(m, height=480)
view'''),
    md("Colour the nodes by their share of the FLOPs (from `wb.inspect`):"),
    code('''
nodes = wb.inspect(m, shapes="image:1x1x8x8").nodes_frame()
mflops = dict(zip(nodes.onnx_node, nodes.flops.fillna(0) / 1e6))
legend = view.set_overlay(mflops, label="MFLOPs")   # the view above is recoloured; legend: its colour scale'''),
    md("Selections made by clicking in the view are available in Python:"),
    code('''
view.selected'''),
    md("The same viewer as a standalone offline HTML page (every node, no server):"),
    code('''
page = export_html(m, OUT / "digits_cnn_graph.html")
print("wrote", OUT / "digits_cnn_graph.html")'''),
    md("""
Netron is the classic viewer; `workbench view MODEL` serves it on 127.0.0.1. Plots of the tidy tables
come from `workbench.plots` (one function per figure, colours fixed per precision):"""),
    code('''
from workbench import plots
plots.PRECISION_COLORS'''),
    md("""
### Exercises
1. Open `sample_models/transformer_block.onnx` in a `GraphView`. Expand `/encoder/layer.0/attn`.
   Which ops implement attention?
2. Overlay the number of output elements per node instead of FLOPs (`nodes.output_shapes`).
3. Select two nodes in the view and print `view.selected`."""),
])

NOTEBOOKS["03_edit_with_graphsurgeon"] = ("Edit with GraphSurgeon", [
    md("""
# 03 · Edit the graph with ONNX GraphSurgeon

Edits are pure functions (model in → new model out) collected in a **validated history** with undo,
redo, diffs and a replay script. Every version is checked with the ONNX checker and ONNX Runtime."""),
    code(SETUP),
    code('''
import workbench.edit as ed

h = ed.History(MODEL)
h.versions'''),
    md("Fix the batch size to 1 (e.g. for an engine with static shapes):"),
    code('''
v = h.apply("set_batch", batch=1)
print(v.code)
wb.inspect(h.model).io_frame()'''),
    md("Expose an intermediate tensor as an extra output — useful to debug accuracy layer by layer:"),
    code('''
relu2 = next(n for n in h.model.graph.node if n.name == "/features/relu2/Relu")
h.apply("add_outputs", tensors=[relu2.output[0]])
[o.name for o in h.model.graph.output]'''),
    code('''
h.diff()'''),
    md("Undo the last edit; `redo` brings it back. Invalid edits are refused unless `force=True`."),
    code('''
h.undo()
[o.name for o in h.model.graph.output]'''),
    code('''
try:
    h.apply("remove_node", node="/does/not/exist")
except wb.WorkbenchError as e:
    print("refused:", e)'''),
    md("The history as a script you can re-run, and the current version saved (the source stays untouched):"),
    code('''
print(h.to_script(str(MODEL)))
h.save(OUT / "digits_cnn_batch1.onnx")'''),
    md("""
In the dashboard (`wb.Workbench(MODEL)`), the Edit tab offers the same operations as forms, filled by
clicking nodes in the graph.

### Exercises
1. Use `extract` to cut the sub-model from `image` to the output of `/features/pool/MaxPool`. Run it with
   `wb.get_backend("onnxruntime")`.
2. Replace the `Relu` after `fc1` with `LeakyRelu` (`replace_op`). What happens to the accuracy
   (notebook 06 shows how to measure it)?
3. Compare `h.versions` before and after `fold_constants`."""),
])

NOTEBOOKS["04_build_precisions"] = ("Build at several precisions", [
    md("""
# 04 · Build at several precisions

Precision lives **in the graph**: FP16 / BF16 variants carry casts, INT8 / FP8 variants carry
explicit QuantizeLinear / DequantizeLinear nodes (TensorRT 11 builds strongly typed networks only).
`build_variants` makes each variant and builds it on one backend; what a backend cannot do is
*skipped* with the reason, never silently changed."""),
    code(SETUP),
    code('''
from workbench.builds import build_variants

bs = build_variants(MODEL, ["fp32", "fp16", "int8", "bf16"], backend, calib=CALIB, out_dir=OUT / "builds")
bs.to_frame()'''),
    md("Each variant keeps the recipe that made it (tool, options, calibration data):"),
    code('''
import pandas as pd
pd.Series(bs["int8"].variant.recipe, name="int8 recipe").astype(str).to_frame()'''),
    md("""
Latency of each built engine on one batch of 32 test images. Timings on a shared laptop drift, so every
variant runs in 5 interleaved blocks (fp32, fp16, int8, fp32, fp16, int8, …): the speedup is computed per
block and its range says whether a difference is real (`within noise` when the range contains 1×)."""),
    code('''
from workbench.data import NpzDataset
from workbench.measure.repeat import blocks_frame, measure_blocks, speed_verdicts

feeds = next(NpzDataset(TEST, bs.model, allow_extra=True).batches(32))
lat = blocks_frame(measure_blocks([(r.engine, feeds) for r in bs if r.engine], blocks=5, iterations=ITERS, warmup=5))
table = lat[["variant", "p50_ms", "p50_lo_ms", "p50_hi_ms", "p99_ms", "throughput"]].merge(
    speed_verdicts(lat)[["variant", "speedup", "speedup_lo", "speedup_hi", "verdict"]], on="variant")
table.rename(columns={"p50_ms": "p50 (ms)", "p50_lo_ms": "block min (ms)", "p50_hi_ms": "block max (ms)",
                      "p99_ms": "p99 (ms)", "throughput": "throughput (samples/s)"}).round(3)'''),
    code('''
from workbench import plots
plots.latency_figure(lat)'''),
    code('''
f = bs.to_frame()
f["onnx_bytes"] = [len(r.variant.model.to_bytes()) if r.variant else None for r in bs]
plots.build_figure(f)'''),
    md("""
On a CPU, FP16 often is *not* faster (few FP16 kernels); INT8 uses integer kernels. On a GPU with
TensorRT the picture changes — the same cells run there.

The whole flow (builds → latency → per-layer → accuracy) is one call, and the dashboard runs the same
functions behind its buttons:"""),
    code('''
wbx = wb.Workbench(MODEL, data=TEST, labels="label", calib=CALIB, backend=backend)
wbx'''),
    code('''
wbx.build(background=False)   # what the Build button does; the dashboard shows the code it ran
print(wbx.code.value)'''),
    md("""
### Exercises
1. Build with `backend="tensorrt-rtx"` (TensorRT for RTX builds without a GPU). Which variants build?
2. Build INT8 with `calibration_method="entropy"` via `workbench.precision.make_variant` and compare
   its latency with the min-max variant.
3. Why does the FP16 ONNX file shrink to about half the size, while INT8 does not shrink to a quarter?"""),
])

NOTEBOOKS["05_profile_layers"] = ("Profile layers", [
    md("""
# 05 · Profile layers

End-to-end latency tells *how fast*; per-layer profiles tell *where the time goes*. Profiled runs are
separate from latency runs (profilers add overhead). Each layer maps back to the ONNX nodes it covers,
so layers of different precisions line up by ONNX node."""),
    code(SETUP),
    code('''
from workbench.builds import build_variants
from workbench.data import NpzDataset
from workbench.measure.layers import coverage, profile_layers
from workbench.measure.latency import measure_latency

bs = build_variants(MODEL, ["fp32", "fp16", "int8"], backend, calib=CALIB)
feeds = next(NpzDataset(TEST, bs.model, allow_extra=True).batches(32))
layers = {r.name: profile_layers(r.engine, feeds, iterations=10 if QUICK else 50) for r in bs if r.engine}
layers["digits_cnn-int8"][["layer", "layer_type", "onnx_nodes", "time_ms", "share"]].head(10)'''),
    md("How much of the end-to-end time do the layers explain? (framework overhead is the rest)"),
    code('''
for r in bs:
    if r.engine:
        lat = measure_latency(r.engine, feeds, warmup=5, iterations=ITERS)
        c = coverage(layers[r.name], lat)
        print(f"{r.name:18} layers {c.layers_ms:.3f} ms / end-to-end {c.e2e_ms:.3f} ms = {c.ratio:.0%}")'''),
    code('''
import pandas as pd
from workbench import plots

all_layers = pd.concat(layers.values(), ignore_index=True)
plots.layer_figure(all_layers, top_k=8)'''),
    code('''
plots.op_share_figure(all_layers)'''),
    code('''
order = [n.name for n in bs.model.graph.node]
plots.layer_heatmap(all_layers, order=order)'''),
    md("The per-layer times as a graph overlay:"),
    code('''
from workbench.widgets.graph_view import GraphView
view = GraphView(bs.model, height=560)
view.set_overlay(layers["digits_cnn-fp32"], label="ms", value="time_ms")
view'''),
    md("""
With TensorRT, fused regions appear as one layer (e.g. a Myelin "ForeignNode"); `onnx_nodes` lists every
ONNX node the layer covers.

### Exercises
1. Which op type dominates each precision? Why do QuantizeLinear / DequantizeLinear appear for INT8?
2. Profile `sample_models/transformer_block.onnx` (input `x`, e.g. 8×128×64 via
   `wb.synthetic_inputs(m, "x:8x128x64")`). What share goes to MatMul vs Softmax vs Erf?
3. Increase the batch to 256. Does the coverage ratio go up or down? Why?"""),
])

NOTEBOOKS["06_accuracy_int8_mixed"] = ("Accuracy, INT8 calibration and mixed precision", [
    md("""
# 06 · Accuracy deltas, INT8 calibration and the mixed-precision fix

Every variant is compared with the FP32 reference (ONNX Runtime CPU) over the whole test set:
top-1, cosine similarity, SNR, max error. Layerwise comparison finds *where* the error enters; a
sensitivity search keeps the most sensitive nodes in FP32 until a target is met."""),
    code(SETUP),
    code('''
from workbench.compare import compare_outputs

cmp = compare_outputs(MODEL, ["fp16", "int8"], backend, data=TEST, labels="label", calib=CALIB)
cmp.summary()'''),
    md("## INT8 calibration\nThe calibration data and method set the quantization ranges. Compare min-max with entropy and a tiny calibration set:"),
    code('''
from workbench.precision import make_variant

m = wb.load(MODEL)
variants = [
    make_variant(m, "int8", calib=CALIB, calibration_method="minmax"),
    make_variant(m, "int8", calib=CALIB, calibration_method="entropy"),
    make_variant(m, "int8", calib=CALIB, num_calib=16),
]
for v, label in zip(variants, ["minmax", "entropy", "minmax-16"]):
    v.name = f"digits_cnn-int8-{label}"
cal = compare_outputs(m, variants, backend, data=TEST, labels="label")
s = cal.summary()
s.assign(top1=100 * s.top1).rename(columns={"top1": "top-1 (%)", "top1_delta": "Δ top-1 (points)"})[
    ["variant", "top-1 (%)", "Δ top-1 (points)", "cosine_min", "snr_db_min"]]'''),
    md("## Where does the error enter?\nPer-node error along the topological order (ONNX Runtime CPU, every intermediate tensor):"),
    code('''
from workbench.compare import layerwise
from workbench import plots

lw = layerwise(m, "int8", data=TEST, calib=CALIB, limit=64)
lw[["order", "onnx_node", "op_type", "cosine", "snr_db", "local_noise", "diverged"]]'''),
    code('''
plots.layer_error_figure(lw)'''),
    md("## The mixed-precision fix\nKeep the most sensitive nodes in FP32 until the target is met, then verify on the whole test set:"),
    code('''
from workbench.compare import propose_mixed_precision

mp = propose_mixed_precision(m, "int8", target="snr_db>=40", data=TEST, labels="label", calib=CALIB,
                             backend=backend, max_steps=4, latency_iterations=ITERS)
print("keep in fp32:", mp.keep_nodes)
print(f"snr_db: {mp.baseline_value:.1f} dB (all int8) -> {mp.verified_value:.1f} dB (mixed), met: {mp.met}")
mp.steps'''),
    code('''
mp.latency'''),
    md("## Everything in one report\n`run_flow` runs builds, latency, per-layer and accuracy; `write_report` writes one offline HTML file:"),
    code('''
from workbench.flow import run_flow
from workbench.report import write_report

fr = run_flow(MODEL, "fp32,fp16,int8", backend, data=TEST, labels="label", calib=CALIB,
              iterations=ITERS, layer_iterations=10)
print(fr.summary_text())   # "speed": faster / slower only when every block agrees, else "within noise"
fr.save(OUT / "report-records")
write_report(fr, OUT / "report.html")
plots.pareto_figure(fr.latency, fr.accuracy, configs=fr.variants)'''),
    md("""
The same from a terminal: `workbench report sample_models/digits_cnn.onnx --precision fp32,fp16,int8
--data sample_models/digits_test.npz --labels label --calib sample_models/digits_calib.npz --out report.html`.

### Exercises
1. Try `target="top1_drop<=0"`. How many nodes must stay in FP32?
2. Use `keep_op_types=["Gemm"]` in `make_variant` instead of a search. Compare SNR and latency.
3. Calibrate with the *test* set instead of the calibration set. Why is that a mistake, even if the
   numbers look better?"""),
])


def build(name: str, title: str, cells: list) -> nbformat.NotebookNode:
    for i, c in enumerate(cells):
        c["id"] = f"{name[:2]}-{i:02d}"  # stable ids: regenerating gives the same files
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}, "title": title})
    nbformat.validate(nb)
    return nb


def main(out: Path = HERE) -> list[Path]:
    paths = []
    for name, (title, cells) in NOTEBOOKS.items():
        p = out / f"{name}.ipynb"
        nbformat.write(build(name, title, cells), str(p))
        paths.append(p)
    return paths


if __name__ == "__main__":
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print("wrote", p)
