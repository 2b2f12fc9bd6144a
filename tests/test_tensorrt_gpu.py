"""TensorRT run path on a real GPU with the `tensorrt` module (10.x or 11.x).

Skipped (with the reason) where `tensorrt` or an NVIDIA GPU is missing — e.g. the CPU-only CI. On a GPU
machine: pip install 'trt-workbench[trt]' and run `pytest -m trt`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import workbench
from workbench.backends import get_backend
from workbench.backends.base import BuildOptions
from workbench.data import synthetic_inputs
from workbench.variant import Variant

pytestmark = [pytest.mark.gpu, pytest.mark.trt]


def _quiet(**kw):
    return BuildOptions(progress=False, **kw)


def _ort(variant, feeds):
    return get_backend("onnxruntime").build(variant, None, _quiet()).run(feeds)


def _digits_batch(sample, n=32):
    data = np.load(sample("digits_test.npz"), allow_pickle=False)
    return {"image": np.ascontiguousarray(data["image"][:n], dtype=np.float32)}


DIGITS_SHAPES = "image:1x1x8x8/32x1x8x8/64x1x8x8"


def test_digits_fp32_matches_onnxruntime(trt_backend, sample):
    model = workbench.load(sample("digits_cnn.onnx"))
    v = Variant.of(model, "fp32")
    feeds = _digits_batch(sample)
    with trt_backend.build(v, DIGITS_SHAPES, _quiet()) as eng:
        got = eng.run(feeds)
        ref = _ort(v, feeds)
        assert got["logits"].shape == ref["logits"].shape == (32, 10)
        np.testing.assert_allclose(got["logits"], ref["logits"], rtol=1e-3, atol=1e-3)
        # a second run with another batch size reuses/grows the buffers
        small = {"image": feeds["image"][:3]}
        np.testing.assert_allclose(eng.run(small)["logits"], ref["logits"][:3], rtol=1e-3, atol=1e-3)
        big = {"image": np.concatenate([feeds["image"]] * 2)}
        np.testing.assert_allclose(eng.run(big)["logits"][32:], ref["logits"], rtol=1e-3, atol=1e-3)


def test_digits_fp16_and_int8_agree_on_labels(trt_backend, sample):
    from workbench.precision import make_variant

    model = workbench.load(sample("digits_cnn.onnx"))
    feeds = _digits_batch(sample, 64)
    ref = _ort(Variant.of(model), feeds)["logits"].argmax(1)
    v16 = make_variant(model, "fp16", progress=False)
    v8 = make_variant(model, "int8", calib=sample("digits_calib.npz"), progress=False)
    for v, min_agree in ((v16, 0.98), (v8, 0.9)):
        with trt_backend.build(v, DIGITS_SHAPES, _quiet()) as eng:
            got = eng.run(feeds)["logits"].astype(np.float32)
            assert np.isfinite(got).all()
            assert (got.argmax(1) == ref).mean() >= min_agree, v.precision


def test_transformer_dynamic_shapes(trt_backend, sample):
    model = workbench.load(sample("transformer_block.onnx"))
    v = Variant.of(model)
    with trt_backend.build(v, "x:1x8x64/4x32x64/8x128x64", _quiet()) as eng:
        for shape in [(1, 8, 64), (4, 32, 64), (8, 128, 64), (2, 17, 64)]:
            feeds = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
            got = eng.run(feeds)
            ref = _ort(v, feeds)
            for k in ref:
                assert got[k].shape == ref[k].shape
                np.testing.assert_allclose(got[k], ref[k], rtol=2e-3, atol=2e-3)
        with pytest.raises(workbench.errors.RunError, match="outside"):
            eng.run({"x": np.zeros((9, 8, 64), np.float32)})


def test_enqueue_without_host_copies(trt_backend, sample):
    model = workbench.load(sample("digits_cnn.onnx"))
    feeds = _digits_batch(sample, 8)
    with trt_backend.build(Variant.of(model), DIGITS_SHAPES, _quiet()) as eng:
        shapes = eng.stage(feeds)
        assert shapes["logits"] == (8, 10)
        for _ in range(5):
            eng.enqueue()
        eng.synchronize()
        np.testing.assert_allclose(eng.fetch()["logits"], _ort(Variant.of(model), feeds)["logits"], rtol=1e-3, atol=1e-3)
        assert eng.context is not None and int(eng.stream) != 0


def test_inspector_json_lists_layers(trt_backend, sample):
    model = workbench.load(sample("digits_cnn.onnx"))
    with trt_backend.build(Variant.of(model), DIGITS_SHAPES, _quiet()) as eng:
        eng.run(_digits_batch(sample, 4))
        info = eng.inspector_json()
        layers = info["Layers"]
        assert layers and all(isinstance(layer, dict) and "Name" in layer for layer in layers)


def test_timing_cache_written_and_reused(trt_backend, sample, tmp_path):
    model = workbench.load(sample("digits_cnn.onnx"))
    tc = tmp_path / "timing.cache"
    first = trt_backend.build(Variant.of(model), DIGITS_SHAPES, _quiet(timing_cache=str(tc)))
    written = first.record.options["applied"]["timing_cache"]["path"]
    # keyed by TensorRT version and GPU: another version or GPU never reads this file
    assert trt_backend.version() in written and written.startswith(str(tmp_path))
    assert Path(written).stat().st_size > 0
    assert first.record.options["applied"]["timing_cache"]["loaded_bytes"] == 0
    second = trt_backend.build(Variant.of(model), DIGITS_SHAPES, _quiet(timing_cache=str(tc)))
    assert second.record.options["applied"]["timing_cache"]["loaded_bytes"] > 0


def test_record_has_gpu_facts(trt_backend, sample):
    model = workbench.load(sample("digits_cnn.onnx"))
    rec = trt_backend.build(Variant.of(model), DIGITS_SHAPES, _quiet()).record
    assert rec.device["type"] == "cuda" and rec.device["name"] and rec.device["compute_capability"]
    assert rec.versions["tensorrt"] == rec.backend_version


def test_fp8_support_follows_compute_capability(trt_backend):
    cc = float(trt_backend.device()["compute_capability"])
    ok, why = trt_backend.supports("fp8")
    assert ok == (cc >= 8.9), why


def test_synthetic_feeds_run(trt_backend, sample):
    model = workbench.load(sample("resize_concat.onnx"))
    feeds = synthetic_inputs(model, "x:2x3x32x32")
    with trt_backend.build(Variant.of(model), "x:1x3x32x32/2x3x32x32/4x3x32x32", _quiet()) as eng:
        out = eng.run(feeds)
        ref = _ort(Variant.of(model), feeds)
        for k in ref:
            np.testing.assert_allclose(out[k], ref[k], rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------ issue 22: device, debug tensors, DDS outputs
def _cuda_device_count() -> int:
    from workbench.backends.trt_runtime import cuda_check, cudart
    return int(cuda_check(cudart().cudaGetDeviceCount(), "cudaGetDeviceCount"))


def test_device_id_selects_the_gpu(sample):
    """Builds, buffers and runs happen on the GPU named by device_id (the last one on a multi-GPU host)."""
    pytest.importorskip("tensorrt", reason="`tensorrt` not installed")
    from workbench.backends.trt_runtime import cuda_check, cudart
    last = _cuda_device_count() - 1
    be = get_backend("tensorrt", device_id=last)
    ok, why = be.can_run()
    if not ok:
        pytest.skip(why)
    model = workbench.load(sample("digits_cnn.onnx"))
    feeds = _digits_batch(sample, 4)
    with be.build(Variant.of(model), DIGITS_SHAPES, _quiet()) as eng:
        assert eng.record.options["applied"]["device_id"] == last
        out = eng.run(feeds)
        rt = cudart()
        for ptr, _ in eng._allocations.buffers.values():
            attrs = cuda_check(rt.cudaPointerGetAttributes(ptr), "cudaPointerGetAttributes")
            assert attrs.device == last
    np.testing.assert_allclose(out["logits"], _ort(Variant.of(model), feeds)["logits"], rtol=1e-3, atol=1e-3)
    if last == 0:
        pytest.skip("one GPU here: device_id=0 checked; a multi-GPU host checks a non-default device")


def test_bad_device_id_is_a_clear_error(sample):
    pytest.importorskip("tensorrt", reason="`tensorrt` not installed")
    be = get_backend("tensorrt", device_id=_cuda_device_count() + 3)
    ok, why = be.can_run()
    assert not ok and "device" in why.lower()


def test_debug_tensors_match_onnxruntime_without_marking_outputs(trt_backend, sample):
    """mark_debug + IDebugListener: intermediate tensors come back without becoming network outputs."""
    model = workbench.load(sample("digits_cnn.onnx"))
    inner = [n.output[0] for n in model.proto.graph.node if n.op_type in ("Conv", "Relu")][:3]
    feeds = _digits_batch(sample, 4)
    opts = _quiet(extra={"debug_tensors": inner})
    with trt_backend.build(Variant.of(model), DIGITS_SHAPES, opts) as eng:
        assert eng.record.options["applied"]["debug_tensors"] == inner
        assert eng.output_names == ["logits"]          # no extra output bindings
        got = eng.debug_tensors(feeds)
    from workbench.edit import ops
    ref = get_backend("onnxruntime").build(Variant.of(ops.add_outputs(model, inner)), None, _quiet()).run(feeds)
    for name in inner:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-3, atol=1e-3)


def test_unfused_debug_tensors_keep_fusions(trt_backend, sample):
    model = workbench.load(sample("digits_cnn.onnx"))
    feeds = _digits_batch(sample, 4)
    try:
        eng = trt_backend.build(Variant.of(model), DIGITS_SHAPES, _quiet(extra={"debug_tensors": "unfused"}))
    except workbench.UnsupportedError as e:
        pytest.skip(str(e))
    with eng:
        got = eng.debug_tensors(feeds)
        plain = trt_backend.build(Variant.of(model), DIGITS_SHAPES, _quiet())
        # fusion untouched: the same number of engine layers as without debug tensors
        assert len(eng.inspector_json()["Layers"]) == len(plain.inspector_json()["Layers"])
    assert got and all(isinstance(a, np.ndarray) for a in got.values())


def _nonzero_model(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 5])
    y = helper.make_tensor_value_info("idx", TensorProto.INT64, [2, None])
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    g = helper.make_graph([helper.make_node("Greater", ["x", "zero"], ["m"]), helper.make_node("NonZero", ["m"], ["idx"])],
                          "nonzero", [x], [y], initializer=[zero])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_data_dependent_output_shape_runs(trt_backend, tmp_path):
    """NonZero's output size is known only after the run: the IOutputAllocator gets it."""
    model = workbench.load(_nonzero_model(tmp_path / "nz.onnx"))
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    with trt_backend.build(Variant.of(model), None, _quiet()) as eng:
        for _ in range(2):  # the second run reuses (or grows) the allocator's buffer
            out = eng.run({"x": x})["idx"]
            np.testing.assert_array_equal(out, np.stack(np.nonzero(x > 0)))
            x = -x


def test_profiler_layers_join_the_inspector(trt_backend, sample):
    """Every IProfiler layer name is an engine-inspector layer; most map to ONNX nodes."""
    from workbench.measure.layers import profile_layers
    model = workbench.load(sample("digits_cnn.onnx"))
    feeds = _digits_batch(sample, 8)
    with trt_backend.build(Variant.of(model), DIGITS_SHAPES, _quiet(profiling=True)) as eng:
        names = {layer["Name"] for layer in eng.inspector_json()["Layers"]}
        df = profile_layers(eng, feeds, iterations=5)
    assert set(df["layer"]) <= names
    onnx_names = {n.name for n in model.proto.graph.node}
    mapped = [x for x in df.filter(regex="onnx_node").iloc[:, 0] if x]
    assert mapped and all(any(part in onnx_names for part in str(m).split(",")) for m in mapped)


def test_rtx_runtime_config_is_eager_with_a_runtime_cache(sample, tmp_path):
    """TensorRT-RTX: kernels specialized eagerly (no lazy recompiles inside timed runs) and a runtime cache."""
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed")
    be = get_backend("tensorrt-rtx")
    ok, why = be.can_run()
    if not ok:
        pytest.skip(f"TensorRT-RTX engines cannot run here: {why}")
    model = workbench.load(sample("digits_cnn.onnx"))
    opts = _quiet(extra={"runtime_cache": str(tmp_path / "rtx.cache")})
    with be.build(Variant.of(model), DIGITS_SHAPES, opts) as eng:
        eng.run(_digits_batch(sample, 4))
        facts = eng.runtime_facts
    assert facts["kernel_specialization"] == "EAGER"
    assert Path(facts["runtime_cache"]).is_file()


def test_layerwise_debug_tensors_agree_with_ort_layerwise(trt_backend, sample):
    """fp32 on TensorRT vs FP32 on ORT CPU through debug tensors: every compared tensor close, none diverged,
    and the engine kept its single output binding."""
    from workbench.compare import layerwise_debug_tensors
    df = layerwise_debug_tensors(sample("digits_cnn.onnx"), "fp32", "tensorrt", data=sample("digits_test.npz"),
                                 shapes=DIGITS_SHAPES, limit=64, progress=False)
    compared = df[df["match"] == "debug tensor"]
    assert len(compared) >= 3 and not compared["diverged"].any()
    assert (compared["cosine"] > 0.9999).all()
