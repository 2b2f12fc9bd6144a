"""`workbench build` and `build_variants`: build.json, skipped combinations, failures, exit codes."""
from __future__ import annotations

import hashlib
import json

import pytest

from workbench.builds import FRAME_COLUMNS, build_variants
from workbench.cli import main
from workbench.data import synthetic_inputs
from workbench.errors import UsageError


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_onnxruntime_build_skips_unsupported_with_reasons(tmp_path, sample, capsys):
    model = sample("digits_cnn.onnx")
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "build", str(model), "--backend", "onnxruntime", "--precision", "fp32,bf16,fp8",
                           "--out", str(out), "--no-progress", "--json")
    assert rc == 0, err
    printed = json.loads(stdout)
    on_disk = json.loads((out / "build.json").read_text())
    assert printed == on_disk
    assert on_disk["kind"] == "build_set" and on_disk["backend"] == "onnxruntime"
    by = {v["precision"]: v for v in on_disk["variants"]}
    assert list(by) == ["fp32", "bf16", "fp8"]
    assert by["fp32"]["status"] == "ok" and (out / by["fp32"]["files"]["onnx"]).is_file()
    assert "engine" not in by["fp32"]["files"]  # ONNX Runtime has no serialized engine
    for p in ("bf16", "fp8"):
        assert by[p]["status"] == "skipped" and by[p]["reason"]
        assert by[p]["files"] == {}
    assert by["fp32"]["record"]["variant_hash"] and by["fp32"]["record"]["kind"] == "build"


def test_tensorrt_rtx_build_writes_engines(tmp_path, sample, capsys):
    pytest.importorskip("tensorrt_rtx")
    model = sample("digits_cnn.onnx")
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "build", str(model), "--backend", "tensorrt-rtx", "--precision", "fp32,fp16",
                           "--shapes", "image:1x1x8x8/8x1x8x8/32x1x8x8", "--workspace-mb", "64", "--opt-level", "1",
                           "--out", str(out), "--no-progress")
    assert rc == 0, err
    assert "digits_cnn-fp16" in stdout and "build.json" in stdout
    doc = json.loads((out / "build.json").read_text())
    for v in doc["variants"]:
        assert v["status"] == "ok"
        engine = out / v["files"]["engine"]
        assert hashlib.sha256(engine.read_bytes()).hexdigest() == v["record"]["engine_sha256"]
        assert v["record"]["options"]["applied"]["builder_optimization_level"] == 1
        assert v["record"]["options"]["workspace_mb"] == 64
        assert v["record"]["shapes"]["image"]["max"] == [32, 1, 8, 8]


def test_bad_precision_is_one_line_exit_2(tmp_path, sample, capsys):
    rc, _, err = _run(capsys, "build", str(sample("digits_cnn.onnx")), "--precision", "fp33", "--out", str(tmp_path))
    assert rc == 2
    assert err.count("\n") == 1 and "fp33" in err and "fp16" in err


def test_failed_recipe_keeps_others_and_exits_2(tmp_path, sample, capsys):
    model = sample("digits_cnn.onnx")
    out = tmp_path / "out"
    # int8 without calibration data is a user error; fp32 still builds
    rc, _, err = _run(capsys, "build", str(model), "--precision", "fp32,int8", "--out", str(out), "--no-progress")
    assert rc == 2 and "int8" in err
    doc = json.loads((out / "build.json").read_text())
    assert [v["status"] for v in doc["variants"]] == ["ok", "failed"]
    assert doc["variants"][1]["reason"]
    assert (out / "digits_cnn-fp32.onnx").is_file()


def test_missing_tensorrt_is_exit_2_with_install_hint(tmp_path, sample, capsys):
    from workbench.backends import get_backend

    if get_backend("tensorrt").available()[0]:
        pytest.skip("TensorRT and a GPU are available here")
    rc, _, err = _run(capsys, "build", str(sample("digits_cnn.onnx")), "--backend", "tensorrt", "--out", str(tmp_path))
    assert rc == 2 and ("pip install" in err or "GPU" in err)


def test_build_variants_frame_and_order(tmp_path, sample):
    bs = build_variants(sample("digits_cnn.onnx"), ["fp32", "tf32", "fp8"], progress=False)
    df = bs.to_frame()
    assert list(df.columns) == FRAME_COLUMNS
    assert df["precision"].tolist() == ["fp32", "tf32", "fp8"]
    assert df["status"].tolist() == ["ok", "ok", "skipped"]
    out = bs["fp32"].engine.run(synthetic_inputs(bs.model, "image:2x1x8x8"))
    assert out["logits"].shape == (2, 10)
    assert bs["fp8"].engine is None and bs["fp8"].reason
    with pytest.raises(UsageError):
        build_variants(sample("digits_cnn.onnx"), "fp32,nope")
