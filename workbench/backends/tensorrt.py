"""TensorRT backends: ``tensorrt`` (TensorRT 10.x / 11.x, this module) and ``tensorrt-rtx`` (TensorRT for
RTX, :mod:`workbench.backends.tensorrt_rtx`).

Both Python modules expose the same Builder / OnnxParser / BuilderConfig / Runtime API, so one base
class, :class:`TensorRTBase`, drives them; :class:`TensorRTBackend` (``tensorrt``) and
``TensorRTRTXBackend`` (``tensorrt-rtx``) declare their differences as capabilities and small hooks
(``builds_without_gpu``, ``uses_timing_cache``, ``runs_on``, ``min_compute_capability``,
``default_targets``, ``check_engine_targets``), never as ``if rtx`` branches. The TensorRT module is
imported on first use. API differences are detected by feature, not by version string:

* Precision lives in the ONNX graph (casts, Q/DQ). Networks are created with
  ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` where that flag exists (TensorRT 10.x honours it,
  TensorRT 11 and RTX accept it); the weak-typing ``BuilderFlag.FP16/INT8/BF16/FP8`` are never set.
* ``BuilderFlag.TF32`` (kept in every version) follows ``variant.tf32`` and is cleared for fp32 variants.
* TensorRT-RTX builds without a GPU (CPU-only ahead-of-time compilation). Its timing-cache API is a
  deprecated no-op that forces a GPU query, so it is not used there; target compute capabilities can be
  chosen with ``BuildOptions.extra["compute_capabilities"] = ["8.9", ...]``.

What was applied (flags, limits, timing cache, targets) is recorded in ``record.options["applied"]``.
The run path (device buffers via cuda-python, ``execute_async_v3``) needs an NVIDIA GPU.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..data import ShapeMap
from ..device import cuda_device_info
from ..errors import (BackendUnavailable, BuildError, RunError, ShapeSpecError, UnsupportedError,
                      UsageError, WorkbenchError)
from ..fsutil import atomic_write_bytes
from ..records import BuildRecord
from ..variant import Variant
from .base import Backend, BuildOptions, Engine, TimedCall, register_backend

log = logging.getLogger("workbench.tensorrt")

_INSTALL = {
    "tensorrt": ("TensorRT is not installed: pip install 'trt-workbench[trt]' (or `pip install tensorrt` "
                 "from NVIDIA's package index, --extra-index-url https://pypi.nvidia.com); it needs an NVIDIA "
                 "GPU and driver"),
    "tensorrt_rtx": "TensorRT for RTX is not installed: pip install 'trt-workbench[trt-rtx]'",
}
#: TensorRT DataType member a precision's graph needs (older versions lack BF16 / FP8)
_DATA_TYPE = {"bf16": "BF16", "fp8": "FP8"}


def cc_value(cc: str | None) -> float | None:
    """``"8.9"`` -> 8.9 (None when unknown)."""
    try:
        major, minor = str(cc).split(".")[:2]
        return int(major) + int(minor) / 10
    except (ValueError, AttributeError):
        return None


# ------------------------------------------------------------------------------------------ trt helpers
def _import(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        raise BackendUnavailable(_INSTALL[module_name]) from e
    except OSError as e:  # libraries present but not loadable (driver / CUDA runtime mismatch)
        raise BackendUnavailable(f"{module_name} is installed but cannot load its libraries: {e}") from e


def _np_dtype(trt, dt) -> np.dtype:
    """numpy dtype of a TensorRT DataType (bf16/fp8 through ml_dtypes)."""
    name = getattr(dt, "name", str(dt))
    table = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
             "BOOL": np.bool_, "UINT8": np.uint8}
    if name in table:
        return np.dtype(table[name])
    import ml_dtypes

    extra = {"BF16": ml_dtypes.bfloat16, "FP8": ml_dtypes.float8_e4m3fn}
    if name in extra:
        return np.dtype(extra[name])
    raise RunError(f"TensorRT tensor type {name} has no numpy equivalent here")


_LOGGER_CLS: dict[str, type] = {}
_MONITOR_CLS: dict[str, type] = {}


def _make_logger(trt):
    """A TensorRT logger that keeps error messages (for BuildError) and forwards the rest to `logging`."""
    cls = _LOGGER_CLS.get(trt.__name__)
    if cls is None:
        class _Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity, msg):
                sev = getattr(severity, "name", str(severity))
                if sev in ("ERROR", "INTERNAL_ERROR"):
                    self.errors.append(msg)
                    log.debug("%s: %s", sev, msg)
                elif sev == "WARNING":
                    log.info("%s", msg)
                else:
                    log.debug("%s", msg)

        cls = _LOGGER_CLS[trt.__name__] = _Logger
    return cls()


def _make_monitor(trt, cancel: threading.Event, progress: bool):
    """An ``IProgressMonitor`` driving nested tqdm bars; ``cancel.set()`` stops the build."""
    cls = _MONITOR_CLS.get(trt.__name__)
    if cls is None:
        class _Monitor(trt.IProgressMonitor):
            def __init__(self, cancel_event: threading.Event, show: bool):
                trt.IProgressMonitor.__init__(self)
                self.cancel_event = cancel_event
                self.show = show
                self.phases: list[tuple[str, str | None, int]] = []  # (phase, parent, steps) as started
                self.steps = 0
                self.finished = 0
                self.cancelled = False
                self._open: dict[str, list] = {}  # phase -> stack of (depth, bar or None)

            def _depth(self, parent):
                stack = self._open.get(parent) if parent else None
                return stack[-1][0] + 1 if stack else 0

            def phase_start(self, phase_name, parent_phase, num_steps):
                try:
                    self.phases.append((phase_name, parent_phase, int(num_steps)))
                    depth = self._depth(parent_phase)
                    bar = None
                    if self.show:
                        from tqdm.auto import tqdm
                        bar = tqdm(total=int(num_steps), desc=phase_name, position=depth, leave=depth == 0,
                                   unit="step")
                    self._open.setdefault(phase_name, []).append((depth, bar))
                except Exception:  # never let a display problem break the build
                    log.debug("progress bar failed", exc_info=True)

            def step_complete(self, phase_name, step):
                self.steps += 1
                try:
                    stack = self._open.get(phase_name)
                    if stack and stack[-1][1] is not None:
                        bar = stack[-1][1]
                        bar.update(max(0, int(step) + 1 - bar.n))
                except Exception:
                    log.debug("progress bar failed", exc_info=True)
                if self.cancel_event.is_set():
                    self.cancelled = True
                    return False
                return True

            def phase_finish(self, phase_name):
                self.finished += 1
                try:
                    stack = self._open.get(phase_name)
                    if stack:
                        _, bar = stack.pop()
                        if bar is not None:
                            bar.close()
                except Exception:
                    log.debug("progress bar failed", exc_info=True)

            def close(self):
                for stack in self._open.values():
                    for _, bar in stack:
                        if bar is not None:
                            bar.close()
                self._open.clear()

        cls = _MONITOR_CLS[trt.__name__] = _Monitor
    return cls(cancel, progress)


def parser_errors(parser) -> list[dict[str, Any]]:
    """Every error of an ``OnnxParser`` as dicts: node index, node name, operator, code, description."""
    out = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        item: dict[str, Any] = {"node": int(e.node()), "desc": str(e.desc()), "code": getattr(e.code(), "name", str(e.code()))}
        for attr in ("node_name", "node_operator"):
            fn = getattr(e, attr, None)  # node_name / node_operator: TensorRT >= 10.x
            if fn is not None:
                try:
                    item[attr] = str(fn())
                except Exception:
                    pass
        out.append(item)
    return out


def _format_parser_errors(errors: list[dict]) -> str:
    lines = []
    for e in errors:
        where = f"node {e['node']}" if e["node"] >= 0 else "model"
        if e.get("node_name"):
            where += f" {e['node_name']!r}"
        if e.get("node_operator"):
            where += f" ({e['node_operator']})"
        lines.append(f"{where}: {e['desc']} [{e['code']}]")
    return "; ".join(lines)


class ParserError(BuildError):
    """The ONNX parser rejected the model; ``errors`` lists every parser error (node, node_name, desc, code)."""

    def __init__(self, message: str, errors: list[dict], *, hint: str | None = None):
        self.errors = errors
        super().__init__(message, hint=hint)


# ------------------------------------------------------------------------------------------ engine
def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as e:
            raise BackendUnavailable("cuda-python is needed to run TensorRT engines: pip install cuda-python") from e
    return cudart


def _cuda_check(result, what: str):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(getattr(err, "value", err)) != 0:
        raise RunError(f"CUDA {what} failed: {err}")
    return rest[0] if len(rest) == 1 else (rest or None)


class TrtEngine(Engine):
    """A serialized TensorRT engine; deserialized on the GPU at first run.

    ``run(feeds)`` copies inputs in, executes and copies outputs back. For timing without host copies:
    ``stage(feeds)`` once, then ``enqueue()`` N times and ``synchronize()`` (or time ``stream`` with CUDA
    events); ``fetch()`` copies the outputs back. ``context`` / ``stream`` are there for profilers.
    """

    def __init__(self, backend: "TensorRTBackend", variant: Variant, serialized: bytes, record: BuildRecord):
        self.backend = backend
        self.variant = variant
        self.serialized = bytes(serialized)
        self.record = record
        self._engine = None
        self._context = None
        self._stream = None
        self._runtime = None
        self._logger = None
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device ptr, nbytes)
        self._staged: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._host_inputs: dict[str, np.ndarray] = {}

    # -------------------------------------------------------------- facts (no GPU needed)
    @property
    def input_names(self) -> list[str]:
        if self._engine is not None:
            return self._io_names(input=True)
        return list(self.variant.model.input_names)

    @property
    def output_names(self) -> list[str]:
        if self._engine is not None:
            return self._io_names(input=False)
        return list(self.variant.model.output_names)

    @property
    def nbytes(self) -> int:
        return len(self.serialized)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.serialized).hexdigest()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the engine atomically to ``path`` and its BuildRecord next to it (``<path>.json``)."""
        path = Path(path)
        atomic_write_bytes(path, self.serialized)
        self.record.engine_file = path.name
        self.record.save(path.with_name(path.name + ".json"))
        return path

    # -------------------------------------------------------------- GPU side
    def _io_names(self, *, input: bool) -> list[str]:
        trt = self.backend.trt
        want = trt.TensorIOMode.INPUT if input else trt.TensorIOMode.OUTPUT
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        return [n for n in names if self._engine.get_tensor_mode(n) == want]

    def load(self):
        """Deserialize on the GPU and create the execution context and stream (once)."""
        if self._context is not None:
            return self
        ok, why = self.backend.can_run()
        if not ok:
            raise BackendUnavailable(why)
        self.backend.check_engine_targets(self)
        trt = self.backend.trt
        cudart = _cudart()
        self._logger = _make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.serialized)
        if self._engine is None:
            raise RunError(f"{self.backend.name} could not deserialize the engine of {self.variant.name}: "
                           f"{'; '.join(self._logger.errors) or 'unknown error'}",
                           hint="engines only load with the exact TensorRT version and a compatible GPU they were built for")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise RunError(f"could not create an execution context for {self.variant.name}: "
                           f"{'; '.join(self._logger.errors) or 'out of GPU memory?'}")
        self._stream = _cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        return self

    @property
    def engine(self):
        return self.load()._engine

    @property
    def context(self):
        return self.load()._context

    @property
    def stream(self):
        """The cudaStream_t (cuda-python object); ``int(stream)`` is the handle TensorRT takes."""
        return self.load()._stream

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if nbytes <= size and ptr:
            return ptr
        cudart = _cudart()
        if ptr:
            _cuda_check(cudart.cudaFree(ptr), "cudaFree")
        ptr = int(_cuda_check(cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
        self._buffers[name] = (ptr, max(nbytes, 1))
        return ptr

    def stage(self, feeds: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        """Set input shapes, (re)allocate buffers, copy inputs to the GPU; returns output shapes."""
        self.load()
        trt, cudart = self.backend.trt, _cudart()
        eng, ctx = self._engine, self._context
        inputs, outputs = self._io_names(input=True), self._io_names(input=False)
        missing = [n for n in inputs if n not in feeds]
        if missing:
            raise RunError(f"missing input(s) {missing} for {self.variant.name}; inputs are {inputs}")
        host = {}
        for name in inputs:
            if eng.get_tensor_location(name) != trt.TensorLocation.DEVICE:  # shape tensors live on the host
                raise RunError(f"input {name!r} is a host (shape) tensor; not supported by this runner")
            arr = np.ascontiguousarray(feeds[name], dtype=_np_dtype(trt, eng.get_tensor_dtype(name)))
            host[name] = arr
            if not ctx.set_input_shape(name, tuple(arr.shape)):
                raise RunError(f"input {name!r} shape {list(arr.shape)} is outside the engine's profile "
                               f"{[list(s) for s in eng.get_tensor_profile_shape(name, 0)]}",
                               hint="rebuild with a wider --shapes MIN/OPT/MAX range")
        for name, arr in host.items():
            ptr = self._buffer(name, arr.nbytes)
            _cuda_check(cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes,
                                               cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream),
                        "cudaMemcpyAsync (host to device)")
            self._set_address(name, ptr)
        self._host_inputs = host  # keep alive until the async copies are done
        self._staged = {}
        for name in outputs:
            shape = tuple(ctx.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RunError(f"output {name!r} has a data-dependent shape {list(shape)}; not supported by this runner")
            dt = _np_dtype(trt, eng.get_tensor_dtype(name))
            ptr = self._buffer(name, int(np.prod(shape, dtype=np.int64)) * dt.itemsize)
            self._set_address(name, ptr)
            self._staged[name] = (shape, dt)
        return {n: s for n, (s, _) in self._staged.items()}

    def _set_address(self, name: str, ptr: int) -> None:
        # set_tensor_address returns False for a misaligned pointer or an unknown tensor name
        if not self._context.set_tensor_address(name, ptr):
            raise RunError(f"TensorRT rejected the device address of tensor {name!r} for {self.variant.name}: "
                           f"{'; '.join(self._logger.errors[-3:]) or 'see the TensorRT log'}")

    def enqueue(self, context=None) -> None:
        """Launch one inference on ``stream`` with the staged inputs (no host copies, no sync);
        ``context``: another execution context of this engine (see :meth:`bound_context`)."""
        if not self._staged:
            raise RunError("call stage(feeds) before enqueue()")
        ctx = self._context if context is None else context
        if not ctx.execute_async_v3(int(self._stream)):
            raise RunError(f"TensorRT execute_async_v3 failed for {self.variant.name}: "
                           f"{'; '.join(self._logger.errors[-3:]) or 'see the TensorRT log'}")

    def bound_context(self):
        """A new execution context with the staged input shapes and device buffers, for profilers.

        TensorRT cannot detach an ``IProfiler`` (``context.profiler = None`` is rejected with an API usage
        error and the profiler stays attached), so profile in a context that is dropped afterwards. It
        allocates its own activation memory; run it on ``stream`` only, never concurrently with ``enqueue()``."""
        if not self._staged:
            raise RunError("call stage(feeds) before bound_context()")
        ctx = self._engine.create_execution_context()
        if ctx is None:
            raise RunError(f"could not create a second execution context for {self.variant.name}: "
                           f"{'; '.join(self._logger.errors) or 'out of GPU memory?'}")
        for name, arr in self._host_inputs.items():
            if not ctx.set_input_shape(name, tuple(arr.shape)):
                raise RunError(f"input {name!r}: shape {list(arr.shape)} rejected by the new context")
        for name in [*self._host_inputs, *self._staged]:
            if not ctx.set_tensor_address(name, self._buffers[name][0]):
                raise RunError(f"TensorRT rejected the device address of tensor {name!r} for {self.variant.name}")
        return ctx

    def synchronize(self) -> None:
        _cuda_check(_cudart().cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def fetch(self) -> dict[str, np.ndarray]:
        """Copy the staged outputs back to host arrays (synchronizes the stream)."""
        cudart = _cudart()
        out = {}
        for name, (shape, dt) in self._staged.items():
            arr = np.empty(shape, dtype=dt)
            _cuda_check(cudart.cudaMemcpyAsync(arr.ctypes.data, self._buffers[name][0], arr.nbytes,
                                               cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream),
                        "cudaMemcpyAsync (device to host)")
            out[name] = arr
        self.synchronize()
        return out

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.stage(feeds)
        self.enqueue()
        return self.fetch()

    # -------------------------------------------------------------- measurement (workbench.measure)
    def timed_call(self, feeds: Mapping[str, np.ndarray]) -> TimedCall:
        """Inputs staged on the GPU once; one ``enqueue`` per iteration on ``stream``, bracketed by CUDA
        events (timer ``cuda-events``); no host<->device copies in the timed region."""
        self.stage(feeds)
        self.synchronize()
        return TimedCall(self.enqueue, (), "cuda-events", self.stream)

    def profile_layers(self, feeds: Mapping[str, np.ndarray], *, iterations: int = 20, warmup: int = 3,
                       progress: bool = False, **opts):
        """TensorRT's ``IProfiler`` in a separate execution context (:func:`workbench.measure.layers.profile_layers_trt`)."""
        from ..measure.layers import profile_layers_trt

        return profile_layers_trt(self, feeds, iterations=iterations, warmup=warmup, progress=progress)

    def inspector_json(self) -> dict:
        """The engine inspector's JSON (layers, tactics, origin ONNX nodes with DETAILED verbosity)."""
        trt = self.backend.trt
        inspector = self.engine.create_engine_inspector()
        if self._context is not None:
            inspector.execution_context = self._context
        text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise RunError(f"engine inspector returned invalid JSON: {e}") from None

    def close(self) -> None:
        if self._buffers or self._stream is not None:
            cudart = _cudart()
            if self._stream is not None:  # buffers may still be in use by an enqueued execution
                cudart.cudaStreamSynchronize(self._stream)
            for ptr, _ in self._buffers.values():
                cudart.cudaFree(ptr)
            self._buffers.clear()
            if self._stream is not None:
                cudart.cudaStreamDestroy(self._stream)
                self._stream = None
        self._context = None
        self._engine = None
        self._runtime = None
        self._staged = {}


# ------------------------------------------------------------------------------------------ backend
class TensorRTBase(Backend):
    """What TensorRT and TensorRT for RTX share: parse, build, timing cache, run. Subclasses set
    ``module_name`` and ``name`` and override the hooks where their product differs."""

    module_name: str = ""
    serializes_engines = True
    uses_timing_cache = True
    builds_without_gpu = False
    device_kind = "cuda"

    def __init__(self, module_name: str | None = None, device_id: int = 0):
        if module_name is not None and module_name != self.module_name:
            raise WorkbenchError(f"{type(self).__name__} drives {self.module_name!r}, not {module_name!r}; "
                                 f"use get_backend('tensorrt') or get_backend('tensorrt-rtx')")
        self.device_id = device_id
        self._trt = None
        self.cancel_event = threading.Event()

    @property
    def trt(self):
        """The imported ``tensorrt`` / ``tensorrt_rtx`` module."""
        if self._trt is None:
            self._trt = _import(self.module_name)
        return self._trt

    # -------------------------------------------------------------- hooks (differences between products)
    def runs_on(self, cc: float) -> bool:
        """Can engines of this product execute on a GPU of compute capability ``cc``?"""
        return True

    def min_compute_capability(self, precision: str) -> float | None:
        """Lowest compute capability that runs ``precision`` (the precision registry's fact)."""
        from ..precision import get_recipe

        return get_recipe(precision).min_compute_capability

    def device_without_gpu(self) -> dict[str, Any]:
        """``device()`` when no GPU is visible."""
        return {"type": "none", "error": cuda_device_info(self.device_id).get("error", "no GPU")}

    def default_targets(self) -> str | None:
        """What ``record.options["applied"]["compute_capabilities"]`` says when no targets are given."""
        return None

    def timing_cache_note(self) -> str:
        """Why a timing cache given in the options is not used (``uses_timing_cache`` False)."""
        return "not used by this backend"

    def check_engine_targets(self, engine: "TrtEngine") -> None:
        """Raise ``RunError`` (with a rebuild hint) when ``engine`` was built for other GPUs than this one."""

    # -------------------------------------------------------------- facts
    def _gpu(self) -> dict | None:
        info = cuda_device_info(self.device_id)
        return info if info.get("name") else None

    def available(self) -> tuple[bool, str]:
        try:
            self.trt
        except BackendUnavailable as e:
            return False, str(e)
        if not self.builds_without_gpu and self._gpu() is None:
            return False, (f"TensorRT needs an NVIDIA GPU to build and run "
                           f"({cuda_device_info(self.device_id).get('error', 'no device')}); "
                           f"tensorrt-rtx builds ahead of time without one")
        return True, ""

    def can_run(self) -> tuple[bool, str]:
        """(can engines execute here?, why not): needs a GPU this product runs on."""
        ok, why = self.available()
        if not ok:
            return ok, why
        gpu = self._gpu()
        if gpu is None:
            return False, (f"{self.name} engines need an NVIDIA GPU to run "
                           f"({cuda_device_info(self.device_id).get('error', 'no device')})")
        cc = cc_value(gpu.get("compute_capability"))
        if cc is not None and not self.runs_on(cc):
            return False, f"{self.name} does not run on compute capability {gpu['compute_capability']} ({gpu['name']})"
        return True, ""

    def version(self) -> str:
        return str(self.trt.__version__)

    def device(self) -> dict[str, Any]:
        gpu = self._gpu()
        if gpu is not None:
            return {"type": "cuda", **gpu}
        return self.device_without_gpu()

    def supports(self, precision: str) -> tuple[bool, str]:
        from ..precision import get_recipe

        recipe = get_recipe(precision, missing_ok=True)
        if recipe is None:
            return False, f"unknown precision {precision!r}"
        ok, why = self.available()
        if not ok:
            return False, why
        if self.name in recipe.unsupported_on:
            return False, recipe.unsupported_on[self.name]
        trt = self.trt
        dtype = _DATA_TYPE.get(precision)
        if dtype and not hasattr(trt.DataType, dtype):
            return False, f"{self.name} {self.version()} has no {dtype} data type"
        gpu = self._gpu()
        cc = cc_value(gpu.get("compute_capability")) if gpu else None
        need = self.min_compute_capability(precision)
        label = precision.upper()
        if gpu is None or cc is None or not self.runs_on(cc):
            # ahead-of-time build (available() refused backends that need a GPU to build already)
            where = "without a GPU" if gpu is None else f"(this {gpu['name']} cannot run {self.name} engines)"
            if need is not None and recipe.runs_as_fp32_below_min:
                return True, f"built ahead of time {where}; {label} applies on compute capability >= {need}"
            if need is not None:
                return True, f"built ahead of time {where}; {label} runs only on compute capability >= {need}"
            return True, "" if gpu is None else f"built ahead of time {where}"
        ccs = gpu.get("compute_capability")
        if need is not None and cc < need:
            if recipe.runs_as_fp32_below_min:
                return True, f"{label} needs compute capability >= {need}; on {ccs} the {precision} variant runs as FP32"
            return False, f"{label} needs compute capability >= {need}; {gpu['name']} is {ccs}"
        return True, recipe.notes_on.get(self.name, "")

    def cancel(self) -> None:
        """Cancel the build in progress (its progress monitor returns False at the next step)."""
        self.cancel_event.set()

    # -------------------------------------------------------------- build
    def load_engine(self, variant: Variant, serialized: bytes, record: BuildRecord) -> "TrtEngine":
        """An engine object around already-built bytes (engine cache hits, files on disk)."""
        return TrtEngine(self, variant, serialized, record)

    def build(self, variant: Variant, shapes: ShapeMap | str | Mapping | None = None,
              options: BuildOptions | None = None, *, out_dir: str | os.PathLike | None = None) -> "TrtEngine":
        """Parse the variant's ONNX, build a serialized engine, and (with ``out_dir``) write
        ``<variant>.engine`` + ``<variant>.engine.json`` atomically.

        Cancel with ``backend.cancel()`` or a ``threading.Event`` in ``options.extra["cancel"]``.
        """
        options = options or BuildOptions()
        self.check_can_build(variant)
        trt = self.trt
        sm = ShapeMap.parse(shapes)
        cancel = options.extra.get("cancel") or self.cancel_event
        logger = _make_logger(trt)
        applied: dict[str, Any] = {}
        from ..shapes import for_tensorrt  # profile checked per dim; dims sharing a name but not a role renamed
        variant, renamed = for_tensorrt(variant, sm)
        if renamed:
            applied["renamed_dims"] = renamed

        builder = trt.Builder(logger)
        flags = 0
        if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            applied["strongly_typed"] = True
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        self._parse(parser, variant, logger)

        config = builder.create_builder_config()
        profile_shapes = self._profile(builder, network, config, sm)
        if profile_shapes:
            applied["profile"] = profile_shapes
        if options.workspace_mb:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)
            applied["workspace_mb"] = int(options.workspace_mb)
        if options.opt_level is not None:
            if not 0 <= int(options.opt_level) <= 5:
                raise UsageError(f"--opt-level must be 0..5, got {options.opt_level}")
            if hasattr(config, "builder_optimization_level"):
                config.builder_optimization_level = int(options.opt_level)
                applied["builder_optimization_level"] = int(options.opt_level)
            else:
                applied["builder_optimization_level"] = "not supported by this version"
        if hasattr(trt.BuilderFlag, "TF32"):
            if variant.tf32:
                config.set_flag(trt.BuilderFlag.TF32)
                applied["tf32"] = True
            elif variant.precision == "fp32":
                config.clear_flag(trt.BuilderFlag.TF32)
                applied["tf32"] = False
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        applied["profiling_verbosity"] = "DETAILED"
        self._targets(config, options, applied)

        timing_cache_path = self._attach_timing_cache(config, options, applied)
        monitor = None
        if hasattr(config, "progress_monitor") and hasattr(trt, "IProgressMonitor"):
            monitor = _make_monitor(trt, cancel, options.progress)
            config.progress_monitor = monitor
        elif cancel.is_set():
            raise BuildError(f"build of {variant.name} cancelled")

        t0 = time.perf_counter()
        try:
            serialized = builder.build_serialized_network(network, config)
        finally:
            if monitor is not None:
                monitor.close()
                config.progress_monitor = None
            if cancel is self.cancel_event:
                self.cancel_event.clear()  # a cancel() applies to one build
        dt = time.perf_counter() - t0
        if monitor is not None:
            applied["progress"] = {"phases": len(monitor.phases), "steps": monitor.steps}
        if serialized is None:
            if monitor is not None and monitor.cancelled:
                raise BuildError(f"build of {variant.name} on {self.name} cancelled")
            raise BuildError(f"{self.name} failed to build {variant.name}: "
                             f"{'; '.join(logger.errors) or 'builder returned no engine'}")
        blob = bytes(memoryview(serialized))
        if timing_cache_path is not None:
            self._save_timing_cache(config, timing_cache_path, applied)

        record = BuildRecord(
            variant=variant.name, precision=variant.precision, variant_hash=variant.hash,
            source_hash=variant.source_hash, backend=self.name, backend_version=self.version(),
            device=self.device(), options={**options.to_json(), "applied": applied}, shapes=sm.to_json(),
            build_time_s=dt, engine_bytes=len(blob), engine_sha256=hashlib.sha256(blob).hexdigest(),
            versions=self._versions())
        engine = TrtEngine(self, variant, blob, record)
        if out_dir is not None:
            engine.save(Path(out_dir) / f"{variant.name}.engine")
        return engine

    def _versions(self) -> dict[str, str]:
        trt = self.trt
        v = {self.module_name: self.version()}
        if hasattr(trt, "get_nv_onnx_parser_version"):
            v["onnx_parser"] = str(trt.get_nv_onnx_parser_version())
        gpu = self._gpu()
        if gpu is not None:
            v["cuda_driver"] = str(gpu.get("cuda_driver_version", ""))
        try:
            import cuda.bindings as cb
            v["cuda-python"] = str(cb.__version__)
        except Exception:
            pass
        return v

    def _parse(self, parser, variant: Variant, logger) -> None:
        model = variant.model
        if model.has_external_data:
            ok = parser.parse_from_file(str(model.path_for_runtime()))
        else:
            ok = parser.parse(model.proto.SerializeToString())
        errors = parser_errors(parser)
        if ok and not errors:
            return
        if not errors:
            errors = [{"node": -1, "desc": "; ".join(logger.errors) or "parser failed", "code": "UNKNOWN"}]
        n = len(errors)
        raise ParserError(f"{self.name} cannot parse {variant.name}: {n} parser error{'s' if n > 1 else ''}: "
                          f"{_format_parser_errors(errors)}", errors,
                          hint="fix or replace the node(s) named above (workbench.edit); unsupported ops can be cut out")

    def _profile(self, builder, network, config, sm: ShapeMap) -> dict:
        """One optimization profile from the shape map; dynamic inputs must be in it."""
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        names = [t.name for t in inputs]
        unknown = [k for k in sm if k not in names]
        if unknown:
            raise ShapeSpecError(f"--shapes names {unknown} which are not network inputs; inputs are {names}")
        profile = builder.create_optimization_profile()
        used = {}
        for t in inputs:
            shape = tuple(t.shape)
            dynamic = any(d < 0 for d in shape)
            if getattr(t, "is_shape_tensor", False):  # needs set_shape_input values and host buffers
                raise UnsupportedError(f"input {t.name!r} is a shape tensor; shape-tensor inputs are not supported")
            if t.name not in sm:
                if dynamic:
                    dims = "x".join("?" if d < 0 else str(d) for d in shape)
                    raise ShapeSpecError(
                        f"input {t.name!r} has dynamic shape {dims}; give its range with "
                        f"--shapes {t.name}:MIN/OPT/MAX (e.g. {t.name}:"
                        f"{'x'.join('1' if d < 0 else str(d) for d in shape)}/"
                        f"{'x'.join('8' if d < 0 else str(d) for d in shape)}/"
                        f"{'x'.join('32' if d < 0 else str(d) for d in shape)})")
                continue
            rng = sm[t.name]
            for which in (rng.min, rng.opt, rng.max):
                if len(which) != len(shape):
                    raise ShapeSpecError(f"--shapes gives {t.name!r} rank {len(which)}, the model has rank "
                                         f"{len(shape)} {list(shape)}")
                for i, (want, got) in enumerate(zip(shape, which)):
                    if want >= 0 and want != got:
                        raise ShapeSpecError(f"--shapes gives {t.name!r} dim {i} = {got}, but the model fixes it to {want}")
            profile.set_shape(t.name, rng.min, rng.opt, rng.max)
            used[t.name] = rng.to_json()
        if used:
            config.add_optimization_profile(profile)
        return used

    def _targets(self, config, options: BuildOptions, applied: dict) -> None:
        """RTX: optional target compute capabilities (``extra["compute_capabilities"]``)."""
        targets = options.extra.get("compute_capabilities")
        if not targets:
            default = self.default_targets()
            if default is not None:
                applied["compute_capabilities"] = default
            return
        trt = self.trt
        if not hasattr(config, "set_compute_capability") or not hasattr(trt, "ComputeCapability"):
            raise UnsupportedError(f"{self.name} {self.version()} cannot target compute capabilities")
        values = []
        for cc in targets:
            key = "CURRENT" if str(cc).lower() == "current" else "SM" + str(cc).replace(".", "")
            if not hasattr(trt.ComputeCapability, key):
                known = [n for n in dir(trt.ComputeCapability) if n.startswith("SM")]
                raise UnsupportedError(f"unknown compute capability target {cc!r}; {self.name} knows {known}")
            values.append(getattr(trt.ComputeCapability, key))
        config.num_compute_capabilities = len(values)
        for i, v in enumerate(values):
            if not config.set_compute_capability(v, i):
                raise UnsupportedError(f"{self.name} refused compute capability target {targets[i]!r}")
        applied["compute_capabilities"] = [str(c) for c in targets]

    def _attach_timing_cache(self, config, options: BuildOptions, applied: dict) -> Path | None:
        if not options.timing_cache:
            return None
        if not self.uses_timing_cache:
            applied["timing_cache"] = self.timing_cache_note()
            return None
        if not hasattr(config, "create_timing_cache"):
            applied["timing_cache"] = "not supported by this version"
            return None
        path = Path(options.timing_cache)
        data = b""
        if path.is_file():
            data = path.read_bytes()
        try:
            cache = config.create_timing_cache(data)
        except Exception:  # a corrupt or foreign cache file
            cache = None
        if cache is None and data:
            log.warning("timing cache %s is unreadable; starting an empty one", path)
            cache, data = config.create_timing_cache(b""), b""
        if not config.set_timing_cache(cache, False):  # False: the cache was made on another device/version
            log.warning("timing cache %s does not match this device or TensorRT version; starting an empty one", path)
            cache, data = config.create_timing_cache(b""), b""
            config.set_timing_cache(cache, False)
        applied["timing_cache"] = {"path": str(path), "loaded_bytes": len(data)}
        return path

    def _save_timing_cache(self, config, path: Path, applied: dict) -> None:
        """Merge this build's timing cache with the file's current content and write it atomically."""
        updated = config.get_timing_cache()
        if updated is None:
            return
        merged = updated
        if path.is_file():  # another build may have written it meanwhile
            try:
                disk = config.create_timing_cache(path.read_bytes())
                if disk is not None and disk.combine(updated, False):
                    merged = disk
            except Exception:
                log.warning("timing cache %s is unreadable; overwriting it", path)
        data = bytes(memoryview(merged.serialize()))
        atomic_write_bytes(path, data)
        applied["timing_cache"]["saved_bytes"] = len(data)


class TensorRTBackend(TensorRTBase):
    """TensorRT 10.x / 11.x (``tensorrt``): needs an NVIDIA GPU to build and to run."""

    module_name = "tensorrt"
    name = "tensorrt"


register_backend("tensorrt", lambda **kw: TensorRTBackend(**kw))
