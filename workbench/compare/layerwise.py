"""Layerwise comparison: intermediate tensors of a variant against the FP32 reference, node by node.

Two ways to find where a variant goes wrong:

* :func:`layerwise` (full scan): both graphs are copied with their intermediate tensors added as graph
  outputs, run on ONNX Runtime CPU over the same feeds, and compared tensor by tensor. Rows follow the
  topological order of the ORIGINAL model's nodes.
* :func:`first_divergence` (bisection): the graphs are *cut* at one candidate tensor at a time (the
  cut model's only output is that tensor), run on any backend, and the first diverging tensor is found
  in about ``log2(n) + 1`` runs, holding one tensor pair at a time.

Streaming and memory
--------------------
Metrics accumulate per batch in float64 (:class:`~workbench.compare.metrics.ErrorAccumulator`: sums,
dot products, maxima), so activations are never held for more than one batch, and each tensor pair is
folded in chunks of :data:`CHUNK` elements (float64 temporaries stay small). Before running, the bytes
of every compared tensor for one batch (reference + variant) are estimated from ONNX shape inference at
the batch's real input shapes; when they exceed ``memory_budget`` (default 2 GB), the tensors are
split into groups (in topological order) and compared in several passes over the data, each pass with
sessions exposing only its group. Metrics of grouped passes equal those of one pass (same sums). The
result records the number of passes, the estimate and the process's sampled peak RSS.

Matching (original tensor ``t`` → tensor in the variant)
--------------------------------------------------------
Name rules first (over the whole graph), then structure (in topological order):

1. ``recorded``: ``tensor_map[t]`` given by the caller or recorded by the recipe
   (``variant.recipe["tensor_map"]``).
2. ``exact``: ``t`` itself: unchanged tensors, fp16/bf16 tensors (compared after a cast to float64),
   tensors re-created by a ``Cast`` at a keep-list boundary, and ORT QDQ graphs (``t`` stays the float
   output of its producer; ``t_QuantizeLinear_Output`` → ``t_DequantizeLinear_Output`` follow).
3. ``dequantized``: ``t_DequantizeLinear_Output`` when a recipe dropped ``t`` itself.
4. ``node-output``: output ``i`` of the variant node with the same name *and op type* as ``t``'s
   producer (onnxconverter-common renames the outputs of nodes kept in fp32 to ``<node>_output_cast_<i>``).
5. ``structural``: the variant node with the same op type whose inputs are the matched images of the
   reference node's inputs (looking through ``Cast``/``QuantizeLinear``/``DequantizeLinear``/``Identity``),
   when exactly one such node exists: this pairs tensors that pre-processing (ORT's optimizer inside
   ``quant_pre_process``) renamed.

A candidate whose shape differs from the reference's (ONNX shape inference, then the real arrays of the
first batch) is rejected: an optimizer that moved a Transpose through a ReduceMean leaves a tensor of
the same name holding a transposed layout. A variant tensor is claimed at most once (a Conv+BN pair
fused by pre-processing leaves the Conv's pre-BN output without a counterpart instead of pairing it
with the fused result). Tensors that cannot be paired are listed in ``df.attrs["unmatched"]`` with the
reason, never fatal; tensors that do not depend on a graph input (constants, weights, shape arithmetic)
and non-float tensors are *skipped* (``df.attrs["skipped"]``, counted by reason).

Caveat: marking a tensor as an output stops a runtime from fusing the nodes around it. ONNX Runtime
fuses Q/DQ pairs into QLinear* kernels at its extended optimization level, so these sessions run with
``optimization="disable"`` by default (Q/DQ then executes as explicit quantize/dequantize in float),
and the final outputs can differ slightly from a fully optimized session. TensorRT fuses much more;
see :func:`mark_debug_tensors` for the gentler TensorRT 10+ path, and :func:`first_divergence`, which
only ever asks a backend for its graph outputs.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import onnx
import pandas as pd

from ..data import NpzDataset, as_feed_batches, cast_feeds, default_batch, feeds_batch, input_specs
from ..errors import BackendUnavailable, DataError, RunError, UnsupportedError, UsageError
from ..logs import captures_native_log
from ..model import Model, load
from ..variant import Variant
from ..backends.trt_runtime import mark_debug_tensors  # noqa: F401 - re-exported (one implementation)
from .metrics import METRICS, ErrorAccumulator

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                onnx.TensorProto.BFLOAT16}
_ITEMSIZE = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.DOUBLE: 8,
             onnx.TensorProto.BFLOAT16: 2}
#: metric → (default threshold, True when larger is better)
THRESHOLDS = {"cosine": (0.999, True), "snr_db": (30.0, True), "max_abs": (None, False),
              "mean_abs": (None, False), "max_rel": (None, False), "rmse": (None, False)}
_OPT = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
        "all": "ORT_ENABLE_ALL"}
#: Default memory budget for the tensors of one batch (reference + variant), bytes.
DEFAULT_MEMORY_BUDGET = 2 * 1024 ** 3
#: Elements folded into the float64 accumulators at a time (bounds the metric temporaries to ~100 MB).
CHUNK = 1 << 21
#: Ops a recipe inserts that pass a tensor's value through (structural matching looks through them).
_PASSTHROUGH = {"Cast", "QuantizeLinear", "DequantizeLinear", "Identity"}
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024 ** 2, "mb": 1024 ** 2,
               "mib": 1024 ** 2, "g": 1024 ** 3, "gb": 1024 ** 3, "gib": 1024 ** 3}


def parse_bytes(text: str | int | float) -> int:
    """``"2GB"``, ``"512M"``, ``"1.5g"`` or a number of bytes → bytes (``UsageError`` if not positive)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().lower().replace(" ", "")
        num = s.rstrip("abgikmt")
        unit = s[len(num):]
        if unit not in _SIZE_UNITS:
            raise UsageError(f"cannot read memory size {text!r}", hint="e.g. 2GB, 512MB, 1.5g or bytes")
        try:
            value = float(num) * _SIZE_UNITS[unit]
        except ValueError:
            raise UsageError(f"cannot read memory size {text!r}", hint="e.g. 2GB, 512MB, 1.5g or bytes") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"memory budget must be positive, got {text!r}")
    return int(value)


def node_label(node: onnx.NodeProto, index: int) -> str:
    """The node's name, or ``<op_type>#<index>`` for unnamed nodes."""
    return node.name or f"{node.op_type}#{index}"


def dynamic_tensors(graph: onnx.GraphProto) -> set[str]:
    """Names of the tensors that depend on at least one graph input (not constants or weights)."""
    inits = {i.name for i in graph.initializer}
    live = {i.name for i in graph.input if i.name not in inits}
    for node in graph.node:  # ONNX requires topological node order
        if any(i in live for i in node.input if i) or any(i in live for i in _subgraph_refs(node)):
            live.update(o for o in node.output if o)
    return live


def _subgraph_refs(node: onnx.NodeProto) -> set[str]:
    """Outer-scope names a node's subgraphs (If/Loop/Scan bodies) read."""
    out: set[str] = set()
    for a in node.attribute:
        graphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
        for g in graphs:
            if not g.node:
                continue
            local = {i.name for i in g.input} | {i.name for i in g.initializer}
            for n in g.node:
                out.update(i for i in n.input if i and i not in local)
                out.update(i for i in _subgraph_refs(n) if i not in local)
                local.update(n.output)
    return out


def _infer(proto: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None) -> onnx.ModelProto:
    """ONNX shape inference, with the graph inputs pinned to ``input_shapes`` when given."""
    p = proto
    if input_shapes:
        p = onnx.ModelProto()
        p.CopyFrom(proto)
        del p.graph.value_info[:]
        for i in p.graph.input:
            if i.name in input_shapes and i.type.HasField("tensor_type"):
                dims = i.type.tensor_type.shape.dim
                shape = list(input_shapes[i.name])
                if len(dims) == len(shape):
                    for d, v in zip(dims, shape):
                        d.Clear()
                        d.dim_value = int(v)
    try:
        return onnx.shape_inference.infer_shapes(p)
    except Exception:  # noqa: BLE001 - fall back to what the model declares
        return p


def _types_and_shapes(inferred: onnx.ModelProto) -> tuple[dict[str, int], dict[str, tuple | None]]:
    g = inferred.graph
    types, shapes = {}, {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        if not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        if tt.elem_type:
            types[vi.name] = tt.elem_type
        if tt.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
    return types, shapes


def tensor_types(proto: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor ONNX shape inference can type."""
    return _types_and_shapes(_infer(proto))[0]


def _shapes_conflict(a: tuple | None, b: tuple | None) -> bool:
    if a is None or b is None:
        return False
    if len(a) != len(b):
        return True
    return any(x is not None and y is not None and x != y for x, y in zip(a, b))


def _fmt_shape(s) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in s) + ")" if s is not None else "?"


def match_tensor(name: str, available: set[str], producer: tuple[str, int] | None = None,
                 variant_nodes: Mapping[str, onnx.NodeProto] | None = None,
                 op_type: str | None = None) -> tuple[str, str] | None:
    """``(variant tensor, rule)`` for original tensor ``name`` by the name rules ``exact``,
    ``dequantized`` and ``node-output`` (module docstring). ``producer``: (node name, output index) of
    ``name`` in the original; ``variant_nodes``: the variant's nodes by name; ``op_type``: the
    producer's op type (``node-output`` then needs the same op type)."""
    if name in available:
        return name, "exact"
    dq = f"{name}_DequantizeLinear_Output"
    if dq in available:
        return dq, "dequantized"
    if producer and variant_nodes and producer[0] in variant_nodes:
        vn = variant_nodes[producer[0]]
        outs = vn.output
        if (op_type is None or vn.op_type == op_type) and producer[1] < len(outs) and outs[producer[1]]:
            return outs[producer[1]], "node-output"
    return None


@dataclass
class TensorPair:
    """One planned comparison: reference tensor ``tensor`` ↔ variant tensor ``variant_tensor``."""

    order: int
    node: str
    op_type: str
    tensor: str
    variant_tensor: str
    match: str
    inputs: list = field(default_factory=list)  # live inputs of the reference node
    ref_type: int = onnx.TensorProto.FLOAT
    var_type: int = onnx.TensorProto.FLOAT
    elements: int | None = None  # per batch, from shape inference at the batch's input shapes


@dataclass
class MatchPlan:
    """Result of :func:`match_tensors`: pairs in topological order, plus what was left out and why."""

    pairs: list[TensorPair]
    unmatched: list[dict]  # {onnx_node, op_type, tensor, reason}
    skipped: dict[str, int]  # reason -> count

    @property
    def counts(self) -> dict[str, int]:
        return {"compared": len(self.pairs), "unmatched": len(self.unmatched),
                "skipped": int(sum(self.skipped.values()))}


def match_tensors(ref_proto: onnx.ModelProto, var_proto: onnx.ModelProto, *,
                  tensor_map: Mapping[str, str] | None = None,
                  input_shapes: Mapping[str, Sequence[int]] | None = None) -> MatchPlan:
    """Pair every input-dependent float tensor of ``ref_proto`` with a tensor of ``var_proto``
    (rules in the module docstring). Never raises for a tensor it cannot pair: it lists it."""
    ref_inf, var_inf = _infer(ref_proto, input_shapes), _infer(var_proto, input_shapes)
    ref_types, ref_shapes = _types_and_shapes(ref_inf)
    var_types, var_shapes = _types_and_shapes(var_inf)
    live = dynamic_tensors(ref_proto.graph)
    vg = var_proto.graph
    var_live = dynamic_tensors(vg)
    var_inputs = {i.name for i in vg.input}
    var_tensors = {o for n in vg.node for o in n.output if o} | var_inputs
    var_nodes = {n.name: n for n in vg.node if n.name}
    var_producer = {o: n for n in vg.node for o in n.output if o}
    tensor_map = dict(tensor_map or {})

    def strip(t: str) -> str:  # look through Cast / Q / DQ / Identity to the value's origin
        seen = 0
        while t in var_producer and var_producer[t].op_type in _PASSTHROUGH and seen < 64:
            t = var_producer[t].input[0]
            seen += 1
        return t

    def check(t: str, vt: str) -> str | None:
        """Why ``vt`` cannot stand for ``t`` (None when it can)."""
        if vt not in var_tensors:
            return f"{vt!r} is not a tensor of the variant"
        vtype = var_types.get(vt, onnx.TensorProto.FLOAT)
        if vtype not in _FLOAT_TYPES:
            return f"variant tensor {vt!r} is not float ({onnx.TensorProto.DataType.Name(vtype)})"
        if _shapes_conflict(ref_shapes.get(t), var_shapes.get(vt)):
            return (f"shape {_fmt_shape(ref_shapes.get(t))} in the reference but {_fmt_shape(var_shapes.get(vt))} "
                    f"in the variant ({vt!r}): a layout change (transpose/reshape) by the recipe")
        return None

    # candidates in topological order
    cands: list[tuple[int, onnx.NodeProto, int, str]] = []
    skipped: dict[str, int] = {}
    for idx, node in enumerate(ref_proto.graph.node):
        for k, t in enumerate(node.output):
            if not t:
                continue
            if t not in live:
                skipped["constant (does not depend on a graph input)"] = skipped.get(
                    "constant (does not depend on a graph input)", 0) + 1
            elif ref_types.get(t) not in _FLOAT_TYPES:
                why = "not a float tensor" if t in ref_types else "type unknown to shape inference"
                skipped[why] = skipped.get(why, 0) + 1
            else:
                cands.append((idx, node, k, t))

    image: dict[str, str] = {i.name: i.name for i in ref_proto.graph.input if i.name in var_inputs}
    chosen: dict[str, tuple[str, str]] = {}
    claimed: set[str] = set()
    reasons: dict[str, str] = {}
    # phase 1: names. Exact names (and recorded pairs) claim their variant tensors over the whole graph
    # first; only then may a same-named node lend its output (a Conv fused with its BatchNorm keeps the
    # Conv's name but writes the BatchNorm's tensor, which the BatchNorm's exact match must keep).
    claimed_by: dict[str, str] = {}

    def taken(vt: str, rule: str) -> str | None:
        if vt not in claimed:
            return None
        if rule == "node-output":
            return (f"the same-named variant node writes {vt!r}, which pairs with {claimed_by[vt]!r}: this node "
                    "was fused with a later one (e.g. Conv+BatchNormalization by pre-processing)")
        return f"{vt!r} already pairs with {claimed_by[vt]!r}"

    def take(t: str, tries: list[tuple[str, str]]) -> None:
        for vt, rule in tries:
            why = check(t, vt) or taken(vt, rule)
            if why is None:
                chosen[t] = (vt, rule)
                claimed.add(vt)
                claimed_by[vt] = t
                image[t] = vt
                return
            reasons[t] = why

    for idx, node, k, t in cands:
        tries = [(tensor_map[t], "recorded")] if t in tensor_map else []
        m = match_tensor(t, var_tensors)  # exact / dequantized
        dq = f"{t}_DequantizeLinear_Output"
        if m and m[1] == "exact" and dq in var_tensors and t in var_producer and \
                var_producer[t].op_type != node.op_type:
            # ORT's quantizer dropped this node (a Relu before an asymmetric uint8 Q: the Q clips) and
            # renamed its input's producer to write t: t holds the pre-activation values, the DQ after it
            # holds what the graph goes on with.
            m = (dq, "dequantized")
        take(t, tries + ([m] if m else []))
    for idx, node, k, t in cands:
        if t in chosen or not node.name:
            continue
        m = match_tensor(t, set(), (node.name, k), var_nodes, node.op_type)  # node-output
        if m is not None:
            take(t, [m])
    # phase 2: structure, in topological order (images of inputs grow as nodes are paired)
    index: dict[tuple, list[onnx.NodeProto]] = {}
    for n in vg.node:
        if n.op_type in _PASSTHROUGH:
            continue
        key = (n.op_type, tuple(strip(i) if i in var_live else None for i in n.input))
        index.setdefault(key, []).append(n)
    for idx, node, k, t in cands:
        if t in chosen:
            continue
        ins = []
        ok = True
        for i in node.input:
            if i in live:
                if i not in image:
                    ok = False
                    break
                ins.append(strip(image[i]))
            else:
                ins.append(None)
        if not ok:
            reasons.setdefault(t, "no variant tensor has this name, and an input of its node is unmatched")
            continue
        found = [n for n in index.get((node.op_type, tuple(ins)), [])
                 if k < len(n.output) and n.output[k] and n.output[k] not in claimed]
        if len(found) == 1:
            vt = found[0].output[k]
            why = check(t, vt)
            if why is None:
                chosen[t] = (vt, "structural")
                claimed.add(vt)
                claimed_by[vt] = t
                image[t] = vt
                continue
            reasons[t] = why
        elif len(found) > 1:
            reasons.setdefault(t, f"{len(found)} variant {node.op_type} nodes read the same inputs (ambiguous)")
        else:
            reasons.setdefault(t, "no variant tensor has this name or this node's structure "
                                  "(fused or removed by the recipe's pre-processing)")

    pairs, unmatched = [], []
    for idx, node, k, t in cands:
        if t in chosen:
            vt, rule = chosen[t]
            shape = ref_shapes.get(t)
            elements = int(np.prod(shape)) if shape is not None and all(d is not None for d in shape) else None
            pairs.append(TensorPair(order=idx, node=node_label(node, idx), op_type=node.op_type, tensor=t,
                                    variant_tensor=vt, match=rule, inputs=[i for i in node.input if i in live],
                                    ref_type=ref_types[t], var_type=var_types.get(vt, onnx.TensorProto.FLOAT),
                                    elements=elements))
        else:
            unmatched.append({"onnx_node": node_label(node, idx), "op_type": node.op_type, "tensor": t,
                              "reason": reasons.get(t, "no match")})
    return MatchPlan(pairs, unmatched, skipped)


def expose(proto: onnx.ModelProto, names: Iterable[str], types: Mapping[str, int] | None = None, *,
           only: bool = False) -> onnx.ModelProto:
    """A copy of ``proto`` whose graph outputs also include ``names`` (typed from ``types``);
    ``only=True``: the outputs are exactly ``names``."""
    types = types or {}
    p = onnx.ModelProto()
    p.CopyFrom(proto)
    if only:
        keep = {o.name: o for o in p.graph.output}
        new = [keep[n] if n in keep else onnx.helper.make_tensor_value_info(n, types.get(n, 0), None) for n in names]
        del p.graph.output[:]
        p.graph.output.extend(new)
        return p
    have = {o.name for o in p.graph.output}
    for n in names:
        if n not in have:
            p.graph.output.append(onnx.helper.make_tensor_value_info(n, types.get(n, 0), None))
            have.add(n)
    return p


def cut_model(proto: onnx.ModelProto, outputs: Sequence[str], types: Mapping[str, int] | None = None) -> onnx.ModelProto:
    """The part of ``proto`` that computes ``outputs`` (its only graph outputs): nodes, initializers and
    graph inputs that are not needed are dropped, so any backend can run it and return those tensors.
    ``types``: element types of ``outputs`` (ONNX shape inference when None)."""
    if types is None or any(o not in types for o in outputs):
        types = {**tensor_types(proto), **dict(types or {})}
    g = proto.graph
    producer = {o: n for n in g.node for o in n.output if o}
    need = set(outputs)
    stack = list(outputs)
    keep_nodes: set[int] = set()
    node_id = {id(n): i for i, n in enumerate(g.node)}
    while stack:
        t = stack.pop()
        n = producer.get(t)
        if n is None or node_id[id(n)] in keep_nodes:
            continue
        keep_nodes.add(node_id[id(n)])
        for i in list(n.input) + sorted(_subgraph_refs(n)):
            if i and i not in need:
                need.add(i)
                stack.append(i)
    p = onnx.ModelProto()
    p.CopyFrom(proto)
    pg = p.graph
    nodes = [n for i, n in enumerate(pg.node) if i in keep_nodes]
    del pg.node[:]
    pg.node.extend(nodes)
    inits = [t for t in pg.initializer if t.name in need]
    del pg.initializer[:]
    pg.initializer.extend(inits)
    sinits = [t for t in pg.sparse_initializer if t.values.name in need]
    del pg.sparse_initializer[:]
    pg.sparse_initializer.extend(sinits)
    ins = [i for i in pg.input if i.name in need]
    del pg.input[:]
    pg.input.extend(ins)
    vis = [v for v in pg.value_info if v.name in need]
    del pg.value_info[:]
    pg.value_info.extend(vis)
    return expose(p, outputs, types, only=True)


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


class PeakRSS:
    """Samples this process's resident set size (``/proc/self/statm``) every few milliseconds in a
    thread while in use; ``peak`` is the largest sample in bytes (0 where /proc is not available)."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = 0
        self.start = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def current() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def _loop(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.current())

    def __enter__(self) -> "PeakRSS":
        self.start = self.peak = self.current()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="workbench-peak-rss")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.current())


def _resolve_threshold(metric: str, threshold: float | None) -> tuple[float, bool]:
    if metric not in THRESHOLDS:
        raise UsageError(f"unknown layerwise metric {metric!r}; choose from {', '.join(THRESHOLDS)}")
    default, higher_better = THRESHOLDS[metric]
    threshold = default if threshold is None else float(threshold)
    if threshold is None:
        raise UsageError(f"layerwise metric {metric!r} needs an explicit threshold")
    if metric == "cosine" and not -1.0 <= threshold <= 1.0:
        raise UsageError(f"cosine threshold must lie in [-1, 1], got {threshold:g}", hint="e.g. 0.999")
    return threshold, higher_better


def _is_diverged(res: Mapping[str, Any], metric: str, threshold: float, higher_better: bool) -> bool:
    v = res[metric]
    bad = (v < threshold) if higher_better else (v > threshold)
    return bool(bad or res["nan_count"] or res["inf_count"] or (isinstance(v, float) and math.isnan(v)))


def _fold(acc: ErrorAccumulator, a: np.ndarray, b: np.ndarray) -> None:
    """``acc.update(a, b)`` in chunks of :data:`CHUNK` elements (same sums, small temporaries)."""
    a, b = np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1)
    for s in range(0, max(a.size, 1), CHUNK):
        acc.update(a[s:s + CHUNK], b[s:s + CHUNK])


def _batches(model: Model, data: Any, feeds: Any, limit, batch_size, shapes) -> list[dict]:
    if feeds is not None:
        return [feeds]
    if not isinstance(data, (str, os.PathLike, NpzDataset)):
        limit = None  # feed dicts the caller chose are compared whole (compare_budget bounds their cost, and says so)
    out = list(as_feed_batches(model, data, batch_size=default_batch(model, batch_size), limit=limit, shapes=shapes))
    if not out:
        raise DataError("layerwise got no data batches")
    return out


def _pair_bytes(pairs: list[TensorPair], ref_batch: int) -> list[float]:
    """Estimated bytes of each pair (reference + variant) for ONE sample (tensors whose size shape
    inference cannot tell count as the largest known one)."""
    known = [p.elements for p in pairs if p.elements is not None]
    fallback = max(known) if known else 0
    per = max(ref_batch, 1)
    return [(p.elements if p.elements is not None else fallback) / per
            * (_ITEMSIZE.get(p.ref_type, 4) + _ITEMSIZE.get(p.var_type, 4)) for p in pairs]


def _groups(sizes: Sequence[float], budget: float) -> list[list[int]]:
    """Indices split, in order, so each group's bytes fit ``budget`` (a larger single tensor stands alone)."""
    groups: list[list[int]] = []
    cur: list[int] = []
    cur_bytes = 0.0
    for i, s in enumerate(sizes):
        if cur and cur_bytes + s > budget:
            groups.append(cur)
            cur, cur_bytes = [], 0.0
        cur.append(i)
        cur_bytes += s
    if cur:
        groups.append(cur)
    return groups


def _splittable(model: Model, batches: list[dict]) -> bool:
    """Whether every input has a dynamic first axis shared by all feeds (then a batch can be split)."""
    specs = input_specs(model)
    if not specs or any(s.shape and isinstance(s.shape[0], int) for s in specs):
        return False
    return all(len({np.shape(v)[0] if np.ndim(v) else None for v in b.values()}) == 1 and
               all(np.ndim(v) for v in b.values()) for b in batches)


def _split(batches: list[dict], size: int) -> list[dict]:
    out = []
    for b in batches:
        n = feeds_batch(b)
        for s in range(0, n, size):
            out.append({k: v[s:s + size] for k, v in b.items()})
    return out


def _first_samples(batches: list[dict], keep: int, splittable: bool) -> list[dict]:
    """The first ``keep`` samples of ``batches`` (whole batches when they cannot be split; at least one)."""
    out, n = [], 0
    for b in batches:
        if n >= keep:
            break
        size = feeds_batch(b)
        if splittable and n + size > keep:
            b, size = {k: v[:keep - n] for k, v in b.items()}, keep - n
        out.append(b)
        n += size
    return out


def _human_bytes(n: float) -> str:
    for unit, scale in (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def plan_passes(pairs: list[TensorPair], batches: list[dict], model: Model, budget: int | None) -> dict:
    """How :func:`layerwise` keeps one run's tensors under ``budget`` bytes: first by running fewer
    samples at a time (when every input has a dynamic first axis), then, if one sample's tensors still
    do not fit (or the batch is fixed), by comparing the tensors in groups over several passes.
    Returns ``{run_batch, groups, estimated_bytes}`` (``run_batch`` None: batches as given)."""
    n0 = feeds_batch(batches[0])
    per_sample = _pair_bytes(pairs, n0)
    biggest = max(feeds_batch(b) for b in batches)
    total = sum(per_sample)
    if budget is None:
        return {"run_batch": None, "groups": [list(range(len(pairs)))], "estimated_bytes": int(total * biggest)}
    if total * biggest <= budget:
        return {"run_batch": None, "groups": [list(range(len(pairs)))], "estimated_bytes": int(total * biggest)}
    run_batch = None
    samples = biggest
    if _splittable(model, batches) and biggest > 1:
        run_batch = max(1, int(budget // total)) if total > 0 else biggest
        samples = min(run_batch, biggest)
    groups = _groups([b * samples for b in per_sample], budget)
    est = max(sum(per_sample[i] for i in g) for g in groups) * samples
    return {"run_batch": run_batch, "groups": groups, "estimated_bytes": int(est)}


@captures_native_log
def layerwise(model: Any, variant: Any, *, data: Any = None, feeds: Mapping[str, np.ndarray] | None = None,
              calib: Any = None, shapes: Any = None, threshold: float | None = None, metric: str = "cosine",
              limit: int | None = 64, batch_size: int | None = None, optimization: str = "disable",
              memory_budget: int | str | None = DEFAULT_MEMORY_BUDGET, tensor_map: Mapping[str, str] | None = None,
              compare_budget: int | str | None = None, progress: bool = True) -> pd.DataFrame:
    """Per-node error of ``variant`` against ``model`` (FP32, ONNX Runtime CPU).

    Args:
        model: the original model (path or :class:`~workbench.Model`).
        variant: a :class:`~workbench.Variant`, a derived :class:`~workbench.Model`, or a precision name
            (built with ``make_variant(model, precision, calib=calib)``).
        data: ``.npz`` path, :class:`~workbench.NpzDataset` or iterable of feed dicts; ``feeds``: one feed
            dict. Neither: one synthetic batch (``shapes`` for dynamic dims).
        threshold / metric: a node *diverges* when its ``metric`` is worse than ``threshold`` (cosine
            below 0.999 and snr_db below 30 dB by default; error metrics need an explicit threshold).
        limit: at most this many samples from an ``.npz`` dataset (feed dicts given as a list are used
            whole; ``compare_budget`` bounds what they cost).
        optimization: ONNX Runtime graph optimization level for both sessions (``disable`` keeps every
            marked tensor and every Q/DQ node as written).
        memory_budget: bytes (or ``"2GB"``) the compared tensors of one batch may take; above it the
            tensors are compared in groups over several passes. None: one pass whatever the size.
        tensor_map: ``{reference tensor: variant tensor}`` pairs to use before the matching rules
            (added to ``variant.recipe["tensor_map"]`` when the recipe recorded one).
        compare_budget: bytes (or ``"1GB"``) of compared tensors (reference + variant, all samples) to
            fold at most: the cost of a comparison grows with them (two runs with every tensor exposed,
            then every element folded). Fewer of the given samples are used when they exceed it (at least
            one; ``df.attrs["samples_given"]`` / ``["samples_reason"]``). None: every given sample.

    Returns a DataFrame, one row per compared tensor in topological order, columns ``variant,
    precision, order, onnx_node, op_type, tensor, variant_tensor, match`` + the metrics + ``noise_ratio``
    (``sum d^2 / sum ref^2``), ``local_noise`` (noise_ratio minus the largest noise_ratio among the
    node's compared inputs, >= 0: the error this node adds), ``diverged``, ``first_divergent`` and the rule
    behind ``diverged`` (``divergence_metric``, ``divergence_threshold``; the same on every row).
    :func:`unmatched_frame` turns the tensors left out into a frame. ``df.attrs`` (diagnostics of this
    call, dropped by ``pd.concat``): ``first_divergent`` (node name or None), ``counts`` (compared / unmatched / skipped),
    ``unmatched`` (``[{onnx_node, op_type, tensor, reason}]``), ``skipped`` (reason → count), ``passes``,
    ``memory_budget``, ``estimated_bytes`` (largest pass), ``peak_rss_bytes`` (sampled), ``samples``,
    ``seconds``, ``metric``, ``threshold``, ``variant``, ``precision``, ``optimization``.
    """
    t_start = time.perf_counter()
    threshold, higher_better = _resolve_threshold(metric, threshold)
    if optimization not in _OPT:
        raise UsageError(f"unknown optimization level {optimization!r}; choose from {', '.join(_OPT)}")
    budget = None if memory_budget is None else parse_bytes(memory_budget)
    model = model if isinstance(model, Model) else load(model)
    var = _as_variant(model, variant, calib, progress)
    batches = _batches(model, data, feeds, limit, batch_size, shapes)

    with PeakRSS() as rss:
        ref_proto = model.proto_with_data()
        var_proto = var.model.proto_with_data()
        first = cast_feeds(batches[0], model)
        tmap = {**dict(var.recipe.get("tensor_map") or {}), **dict(tensor_map or {})}
        plan = match_tensors(ref_proto, var_proto, tensor_map=tmap,
                             input_shapes={k: np.shape(v) for k, v in first.items()})
        pairs = plan.pairs
        if not pairs:
            raise DataError(f"no intermediate tensor of {model.name} could be matched in variant {var.name}",
                            hint="; ".join(f"{u['tensor']}: {u['reason']}" for u in plan.unmatched[:3]))
        given = sum(feeds_batch(b) for b in batches)
        samples_reason = ""
        if compare_budget is not None:
            per_sample = sum(_pair_bytes(pairs, feeds_batch(batches[0])))
            keep = max(1, int(parse_bytes(compare_budget) // per_sample)) if per_sample > 0 else given
            if keep < given:
                batches = _first_samples(batches, keep, _splittable(model, batches))
                samples_reason = (f"{sum(feeds_batch(b) for b in batches)} of {given} samples: the compared tensors "
                                  f"of one sample take {_human_bytes(per_sample)}; compare budget "
                                  f"{_human_bytes(parse_bytes(compare_budget))}")
        n_samples = [feeds_batch(b) for b in batches]
        plan_ = plan_passes(pairs, batches, model, budget)
        groups, est = plan_["groups"], plan_["estimated_bytes"]
        runs = _split(batches, plan_["run_batch"]) if plan_["run_batch"] else batches
        ref_types = {p.tensor: p.ref_type for p in pairs}
        var_types = {p.variant_tensor: p.var_type for p in pairs}
        accs = [ErrorAccumulator(percentiles=False) for _ in pairs]
        bad_shape: dict[int, str] = {}
        from tqdm.auto import tqdm

        bar = tqdm(total=len(groups) * len(runs), desc=f"layerwise {var.name}", unit="run",
                   disable=not progress, leave=False)
        try:
            for gi, group in enumerate(groups):
                ref_sess = _session(expose(ref_proto, [pairs[i].tensor for i in group], ref_types), optimization)
                var_sess = _session(expose(var_proto, [pairs[i].variant_tensor for i in group], var_types),
                                    optimization)
                want_ref = [pairs[i].tensor for i in group]
                want_var = [pairs[i].variant_tensor for i in group]
                if len(groups) > 1:
                    bar.set_postfix_str(f"pass {gi + 1}/{len(groups)}")
                for f in runs:
                    try:  # a runtime rejecting the feeds (e.g. a fixed dim of 0) is a RunError, not a crash
                        ref_out = ref_sess.run(want_ref, cast_feeds(f, model))
                        var_out = var_sess.run(want_var, cast_feeds(f, var.model))
                    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
                        raise RunError(f"ONNX Runtime failed to run the layerwise comparison of {var.name}: "
                                       f"{str(e).strip()[:300]}") from e
                    for j, i in enumerate(group):
                        a, b = ref_out[j], var_out[j]
                        ref_out[j] = var_out[j] = None  # free as we go
                        if i in bad_shape:
                            continue
                        if np.shape(a) != np.shape(b):
                            bad_shape[i] = (f"shape {tuple(np.shape(a))} in the reference but {tuple(np.shape(b))} "
                                            f"in the variant ({pairs[i].variant_tensor!r}): a layout change "
                                            "(transpose/reshape) by the recipe")
                            continue
                        _fold(accs[i], a, b)
                    del ref_out, var_out
                    bar.update(1)
                del ref_sess, var_sess
        finally:
            bar.close()

    rows = []
    noise: dict[str, float] = {}
    first_div = None
    unmatched = list(plan.unmatched)
    for i, (p, acc) in enumerate(zip(pairs, accs)):
        if i in bad_shape:
            unmatched.append({"onnx_node": p.node, "op_type": p.op_type, "tensor": p.tensor, "reason": bad_shape[i]})
            continue
        res = acc.result()
        r = {"order": p.order, "onnx_node": p.node, "op_type": p.op_type, "tensor": p.tensor,
             "variant_tensor": p.variant_tensor, "match": p.match, **res, "noise_ratio": acc.noise_ratio}
        noise[p.tensor] = acc.noise_ratio
        upstream = [noise[t] for t in p.inputs if t in noise]
        r["local_noise"] = max(0.0, acc.noise_ratio - max(upstream, default=0.0))
        r["diverged"] = _is_diverged(res, metric, threshold, higher_better)
        if r["diverged"] and first_div is None:
            first_div = p.node
        rows.append(r)
    for r in rows:
        r["first_divergent"] = r["onnx_node"] == first_div
    cols = ["variant", "precision", "order", "onnx_node", "op_type", "tensor", "variant_tensor", "match",
            *[m for m in METRICS if m != "passed"], "noise_ratio", "local_noise", "diverged", "first_divergent",
            *RULE_COLUMNS]
    df = pd.DataFrame([{"variant": var.name, "precision": var.precision, **r, "divergence_metric": metric,
                        "divergence_threshold": threshold} for r in rows], columns=cols)
    order = {t: i for i, n in enumerate(ref_proto.graph.node) for t in n.output}
    unmatched.sort(key=lambda u: order.get(u["tensor"], -1))
    df.attrs.update({
        "first_divergent": first_div, "metric": metric, "threshold": threshold, "variant": var.name,
        "optimization": optimization, "unmatched": unmatched, "skipped": dict(plan.skipped),
        "counts": {"compared": len(rows), "unmatched": len(unmatched), "skipped": int(sum(plan.skipped.values()))},
        "passes": len(groups), "run_batch": plan_["run_batch"] or max(n_samples), "runs": len(groups) * len(runs),
        "memory_budget": budget, "estimated_bytes": int(est),
        "peak_rss_bytes": int(rss.peak), "rss_start_bytes": int(rss.start), "samples": int(sum(n_samples)),
        "samples_given": int(given), "samples_reason": samples_reason, "compare_budget":
            None if compare_budget is None else parse_bytes(compare_budget),
        "batches": len(batches), "seconds": round(time.perf_counter() - t_start, 3), "precision": var.precision})
    return df


@dataclass
class Bisection:
    """Result of :func:`first_divergence`.

    ``first_divergent``: node label of the first candidate tensor whose metric is worse than the
    threshold (None when the last candidate does not diverge); ``probes``: one dict per run, in run
    order (``position, onnx_node, tensor, variant_tensor`` + metrics + ``diverged``, ``seconds``);
    ``candidates``: tensors bisected over; ``runs``: cut-graph runs made (reference + variant each).
    """

    variant: str
    first_divergent: str | None
    tensor: str | None
    variant_tensor: str | None
    metric: str
    threshold: float
    candidates: int
    runs: int
    probes: list = field(default_factory=list)
    unmatched: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    backend: str = "onnxruntime"
    reference_backend: str = "onnxruntime"
    samples: int = 0
    peak_rss_bytes: int = 0
    seconds: float = 0.0

    @property
    def row(self) -> dict | None:
        """The probe of the first divergent tensor (its metrics), or None."""
        for p in self.probes:
            if p["tensor"] == self.tensor and p.get("diverged"):
                return p
        return None

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.probes)

    def to_json(self) -> dict:
        from .metrics import json_number

        d = {k: getattr(self, k) for k in ("variant", "first_divergent", "tensor", "variant_tensor", "metric",
                                          "threshold", "candidates", "runs", "counts", "backend",
                                          "reference_backend", "samples", "peak_rss_bytes", "seconds",
                                          "unmatched")}
        d["probes"] = [{k: json_number(v) for k, v in p.items()} for p in self.probes]
        return d


def first_divergence(model: Any, variant: Any, *, data: Any = None, feeds: Mapping[str, np.ndarray] | None = None,
                     calib: Any = None, shapes: Any = None, threshold: float | None = None, metric: str = "cosine",
                     limit: int | None = 64, batch_size: int | None = None, backend: Any = "onnxruntime",
                     reference_backend: Any = "onnxruntime", tensor_map: Mapping[str, str] | None = None,
                     progress: bool = True) -> Bisection:
    """The first diverging node of ``variant`` by bisection over cut graphs.

    The candidates are the tensors :func:`match_tensors` pairs, in topological order. A *probe* cuts
    both graphs so the candidate is their only output (:func:`cut_model`), builds them on
    ``reference_backend`` / ``backend`` and streams the data through, folding the pair into one float64
    accumulator; only that one tensor pair is ever held. The last candidate is probed first (no
    divergence there: the result is None), then the range is halved: about ``log2(n) + 1`` probes for
    ``n`` candidates, each running the graph up to its cut. Because only graph outputs are read, this
    works on backends that cannot expose every tensor (TensorRT: the cut tensor is a real network
    output, so fusion stays intact everywhere but at the cut).

    Bisection assumes that once a tensor diverges, later ones stay diverged (error does not heal). A
    divergence that disappears downstream (e.g. clipped by a Relu or a Softmax over equal logits) can
    be missed or located late; :func:`layerwise` (full scan) sees every tensor. A probe whose two
    tensors differ in shape is dropped from the candidates (listed in ``unmatched``) and the search
    goes on. Other arguments as in :func:`layerwise`.
    """
    from ..backends import BuildOptions, get_backend

    t_start = time.perf_counter()
    threshold, higher_better = _resolve_threshold(metric, threshold)
    model = model if isinstance(model, Model) else load(model)
    var = _as_variant(model, variant, calib, progress)
    batches = _batches(model, data, feeds, limit, batch_size, shapes)
    be, ref_be = get_backend(backend), get_backend(reference_backend)
    with PeakRSS() as rss:
        ref_proto, var_proto = model.proto_with_data(), var.model.proto_with_data()
        first = cast_feeds(batches[0], model)
        tmap = {**dict(var.recipe.get("tensor_map") or {}), **dict(tensor_map or {})}
        plan = match_tensors(ref_proto, var_proto, tensor_map=tmap,
                             input_shapes={k: np.shape(v) for k, v in first.items()})
        cands = list(plan.pairs)
        if not cands:
            raise DataError(f"no intermediate tensor of {model.name} could be matched in variant {var.name}")
        unmatched = list(plan.unmatched)
        probes: list[dict] = []
        verdict: dict[str, bool] = {}
        from tqdm.auto import tqdm

        bar = tqdm(total=math.ceil(math.log2(max(len(cands), 1))) + 1, desc=f"bisect {var.name}", unit="run",
                   disable=not progress, leave=False)

        def probe(pos: int) -> bool | None:
            p = cands[pos]
            if p.tensor in verdict:
                return verdict[p.tensor]
            t0 = time.perf_counter()
            ref_cut = model.derive(cut_model(ref_proto, [p.tensor], {p.tensor: p.ref_type}),
                                   name=f"{model.name}-cut")
            var_cut = var.model.derive(cut_model(var_proto, [p.variant_tensor], {p.variant_tensor: p.var_type}),
                                       name=f"{var.model.name}-cut")
            from ..builds import build_engine  # the one build path (engine cache, kernel fallback, records)
            from ..variant import PRECISIONS  # a user's Model is "custom": the backend only knows these labels

            opts = BuildOptions(progress=False)
            _, ref_eng = build_engine(ref_cut, Variant.of(ref_cut, "fp32"), ref_be, shapes=shapes, options=opts,
                                      progress=False)
            prec = var.precision if var.precision in PRECISIONS else "fp32"
            _, var_eng = build_engine(var_cut, Variant(model=var_cut, precision=prec, recipe=var.recipe,
                                                       backend_flags=dict(var.backend_flags)),
                                      be, shapes=shapes, options=opts, progress=False)
            acc = ErrorAccumulator(percentiles=False)
            try:
                for f in batches:
                    a = ref_eng.run({k: v for k, v in cast_feeds(f, model).items() if k in ref_eng.input_names})
                    b = var_eng.run({k: v for k, v in cast_feeds(f, var.model).items() if k in var_eng.input_names})
                    a, b = a[p.tensor], b[p.variant_tensor]
                    if np.shape(a) != np.shape(b):
                        unmatched.append({"onnx_node": p.node, "op_type": p.op_type, "tensor": p.tensor,
                                          "reason": f"shape {tuple(np.shape(a))} in the reference but "
                                                    f"{tuple(np.shape(b))} in the variant ({p.variant_tensor!r})"})
                        return None
                    _fold(acc, a, b)
                    del a, b
            finally:
                ref_eng.close()
                var_eng.close()
            res = acc.result()
            bad = _is_diverged(res, metric, threshold, higher_better)
            verdict[p.tensor] = bad
            probes.append({"position": pos, "onnx_node": p.node, "op_type": p.op_type, "tensor": p.tensor,
                           "variant_tensor": p.variant_tensor, **{k: v for k, v in res.items() if k != "passed"},
                           "diverged": bad, "seconds": round(time.perf_counter() - t0, 3)})
            bar.update(1)
            return bad

        def probe_at(pos: int) -> tuple[int, bool]:
            """Probe ``pos``; when its shapes differ, drop it and probe the next candidate (or the previous)."""
            while True:
                r = probe(pos)
                if r is not None:
                    return pos, r
                del cands[pos]
                if not cands:
                    raise DataError("no candidate tensor of the two graphs has matching shapes")
                pos = min(pos, len(cands) - 1)

        found = None
        try:
            last, bad = probe_at(len(cands) - 1)
            if bad:
                hi_pair, lo = cands[last], 0  # hi_pair diverges; the first divergent lies in cands[lo..hi]
                while True:
                    hi = cands.index(hi_pair)
                    if lo >= hi:
                        break
                    # probe_at drops only unusable candidates at >= mid; when it dropped all of [mid, hi), pos is
                    # hi_pair's new index (its known verdict: bad) and [lo, pos) is searched next
                    pos, bad = probe_at((lo + hi) // 2)
                    if bad:
                        hi_pair = cands[pos]
                    else:
                        lo = pos + 1
                found = hi_pair
        finally:
            bar.close()
    counts = {"compared": len(probes), "unmatched": len(unmatched), "skipped": int(sum(plan.skipped.values())),
              "candidates": len(cands)}
    return Bisection(variant=var.name, first_divergent=found.node if found else None,
                     tensor=found.tensor if found else None, variant_tensor=found.variant_tensor if found else None,
                     metric=metric, threshold=threshold, candidates=len(cands), runs=len(probes), probes=probes,
                     unmatched=unmatched, counts=counts, backend=be.name, reference_backend=ref_be.name,
                     samples=sum(feeds_batch(b) for b in batches), peak_rss_bytes=int(rss.peak),
                     seconds=round(time.perf_counter() - t_start, 3))


def layerwise_summary(df: pd.DataFrame) -> dict:
    """The bookkeeping of a :func:`layerwise` frame as a JSON-able dict (what the CLI and reports print)."""
    a = df.attrs
    return {"first_divergent": a.get("first_divergent"), "metric": a.get("metric"), "threshold": a.get("threshold"),
            "counts": a.get("counts"), "passes": a.get("passes"), "memory_budget": a.get("memory_budget"),
            "estimated_bytes": a.get("estimated_bytes"), "peak_rss_bytes": a.get("peak_rss_bytes"),
            "samples": a.get("samples"), "seconds": a.get("seconds"), "unmatched": a.get("unmatched", []),
            "skipped": a.get("skipped", {})}


#: the rule behind ``diverged``, on every row (so it survives ``pd.concat`` of several variants' frames)
RULE_COLUMNS = ["divergence_metric", "divergence_threshold"]
#: columns of :func:`unmatched_frame`
UNMATCHED_COLUMNS = ["variant", "precision", "onnx_node", "op_type", "tensor", "reason"]


def unmatched_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The tensors a :func:`layerwise` call could not compare (``df.attrs["unmatched"]``: no variant tensor
    pairs with them, or their shapes differ) as a tidy frame, one row per tensor: :data:`UNMATCHED_COLUMNS`.
    Unlike ``attrs`` it survives ``pd.concat`` and JSON (``FlowResult.layerwise_unmatched`` holds it)."""
    a = df.attrs
    precision = str(df["precision"].iloc[0]) if len(df) and "precision" in df.columns else a.get("precision")
    rows = [{"variant": a.get("variant"), "precision": precision, **{k: u.get(k) for k in UNMATCHED_COLUMNS[2:]}}
            for u in a.get("unmatched") or []]
    return pd.DataFrame(rows, columns=UNMATCHED_COLUMNS)


def layerwise_tidy(df: pd.DataFrame) -> pd.DataFrame:
    """The layerwise frame in the tidy layout ``variant, onnx_node, tensor, metric, value``."""
    metrics = [m for m in [*METRICS, "noise_ratio", "local_noise"] if m != "passed" and m in df.columns]
    return df.melt(id_vars=["variant", "onnx_node", "tensor"], value_vars=metrics, var_name="metric",
                   value_name="value")


def layerwise_debug_tensors(model: Any, variant: Any, backend: str = "tensorrt", *, data: Any = None,
                            feeds: Mapping[str, np.ndarray] | None = None, calib: Any = None, shapes: Any = None,
                            tensors: Sequence[str] | None = None, threshold: float | None = None,
                            metric: str = "cosine", limit: int | None = 16, batch_size: int | None = None,
                            progress: bool = True) -> pd.DataFrame:
    """Per-tensor error of a **TensorRT engine's own** intermediate tensors against FP32 on ONNX Runtime CPU.

    The engine is built with those tensors marked as *debug tensors* (``BuildOptions(extra={"debug_tensors":
    names})``, ``network.mark_debug``) and read back through an ``IDebugListener``
    (:meth:`TrtEngine.debug_tensors`): no tensor becomes a network output, so TensorRT keeps the output
    bindings and fusions of the engine you ship (a debug tensor is materialized, which can still constrain a
    fusion around it — name fewer ``tensors`` to disturb less). :func:`layerwise` instead runs the variant's
    graph on ONNX Runtime CPU, which says nothing about what TensorRT's kernels compute.

    ``tensors``: reference tensor names to compare (default: every node output present in both graphs).
    Returns one row per tensor (columns ``variant, precision, backend, order, onnx_node, op_type, tensor`` + metrics
    + ``diverged``, ``first_divergent``). Needs a GPU that the backend runs on (``BackendUnavailable`` else).
    """
    from ..backends import get_backend
    from ..backends.base import BuildOptions
    from ..builds import build_engine

    model = load(model)
    var = _as_variant(model, variant, calib, progress)
    be = get_backend(backend)
    ok, why = be.can_run()
    if not ok:
        raise BackendUnavailable(f"the debug-tensor comparison runs the {be.name} engine: {why}")
    ref_nodes = [(i, n) for i, n in enumerate(model.proto.graph.node)]
    var_names = {o for n in var.model.proto.graph.node for o in n.output if o}
    order = [(i, n, o) for i, n in ref_nodes for o in n.output if o and o in var_names]
    wanted = list(tensors) if tensors is not None else [o for _, _, o in order]
    order = [x for x in order if x[2] in set(wanted)]
    if not order:
        raise DataError("no tensor to compare: none of the requested names is produced in both graphs")
    names = [o for _, _, o in order]
    _, engine = build_engine(model, var, be, shapes=shapes,
                             options=BuildOptions(progress=progress, extra={"debug_tensors": names}), progress=progress)
    marked = set(engine.record.options["applied"]["debug_tensors"])
    types = tensor_types(model.proto)
    ref = _session(expose(model.proto, names, types), "disable")
    ref_outs = [o.name for o in ref.get_outputs()]
    accs = {o: ErrorAccumulator(percentiles=False) for o in names if o in marked}
    for f in _batches(model, data, feeds, limit, batch_size, shapes):
        got = engine.debug_tensors(cast_feeds(f, var.model))
        want = dict(zip(ref_outs, ref.run(None, cast_feeds(f, model))))
        for o, acc in accs.items():
            if o in got and o in want and np.shape(got[o]) == np.shape(want[o]):
                _fold(acc, want[o], got[o])
    thr, higher = _resolve_threshold(metric, threshold)
    rows, first = [], None
    for i, n, o in order:
        if o not in accs or not accs[o].n:
            rows.append({"order": i, "onnx_node": n.name or o, "op_type": n.op_type, "tensor": o,
                         "match": "not marked by TensorRT" if o not in marked else "not captured"})
            continue
        res = accs[o].result()
        div = _is_diverged(res, metric, thr, higher)
        if div and first is None:
            first = n.name or o
        rows.append({"order": i, "onnx_node": n.name or o, "op_type": n.op_type, "tensor": o, "match": "debug tensor",
                     **res, "diverged": div})
    df = pd.DataFrame(rows)
    df.insert(0, "backend", be.name)
    df.insert(0, "precision", var.precision)
    df.insert(0, "variant", var.name)
    df["first_divergent"] = df["onnx_node"] == first
    df["divergence_metric"], df["divergence_threshold"] = metric, thr
    df.attrs.update(first_divergent=first, metric=metric, threshold=thr, source="tensorrt-debug-tensors")
    engine.close()
    return df
