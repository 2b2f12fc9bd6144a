"""int8 and fp8 recipes: explicit Q/DQ through ONNX Runtime's static quantizer.

``onnxruntime.quantization.quantize_static`` in QDQ format with symmetric activations and weights,
per-channel weights and unquantized (fp32) biases: the form TensorRT consumes (TensorRT 11 builds it
strongly typed; there is no INT8 builder flag or calibrator any more). ``quant_pre_process``
(symbolic shape inference + ORT graph optimizations such as constant folding and Conv+BN fusion) runs
first; when it fails the recipe goes on without it and records why.

ORT's quantizer only works on files, so everything happens inside a TemporaryDirectory; nothing is
written next to the user's model.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from ..edit.topo import toposort_model
from ..errors import UnsupportedError, UsageError, WorkbenchError
from ..model import Model
from ..variant import Variant
from .base import (Recipe, Request, base_recipe, check_keep_nodes, drop_initializer_inputs, full_check,
                   name_unnamed_nodes, short, upgrade_opset, variant_name)
from .calibration import ProgressReader, collect_ranges, prepare_calibration

#: Op types whose inputs (and outputs) get Q/DQ by default: the weighted ops TensorRT runs in INT8.
TENSORRT_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")

#: Transformer placement: only MatMul/Gemm with a constant weight (``MatMulConstBOnly``) get Q/DQ on their
#: inputs; attention's activation x activation MatMuls, LayerNorm, Softmax, GELU and residual Adds stay float.
TRANSFORMER_OP_TYPES = ("MatMul", "Gemm", "Conv")
TRANSFORMER_EXTRA = {"MatMulConstBOnly": True, "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm", "Conv"]}

#: ONNX Runtime CPU form for CNNs: the weighted ops plus the ops ORT has integer kernels for (QLinearAdd,
#: QLinearConcat, QLinearGlobalAveragePool, int8 MaxPool), so activations stay int8 between convolutions
#: instead of a DequantizeLinear/QuantizeLinear round trip around every residual Add and pooling.
ORT_CPU_CNN_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Concat", "MaxPool", "AveragePool",
                        "GlobalAveragePool", "Relu", "Clip")

#: SmoothQuant migration strength for the transformer placement (0 disables). 0.75 on the real MiniLM-L6
#: encoder: sentence-embedding cosine 0.995 vs fp32 (none: 0.974; 0.5: 0.965; 0.6: 0.991) - docs/precision.md.
DEFAULT_SMOOTH_ALPHA = 0.75

#: int8 target forms. ``tensorrt``: symmetric signed Q/DQ (what TensorRT fuses); ``onnxruntime-cpu``: uint8
#: asymmetric activations, int8 weights, int32 bias (what ONNX Runtime's CPU kernels run fast).
TARGETS = ("tensorrt", "onnxruntime-cpu")

CALIBRATION_METHODS = ("minmax", "entropy", "percentile", "distribution")

#: Calibrator settings. quantize_static cannot pass histogram sizes to its calibrators, and its entropy
#: default (128 bins, 128 quantized bins) leaves the KL search one candidate: the min/max range. We
#: calibrate ourselves with TensorRT's entropy setting (2048 bins searched down to 128).
CALIBRATOR_DEFAULTS = {
    "minmax": {},
    "entropy": {"num_bins": 2048, "num_quantized_bins": 128},
    "percentile": {"num_bins": 2048, "percentile": 99.999},
    "distribution": {"num_bins": 2048, "scenario": "same"},
}


#: TensorRT consumes symmetric signed Q/DQ (zero point 0) and fuses fp32 biases itself.
TENSORRT_EXTRA = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
#: ONNX Runtime CPU's fast integer kernels (MLAS U8S8: QLinearConv/QLinearMatMul) want uint8 asymmetric
#: activations, int8 symmetric weights and int32 biases. Not consumable by TensorRT (no uint8 Q/DQ).
ORT_CPU_EXTRA = {"ActivationSymmetric": False, "WeightSymmetric": True, "QuantizeBias": True}


def default_target(backend: str | None) -> tuple[str, str]:
    """The int8 form a backend runs fast: ``(target, why)``."""
    if backend in ("onnxruntime", "onnxruntime-cpu", "ort", "cpu"):
        return "onnxruntime-cpu", (f"backend {backend!r}: ONNX Runtime CPU fuses uint8-activation Q/DQ into its integer "
                                   "kernels (QLinearConv / MatMulInteger); symmetric int8 activations fall back to "
                                   "slower paths")
    if backend:
        return "tensorrt", f"backend {backend!r}: symmetric int8 Q/DQ (zero point 0), the form TensorRT fuses"
    return "tensorrt", "no backend given: symmetric int8 Q/DQ (TensorRT form, portable to ORT)"


def resolve_target(precision: str, opts: dict) -> tuple[str, str]:
    """``(target, reason)`` from ``opts["target"]`` (alias ``qdq_form``, for callers whose own ``target``
    means something else); "auto" or absent: from ``opts["backend"]``."""
    target = opts.get("qdq_form") or opts.get("target", "auto") or "auto"
    if target == "auto":
        if precision != "int8":
            return "tensorrt", f"{precision}: Q/DQ in the TensorRT form (ONNX Runtime CPU has no {precision} kernels)"
        return default_target(opts.get("backend"))
    if target == "tensorrt":
        return target, "asked for (target='tensorrt')"
    if target == "onnxruntime-cpu" and precision == "int8":
        return target, "asked for (target='onnxruntime-cpu')"
    raise UsageError(f"unknown {precision} target {target!r}; choose 'auto', 'tensorrt'"
                     + (" or 'onnxruntime-cpu'" if precision == "int8" else ""))


def looks_like_transformer(proto: onnx.ModelProto) -> tuple[bool, str]:
    """A Softmax plus a MatMul of two activations (attention), or LayerNorm next to MatMuls."""
    g = proto.graph
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    ops = [n.op_type for n in g.node]
    act_matmuls = sum(1 for n in g.node if n.op_type == "MatMul" and len(n.input) == 2
                      and n.input[0] not in consts and n.input[1] not in consts)
    if "Softmax" in ops and act_matmuls:
        return True, f"Softmax and {act_matmuls} activation x activation MatMul(s) (attention)"
    if "LayerNormalization" in ops and "MatMul" in ops:
        return True, "LayerNormalization next to MatMuls"
    return False, "no attention pattern (Softmax + activation MatMul) or LayerNorm found"


def resolve_placement(proto: onnx.ModelProto, placement: str) -> tuple[str, str]:
    """``("cnn" | "transformer", reason)``; ``placement`` is "auto", "cnn" or "transformer"."""
    if placement in ("cnn", "transformer"):
        return placement, f"asked for (placement={placement!r})"
    if placement != "auto":
        raise UsageError(f"unknown placement {placement!r}; choose 'auto', 'cnn' or 'transformer'")
    is_tf, why = looks_like_transformer(proto)
    return ("transformer", why) if is_tf else ("cnn", why)


def _has_calibration_cache() -> bool:
    """Whether quantize_static accepts precomputed ranges (``calibration_cache_path``, recent ORT)."""
    import inspect

    from onnxruntime.quantization import quantize_static
    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def _calibrate(model_path: Path, tmpd: Path, op_types, method, calib_opts: dict, cset, progress: bool,
               desc: str) -> Path:
    """Collect activation ranges with ORT's calibrator, one run at a time in bounded memory
    (``calibration.collect_ranges``); write them as a quantize_static calibration cache."""
    from onnxruntime.quantization.calibrate import save_tensors_data

    ranges, stats = collect_ranges(model_path, tmpd / "augmented.onnx", op_types, method, calib_opts, cset,
                                   progress=progress, desc=desc)
    cset.runs = stats
    cache = tmpd / "calibration.json"
    save_tensors_data(ranges, cache)
    return cache


def _calibration_method(name: str):
    from onnxruntime.quantization import CalibrationMethod
    table = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile, "distribution": CalibrationMethod.Distribution}
    key = str(name).lower()
    if key not in table:
        raise UsageError(f"unknown calibration_method {name!r}; choose from {', '.join(CALIBRATION_METHODS)}")
    return table[key]


def fp8_supported() -> tuple[bool, str]:
    """Whether this ONNX Runtime's quantizer can write FLOAT8E4M3FN Q/DQ."""
    try:
        from onnxruntime.quantization import QuantType
    except ImportError as e:  # pragma: no cover
        return False, f"onnxruntime.quantization unavailable: {e}"
    if not hasattr(QuantType, "QFLOAT8E4M3FN"):
        return False, "this onnxruntime has no QuantType.QFLOAT8E4M3FN"
    return True, ""


def _preprocess(src: Path, dst: Path, keep_nodes, opts: dict) -> tuple[Path, dict]:
    """Run quant_pre_process; fall back gracefully. Returns (model path to quantize, record)."""
    if not opts.get("preprocess", True):
        return src, {"applied": False, "reason": "disabled (preprocess=False)"}
    from onnxruntime.quantization.shape_inference import quant_pre_process

    def names_ok(p: Path) -> list[str]:
        if not keep_nodes:
            return []
        have = {n.name for n in onnx.load(str(p), load_external_data=False).graph.node}
        return [k for k in keep_nodes if k not in have]

    attempts = [{"skip_optimization": False}, {"skip_optimization": True}]
    why = ""
    for kw in attempts:
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False, auto_merge=True, **kw)
        except Exception as e:  # symbolic shape inference / optimizer can fail on unusual graphs
            why = f"quant_pre_process({kw}) failed: {short(e)}"
            continue
        lost = names_ok(dst)
        if lost:
            why = f"ORT graph optimization renamed/fused keep_nodes {lost}"
            continue
        return dst, {"applied": True, **kw, **({"note": why} if why else {})}
    return src, {"applied": False, "reason": why}


def sums_to_adds(proto: onnx.ModelProto) -> list[str]:
    """Rewrite main-graph ``Sum`` nodes as ``Add`` (two inputs) or a chain of ``Add`` (more), in place.

    Exact for two inputs (``Sum(a, b)`` is ``Add(a, b)`` with the same broadcasting); a longer ``Sum`` becomes
    ``((a + b) + c) + ...``, the order ONNX Runtime's own Sum kernel adds in. Exporters (Caffe2, some
    TensorFlow paths) write residual connections as ``Sum``, which no quantizer handles: ONNX Runtime leaves
    them in float with a DequantizeLinear/QuantizeLinear round trip around each (16 in ResNet-50), and
    TensorRT cannot fuse Q/DQ across them. As ``Add`` they become QLinearAdd / fused residual adds. The first
    Add keeps the Sum's name (so ``keep_nodes`` and layerwise matching still find it) and the last one its
    output. Returns the rewritten node names."""
    from onnx import helper

    done, nodes = [], []
    for n in proto.graph.node:
        if n.op_type != "Sum" or n.domain not in ("", "ai.onnx") or len(n.input) < 2:
            nodes.append(n)
            continue
        acc = n.input[0]
        for i, x in enumerate(n.input[1:], start=1):
            last = i == len(n.input) - 1
            out = n.output[0] if last else f"{n.output[0]}__sum{i}"
            nodes.append(helper.make_node("Add", [acc, x], [out], name=n.name if i == 1 else f"{n.name}__add{i}"))
            acc = out
        done.append(n.name)
    if done:
        del proto.graph.node[:]
        proto.graph.node.extend(nodes)
    return done


def flatten_gemm_bias(proto: onnx.ModelProto) -> list[str]:
    """Reshape Gemm biases ``C`` of shape ``[1, N]`` (constant initializers) to ``[N]``, and broadcast a
    single-value bias (shape ``[]``, ``[1]`` or ``[1, 1]``) to ``[N]`` when the weight ``B`` is an initializer
    that gives ``N``; in place.

    Exact: Gemm broadcasts ``C`` unidirectionally to ``(M, N)``, so ``[1, N]``, a single value and ``[N]``
    mean the same. ONNX Runtime's quantizer indexes a per-channel bias by output channel and crashes on a
    2-D bias (``_adjust_weight_scale_for_int32_bias``: "truth value of an array ... is ambiguous"); tf2onnx
    and ORT's own MatMul+Add fusion write such biases. With an int32 bias (the ONNX Runtime CPU form) it also
    crashes on a single-value bias ("cannot reshape array of size N into shape (1,)"). Returns the Gemm
    node names whose bias was rewritten."""
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    uses: dict[str, int] = {}
    for n in proto.graph.node:
        for x in n.input:
            uses[x] = uses.get(x, 0) + 1
    done: list[str] = []
    for n in proto.graph.node:
        if n.op_type != "Gemm" or len(n.input) < 3 or n.input[2] not in inits:
            continue
        c = inits[n.input[2]]
        if len(c.dims) == 2 and c.dims[0] == 1 and c.dims[1] > 1:
            flat = numpy_helper.to_array(c).reshape(-1)
        elif len(c.dims) <= 2 and all(d == 1 for d in c.dims) and n.input[1] in inits \
                and len(inits[n.input[1]].dims) == 2:  # one value for every output channel
            w = inits[n.input[1]]
            trans_b = next((a.i for a in n.attribute if a.name == "transB"), 0)
            n_out = w.dims[0] if trans_b else w.dims[1]
            if list(c.dims) == [n_out]:  # already [N] (N = 1)
                continue
            flat = np.broadcast_to(numpy_helper.to_array(c).reshape(-1), (n_out,)).copy()
        else:
            continue
        if uses.get(c.name, 0) == 1:  # only this Gemm reads it: reshape in place
            c.CopyFrom(numpy_helper.from_array(flat, c.name))
        else:  # shared: give this Gemm its own 1-D copy
            new = numpy_helper.from_array(flat, f"{c.name}__wb_flat_{len(done)}")
            proto.graph.initializer.append(new)
            n.input[2] = new.name
        done.append(n.name)
    return done


def _failed_in(e: BaseException, function: str) -> bool:
    """Whether ``function`` is on the traceback of ``e`` (or of its cause)."""
    import traceback

    while e is not None:
        if any(fr.name == function for fr in traceback.extract_tb(e.__traceback__)):
            return True
        e = e.__cause__ or e.__context__
    return False


def scope_producers(proto: onnx.ModelProto) -> dict[str, tuple[str, str]]:
    """Main-graph tensors that If/Loop/Scan bodies read from the outer scope → (producer node name, op type);
    graph inputs and initializers map to ``("", "")``."""
    from ..edit.topo import outer_refs, subgraphs_of

    producer = {o: (n.name, n.op_type) for n in proto.graph.node for o in n.output if o}
    reads: dict[str, tuple[str, str]] = {}
    for n in proto.graph.node:
        if subgraphs_of(n):
            for t in outer_refs(n):
                reads[t] = producer.get(t, ("", ""))
    return reads


def scope_changes(reads: dict[str, tuple[str, str]], q: onnx.ModelProto) -> dict[str, str]:
    """Source nodes to keep float because the quantized graph ``q`` produces a tensor that a body reads with a
    different node than the source did (ORT removed a Relu/Clip into the Q range and renamed)."""
    producer = {o: (n.name, n.op_type) for n in q.graph.node for o in n.output if o}
    out: dict[str, str] = {}
    for t, (src_node, src_op) in reads.items():
        now = producer.get(t, ("", ""))
        if src_node and now != (src_node, src_op):
            out[src_node] = (f"its output {t!r} is read inside an If/Loop/Scan body; the quantizer replaced "
                             f"{src_op} {src_node!r} there with {now[1] or 'nothing'} {now[0]!r} (it folds a quantized "
                             f"activation into the Q range, which the body does not see)")
    return out


def subgraph_summary(proto: onnx.ModelProto, op_types) -> dict | None:
    """Nodes inside If/Loop/Scan bodies: ONNX Runtime's QDQ quantizer never quantizes inside them (and
    neither does this recipe: a Q/DQ pair there would read or write tensors across scopes), so they stay
    float. ``None`` when the model has no subgraphs."""
    from ..edit.topo import iter_graphs, subgraphs_of

    holders: list[str] = []
    inside = 0
    quantizable: dict[str, int] = {}
    for n in proto.graph.node:
        subs = subgraphs_of(n)
        if not subs:
            continue
        holders.append(n.name)
        for sg in subs:
            for g in iter_graphs(sg):
                for sn in g.node:
                    inside += 1
                    if sn.op_type in op_types:
                        quantizable[sn.op_type] = quantizable.get(sn.op_type, 0) + 1
    if not holders:
        return None
    return {"holders": holders, "nodes_inside": inside, "quantizable_inside": quantizable,
            "action": "left float: Q/DQ is placed in the main graph only (ONNX Runtime's QDQ quantizer does not "
                      "enter If/Loop/Scan bodies); the main graph is re-sorted with outer-scope reads as "
                      "dependencies (ONNX Runtime's own sort ignores them)"}


class _QuantRecipe(Recipe):
    tool = "onnxruntime"
    quant_type_name = "QInt8"
    min_opset = 13

    def default_keep(self) -> list[str]:
        return []

    def _settings(self, req: Request) -> tuple[str, str, dict]:
        """(activation QuantType name, weight QuantType name, extra_options) for the resolved target."""
        target, _ = resolve_target(self.precision, req.opts)
        if target == "tensorrt":
            return self.quant_type_name, self.quant_type_name, dict(TENSORRT_EXTRA)
        return "QUInt8", "QInt8", dict(ORT_CPU_EXTRA)

    def _method(self, req: Request) -> str:
        return req.calibration_method

    def apply(self, model: Model, req: Request) -> Variant:
        proto = model.proto_with_data()
        dropped = drop_initializer_inputs(proto)
        toposort_model(proto)
        name_unnamed_nodes(proto)  # unnamed nodes can be kept by their generated name
        check_keep_nodes(proto, req.keep_nodes)
        proto, upgraded = upgrade_opset(proto, self.min_opset)
        name_unnamed_nodes(proto)  # after the upgrade (version_converter adds unnamed nodes)
        method_name = self._method(req)
        method = _calibration_method(method_name)
        if req.tool != "modelopt":
            self._settings(req)  # validate the target before any work
            resolve_placement(proto, req.opts.get("placement", "auto"))
        min_samples = req.opts.get("min_samples")  # None: fewer than 16 samples warns (calibration.py)
        # Validate the data before any quantizer runs.
        cset = prepare_calibration(model, req.calib, num_calib=req.num_calib, min_samples=min_samples,
                                   batch_size=req.opts.get("batch_size"), shapes=req.opts.get("shapes"))
        if req.tool == "modelopt":
            from .modelopt import quantize as mo_quantize
            return mo_quantize(model, proto, req, self.precision, cset, method_name)
        return self._ort_quantize(model, proto, req, cset, method, method_name,
                                  {"opset_upgrade": upgraded, "dropped_initializer_inputs": dropped})

    def _ort_quantize(self, model: Model, proto: onnx.ModelProto, req: Request, cset, method, method_name,
                      facts: dict) -> Variant:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        from .validity import repair_loop

        target, target_reason = resolve_target(self.precision, req.opts)
        placement, placement_reason = resolve_placement(proto, req.opts.get("placement", "auto"))
        default_ops = (TRANSFORMER_OP_TYPES if placement == "transformer" else
                       ORT_CPU_CNN_OP_TYPES if target == "onnxruntime-cpu" else TENSORRT_OP_TYPES)
        op_placement = req.opts.get("op_types_to_quantize") or list(default_ops)
        op_types = [t for t in op_placement if t not in set(req.keep_op_types)]
        if not op_types:
            raise UsageError(f"keep_op_types {list(req.keep_op_types)} leaves no op type to quantize "
                             f"(placement: {list(op_placement)})")
        act_name, w_name, extra = self._settings(req)
        act_type, w_type = getattr(QuantType, act_name), getattr(QuantType, w_name)
        if placement == "transformer":
            extra.update(TRANSFORMER_EXTRA)
        if not extra.get("QuantizeBias", True):
            # The adjustment enlarges weight scales so an int32 bias fits; with fp32 biases there is no int32
            # bias and it would only cost weight precision.
            extra["QDQDisableWeightAdjustForInt32Bias"] = True
        extra.update(req.opts.get("extra_options", {}))
        per_channel = bool(req.opts.get("per_channel", True))
        t_start = time.perf_counter()
        smooth: dict = {"applied": False, "reason": f"placement {placement!r}"}
        alpha = req.opts.get("smoothquant", DEFAULT_SMOOTH_ALPHA)
        if placement == "transformer" and alpha not in (None, False, 0):
            from .smooth import apply_smoothquant, smooth_groups
            names = [n.name for g in smooth_groups(proto).values() for n in g if n.name not in set(req.keep_nodes)]
            smooth = apply_smoothquant(proto, cset.batches, alpha=float(alpha), nodes=names)
        elif placement == "transformer":
            smooth = {"applied": False, "reason": "disabled (smoothquant=None)"}
        with tempfile.TemporaryDirectory(prefix="wb-quant-") as tmp:
            tmpd = Path(tmp)
            src = tmpd / "input.onnx"
            onnx.save_model(proto, str(src))
            qin, pre = _preprocess(src, tmpd / "preprocessed.onnx", req.keep_nodes, req.opts)
            qin_proto = onnx.load(str(qin))
            flattened = flatten_gemm_bias(qin_proto)
            summed = sums_to_adds(qin_proto) if "Add" in op_types else []
            if flattened or summed:
                qin = tmpd / "canonicalized.onnx"
                onnx.save_model(qin_proto, str(qin))
            subgraphs = subgraph_summary(qin_proto, op_types)
            scope_reads = scope_producers(qin_proto)
            qin_names = {n.name for n in qin_proto.graph.node}
            main_quantizable = {n.name for n in qin_proto.graph.node if n.op_type in op_types}
            init_consumers = _initializer_consumers(qin_proto, op_types)
            del qin_proto
            out = tmpd / "quantized.onnx"
            calib_opts = {**CALIBRATOR_DEFAULTS.get(method_name, {}), **req.opts.get("calibrator_options", {})}
            logger = logging.getLogger()
            level = logger.level
            logger.setLevel(max(level, logging.ERROR))  # ORT warns about pre-processing on every call
            state: dict = {}

            def quantize_once(extra_keep: dict[str, str]) -> onnx.ModelProto:
                exclude = list(dict.fromkeys(list(req.keep_nodes) + list(extra_keep)))
                if not main_quantizable - set(exclude):
                    # Nothing for ORT to quantize (every quantizable node is inside If/Loop/Scan bodies or kept):
                    # its histogram calibrators (entropy/percentile/distribution, so fp8 always) would crash
                    # with "Histogram has not been collected". The model goes on unquantized, and says so below.
                    state["quantizer_skipped"] = "no quantizable node left in the main graph"
                    q = onnx.load(str(qin))
                    if toposort_model(q):
                        state["resorted"] = True
                    return q
                state.pop("quantizer_skipped", None)
                common = dict(quant_format=QuantFormat.QDQ, op_types_to_quantize=op_types, per_channel=per_channel,
                              reduce_range=False, activation_type=act_type, weight_type=w_type,
                              nodes_to_exclude=exclude or None, calibrate_method=method, extra_options=extra)
                desc = f"calibrating {model.name} ({method_name})"
                with contextlib.redirect_stdout(io.StringIO()):  # ORT's calibrators print their progress
                    if _has_calibration_cache():
                        if "cache" not in state:  # calibrate once; repair rounds reuse the ranges
                            t0 = time.perf_counter()
                            state["cache"] = _calibrate(qin, tmpd, op_types, method, calib_opts, cset,
                                                        req.progress, desc)
                            state["calib_seconds"] = time.perf_counter() - t0
                        quantize_static(str(qin), str(out), None, calibration_cache_path=str(state["cache"]),
                                        **common)
                    else:  # older onnxruntime: its calibrators with their default settings
                        state["calib_opts_note"] = "this onnxruntime's quantize_static takes no calibrator options"
                        t0 = time.perf_counter()
                        reader = ProgressReader(cset, progress=req.progress, desc=desc)
                        try:
                            quantize_static(str(qin), str(out), reader, **common)
                        finally:
                            reader.close()
                        state["calib_seconds"] = time.perf_counter() - t0  # includes quantization here
                q = onnx.load(str(out))
                # ORT's quantizer re-sorts the main graph by node inputs only; a node holding a subgraph that
                # reads an outer tensor can land before that tensor's producer. Re-sort with those reads.
                if toposort_model(q):
                    state["resorted"] = True
                return q

            scope_keep: dict[str, str] = {}

            def quantize_scoped(extra_keep: dict[str, str]) -> onnx.ModelProto:
                # Tensors read inside If/Loop/Scan bodies must keep their producer: ORT folds a quantized Relu/Clip
                # into the Q range and gives its output name to the node before it, which the main graph never
                # sees (its consumers read the DequantizeLinear) but a body reading the name would (unclipped).
                for _ in range(4):
                    q = quantize_nan_guarded({**extra_keep, **scope_keep})
                    moved = scope_changes(scope_reads, q)
                    if not moved:
                        return q
                    scope_keep.update(moved)
                raise WorkbenchError(f"the {self.precision} recipe changed tensors read inside subgraphs of "
                                     f"{model.name!r} even with {sorted(scope_keep)} kept float",
                                     hint="keep_op_types=['Relu','Clip'] or report the model")

            nan_keep: dict[str, str] = {}

            def quantize_nan_guarded(extra_keep: dict[str, str]) -> onnx.ModelProto:
                # ORT refuses a quantized weight holding NaN ("Initializer 'W_quantized' has nan."): its fp8
                # scale is std/std_e4m3 per channel, 0 for a constant (e.g. all-zero) channel, and 0/0 is NaN.
                # Keep the node(s) reading that weight float, with the reason, and quantize again.
                for _ in range(len(main_quantizable) + 1):
                    try:
                        return quantize_bias_guarded({**extra_keep, **nan_keep})
                    except ValueError as e:
                        m = _NAN_INIT.search(str(e))
                        if not m:
                            raise
                        name = m.group(1)
                        base = name[: -len("_quantized")] if name.endswith("_quantized") else name
                        nodes = [n for n in init_consumers.get(base, ()) if n not in nan_keep and n not in extra_keep]
                        if not nodes:
                            raise
                        why = _nan_reason(qin, base, self.precision)
                        for n in nodes:
                            nan_keep[n] = why
                raise WorkbenchError(f"the {self.precision} recipe kept {sorted(nan_keep)} float for NaN weights "
                                     f"and ONNX Runtime's quantizer still failed on {model.name!r}")

            def quantize_bias_guarded(extra_keep: dict[str, str]) -> onnx.ModelProto:
                try:
                    return quantize_once(extra_keep)
                except Exception as e:
                    if extra.get("QDQDisableWeightAdjustForInt32Bias") or not _failed_in(
                            e, "_adjust_weight_scale_for_int32_bias"):
                        raise
                    # ORT's int32-bias weight-scale adjustment crashed on this graph: quantize without it
                    extra["QDQDisableWeightAdjustForInt32Bias"] = True
                    state["bias_adjust_disabled"] = f"ONNX Runtime's int32-bias weight-scale adjustment failed " \
                                                    f"({short(e, 160)}); quantized without it"
                    return quantize_once(extra_keep)

            try:
                qproto, log = repair_loop(quantize_scoped, self.precision, candidates=qin_names)
            except WorkbenchError:
                raise
            except Exception as e:
                raise WorkbenchError(f"ONNX Runtime's quantizer failed on {model.name!r}: {short(e)}",
                                     hint="try keep_op_types/keep_nodes for the failing op, or preprocess=False") from e
            finally:
                logger.setLevel(level)
        if "calib_opts_note" in state:
            calib_opts = {"note": state["calib_opts_note"]}
        seconds = time.perf_counter() - t_start
        full_check(qproto, self.precision)
        keep_all = list(req.keep_nodes) + list(log.kept) + list(scope_keep) + list(nan_keep)
        kept = _kept_nodes(qproto, set(op_placement) | set(req.keep_op_types), keep_all)
        float_ops = _float_op_summary(qproto)
        n_dq = sum(1 for n in qproto.graph.node if n.op_type == "DequantizeLinear")
        if n_dq == 0:
            inside = (subgraphs or {}).get("quantizable_inside") or {}
            why = (f"all {sum(inside.values())} quantizable node(s) ({', '.join(sorted(inside))}) are inside "
                   f"If/Loop/Scan bodies ({', '.join(subgraphs['holders'][:3])}), which stay float" if inside else
                   f"no node of {op_types} outside subgraphs and kept nodes")
            import warnings

            from ..errors import WorkbenchWarning
            warnings.warn(f"the {self.precision} variant of {model.name!r} quantizes nothing: {why}; it runs as fp32",
                          WorkbenchWarning, stacklevel=3)
            if subgraphs is not None:
                subgraphs["quantized_nothing"] = why
        recipe = base_recipe(
            "onnxruntime", req, quantizer="onnxruntime.quantization.quantize_static", quant_format="QDQ",
            target=target, target_reason=target_reason, placement=placement, placement_reason=placement_reason,
            activation_type=act_name, weight_type=w_name,
            per_channel=per_channel, symmetric=bool(extra.get("ActivationSymmetric")) and bool(extra.get("WeightSymmetric")),
            op_types_to_quantize=op_types, extra_options=extra,
            calibration={"method": method_name, **cset.to_json(), "synthetic": cset.source == "synthetic",
                         "calibrator_options": calib_opts, "seconds": round(state.get("calib_seconds", 0.0), 3)},
            preprocess=pre, smoothquant=smooth, **facts,
            dequantize_nodes=n_dq, gemm_bias_flattened=flattened, sums_as_adds=summed, subgraphs=subgraphs, resorted_for_subgraphs=bool(state.get("resorted")),
            **({"bias_adjust_disabled": state["bias_adjust_disabled"]} if "bias_adjust_disabled" in state else {}), kept_high_precision=kept, validation_kept=log.kept,
            kept_reasons={**{k: "keep_nodes" for k in req.keep_nodes}, **log.kept, **scope_keep, **nan_keep},
            scope_kept=scope_keep, nan_kept=nan_keep, quantizer_skipped=state.get("quantizer_skipped"),
            float_ops=float_ops,
            validation={"checks": ["onnx.checker(full_check=True)", "infer_shapes(strict_mode=True, check_type=True)"],
                        "passed": True, "rounds": log.rounds, "problems_repaired": log.problems},
            total_seconds=round(seconds, 3))
        return Variant(model=model.derive(qproto, name=model.name), precision=self.precision, source_hash=model.hash,
                       recipe=recipe, backend_flags={"tf32": False},
                       name=variant_name(model, self.precision, req.mixed))


_NAN_INIT = re.compile(r"Initializer '([^']+)' has nan")


def _initializer_consumers(proto: onnx.ModelProto, op_types) -> dict[str, list[str]]:
    """Main-graph initializer name → the quantizable nodes that read it."""
    inits = {i.name for i in proto.graph.initializer}
    out: dict[str, list[str]] = {}
    for n in proto.graph.node:
        if n.op_type in op_types:
            for x in n.input:
                if x in inits:
                    out.setdefault(x, []).append(n.name)
    return out


def _nan_reason(model_path: Path, name: str, precision: str) -> str:
    """Why the quantized weight ``name`` held NaN: its constant channels, when it has any."""
    from onnx import numpy_helper

    m = onnx.load(str(model_path))
    init = next((i for i in m.graph.initializer if i.name == name), None)
    detail = ""
    if init is not None:
        a = numpy_helper.to_array(init).astype(np.float64)
        if a.ndim >= 2:
            for axis in (0, a.ndim - 1):
                flat = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)
                const = np.flatnonzero(flat.std(axis=1) == 0)
                if const.size:
                    zero = int((np.abs(flat[const]).max(axis=1) == 0).sum())
                    detail = (f"; weight {name!r} {list(a.shape)} has {const.size} constant channel(s) along axis "
                              f"{axis} ({zero} all zero), e.g. {const[:4].tolist()}")
                    break
        elif a.size and a.std() == 0:
            detail = f"; weight {name!r} is constant"
    return (f"ONNX Runtime's {precision} quantizer wrote NaN into this node's weight (its per-channel scale is the "
            f"channel's std / std of E4M3, 0 for a constant channel, and 0/0 is NaN){detail}; kept float")


def _float_op_summary(qproto: onnx.ModelProto) -> dict[str, int]:
    """Op types left computing in float (no DequantizeLinear feeding them), with counts: what the
    transformer placement keeps out of int8 (LayerNorm, Softmax, GELU, residual Add, ...)."""
    producers = {o: n.op_type for n in qproto.graph.node for o in n.output}
    out: dict[str, int] = {}
    for n in qproto.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant"):
            continue
        if not any(producers.get(x) == "DequantizeLinear" for x in n.input):
            out[n.op_type] = out.get(n.op_type, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _kept_nodes(qproto: onnx.ModelProto, op_types, keep_nodes) -> list[str]:
    """Nodes of a quantizable type (and excluded nodes) whose float inputs get no DequantizeLinear."""
    producers = {o: n for n in qproto.graph.node for o in n.output}
    kept = []
    for n in qproto.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if n.op_type in op_types or n.name in keep_nodes:
            dq = any(producers.get(x) is not None and producers[x].op_type == "DequantizeLinear" for x in n.input[:2])
            if not dq:
                kept.append(n.name)
    return kept


class Int8Recipe(_QuantRecipe):
    precision = "int8"
    summary = ("static INT8 Q/DQ via onnxruntime.quantization (symmetric, per-channel weights, fp32 bias) "
               "on Conv/ConvTranspose/Gemm/MatMul; needs calibration data")
    quant_type_name = "QInt8"


class Fp8Recipe(_QuantRecipe):
    precision = "fp8"
    summary = ("FP8 E4M3 Q/DQ via onnxruntime.quantization (Distribution calibration, the only method ORT "
               "allows for float8) on Conv/ConvTranspose/Gemm/MatMul; needs calibration data")
    quant_type_name = "QFLOAT8E4M3FN"
    min_opset = 19

    def _method(self, req: Request) -> str:
        if req.tool != "modelopt" and req.calibration_method not in ("minmax", "distribution"):
            raise UsageError(f"fp8 through ONNX Runtime calibrates with 'distribution' only; "
                             f"got calibration_method={req.calibration_method!r}",
                             hint="leave calibration_method at its default, or use tool='modelopt'")
        return "distribution" if req.tool != "modelopt" else req.calibration_method

    def apply(self, model: Model, req: Request) -> Variant:
        if req.tool != "modelopt":
            ok, why = fp8_supported()
            if not ok:
                from .modelopt import modelopt_available
                if modelopt_available():
                    req.tool = "modelopt"
                else:
                    raise UnsupportedError(f"fp8 recipe: {why}",
                                           hint="upgrade onnxruntime (>= 1.16), or pip install 'trt-workbench[modelopt]'")
        return super().apply(model, req)
