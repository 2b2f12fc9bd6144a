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
import tempfile
import time
from pathlib import Path

import onnx

from ..errors import UnsupportedError, UsageError, WorkbenchError
from ..model import Model
from ..variant import Variant
from .base import (Recipe, Request, base_recipe, check_keep_nodes, drop_initializer_inputs, full_check,
                   name_unnamed_nodes, short, upgrade_opset, variant_name)
from .calibration import ProgressReader, prepare_calibration

#: Op types whose inputs (and outputs) get Q/DQ by default: the weighted ops TensorRT runs in INT8.
TENSORRT_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")

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


def _has_calibration_cache() -> bool:
    """Whether quantize_static accepts precomputed ranges (``calibration_cache_path``, recent ORT)."""
    import inspect

    from onnxruntime.quantization import quantize_static
    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def _calibrate(model_path: Path, tmpd: Path, op_types, method, calib_opts: dict, cset, progress: bool,
               desc: str) -> Path:
    """Collect activation ranges with ORT's calibrator; write them as a quantize_static calibration cache."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrator = create_calibrator(model_path, op_types, augmented_model_path=str(tmpd / "augmented.onnx"),
                                   calibrate_method=method, extra_options=calib_opts)
    reader = ProgressReader(cset, progress=progress, desc=desc)
    try:
        calibrator.collect_data(reader)
    finally:
        reader.close()
    ranges = calibrator.compute_data()
    del calibrator
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


class _QuantRecipe(Recipe):
    tool = "onnxruntime"
    quant_type_name = "QInt8"
    min_opset = 13

    def default_keep(self) -> list[str]:
        return []

    def _settings(self, req: Request) -> tuple[str, str, dict]:
        """(activation QuantType name, weight QuantType name, extra_options) for ``opts["target"]``."""
        target = req.opts.get("target", "tensorrt")
        if target == "tensorrt":
            return self.quant_type_name, self.quant_type_name, dict(TENSORRT_EXTRA)
        if target == "onnxruntime-cpu" and self.precision == "int8":
            return "QUInt8", "QInt8", dict(ORT_CPU_EXTRA)
        raise UsageError(f"unknown {self.precision} target {target!r}; choose 'tensorrt'"
                         + (" or 'onnxruntime-cpu'" if self.precision == "int8" else ""))

    def _method(self, req: Request) -> str:
        return req.calibration_method

    def apply(self, model: Model, req: Request) -> Variant:
        proto = model.proto_with_data()
        dropped = drop_initializer_inputs(proto)
        name_unnamed_nodes(proto)
        check_keep_nodes(proto, req.keep_nodes)
        proto, upgraded = upgrade_opset(proto, self.min_opset)
        method_name = self._method(req)
        method = _calibration_method(method_name)
        if req.tool != "modelopt":
            self._settings(req)  # validate the target before any work
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
        from onnxruntime.quantization import QuantFormat, quantize_static

        placement = req.opts.get("op_types_to_quantize") or list(TENSORRT_OP_TYPES)
        op_types = [t for t in placement if t not in set(req.keep_op_types)]
        if not op_types:
            raise UsageError(f"keep_op_types {list(req.keep_op_types)} leaves no op type to quantize "
                             f"(placement: {list(placement)})")
        from onnxruntime.quantization import QuantType
        act_name, w_name, extra = self._settings(req)
        act_type, w_type = getattr(QuantType, act_name), getattr(QuantType, w_name)
        extra.update(req.opts.get("extra_options", {}))
        per_channel = bool(req.opts.get("per_channel", True))
        t_start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="wb-quant-") as tmp:
            tmpd = Path(tmp)
            src = tmpd / "input.onnx"
            onnx.save_model(proto, str(src))
            qin, pre = _preprocess(src, tmpd / "preprocessed.onnx", req.keep_nodes, req.opts)
            out = tmpd / "quantized.onnx"
            calib_opts = {**CALIBRATOR_DEFAULTS.get(method_name, {}), **req.opts.get("calibrator_options", {})}
            logger = logging.getLogger()
            level = logger.level
            logger.setLevel(max(level, logging.ERROR))  # ORT warns about pre-processing on every call
            try:
                common = dict(quant_format=QuantFormat.QDQ, op_types_to_quantize=op_types, per_channel=per_channel,
                              reduce_range=False, activation_type=act_type, weight_type=w_type,
                              nodes_to_exclude=list(req.keep_nodes) or None, calibrate_method=method,
                              extra_options=extra)
                desc = f"calibrating {model.name} ({method_name})"
                with contextlib.redirect_stdout(io.StringIO()):  # ORT's calibrators print their progress
                    t0 = time.perf_counter()
                    if _has_calibration_cache():
                        cache = _calibrate(qin, tmpd, op_types, method, calib_opts, cset, req.progress, desc)
                        calib_seconds = time.perf_counter() - t0
                        quantize_static(str(qin), str(out), None, calibration_cache_path=str(cache), **common)
                    else:  # older onnxruntime: its calibrators with their default settings
                        calib_opts = {"note": "this onnxruntime's quantize_static takes no calibrator options"}
                        reader = ProgressReader(cset, progress=req.progress, desc=desc)
                        try:
                            quantize_static(str(qin), str(out), reader, **common)
                        finally:
                            reader.close()
                        calib_seconds = time.perf_counter() - t0  # includes quantization here
            except WorkbenchError:
                raise
            except Exception as e:
                raise WorkbenchError(f"ONNX Runtime's quantizer failed on {model.name!r}: {short(e)}",
                                     hint="try keep_op_types/keep_nodes for the failing op, or preprocess=False") from e
            finally:
                logger.setLevel(level)
            qproto = onnx.load(str(out))
        seconds = time.perf_counter() - t_start
        full_check(qproto, self.precision)
        kept = _kept_nodes(qproto, set(placement) | set(req.keep_op_types), req.keep_nodes)
        recipe = base_recipe(
            "onnxruntime", req, quantizer="onnxruntime.quantization.quantize_static", quant_format="QDQ",
            target=req.opts.get("target", "tensorrt"), activation_type=act_name, weight_type=w_name,
            per_channel=per_channel, symmetric=bool(extra.get("ActivationSymmetric")) and bool(extra.get("WeightSymmetric")),
            op_types_to_quantize=op_types, extra_options=extra,
            calibration={"method": method_name, **cset.to_json(), "synthetic": cset.source == "synthetic",
                         "calibrator_options": calib_opts, "seconds": round(calib_seconds, 3)},
            preprocess=pre, **facts, kept_high_precision=kept, total_seconds=round(seconds, 3))
        return Variant(model=model.derive(qproto, name=model.name), precision=self.precision, source_hash=model.hash,
                       recipe=recipe, backend_flags={"tf32": False},
                       name=variant_name(model, self.precision, req.mixed))


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
