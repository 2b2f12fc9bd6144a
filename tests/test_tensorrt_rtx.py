"""TensorRT-RTX backend: real parses and ahead-of-time builds on this CPU-only machine.

Nothing here is mocked: every build runs the real `tensorrt_rtx` builder. Engines cannot execute
without a GPU; the run path is covered by tests/test_tensorrt_gpu.py on a GPU machine.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import workbench
from workbench.backends import get_backend
from workbench.backends.base import BuildOptions
from workbench.errors import BackendUnavailable, BuildError, ShapeSpecError, UnsupportedError, UsageError
from workbench.records import BuildRecord
from workbench.variant import Variant

from conftest import light_path

trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed: pip install 'trt-workbench[trt-rtx]'")
pytestmark = pytest.mark.rtx


def _backend():
    return get_backend("tensorrt-rtx")


def _quiet(**kw) -> BuildOptions:
    return BuildOptions(progress=False, **kw)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    """Light ResNet-50 built once at fp32 (with progress bars on), shared by the tests below."""
    d = tmp_path_factory.mktemp("resnet")
    src = d / "light_resnet50.onnx"
    shutil.copy(light_path("resnet50"), src)
    model = workbench.load(src)
    variant = Variant.of(model, "fp32")
    engine = _backend().build(variant, None, BuildOptions(progress=True, opt_level=2, workspace_mb=256),
                              out_dir=d / "out")
    return model, variant, engine, d / "out"


def test_resnet50_fp32_engine_and_record(resnet):
    model, variant, engine, out = resnet
    rec = engine.record
    assert engine.nbytes > 100_000
    assert rec.engine_bytes == engine.nbytes
    assert rec.engine_sha256 == hashlib.sha256(engine.serialized).hexdigest()
    assert rec.variant_hash == variant.hash and rec.source_hash == model.hash
    assert rec.backend == "tensorrt-rtx" and rec.backend_version == trt.__version__
    assert rec.versions["tensorrt_rtx"] == trt.__version__
    assert rec.build_time_s > 0
    applied = rec.options["applied"]
    assert applied["strongly_typed"] is True
    assert applied["builder_optimization_level"] == 2 and applied["workspace_mb"] == 256
    assert applied["tf32"] is False  # fp32 variant: TF32 cleared
    assert applied["profiling_verbosity"] == "DETAILED"
    # the engine and its record are on disk, and they agree
    path = out / f"{variant.name}.engine"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rec.engine_sha256
    saved = BuildRecord.load(path.with_name(path.name + ".json"))
    assert saved.engine_sha256 == rec.engine_sha256 and saved.engine_file == path.name
    assert not list(out.glob(".*.tmp"))


def test_progress_monitor_reports_nested_phases(resnet):
    progress = resnet[2].record.options["applied"]["progress"]
    assert progress["phases"] >= 2 and progress["steps"] > 0


def test_engine_names_without_gpu(resnet):
    _, variant, engine, _ = resnet
    assert engine.input_names == variant.model.input_names
    assert engine.output_names == variant.model.output_names


def _no_gpu_here() -> None:
    """Skip (with the reason) where an NVIDIA GPU is visible: these tests are the no-GPU branch. The
    GPU branches are in tests/test_gpu_branches.py (-m gpu). Before, the first test below skipped only
    where RTX engines *run*, so on a GPU they cannot run on (H100/H200) it expected 'GPU' in a message
    that names the compute capability instead."""
    from workbench.device import cuda_device_info

    info = cuda_device_info(0)
    if "error" not in info:
        pytest.skip(f"an NVIDIA GPU is present ({info.get('name')}): test_gpu_branches.py covers this branch")


def test_run_needs_a_gpu(resnet):
    _no_gpu_here()
    _, variant, engine, _ = resnet
    ok, why = engine.backend.can_run()
    assert not ok and "need an NVIDIA GPU" in why
    with pytest.raises(BackendUnavailable, match="GPU") as e:
        engine.run(workbench.data.synthetic_inputs(variant.model))
    assert str(e.value) == why


def test_fp16_variant_builds_smaller_engine(tmp_path, light):
    from workbench.precision import make_variant

    model = workbench.load(light("squeezenet"))
    b = _backend()
    e32 = b.build(Variant.of(model, "fp32"), None, _quiet())
    v16 = make_variant(model, "fp16", progress=False)
    e16 = b.build(v16, None, _quiet())
    assert e16.record.precision == "fp16" and e16.record.variant_hash == v16.hash != e32.record.variant_hash
    assert 0 < e16.nbytes < e32.nbytes  # fp16 weights in the graph -> fp16 weights in the engine
    assert "tf32" not in e16.record.options["applied"]  # TF32 left alone for non-fp32 variants


def test_tf32_flag_follows_variant(light):
    model = workbench.load(light("squeezenet"))
    e = _backend().build(Variant.of(model, "tf32"), None, _quiet())
    assert e.record.options["applied"]["tf32"] is True


def _dynamic_squeezenet(path: Path) -> Path:
    """light SqueezeNet with a dynamic batch axis (input and output)."""
    m = onnx.load(path)
    inits = {i.name for i in m.graph.initializer}
    [inp] = [i for i in m.graph.input if i.name not in inits]
    inp.type.tensor_type.shape.dim[0].dim_param = "N"
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    out = path.with_name("squeezenet_dynamic.onnx")
    onnx.save(m, out)
    return out


def test_dynamic_shapes_need_a_range(light):
    model = workbench.load(_dynamic_squeezenet(light("squeezenet")))
    with pytest.raises(ShapeSpecError, match=r"data_0.*--shapes data_0:"):
        _backend().build(Variant.of(model), None, _quiet())


def test_dynamic_profile_builds(light):
    model = workbench.load(_dynamic_squeezenet(light("squeezenet")))
    spec = "data_0:1x3x224x224/4x3x224x224/8x3x224x224"
    e = _backend().build(Variant.of(model), spec, _quiet())
    assert e.record.shapes["data_0"] == {"min": [1, 3, 224, 224], "opt": [4, 3, 224, 224], "max": [8, 3, 224, 224]}
    assert e.record.options["applied"]["profile"]["data_0"]["max"] == [8, 3, 224, 224]


def test_shapes_must_fit_the_model(light):
    model = workbench.load(light("squeezenet"))
    with pytest.raises(ShapeSpecError, match="not (model|network) inputs"):
        _backend().build(Variant.of(model), "nope:1x3", _quiet())
    with pytest.raises(ShapeSpecError, match="fixes it to 224"):
        _backend().build(Variant.of(model), "data_0:1x3x224x225", _quiet())


@pytest.mark.parametrize("name,shapes", [
    ("digits_cnn.onnx", "image:1x1x8x8/16x1x8x8/64x1x8x8"),
    ("transformer_block.onnx", "x:1x8x64/4x32x64/8x128x64"),
    ("resize_concat.onnx", "x:1x3x32x32/4x3x32x32/8x3x32x32"),
])
def test_sample_models_build(sample, name, shapes):
    model = workbench.load(sample(name))
    e = _backend().build(Variant.of(model), shapes, _quiet())
    assert e.nbytes > 0 and e.record.shapes
    assert e.record.engine_sha256 == hashlib.sha256(e.serialized).hexdigest()


def test_sample_fp16_builds(sample):
    from workbench.precision import make_variant

    model = workbench.load(sample("transformer_block.onnx"))
    v = make_variant(model, "fp16", progress=False)
    e = _backend().build(v, "x:1x8x64/4x32x64/8x128x64", _quiet())
    assert e.nbytes > 0 and e.record.precision == "fp16"


def test_cancel_at_first_step_writes_nothing(tmp_path, light):
    model = workbench.load(light("squeezenet"))
    b = _backend()
    out = tmp_path / "out"
    earlier = b.build(Variant.of(model, "fp32"), None, _quiet(), out_dir=out)
    earlier_path = out / f"{earlier.variant.name}.engine"
    before = (earlier_path.read_bytes(), earlier_path.stat().st_mtime_ns)

    ev = threading.Event()
    ev.set()
    with pytest.raises(BuildError, match="cancelled"):
        b.build(Variant.of(model, "tf32"), None, _quiet(extra={"cancel": ev}), out_dir=out)
    assert not (out / f"{model.name}-tf32.engine").exists()
    assert (earlier_path.read_bytes(), earlier_path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in out.iterdir()) == [earlier_path.name, earlier_path.name + ".json"]


def test_backend_cancel_applies_to_the_build_in_progress(light):
    """cancel() stops the running build; a cancel left over from before a build (nothing was running)
    does not kill the next one, and after a cancelled build the next build runs."""
    model = workbench.load(light("squeezenet"))
    b = _backend()
    b.cancel()  # stale: no build in progress
    assert b.build(Variant.of(model), None, _quiet()).nbytes > 0
    done = threading.Event()

    def keep_cancelling():
        while not done.is_set():
            b.cancel()
            done.wait(0.005)

    t = threading.Thread(target=keep_cancelling)
    t.start()
    try:
        with pytest.raises(BuildError, match="cancelled"):
            b.build(Variant.of(model), None, _quiet())
    finally:
        done.set()
        t.join()
    assert b.build(Variant.of(model), None, _quiet()).nbytes > 0  # the next build is not cancelled


def test_timing_cache_not_used_on_rtx(tmp_path, light):
    model = workbench.load(light("squeezenet"))
    tc = tmp_path / "timing.cache"
    e = _backend().build(Variant.of(model), None, _quiet(timing_cache=str(tc)))
    assert "not used" in e.record.options["applied"]["timing_cache"]
    assert not tc.exists()


def test_compute_capability_targets(light):
    model = workbench.load(light("squeezenet"))
    b = _backend()
    e = b.build(Variant.of(model), None, _quiet(extra={"compute_capabilities": ["8.9"]}))
    assert e.record.options["applied"]["compute_capabilities"] == ["8.9"]
    with pytest.raises(UnsupportedError, match="7.0"):
        b.build(Variant.of(model), None, _quiet(extra={"compute_capabilities": ["7.0"]}))


def test_opt_level_out_of_range(light):
    model = workbench.load(light("squeezenet"))
    with pytest.raises(UsageError, match="0..5"):
        _backend().build(Variant.of(model), None, _quiet(opt_level=9))


def _broken_model(tmp_path: Path) -> Path:
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"], name="relu_ok"),
         helper.make_node("NoSuchOp", ["a"], ["y"], name="mystery_node", domain="")],
        "broken", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    p = tmp_path / "broken.onnx"
    p.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return p


def test_parser_errors_name_the_node(tmp_path):
    model = workbench.load(_broken_model(tmp_path))
    with pytest.raises(BuildError) as ei:
        _backend().build(Variant.of(model), None, _quiet())
    err = ei.value
    assert "mystery_node" in str(err) and "node 1" in str(err)
    assert [e.get("node_name") for e in err.errors] == ["mystery_node"]
    assert err.errors[0]["node"] == 1 and err.errors[0]["desc"]


def test_parser_error_on_dangling_input(tmp_path):
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"], name="relu_ok"),
         helper.make_node("Add", ["a", "never_produced"], ["y"], name="add_dangling")],
        "dangling", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    p = tmp_path / "dangling.onnx"
    p.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(BuildError, match="add_dangling"):
        _backend().build(Variant.of(workbench.load(p)), None, _quiet())


def test_supports_reports_aot_notes():
    _no_gpu_here()
    b = _backend()
    assert b.device()["type"] == "cpu-aot"
    ok, why = b.supports("fp8")
    assert ok and "8.9" in why
    assert b.supports("fp32") == (True, "")


def test_unavailable_module_says_what_to_install():
    from workbench.backends.tensorrt import TensorRTBackend

    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    ok, why = TensorRTBackend("tensorrt").available()
    assert not ok and "pip install" in why


def test_external_data_model_parses_from_file(tmp_path, light):
    src = onnx.load(light("squeezenet"))
    d = tmp_path / "ext"
    d.mkdir()
    onnx.save_model(src, d / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.onnx.data", size_threshold=0)
    model = workbench.load(d / "m.onnx")
    assert model.has_external_data
    e = _backend().build(Variant.of(model), None, _quiet())
    ref = _backend().build(Variant.of(workbench.load(light("squeezenet"))), None, _quiet())
    assert e.nbytes > 0 and abs(e.nbytes - ref.nbytes) < 0.05 * ref.nbytes
    assert json.dumps(e.record.to_json())  # JSON-able
    assert np.isfinite(e.record.build_time_s)
