"""TensorRT run-time helpers (workbench.backends.trt_runtime) checked without a GPU.

Two kinds of test, kept apart by name:
* ``test_rtx_*``: the real ``tensorrt_rtx`` module parses and builds on this CPU (logger, debug tensors,
  data types). Nothing of TensorRT is faked.
* ``test_cuda_standin_*``: pure bookkeeping (buffers that grow, pinned views, timing-cache merge under a lock)
  with a small stand-in for the CUDA runtime calls only — clearly not TensorRT and not a GPU. The real calls
  run in tests/test_tensorrt_gpu.py (``-m trt``) on a machine with TensorRT and a GPU.
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np
import onnx
import pytest

from workbench.backends import trt_runtime as tr
from workbench.errors import RunError

from conftest import SAMPLES


# ------------------------------------------------------------------------------ stand-in for CUDA calls
class _CudaRuntimeStandIn:
    """Only what DeviceAllocations/PinnedBuffers call: malloc/free with host memory, counted."""

    class _Err(int):
        value = 0

    def __init__(self):
        self.live: dict[int, ctypes.Array] = {}
        self.mallocs = self.frees = 0

    def _alloc(self, n):
        buf = (ctypes.c_uint8 * n)()
        ptr = ctypes.addressof(buf)
        self.live[ptr] = buf
        return (self._Err(0), ptr)

    def cudaMalloc(self, n):
        self.mallocs += 1
        return self._alloc(n)

    cudaMallocHost = cudaMalloc

    def cudaFree(self, ptr):
        self.frees += 1
        del self.live[ptr]
        return (self._Err(0),)

    cudaFreeHost = cudaFree


def test_cuda_standin_device_allocations_only_grow():
    rt = _CudaRuntimeStandIn()
    a = tr.DeviceAllocations(rt)
    p1 = a.get("x", 100)
    assert a.get("x", 64) == p1 and rt.mallocs == 1          # smaller request reuses the buffer
    p2 = a.get("x", 4096)
    assert rt.mallocs == 2 and rt.frees == 1 and a.buffers["x"] == (p2, 4096)  # grown: old one freed
    a.get("y", 0)
    assert a.buffers["y"][1] == 1                              # zero bytes still gets a valid pointer
    a.free()
    assert not rt.live and not a.buffers


def test_cuda_standin_pinned_views_share_memory_and_grow():
    rt = _CudaRuntimeStandIn()
    pb = tr.PinnedBuffers(rt)
    v = pb.view("in", (2, 3), np.float32)
    v[:] = np.arange(6, dtype=np.float32).reshape(2, 3)
    again = pb.view("in", (3,), np.float32)                    # same buffer, smaller view
    assert again.tolist() == [0.0, 1.0, 2.0] and rt.mallocs == 1
    big = pb.view("in", (64, 64), np.float16)
    assert big.shape == (64, 64) and rt.mallocs == 2 and rt.frees == 1
    pb.free()
    assert not rt.live


class _TimingCacheStandIn:
    """A stand-in ITimingCache/IBuilderConfig pair: entries are a set; combine() is set union."""

    def __init__(self, entries=()):
        self.entries = set(entries)

    def serialize(self):
        return ",".join(sorted(self.entries)).encode()

    def combine(self, other, ignore_mismatch):
        assert ignore_mismatch is False  # keyed files never need to ignore a mismatch
        self.entries |= other.entries
        return True

    @staticmethod
    def create_timing_cache(data: bytes):
        return _TimingCacheStandIn(x for x in data.decode().split(",") if x)


def test_cuda_standin_timing_cache_is_keyed_and_merged(tmp_path):
    gpu = {"name": "NVIDIA H200", "compute_capability": "9.0"}
    key = tr.timing_cache_key("tensorrt", "10.16.0", gpu)
    assert key == "tensorrt-10.16.0-NVIDIA_H200-sm9.0"
    other = tr.timing_cache_key("tensorrt", "11.1.0", gpu)
    f1 = tr.TimingCacheFile(tmp_path / "tc.cache", key)
    f2 = tr.TimingCacheFile(tmp_path / "tc.cache", other)
    assert f1.path != f2.path and f1.path.parent == tmp_path   # another version never reads this file
    assert f1.path.name == f"tc.{key}.cache"
    cfg = _TimingCacheStandIn
    f1.merge_and_write(cfg, _TimingCacheStandIn({"a"}))
    f1.merge_and_write(cfg, _TimingCacheStandIn({"b"}))       # merged with what another build wrote
    assert f1.read() == b"a,b"
    # concurrent writers never lose each other's entries
    ts = [threading.Thread(target=f1.merge_and_write, args=(cfg, _TimingCacheStandIn({f"t{i}"}))) for i in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert set(f1.read().decode().split(",")) == {"a", "b", *{f"t{i}" for i in range(8)}}
    assert tr.TimingCacheFile(tmp_path, key).path == tmp_path / f"timing.{key}.cache"


def test_capsule_address_is_read():
    buf = (ctypes.c_uint8 * 8)()
    api = ctypes.pythonapi
    api.PyCapsule_New.restype = ctypes.py_object
    api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    cap = api.PyCapsule_New(ctypes.addressof(buf), b"addr", None)
    assert tr.address(cap) == ctypes.addressof(buf)
    assert tr.address(1234) == 1234


# ------------------------------------------------------------------------------ real tensorrt_rtx
@pytest.fixture(scope="module")
def rtx():
    return pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed: pip install 'trt-workbench[trt-rtx]'")


def _network(trt, path):
    logger = tr.shared_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(path.read_bytes())
    return builder, network, parser


def _config(builder, network):
    """A builder config with one profile (the digits CNN has a dynamic batch)."""
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shape = [1 if d < 0 else d for d in t.shape]
        profile.set_shape(t.name, shape, shape, [4 if d < 0 else d for d in t.shape])
    assert config.add_optimization_profile(profile) == 0
    return config


@pytest.mark.rtx
def test_rtx_logger_is_one_per_module_and_captures_per_block(rtx):
    lg = tr.shared_logger(rtx)
    assert tr.shared_logger(rtx) is lg
    with lg.capture() as outer:
        with lg.capture() as inner:
            builder = rtx.Builder(lg)
            network = builder.create_network(0)
            parser = rtx.OnnxParser(network, lg)
            assert not parser.parse(b"not an onnx model")
        after = len(outer.errors)
    assert inner.errors, "the parser error must reach the capture of the block that caused it"
    assert after == len(inner.errors)
    with lg.capture() as fresh:
        pass
    assert fresh.errors == []           # a new build starts with no stale errors


@pytest.mark.rtx
def test_rtx_marks_debug_tensors_and_builds(rtx):
    path = SAMPLES / "digits_cnn.onnx"
    model = onnx.load(path)
    inner = [o for n in model.graph.node for o in n.output][:3]
    builder, network, _ = _network(rtx, path)
    marked = tr.mark_debug_tensors(network, [*inner, "no-such-tensor"])
    assert marked == inner
    assert all(network.is_debug_tensor(_tensor(network, n)) for n in marked)
    assert builder.build_serialized_network(network, _config(builder, network)) is not None


@pytest.mark.rtx
def test_rtx_marks_unfused_tensors_and_builds(rtx):
    builder, network, _ = _network(rtx, SAMPLES / "digits_cnn.onnx")
    assert tr.mark_debug_tensors(network, "unfused") == ["<unfused>"]
    assert builder.build_serialized_network(network, _config(builder, network)) is not None


def _tensor(network, name):
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            if layer.get_output(j).name == name:
                return layer.get_output(j)
    raise KeyError(name)


@pytest.mark.rtx
def test_rtx_every_io_data_type_maps_or_says_why(rtx):
    for name in rtx.DataType.__members__:
        dt = getattr(rtx.DataType, name)
        try:
            got = tr.np_dtype(dt)
        except RunError as e:
            assert name in str(e)
        else:
            assert isinstance(got, np.dtype)
    assert tr.np_dtype(rtx.DataType.HALF) == np.float16
    assert tr.np_dtype(rtx.DataType.BF16).name == "bfloat16"


# ------------------------------------------------------------------------------ the backend with real tensorrt_rtx
def _rtx_backend():
    from workbench.backends import get_backend
    return get_backend("tensorrt-rtx")


def _digits():
    import workbench
    return workbench.load(SAMPLES / "digits_cnn.onnx")


@pytest.mark.rtx
def test_rtx_build_marks_requested_debug_tensors(rtx):
    from workbench.backends.base import BuildOptions
    from workbench.variant import Variant
    model = _digits()
    inner = [n.output[0] for n in model.proto.graph.node][:2]
    eng = _rtx_backend().build(Variant.of(model), "image:1x1x8x8/4x1x8x8/8x1x8x8",
                               BuildOptions(progress=False, extra={"debug_tensors": inner}))
    assert eng.record.options["applied"]["debug_tensors"] == inner
    assert eng.output_names == ["logits"]
    unfused = _rtx_backend().build(Variant.of(model), "image:1x1x8x8/4x1x8x8/8x1x8x8",
                                   BuildOptions(progress=False, extra={"debug_tensors": "unfused"}))
    assert unfused.record.options["applied"]["debug_tensors"] == ["<unfused>"]
    from workbench.errors import UnsupportedError
    with pytest.raises(UnsupportedError, match="marked none"):
        _rtx_backend().build(Variant.of(model), "image:1x1x8x8/4x1x8x8/8x1x8x8",
                             BuildOptions(progress=False, extra={"debug_tensors": ["typo"]}))
    plain = _rtx_backend().build(Variant.of(model), "image:1x1x8x8/4x1x8x8/8x1x8x8", BuildOptions(progress=False))
    from workbench.errors import UsageError
    with pytest.raises(UsageError, match="without debug tensors"):
        plain.debug_tensors({})


def _bad_profile_error(rtx, n: int) -> str:
    """The backend's profile step on a real tensorrt_rtx builder with a profile TensorRT finds invalid
    (min > max). The shape doctor refuses such ranges before any build (issue 13), so the check of
    ``add_optimization_profile``'s -1 is exercised directly on the real objects."""
    from workbench.data import ShapeMap, ShapeRange
    from workbench.errors import ShapeSpecError
    be = _rtx_backend()
    builder, network, _ = _network(rtx, SAMPLES / "digits_cnn.onnx")
    sm = ShapeMap()
    sm["image"] = ShapeRange((n, 1, 8, 8), (2, 1, 8, 8), (1, 1, 8, 8))
    with tr.shared_logger(rtx).capture() as cap:
        with pytest.raises(ShapeSpecError, match="rejected the optimization profile") as e:
            be._profile(builder, network, builder.create_builder_config(), sm, cap)
    return str(e.value)


@pytest.mark.rtx
def test_rtx_rejected_profile_is_a_shape_error_naming_the_profile(rtx):
    """add_optimization_profile's -1 is checked: a profile TensorRT finds invalid never builds silently."""
    assert "isValid" in _bad_profile_error(rtx, 4)


@pytest.mark.rtx
def test_rtx_errors_of_one_build_never_reach_the_next(rtx):
    """One shared logger: each capture holds its own errors only, never an earlier build's."""
    messages = [_bad_profile_error(rtx, n) for n in (4, 8)]
    assert messages[0].count("isValid") == messages[1].count("isValid") >= 1  # not accumulated
    assert "[8, 1, 8, 8]" in messages[1] and "[4, 1, 8, 8]" not in messages[1]


def _if_model(path):
    from onnx import TensorProto as T, helper as h
    then = h.make_graph([h.make_node("Identity", ["x"], ["a"])], "then", [], [h.make_tensor_value_info("a", T.FLOAT, [2])])
    other = h.make_graph([h.make_node("Neg", ["x"], ["b"])], "else", [], [h.make_tensor_value_info("b", T.FLOAT, [2])])
    g = h.make_graph([h.make_node("If", ["c"], ["y"], name="choose", then_branch=then, else_branch=other)], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [2]), h.make_tensor_value_info("c", T.BOOL, [])],
                     [h.make_tensor_value_info("y", T.FLOAT, [2])])
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), path)
    return path


def test_control_flow_hint_names_the_nodes(tmp_path):
    import workbench
    from workbench.backends.tensorrt import _control_flow_hint
    from workbench.variant import Variant
    hint = _control_flow_hint(Variant.of(workbench.load(_if_model(tmp_path / "if.onnx"))))
    assert "choose (If)" in hint and "constant" in hint
    assert _control_flow_hint(Variant.of(_digits())) is None


def test_latency_records_what_the_timer_covers():
    from workbench.backends import get_backend
    from workbench.backends.base import BuildOptions
    from workbench.data import synthetic_inputs
    from workbench.measure.latency import TIMER_SCOPES, measure_latency
    from workbench.variant import Variant
    eng = get_backend("onnxruntime").build(Variant.of(_digits()), None, BuildOptions(progress=False))
    res = measure_latency(eng, synthetic_inputs(eng.variant.model, "image:4x1x8x8"), warmup=1, iterations=3)
    assert res.timer == "host" and res.timer_scope == TIMER_SCOPES["host"]
    assert res.to_json()["timer_scope"] == TIMER_SCOPES["host"]


def test_layerwise_on_the_engine_needs_a_gpu_it_can_run_on():
    """The TensorRT debug-tensor comparison refuses clearly where the engine cannot run (here: no GPU);
    its GPU half is tests/test_tensorrt_gpu.py::test_layerwise_debug_tensors_agree_with_ort_layerwise."""
    pytest.importorskip("tensorrt_rtx")
    from workbench.backends import get_backend
    from workbench.compare import layerwise_debug_tensors
    from workbench.errors import BackendUnavailable
    if get_backend("tensorrt-rtx").can_run()[0]:
        pytest.skip("this machine can run TensorRT-RTX engines: the GPU test covers it")
    with pytest.raises(BackendUnavailable, match="debug-tensor comparison"):
        layerwise_debug_tensors(SAMPLES / "digits_cnn.onnx", "fp16", "tensorrt-rtx", progress=False)
