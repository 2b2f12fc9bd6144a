"""Optional ``tool="modelopt"`` path through NVIDIA ModelOpt (``nvidia-modelopt``, pulls torch).

Not installed in the workbench's own test environment, so this path is untested here (see
docs/precision.md). Imports are guarded: a missing ModelOpt is a clear :class:`BackendUnavailable`.
"""
from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np
import onnx

from ..errors import BackendUnavailable, WorkbenchError
from ..model import Model
from ..variant import Variant
from .base import Request, base_recipe, check_keep_nodes, full_check, name_unnamed_nodes, variant_name

INSTALL_HINT = "pip install 'trt-workbench[modelopt]' (NVIDIA ModelOpt: nvidia-modelopt[onnx], pulls torch)"


def modelopt_available() -> bool:
    return importlib.util.find_spec("modelopt") is not None


def _require():
    if not modelopt_available():
        raise BackendUnavailable("tool='modelopt' needs NVIDIA ModelOpt, which is not installed", hint=INSTALL_HINT)


def autocast(model: Model, req: Request, low: str) -> Variant:
    """fp16/bf16 through ``modelopt.onnx.autocast.convert_to_mixed_precision``."""
    _require()
    from modelopt.onnx.autocast import convert_to_mixed_precision

    proto = model.proto_with_data()
    name_unnamed_nodes(proto)
    check_keep_nodes(proto, req.keep_nodes)
    with tempfile.TemporaryDirectory(prefix="wb-modelopt-") as tmp:
        src = Path(tmp) / "input.onnx"
        onnx.save_model(proto, str(src))
        try:
            out = convert_to_mixed_precision(
                onnx_path=str(src), low_precision_type=low, nodes_to_exclude=list(req.keep_nodes) or None,
                op_types_to_exclude=list(req.keep_op_types) or None, keep_io_types=req.keep_io_types)
        except Exception as e:
            raise WorkbenchError(f"ModelOpt autocast failed on {model.name!r}: {e}") from e
    full_check(out, low)
    recipe = base_recipe("nvidia-modelopt", req, api="modelopt.onnx.autocast.convert_to_mixed_precision",
                         low_precision_type=low,
                         kept_high_precision=sorted(set(req.keep_nodes)
                                                    | {n.name for n in proto.graph.node if n.op_type in req.keep_op_types}))
    return Variant(model=model.derive(out, name=model.name), precision=low, source_hash=model.hash, recipe=recipe,
                   backend_flags={"tf32": False}, name=variant_name(model, low, req.mixed))


def quantize(model: Model, proto: onnx.ModelProto, req: Request, precision: str, cset, method: str) -> Variant:
    """int8/fp8 through ``modelopt.onnx.quantization.quantize`` with the validated calibration set."""
    _require()
    from modelopt.onnx.quantization import quantize as mo_quantize

    calib = {k: np.concatenate([b[k] for b in cset.batches]) for k in cset.batches[0]}
    with tempfile.TemporaryDirectory(prefix="wb-modelopt-") as tmp:
        src = Path(tmp) / "input.onnx"
        out = Path(tmp) / "quantized.onnx"
        onnx.save_model(proto, str(src))
        try:
            mo_quantize(onnx_path=str(src), quantize_mode=precision, calibration_data=calib,
                        calibration_method={"minmax": "max"}.get(method, method),
                        nodes_to_exclude=list(req.keep_nodes) or None,
                        op_types_to_exclude=list(req.keep_op_types) or None, output_path=str(out))
        except Exception as e:
            raise WorkbenchError(f"ModelOpt quantization failed on {model.name!r}: {e}") from e
        qproto = onnx.load(str(out))
    full_check(qproto, precision)
    recipe = base_recipe("nvidia-modelopt", req, api="modelopt.onnx.quantization.quantize", quantize_mode=precision,
                         calibration={"method": method, **cset.to_json(), "synthetic": cset.source == "synthetic"},
                         kept_high_precision=list(req.keep_nodes))
    return Variant(model=model.derive(qproto, name=model.name), precision=precision, source_hash=model.hash,
                   recipe=recipe, backend_flags={"tf32": False}, name=variant_name(model, precision, req.mixed))
