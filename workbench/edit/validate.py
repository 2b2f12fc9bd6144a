"""Validation of an edited model: ``onnx.checker`` (full check), strict shape inference, an ORT session.

Every version a :class:`~workbench.edit.History` keeps is checked with :func:`validate`. The three
stages run in order and all run even when one fails, so the record lists every reason at once.

What this does *not* prove: that outputs are numerically unchanged (the tests and
``workbench.compare`` do that), or that a TensorRT build succeeds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from ..model import PROTOBUF_LIMIT, Model


@dataclass(frozen=True)
class Validation:
    """Result of :func:`validate`: ``ok`` and one line per failed stage in ``reasons``."""

    ok: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)
    stages: tuple[str, ...] = field(default_factory=tuple)  # stages that ran

    def __bool__(self) -> bool:
        return self.ok

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def to_json(self) -> dict:
        return {"ok": self.ok, "reasons": list(self.reasons), "stages": list(self.stages)}


def _one_line(e: BaseException, limit: int = 400) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def validate(model: Model, *, ort: bool = True) -> Validation:
    """Check ``model``: checker (``full_check=True``), strict shape inference, ORT CPU session creation.

    ``ort=False`` skips the ONNX Runtime stage (for graphs using custom ops ORT does not know).
    The session is created with ORT's basic graph optimizations (constant folding, dead-node
    removal: what every session does; with none at all, session creation is far slower on large
    unfolded graphs); it proves the graph loads and types check. It does not run the model.
    """
    reasons: list[str] = []
    stages: list[str] = []
    proto = model.proto_with_data()
    if proto.ByteSize() >= PROTOBUF_LIMIT:
        return Validation(False, ("model is over 2 GB: cannot be checked in memory; save it with external data",), ())
    data = proto.SerializeToString()

    stages.append("checker")
    try:
        onnx.checker.check_model(data, full_check=True)
    except Exception as e:  # onnx.checker.ValidationError, InferenceError
        reasons.append(f"onnx.checker: {_one_line(e)}")

    stages.append("shape_inference")
    try:
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:
        reasons.append(f"shape inference: {_one_line(e)}")

    if ort:
        stages.append("onnxruntime")
        try:
            import onnxruntime as ort_mod

            so = ort_mod.SessionOptions()
            so.graph_optimization_level = ort_mod.GraphOptimizationLevel.ORT_ENABLE_BASIC
            so.log_severity_level = 3
            ort_mod.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        except ImportError:  # pragma: no cover - onnxruntime is a dependency
            reasons.append("onnxruntime is not installed: cannot create a session")
        except Exception as e:
            reasons.append(f"onnxruntime session: {_one_line(e)}")
    return Validation(not reasons, tuple(reasons), tuple(stages))
