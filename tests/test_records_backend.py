"""Records (versioned JSON), Variant identity, and the ONNX Runtime backend's contract on real models."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

import workbench as wb
from workbench.backends import backend_names, get_backend
from workbench.data import synthetic_inputs
from workbench.errors import UnsupportedError, UsageError, WorkbenchError
from workbench.records import SCHEMA_VERSION, BuildRecord, load_record
from workbench.variant import Variant


def test_build_record_roundtrip_and_schema(tmp_path):
    rec = BuildRecord(variant="m-fp16", precision="fp16", backend="onnxruntime", build_time_s=1.5,
                      options={"threads": 2}, device={"type": "cpu"})
    path = rec.save(tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["kind"] == "build"
    back = load_record(path)
    assert isinstance(back, BuildRecord) and back == rec
    # A newer writer's extra fields are ignored, not fatal (forward compatible).
    data["schema_version"] = SCHEMA_VERSION + 1
    data["field_from_the_future"] = 42
    assert BuildRecord.from_json(data).variant == "m-fp16"
    with pytest.raises(WorkbenchError):
        BuildRecord.from_json({"kind": "build"})


def test_variant_hash_tracks_graph_and_flags(light):
    m = wb.load(light("squeezenet"))
    fp32, tf32 = Variant.of(m, "fp32"), Variant.of(m, "tf32")
    assert fp32.hash != tf32.hash and fp32.model.hash == tf32.model.hash
    assert Variant.of(wb.load(light("squeezenet")), "fp32").hash == fp32.hash
    assert tf32.tf32 and not fp32.tf32


def test_onnxruntime_backend_matches_plain_session(light):
    path = light("squeezenet")
    m = wb.load(path)
    feeds = synthetic_inputs(m, seed=3)
    eng = get_backend("onnxruntime").build(Variant.of(m))
    ours = eng.run(feeds)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert list(ours) == eng.output_names
    np.testing.assert_allclose(next(iter(ours.values())), ref[0], rtol=1e-5, atol=1e-6)
    assert eng.record.backend == "onnxruntime" and eng.record.variant_hash == Variant.of(m).hash
    assert eng.record.versions["onnxruntime"] == ort.__version__


def test_onnxruntime_cpu_refuses_what_it_cannot_run(light):
    be = get_backend("onnxruntime")
    assert be.supports("bf16")[0] is False and be.supports("fp8")[0] is False
    m = wb.load(light("squeezenet"))
    with pytest.raises(UnsupportedError, match="bfloat16"):
        be.build(Variant(model=m, precision="bf16"))


def test_backend_registry_and_cuda_message():
    assert {"onnxruntime", "onnxruntime-cuda"} <= set(backend_names())
    with pytest.raises(UsageError, match="unknown backend"):
        get_backend("nope")


def test_cuda_provider_missing_names_what_to_install():
    """CPU onnxruntime wheel: the CUDA backend says what to install. (This assertion used to be skipped
    silently where the CUDA provider exists; that branch is test_gpu_branches.py::test_onnxruntime_cuda_available.)"""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here: test_gpu_branches.py covers the CUDA-provider branch")
    ok, why = get_backend("onnxruntime-cuda").available()
    assert not ok and "onnxruntime-gpu" in why


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, workbench; heavy = [m for m in ('torch', 'tensorrt', 'tensorrt_rtx', 'modelopt', 'plotly', "
            "'pandas', 'anywidget') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
