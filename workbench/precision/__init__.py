"""Precision recipes: ONNX → ONNX transforms that put the precision into the graph.

TensorRT 11 networks are always strongly typed (no FP16/INT8 builder flags, no calibrators), so a
precision is a recipe applied to the ONNX model before any backend builds it::

    import workbench as wb
    from workbench.precision import make_variant, list_recipes

    v16 = make_variant("model.onnx", "fp16")                        # casts, fp32 kept where it matters
    v8 = make_variant("model.onnx", "int8", calib="calib.npz")      # Q/DQ, calibrated
    v8m = make_variant("model.onnx", "int8", calib="calib.npz", keep_op_types=["Gemm"])  # mixed
    v8.recipe                                                        # JSON: tool, options, kept nodes, ...

``list_recipes()`` tabulates what each precision does.
"""
from __future__ import annotations

from typing import Any, Iterable

import onnx

from ..errors import ModelLoadError, UsageError, str_list
from ..logs import captures_native_log
from ..model import ModelSource, load
from ..variant import Variant
from .base import (FACTS, REGISTRY, Recipe, Request, base_recipe, calibrated, check_keep_op_types, get_recipe,
                   keeps_graph, parse_precisions, precision_names, register_precision, unregister_precision, variant_name)
from .floating import Bf16Recipe, Fp16Recipe
from .quantize import CALIBRATION_METHODS, Fp8Recipe, Int8Recipe

TOOLS = ("auto", "onnxconverter-common", "onnxruntime", "modelopt")


class _Unchanged(Recipe):
    tool = "none"

    def __init__(self, precision: str, summary: str):
        self.precision = precision
        self.summary = summary

    def apply(self, model, req: Request) -> Variant:
        if req.keep_nodes or req.keep_op_types:
            raise UsageError(f"{self.precision} keeps the whole graph in fp32; keep_nodes/keep_op_types do not apply")
        recipe = base_recipe("none", req, kept_high_precision="all")
        return Variant(model=model, precision=self.precision, source_hash=model.hash, recipe=recipe,
                       backend_flags={"tf32": self.precision == "tf32"},
                       name=variant_name(model, self.precision, False))


# The built-in precisions: one entry each, holding every fact the workbench uses about them.
# Colours: Okabe-Ito (colour-blind safe). Roofline: int8/fp8 Q/DQ graphs on ORT run their MatMuls in
# float; a TensorRT int8 roof would need an int8 GEMM, not measured here.
_FP8_GPU = "FP8 (E4M3) Q/DQ needs an FP8-capable GPU backend (TensorRT on compute capability >= 8.9)"
register_precision(_Unchanged("fp32", "the model unchanged"), kind="none", color="#0072B2",
                   roofline_dtype="float32", aliases=("float",))
register_precision(_Unchanged("tf32", "the fp32 graph unchanged; backends enable TF32 tensor-core math (backend_flags)"),
                   kind="none", color="#56B4E9", roofline_dtype="tf32", min_compute_capability=8.0,
                   runs_as_fp32_below_min=True,
                   notes_on={"onnxruntime": "TF32 is a GPU tensor-core mode; on CPU the tf32 variant runs exactly like fp32"})
register_precision(Fp16Recipe(), kind="cast", color="#E69F00", roofline_dtype="float16", aliases=("half",))
register_precision(Bf16Recipe(), kind="cast", color="#CC79A7", roofline_dtype="bfloat16", aliases=("bfloat16",),
                   min_compute_capability=8.0,
                   unsupported_on={"onnxruntime": "ONNX Runtime's CPU provider has no bfloat16 kernels for most ops "
                                                  "(Conv, MatMul, ...)"})
register_precision(Int8Recipe(), kind="qdq", needs_calibration=True, color="#009E73", roofline_dtype="float16",
                   min_compute_capability=6.1)
register_precision(Fp8Recipe(), kind="qdq", needs_calibration=True, color="#D55E00", roofline_dtype="float16",
                   aliases=("float8e4m3", "float8e5m2"), min_compute_capability=8.9,
                   unsupported_on={"onnxruntime": _FP8_GPU,
                                   "onnxruntime-cuda": "ONNX Runtime's CUDA provider does not run FP8 Q/DQ graphs; "
                                                       "use TensorRT on an FP8-capable GPU"})

#: precision name → recipe object (the live registry: ``.precision``, ``.tool``, ``.describe()``, facts).
RECIPES: dict[str, Recipe] = REGISTRY


def list_recipes():
    """A DataFrame: precision, tool, what it does, default keep list (op types kept in high precision)."""
    import pandas as pd
    rows = []
    for r in RECIPES.values():
        d = r.describe()
        rows.append({"precision": d["precision"], "tool": d["tool"], "what": d["what"],
                     "default_keep": ", ".join(d["default_keep_op_types"])})
    return pd.DataFrame(rows, columns=["precision", "tool", "what", "default_keep"])


@captures_native_log
def make_variant(model: ModelSource, precision: str, *, calib: Any = None, keep_nodes: Iterable[str] = (),
                 keep_op_types: Iterable[str] = (), keep_io_types: bool = True, calibration_method: str = "minmax",
                 num_calib: int | None = None, tool: str = "auto", progress: bool = True, **opts) -> Variant:
    """Make the ``precision`` variant of ``model`` (anything :func:`workbench.load` accepts).

    Args:
        precision: fp32, tf32, fp16, bf16, int8 or fp8.
        calib: int8/fp8 calibration data: a ``.npz`` path, a :class:`~workbench.data.NpzDataset`, an
            iterable of feed dicts, or ``"synthetic"`` (random inputs; recorded as such).
        keep_nodes / keep_op_types: node names / op types kept in high precision (fp32).
        keep_io_types: fp16/bf16: keep graph inputs and outputs fp32 (casts inside).
        calibration_method: minmax, entropy or percentile (fp8 via ONNX Runtime: distribution).
        num_calib: use at most this many calibration samples.
        tool: "auto" (the default tool of each recipe) or "modelopt" (NVIDIA ModelOpt, optional extra).
        progress: show tqdm progress bars (calibration).
        **opts: recipe options, recorded in ``variant.recipe["options"]``: fp16/bf16 ``range_check``,
            ``underflow_fraction``, ``keep_norms``, ``ort_check``; bf16 ``min_opset`` (22); int8/fp8
            ``target`` ("tensorrt" | "onnxruntime-cpu"), ``min_samples`` (16), ``batch_size``, ``shapes``,
            ``per_channel``, ``preprocess``, ``op_types_to_quantize``, ``extra_options``,
            ``calibrator_options``. See docs/precision.md.

    Returns a :class:`~workbench.variant.Variant`; the source model is never modified.
    """
    if not isinstance(precision, str) or precision not in RECIPES:
        raise UsageError(f"unknown precision {precision!r}; choose from {', '.join(RECIPES)}")
    if tool not in TOOLS:
        raise UsageError(f"unknown tool {tool!r}; choose from {', '.join(TOOLS)}")
    if tool not in ("auto", "modelopt") and tool != RECIPES[precision].tool.split("+")[0] and RECIPES[precision].kind != "none":
        raise UsageError(f"{precision} is made with {RECIPES[precision].tool} or modelopt, not {tool!r}")
    if str(calibration_method).lower() not in CALIBRATION_METHODS:
        raise UsageError(f"unknown calibration_method {calibration_method!r}; choose from {', '.join(CALIBRATION_METHODS)}")
    if isinstance(keep_nodes, str) or isinstance(keep_op_types, str):
        raise UsageError("keep_nodes / keep_op_types take a list of names, not a single string")
    keep_nodes, keep_op_types = str_list(keep_nodes, "keep_nodes"), str_list(keep_op_types, "keep_op_types")
    m = load(model)
    m.check_structure()  # a cyclic graph is bad input, not a recipe crash
    keep_op_types = tuple(check_keep_op_types(keep_op_types, m.proto))
    req = Request(calib=calib, keep_nodes=tuple(keep_nodes), keep_op_types=tuple(keep_op_types),
                  keep_io_types=bool(keep_io_types), calibration_method=str(calibration_method).lower(),
                  num_calib=num_calib, tool=tool, progress=progress, opts=dict(opts))
    try:
        return RECIPES[precision].apply(m, req)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:  # onnx says: invalid model
        raise ModelLoadError(f"the {precision} recipe cannot process {m.name!r}: onnx reports it invalid: "
                             f"{str(e).strip()[:300]}") from e


__all__ = ["make_variant", "RECIPES", "list_recipes", "Recipe", "CALIBRATION_METHODS", "register_precision",
           "unregister_precision", "get_recipe", "precision_names", "parse_precisions", "calibrated", "keeps_graph", "FACTS"]
