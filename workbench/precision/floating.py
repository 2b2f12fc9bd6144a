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

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..errors import UnsupportedError, WorkbenchError
from ..model import Model
from ..variant import Variant
from .base import (Recipe, Request, base_recipe, check_keep_nodes, drop_initializer_inputs, full_check,
                   name_unnamed_nodes,
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


def _tensor_problem(t: onnx.TensorProto, underflow_fraction: float) -> str | None:
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
        why = _tensor_problem(init, underflow_fraction)
        if why:
            bad[init.name] = why
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    why = _tensor_problem(a.t, underflow_fraction)
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


def convert_fp16(model: Model, req: Request, *, low: int = TensorProto.FLOAT16, min_opset: int = 0
                 ) -> tuple[onnx.ModelProto, onnx.ModelProto, dict]:
    """(converted proto, the fp32 copy it came from, recipe facts) with onnxconverter-common's placement."""
    from onnxconverter_common import float16

    proto = model.proto_with_data()
    dropped = drop_initializer_inputs(proto)
    named = name_unnamed_nodes(proto)
    check_keep_nodes(proto, req.keep_nodes)
    proto, upgraded = upgrade_opset(proto, min_opset)
    op_block = list(dict.fromkeys(default_op_block_list() + list(req.keep_op_types)))
    range_keep: dict[str, str] = {}
    if req.opts.get("range_check", True) and low == TensorProto.FLOAT16:
        range_keep = fp16_range_blocks(proto, underflow_fraction=float(req.opts.get("underflow_fraction", 0.01)))
    norm_keep: dict[str, str] = {}
    if req.opts.get("keep_norms", True):
        norm_keep = norm_variance_nodes(proto)
    else:
        op_block = [t for t in op_block if t not in EXTRA_FP32_OPS or t in req.keep_op_types]
    node_block = list(dict.fromkeys(list(req.keep_nodes) + list(range_keep) + list(norm_keep)))
    declared_out = {o.name: o.type.tensor_type.elem_type for o in proto.graph.output}
    source = onnx.ModelProto()
    source.CopyFrom(proto)
    try:
        conv = float16.convert_float_to_float16(
            proto, min_positive_val=FP16_TINY, max_finite_val=FP16_MAX, keep_io_types=req.keep_io_types,
            op_block_list=op_block, node_block_list=node_block, check_fp16_ready=True)
    except ValueError as e:
        if "already converted to float16" in str(e):
            raise UnsupportedError(f"model {model.name!r} already holds float16 tensors; it is not an fp32 model",
                                   hint="start from the fp32 model") from None
        raise
    blocked = {n.name for n in conv.graph.node if n.op_type in op_block or n.name in node_block}
    if not req.keep_io_types:
        declared_out = {o.name: o.type.tensor_type.elem_type for o in conv.graph.output}
    casts = repair_float_types(conv, blocked, declared_outputs=declared_out)
    round_trips = drop_round_trip_casts(conv)
    kept = sorted(n.name for n in source.graph.node if n.op_type in op_block or n.name in node_block)
    facts = {"op_block_list": op_block, "node_block_list": node_block, "range_kept": range_keep,
             "norm_kept": norm_keep,
             "kept_high_precision": kept, "repair_casts": casts, "round_trip_casts_removed": round_trips, "opset_upgrade": upgraded, "named_unnamed_nodes": len(named),
             "dropped_initializer_inputs": dropped,
             "converter_args": {"min_positive_val": FP16_TINY, "max_finite_val": FP16_MAX}}
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
        facts["retyped_tensors"] = retype_to_bf16(conv, source)
        blocked = set(facts["kept_high_precision"])
        fallback: list[str] = []
        facts["repair_casts"] += repair_float_types(conv, blocked, low=TensorProto.BFLOAT16, fallback=fallback)
        facts["fp32_no_bf16_in_opset"] = fallback
        full_check(conv, "bf16")
        try:
            onnx.shape_inference.infer_shapes(conv, check_type=True, strict_mode=True)
        except Exception as e:
            raise WorkbenchError(f"bf16 graph fails strict shape inference: {e}",
                                 hint="this is a recipe bug; please report it with the model") from None
        recipe = base_recipe("onnxconverter-common", req, **facts, retyped_with=f"ml_dtypes {_ml_version()}")
        return Variant(model=model.derive(conv, name=model.name), precision="bf16", source_hash=model.hash,
                       recipe=recipe, backend_flags={"tf32": False},
                       name=variant_name(model, "bf16", req.mixed))


def _ml_version() -> str:
    import ml_dtypes
    return getattr(ml_dtypes, "__version__", "?")
