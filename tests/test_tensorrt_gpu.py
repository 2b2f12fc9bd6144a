"""TensorRT run path on a real GPU with the `tensorrt` module (10.x or 11.x).

Skipped (with the reason) where `tensorrt` or an NVIDIA GPU is missing — e.g. the CPU-only CI. On a GPU
machine: pip install 'trt-workbench[trt]' and run `pytest -m trt`.
"""
from __future__ import annotations

import numpy as np
import pytest

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
    assert tc.is_file() and tc.stat().st_size > 0
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
