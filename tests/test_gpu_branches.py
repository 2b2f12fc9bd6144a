"""The "GPU present" branch of every CPU test whose outcome depends on the machine (issue 23 part 4).

Each CPU test named below skips, saying why, where a GPU (or TensorRT, or the CUDA provider) is usable;
the test here asserts what must happen on that machine instead, so neither branch goes unchecked and no
assertion quietly switches off. All are marked ``gpu`` and skip elsewhere with the reason; run them with
``pytest -m gpu tests/test_gpu_branches.py`` on a machine with an NVIDIA GPU. They cannot run on the
CPU-only machines and CI of this project (docs/testing.md, "GPU branches").

CPU test                                                                     → GPU branch here
tests/test_records_backend.py::test_cuda_provider_missing_names_what_to_install → test_onnxruntime_cuda_available
tests/test_profile_cli.py::test_missing_cuda_provider_names_what_to_install    → test_profile_cli_on_the_cuda_provider
tests/test_build_cli.py::test_missing_tensorrt_is_exit_2_with_install_hint     → test_build_cli_with_tensorrt
tests/test_report.py::test_cli_demo_prints_summary                             → test_demo_adds_tensorrt_rows
tests/test_report.py::test_cli_report_two_backends_keeps_going_when_one_cannot_run
                                                                  → test_report_two_backends_both_measured
tests/test_tensorrt_rtx.py::test_run_needs_a_gpu                → test_rtx_on_a_gpu_it_cannot_run_on_says_which
tests/test_tensorrt_rtx.py::test_supports_reports_aot_notes     → test_rtx_device_is_the_gpu
tests/test_dashboard.py::test_default_backend_without_tensorrt_is_onnxruntime
                                                                  → test_dashboard.py::test_default_backend_with_tensorrt_is_tensorrt
tests/test_notebooks.py::test_notebooks_use_onnxruntime_without_tensorrt
                                                                  → test_notebooks.py::test_notebooks_pick_tensorrt_when_usable
"""
from __future__ import annotations

import json
import shutil

import pytest

from workbench.cli import main

from conftest import SAMPLES

pytestmark = pytest.mark.gpu

FILES = ("digits_cnn.onnx", "digits_test.npz", "digits_calib.npz")
FAST = ["--iterations", "10", "--warmup", "1", "--layer-iterations", "3", "--limit", "64", "--no-progress"]
DIGITS_SHAPES = "image:1x1x8x8/32x1x8x8/64x1x8x8"


def _gpu() -> dict:
    """The GPU as cuda-python's driver API sees it (independent of any backend's own check); skip without one."""
    from workbench.device import cuda_device_info

    info = cuda_device_info(0)
    if "error" in info:
        pytest.skip(f"no NVIDIA GPU here: {info['error']}")
    return info


def _cuda_provider() -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu (CUDA execution provider) not installed")
    _gpu()


def _rtx():
    pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx-cu13 not installed")
    from workbench.backends import get_backend

    return get_backend("tensorrt-rtx")


@pytest.fixture
def digits(tmp_path):
    d = tmp_path / "digits"
    d.mkdir()
    for f in FILES:
        shutil.copy(SAMPLES / f, d / f)
    return d


def test_onnxruntime_cuda_available():
    _cuda_provider()
    from workbench.backends import get_backend

    be = get_backend("onnxruntime-cuda")
    assert be.available() == (True, "")
    assert be.device()["type"] == "cuda" and be.device()["name"] == _gpu()["name"]


def test_profile_cli_on_the_cuda_provider(digits, tmp_path, capsys):
    _cuda_provider()
    out = tmp_path / "out"
    rc = main(["profile", str(digits / FILES[0]), "--backend", "onnxruntime-cuda", "--precision", "fp32",
               "--iterations", "5", "--warmup", "1", "--layer-iterations", "2", "--out", str(out), "--json",
               "--no-progress"])
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    (entry,) = json.loads(stdout)
    assert entry["status"] == "ok" and entry["p50_ms"] > 0


@pytest.mark.trt
def test_build_cli_with_tensorrt(trt_backend, digits, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["build", str(digits / FILES[0]), "--backend", "tensorrt", "--precision", "fp32,fp16",
               "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    doc = json.loads((out / "build.json").read_text())
    assert [v["status"] for v in doc["variants"]] == ["ok", "ok"]
    assert all((out / v["files"]["engine"]).stat().st_size > 0 for v in doc["variants"])


@pytest.mark.trt
def test_demo_adds_tensorrt_rows(trt_backend, tmp_path, capsys):
    from workbench.commands.demo import FILES as DEMO_FILES
    from workbench.flow import FlowResult
    from workbench.report import records_dir_for

    samples = tmp_path / "samples"
    samples.mkdir()
    for f in DEMO_FILES:
        shutil.copy(SAMPLES / f, samples / f)
    rc = main(["demo", "--samples", str(samples), "--out", str(tmp_path / "demo"), *FAST])
    capsys.readouterr()
    assert rc == 0
    back = FlowResult.load(records_dir_for(tmp_path / "demo" / "report.html"))
    assert set(back.builds.backend) == {"onnxruntime", "tensorrt"}
    assert set(back.latency.backend) == {"onnxruntime", "tensorrt"} and not back.errors


@pytest.mark.rtx
def test_report_two_backends_both_measured(digits, tmp_path, capsys):
    """Where TensorRT-RTX engines run (an RTX-class GPU), the two-backend report measures both, exit 0."""
    ok, why = _rtx().can_run()
    if not ok:
        pytest.skip(f"TensorRT-RTX engines cannot run here: {why}")
    from workbench.flow import FlowResult
    from workbench.report import records_dir_for

    out = tmp_path / "two.html"
    rc = main(["report", str(digits / FILES[0]), "--backend", "onnxruntime,tensorrt-rtx", "--precision", "fp32",
               "--data", str(digits / FILES[1]), "--labels", "label", "--shapes", DIGITS_SHAPES,
               "--out", str(out), *FAST])
    err = capsys.readouterr().err
    back = FlowResult.load(records_dir_for(out))
    assert rc == 0, err
    assert set(back.latency.backend) == {"onnxruntime", "tensorrt-rtx"} and not back.errors


@pytest.mark.rtx
def test_rtx_on_a_gpu_it_cannot_run_on_says_which(digits):
    """A GPU outside the TensorRT-RTX support matrix (A100, H100, H200, B200): the engine still builds
    (ahead of time) and running it is refused, naming the compute capability and the GPU."""
    gpu = _gpu()
    be = _rtx()
    ok, why = be.can_run()
    if ok:
        pytest.skip(f"TensorRT-RTX runs on this GPU ({gpu['name']}): test_report_two_backends_both_measured")
    import workbench as wb
    from workbench.backends import BuildOptions
    from workbench.data import synthetic_inputs
    from workbench.errors import BackendUnavailable
    from workbench.variant import Variant

    assert f"compute capability {gpu['compute_capability']}" in why and gpu["name"] in why
    m = wb.load(digits / FILES[0])
    eng = be.build(Variant.of(m), DIGITS_SHAPES, BuildOptions(progress=False))
    with pytest.raises(BackendUnavailable) as e:
        eng.run(synthetic_inputs(m))
    assert str(e.value) == why


@pytest.mark.rtx
def test_rtx_device_is_the_gpu():
    """With a GPU present the RTX backend reports that GPU, not the CPU-AOT stand-in target list."""
    gpu = _gpu()
    be = _rtx()
    dev = be.device()
    assert dev["type"] == "cuda" and dev["name"] == gpu["name"]
    assert be.supports("fp32") == (True, "")
