"""SmoothQuant for the transformer int8 recipe: move activation outliers into the weights before Q/DQ.

Transformer activations (LayerNorm outputs, GELU outputs) have a few channels with values 10-100x the
others; one per-tensor int8 scale then leaves the other channels a handful of levels. SmoothQuant
(Xiao et al., 2023, arXiv:2211.10438) rescales each input channel ``j`` of ``X @ W`` by
``s_j = max|X_j|^a / max|W_j|^(1-a)``: ``X @ W = (X / s) @ (s W)``. The graph gets one ``Mul(X, 1/s)``
per activation tensor (shared by the MatMuls that read it: query/key/value) and the weights are scaled
in place; the model computes the same function in exact arithmetic, and both factors quantize better.

Only MatMuls with a constant 2-D weight ``[K, N]`` read by nothing else are smoothed; other readers of
``X`` (the residual Add) keep reading the original tensor.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def smooth_groups(proto: onnx.ModelProto, nodes: Iterable[str] | None = None) -> dict[str, list[onnx.NodeProto]]:
    """Activation tensor → the MatMul nodes reading it as input A with a private constant 2-D weight."""
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    uses: dict[str, int] = {}
    for n in g.node:
        for x in n.input:
            uses[x] = uses.get(x, 0) + 1
    allowed = set(nodes) if nodes is not None else None
    groups: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        if n.op_type != "MatMul" or len(n.input) != 2 or (allowed is not None and n.name not in allowed):
            continue
        a, w = n.input
        if a in inits or w not in inits or uses.get(w, 0) != 1:
            continue
        t = inits[w]
        if len(t.dims) != 2 or t.data_type != TensorProto.FLOAT:
            continue
        groups.setdefault(a, []).append(n)
    return groups


def activation_channel_max(proto: onnx.ModelProto, tensors: list[str], batches) -> dict[str, np.ndarray]:
    """Per-channel (last axis) max |x| of ``tensors`` over the calibration ``batches`` (ONNX Runtime CPU)."""
    import onnxruntime as ort

    aug = onnx.ModelProto()
    aug.CopyFrom(proto)
    have = {o.name for o in aug.graph.output}
    for t in tensors:
        if t not in have:
            aug.graph.output.append(helper.make_empty_tensor_value_info(t))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(aug.SerializeToString(), so, providers=["CPUExecutionProvider"])
    out: dict[str, np.ndarray] = {}
    for feeds in batches:
        vals = sess.run(tensors, feeds)
        for t, v in zip(tensors, vals):
            v = np.abs(np.asarray(v, dtype=np.float32))
            m = v.reshape(-1, v.shape[-1]).max(axis=0) if v.ndim >= 1 and v.size else None
            if m is None:
                continue
            out[t] = m if t not in out else np.maximum(out[t], m)
    return out


def apply_smoothquant(proto: onnx.ModelProto, batches, *, alpha: float = 0.5,
                      nodes: Iterable[str] | None = None) -> dict:
    """Smooth ``proto`` in place; returns a JSON-able record (alpha, tensors smoothed, MatMuls, max scale)."""
    groups = smooth_groups(proto, nodes)
    if not groups:
        return {"applied": False, "reason": "no MatMul with a private constant 2-D weight"}
    amax = activation_channel_max(proto, list(groups), batches)
    inits = {i.name: i for i in proto.graph.initializer}
    g = proto.graph
    new_nodes: dict[str, onnx.NodeProto] = {}
    smoothed: list[str] = []
    scale_max = 1.0
    for x, mms in groups.items():
        a = amax.get(x)
        ws = [numpy_helper.to_array(inits[m.input[1]]) for m in mms]
        if a is None or any(w.shape[0] != a.shape[0] for w in ws):
            continue
        wmax = np.max(np.stack([np.abs(w).max(axis=1) for w in ws]), axis=0)
        s = np.power(np.maximum(a, 1e-5), alpha) / np.power(np.maximum(wmax, 1e-5), 1.0 - alpha)
        s = np.clip(s, 1e-4, 1e4).astype(np.float32)
        scale_max = max(scale_max, float(s.max() / max(s.min(), 1e-12)))
        for m, w in zip(mms, ws):
            inits[m.input[1]].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), m.input[1]))
        inv_name = f"{x}__wb_smooth_inv"
        out_name = f"{x}__wb_smoothed"
        g.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), inv_name))
        mul = helper.make_node("Mul", [x, inv_name], [out_name], name=f"{x}__wb_smooth_mul")
        new_nodes[x] = mul
        for m in mms:
            m.input[0] = out_name
        smoothed.extend(m.name for m in mms)
    # Insert each Mul right before the first MatMul reading it (keeps the order topological).
    ordered: list[onnx.NodeProto] = []
    placed: set[str] = set()
    for n in g.node:
        if n.op_type == "MatMul" and n.input and n.input[0].endswith("__wb_smoothed"):
            src = n.input[0][: -len("__wb_smoothed")]
            if src in new_nodes and src not in placed:
                ordered.append(new_nodes[src])
                placed.add(src)
        ordered.append(n)
    del g.node[:]
    g.node.extend(ordered)
    return {"applied": True, "alpha": alpha, "tensors": len(new_nodes), "matmuls": smoothed,
            "max_channel_scale_ratio": round(scale_max, 3),
            "method": "SmoothQuant (arXiv:2211.10438): X @ W = (X / s) @ (s W), s_j = max|X_j|^a / max|W_j|^(1-a)"}
