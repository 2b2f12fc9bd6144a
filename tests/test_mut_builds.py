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
from workbench.errors import BuildError, DataError, UnsupportedError, UsageError


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


# ---------------------------------------------------------------------------------------------------------
# Second round (session 26): defaults, arguments reaching the recipe / the build, records of every outcome,
# variant cache and engine cache keys, engine files, timing-cache placement, native logs, progress on/off.

def _other_model():
    """Same graph as _model() with other weights: another source model with the same names."""
    w = numpy_helper.from_array(np.full((4, 4), -0.25, np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"), helper.make_node("Relu", ["h"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w])
    return wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name="tiny")


def _calib(seed):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((2, 4)).astype(np.float32)} for _ in range(8)]  # 16 samples


QUIET = BuildOptions(progress=False)


def test_defaults_build_on_onnxruntime_with_progress_on():
    bs = build_variants(_model(), "fp32")
    assert bs.backend == "onnxruntime" and bs["fp32"].record.backend == "onnxruntime"
    assert bs["fp32"].record.options["progress"] is True  # progress=True is the default: the build options say so
    var, eng = build_engine(_model(), "fp32")
    assert eng.record.backend == "onnxruntime" and eng.record.options["progress"] is True
    assert build_variants(_model(), "fp32", progress=False)["fp32"].record.options["progress"] is False


def test_build_engine_passes_every_argument_through(tmp_path):
    var, eng = build_engine(_model(), "fp16", "onnxruntime", shapes="x:2x4", keep_nodes=["mm"], keep_op_types=["Relu"],
                            options=BuildOptions(threads=1, progress=False), progress=False,
                            variant_cache=tmp_path / "vc", range_check=False)
    assert var.precision == "fp16" and var.recipe["keep_nodes"] == ["mm"] and var.recipe["keep_op_types"] == ["Relu"]
    assert var.recipe["options"] == {"range_check": False}  # **recipe_options reach make_variant
    assert eng.record.shapes == {"x": {"min": [2, 4], "opt": [2, 4], "max": [2, 4]}}
    assert eng.record.options["threads"] == 1 and eng.record.options["progress"] is False
    assert len(list((tmp_path / "vc").glob("*.onnx"))) == 1  # the fp16 variant went into the variant cache
    # int8 needs calibration data: calib reaches the recipe
    var8, _ = build_engine(_model(), "int8", "onnxruntime", calib=_calib(0), progress=False)
    assert var8.recipe["calibration"]["num_samples"] == 16  # 8 feeds of batch 2


def test_recipe_options_keep_lists_and_options_reach_build_variants_results():
    opts = BuildOptions(threads=1, progress=False)
    bs = build_variants(_model(), "fp16,fp32", "onnxruntime", keep_nodes=["mm"], keep_op_types=["Relu"],
                        options=opts, shapes="x:2x4", recipe_options={"range_check": False}, progress=False)
    r = bs["fp16"]
    assert r.status == "ok" and r.variant.recipe["keep_nodes"] == ["mm"] and r.variant.recipe["keep_op_types"] == ["Relu"]
    assert r.variant.recipe["options"] == {"range_check": False}
    assert r.record.options == opts.to_json() and r.record.shapes["x"]["opt"] == [2, 4]
    # the same keep lists reach fp32's recipe too, which refuses them (fp32 keeps the whole graph)
    assert bs["fp32"].status == "failed" and "keep_nodes/keep_op_types do not apply" in bs["fp32"].reason
    plain = build_variants(_model(), "fp32", "onnxruntime", options=opts, shapes="x:2x4")["fp32"]
    assert plain.record.options == opts.to_json() and plain.record.shapes["x"]["opt"] == [2, 4]


def test_int8_gets_the_qdq_form_of_its_backend_and_fp16_no_backend_option():
    bs = build_variants(_model(), "fp16,int8", "onnxruntime", calib=_calib(1), progress=False)
    assert bs["fp16"].variant.recipe["options"] == {}  # a cast recipe is not told the backend
    r8 = bs["int8"].variant.recipe
    assert r8["options"] == {"backend": "onnxruntime"} and r8["target"] == "onnxruntime-cpu"
    assert r8["activation_type"] == "QUInt8"  # ORT CPU's fast form: uint8 activations
    # the user's own choice wins over the backend's default form
    mine = build_variants(_model(), "int8", "onnxruntime", calib=_calib(1), progress=False,
                          recipe_options={"backend": "tensorrt"})["int8"].variant.recipe
    assert mine["options"] == {"backend": "tensorrt"} and mine["target"] == "tensorrt" and mine["symmetric"] is True


def test_variant_cache_hits_misses_and_what_it_keys_on(tmp_path):
    vc = tmp_path / "vc"
    t0 = __import__("time").perf_counter()
    first = build_variants(_model(), "fp32,fp16", "onnxruntime", variant_cache=str(vc), progress=False)
    wall = __import__("time").perf_counter() - t0
    assert [r.variant_cached for r in first] == [False, False]
    assert 0 < first["fp16"].recipe_time_s < wall  # seconds of this recipe run, not a clock reading
    assert len(list(vc.glob("*.onnx"))) == 1  # fp32 keeps the graph: nothing is cached for it
    assert first.to_json()["variant_cache"] == {"dir": str(vc), "hits": 0, "misses": 1, "invalid": 0}
    second = build_variants(_model(), "fp32,fp16", "onnxruntime", variant_cache=vc, progress=False)
    hit = second["fp16"]
    assert hit.variant_cached is True and hit.recipe_time_s == 0.0 and hit.status == "ok"
    assert second["fp32"].variant_cached is False
    assert hit.variant.hash == first["fp16"].variant.hash and hit.variant.name == "tiny-fp16"
    f0 = first.to_frame().set_index("precision")
    assert f0.loc["fp16", "recipe_time_s"] == round(first["fp16"].recipe_time_s, 3) > 0  # ms, as FlowResult.builds
    f = second.to_frame()
    assert f["variant_cached"].tolist() == [False, True] and f["recipe_time_s"].tolist()[1] == 0.0
    assert second.to_json()["variant_cache"] == {"dir": str(vc), "hits": 1, "misses": 0, "invalid": 0}
    # anything that changes the recipe's output is a miss: keep lists, recipe options, another model
    for kw in ({"keep_nodes": ["mm"]}, {"keep_op_types": ["Relu"]}, {"recipe_options": {"range_check": False}}):
        r = build_variants(_model(), "fp16", "onnxruntime", variant_cache=vc, progress=False, **kw)["fp16"]
        assert r.variant_cached is False, kw
    other = build_variants(_other_model(), "fp16", "onnxruntime", variant_cache=vc, progress=False)["fp16"]
    assert other.variant_cached is False and other.variant.model.hash != hit.variant.model.hash
    assert other.variant.source_hash == _other_model().hash


def test_variant_cache_keys_on_the_calibration_data(tmp_path):
    vc = tmp_path / "vc"
    a = build_variants(_model(), "int8", "onnxruntime", calib=_calib(2), variant_cache=vc, progress=False)["int8"]
    again = build_variants(_model(), "int8", "onnxruntime", calib=_calib(2), variant_cache=vc, progress=False)["int8"]
    b = build_variants(_model(), "int8", "onnxruntime", calib=_calib(3), variant_cache=vc, progress=False)["int8"]
    assert (a.variant_cached, again.variant_cached, b.variant_cached) == (False, True, False)


def test_ready_and_skipped_results_took_no_recipe_time():
    from workbench.precision import make_variant

    v = make_variant(_model(), "fp16", progress=False)
    bs = build_variants(_model(), [v, "fp32"], _RefusingFp16(), progress=False)
    assert bs["fp16"].status == "skipped"
    ready = build_variants(_model(), [v], "onnxruntime", progress=False)["fp16"]
    for r in (bs["fp16"], ready):
        assert r.recipe_time_s == 0.0 and r.variant_cached is False


def test_skipped_and_failed_records_carry_precision_options_and_names(tmp_path):
    opts = BuildOptions(threads=1, progress=False)
    skipped = build_variants(_model(), "fp16", _RefusingFp16(), options=opts)["fp16"]
    rec = skipped.record
    assert (rec.precision, rec.status, rec.reason, rec.options) == ("fp16", "skipped", "no fp16 here", opts.to_json())
    assert skipped.to_json()["precision"] == "fp16" and skipped.to_json()["reason"] == "no fp16 here"
    # a failed build of a ready variant with its own name: the record names that variant
    from workbench.variant import Variant

    mine = Variant(model=_model(), precision="fp32", name="my-variant")
    failed = build_variants(_model(), [mine], _RefusingBuild("fp32", BuildError("no")), options=opts)["fp32"]
    rec = failed.record
    assert (rec.variant, rec.precision, rec.status, rec.reason) == ("my-variant", "fp32", "failed", "no")
    assert rec.options == opts.to_json() and rec.onnx_file == "" and failed.files == {}


def test_real_recipe_failure_keeps_its_error_class_and_record():
    opts = BuildOptions(threads=1, progress=False)
    r = build_variants(_model(), "int8,fp32", "onnxruntime", options=opts)["int8"]  # int8 without calib data
    assert r.status == "failed" and r.reason.startswith("recipe failed: ") and not r.internal
    assert isinstance(r.error, DataError) and "calibration needs data" in str(r.error)
    rec = r.record
    assert (rec.precision, rec.status, rec.reason, rec.options) == ("int8", "failed", r.reason, opts.to_json())
    assert rec.variant == "tiny-int8" and r.variant is None
    with pytest.raises(DataError) as e:
        r.raise_for_status()
    assert e.value is r.error


def test_recipe_bug_is_internal_and_reraised_as_itself(monkeypatch):
    import workbench.precision as P

    def buggy(*a, **k):
        raise ZeroDivisionError("recipe bug")

    monkeypatch.setattr(P, "make_variant", buggy)
    opts = BuildOptions(threads=1, progress=False)
    r = build_variants(_model(), "fp16", "onnxruntime", options=opts)["fp16"]
    assert r.internal and r.reason == "recipe failed with an internal error: ZeroDivisionError: recipe bug"
    assert (r.record.precision, r.record.status, r.record.reason) == ("fp16", "failed", r.reason)
    assert r.record.options == opts.to_json()
    with pytest.raises(ZeroDivisionError):
        r.raise_for_status()


def test_internal_build_error_record_and_files(tmp_path):
    opts = BuildOptions(threads=1, progress=False)
    r = build_variants(_model(), "fp16", _RefusingBuild("fp16", KeyError("bug")), options=opts, shapes="x:2x4",
                       out_dir=tmp_path / "o")["fp16"]
    assert r.internal and r.variant is not None and r.variant.name == "tiny-fp16"
    assert r.files == {"onnx": "tiny-fp16.onnx"} and (tmp_path / "o" / "tiny-fp16.onnx").exists()
    rec = r.record
    assert (rec.variant, rec.precision, rec.status, rec.reason) == ("tiny-fp16", "fp16", "failed", r.reason)
    assert rec.options == opts.to_json() and rec.shapes == {"x": {"min": [2, 4], "opt": [2, 4], "max": [2, 4]}}
    assert rec.variant_hash == r.variant.hash


def test_successful_build_without_out_dir_names_no_files():
    r = build_variants(_model(), "fp32", "onnxruntime", progress=False)["fp32"]
    assert r.files == {} and r.record.onnx_file == "" and r.record.to_json()["onnx_file"] == ""


def test_build_json_location_is_checked_before_any_build(tmp_path):
    from workbench.errors import OutputError

    out = tmp_path / "o"
    (out / "build.json").mkdir(parents=True)
    with pytest.raises(OutputError, match="build.json"):
        build_variants(_model(), "fp32", "onnxruntime", out_dir=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["build.json"]  # nothing built or written
    fifo = tmp_path / "f"
    fifo.mkdir()
    import os

    os.mkfifo(fifo / "build.json")
    with pytest.raises(OutputError, match="refusing to write build.json to .*FIFO"):
        build_variants(_model(), "fp32", "onnxruntime", out_dir=fifo, progress=False)
    assert sorted(p.name for p in fifo.iterdir()) == ["build.json"]


def test_build_set_json_and_frame_fields(tmp_path):
    from workbench.builds import BuildSet
    from workbench.records import SCHEMA_VERSION

    bs = build_variants(_model(), "fp32", "onnxruntime", out_dir=tmp_path / "o", cache=tmp_path / "c", progress=False)
    assert bs.out_dir == tmp_path / "o" and bs.cache is None  # ORT has no serialized engines: no engine cache
    js = bs.to_json()
    assert js["schema_version"] == SCHEMA_VERSION and js["backend"] == "onnxruntime" and js["created"] == bs.created
    assert "cache" not in js and "variant_cache" not in js and bs["fp32"].status == "ok"
    assert json.loads((tmp_path / "o" / "build.json").read_text())["created"] == bs.created
    f = bs.to_frame()
    assert f.loc[0, "reason"] == "" and f.loc[0, "engine_bytes"] == bs["fp32"].record.engine_bytes
    assert f.loc[0, "recipe_time_s"] == round(bs["fp32"].recipe_time_s, 3)  # ms resolution, as FlowResult.builds
    empty = BuildSet(model=_model(), backend="onnxruntime", results=[]).to_frame()
    assert list(empty.columns) == FRAME_COLUMNS and len(empty) == 0


def test_keep_op_types_given_as_one_string_is_refused_by_name():
    with pytest.raises(UsageError, match="keep_op_types takes a list of names"):
        build_variants(_model(), "fp16", "onnxruntime", keep_op_types="Relu", progress=False)


def test_native_log_lines_go_to_the_record_or_the_error():
    """ORT's process-wide logger at VERBOSE writes C++ lines to fd 2 (as in tests/test_adversarial_logs.py)."""
    import onnxruntime

    bad = helper.make_graph([helper.make_node("Bar", ["x"], ["y"], domain="com.example")], "bad",
                            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])])
    bad = wb.load(helper.make_model(bad, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.example", 1)]), name="bad")
    onnxruntime.set_default_logger_severity(0)
    try:
        ok = build_variants(_model(), "fp32", "onnxruntime", progress=False)["fp32"]
        failed = build_variants(bad, "fp32", "onnxruntime", progress=False)["fp32"]
    finally:
        onnxruntime.set_default_logger_severity(2)
    assert ok.status == "ok" and ok.record.native_log and all(isinstance(x, str) for x in ok.record.native_log)
    assert failed.status == "failed" and isinstance(failed.error, BuildError)
    lines = failed.error.native_log
    assert lines and lines == failed.record.native_log
    assert failed.error.__notes__ == [f"[{len(lines)} native log line{'s' if len(lines) != 1 else ''} captured: "
                                      "see the exception's .native_log]"]


class _LoudFailure(OnnxRuntimeBackend):
    """ORT CPU whose build writes ``n`` lines to file descriptor 2 (as a native library's verbose logger does)
    and then fails."""

    def __init__(self, n):
        super().__init__("cpu")
        self.n = n

    def build(self, variant, shapes=None, options=None):
        import os

        os.write(2, b"".join(b"native line %d\n" % i for i in range(self.n)))
        raise BuildError("failed after a long log")


def test_a_long_native_log_is_bounded_but_counted_in_full():
    from workbench.logs import MAX_LINES

    n = MAX_LINES + 100
    r = build_variants(_model(), "fp32", _LoudFailure(n), progress=False)["fp32"]
    lines = r.error.native_log
    assert len(lines) == MAX_LINES + 1 and lines[0] == "native line 0" and lines[-1] == f"native line {n - 1}"
    assert r.error.__notes__ == [f"[{n} native log lines captured: see the exception's .native_log]"]


def test_progress_on_shows_the_calibration_bar_and_off_shows_none(capsys):
    build_variants(_model(), "int8", "onnxruntime", calib=_calib(4), progress=False)
    assert "calibrating" not in capsys.readouterr().err
    build_variants(_model(), "int8", "onnxruntime", calib=_calib(4), progress=True)
    assert "calibrating tiny" in capsys.readouterr().err
    build_engine(_model(), "int8", "onnxruntime", calib=_calib(4))  # build_engine's default: progress on
    assert "calibrating tiny" in capsys.readouterr().err
    _, eng = build_engine(_model(), "int8", "onnxruntime", calib=_calib(4), progress=False)
    assert "calibrating" not in capsys.readouterr().err and eng.record.options["progress"] is False


class _DeclaresTimingCache(OnnxRuntimeBackend):
    """ORT CPU declaring ``uses_timing_cache`` (full TensorRT, the real user, cannot be installed here): shows
    where ``build_variants`` puts the timing cache file; ORT only records the option."""

    uses_timing_cache = True

    def __init__(self):
        super().__init__("cpu")


def test_timing_cache_file_goes_to_the_cache_or_the_out_folder(tmp_path):
    def tc(be, **kw):
        return build_variants(_model(), "fp32", be, progress=False, **kw)["fp32"].record.options["timing_cache"]

    be = _DeclaresTimingCache()
    assert tc(be, cache=tmp_path / "c") == str(tmp_path / "c" / "timing-onnxruntime.cache")
    assert tc(be, out_dir=tmp_path / "o") == str(tmp_path / "o" / "timing-onnxruntime.cache")
    assert tc(be, cache=tmp_path / "c", out_dir=tmp_path / "o") == str(tmp_path / "c" / "timing-onnxruntime.cache")
    assert tc(be) is None  # nowhere to keep it
    assert tc(be, cache=tmp_path / "c", options=BuildOptions(timing_cache="mine.cache", progress=False)) == "mine.cache"
    assert tc(OnnxRuntimeBackend("cpu"), cache=tmp_path / "c", out_dir=tmp_path / "o") is None  # not declared


# ------------------------------------------------------------------ TensorRT-RTX (builds on CPU, ahead of time)
rtx = pytest.mark.rtx


def _need_rtx():
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed: pip install 'trt-workbench[trt-rtx]'")


@rtx
@pytest.mark.parametrize("as_path", [True, False])
def test_rtx_engine_cache_engine_files_and_records(tmp_path, as_path):
    _need_rtx()
    from workbench.backends.cache import EngineCache

    opts = BuildOptions(opt_level=1, progress=False)
    cache = tmp_path / "c" if as_path else EngineCache(tmp_path / "c")
    kw = dict(shapes="x:2x4", options=opts, cache=cache)
    first = build_variants(_model(), "fp32,fp16", "tensorrt-rtx", out_dir=tmp_path / "a", **kw)
    assert [r.status for r in first] == ["ok", "ok"] and first.to_frame()["cache_hit"].tolist() == [False, False]
    assert len(list((tmp_path / "c").glob("*.engine"))) == 2
    for r in first:
        name = r.variant.name
        assert r.files == {"onnx": f"{name}.onnx", "engine": f"{name}.engine", "record": f"{name}.engine.json"}
        data = (tmp_path / "a" / r.files["engine"]).read_bytes()
        assert len(data) == r.record.engine_bytes == r.engine.record.engine_bytes
        on_disk = json.loads((tmp_path / "a" / r.files["record"]).read_text())
        assert on_disk["variant"] == name and on_disk["shapes"]["x"]["opt"] == [2, 4]
        assert r.record.options["opt_level"] == 1 and r.record.onnx_file == f"{name}.onnx"
        assert r.record.options["timing_cache"] is None  # RTX declares no timing cache
    assert first.to_json()["cache"] == {"dir": str(tmp_path / "c"), "hits": 0, "misses": 2, "invalid": 0}
    f = first.to_frame().set_index("precision")
    assert f.loc["fp16", "engine_bytes"] == first["fp16"].record.engine_bytes
    cache2 = tmp_path / "c" if as_path else EngineCache(tmp_path / "c")
    second = build_variants(_model(), "fp32,fp16", "tensorrt-rtx", out_dir=tmp_path / "b", **{**kw, "cache": cache2})
    assert [r.status for r in second] == ["cached", "cached"] and [r.record.status for r in second] == ["cached"] * 2
    assert second.to_frame()["cache_hit"].tolist() == [True, True]
    assert second.to_json()["cache"] == {"dir": str(tmp_path / "c"), "hits": 2, "misses": 0, "invalid": 0}
    for r1, r2 in zip(first, second):
        assert (tmp_path / "b" / r2.files["engine"]).read_bytes() == (tmp_path / "a" / r1.files["engine"]).read_bytes()
        assert r2.record.shapes == r1.record.shapes
    # other shapes or options: a miss
    third = build_variants(_model(), "fp32", "tensorrt-rtx", shapes="x:2x4", options=QUIET, cache=tmp_path / "c")
    assert third["fp32"].status == "ok"


@rtx
def test_rtx_without_a_cache_builds_every_time_and_notes_its_reason(tmp_path):
    _need_rtx()
    a = build_variants(_model(), "int8,fp32", "tensorrt-rtx", calib=_calib(5), progress=False)
    r8 = a["int8"]
    assert r8.status == "ok" and r8.variant.recipe["target"] == "tensorrt" and r8.variant.recipe["symmetric"] is True
    assert r8.reason == r8.record.reason and "without a GPU" in r8.reason  # the backend's "supported, but" note
    assert a.to_frame().set_index("precision").loc["int8", "reason"] == r8.reason
    assert "cache" not in a.to_json() and a["fp32"].files == {}


@rtx
def test_rtx_variant_cache_keys_on_the_precision(tmp_path):
    _need_rtx()
    vc = tmp_path / "vc"
    bs = build_variants(_model(), "fp16,bf16", "tensorrt-rtx", variant_cache=vc, progress=False)
    assert [(r.status, r.variant_cached, r.variant.precision) for r in bs] == [("ok", False, "fp16"),
                                                                                ("ok", False, "bf16")]
    again = build_variants(_model(), "bf16", "tensorrt-rtx", variant_cache=vc, progress=False)["bf16"]
    assert again.variant_cached and again.variant.precision == "bf16" and again.variant.hash == bs["bf16"].variant.hash


@rtx
def test_rtx_build_engine_uses_the_engine_cache(tmp_path):
    _need_rtx()
    _, first = build_engine(_model(), "fp16", "tensorrt-rtx", cache=tmp_path / "c", progress=False)
    _, again = build_engine(_model(), "fp16", "tensorrt-rtx", cache=tmp_path / "c", progress=False)
    assert (first.record.cache_hit, again.record.cache_hit, again.record.status) == (False, True, "cached")
    assert again.serialized == first.serialized


@rtx
def test_rtx_progress_bar_only_when_asked(capsys):
    _need_rtx()
    build_variants(_model(), "fp32", "tensorrt-rtx", progress=False)
    assert "Building engine" not in capsys.readouterr().err
    build_variants(_model(), "fp32", "tensorrt-rtx")
    assert "Building engine" in capsys.readouterr().err
