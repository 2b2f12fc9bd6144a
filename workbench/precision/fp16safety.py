"""fp16 safety check: which nodes of an fp32 model are known fp16 traps, and what the fp16 recipe does about each.

    from workbench.precision.fp16safety import fp16_safety
    table = fp16_safety("model.onnx")            # DataFrame, one row per finding
    view.set_overlay(table, label="fp16 risk")  # GraphView: column ``node`` + ``value``

Checks (from TensorRT / ONNX Runtime issue trackers; docs/precision.md):

=================  ===============================================================  ==========================
check              pattern                                                          recipe default action
=================  ===============================================================  ==========================
norm_variance      ``Pow(x,2)``/``Mul(x,x)`` → ``ReduceMean`` → ``Add`` eps → ``Sqrt``    keep fp32
                   (LayerNorm/RMSNorm exported op by op): the square overflows
                   fp16 once activations pass 256
layernorm          ``LayerNormalization`` op                                        keep fp32
mask_constant      a constant whose out-of-range values are all very negative       clamp to -10000
                   (``-10000`` fits, ``finfo(float32).min`` / ``-1e9`` / ``-inf``
                   do not): an attention mask
range_constant     another constant outside fp16 range (``|x| > 65504``) or         keep its readers fp32
                   mostly below fp16's smallest subnormal
pow                ``Pow`` with an exponent > 2 or not constant, outside a norm     converted (flagged)
reduce_sum         ``ReduceSum``/``ReduceMean``/``ReduceL2`` outside a norm: a long   converted (flagged)
                   sum can pass 65504
softmax            ``Softmax``/``LogSoftmax``: fine in fp16 unless its input is     converted
                   masked with an out-of-range constant (see mask_constant)
exp                ``Exp`` of an unbounded input overflows fp16 above 11.1          converted (flagged)
=================  ===============================================================  ==========================

``value`` (for overlays): 3 = a risk the default recipe leaves in fp16, 2 = handled by the recipe's
default action (kept fp32 / clamped), 1 = information.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

FP16_MAX = 65504.0
#: The value an attention-mask constant is clamped to: exp(-1e4) is 0 in fp16 and fp32 alike, and adding
#: logits up to +-55504 to it cannot overflow fp16 (finfo(float16).min could: -65504 - 17 rounds to -inf).
FP16_SAFE_MASK = -1.0e4

COLUMNS = ["onnx_node", "op_type", "check", "value", "severity", "action", "detail"]
_SEVERITY = {3: "risk", 2: "handled", 1: "info"}
#: ops through which a mask constant flows to the attention scores
_MASK_OPS = {"Add", "Sub", "Where", "Mul", "Min", "Max", "Expand", "Reshape", "Unsqueeze", "Squeeze", "Cast",
             "Concat", "Tile", "Slice", "Gather", "Transpose", "Identity", "Softmax", "ConstantOfShape"}


def _constants(g: onnx.GraphProto) -> dict[str, tuple[np.ndarray, str | None]]:
    """tensor name → (value, Constant node name or None for an initializer); float32 only."""
    out: dict[str, tuple[np.ndarray, str | None]] = {}
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT:
            out[t.name] = (numpy_helper.to_array(t), None)
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                    out[n.output[0]] = (numpy_helper.to_array(a.t), n.name)
        elif n.op_type == "ConstantOfShape":
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                    out[n.output[0]] = (numpy_helper.to_array(a.t), n.name)
    return out


def mask_like(values: np.ndarray) -> bool:
    """Whether every fp16-out-of-range value of ``values`` is very negative (<= -65504 or -inf) and at least
    one is: the shape of an attention mask's fill value."""
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        return False
    bad = ~(np.abs(a) <= FP16_MAX)  # NaN counts as bad
    if not bad.any():
        return False
    return bool(np.all(a[bad] <= -FP16_MAX)) and not np.isnan(a).any()


def mask_constants(proto: onnx.ModelProto) -> dict[str, dict[str, Any]]:
    """Mask-like constants read only by mask-flow ops: tensor name → {min, readers, node (Constant) or None}."""
    g = proto.graph
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for x in n.input:
            readers.setdefault(x, []).append(n)
    out: dict[str, dict[str, Any]] = {}
    for name, (val, node) in _constants(g).items():
        if not mask_like(val):
            continue
        rs = readers.get(name, [])
        if not rs or any(r.op_type not in _MASK_OPS for r in rs):
            continue
        out[name] = {"min": float(np.min(val)), "readers": [r.name for r in rs], "node": node}
    return out


def clamp_mask_constants(proto: onnx.ModelProto, value: float = FP16_SAFE_MASK) -> dict[str, dict[str, Any]]:
    """Clamp every :func:`mask_constants` value below ``value`` to ``value`` (in place). Returns what changed."""
    found = mask_constants(proto)
    if not found:
        return {}
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    attrs = {n.output[0]: a for n in g.node if n.op_type in ("Constant", "ConstantOfShape")
             for a in n.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR}
    for name, info in found.items():
        t = inits.get(name)
        t = t if t is not None else attrs[name].t
        a = numpy_helper.to_array(t).astype(np.float32)
        clamped = np.where(a < value, np.float32(value), a).astype(np.float32)
        t.CopyFrom(numpy_helper.from_array(clamped, t.name))
        info["clamped_to"] = value
    return found


def fp16_safety(model: Any, *, underflow_fraction: float = 0.01):
    """A DataFrame of fp16 findings, one row per (node, check): ``node, op_type, check, value, severity,
    action, detail``. ``action`` is what ``make_variant(model, "fp16")`` does by default; ``value`` is the
    overlay score (3 risk left in fp16, 2 handled, 1 info) for ``GraphView.set_overlay(table)``."""
    import pandas as pd

    from ..model import load
    from .floating import EXTRA_FP32_OPS, norm_variance_nodes, tensor_problem

    m = load(model)
    proto = m.proto
    g = proto.graph
    rows: list[dict] = []

    def add(node: onnx.NodeProto, check: str, value: int, action: str, detail: str) -> None:
        rows.append({"onnx_node": node.name or (node.output[0] if node.output else node.op_type), "op_type": node.op_type,
                     "check": check, "value": value, "severity": _SEVERITY[value], "action": action, "detail": detail})

    by_name = {n.name: n for n in g.node}
    norm = norm_variance_nodes(proto)
    for name, why in norm.items():
        if name in by_name:
            add(by_name[name], "norm_variance", 2, "keep fp32", why)
    for n in g.node:
        if n.op_type in EXTRA_FP32_OPS:
            add(n, "layernorm", 2, "keep fp32", "normalization computes a variance (x^2) that overflows fp16 above 256")
    masks = mask_constants(proto)
    consts = _constants(g)
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for x in n.input:
            readers.setdefault(x, []).append(n)
    for name, info in masks.items():
        for r in readers.get(name, []):
            add(r, "mask_constant", 2, f"clamp {name!r} to {FP16_SAFE_MASK:g}",
                f"reads {name!r} (min {info['min']:.3g}; fp16 min is -65504): an attention-mask fill value")
    for name, (val, node) in consts.items():
        if name in masks:
            continue
        t = numpy_helper.from_array(np.asarray(val, dtype=np.float32), name)
        why = tensor_problem(t, underflow_fraction)
        if why:
            for r in readers.get(name, []):
                add(r, "range_constant", 2, "keep fp32", f"reads {name!r}: {why}")
    for n in g.node:
        if n.name in norm:
            continue
        if n.op_type == "Pow":
            e = consts.get(n.input[1]) if len(n.input) > 1 else None
            exp = float(np.asarray(e[0]).ravel()[0]) if e is not None and np.asarray(e[0]).size == 1 else None
            if exp is None or exp > 2:
                add(n, "pow", 3, "converted to fp16 (keep_nodes=[...] to keep fp32)",
                    f"x^{exp if exp is not None else '(non-constant)'} overflows fp16 once |x| > "
                    + (f"{FP16_MAX ** (1 / exp):.3g}" if exp else "?"))
            elif exp == 2:
                add(n, "pow", 3, "converted to fp16 (keep_nodes=[...] to keep fp32)",
                    "x^2 outside a normalization: overflows fp16 once |x| > 256")
        elif n.op_type in ("ReduceSumSquare", "ReduceL2"):
            add(n, "reduce_sum", 3, "converted to fp16 (keep_nodes=[...] to keep fp32)",
                "a sum of squares: overflows fp16 once the sum passes 65504 (one element with |x| > 256 is enough)")
        elif n.op_type in ("ReduceSum", "ReduceMean"):
            add(n, "reduce_sum", 1, "converted to fp16", "a long sum can pass 65504 in fp16 (backends usually accumulate in fp32)")
        elif n.op_type in ("Softmax", "LogSoftmax"):
            masked = any(x in masks for x in _upstream_consts(g, n, depth=4))
            add(n, "softmax", 2 if masked else 1, "converted to fp16" + (" (mask clamped)" if masked else ""),
                "fp16-safe when its input is bounded" + ("; its input is masked with an out-of-range constant"
                                                         if masked else ""))
        elif n.op_type == "Exp":
            add(n, "exp", 3, "converted to fp16 (keep_nodes=[...] to keep fp32)", "exp(x) overflows fp16 for x > 11.09")
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs["legend"] = {"3": "risk left in fp16", "2": "handled by the fp16 recipe", "1": "information"}
    return df


def _upstream_consts(g: onnx.GraphProto, node: onnx.NodeProto, depth: int) -> set[str]:
    producer = {o: n for n in g.node for o in n.output}
    seen: set[str] = set()
    frontier = list(node.input)
    for _ in range(depth):
        nxt = []
        for x in frontier:
            if x in seen:
                continue
            seen.add(x)
            p = producer.get(x)
            if p is not None:
                nxt.extend(p.input)
        frontier = nxt
    return seen | set(frontier)


def fp16_safety_overlay(model: Any) -> dict[str, float]:
    """node name → highest overlay score (3 risk, 2 handled, 1 info) for ``GraphView.set_overlay``."""
    df = fp16_safety(model)
    return {str(k): float(v) for k, v in df.groupby("onnx_node")["value"].max().items()} if len(df) else {}


def fp16_safety_summary(table) -> dict[str, Any]:
    """Counts per check and severity (for inspect / report / recipe records)."""
    if table is None or not len(table):
        return {"findings": 0}
    return {"findings": int(len(table)), "by_check": {k: int(v) for k, v in table.groupby("check").size().items()},
            "risks_left_in_fp16": sorted(table[table.value == 3].onnx_node.unique().tolist()),
            "handled": int((table.value == 2).sum())}
