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
from .trt_runtime import (DeviceAllocations, PinnedBuffers, TimingCacheFile, cuda_check, cudart,
                          make_debug_listener, make_output_allocator, mark_debug_tensors, np_dtype,
                          select_device, shared_logger, timing_cache_key)

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
    """numpy dtype of a TensorRT DataType (bf16/fp8 through ml_dtypes); see :func:`trt_runtime.np_dtype`."""
    return np_dtype(dt)


_MONITOR_CLS: dict[str, type] = {}


def _make_logger(trt):
    """The process-wide TensorRT logger of module ``trt`` (:func:`trt_runtime.shared_logger`).

    TensorRT keeps the first logger it is given for the whole process, so there is exactly one; errors are
    collected per build/load with ``logger.capture()``."""
    return shared_logger(trt)


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
                self._lock = threading.Lock()  # TensorRT may call back from several builder threads

            def _depth(self, parent):
                stack = self._open.get(parent) if parent else None
                return stack[-1][0] + 1 if stack else 0

            def phase_start(self, phase_name, parent_phase, num_steps):
                with self._lock:
                    self._phase_start(phase_name, parent_phase, num_steps)

            def _phase_start(self, phase_name, parent_phase, num_steps):
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
                with self._lock:
                    return self._step_complete(phase_name, step)

            def _step_complete(self, phase_name, step):
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
                with self._lock:
                    self._phase_finish(phase_name)

            def _phase_finish(self, phase_name):
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
_cudart = cudart
_cuda_check = cuda_check


class TrtEngine(Engine):
    """A serialized TensorRT engine; deserialized on the GPU (``backend.device_id``) at first run.

    ``run(feeds)`` copies inputs in, executes and copies outputs back. For timing without host copies:
    ``stage(feeds)`` once, then ``enqueue()`` N times and ``synchronize()`` (or time ``stream`` with CUDA
    events); ``fetch()`` copies the outputs back. ``context`` / ``stream`` are there for profilers.

    * Every GPU call first makes ``backend.device_id`` the thread's current device (``cudaSetDevice``).
    * Inputs go through page-locked host buffers, so the copies are truly asynchronous.
    * Outputs whose shape is only known after the run (NonZero, NMS, data-dependent TopK) get their memory
      from an ``IOutputAllocator``; host-resident outputs (shape-inference I/O) get host memory.
    * Engines built with ``BuildOptions(extra={"debug_tensors": [...] | "unfused"})`` return their debug
      tensors from :meth:`debug_tensors` (``IDebugListener``), with no extra output bindings.
    """

    def __init__(self, backend: "TensorRTBase", variant: Variant, serialized: bytes, record: BuildRecord):
        self.backend = backend
        self.variant = variant
        self.serialized = bytes(serialized)
        self.record = record
        self._engine = None
        self._context = None
        self._stream = None
        self._runtime = None
        self._logger = None
        self._runtime_config = None
        self.runtime_facts: dict[str, Any] = {}
        self._allocations: DeviceAllocations | None = None
        self._pinned: PinnedBuffers | None = None
        self._output_allocator = None
        self._bound_contexts: list = []
        self._staged: dict[str, tuple[tuple[int, ...], np.dtype, str]] = {}  # name -> (shape, dtype, how)
        self._host_inputs: dict[str, np.ndarray] = {}
        self._host_outputs: dict[str, np.ndarray] = {}

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

    def _device(self):
        """Make the backend's GPU current on this thread; returns the CUDA runtime module."""
        rt = cudart()
        select_device(self.backend.device_id, rt)
        return rt

    def load(self):
        """Deserialize on the GPU and create the execution context and stream (once)."""
        if self._context is not None:
            return self
        ok, why = self.backend.can_run()
        if not ok:
            raise BackendUnavailable(why)
        self.backend.check_engine_targets(self)
        trt = self.backend.trt
        rt = self._device()
        self._logger = shared_logger(trt)
        with self._logger.capture() as cap:
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._runtime.deserialize_cuda_engine(self.serialized)
            if self._engine is None:
                raise RunError(f"{self.backend.name} could not deserialize the engine of {self.variant.name}: "
                               f"{'; '.join(cap.errors) or 'unknown error'}",
                               hint="engines only load with the exact TensorRT version and a compatible GPU they were built for")
            self._runtime_config, self.runtime_facts = self.backend.runtime_config(self._engine, self.record)
            self._context = self._create_context()
            if self._context is None:
                raise RunError(f"could not create an execution context for {self.variant.name}: "
                               f"{'; '.join(cap.errors) or 'out of GPU memory?'}")
        self._stream = cuda_check(rt.cudaStreamCreate(), "cudaStreamCreate")
        self._allocations = DeviceAllocations(rt)
        self._pinned = PinnedBuffers(rt)
        self._output_allocator = make_output_allocator(trt, self._allocations)
        return self

    def _create_context(self):
        if self._runtime_config is not None:
            return self._engine.create_execution_context(self._runtime_config)
        return self._engine.create_execution_context()

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

    def stage(self, feeds: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        """Set input shapes, (re)allocate buffers, copy inputs to the GPU; returns output shapes
        (``-1`` where the shape is data-dependent and only known after the run).

        A failure leaves nothing staged: the next ``enqueue()`` refuses instead of running new shapes
        against old buffers."""
        for name, value in ((self.variant.recipe or {}).get("frozen_inputs") or {}).items():
            if name in feeds and not np.array_equal(np.asarray(feeds[name]), np.asarray(value)):
                raise RunError(f"input {name!r} was frozen to {value} when {self.variant.name} was built; got "
                               f"{np.asarray(feeds[name]).tolist()!r:.60}", hint=f"rebuild with --freeze {name}=VALUE")
        self.load()
        self._staged, self._host_inputs, self._host_outputs = {}, {}, {}
        trt, rt = self.backend.trt, self._device()
        eng, ctx = self._engine, self._context
        inputs, outputs = self._io_names(input=True), self._io_names(input=False)
        missing = [n for n in inputs if n not in feeds]
        if missing:
            raise RunError(f"missing input(s) {missing} for {self.variant.name}; inputs are {inputs}")
        host = {}
        for name in inputs:
            if eng.get_tensor_location(name) != trt.TensorLocation.DEVICE:  # shape tensors live on the host
                raise RunError(f"input {name!r} is a host (shape) tensor; not supported by this runner")
            arr = np.ascontiguousarray(feeds[name], dtype=np_dtype(eng.get_tensor_dtype(name)))
            host[name] = arr
            if not ctx.set_input_shape(name, tuple(arr.shape)):
                raise RunError(f"input {name!r} shape {list(arr.shape)} is outside the engine's profile "
                               f"{[list(s) for s in eng.get_tensor_profile_shape(name, 0)]}",
                               hint="rebuild with a wider --shapes MIN/OPT/MAX range")
        staged_in = {}
        for name, arr in host.items():
            pinned = self._pinned.view(name, arr.shape, arr.dtype)
            pinned[...] = arr
            ptr = self._allocations.get(name, arr.nbytes)
            cuda_check(rt.cudaMemcpyAsync(ptr, pinned.ctypes.data, arr.nbytes,
                                          rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream),
                       "cudaMemcpyAsync (host to device)")
            self._set_address(ctx, name, ptr)
            staged_in[name] = pinned
        staged = {}
        for name in outputs:
            shape = tuple(ctx.get_tensor_shape(name))
            dt = np_dtype(eng.get_tensor_dtype(name))
            if eng.get_tensor_location(name) == trt.TensorLocation.HOST:
                if any(d < 0 for d in shape):
                    raise RunError(f"host output {name!r} has a data-dependent shape; not supported by this runner")
                buf = np.empty(shape, dtype=dt)  # shape-inference outputs live in host memory
                self._set_address(ctx, name, buf.ctypes.data)
                self._host_outputs[name] = buf
                staged[name] = (shape, dt, "host")
            elif any(d < 0 for d in shape):
                # data-dependent shape: TensorRT asks the output allocator once it knows the size
                if not ctx.set_output_allocator(name, self._output_allocator):
                    raise RunError(f"TensorRT refused an output allocator for {name!r} of {self.variant.name}")
                staged[name] = (shape, dt, "allocator")
            else:
                ptr = self._allocations.get(name, int(np.prod(shape, dtype=np.int64)) * dt.itemsize)
                self._set_address(ctx, name, ptr)
                staged[name] = (shape, dt, "device")
        self._host_inputs, self._staged = staged_in, staged
        for bound in self._bound_contexts:  # buffers may have moved: keep profiling contexts pointing at them
            self._bind(bound)
        return {n: s for n, (s, _, _) in self._staged.items()}

    def _set_address(self, ctx, name: str, ptr: int) -> None:
        # set_tensor_address returns False for a misaligned pointer or an unknown tensor name
        with self._logger.capture() as cap:
            ok = ctx.set_tensor_address(name, ptr)
        if not ok:
            raise RunError(f"TensorRT rejected the address of tensor {name!r} for {self.variant.name}: "
                           f"{'; '.join(cap.errors[-3:]) or 'see the TensorRT log'}")

    def enqueue(self, context=None) -> None:
        """Launch one inference on ``stream`` with the staged inputs (no host copies, no sync);
        ``context``: another execution context of this engine (see :meth:`bound_context`)."""
        if not self._staged:
            raise RunError("call stage(feeds) before enqueue()")
        self._device()
        ctx = self._context if context is None else context
        with self._logger.capture() as cap:
            ok = ctx.execute_async_v3(int(self._stream))
        if not ok:
            raise RunError(f"TensorRT execute_async_v3 failed for {self.variant.name}: "
                           f"{'; '.join(cap.errors[-3:]) or 'see the TensorRT log'}")

    def _bind(self, ctx) -> None:
        for name, arr in self._host_inputs.items():
            if not ctx.set_input_shape(name, tuple(arr.shape)):
                raise RunError(f"input {name!r}: shape {list(arr.shape)} rejected by the profiling context")
        for name in self._host_inputs:
            self._set_address(ctx, name, self._allocations.buffers[name][0])
        for name, (_, _, how) in self._staged.items():
            if how == "device":
                self._set_address(ctx, name, self._allocations.buffers[name][0])
            elif how == "host":
                self._set_address(ctx, name, self._host_outputs[name].ctypes.data)
            elif not ctx.set_output_allocator(name, self._output_allocator):
                raise RunError(f"TensorRT refused an output allocator for {name!r}")

    def bound_context(self):
        """A new execution context with the staged input shapes and buffers, for profilers.

        TensorRT cannot detach an ``IProfiler`` (``context.profiler = None`` is rejected with an API usage
        error and the profiler stays attached), so profile in a context that is released afterwards with
        :meth:`release_context`. It allocates its own activation memory; run it on ``stream`` only, never
        concurrently with ``enqueue()``. The engine keeps it pointed at its buffers when they grow and
        releases it before freeing them in :meth:`close`."""
        if not self._staged:
            raise RunError("call stage(feeds) before bound_context()")
        self._device()
        ctx = self._create_context()
        if ctx is None:
            raise RunError(f"could not create a second execution context for {self.variant.name} (out of GPU memory?)")
        self._bind(ctx)
        self._bound_contexts.append(ctx)
        return ctx

    def release_context(self, ctx) -> None:
        """Drop a context made by :meth:`bound_context` (after the stream finished using it)."""
        self.synchronize()
        self._bound_contexts = [c for c in self._bound_contexts if c is not ctx]

    def synchronize(self) -> None:
        rt = self._device()
        cuda_check(rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def _output_shape(self, name: str, shape: tuple[int, ...], how: str) -> tuple[int, ...]:
        if how != "allocator":
            return shape
        got = self._output_allocator.shapes.get(name)
        if got is None:
            raise RunError(f"TensorRT reported no shape for data-dependent output {name!r} of {self.variant.name}")
        return got

    def fetch(self) -> dict[str, np.ndarray]:
        """Copy the staged outputs back to host arrays (synchronizes the stream)."""
        rt = self._device()
        self.synchronize()  # data-dependent shapes are known only once the run finished
        out, pinned = {}, {}
        for name, (shape, dt, how) in self._staged.items():
            if how == "host":
                out[name] = self._host_outputs[name].copy()
                continue
            shape = self._output_shape(name, shape, how)
            buf = self._pinned.view("out:" + name, shape, dt)
            nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            if nbytes:
                cuda_check(rt.cudaMemcpyAsync(buf.ctypes.data, self._allocations.buffers[name][0], nbytes,
                                              rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream),
                           "cudaMemcpyAsync (device to host)")
            pinned[name] = buf
        self.synchronize()
        out.update({name: np.array(buf) for name, buf in pinned.items()})  # copies out of pinned memory
        return {name: out[name] for name in self._staged}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.stage(feeds)
        self.enqueue()
        return self.fetch()

    def debug_tensors(self, feeds: Mapping[str, np.ndarray], *, max_bytes: int = 2 << 30) -> dict[str, np.ndarray]:
        """Run once and return the engine's debug tensors as host arrays (``IDebugListener``).

        The engine must be built with ``BuildOptions(extra={"debug_tensors": [tensor names]})`` (kept
        materialized, original names) or ``{"debug_tensors": "unfused"}`` (every tensor that survived
        fusion, under engine-internal names, fusion untouched). Marking tensors as network outputs — what
        breaks TensorRT's fusions — is never needed. Debug state is switched off again afterwards, so
        timing runs are not slowed. ``max_bytes`` bounds what is kept (the rest is listed in
        ``self.last_debug["dropped"]``)."""
        applied = (self.record.options or {}).get("applied", {}) if self.record is not None else {}
        if not applied.get("debug_tensors"):
            raise UsageError(f"{self.variant.name} was built without debug tensors",
                             hint="build with BuildOptions(extra={'debug_tensors': [names] or 'unfused'})")
        trt = self.backend.trt
        self.stage(feeds)
        rt = self._device()
        listener = make_debug_listener(trt, rt, max_bytes=max_bytes)
        ctx = self._context
        if not ctx.set_debug_listener(listener):
            raise RunError(f"TensorRT refused the debug listener for {self.variant.name}")
        unfused = applied["debug_tensors"] == ["<unfused>"]
        if unfused:
            ctx.unfused_tensors_debug_state = True
        else:
            ctx.set_all_tensors_debug_state(True)
        try:
            self.enqueue()
            self.synchronize()
        finally:
            if unfused:
                ctx.unfused_tensors_debug_state = False
            else:
                ctx.set_all_tensors_debug_state(False)
        self.last_debug = {"skipped": dict(listener.skipped), "dropped": list(listener.dropped),
                           "bytes": listener.nbytes}
        return dict(listener.tensors)

    # -------------------------------------------------------------- measurement (workbench.measure)
    def timed_call(self, feeds: Mapping[str, np.ndarray]) -> TimedCall:
        """Inputs staged on the GPU once; one ``enqueue`` per iteration on ``stream``, bracketed by CUDA
        events (timer ``cuda-events``); no host<->device copies in the timed region.

        What the number means: each iteration starts on an idle stream (the previous one was synchronized,
        so percentiles exist), so the start event fires before ``execute_async_v3`` launches anything; the
        time is *enqueue + GPU* — for a launch-bound engine it includes TensorRT's host launch overhead."""
        self.stage(feeds)
        self.synchronize()
        return TimedCall(self.enqueue, (), "cuda-events", self.stream,
                         scope="enqueue + GPU (events on an idle stream around one execute_async_v3)")

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
        """Release GPU resources: profiling contexts first (they point at this engine's buffers), then the
        buffers, the stream, the context and the engine. The runtime cache (RTX) is saved."""
        if self._stream is not None:
            rt = self._device()
            rt.cudaStreamSynchronize(self._stream)  # buffers may still be in use by an enqueued execution
            self._bound_contexts.clear()
            self.backend.save_runtime_cache(self._runtime_config, self.runtime_facts)
            self._context = None  # before its buffers are freed
            if self._allocations is not None:
                self._allocations.free()
            if self._pinned is not None:
                self._pinned.free()
            rt.cudaStreamDestroy(self._stream)
            self._stream = None
        self._context = None
        self._runtime_config = None
        self._engine = None
        self._runtime = None
        self._staged = {}
        self._host_inputs = {}
        self._host_outputs = {}


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

    def runtime_config(self, engine, record: BuildRecord | None) -> tuple[Any, dict]:
        """(``IRuntimeConfig`` or None, facts recorded in ``TrtEngine.runtime_facts``) for new contexts."""
        return None, {}

    def save_runtime_cache(self, runtime_config, facts: dict) -> None:
        """Persist what the runtime config cached (TensorRT-RTX's runtime cache); nothing by default."""

    # -------------------------------------------------------------- facts
    def _gpu(self) -> dict | None:
        info = cuda_device_info(self.device_id)
        return info if info.get("name") else None

    def _select_device(self) -> bool:
        """``cudaSetDevice(device_id)`` before the builder touches a GPU; False when building without one."""
        if self._gpu() is None:
            return False
        select_device(self.device_id)
        return True

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
        if cancel is self.cancel_event:
            # cancel() applies to the build in progress: one left over from an earlier call is dropped
            self.cancel_event.clear()
        logger = shared_logger(trt)
        applied: dict[str, Any] = {}
        from ..shapes import for_tensorrt  # profile checked per dim; dims sharing a name but not a role renamed
        variant, renamed = for_tensorrt(variant, sm)
        if renamed:
            applied["renamed_dims"] = renamed
        if options.extra.get("fold_control_flow", True):  # If nodes resolved first: fixed dims, frozen inputs
            from ..shapes import resolve_control_flow
            variant, control_flow = resolve_control_flow(variant, sm, options.extra.get("freeze"))
            if control_flow:
                applied["control_flow"] = control_flow
        if self._select_device():
            applied["device_id"] = self.device_id
        with logger.capture() as cap:
            return self._build(variant, sm, options, out_dir, trt, logger, cap, cancel, applied)

    def _build(self, variant: Variant, sm: ShapeMap, options: BuildOptions, out_dir, trt, logger, cap, cancel,
               applied: dict[str, Any]) -> "TrtEngine":

        builder = trt.Builder(logger)
        flags = 0
        if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            applied["strongly_typed"] = True
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        self._parse(parser, variant, cap)
        debug = options.extra.get("debug_tensors")
        if debug:
            marked = mark_debug_tensors(network, debug)
            if not marked:
                raise UnsupportedError(f"{self.name} marked none of the debug tensors {debug!r} in {variant.name}",
                                       hint="name tensors of the ONNX graph, or 'unfused'")
            applied["debug_tensors"] = marked

        config = builder.create_builder_config()
        profile_shapes = self._profile(builder, network, config, sm, cap)
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
                             f"{'; '.join(cap.errors) or 'builder returned no engine'}",
                             hint=_control_flow_hint(variant))
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

    def _parse(self, parser, variant: Variant, cap) -> None:
        model = variant.model
        if model.has_external_data:
            ok = parser.parse_from_file(str(model.path_for_runtime()))
        else:
            ok = parser.parse(model.proto.SerializeToString())
        errors = parser_errors(parser)
        if ok and not errors:
            return
        if not errors:
            errors = [{"node": -1, "desc": "; ".join(cap.errors) or "parser failed", "code": "UNKNOWN"}]
        n = len(errors)
        raise ParserError(f"{self.name} cannot parse {variant.name}: {n} parser error{'s' if n > 1 else ''}: "
                          f"{_format_parser_errors(errors)}", errors,
                          hint="fix or replace the node(s) named above (workbench.edit); unsupported ops can be cut out")

    def _profile(self, builder, network, config, sm: ShapeMap, cap) -> dict:
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
        if used and config.add_optimization_profile(profile) < 0:
            why = [e for e in cap.errors if "Profile" in e or "profile" in e] or cap.errors[-2:]
            raise ShapeSpecError(f"{self.name} rejected the optimization profile {used}: "
                                 f"{'; '.join(why) or 'invalid profile'}",
                                 hint="each dim needs MIN <= OPT <= MAX and the ranges must fit the model")
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

    def _attach_timing_cache(self, config, options: BuildOptions, applied: dict) -> TimingCacheFile | None:
        """Load the timing cache for this TensorRT version and GPU (a file keyed by both, next to the path
        given: tactic timings from another version or GPU are never mixed in)."""
        if not options.timing_cache:
            return None
        if not self.uses_timing_cache:
            applied["timing_cache"] = self.timing_cache_note()
            return None
        if not hasattr(config, "create_timing_cache"):
            applied["timing_cache"] = "not supported by this version"
            return None
        store = TimingCacheFile(options.timing_cache, timing_cache_key(self.module_name, self.version(), self._gpu()))
        data = store.read()
        try:
            cache = config.create_timing_cache(data)
        except Exception:  # a corrupt cache file
            cache = None
        if cache is None and data:
            log.warning("timing cache %s is unreadable; starting an empty one", store.path)
            cache, data = config.create_timing_cache(b""), b""
        if not config.set_timing_cache(cache, False):  # False: refuse a cache made on another device/version
            log.warning("timing cache %s does not match this device or TensorRT version; starting an empty one",
                        store.path)
            cache, data = config.create_timing_cache(b""), b""
            config.set_timing_cache(cache, False)
        applied["timing_cache"] = {"path": str(store.path), "key": store.key, "loaded_bytes": len(data)}
        return store

    def _save_timing_cache(self, config, store: TimingCacheFile, applied: dict) -> None:
        """Merge this build's timing cache with the file's current content (under its lock), write atomically."""
        updated = config.get_timing_cache()
        if updated is None:
            return
        applied["timing_cache"]["saved_bytes"] = store.merge_and_write(config, updated)


def _control_flow_hint(variant: Variant) -> str | None:
    """A hint for native build failures on graphs with If/Loop/Scan (TensorRT's control-flow support is
    narrower than ONNX's): name the nodes and the usual fix."""
    nodes = [f"{n.name or n.op_type} ({n.op_type})" for n in variant.model.proto.graph.node
             if n.op_type in ("If", "Loop", "Scan")]
    if not nodes:
        return None
    shown = ", ".join(nodes[:4]) + (f" and {len(nodes) - 4} more" if len(nodes) > 4 else "")
    cf = variant.recipe.get("control_flow") or {}
    if cf.get("remaining"):  # resolve_control_flow ran: say what each remaining condition depends on
        deps = sorted({d for r in cf["remaining"] for d in r.get("depends_on", [])})
        values = [d for d in deps if not d.startswith("shape:")]
        dims = [d[6:] for d in deps if d.startswith("shape:")]
        what = []
        if values:
            what.append("freeze the value(s) it depends on: " + ", ".join(f"--freeze {d}=VALUE" for d in values)
                        + " (the engine then answers for that value only)")
        if dims:
            what.append(f"fix the dims of {', '.join(dims)} it depends on (min = opt = max in --shapes)")
        if cf.get("error"):
            what.append(f"folding failed: {cf['error'][:200]}")
        return (f"TensorRT could not build the control flow left after folding: {shown}; "
                + ("; ".join(what) if what else "its conditions depend on data computed at run time: this "
                   "backend cannot build this model (use onnxruntime)"))
    return (f"the model has control flow: {shown}; when a condition depends only on an input with a fixed value "
            f"(a sample rate, a flag), fix that input to a constant and fold the graph (workbench.edit) so the "
            f"branch is chosen before the build")


class TensorRTBackend(TensorRTBase):
    """TensorRT 10.x / 11.x (``tensorrt``): needs an NVIDIA GPU to build and to run."""

    module_name = "tensorrt"
    name = "tensorrt"


register_backend("tensorrt", lambda **kw: TensorRTBackend(**kw))
