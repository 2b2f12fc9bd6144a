"""Backends behind one interface: ``get_backend(name).build(variant, shapes, options).run(feeds)``.

``onnxruntime`` (CPU, the embedded default), ``onnxruntime-cuda``, ``tensorrt`` and ``tensorrt-rtx``.
TensorRT modules are imported only when a TensorRT backend is used.
"""
from __future__ import annotations

from .base import Backend, BuildOptions, Engine, backend_names, get_backend, register_backend  # noqa: F401
from . import onnxruntime as _ort  # noqa: F401,E402  (registers onnxruntime / onnxruntime-cuda)

try:  # registers tensorrt / tensorrt-rtx; the module imports TensorRT lazily
    from . import tensorrt as _trt  # noqa: F401
except ImportError:  # pragma: no cover - module not written yet
    pass
