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
