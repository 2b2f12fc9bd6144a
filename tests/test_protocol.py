"""The backend protocol and the precision registry: what callers read is what backends and recipes declare.

A backend declared here (a numpy interpreter over onnx.reference, one class) goes through the same
``build_variants`` / ``measure_latency`` / ``profile_layers`` / CLI paths as the built-in ones; a
precision registered here shows up in every list and check that derives from the registry.
"""
from __future__ import annotations

import numpy as np
import pytest

import workbench
from workbench.backends import backend_names, get_backend, register_backend
from workbench.backends.base import _REGISTRY, Backend, Engine
from workbench.backends.cache import EngineCache
from workbench.builds import build_variants
from workbench.data import synthetic_inputs
from workbench.errors import BackendUnavailable, CacheError, UnsupportedError, UsageError
from workbench.measure.latency import measure_latency
from workbench.measure.layers import profile_layers
from workbench.records import BuildRecord


class ReferenceEngine(Engine):
    def __init__(self, backend, variant, record):
        from onnx.reference import ReferenceEvaluator

        self.backend, self.variant, self.record = backend, variant, record
        self._ev = ReferenceEvaluator(variant.model.proto_with_data())

    @property
    def input_names(self):
        return list(self.variant.model.input_names)

    @property
    def output_names(self):
        return list(self.variant.model.output_names)

    def run(self, feeds):
        outs = self._ev.run(None, {k: feeds[k] for k in self.input_names})
        return dict(zip(self.output_names, outs))


class ReferenceBackend(Backend):
    """onnx.reference as a backend: CPU, no serialized engines, fp32/tf32 only (declared, not sniffed)."""

    name = "onnx-reference"

    def available(self):
        return True, ""

    def version(self):
        import onnx

        return onnx.__version__

    def device(self):
        return {"type": "cpu", "name": "python"}

    def supports(self, precision):
        if precision not in ("fp32", "tf32"):
            return False, "onnx.reference runs the graph as written; only fp32 here"
        return True, ""

    def build(self, variant, shapes=None, options=None):
        self.check_can_build(variant)
        rec = BuildRecord(variant=variant.name, precision=variant.precision, variant_hash=variant.hash,
                          backend=self.name, backend_version=self.version(), device=self.device())
        return ReferenceEngine(self, variant, rec)


@pytest.fixture
def reference_backend():
    register_backend("onnx-reference", lambda **kw: ReferenceBackend())
    try:
        yield get_backend("onnx-reference")
    finally:
        _REGISTRY.pop("onnx-reference", None)


def test_a_registered_backend_goes_through_every_path(reference_backend, sample, tmp_path):
    assert "onnx-reference" in backend_names()
    model = workbench.load(sample("digits_cnn.onnx"))
    bs = build_variants(model, "fp32,fp16", "onnx-reference", out_dir=tmp_path / "b", progress=False)
    assert [r.status for r in bs] == ["ok", "skipped"]
    assert "only fp32" in bs["fp16"].reason
    assert not (tmp_path / "b" / f"{bs['fp32'].name}.engine").exists()  # serializes_engines is False
    eng = bs["fp32"].engine
    feeds = synthetic_inputs(model, batch=2)
    ref = get_backend("onnxruntime").build(bs["fp32"].variant).run(feeds)
    got = eng.run(feeds)
    np.testing.assert_allclose(got[model.output_names[0]], ref[model.output_names[0]], rtol=1e-4, atol=1e-4)
    lat = measure_latency(eng, feeds, warmup=1, iterations=3)  # the default Engine.timed_call: host timers
    assert lat.timer == "host" and lat.backend == "onnx-reference" and lat.stats["iterations"] == 3
    with pytest.raises(BackendUnavailable, match="per-layer profiling is not available"):
        profile_layers(eng, feeds)
    with pytest.raises(CacheError, match="no serialized engines"):
        EngineCache(tmp_path / "cache").get_or_build(reference_backend, bs["fp32"].variant)
    with pytest.raises(UnsupportedError):
        eng.save(tmp_path / "x.engine")


def test_cli_backend_choices_come_from_the_registry(reference_backend, sample, capsys, tmp_path):
    from workbench.cli import main

    rc = main(["build", str(sample("digits_cnn.onnx")), "--backend", "onnx-reference", "--precision", "fp32",
               "--out", str(tmp_path / "out")])
    assert rc == 0
    assert "digits_cnn-fp32" in capsys.readouterr().out
    import json

    assert json.loads((tmp_path / "out" / "build.json").read_text())["backend"] == "onnx-reference"


def test_declared_capabilities_of_the_builtin_backends():
    ort, cuda = get_backend("onnxruntime"), get_backend("onnxruntime-cuda")
    trt, rtx = get_backend("tensorrt"), get_backend("tensorrt-rtx")
    assert (ort.serializes_engines, ort.device_kind, ort.builds_without_gpu) == (False, "cpu", True)
    assert (cuda.serializes_engines, cuda.device_kind, cuda.builds_without_gpu) == (False, "cuda", False)
    assert (trt.serializes_engines, trt.uses_timing_cache, trt.builds_without_gpu) == (True, True, False)
    assert (rtx.serializes_engines, rtx.uses_timing_cache, rtx.builds_without_gpu) == (True, False, True)
    assert type(rtx).__module__ == "workbench.backends.tensorrt_rtx"
    assert type(rtx).__mro__[1] is type(trt).__mro__[1]  # one shared TensorRT base
    assert rtx.runs_on(7.5) and not rtx.runs_on(7.0) and trt.runs_on(7.0)
    assert rtx.min_compute_capability("int8") == 8.0 and trt.min_compute_capability("int8") == 6.1


def test_ort_engine_times_itself_on_host(sample):
    from workbench.variant import Variant

    model = workbench.load(sample("digits_cnn.onnx"))
    eng = get_backend("onnxruntime").build(Variant.of(model))
    call = eng.timed_call(synthetic_inputs(model))
    assert call.timer == "host" and call.fn == eng.session.run and call.cleanup is None


# ----------------------------------------------------------------------------------- precision registry
def test_precision_facts_derive_every_list():
    from workbench.measure.layers import precision_tokens
    from workbench.measure.roofline import roofline_dtype
    from workbench.plots import PRECISION_COLORS, precision_color
    from workbench.precision import RECIPES, calibrated, get_recipe, parse_precisions, precision_names
    from workbench.variant import PRECISIONS

    assert PRECISIONS == precision_names() == tuple(RECIPES) == ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")
    assert calibrated(PRECISIONS) == ["int8", "fp8"]
    assert PRECISION_COLORS == {p: get_recipe(p).color for p in PRECISIONS}
    assert precision_color("FP16") == get_recipe("fp16").color and precision_color("x") == "#7F7F7F"
    assert roofline_dtype("int8") == "float16" and roofline_dtype("tf32") == "tf32"
    assert precision_tokens()["half"] == "fp16" and precision_tokens()["float8e4m3"] == "fp8"
    assert parse_precisions(" FP16, fp32,fp16 ") == ["fp16", "fp32"]
    assert parse_precisions(["int8"]) == ["int8"]
    for bad in ("fp12", "", ","):
        with pytest.raises(UsageError, match="choose from fp32, tf32"):
            parse_precisions(bad)
    # backend support is a fact of the precision entry
    ok, why = get_backend("onnxruntime").supports("bf16")
    assert not ok and why == get_recipe("bf16").unsupported_on["onnxruntime"]


def test_a_registered_precision_appears_everywhere(sample, tmp_path):
    from workbench.commands._common import parse_precisions as cli_parse
    from workbench.plots import precision_color
    from workbench.precision import Recipe, base_recipe, register_precision, unregister_precision
    import workbench.variant as wv
    from workbench.variant import Variant

    class Fp32Copy(Recipe):
        precision, tool, summary = "fp32copy", "none", "the fp32 graph, registered by a test"

        def apply(self, model, req):
            return Variant(model=model, precision=self.precision, source_hash=model.hash,
                           recipe=base_recipe("none", req), name=f"{model.name}-fp32copy")

    register_precision(Fp32Copy(), color="#123456", unsupported_on={"tensorrt": "test precision"})
    try:
        assert wv.PRECISIONS[-1] == "fp32copy" and cli_parse("fp32copy") == ["fp32copy"]
        assert precision_color("fp32copy") == "#123456"
        assert get_backend("tensorrt-rtx").supports("fp32copy")[0] is True
        bs = build_variants(sample("digits_cnn.onnx"), "fp32copy", progress=False)
        assert bs["fp32copy"].status == "ok" and bs["fp32copy"].engine.variant.precision == "fp32copy"
    finally:
        unregister_precision("fp32copy")
    assert "fp32copy" not in wv.PRECISIONS
    with pytest.raises(UsageError):
        cli_parse("fp32copy")
    with pytest.raises(UsageError, match="unknown precision fact"):
        register_precision(Fp32Copy(), colour="#000000")
