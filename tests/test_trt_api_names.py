"""Every TensorRT / cuda-python name the GPU-only code paths use exists in the installed modules.

The run path of the TensorRT backends (``TrtEngine``), the IProfiler-based per-layer profiler and the
CUDA-event latency timer cannot execute on a machine without a GPU. These tests read their source
with ``ast`` and check each attribute they call against the real classes of ``tensorrt_rtx`` (which
shares the Builder / OnnxParser / BuilderConfig / Runtime / ExecutionContext API with TensorRT 10/11)
and of ``cuda.bindings.runtime``, so a rename or a removed API fails here, in CPU-only CI. They do not
run an engine and say nothing about run-time behaviour. Full ``tensorrt`` 10.x/11.x cannot be
installed here; its names were checked against NVIDIA's documentation instead. The last tests cover
guards of the GPU path that need no GPU (RTX target check, shape-tensor inputs).
"""
from __future__ import annotations

import ast
import importlib
import inspect
import re
import threading
from pathlib import Path

import pytest

import workbench.backends.tensorrt as trt_backend
import workbench.backends.tensorrt_rtx as rtx_backend
import workbench.backends.trt_runtime as trt_runtime
import workbench.measure.latency as latency
import workbench.measure.layers as layers

layerwise = importlib.import_module("workbench.compare.layerwise")  # the package re-exports a function of that name

SOURCES = {"tensorrt": Path(trt_backend.__file__), "layers": Path(layers.__file__),
           "layerwise": Path(layerwise.__file__), "latency": Path(latency.__file__),
           "trt_runtime": Path(trt_runtime.__file__), "tensorrt_rtx": Path(rtx_backend.__file__)}

#: receiver variable -> TensorRT class, per source file (every function of the file) ...
TRT_RECEIVERS = {
    "tensorrt": {"builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser",
                 "config": "IBuilderConfig", "profile": "IOptimizationProfile", "ctx": "IExecutionContext",
                 "self._context": "IExecutionContext", "eng": "ICudaEngine", "self._engine": "ICudaEngine",
                 "self.engine": "ICudaEngine",
                 "self._runtime": "Runtime", "inspector": "EngineInspector", "cache": "ITimingCache",
                 "disk": "ITimingCache", "updated": "ITimingCache", "merged": "ITimingCache"},
    "layers": {"ctx": "IExecutionContext"},
    "layerwise": {},
    "trt_runtime": {"network": "INetworkDefinition", "layer": "ILayer", "t": "ITensor",
                    "config": "IBuilderConfig", "disk": "ITimingCache", "updated": "ITimingCache",
                    "merged": "ITimingCache"},
    "tensorrt_rtx": {},
}
#: ... and per function, where a short name means something else elsewhere in the file
TRT_FUNCTION_RECEIVERS = {
    ("tensorrt", "parser_errors"): {"e": "ParserError"},
    ("tensorrt", "_profile"): {"t": "ITensor"},
    ("tensorrt_rtx", "runtime_config"): {"engine": "ICudaEngine", "config": "IRuntimeConfig", "cache": "IRuntimeCache"},
    ("tensorrt_rtx", "save_runtime_cache"): {"cache": "IRuntimeCache"},
}
CUDART_RECEIVERS = {"tensorrt": {"rt"}, "latency": {"rt", "self.rt"}, "trt_runtime": {"rt", "self.rt"}}


def _key(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return f"self.{node.attr}"
    return None


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _uses(source: str, receivers_for) -> set[tuple[str, str, int]]:
    """(receiver, attribute, line) for every ``receiver.attribute`` whose receiver is mapped."""
    out = set()
    tree = ast.parse(source)
    for fn in _functions(tree):
        receivers = receivers_for(fn.name)
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute):
                k = _key(node.value)
                if k in receivers:
                    out.add((receivers[k], node.attr, node.lineno))
    return out


def _trt_module_uses(source: str) -> set[tuple[tuple[str, ...], int]]:
    """``trt.X`` and ``trt.X.Y`` chains (module attributes and enum members)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "trt":
            out.add(((node.attr,), node.lineno))
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "trt"):
            out.add(((node.value.attr, node.attr), node.lineno))
    return out


@pytest.fixture(scope="module")
def rtx():
    return pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed: pip install 'trt-workbench[trt-rtx]'")


@pytest.mark.rtx
@pytest.mark.parametrize("src", ["tensorrt", "layers", "trt_runtime", "tensorrt_rtx"])
def test_trt_object_methods_exist_in_tensorrt_rtx(rtx, src):
    """Methods/properties called on Builder, network, parser, config, profile, engine, context, inspector,
    timing cache, parser errors and tensors exist on tensorrt_rtx's classes of the same name."""
    text = SOURCES[src].read_text()

    def receivers_for(fn):
        return {**TRT_RECEIVERS[src], **TRT_FUNCTION_RECEIVERS.get((src, fn), {})}

    uses = _uses(text, receivers_for)
    assert len({cls for cls, _, _ in uses}) >= (8 if src == "tensorrt" else 1)  # the scan found the calls
    missing = sorted(f"{SOURCES[src].name}:{line} {cls}.{attr}" for cls, attr, line in uses
                     if not hasattr(getattr(rtx, cls), attr))
    assert not missing, missing


@pytest.mark.rtx
def test_names_read_through_getattr_exist_in_tensorrt_rtx(rtx):
    """Names the backend reads with ``getattr(obj, "name", default)`` (newer-API extras with a fallback)."""
    for cls, attr in (("ParserError", "node_name"), ("ParserError", "node_operator"), ("ITensor", "is_shape_tensor"),
                      ("IExecutionContext", "execute_async_v3"), ("IExecutionContext", "profiler"),
                      ("INetworkDefinition", "mark_unfused_tensors_as_debug_tensors"),
                      ("ICudaEngine", "create_runtime_config"),
                      ("IRuntimeConfig", "dynamic_shapes_kernel_specialization_strategy"),
                      ("IRuntimeConfig", "create_runtime_cache"), ("IRuntimeConfig", "set_runtime_cache"),
                      ("IRuntimeCache", "serialize"), ("IRuntimeCache", "deserialize")):
        assert hasattr(getattr(rtx, cls), attr), (cls, attr)
    for mod_attr in ("DynamicShapesKernelSpecializationStrategy", "IOutputAllocator", "IDebugListener"):
        assert hasattr(rtx, mod_attr), mod_attr
    assert hasattr(rtx.DynamicShapesKernelSpecializationStrategy, "EAGER")


@pytest.mark.rtx
@pytest.mark.parametrize("src", ["tensorrt", "layers", "trt_runtime"])
def test_trt_module_names_and_enum_members_exist_in_tensorrt_rtx(rtx, src):
    uses = _trt_module_uses(SOURCES[src].read_text())
    assert uses
    missing = []
    for chain, line in sorted(uses):
        obj = rtx
        for part in chain:
            if not hasattr(obj, part):
                missing.append(f"{SOURCES[src].name}:{line} trt.{'.'.join(chain)}")
                break
            obj = getattr(obj, part)
    assert not missing, missing


@pytest.mark.rtx
def test_callback_subclasses_implement_every_base_method(rtx):
    """The ILogger / IProgressMonitor / IProfiler subclasses override each callback of their base class
    (pybind11 trampolines call them by these names) and call the base ``__init__``."""
    logger = trt_backend._make_logger(rtx)
    monitor = trt_backend._make_monitor(rtx, threading.Event(), False)
    profiler = layers.make_trt_profiler(rtx)
    allocator = trt_runtime.make_output_allocator(rtx, trt_runtime.DeviceAllocations(None))
    listener = trt_runtime.make_debug_listener(rtx, None)
    assert trt_backend._make_logger(rtx) is logger  # TensorRT keeps the first logger: one per module
    for obj, base in ((logger, rtx.ILogger), (monitor, rtx.IProgressMonitor), (profiler, rtx.IProfiler),
                      (allocator, rtx.IOutputAllocator), (listener, rtx.IDebugListener)):
        assert isinstance(obj, base)
        callbacks = {n for n, v in vars(base).items() if not n.startswith("_") and callable(v)
                     and not isinstance(v, type) and not isinstance(v, base)}
        if base is rtx.IOutputAllocator:  # its trampolines are not listed on the class: the documented three
            callbacks = {"reallocate_output", "reallocate_output_async", "notify_shape"}
        assert callbacks, base
        own = set(vars(type(obj)))
        assert callbacks <= own, (base.__name__, callbacks - own)
        src = inspect.getsource(type(obj).__init__)
        assert f"{base.__name__}.__init__(self)" in src


@pytest.mark.rtx
def test_compute_capability_targets_exist(rtx):
    """Targets the RTX backend documents map to ComputeCapability members (``"8.9"`` -> ``SM89``)."""
    for cc in ("7.5", "8.0", "8.6", "8.9", "12.0"):
        assert hasattr(rtx.ComputeCapability, "SM" + cc.replace(".", "")), cc
    assert hasattr(rtx.ComputeCapability, "CURRENT")


@pytest.mark.rtx
def test_every_engine_io_dtype_has_a_numpy_dtype_or_a_clear_error(rtx):
    """_np_dtype covers each tensorrt_rtx DataType: numpy/ml_dtypes where one exists, RunError otherwise
    (INT4/FP4/E8M0 are sub-byte or scale-only types with no host array equivalent)."""
    import numpy as np

    from workbench.errors import RunError

    for name, dt in rtx.DataType.__members__.items():
        if name in ("INT4", "FP4", "E8M0"):
            with pytest.raises(RunError, match=name):
                trt_backend._np_dtype(rtx, dt)
        else:
            got = trt_backend._np_dtype(rtx, dt)
            assert got.itemsize == dt.itemsize, name
    assert trt_backend._np_dtype(rtx, rtx.DataType.FP8).name == "float8_e4m3fn"  # TensorRT FP8 is E4M3
    assert trt_backend._np_dtype(rtx, rtx.DataType.BF16) != np.dtype(np.float16)


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def test_no_api_removed_in_tensorrt_11_is_referenced():
    """TensorRT 11 removed the weak-typing builder flags, precision constraints, calibrators, layer
    precision/output types and the V1 device-memory properties (NVIDIA's "Removed Python APIs" list);
    TensorRT 10 removed the binding-index API. No code (docstrings aside) names any of them."""
    removed = re.compile(r"(BuilderFlag\.(FP16|BF16|INT8|FP8|INT4|FP4|OBEY_PRECISION_CONSTRAINTS|"
                         r"PREFER_PRECISION_CONSTRAINTS|DIRECT_IO)|int8_calibrator|IInt8\w*Calibrator|"
                         r"set_output_type|device_memory_size$|set_calibration_profile|"
                         r"quantization_flag|platform_has_|EXPLICIT_BATCH|execute_async_v2|execute_v2|"
                         r"set_binding_shape|get_binding_)")
    for name in ("tensorrt", "layers", "layerwise", "latency", "trt_runtime", "tensorrt_rtx"):
        tree = ast.parse(SOURCES[name].read_text())
        names = {_dotted(n) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                  and re.fullmatch(r"[A-Za-z_][\w.]*", n.value)}  # hasattr/getattr strings
        hits = sorted(n for n in names if removed.search(n))
        hits += [_dotted(n) for n in ast.walk(tree)  # layer.precision = ... (weak-typing layer precision)
                 if isinstance(n, ast.Attribute) and n.attr == "precision" and isinstance(n.ctx, ast.Store)]
        assert not hits, (name, hits)


@pytest.mark.parametrize("src", ["tensorrt", "latency", "trt_runtime"])
def test_cuda_runtime_names_exist(src):
    """cuda-python runtime functions/enums used by the TensorRT run path and the CUDA-event timer."""
    rt = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python not installed")
    receivers = {r: "rt" for r in CUDART_RECEIVERS[src]}
    uses = _uses(SOURCES[src].read_text(), lambda fn: receivers)
    assert uses
    missing = sorted(f"{SOURCES[src].name}:{line} {attr}" for _, attr, line in uses if not hasattr(rt, attr))
    assert not missing, missing
    assert hasattr(rt.cudaMemcpyKind, "cudaMemcpyHostToDevice") and hasattr(rt.cudaMemcpyKind, "cudaMemcpyDeviceToHost")
    assert int(rt.cudaError_t.cudaSuccess) == 0


# ------------------------------------------------------------ GPU-path guards that need no GPU
def test_rtx_engine_target_check():
    """Default RTX builds do not run on Turing (7.5 must be targeted explicitly, TensorRT-RTX docs), so
    ``TrtEngine.load`` refuses them there with a rebuild hint instead of a deserialization failure."""
    default = {"compute_capabilities": "default (" + ", ".join(rtx_backend.RTX_DEFAULT_TARGETS) + ")"}
    assert rtx_backend.rtx_engine_targets(7.5, default) is False
    assert all(rtx_backend.rtx_engine_targets(cc, default) for cc in (8.6, 8.9, 12.0))
    # TensorRT-RTX 1.x support matrix: data-center parts (A100 8.0, H100/H200 9.0) are not RTX targets
    assert not any(rtx_backend.rtx_runs_on(cc) for cc in (8.0, 9.0, 10.0))
    assert all(rtx_backend.rtx_runs_on(cc) for cc in (7.5, 8.6, 8.9, 12.0))
    assert rtx_backend.rtx_engine_targets(7.5, {"compute_capabilities": ["7.5"]}) is True
    assert rtx_backend.rtx_engine_targets(8.6, {"compute_capabilities": ["7.5", "8.9"]}) is False
    assert rtx_backend.rtx_engine_targets(8.6, {"compute_capabilities": ["current"]}) is None
    assert rtx_backend.rtx_engine_targets(8.6, {}) is None


@pytest.mark.rtx
def test_shape_tensor_input_is_rejected_clearly(rtx, tmp_path):
    """A graph input that TensorRT treats as a shape tensor (Reshape's shape) needs host values and
    ``set_shape_input`` profiles, which the runner does not do: the build says so by name."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    import workbench
    from workbench.backends import get_backend
    from workbench.backends.base import BuildOptions
    from workbench.errors import UnsupportedError
    from workbench.variant import Variant

    g = h.make_graph([h.make_node("Reshape", ["x", "s"], ["y"], name="r")], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [2, 3]), h.make_tensor_value_info("s", T.INT64, [2])],
                     [h.make_tensor_value_info("y", T.FLOAT, None)])
    path = tmp_path / "reshape_shape_input.onnx"
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), str(path))
    with pytest.raises(UnsupportedError, match="'s' is a shape tensor"):
        get_backend("tensorrt-rtx").build(Variant.of(workbench.load(path)), None, BuildOptions(progress=False))


#: receivers in the scanned files that are workbench objects, not TensorRT ones (checked against our classes below)
OURS = {"engine": "workbench.backends.tensorrt.TrtEngine"}
#: receivers whose names look like TensorRT objects but are plain Python (no TensorRT call is made through them)
NOT_TRT = {"self._bound_contexts": "a list of contexts", "contextlib": "the stdlib module",
           "layers_df": "a pandas DataFrame", "layer": "a dict of the inspector's JSON"}
_TRT_LIKE = re.compile(r"engine|inspector|context|ctx|builder|network|parser|config|profile|runtime|cache|tensor|layer",
                       re.I)


@pytest.mark.parametrize("src", sorted(TRT_RECEIVERS))
def test_every_trt_like_receiver_is_classified(src):
    """A call through a receiver the scan does not know is a call nobody checks (a misspelled
    ``self.engine.create_engine_inspecter()`` passed while ``self.engine`` was unmapped): every receiver whose
    name looks like a TensorRT object is mapped to a TensorRT class, to one of ours, or listed as plain Python."""
    unknown = set()
    for fn in _functions(ast.parse(SOURCES[src].read_text())):
        known = {**TRT_RECEIVERS[src], **TRT_FUNCTION_RECEIVERS.get((src, fn.name), {}), **OURS, **NOT_TRT}
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute):
                k = _key(node.value)
                if k and k not in known and _TRT_LIKE.search(k):
                    unknown.add(f"{SOURCES[src].name}:{node.lineno} {k}.{node.attr} (in {fn.name})")
    assert not unknown, sorted(unknown)


@pytest.mark.parametrize("src", sorted(TRT_RECEIVERS))
def test_calls_on_our_engine_objects_exist(src):
    """``engine.X`` in these files (outside functions where ``engine`` is a TensorRT ICudaEngine) names a method,
    property or instance attribute of one of our Engine classes (TrtEngine, OrtEngine or their base)."""
    import workbench.backends.base as base
    import workbench.backends.onnxruntime as ort_backend

    classes = (trt_backend.TrtEngine, ort_backend.OrtEngine, base.Engine)
    assigned = set()
    for cls in classes:
        assigned |= set(re.findall(r"self\.(\w+)\s*[:=]", inspect.getsource(cls)))
    missing = set()
    for fn in _functions(ast.parse(SOURCES[src].read_text())):
        if "engine" in TRT_FUNCTION_RECEIVERS.get((src, fn.name), {}):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and _key(node.value) == "engine":
                if not any(hasattr(c, node.attr) for c in classes) and node.attr not in assigned:
                    missing.add(f"{SOURCES[src].name}:{node.lineno} engine.{node.attr}")
    assert not missing, sorted(missing)
