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
    RunError,
    ShapeSpecError,
    UnsupportedError,
    UsageError,
    WorkbenchError,
)
from .model import Model, load  # noqa: E402,F401

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
}


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    mod, attr = target.split(":")
    value = getattr(importlib.import_module(mod), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
