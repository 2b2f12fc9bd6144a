"""Backends behind one protocol (:mod:`workbench.backends.base`): ``get_backend(name).build(variant, shapes,
options).run(feeds)``, with declared capabilities (``serializes_engines``, ``device_kind``, ``supports``).

``onnxruntime`` (CPU, the embedded default), ``onnxruntime-cuda``, ``tensorrt`` and ``tensorrt-rtx``, in
that order (the CLI's ``--backend`` choices are :func:`backend_names`). TensorRT modules are imported only
when a TensorRT backend is used.
"""
from __future__ import annotations

from .base import Backend, BuildOptions, Engine, TimedCall, backend_names, get_backend, register_backend
from . import onnxruntime, tensorrt, tensorrt_rtx  # register the built-in backends (TensorRT imported lazily)

__all__ = ["Backend", "BuildOptions", "Engine", "TimedCall", "backend_names", "get_backend", "register_backend",
           "onnxruntime", "tensorrt", "tensorrt_rtx"]
