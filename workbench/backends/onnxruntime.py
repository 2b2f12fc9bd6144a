"""ONNX Runtime backend: the CPU execution provider (embedded default, always available) and the CUDA
execution provider (``onnxruntime-gpu`` on a machine with an NVIDIA GPU).

"Building" here means creating an ``InferenceSession`` (ORT optimizes the graph at session creation).
Engines are not serialized (no engine cache). Which precisions each provider runs is a fact of the
precision registry (``Recipe.unsupported_on`` / ``notes_on`` under ``onnxruntime`` / ``onnxruntime-cuda``).

Timing (:meth:`OrtEngine.timed_call`): on CPU, host timers around ``session.run``; on CUDA, inputs
copied to the GPU once (``OrtValue.ortvalue_from_numpy(arr, "cuda", id)``), outputs bound to the GPU,
``session.run_with_iobinding``. ORT runs its kernels on its *own* stream (created non-blocking), so CUDA
events on the legacy default stream would not bracket them: when the session was created with the
``user_compute_stream`` provider option (the default here, with cuda-python), CUDA events are recorded on
that stream (timer ``"cuda-events"``); otherwise host timers, exact because ``Run`` synchronizes the
provider's stream before it returns (timer ``"host-sync"``).
"""
from __future__ import annotations

import os
import re
import time
import warnings
from typing import Any, Mapping

import numpy as np

from ..data import ShapeMap, resolve_shapes
from ..errors import BackendUnavailable, BuildError, RunError
from ..records import BuildRecord
from ..variant import Variant
from .base import Backend, BuildOptions, Engine, TimedCall, register_backend

def _ort():
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - onnxruntime is a core dependency
        raise BackendUnavailable("onnxruntime is not installed", hint="pip install onnxruntime") from e
    return ort


_NO_KERNEL = re.compile(r"Provider type for (\w+) node")


def _preload_cuda_libraries(ort) -> None:
    """Load CUDA/cuDNN from the nvidia-* pip packages when ORT cannot find them on its own (ORT >= 1.21).

    onnxruntime-gpu finds pip-installed CUDA libraries only relative to its own folder; installed
    elsewhere (another venv, ``--target``) it needs this preload, or ``LD_LIBRARY_PATH``."""
    if getattr(_preload_cuda_libraries, "done", False) or not hasattr(ort, "preload_dlls"):
        return
    _preload_cuda_libraries.done = True
    try:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            ort.preload_dlls()
    except Exception:
        pass


class OrtEngine(Engine):
    def __init__(self, backend: "OnnxRuntimeBackend", variant: Variant, session, record: BuildRecord,
                 profile_prefix: str | None = None):
        self.backend = backend
        self.variant = variant
        self.session = session
        self.record = record
        self.profile_prefix = profile_prefix
        self._inputs = [i.name for i in session.get_inputs()]
        self._outputs = [o.name for o in session.get_outputs()]

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    cuda_stream = None  # the user_compute_stream given to the CUDA provider (destroyed on close)

    def close(self) -> None:
        self.session = None
        if self.cuda_stream is not None:
            try:
                from cuda.bindings import runtime as rt
                rt.cudaStreamDestroy(self.cuda_stream)
            except Exception:
                pass
            self.cuda_stream = None

    def run(self, feeds: Mapping[str, np.ndarray], output_names: list[str] | None = None) -> dict[str, np.ndarray]:
        missing = [n for n in self._inputs if n not in feeds]
        if missing:
            raise RunError(f"missing input(s) {missing} for {self.variant.name}")
        try:
            outs = self.session.run(output_names, {k: feeds[k] for k in self._inputs})
        except Exception as e:
            raise RunError(f"ONNX Runtime failed to run {self.variant.name}: {e}") from e
        return dict(zip(output_names or self._outputs, outs))

    # -------------------------------------------------------------- measurement (workbench.measure)
    @property
    def on_cuda(self) -> bool:
        """The session runs on the CUDA provider (not a CPU fallback)."""
        try:
            return self.session.get_providers()[0] == "CUDAExecutionProvider"
        except Exception:
            return False

    def user_stream(self) -> int:
        """The CUDA stream ORT computes on when the session was given one (``user_compute_stream``), else 0."""
        try:
            opts = self.session.get_provider_options().get("CUDAExecutionProvider", {})
            if str(opts.get("has_user_compute_stream", "0")) != "1":
                return 0
            return int(opts.get("user_compute_stream", "0") or 0)
        except Exception:
            return 0

    def _iobinding(self, feeds: Mapping[str, np.ndarray]):
        ort = _ort()
        device_id = int(self.backend.device_id)
        io = self.session.io_binding()
        keep = []  # the OrtValues must outlive the binding
        for name in self.input_names:
            ov = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(feeds[name]), "cuda", device_id)
            keep.append(ov)
            io.bind_ortvalue_input(name, ov)
        for name in self.output_names:
            io.bind_output(name, "cuda", device_id)
        return io, keep

    def timed_call(self, feeds: Mapping[str, np.ndarray]) -> TimedCall:
        """CPU: ``session.run`` on contiguous host arrays (timer ``host``). CUDA: inputs on the GPU once,
        ``run_with_iobinding`` per iteration, CUDA events on the session's own stream (``cuda-events``) or
        host timers around the synchronizing call (``host-sync``)."""
        if self.on_cuda:
            io, keep = self._iobinding(feeds)
            stream = self.user_stream()
            return TimedCall(self.session.run_with_iobinding, (io,), "cuda-events" if stream else "host-sync",
                             stream, keep.clear)
        prepared = {n: np.ascontiguousarray(feeds[n]) for n in self.input_names}
        return TimedCall(self.session.run, (None, prepared), "host")

    def profile_layers(self, feeds: Mapping[str, np.ndarray], *, iterations: int = 20, warmup: int = 3,
                       progress: bool = False, **opts):
        """ORT's profiler in a separate session (:func:`workbench.measure.layers.profile_layers_ort`)."""
        from ..measure.layers import profile_layers_ort

        return profile_layers_ort(self, feeds, iterations=iterations, warmup=warmup, progress=progress, **opts)


def _check_shapes(model, shapes) -> None:
    """ORT needs no shape profile, but a ``shapes`` map that does not fit the model is still the
    user's mistake (unknown input, wrong rank, a fixed dim changed): raise ``ShapeSpecError`` as the
    TensorRT backends do, instead of ignoring it."""
    sm = ShapeMap.parse(shapes)
    if not sm:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dims the map leaves out default quietly: only the map is checked
        for which in ("min", "opt", "max"):
            resolve_shapes(model, sm, which=which)


class OnnxRuntimeBackend(Backend):
    """``provider``: ``"cpu"`` (default) or ``"cuda"``."""

    serializes_engines = False
    uses_timing_cache = False

    def __init__(self, provider: str = "cpu", device_id: int = 0):
        self.provider = provider
        self.device_id = device_id
        self.name = "onnxruntime" if provider == "cpu" else f"onnxruntime-{provider}"
        self.device_kind = "cpu" if provider == "cpu" else "cuda"
        self.builds_without_gpu = provider == "cpu"  # the CUDA provider needs its GPU to create a session

    # -------------------------------------------------------------- facts
    def available(self) -> tuple[bool, str]:
        ort = _ort()
        if self.provider == "cpu":
            return True, ""
        _preload_cuda_libraries(ort)
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return False, ("ONNX Runtime's CUDA provider is not installed: pip install 'trt-workbench[gpu]' "
                           "(onnxruntime-gpu, CUDA 12/13 build matching your driver) instead of onnxruntime")
        from ..device import cuda_device_info
        info = cuda_device_info(self.device_id)
        if not info.get("name"):
            return False, f"no NVIDIA GPU found for the CUDA provider ({info.get('error', 'no device')})"
        return True, ""

    def version(self) -> str:
        return _ort().__version__

    def device(self) -> dict[str, Any]:
        if self.provider == "cpu":
            import platform
            return {"type": "cpu", "name": platform.processor() or platform.machine(), "cores": os.cpu_count()}
        from ..device import cuda_device_info
        return {"type": "cuda", **cuda_device_info(self.device_id)}

    def unsupported_op_type(self, error: Exception, precision: str) -> str | None:
        """ORT's CUDA provider lacks some fp16/bf16 kernels (e.g. bf16 MaxPool, BatchNormalization); it then
        fails at session creation with "Provider type for <Op> node with name ... is not set"."""
        from ..precision import get_recipe

        recipe = get_recipe(precision, missing_ok=True)
        if self.provider != "cuda" or recipe is None or recipe.kind != "cast":
            return None
        m = _NO_KERNEL.search(f"{error} {error.__cause__ or ''}")
        return m.group(1) if m else None

    # -------------------------------------------------------------- build
    def session_options(self, options: BuildOptions):
        ort = _ort()
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if options.threads:
            so.intra_op_num_threads = int(options.threads)
        so.log_severity_level = 4  # errors are raised as RunError/BuildError; ORT's own log line would repeat them
        if options.profiling:
            so.enable_profiling = True
            prefix = options.extra.get("profile_prefix")
            if prefix:
                so.profile_file_prefix = str(prefix)
        return so

    def providers_for(self, variant: Variant, stream: int = 0) -> list:
        if self.provider == "cpu":
            return ["CPUExecutionProvider"]
        opts = {"device_id": self.device_id, "use_tf32": int(variant.tf32)}
        if stream:
            # Our own stream lets latency runs time the session with CUDA events (workbench.measure).
            opts["user_compute_stream"] = str(stream)
        return [("CUDAExecutionProvider", opts), "CPUExecutionProvider"]

    def _create_stream(self) -> tuple[int, object | None]:
        """A non-blocking CUDA stream from cuda-python, or (0, None) when cuda-python is missing."""
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            return 0, None
        try:
            rt.cudaSetDevice(self.device_id)
            err, s = rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking)
            if int(getattr(err, "value", err)) != 0:
                return 0, None
            return int(s), s
        except Exception:
            return 0, None

    def build(self, variant: Variant, shapes: ShapeMap | str | Mapping | None = None,
              options: BuildOptions | None = None) -> OrtEngine:
        options = options or BuildOptions()
        self.check_can_build(variant)
        ort = _ort()
        so = self.session_options(options)
        model = variant.model
        _check_shapes(model, shapes)
        stream, stream_obj = self._create_stream() if self.provider == "cuda" else (0, None)
        t0 = time.perf_counter()
        try:
            if model.has_external_data:
                src = str(model.path_for_runtime())
            else:
                src = model.proto.SerializeToString() if model.proto.ByteSize() < 2**31 - 1 else str(model.path_for_runtime())
            sess = ort.InferenceSession(src, sess_options=so, providers=self.providers_for(variant, stream))
        except Exception as e:
            raise BuildError(f"ONNX Runtime could not load {variant.name}: {str(e).strip().splitlines()[-1]}") from e
        dt = time.perf_counter() - t0
        if self.provider == "cuda" and sess.get_providers()[0] != "CUDAExecutionProvider":
            raise BackendUnavailable(
                "ONNX Runtime fell back to CPU: the CUDA provider could not load (CUDA/cuDNN libraries missing?)",
                hint="install onnxruntime-gpu built for your CUDA version and check `nvidia-smi`")
        rec = BuildRecord(
            variant=variant.name, precision=variant.precision, variant_hash=variant.hash,
            source_hash=variant.source_hash, backend=self.name, backend_version=self.version(),
            device=self.device(), options=options.to_json(),
            shapes=ShapeMap.parse(shapes).to_json(), build_time_s=dt,
            versions={"onnxruntime": self.version()})
        eng = OrtEngine(self, variant, sess, rec)
        eng.cuda_stream = stream_obj
        return eng


register_backend("onnxruntime", lambda **kw: OnnxRuntimeBackend("cpu", **kw))
register_backend("onnxruntime-cuda", lambda **kw: OnnxRuntimeBackend("cuda", **kw))
