"""fp16 and bf16 recipes: casts placed by onnxconverter-common, with fp32 kept where it matters.

fp16: ``onnxconverter_common.float16.convert_float_to_float16`` with a block list (the converter's
``DEFAULT_OP_BLOCK_LIST``, the user's keep lists, and the consumers of constants whose values do not
fit fp16), then :func:`~workbench.precision.typefix.repair_float_types` for clashes at block-list
boundaries, then ``onnx.checker`` (full check) and an ONNX Runtime session.

bf16: the same placement, then every FLOAT16 in the graph is retyped to BFLOAT16; constants are
re-converted from their original fp32 values with ``ml_dtypes`` (bf16 has fp32's range, so nothing
is clamped).
"""
from __future__ import annotations

import contextlib
import threading
import warnings

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..edit.topo import toposort_model
from ..errors import UnsupportedError, WorkbenchError
from ..model import Model
from ..variant import Variant
from .base import (Recipe, Request, base_recipe, check_keep_nodes, drop_initializer_inputs, full_check,
                   name_unnamed_nodes, short,
                   ort_session_check, upgrade_opset, variant_name)
from .typefix import drop_round_trip_casts, repair_float_types

FP16_MAX = 65504.0
FP16_TINY = 2.0 ** -24  # smallest fp16 subnormal: smaller magnitudes flush to zero

#: bfloat16 Conv, pooling and most other ops are typed for bf16 from opset 22 (Cast/MatMul/Add from 13).
BF16_MIN_OPSET = 22

#: Ops kept in fp32 on top of the converter's default list (see docs/precision.md for the evidence):
#: a normalization squares its input; fp16 overflows once activations pass ~256.
EXTRA_FP32_OPS: tuple[str, ...] = ("LayerNormalization",)


def default_op_block_list() -> list[str]:
    from onnxconverter_common import float16
    return list(dict.fromkeys(list(float16.DEFAULT_OP_BLOCK_LIST) + list(EXTRA_FP32_OPS)))


def tensor_problem(t: onnx.TensorProto, underflow_fraction: float) -> str | None:
    """Why a float32 constant cannot become fp16 unchanged, or None."""
    if t.data_type != TensorProto.FLOAT:
        return None
    a = numpy_helper.to_array(t)
    if a.size == 0:
        return None
    finite = a[np.isfinite(a)]
    mx = float(np.abs(finite).max()) if finite.size else 0.0
    if mx > FP16_MAX:
        return f"|x| up to {mx:.3g} > fp16 max {FP16_MAX:g}"
    nz = finite[finite != 0]
    if nz.size:
        tiny = int((np.abs(nz) < FP16_TINY).sum())
        if tiny and tiny / nz.size > underflow_fraction:
            return f"{tiny}/{nz.size} nonzero values below {FP16_TINY:.3g} would become 0 in fp16"
    return None


def fp16_range_blocks(proto: onnx.ModelProto, *, underflow_fraction: float = 0.01) -> dict[str, str]:
    """Nodes to keep in fp32 because a constant they read (initializer, Constant) does not fit fp16.

    Returns node name → reason. Constant nodes with such values are returned too, so they stay fp32.
    """
    g = proto.graph
    bad: dict[str, str] = {}  # tensor name -> reason
    const_nodes: dict[str, str] = {}  # tensor name -> Constant node name
    for init in g.initializer:
        why = tensor_problem(init, underflow_fraction)
        if why:
            bad[init.name] = why
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    why = tensor_problem(a.t, underflow_fraction)
                    if why:
                        bad[n.output[0]] = why
                        const_nodes[n.output[0]] = n.name
    out: dict[str, str] = {}
    for tensor, why in bad.items():
        if tensor in const_nodes:
            out[const_nodes[tensor]] = f"Constant {tensor!r}: {why}"
    for n in g.node:
        for x in n.input:
            if x in bad and n.name not in out:
                out[n.name] = f"reads {x!r}: {bad[x]}"
    return out


def _const_value(g: onnx.GraphProto, name: str) -> np.ndarray | None:
    for i in g.initializer:
        if i.name == name:
            return numpy_helper.to_array(i)
    for n in g.node:
        if n.op_type == "Constant" and n.output[0] == name:
            for a in n.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
    return None


def norm_variance_nodes(proto: onnx.ModelProto) -> dict[str, str]:
    """Nodes on the variance path of decomposed normalizations (LayerNorm/RMSNorm exported op by op).

    Pattern: ``Pow(d, 2)`` or ``Mul(d, d)`` → ``ReduceMean`` → [``Add`` eps] → ``Sqrt`` → [``Reciprocal``]
    → ``Div``/``Mul``. The square overflows fp16 for activations above ~256, so these stay fp32.
    Returns node name → reason.
    """
    g = proto.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    out: dict[str, str] = {}
    for rm in g.node:
        if rm.op_type not in ("ReduceMean", "ReduceSum") or not rm.input:
            continue
        sq = producer.get(rm.input[0])
        if sq is None:
            continue
        is_square = (sq.op_type == "Mul" and len(sq.input) == 2 and sq.input[0] == sq.input[1]) or (
            sq.op_type == "Pow" and (v := _const_value(g, sq.input[1])) is not None and v.size == 1
            and float(v.reshape(-1)[0]) == 2.0)
        if not is_square:
            continue
        chain = [sq, rm]
        cur = rm
        while True:
            nxt = consumers.get(cur.output[0], [])
            if len(nxt) != 1 or nxt[0].op_type not in ("Add", "Sqrt", "Reciprocal", "Div", "Mul"):
                break
            chain.append(nxt[0])
            if nxt[0].op_type in ("Div", "Mul") and cur.op_type in ("Sqrt", "Reciprocal"):
                break
            cur = nxt[0]
        for n in chain:
            out[n.name] = f"variance path of a normalization ({sq.op_type} -> {rm.op_type} -> ...)"
    return out


@contextlib.contextmanager
def linear_converter_sort():
    """Swap onnxconverter-common's ``sort_topology`` (quadratic: 38 s on a reversed 8,000-node chain; blind
    to the outer-scope reads of If/Loop/Scan bodies) for :func:`workbench.edit.topo.toposort_graph` while
    the converter runs."""
    from onnxconverter_common import float16

    from ..edit.topo import toposort_graph

    with _PATCH_LOCK:
        original = float16.sort_topology
        float16.sort_topology = lambda graph: toposort_graph(graph)
        try:
            yield
        finally:
            float16.sort_topology = original


_PATCH_LOCK = threading.Lock()


def _elem_types(proto: onnx.ModelProto) -> dict[str, int]:
    """Element type of every main-graph tensor ONNX shape inference can type (non-strict)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - the strict check reports real problems later
        inferred = proto
    g = inferred.graph
    out = {vi.name: vi.type.tensor_type.elem_type for vi in list(g.input) + list(g.value_info) + list(g.output)
           if vi.type.HasField("tensor_type")}
    out.update({i.name: i.data_type for i in g.initializer})
    return out


def _float_nodes(proto: onnx.ModelProto, types: dict[str, int], names: dict[str, str]) -> dict[str, str]:
    """The entries of ``names`` whose node reads or writes a float32 tensor (others are never cast anyway)."""
    keep = {}
    by_name = {n.name: n for n in proto.graph.node}
    for name, why in names.items():
        n = by_name.get(name)
        if n is not None and any(types.get(x) == TensorProto.FLOAT for x in list(n.input) + list(n.output)):
            keep[name] = why
    return keep


def convert_fp16(model: Model, req: Request, *, low: int = TensorProto.FLOAT16, min_opset: int = 0
                 ) -> tuple[onnx.ModelProto, onnx.ModelProto, dict]:
    """(converted proto, the fp32 copy it came from, recipe facts) with onnxconverter-common's placement.

    The result passes the full checker and strict shape inference: nodes holding subgraphs (If/Loop/Scan)
    stay fp32 with their bodies, float shape/index math stays fp32, and any node the strict check still
    rejects is kept in fp32 and the conversion redone (:func:`~workbench.precision.validity.repair_loop`);
    a model that cannot be repaired is a :class:`WorkbenchError`, never an invalid variant.
    """
    from .validity import hide_subgraphs, repair_loop, restore_subgraphs, shape_compute_nodes

    proto = model.proto_with_data()
    toposort_model(proto)  # repair_float_types walks the nodes in order
    dropped = drop_initializer_inputs(proto)
    named = name_unnamed_nodes(proto)  # unnamed nodes can be kept by their generated name
    check_keep_nodes(proto, req.keep_nodes)
    proto, upgraded = upgrade_opset(proto, min_opset)
    # After the upgrade: version_converter adds unnamed nodes (Softmax-13 adapters), and the converter names
    # its Casts after node names (two unnamed nodes would write the same Cast output).
    named += name_unnamed_nodes(proto)
    op_block = list(dict.fromkeys(default_op_block_list() + list(req.keep_op_types)))
    mask_clamped: dict = {}
    if low == TensorProto.FLOAT16 and req.opts.get("clamp_masks", True):
        from .fp16safety import clamp_mask_constants
        mask_clamped = clamp_mask_constants(proto)  # finfo(float32).min / -inf mask fills -> -1e4
    range_keep: dict[str, str] = {}
    if req.opts.get("range_check", True) and low == TensorProto.FLOAT16:
        range_keep = fp16_range_blocks(proto, underflow_fraction=float(req.opts.get("underflow_fraction", 0.01)))
    norm_keep: dict[str, str] = {}
    if req.opts.get("keep_norms", True):
        norm_keep = norm_variance_nodes(proto)
    else:
        op_block = [t for t in op_block if t not in EXTRA_FP32_OPS or t in req.keep_op_types]
    types = _elem_types(proto)
    shape_keep = _float_nodes(proto, types, shape_compute_nodes(proto))
    holders = {n.name: n.op_type for n in proto.graph.node
               if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute)}
    subgraph_keep: dict[str, str] = {}  # filled by the repair loop: holders whose converted bodies failed
    base_block = list(dict.fromkeys(list(req.keep_nodes) + list(range_keep) + list(norm_keep) + list(shape_keep)))
    declared_out = {o.name: o.type.tensor_type.elem_type for o in proto.graph.output}
    source = onnx.ModelProto()
    source.CopyFrom(proto)
    sub_out_types = {o: types.get(o, 0) for n in proto.graph.node if n.name in holders for o in n.output}
    rounds: list[dict] = []

    def convert_once(extra: dict[str, str]) -> onnx.ModelProto:
        from onnxconverter_common import float16

        p = onnx.ModelProto()
        p.CopyFrom(source)
        node_block = list(dict.fromkeys(base_block + list(extra)))
        # A holder kept in fp32 (by the user or by the repair loop) keeps its bodies fp32: the converter
        # would retype them inconsistently with the fp32 outer tensors they read.
        hidden = hide_subgraphs(p, {n for n in node_block if n in holders})
        try:
            with linear_converter_sort(), warnings.catch_warnings():
                if req.opts.get("range_check", True):
                    # one UserWarning per truncated constant: the range check records what matters
                    warnings.simplefilter("ignore", UserWarning)
                conv = float16.convert_float_to_float16(
                    p, min_positive_val=FP16_TINY, max_finite_val=FP16_MAX, keep_io_types=req.keep_io_types,
                    op_block_list=op_block, node_block_list=node_block, check_fp16_ready=True)
        except ValueError as e:
            if "already converted to float16" in str(e):
                raise UnsupportedError(f"model {model.name!r} already holds float16 tensors; it is not an fp32 model",
                                       hint="start from the fp32 model") from None
            raise
        restore_subgraphs(conv, hidden)
        blocked = {n.name for n in conv.graph.node if n.op_type in op_block or n.name in node_block}
        out_types = dict(declared_out) if req.keep_io_types else {
            o.name: o.type.tensor_type.elem_type for o in conv.graph.output}
        facts_round: dict = {"node_block_list": node_block, "blocked": blocked}
        facts_round["repair_casts"] = repair_float_types(conv, blocked, declared_outputs=out_types,
                                                         output_types=sub_out_types)
        facts_round["round_trip_casts_removed"] = drop_round_trip_casts(conv)
        if low == TensorProto.BFLOAT16:
            facts_round["retyped_tensors"] = retype_to_bf16(conv, source)
            fallback: list[str] = []
            facts_round["repair_casts"] += repair_float_types(conv, blocked, low=TensorProto.BFLOAT16,
                                                              fallback=fallback, output_types=sub_out_types)
            facts_round["fp32_no_bf16_in_opset"] = fallback
        rounds.append(facts_round)
        return conv

    what = "bf16" if low == TensorProto.BFLOAT16 else "fp16"
    conv, log = repair_loop(convert_once, what, candidates={n.name for n in source.graph.node})
    last = rounds[-1]
    subgraph_keep = {n: f"{holders[n]} holds a subgraph: kept fp32 with its bodies (casts at the boundary)"
                     for n in last["node_block_list"] if n in holders}
    node_block = last["node_block_list"]
    kept = sorted(n.name for n in source.graph.node if n.op_type in op_block or n.name in node_block)
    reasons: dict[str, str] = {}
    for n in source.graph.node:
        if n.name not in node_block and n.op_type not in op_block:
            continue
        if n.name in subgraph_keep and n.name in log.kept:
            reasons[n.name] = f"{subgraph_keep[n.name]}; {log.kept[n.name]}"
            continue
        reasons[n.name] = (log.kept.get(n.name) or subgraph_keep.get(n.name) or range_keep.get(n.name) or norm_keep.get(n.name)
                           or shape_keep.get(n.name) or subgraph_keep.get(n.name)
                           or ("keep_nodes" if n.name in req.keep_nodes else f"op type {n.op_type} is on the fp32 list"))
    facts = {"op_block_list": op_block, "node_block_list": node_block, "range_kept": range_keep,
             "norm_kept": norm_keep, "shape_kept": shape_keep, "subgraph_kept": subgraph_keep,
             "validation_kept": log.kept, "kept_high_precision": kept, "kept_reasons": reasons,
             "mask_clamped": mask_clamped,
             "repair_casts": last["repair_casts"], "round_trip_casts_removed": last["round_trip_casts_removed"],
             "validation": {"checks": ["onnx.checker(full_check=True)", "infer_shapes(strict_mode=True, check_type=True)"],
                            "passed": True, "rounds": log.rounds, "problems_repaired": log.problems},
             "opset_upgrade": upgraded, "named_unnamed_nodes": len(named), "dropped_initializer_inputs": dropped,
             "converter_args": {"min_positive_val": FP16_TINY, "max_finite_val": FP16_MAX}}
    if low == TensorProto.FLOAT16 and req.opts.get("safety_check", True):
        from .fp16safety import fp16_safety, fp16_safety_summary
        try:
            facts["fp16_safety"] = fp16_safety_summary(fp16_safety(model))
        except Exception as e:  # noqa: BLE001 - a report aid; the recipe result stands without it
            facts["fp16_safety"] = {"error": short(e)}
    if low == TensorProto.BFLOAT16:
        facts["retyped_tensors"] = last["retyped_tensors"]
        facts["fp32_no_bf16_in_opset"] = last["fp32_no_bf16_in_opset"]
    return conv, source, facts


class Fp16Recipe(Recipe):
    precision = "fp16"
    tool = "onnxconverter-common"
    summary = ("casts to float16 via onnxconverter-common; precision-sensitive ops and consumers of "
               "out-of-range constants stay fp32; I/O stays fp32 by default")

    def default_keep(self) -> list[str]:
        return default_op_block_list()

    def apply(self, model: Model, req: Request) -> Variant:
        if req.tool == "modelopt":
            from .modelopt import autocast
            return autocast(model, req, "fp16")
        conv, source, facts = convert_fp16(model, req)
        full_check(conv, "fp16")
        facts["ort_check"] = "skipped (ort_check=False)"
        if req.opts.get("ort_check", True):
            try:
                ort_session_check(source, "fp32 source")
            except WorkbenchError as e:  # custom ops / plugins: ORT cannot judge this model at all
                facts["ort_check"] = f"skipped: ONNX Runtime cannot load the fp32 model either ({e.message})"
            else:
                ort_session_check(conv, "fp16")
                facts["ort_check"] = "passed"
        recipe = base_recipe("onnxconverter-common", req, **facts)
        return Variant(model=model.derive(conv, name=model.name), precision="fp16", source_hash=model.hash,
                       recipe=recipe, backend_flags={"tf32": False},
                       name=variant_name(model, "fp16", req.mixed))


def retype_to_bf16(conv: onnx.ModelProto, source: onnx.ModelProto) -> int:
    """Turn an fp16-placed graph into bf16 (in place); constant data comes from ``source`` (fp32).

    Returns the number of tensors retyped.
    """
    import ml_dtypes

    orig_inits = {i.name: i for i in source.graph.initializer}
    orig_attrs = {(n.name, a.name): a.t for n in source.graph.node for a in n.attribute
                  if a.type == onnx.AttributeProto.TENSOR}
    count = 0

    def to_bf16(t: onnx.TensorProto, original: onnx.TensorProto | None) -> None:
        src = original if original is not None and original.data_type == TensorProto.FLOAT else t
        a = numpy_helper.to_array(src).astype(np.float32)
        new = numpy_helper.from_array(a.astype(ml_dtypes.bfloat16), t.name)
        t.CopyFrom(new)

    g = conv.graph
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT16:
            to_bf16(init, orig_inits.get(init.name))
            count += 1
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT16:
                to_bf16(a.t, orig_attrs.get((n.name, a.name)))
                count += 1
            if n.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT16:
                a.i = TensorProto.BFLOAT16
                count += 1
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT16:
            vi.type.tensor_type.elem_type = TensorProto.BFLOAT16
            count += 1
    return count


class Bf16Recipe(Recipe):
    precision = "bf16"
    tool = "onnxconverter-common+ml_dtypes"
    summary = ("onnxconverter-common's fp16 placement retyped to bfloat16 (constants re-converted from "
               "fp32 with ml_dtypes); same fp32 keep list as fp16")

    def default_keep(self) -> list[str]:
        return default_op_block_list()

    def apply(self, model: Model, req: Request) -> Variant:
        if req.tool == "modelopt":
            from .modelopt import autocast
            return autocast(model, req, "bf16")
        conv, source, facts = convert_fp16(model, req, low=TensorProto.BFLOAT16,
                                           min_opset=int(req.opts.get("min_opset", BF16_MIN_OPSET)))
        full_check(conv, "bf16")
        recipe = base_recipe("onnxconverter-common", req, **facts, retyped_with=f"ml_dtypes {_ml_version()}")
        return Variant(model=model.derive(conv, name=model.name), precision="bf16", source_hash=model.hash,
                       recipe=recipe, backend_flags={"tf32": False},
                       name=variant_name(model, "bf16", req.mixed))


def _ml_version() -> str:
    import ml_dtypes
    return getattr(ml_dtypes, "__version__", "?")
