"""Accuracy deltas: output metrics against the FP32 reference (``compare_outputs``), per-node error
(``layerwise``) and sensitivity-driven mixed precision (``propose_mixed_precision``).

    import workbench as wb
    from workbench.compare import compare_outputs, layerwise, propose_mixed_precision
    cmp = compare_outputs("digits_cnn.onnx", "fp16,int8", data="digits_test.npz", labels="label")
    cmp.summary()                       # one row per variant: top1, cosine_min, passed, ...
    cmp.metrics                         # tidy: variant, precision, backend, output, metric, value
"""
from __future__ import annotations

from . import metrics  # noqa: F401
from .layerwise import (Bisection, first_divergence, layerwise, layerwise_debug_tensors,  # noqa: F401
                        layerwise_summary, layerwise_tidy, mark_debug_tensors, match_tensors)
from .outputs import Comparison, compare_engines, compare_outputs  # noqa: F401

__all__ = ["metrics", "layerwise", "layerwise_debug_tensors", "layerwise_tidy", "layerwise_summary", "first_divergence", "Bisection",
           "match_tensors", "mark_debug_tensors", "Comparison", "compare_engines",
           "compare_outputs", "propose_mixed_precision", "MixedPrecisionResult", "Target"]


def __getattr__(name: str):
    # sensitivity pulls in the precision recipes; import it on first use
    if name in ("propose_mixed_precision", "MixedPrecisionResult", "Target"):
        from . import sensitivity

        return getattr(sensitivity, name)
    raise AttributeError(f"module 'workbench.compare' has no attribute {name!r}")
