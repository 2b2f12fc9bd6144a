"""`workbench profile` end to end (in-process `main`, real models, ONNX Runtime CPU)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.cli import main
from workbench.records import load_record


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_has_p50_per_variant_and_files(sample, tmp_path, capsys):
    model = sample("digits_cnn.onnx")
    calib = sample("digits_calib.npz")
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "profile", str(model), "--precision", "fp32,fp16,int8", "--calib", str(calib),
                             "--batch", "16", "--iterations", "5", "--warmup", "1", "--layer-iterations", "2",
                             "--out", str(out), "--json", "--no-progress")
    assert code == 0, err
    entries = json.loads(stdout)
    assert [e["precision"] for e in entries] == ["fp32", "fp16", "int8"]
    for e in entries:
        assert e["status"] == "ok"
        assert e["p50_ms"] > 0 and e["iterations"] == 5 and e["batch"] == 16
        assert e["min_ms"] <= e["p50_ms"] <= e["p99_ms"]
        df = pd.read_csv(e["layers_csv"])
        assert len(df) == e["layers"] > 0
        assert {"layer", "onnx_node", "onnx_nodes", "time_ms", "share"} <= set(df.columns)
        rec = load_record(e["latency_json"])
        assert rec.stats["p50_ms"] == e["p50_ms"]
        assert e["coverage"]["flagged"] == (not 0.9 <= e["coverage"]["coverage"] <= 1.1)
    assert json.loads((out / "profile.json").read_text())["entries"] == entries


def test_text_output_with_data_file(sample, tmp_path, capsys):
    model = sample("digits_cnn.onnx")
    data = sample("digits_test.npz")
    code, stdout, _ = _run(capsys, "profile", str(model), "--data", str(data), "--batch", "8", "--iterations", "3",
                           "--warmup", "0", "--layer-iterations", "1", "--out", str(tmp_path / "o"), "--no-progress")
    assert code == 0
    assert "p50" in stdout and "digits_cnn-fp32" in stdout


@pytest.mark.parametrize("flag,value", [("--iterations", "0"), ("--iterations", "-5"), ("--warmup", "-1")])
def test_bad_counts_exit_2_one_line(sample, tmp_path, capsys, flag, value):
    model = sample("digits_cnn.onnx")
    with pytest.raises(SystemExit) as ex:
        main(["profile", str(model), flag, value, "--out", str(tmp_path)])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and flag in err


def test_unknown_backend_exit_2(sample, tmp_path, capsys):
    with pytest.raises(SystemExit) as ex:
        main(["profile", str(sample("digits_cnn.onnx")), "--backend", "nope", "--out", str(tmp_path)])
    assert ex.value.code == 2
    assert "--backend" in capsys.readouterr().err


def test_missing_tensorrt_names_what_to_install(sample, tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401  (only its absence matters here)
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    code, _, err = _run(capsys, "profile", str(sample("digits_cnn.onnx")), "--backend", "tensorrt", "--out", str(tmp_path))
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "pip install" in err and "tensorrt" in err


def test_missing_cuda_provider_names_what_to_install(sample, tmp_path, capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    code, _, err = _run(capsys, "profile", str(sample("digits_cnn.onnx")), "--backend", "onnxruntime-cuda",
                        "--out", str(tmp_path))
    assert code == 2 and "onnxruntime-gpu" in err


def test_int8_without_calib_is_a_clear_error(sample, tmp_path, capsys):
    code, _, err = _run(capsys, "profile", str(sample("digits_cnn.onnx")), "--precision", "int8", "--out", str(tmp_path))
    assert code == 2 and "--calib" in err


def test_unsupported_precision_is_skipped_with_reason(sample, tmp_path, capsys):
    code, stdout, _ = _run(capsys, "profile", str(sample("digits_cnn.onnx")), "--precision", "fp32,bf16",
                           "--iterations", "2", "--warmup", "0", "--layer-iterations", "1",
                           "--out", str(tmp_path), "--json", "--no-progress")
    assert code == 0
    entries = json.loads(stdout)
    assert entries[1]["precision"] == "bf16" and entries[1]["status"] == "skipped" and entries[1]["reason"]
