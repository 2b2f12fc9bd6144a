"""trt-workbench: an interactive, teachable loop for ONNX model optimization in Jupyter.

    import workbench as wb
    m = wb.load("model.onnx")
    wb.inspect(m)                      # summary tables

Heavy pieces (TensorRT, torch, ModelOpt, widgets) are imported only when used: importing
``workbench`` needs neither a GPU nor TensorRT.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from .errors import (  # noqa: E402,F401
    BackendUnavailable,
    BuildError,
    DataError,
    EditError,
    ExternalDataError,
    ModelLoadError,
    OutputError,
    RunError,
    ShapeSpecError,
    UnsupportedError,
    UsageError,
    WorkbenchError,
    WorkbenchWarning,
)
from .model import Model, load  # noqa: E402,F401
# Eager, not lazy: importing the submodule ``workbench.inspect`` would otherwise shadow the function.
from .inspect import Inspection, inspect  # noqa: E402,F401

# name -> "module:attribute", imported on first use (keeps `import workbench` light).
_LAZY = {
    "inspect": "workbench.inspect:inspect",
    "Inspection": "workbench.inspect:Inspection",
    "ShapeMap": "workbench.data:ShapeMap",
    "NpzDataset": "workbench.data:NpzDataset",
    "synthetic_inputs": "workbench.data:synthetic_inputs",
    "Variant": "workbench.variant:Variant",
    "BuildOptions": "workbench.backends.base:BuildOptions",
    "get_backend": "workbench.backends:get_backend",
    "backend_names": "workbench.backends:backend_names",
    "measure_latency": "workbench.measure.latency:measure_latency",
    "load_record": "workbench.records:load_record",
    "run_model": "workbench.run:run_model",
    "make_variant": "workbench.precision:make_variant",
    "list_recipes": "workbench.precision:list_recipes",
    "build_variants": "workbench.builds:build_variants",
    "profile": "workbench.measure.layers:profile",
    "profile_layers": "workbench.measure.layers:profile_layers",
    "coverage": "workbench.measure.layers:coverage",
    "compare_outputs": "workbench.compare.outputs:compare_outputs",
    "layerwise": "workbench.compare.layerwise:layerwise",
    "fp16_safety": "workbench.precision.fp16safety:fp16_safety",
    "fp16_safety_overlay": "workbench.precision.fp16safety:fp16_safety_overlay",
    "propose_mixed_precision": "workbench.compare.sensitivity:propose_mixed_precision",
    "History": "workbench.edit.history:History",
    "GraphView": "workbench.widgets.graph_view:GraphView",
    "Workbench": "workbench.widgets.dashboard:Workbench",
    "run_flow": "workbench.flow:run_flow",
    "sweep": "workbench.sweeps:sweep",
    "load_sweep": "workbench.sweeps:load_sweep",
    "build_stage": "workbench.flow:build_stage",
    "profile_stage": "workbench.flow:profile_stage",
    "accuracy_stage": "workbench.flow:accuracy_stage",
    "FlowResult": "workbench.flow:FlowResult",
    "write_report": "workbench.report:write_report",
}


# Subpackages reachable as attributes after a plain `import workbench` (e.g. `wb.edit.fold_constants`).
_SUBMODULES = {"edit", "precision", "backends", "measure", "compare", "widgets", "data", "records", "variant",
               "device", "builds", "plots", "report", "flow", "run", "shapes"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        value = importlib.import_module(f"workbench.{name}")
        globals()[name] = value
        return value
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    mod, attr = target.split(":")
    value = getattr(importlib.import_module(mod), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
