"""Layerwise comparison: intermediate tensors of a variant against the FP32 reference, node by node.

Both the reference (the original model) and the variant are copied with the intermediate tensors
added as graph outputs (types from ONNX shape inference), run on ONNX Runtime CPU over the same
feeds, and compared tensor by tensor with :mod:`workbench.compare.metrics` (float64 accumulation
over all batches). Rows follow the topological order of the ORIGINAL model's nodes.

Matching rules (original tensor name ``t`` → tensor in the variant), tried in order:

1. ``exact``: ``t`` itself. This covers unchanged tensors, FP16/BF16 tensors (compared after a cast
   to float64), tensors re-created by a ``Cast`` at a keep-list boundary or a kept graph output
   (onnxconverter-common renames the producer's output to ``<node>_cast_to_<t>`` /
   ``<node>_output_cast_<i>`` and a Cast writes ``t`` again), and Q/DQ graphs (ONNX Runtime's
   ``quantize_static`` keeps ``t`` as the float output of the producing node and adds
   ``t_QuantizeLinear_Output`` → ``t_DequantizeLinear_Output`` after it).
2. ``node-output``: output number ``i`` of the variant node with the same *name* as ``t``'s producer,
   when ``t`` was renamed: onnxconverter-common names the output of a node kept in fp32 (node block
   list) ``<node>_output_cast_<i>``, and cleanup of redundant Casts can leave that name in place.
3. ``dequantized``: ``t_DequantizeLinear_Output`` when a recipe dropped ``t`` itself.

Anything else is not matched and left out of the table (the node is listed in
``df.attrs["unmatched"]``).

Tensors that do not depend on a graph input (constants, weights, shape arithmetic) and non-float
tensors are skipped. Nodes with no name are labelled ``<op_type>#<index>``.

Caveat: marking a tensor as an output stops a runtime from fusing the nodes around it. ONNX Runtime
fuses Q/DQ pairs into QLinear* kernels at its extended optimization level, so these sessions run with
``optimization="disable"`` by default (Q/DQ then executes as explicit quantize/dequantize in float),
and the final outputs can differ slightly from a fully optimized session. TensorRT fuses much more;
see :func:`mark_debug_tensors` for the gentler TensorRT 10+ path.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np
import onnx
import pandas as pd

from ..data import as_feed_batches, cast_feeds, default_batch
from ..errors import DataError, UnsupportedError, UsageError
from ..model import Model, load
from ..variant import Variant
from .metrics import METRICS, ErrorAccumulator

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                onnx.TensorProto.BFLOAT16}
#: metric → (default threshold, True when larger is better)
THRESHOLDS = {"cosine": (0.999, True), "snr_db": (30.0, True), "max_abs": (None, False),
              "mean_abs": (None, False), "max_rel": (None, False), "rmse": (None, False)}
_OPT = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
        "all": "ORT_ENABLE_ALL"}


def node_label(node: onnx.NodeProto, index: int) -> str:
    """The node's name, or ``<op_type>#<index>`` for unnamed nodes."""
    return node.name or f"{node.op_type}#{index}"


def dynamic_tensors(graph: onnx.GraphProto) -> set[str]:
    """Names of the tensors that depend on at least one graph input (not constants or weights)."""
    inits = {i.name for i in graph.initializer}
    live = {i.name for i in graph.input if i.name not in inits}
    for node in graph.node:  # ONNX requires topological node order
        if any(i in live for i in node.input if i):
            live.update(o for o in node.output if o)
    return live


def tensor_types(proto: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor ONNX shape inference can type."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - fall back to what the model declares
        inferred = proto
    g = inferred.graph
    out = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            out[vi.name] = vi.type.tensor_type.elem_type
    return out


def match_tensor(name: str, available: set[str], producer: tuple[str, int] | None = None,
                 variant_nodes: Mapping[str, onnx.NodeProto] | None = None) -> tuple[str, str] | None:
    """``(variant tensor, rule)`` for original tensor ``name`` (rules in the module docstring).

    ``producer``: (node name, output index) of ``name`` in the original; ``variant_nodes``: the variant's
    nodes by name."""
    if name in available:
        return name, "exact"
    if producer and variant_nodes and producer[0] in variant_nodes:
        outs = variant_nodes[producer[0]].output
        if producer[1] < len(outs) and outs[producer[1]]:
            return outs[producer[1]], "node-output"
    dq = f"{name}_DequantizeLinear_Output"
    if dq in available:
        return dq, "dequantized"
    return None


def expose(proto: onnx.ModelProto, names: Iterable[str], types: Mapping[str, int]) -> onnx.ModelProto:
    """A copy of ``proto`` whose graph outputs also include ``names`` (typed from ``types``)."""
    p = onnx.ModelProto()
    p.CopyFrom(proto)
    have = {o.name for o in p.graph.output}
    for n in names:
        if n not in have:
            p.graph.output.append(onnx.helper.make_tensor_value_info(n, types.get(n, 0), None))
            have.add(n)
    return p


def _session(proto: onnx.ModelProto, optimization: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT[optimization])
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(proto.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:  # e.g. bf16 Conv: ORT's CPU provider has no kernel for it
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise UnsupportedError(f"layerwise comparison runs on ONNX Runtime CPU, which cannot load this model: {last}",
                               hint="layerwise works for variants ORT CPU runs (fp32, fp16, int8)") from e


def _as_variant(model: Model, variant: Any, calib: Any, progress: bool) -> Variant:
    if isinstance(variant, Variant):
        return variant
    if isinstance(variant, Model):
        return Variant(model=variant, precision="custom", recipe={"tool": "user"})
    if isinstance(variant, str):
        from ..precision import make_variant

        return make_variant(model, variant, calib=calib, progress=progress)
    raise UsageError(f"variant must be a Variant, a Model or a precision name, not {type(variant).__name__}")


def layerwise(model: Any, variant: Any, *, data: Any = None, feeds: Mapping[str, np.ndarray] | None = None,
              calib: Any = None, shapes: Any = None, threshold: float | None = None, metric: str = "cosine",
              limit: int | None = 64, batch_size: int | None = None, optimization: str = "disable",
              progress: bool = True) -> pd.DataFrame:
    """Per-node error of ``variant`` against ``model`` (FP32, ONNX Runtime CPU).

    Args:
        model: the original model (path or :class:`~workbench.Model`).
        variant: a :class:`~workbench.Variant`, a derived :class:`~workbench.Model`, or a precision name
            (built with ``make_variant(model, precision, calib=calib)``).
        data: ``.npz`` path, :class:`~workbench.NpzDataset` or iterable of feed dicts; ``feeds``: one feed
            dict. Neither: one synthetic batch (``shapes`` for dynamic dims).
        threshold / metric: a node *diverges* when its ``metric`` is worse than ``threshold`` (cosine
            below 0.999 and snr_db below 30 dB by default; error metrics need an explicit threshold).
        limit: at most this many samples from an ``.npz`` dataset.
        optimization: ONNX Runtime graph optimization level for both sessions (``disable`` keeps every
            marked tensor and every Q/DQ node as written).

    Returns a DataFrame, one row per compared tensor in topological order, columns ``variant,
    precision, order, node, op_type, tensor, variant_tensor, match`` + the metrics + ``noise_ratio``
    (``sum d^2 / sum ref^2``), ``local_noise`` (noise_ratio minus the largest noise_ratio among the
    node's compared inputs, >= 0: the error this node adds), ``diverged`` and ``first_divergent``.
    ``df.attrs["first_divergent"]`` is the first diverging node's name (None when none diverges).
    """
    if metric not in THRESHOLDS:
        raise UsageError(f"unknown layerwise metric {metric!r}; choose from {', '.join(THRESHOLDS)}")
    if optimization not in _OPT:
        raise UsageError(f"unknown optimization level {optimization!r}; choose from {', '.join(_OPT)}")
    default, higher_better = THRESHOLDS[metric]
    threshold = default if threshold is None else float(threshold)
    if threshold is None:
        raise UsageError(f"layerwise metric {metric!r} needs an explicit threshold")
    if metric == "cosine" and not -1.0 <= threshold <= 1.0:
        raise UsageError(f"cosine threshold must lie in [-1, 1], got {threshold:g}", hint="e.g. 0.999")
    model = model if isinstance(model, Model) else load(model)
    var = _as_variant(model, variant, calib, progress)

    ref_proto = model.proto_with_data()
    var_proto = var.model.proto_with_data()
    ref_types = tensor_types(ref_proto)
    var_types = tensor_types(var_proto)
    live = dynamic_tensors(ref_proto.graph)
    var_tensors = {o for n in var_proto.graph.node for o in n.output if o} | {i.name for i in var_proto.graph.input}
    var_nodes = {n.name: n for n in var_proto.graph.node if n.name}

    rows: list[dict] = []
    unmatched: list[str] = []
    for idx, node in enumerate(ref_proto.graph.node):
        for k, t in enumerate(node.output):
            if not t or t not in live or ref_types.get(t) not in _FLOAT_TYPES:
                continue
            m = match_tensor(t, var_tensors, (node.name, k) if node.name else None, var_nodes)
            if m is None:
                unmatched.append(node_label(node, idx))
                continue
            if var_types.get(m[0], onnx.TensorProto.FLOAT) not in _FLOAT_TYPES:
                continue
            rows.append({"order": idx, "node": node_label(node, idx), "op_type": node.op_type, "tensor": t,
                         "variant_tensor": m[0], "match": m[1],
                         "inputs": [i for i in node.input if i in live]})
    if not rows:
        raise DataError(f"no intermediate tensor of {model.name} could be matched in variant {var.name}")

    ref_sess = _session(expose(ref_proto, [r["tensor"] for r in rows], ref_types), optimization)
    var_sess = _session(expose(var_proto, [r["variant_tensor"] for r in rows], var_types), optimization)
    ref_names = [o.name for o in ref_sess.get_outputs()]
    var_names = [o.name for o in var_sess.get_outputs()]
    accs = [ErrorAccumulator() for _ in rows]

    if feeds is not None:
        batches = [feeds]
    else:
        batches = as_feed_batches(model, data, batch_size=default_batch(model, batch_size), limit=limit,
                                  shapes=shapes)
    from tqdm.auto import tqdm

    n_batches = 0
    for f in tqdm(batches, desc=f"layerwise {var.name}", disable=not progress, leave=False):
        ref_out = dict(zip(ref_names, ref_sess.run(None, cast_feeds(f, model))))
        var_out = dict(zip(var_names, var_sess.run(None, cast_feeds(f, var.model))))
        for r, acc in zip(rows, accs):
            a, b = ref_out[r["tensor"]], var_out[r["variant_tensor"]]
            if np.shape(a) != np.shape(b):
                raise DataError(f"tensor {r['tensor']!r} has shape {np.shape(a)} in the reference but "
                                f"{np.shape(b)} in {var.name} ({r['variant_tensor']!r})")
            acc.update(a, b)
        n_batches += 1
    if n_batches == 0:
        raise DataError("layerwise got no data batches")

    noise = {}
    first = None
    for r, acc in zip(rows, accs):
        res = acc.result()
        r.update(res)
        r["noise_ratio"] = acc.noise_ratio
        noise[r["tensor"]] = acc.noise_ratio
        upstream = [noise[i] for i in r.pop("inputs") if i in noise]
        r["local_noise"] = max(0.0, acc.noise_ratio - max(upstream, default=0.0))
        v = res[metric]
        bad = (v < threshold) if higher_better else (v > threshold)
        r["diverged"] = bool(bad or res["nan_count"] or res["inf_count"] or (isinstance(v, float) and math.isnan(v)))
        if r["diverged"] and first is None:
            first = r["node"]
    for r in rows:
        r["first_divergent"] = r["node"] == first
    cols = ["variant", "precision", "order", "node", "op_type", "tensor", "variant_tensor", "match",
            *[m for m in METRICS if m != "passed"], "noise_ratio", "local_noise", "diverged", "first_divergent"]
    df = pd.DataFrame([{"variant": var.name, "precision": var.precision, **r} for r in rows], columns=cols)
    df.attrs.update({"first_divergent": first, "metric": metric, "threshold": threshold,
                     "variant": var.name, "optimization": optimization, "unmatched": unmatched})
    return df


def layerwise_tidy(df: pd.DataFrame) -> pd.DataFrame:
    """The layerwise frame in the tidy layout ``variant, node, tensor, metric, value``."""
    metrics = [m for m in METRICS if m != "passed" and m in df.columns] + ["noise_ratio", "local_noise"]
    return df.melt(id_vars=["variant", "node", "tensor"], value_vars=metrics, var_name="metric",
                   value_name="value")


def mark_debug_tensors(network: Any, tensor_names: Iterable[str]) -> list[str]:
    """Flag ``tensor_names`` of a TensorRT ``INetworkDefinition`` as debug tensors (TensorRT 10+,
    TensorRT-RTX); returns the names found and marked, in layer order.

    Marking intermediate tensors as network *outputs* changes what TensorRT fuses and can hide the very
    error being hunted. Debug tensors (``network.mark_debug(tensor)``, before building) are the gentler
    path. At run time an ``IDebugListener`` subclass, set with ``context.set_debug_listener(listener)``,
    receives each flagged tensor through ``process_debug_tensor(addr, location, type, shape, name,
    stream)`` once ``context.set_tensor_debug_state(name, True)`` (or ``set_all_tensors_debug_state``)
    is on; the buffer is valid only during the callback, so the listener copies it to the host. That
    run-time half needs a GPU and lives with the TensorRT backend; it is not exercised here. Even a
    debug tensor can constrain fusion: TensorRT must materialize it.
    """
    wanted = set(tensor_names)
    marked: list[str] = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            t = layer.get_output(j)
            if t is not None and t.name in wanted and t.name not in marked and network.mark_debug(t):
                marked.append(t.name)  # mark_debug returns False when TensorRT refuses the tensor
    return marked
