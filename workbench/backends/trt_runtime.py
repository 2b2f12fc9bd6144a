"""Run-time pieces of the TensorRT backends that are independent of one engine.

Written against the TensorRT 10.x / 11.x and TensorRT-RTX 1.x Python bindings (and Polygraphy's
``TrtRunner``, which does the same things):

* :func:`shared_logger` — ONE ``ILogger`` per TensorRT module for the whole process. TensorRT keeps the
  logger of the first Builder/Runtime it sees ("the current new logger is ignored"), so a fresh logger per
  build would silently receive nothing. Errors are collected per build/load through
  ``logger.capture()``, so a message never lands in another build's error text.
* :func:`select_device` — ``cudaSetDevice(device_id)``: CUDA's current device is per host thread, so it is
  set before every builder/runtime/stream/allocation call (the dashboard runs actions in worker threads).
* :func:`make_output_allocator` — an ``IOutputAllocator`` for outputs whose shape is only known after the
  run (NonZero, NMS, data-dependent TopK): TensorRT asks it for memory and reports the final shape.
* :func:`make_debug_listener` — an ``IDebugListener`` that copies debug tensors (``network.mark_debug``
  or ``mark_unfused_tensors_as_debug_tensors``) to host arrays: layerwise comparison without marking
  outputs, so TensorRT keeps its fusions.
* :class:`TimingCacheFile` — a timing cache file keyed by TensorRT version and GPU, merged under a file lock.
* :class:`PinnedBuffers` — page-locked host staging buffers, so ``cudaMemcpyAsync`` is really asynchronous.

Nothing here imports TensorRT or cuda-python at module import time.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..errors import BackendUnavailable, RunError
from ..fsutil import atomic_write_bytes

log = logging.getLogger("workbench.tensorrt")


# ---------------------------------------------------------------------------------------- cuda-python
def cudart():
    """cuda-python's runtime module (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime as rt  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as rt  # older cuda-python
        except ImportError as e:
            raise BackendUnavailable("cuda-python is needed to run TensorRT engines: pip install cuda-python") from e
    return rt


def cuda_check(result, what: str):
    """Unpack a cuda-python ``(err, *values)`` result; raise :class:`RunError` unless ``err`` is success."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(getattr(err, "value", err)) != 0:
        raise RunError(f"CUDA {what} failed: {err}")
    return rest[0] if len(rest) == 1 else (rest or None)


def select_device(device_id: int, rt=None) -> None:
    """Make ``device_id`` the calling thread's current CUDA device (``cudaSetDevice``)."""
    rt = rt or cudart()
    cuda_check(rt.cudaSetDevice(int(device_id)), f"cudaSetDevice({device_id})")


# ---------------------------------------------------------------------------------------- dtypes
_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
           "BOOL": np.bool_, "UINT8": np.uint8}


def np_dtype(dt) -> np.dtype:
    """numpy dtype of a TensorRT ``DataType`` (bf16/fp8 through ml_dtypes)."""
    name = getattr(dt, "name", str(dt)).rsplit(".", 1)[-1].upper()
    if name in _DTYPES:
        return np.dtype(_DTYPES[name])
    import ml_dtypes

    extra = {"BF16": ml_dtypes.bfloat16, "FP8": ml_dtypes.float8_e4m3fn}
    if name in extra:
        return np.dtype(extra[name])
    raise RunError(f"TensorRT tensor type {name} has no numpy equivalent here")


def address(addr) -> int:
    """An integer address from what a TensorRT callback passes: an int, or a PyCapsule (TensorRT-RTX's
    ``IDebugListener.process_debug_tensor`` passes ``addr`` as a capsule)."""
    if isinstance(addr, int):
        return addr
    try:
        return int(addr)
    except TypeError:
        pass
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    name = api.PyCapsule_GetName(addr)
    ptr = api.PyCapsule_GetPointer(addr, name)
    if not ptr:
        raise RunError(f"TensorRT passed an address this runner cannot read ({type(addr).__name__})")
    return int(ptr)


# ---------------------------------------------------------------------------------------- logger
class _Capture:
    def __init__(self):
        self.errors: list[str] = []
        self.warnings: list[str] = []


_LOGGERS: dict[str, Any] = {}
_LOGGER_LOCK = threading.Lock()


def shared_logger(trt):
    """The process-wide ``ILogger`` for the TensorRT module ``trt`` (created once).

    ``with logger.capture() as cap:`` collects the ERROR/INTERNAL_ERROR (``cap.errors``) and WARNING
    (``cap.warnings``) messages logged while the block runs. TensorRT may log from its own threads, so every
    open capture receives every message: two builds running at once in one process see each other's
    messages (rare; documented). Outside any capture, messages go to the ``workbench.tensorrt`` logger only.
    """
    with _LOGGER_LOCK:
        logger = _LOGGERS.get(trt.__name__)
        if logger is None:
            logger = _LOGGERS[trt.__name__] = _logger_class(trt)()
        return logger


def _logger_class(trt):
    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self._captures: list[_Capture] = []
            self._lock = threading.Lock()

        @contextlib.contextmanager
        def capture(self) -> Iterator[_Capture]:
            cap = _Capture()
            with self._lock:
                self._captures.append(cap)
            try:
                yield cap
            finally:
                with self._lock:
                    self._captures.remove(cap)

        def log(self, severity, msg):
            sev = getattr(severity, "name", str(severity)).rsplit(".", 1)[-1]
            with self._lock:
                captures = list(self._captures)
            if sev in ("ERROR", "INTERNAL_ERROR"):
                for cap in captures:
                    cap.errors.append(str(msg))
                log.debug("%s: %s", sev, msg)
            elif sev == "WARNING":
                for cap in captures:
                    cap.warnings.append(str(msg))
                log.info("%s", msg)
            else:
                log.debug("%s", msg)

    return _Logger


# ---------------------------------------------------------------------------------------- output allocator
class DeviceAllocations:
    """Named device allocations that only grow (``cudaMalloc``/``cudaFree`` through ``rt``)."""

    def __init__(self, rt):
        self.rt = rt
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (ptr, nbytes)
        self._lock = threading.Lock()

    def get(self, name: str, nbytes: int) -> int:
        nbytes = max(int(nbytes), 1)
        with self._lock:
            ptr, size = self.buffers.get(name, (0, 0))
            if ptr and nbytes <= size:
                return ptr
            if ptr:
                cuda_check(self.rt.cudaFree(ptr), "cudaFree")
            ptr = int(cuda_check(self.rt.cudaMalloc(nbytes), "cudaMalloc"))
            self.buffers[name] = (ptr, nbytes)
            return ptr

    def free(self) -> None:
        with self._lock:
            for ptr, _ in self.buffers.values():
                self.rt.cudaFree(ptr)
            self.buffers.clear()


def make_output_allocator(trt, allocations: DeviceAllocations):
    """An ``IOutputAllocator`` for data-dependent output shapes, as Polygraphy's ``TrtRunner`` uses.

    TensorRT calls ``reallocate_output[_async](name, current, size, alignment[, stream])`` when it knows how
    many bytes an output needs, then ``notify_shape(name, shape)``. Memory comes from ``allocations`` (it
    only grows; ``cudaMalloc`` is 256-byte aligned, more than TensorRT asks for); ``shapes`` holds the last
    shape per output."""

    class _OutputAllocator(trt.IOutputAllocator):
        def __init__(self):
            trt.IOutputAllocator.__init__(self)
            self.allocations = allocations
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output(self, tensor_name, memory, size, alignment):
            return self.allocations.get(tensor_name, size)

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            return self.allocations.get(tensor_name, size)

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(int(d) for d in shape)

    return _OutputAllocator()


# ---------------------------------------------------------------------------------------- debug tensors
def mark_debug_tensors(network, tensor_names: Iterable[str] | str) -> list[str]:
    """Flag tensors of a TensorRT ``INetworkDefinition`` as debug tensors (TensorRT 10+, TensorRT-RTX);
    returns the names marked, in layer order.

    ``tensor_names="unfused"`` uses ``mark_unfused_tensors_as_debug_tensors()`` where the module has it
    (TensorRT-RTX, TensorRT 10.x late releases): every tensor that survives fusion is emitted under its
    engine-internal name and fusion is untouched; returns ``["<unfused>"]``. Marking named tensors with
    ``mark_debug`` keeps them materialized, which can still constrain fusion around them — but unlike
    marking them as network outputs it adds no output bindings."""
    if isinstance(tensor_names, str) and tensor_names == "unfused":
        fn = getattr(network, "mark_unfused_tensors_as_debug_tensors", None)
        if fn is None:
            raise RunError("this TensorRT version cannot mark unfused tensors as debug tensors; name the tensors")
        return ["<unfused>"] if fn() else []
    wanted = set([tensor_names] if isinstance(tensor_names, str) else tensor_names)
    marked: list[str] = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            t = layer.get_output(j)
            if t is not None and t.name in wanted and t.name not in marked and network.mark_debug(t):
                marked.append(t.name)  # mark_debug returns False when TensorRT refuses the tensor
    for i in range(network.num_inputs):
        t = network.get_input(i)
        if t.name in wanted and t.name not in marked and network.mark_debug(t):
            marked.append(t.name)
    return marked


def make_debug_listener(trt, rt, *, keep: Callable[[str], bool] | None = None, max_bytes: int = 2 << 30):
    """An ``IDebugListener`` copying each debug tensor to a host numpy array in ``listener.tensors``.

    ``keep(name)`` filters tensors; ``max_bytes`` bounds what is kept (later tensors are counted in
    ``listener.dropped`` instead). Types numpy cannot hold (int4, fp4) are listed in ``listener.skipped``."""

    class _DebugListener(trt.IDebugListener):
        def __init__(self):
            trt.IDebugListener.__init__(self)
            self.tensors: dict[str, np.ndarray] = {}
            self.skipped: dict[str, str] = {}
            self.dropped: list[str] = []
            self.nbytes = 0

        def process_debug_tensor(self, addr, location, type, shape, name, stream):
            try:
                name = str(name)
                if keep is not None and not keep(name):
                    return True
                try:
                    dt = np_dtype(type)
                except RunError as e:
                    self.skipped[name] = str(e)
                    return True
                arr = np.empty(tuple(int(d) for d in shape), dtype=dt)
                if self.nbytes + arr.nbytes > max_bytes:
                    self.dropped.append(name)
                    return True
                ptr = address(addr)
                if location == trt.TensorLocation.HOST:
                    ctypes.memmove(arr.ctypes.data, ptr, arr.nbytes)
                else:
                    cuda_check(rt.cudaMemcpyAsync(arr.ctypes.data, ptr, arr.nbytes,
                                                  rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream),
                               "cudaMemcpyAsync (debug tensor)")
                    cuda_check(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
                self.tensors[name] = arr
                self.nbytes += arr.nbytes
                return True
            except Exception as e:  # never raise into TensorRT's callback
                self.skipped[str(name)] = f"{e.__class__.__name__}: {e}"
                log.debug("debug tensor %s not captured", name, exc_info=True)
                return False

    return _DebugListener()


# ---------------------------------------------------------------------------------------- pinned host memory
class PinnedBuffers:
    """Page-locked host buffers by name (``cudaMallocHost``), grown on demand, exposed as numpy views.

    ``cudaMemcpyAsync`` from pageable memory is synchronous with respect to the host; from pinned memory
    it is truly asynchronous and faster."""

    def __init__(self, rt):
        self.rt = rt
        self.buffers: dict[str, tuple[int, int]] = {}

    def view(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
        ptr, size = self.buffers.get(name, (0, 0))
        if not ptr or nbytes > size:
            if ptr:
                cuda_check(self.rt.cudaFreeHost(ptr), "cudaFreeHost")
            ptr = int(cuda_check(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
            self.buffers[name] = (ptr, nbytes)
        raw = (ctypes.c_uint8 * nbytes).from_address(ptr)
        return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)

    def free(self) -> None:
        for ptr, _ in self.buffers.values():
            self.rt.cudaFreeHost(ptr)
        self.buffers.clear()


# ---------------------------------------------------------------------------------------- timing cache
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def timing_cache_key(module_name: str, version: str, gpu: dict | None) -> str:
    """What a TensorRT timing cache is valid for: the TensorRT module and version, the GPU model and its
    compute capability (tactic timings from another GPU or version are meaningless)."""
    gpu = gpu or {}
    parts = [module_name, version, str(gpu.get("name") or "nogpu"), "sm" + str(gpu.get("compute_capability") or "?")]
    return _SAFE.sub("_", "-".join(parts)).strip("_")


class TimingCacheFile:
    """A timing cache on disk for one (TensorRT version, GPU): ``<stem>.<key><suffix>`` next to the path
    the user gave, read and merged under an exclusive file lock (``<file>.lock``), written atomically."""

    def __init__(self, path: str | os.PathLike, key: str):
        base = Path(path)
        if base.is_dir():
            base = base / "timing.cache"
        self.path = base.with_name(f"{base.stem}.{key}{base.suffix or '.cache'}")
        self.key = key

    @contextlib.contextmanager
    def locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with open(lock, "a+b") as fh:
            try:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            except ImportError:  # pragma: no cover - Windows: best effort without a lock
                pass
            try:
                yield
            finally:
                try:
                    import fcntl

                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
                except ImportError:  # pragma: no cover
                    pass

    def read(self) -> bytes:
        with self.locked():
            return self.path.read_bytes() if self.path.is_file() else b""

    def merge_and_write(self, config, updated) -> int:
        """Combine ``updated`` (an ``ITimingCache``) with what is on disk now (another build may have
        written it meanwhile) and write the result atomically; returns the bytes written."""
        with self.locked():
            merged = updated
            if self.path.is_file():
                try:
                    disk = config.create_timing_cache(self.path.read_bytes())
                    # ignore_mismatch=False: the file is keyed by version and GPU, a mismatch means it is foreign
                    if disk is not None and disk.combine(updated, False):
                        merged = disk
                except Exception:
                    log.warning("timing cache %s is unreadable; overwriting it", self.path)
            data = bytes(memoryview(merged.serialize()))
            atomic_write_bytes(self.path, data)
            return len(data)
