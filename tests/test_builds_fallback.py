"""build_variants keeps op types in fp32 when a backend has no kernel for them in the variant's precision.

The real case is ONNX Runtime's CUDA provider with bf16 (MaxPool, BatchNormalization, ...): it runs in
tests/test_gpu_ort.py on a GPU. Here the *mechanism* is tested on CPU with a stand-in backend: ORT CPU,
refusing fp16 MaxPool with the exact message ORT's CUDA provider gives. It is not a GPU test.
"""
from __future__ import annotations

import json

import onnx
import pytest

import workbench as wb
from workbench.backends.onnxruntime import OnnxRuntimeBackend
from workbench.errors import BuildError

ORT_CUDA_MESSAGE = ("ONNX Runtime could not load {name}: [ONNXRuntimeError] : 1 : FAIL : Exception during "
                    "initialization: transformer_memcpy.cc:253 ... Provider type for MaxPool node with name "
                    "'{node}' is not set.")


class NoFp16MaxPool(OnnxRuntimeBackend):
    """ORT CPU that refuses a variant whose MaxPool computes in fp16, as ORT CUDA refuses bf16 MaxPool."""

    def __init__(self):
        super().__init__("cpu")
        self.name = "onnxruntime-nofp16maxpool"
        self.refused = 0

    def unsupported_op_type(self, error, precision):
        # reuse the real ORT-CUDA parser on the same message
        cuda = OnnxRuntimeBackend("cuda")
        return cuda.unsupported_op_type(error, precision)

    def build(self, variant, shapes=None, options=None):
        proto = onnx.shape_inference.infer_shapes(variant.model.proto)
        types = {vi.name: vi.type.tensor_type.elem_type for vi in list(proto.graph.value_info) + list(proto.graph.input)}
        for n in proto.graph.node:
            if n.op_type == "MaxPool" and types.get(n.input[0]) == onnx.TensorProto.FLOAT16:
                self.refused += 1
                raise BuildError(ORT_CUDA_MESSAGE.format(name=variant.name, node=n.name))
        return super().build(variant, shapes, options)


def test_missing_kernel_op_is_kept_in_fp32_and_rebuilt(sample, tmp_path):
    m = sample("digits_cnn.onnx")
    be = NoFp16MaxPool()
    bs = wb.build_variants(m, ["fp32", "fp16"], be, out_dir=tmp_path / "out", progress=False)
    r = bs["fp16"]
    assert r.status == "ok", r.reason
    assert be.refused == 1  # first attempt refused, the rebuilt variant accepted
    assert "MaxPool" in r.variant.recipe["keep_op_types"]
    assert r.reason == "kept MaxPool in fp32: onnxruntime-nofp16maxpool has no fp16 kernel for them" == r.record.reason
    files = sorted(p.name for p in (tmp_path / "out").glob("*.onnx"))
    assert files == ["digits_cnn-fp16-mixed.onnx", "digits_cnn-fp32.onnx"]  # no stale file of the refused try
    listed = json.loads((tmp_path / "out" / "build.json").read_text())
    assert {v["status"] for v in listed["variants"]} == {"ok"}


def test_no_retry_when_the_user_already_kept_it_or_for_other_errors(sample):
    m = sample("digits_cnn.onnx")
    be = NoFp16MaxPool()
    # fp32 variants are never retried: the parser only answers for fp16/bf16
    assert be.unsupported_op_type(BuildError(ORT_CUDA_MESSAGE.format(name="x", node="n")), "fp32") is None
    assert OnnxRuntimeBackend("cpu").unsupported_op_type(BuildError(ORT_CUDA_MESSAGE.format(name="x", node="n")),
                                                         "bf16") is None  # CPU provider: not its message
    assert be.unsupported_op_type(BuildError("some other failure"), "fp16") is None
    ok = wb.build_variants(m, ["fp16"], be, keep_op_types=["MaxPool"], progress=False)["fp16"]
    assert ok.status == "ok" and be.refused == 0


@pytest.mark.parametrize("limit", [0])
def test_fallback_limit(sample, monkeypatch, limit):
    import workbench.builds as builds

    monkeypatch.setattr(builds, "MAX_KERNEL_FALLBACKS", limit)
    r = wb.build_variants(sample("digits_cnn.onnx"), ["fp16"], NoFp16MaxPool(), progress=False)["fp16"]
    assert r.status == "failed" and "MaxPool" in r.reason


def test_every_engine_caller_goes_through_build_variants(sample, tmp_path, monkeypatch):
    """compare_outputs, propose_mixed_precision, run_model and `workbench profile` build through
    builds.build_variants, so the kernel fallback (and cache, records) applies to them too."""
    from workbench import builds
    from workbench.cli import main
    from workbench.compare import compare_outputs
    from workbench.compare.sensitivity import propose_mixed_precision
    from workbench.run import run_model

    calls = []
    real = builds.build_variants

    def counting(model, precisions, backend="onnxruntime", **kw):
        calls.append((getattr(backend, "name", backend), [getattr(p, "precision", p) for p in precisions]))
        return real(model, precisions, backend, **kw)

    monkeypatch.setattr(builds, "build_variants", counting)
    m = sample("digits_cnn.onnx")
    data = sample("digits_test.npz")
    be = NoFp16MaxPool()
    cmp = compare_outputs(m, ["fp16"], be, data=data, labels="label", limit=64, progress=False)
    assert be.refused == 1 and "MaxPool" in cmp.built["digits_cnn-fp16-mixed"].recipe["keep_op_types"]
    assert ("onnxruntime", ["fp32"]) in calls and ("onnxruntime-nofp16maxpool", ["fp16"]) in calls
    calls.clear()
    propose_mixed_precision(m, "fp16", target="cosine>=0.9", data=data, backend=be, search_limit=32,
                            layerwise_limit=8, latency=False, progress=False)
    assert [c for c in calls if c[0] == "onnxruntime-nofp16maxpool"] and be.refused == 2
    calls.clear()
    run_model(m, shapes="image:1x1x8x8")
    assert calls == [("onnxruntime", ["fp32"])]
    calls.clear()
    assert main(["profile", str(m), "--precision", "fp32,fp16", "--iterations", "3", "--warmup", "0",
                 "--layer-iterations", "2", "--no-progress", "--out", str(tmp_path / "prof")]) == 0
    assert calls == [("onnxruntime", ["fp32"]), ("onnxruntime", ["fp16"])]
    entries = json.loads((tmp_path / "prof" / "profile.json").read_text())["entries"]
    assert [e["status"] for e in entries] == ["ok", "ok"]


class NoFp16Kernels(NoFp16MaxPool):
    """As NoFp16MaxPool for each op type in ``ops`` (one refusal per build, the first such node), with an
    optional "supported, but..." note for fp16 and an optional op type name the parser reports instead."""

    def __init__(self, ops=("MaxPool",), note="", reported=None):
        super().__init__()
        self.ops, self.note, self.reported = tuple(ops), note, reported

    def supports(self, precision):
        ok, why = super().supports(precision)
        return (ok, self.note or why) if precision == "fp16" else (ok, why)

    def build(self, variant, shapes=None, options=None):
        proto = onnx.shape_inference.infer_shapes(variant.model.proto)
        types = {vi.name: vi.type.tensor_type.elem_type for vi in list(proto.graph.value_info) + list(proto.graph.input)}
        for n in proto.graph.node:
            if n.op_type in self.ops and types.get(n.input[0]) == onnx.TensorProto.FLOAT16:
                self.refused += 1
                msg = ORT_CUDA_MESSAGE.format(name=variant.name, node=n.name)
                raise BuildError(msg.replace("for MaxPool node", f"for {self.reported or n.op_type} node"))
        return OnnxRuntimeBackend.build(self, variant, shapes, options)


def test_two_missing_kernels_are_both_kept_and_named_after_the_backend_note(sample, tmp_path):
    be = NoFp16Kernels(("MaxPool", "Relu"), note="fp16 here is slow")
    r = wb.build_variants(sample("digits_cnn.onnx"), ["fp16"], be, out_dir=tmp_path / "o", progress=False)["fp16"]
    assert r.status == "ok" and be.refused == 2
    # refused in graph order: relu1 comes before the MaxPool
    assert r.variant.recipe["keep_op_types"] == ["Relu", "MaxPool"]
    assert r.reason == ("fp16 here is slow; kept Relu, MaxPool in fp32: onnxruntime-nofp16maxpool has no fp16 "
                        "kernel for them") == r.record.reason
    assert sorted(p.name for p in (tmp_path / "o").glob("*.onnx")) == ["digits_cnn-fp16-mixed.onnx"]


def test_a_ready_variant_is_never_rebuilt(sample):
    from workbench.precision import make_variant

    v = make_variant(sample("digits_cnn.onnx"), "fp16", progress=False)
    be = NoFp16MaxPool()
    r = wb.build_variants(sample("digits_cnn.onnx"), [v], be, progress=False)["fp16"]
    assert r.status == "failed" and be.refused == 1 and r.variant is v
    assert "Provider type for MaxPool node" in r.reason


def test_the_rebuilt_variant_keeps_the_users_recipe_arguments(sample, monkeypatch, tmp_path):
    import time

    import workbench.precision as P

    took = []
    real = P.make_variant

    def timed(*a, **k):  # the recipe's own time, measured around it
        t0 = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            took.append(time.perf_counter() - t0)

    monkeypatch.setattr(P, "make_variant", timed)
    m = sample("digits_cnn.onnx")
    be = NoFp16MaxPool()
    kw = dict(keep_nodes=["/features/conv1/Conv"], recipe_options={"range_check": False}, progress=False,
              variant_cache=tmp_path / "vc")
    r = wb.build_variants(m, ["fp16"], be, **kw)["fp16"]
    assert r.status == "ok" and be.refused == 1 and len(took) == 2
    rec = r.variant.recipe
    assert rec["keep_nodes"] == ["/features/conv1/Conv"] and rec["options"] == {"range_check": False}
    assert rec["keep_op_types"] == ["MaxPool"]
    assert sum(took) <= r.recipe_time_s <= sum(took) + 0.05  # both recipe runs are counted
    assert r.variant_cached is False
    # a second run: both variants come from the variant cache, no recipe runs
    took.clear()
    again = wb.build_variants(m, ["fp16"], be, **kw)["fp16"]
    assert again.status == "ok" and took == [] and again.variant_cached is True and again.recipe_time_s == 0.0
    assert again.variant.hash == r.variant.hash


def test_a_failing_rebuild_reports_the_build_error_and_the_rebuilds(sample):
    """A parser naming an op type that is neither in the model nor an ONNX op: the rebuilt recipe refuses it. The
    result names the real cause (the backend's build error) first, then why the workaround failed."""
    be = NoFp16Kernels(("MaxPool",), reported="FusedMaxPool")
    r = wb.build_variants(sample("digits_cnn.onnx"), ["fp16"], be, progress=False)["fp16"]
    assert r.status == "failed" and be.refused == 1
    build_msg = "Provider type for FusedMaxPool node with name '/features/pool/MaxPool' is not set"
    assert r.reason.index(build_msg) < r.reason.index("keeping FusedMaxPool in fp32 to work around it failed")
    assert "not an ONNX op type" in r.reason and r.reason == str(r.error)
    assert isinstance(r.error, BuildError) and "not an ONNX op type" in str(r.error.__cause__)
    assert r.record.reason == r.reason


def test_variant_cached_describes_the_variant_that_was_built(sample, tmp_path):
    """The plain fp16 variant comes from the cache, the rebuilt one (MaxPool kept) is made by the recipe."""
    m = sample("digits_cnn.onnx")
    vc = tmp_path / "vc"
    plain = wb.build_variants(m, ["fp16"], "onnxruntime", variant_cache=vc, progress=False)["fp16"]
    assert plain.status == "ok" and plain.variant_cached is False
    r = wb.build_variants(m, ["fp16"], NoFp16MaxPool(), variant_cache=vc, progress=False)["fp16"]
    assert r.status == "ok" and r.variant.name == "digits_cnn-fp16-mixed"
    assert r.variant_cached is False and r.recipe_time_s > 0
