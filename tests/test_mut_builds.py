"""Tests written against mutants of workbench/builds.py that survived `make mutate` (issue 23).

Builds run on the real ONNX Runtime CPU backend over a tiny hand-built model. Where a test needs a backend to
refuse, it subclasses that real backend and overrides only the one answer (``supports`` or ``build``) — named
``_Refusing*`` so nobody mistakes them for another runtime.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.backends.base import BuildOptions
from workbench.backends.onnxruntime import OnnxRuntimeBackend
from workbench.builds import FRAME_COLUMNS, BuildResult, build_engine, build_variants
from workbench.errors import BuildError, UnsupportedError, UsageError


def _model():
    w = numpy_helper.from_array(np.full((4, 4), 0.5, np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"), helper.make_node("Relu", ["h"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w])
    return wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name="tiny")


class _RefusingFp16(OnnxRuntimeBackend):
    """ORT CPU that declares fp16 unsupported."""

    def __init__(self):
        super().__init__("cpu")

    def supports(self, precision):
        return (False, "no fp16 here") if precision == "fp16" else super().supports(precision)


class _RefusingBuild(OnnxRuntimeBackend):
    """ORT CPU whose build of one precision raises ``exc``."""

    def __init__(self, precision, exc):
        super().__init__("cpu")
        self.refuse, self.exc, self.calls = precision, exc, 0

    def build(self, variant, shapes=None, options=None):
        self.calls += 1
        if variant.precision == self.refuse:
            raise self.exc
        return super().build(variant, shapes, options)


def test_results_in_request_order_with_frame_json_and_files(tmp_path):
    bs = build_variants(_model(), "fp16,fp32", "onnxruntime", out_dir=tmp_path / "b", progress=False)
    assert [r.precision for r in bs] == ["fp16", "fp32"] and len(bs) == 2 and bs.backend == "onnxruntime"
    assert bs["fp32"].status == "ok" and bs["fp32"].ok and bs["fp32"].engine is not None
    assert bs["fp32"].name == bs["fp32"].variant.name == "tiny-fp32"
    with pytest.raises(KeyError):
        bs["int8"]
    assert set(bs.engines) == {"tiny-fp16", "tiny-fp32"} and set(bs.variants) == {"tiny-fp16", "tiny-fp32"}
    f = bs.to_frame()
    assert list(f.columns) == FRAME_COLUMNS and f["variant"].tolist() == ["tiny-fp16", "tiny-fp32"]
    assert f["backend"].tolist() == ["onnxruntime"] * 2 and f["status"].tolist() == ["ok", "ok"]
    assert (f["build_time_s"] >= 0).all() and f["cache_hit"].tolist() == [False, False]
    js = bs.to_json()
    assert js["kind"] == "build_set" and js["model"] == "tiny" and js["model_hash"] == _model().hash
    assert [v["variant"] for v in js["variants"]] == ["tiny-fp16", "tiny-fp32"] and "cache" not in js
    assert js["variants"][1]["files"] == {"onnx": "tiny-fp32.onnx"}
    assert js["variants"][1]["record"]["precision"] == "fp32"
    on_disk = json.loads((tmp_path / "b" / "build.json").read_text())
    assert [v["status"] for v in on_disk["variants"]] == ["ok", "ok"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["build.json", "tiny-fp16.onnx", "tiny-fp32.onnx"]
    assert wb.load(tmp_path / "b" / "tiny-fp32.onnx").hash == bs["fp32"].variant.model.hash
    assert repr(bs) == "<BuildSet tiny on onnxruntime: fp16:ok, fp32:ok>"
    assert bs["fp32"].record.onnx_file == "tiny-fp32.onnx" and bs["fp32"].record.status == "ok"


def test_skipped_precision_is_recorded_and_others_built():
    bs = build_variants(_model(), ["fp32", "fp16"], _RefusingFp16(), progress=False)
    r = bs["fp16"]
    assert (r.status, r.reason, r.engine, r.variant) == ("skipped", "no fp16 here", None, None)
    assert not r.ok and r.name == "tiny-fp16" and r.record.status == "skipped" and r.record.reason == "no fp16 here"
    assert r.record.source_hash == _model().hash and r.record.variant_hash == ""
    with pytest.raises(UnsupportedError, match="fp16 on onnxruntime: no fp16 here"):
        r.raise_for_status()
    assert bs["fp32"].raise_for_status() is bs["fp32"]
    f = bs.to_frame().set_index("precision")
    assert np.isnan(f.loc["fp16", "build_time_s"]) and np.isnan(f.loc["fp16", "engine_bytes"])
    assert list(bs.engines) == ["tiny-fp32"] and list(bs.variants) == ["tiny-fp32"]


def test_failed_build_keeps_the_error_and_the_others(tmp_path):
    be = _RefusingBuild("fp16", BuildError("refused on purpose"))
    bs = build_variants(_model(), "fp16,fp32", be, out_dir=tmp_path / "o", progress=False)
    r = bs["fp16"]
    assert (r.status, r.reason, r.internal) == ("failed", "refused on purpose", False)
    assert r.variant is not None and r.engine is None and r.files == {"onnx": "tiny-fp16.onnx"}
    assert r.record.onnx_file == "tiny-fp16.onnx" and r.record.variant_hash == r.variant.hash
    with pytest.raises(BuildError, match="refused on purpose") as e:
        r.raise_for_status()
    assert e.value is r.error
    assert bs["fp32"].status == "ok" and be.calls == 2  # no kernel-fallback retry for an unrelated error


def test_internal_error_is_marked_internal():
    bs = build_variants(_model(), "fp16", _RefusingBuild("fp16", KeyError("bug")), progress=False)
    r = bs["fp16"]
    assert r.status == "failed" and r.internal and r.reason == "internal error: KeyError: 'bug'"
    assert isinstance(r.error, KeyError) and r.files == {}


def test_failed_without_an_error_object_raises_build_error():
    r = build_variants(_model(), "fp16", _RefusingFp16(), progress=False)["fp16"]
    failed = BuildResult("fp16", "failed", "why", r.record)
    with pytest.raises(BuildError, match="^why$"):
        failed.raise_for_status()
    assert BuildResult("fp16", "cached", "", r.record).ok and not BuildResult("fp16", "failed", "", r.record).ok


def test_recipe_failure_is_recorded(monkeypatch):
    import workbench.builds as B

    def bad_recipe(*a, **k):
        raise UsageError("bad recipe input")

    monkeypatch.setattr(B, "_make_variant", bad_recipe)
    r = build_variants(_model(), "fp16", "onnxruntime", progress=False)["fp16"]
    assert (r.status, r.reason, r.internal) == ("failed", "recipe failed: bad recipe input", False)

    def buggy(*a, **k):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(B, "_make_variant", buggy)
    r = build_variants(_model(), "fp16", "onnxruntime", progress=False)["fp16"]
    assert r.status == "failed" and r.internal
    assert r.reason == "recipe failed with an internal error: ZeroDivisionError: oops"


def test_ready_variants_are_built_as_given():
    from workbench.precision import make_variant

    v = make_variant(_model(), "fp16", progress=False)
    bs = build_variants(_model(), [v], "onnxruntime", progress=False)
    assert bs["fp16"].variant is v and bs["fp16"].status == "ok"
    bs2 = build_variants(_model(), v, "onnxruntime", progress=False)  # one Variant alone
    assert bs2["fp16"].variant is v


@pytest.mark.parametrize("kw,msg", [({"precisions": 3}, "precisions must be a comma-separated string or a list"),
                                    ({"precisions": None}, "precisions must be"),
                                    ({"options": {"x": 1}}, "options must be a BuildOptions, not dict"),
                                    ({"cache": 3}, "cache must be a folder path or an EngineCache, not int"),
                                    ({"keep_nodes": "mm"}, "keep_nodes takes a list of names")])
def test_argument_checks(kw, msg):
    args = {"precisions": "fp32"}
    args.update(kw)
    with pytest.raises(UsageError, match=msg):
        build_variants(_model(), args.pop("precisions"), "onnxruntime", progress=False, **args)


def test_build_engine_returns_the_pair_or_raises():
    var, eng = build_engine(_model(), "fp32", "onnxruntime", progress=False, options=BuildOptions(progress=False))
    assert var.precision == "fp32" and eng.variant is var
    out = eng.run({"x": np.ones((2, 4), np.float32)})["y"]
    assert np.allclose(out, np.full((2, 4), 2.0))  # relu(1 * 0.5 * 4)
    with pytest.raises(UnsupportedError, match="no fp16 here"):
        build_engine(_model(), "fp16", _RefusingFp16(), progress=False)


def test_shapes_are_recorded_on_failed_builds():
    be = _RefusingBuild("fp32", BuildError("nope"))
    r = build_variants(_model(), "fp32", be, shapes="x:2x4", progress=False)["fp32"]
    assert r.record.shapes == {"x": {"min": [2, 4], "opt": [2, 4], "max": [2, 4]}}
    skipped = build_variants(_model(), "fp16", _RefusingFp16(), progress=False)["fp16"]
    assert skipped.record.shapes == {} and skipped.record.variant == "tiny-fp16"
