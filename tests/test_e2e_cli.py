"""End-to-end QA of the CLI and the main public calls on the real sample models.

Regression tests for bugs found in the QA pass: every user mistake exits 2 with one stderr line,
outputs never overwrite the source model, output paths that cannot be written are user errors,
JSON is strict, and results make sense (int8 accuracy near fp32, shares sum to 1, ordered stats).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import sha256
from workbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "workbench"
CMD = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "workbench"]


def strict_json(text: str):
    """json.loads that refuses NaN / Infinity literals (not valid JSON)."""
    def bad(const):
        raise ValueError(f"non-standard JSON constant {const}")
    return json.loads(text, parse_constant=bad)


def wb(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit code, stdout, stderr)."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture
def digits(sample):
    """(model path, test .npz, calib .npz) copied into tmp_path, and the model's hash."""
    m = sample("digits_cnn.onnx")
    return m, sample("digits_test.npz"), sample("digits_calib.npz"), sha256(m)


# ------------------------------------------------------------------------ the source model is never written
def test_view_html_refuses_to_overwrite_the_source(capsys, digits):
    m, _, _, h = digits
    rc, _, err = wb(capsys, "view", m, "--html", m)
    assert_user_error(rc, err, "refusing to overwrite the source model")
    assert sha256(m) == h
    rc, out, _ = wb(capsys, "view", m, "--html", m.parent / "page.html")
    assert rc == 0 and (m.parent / "page.html").read_text().startswith("<!doctype html>")


@pytest.mark.parametrize("cmd", ["surgery", "view", "build", "profile"])
def test_unwritable_output_paths_are_user_errors(capsys, digits, tmp_path, cmd):
    m, _, _, h = digits
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    cases = {
        "surgery": [["surgery", m, "--cleanup", "--out", blocker / "new.onnx"],
                    ["surgery", m, "--cleanup", "--out", folder]],
        "view": [["view", m, "--html", blocker / "x.html"], ["view", m, "--html", folder]],
        "build": [["build", m, "--out", blocker, "--no-progress"], ["build", m, "--out", m, "--no-progress"]],
        "profile": [["profile", m, "--out", blocker, "--no-progress", "--iterations", "1"]],
    }[cmd]
    for args in cases:
        rc, _, err = wb(capsys, *args)
        assert_user_error(rc, err)
        assert "internal error" not in err and ("cannot" in err or "refusing" in err), err
    assert blocker.read_text() == "x" and sha256(m) == h


def test_debug_shows_the_traceback_of_an_output_error(capsys, digits, tmp_path):
    m, _, _, _ = digits
    (tmp_path / "f").write_text("")
    rc, _, err = wb(capsys, "--debug", "surgery", m, "--cleanup", "--out", tmp_path / "f" / "x.onnx")
    assert rc == 2 and "Traceback" in err and "OutputError" in err


def test_output_error_is_a_workbench_error_and_an_oserror(tmp_path):
    from workbench import OutputError, WorkbenchError
    from workbench.fsutil import atomic_write_text

    with pytest.raises(OutputError) as e:
        atomic_write_text(tmp_path, "x")
    assert isinstance(e.value, WorkbenchError) and isinstance(e.value, OSError)
    assert not [p for p in tmp_path.iterdir()]  # no temp file left behind


# ------------------------------------------------------------------------ shapes, data, precision arguments
def test_onnxruntime_backend_rejects_shapes_that_do_not_fit(capsys, digits, tmp_path):
    from workbench import ShapeSpecError, get_backend, load
    from workbench.variant import Variant

    m, _, _, _ = digits
    v = Variant.of(load(m), "fp32")
    for bad in ("foo:1x1x8x8", "image:4x3x8x8", "image:1x1x8x8/2x1x8x8/4x2x8x8"):
        with pytest.raises(ShapeSpecError):
            get_backend("onnxruntime").build(v, bad)
        rc, _, err = wb(capsys, "build", m, "--shapes", bad, "--out", tmp_path / "b", "--no-progress")
        assert rc == 2 and "--shapes" in err and "Traceback" not in err
    assert get_backend("onnxruntime").build(v, "image:4x1x8x8").run(
        {"image": np.zeros((4, 1, 8, 8), np.float32)})["logits"].shape == (4, 10)
    rc, _, err = wb(capsys, "profile", m, "--shapes", "image:3x3x8x8", "--out", tmp_path / "p", "--no-progress")
    assert_user_error(rc, err, "model fixes it to 1")


def test_not_an_npz_file_message(capsys, digits):
    m, _, _, _ = digits
    rc, _, err = wb(capsys, "run", m, "--data", m)
    assert_user_error(rc, err, "not a readable .npz file", "not a zip archive")
    assert "allow_pickle" not in err  # numpy's advice to unpickle must not reach the user


def test_calibration_npz_may_hold_labels(capsys, digits, tmp_path):
    m, test, _, _ = digits
    rc, out, err = wb(capsys, "build", m, "--precision", "int8", "--calib", test, "--out", tmp_path / "b",
                      "--no-progress")
    assert rc == 0, err
    doc = strict_json((tmp_path / "b" / "build.json").read_text())
    assert [v["status"] for v in doc["variants"]] == ["ok"]


def test_compare_argument_errors(capsys, digits, tmp_path):
    m, test, _, _ = digits
    rc, _, err = wb(capsys, "compare", m, "--precision", "fp16,int8")
    assert_user_error(rc, err, "--calib")
    rc, _, err = wb(capsys, "compare", m, "--precision", "fp16", "--data", test, "--layerwise", "--threshold", "2",
                    "--json")
    assert_user_error(rc, err, "cosine threshold")
    rc, _, err = wb(capsys, "compare", m, "--precision", "fp16", "--data", test, "--labels", "nope", "--json")
    assert_user_error(rc, err, "label key 'nope'")
    rc, _, err = wb(capsys, "compare", m, "--precision", "fp9", "--data", test)
    assert_user_error(rc, err, "unknown precision")
    nan = tmp_path / "nan.npz"
    x = np.load(test)["image"][:8].copy()
    x[0, 0, 0, 0] = np.nan
    np.savez(nan, image=x)
    rc, _, err = wb(capsys, "compare", m, "--precision", "fp16", "--data", nan, "--json")
    assert_user_error(rc, err, "NaN/Inf")
    assert "before calibrating" not in err  # fp16 does not calibrate


def test_mixed_precision_target_out_of_range():
    from workbench import UsageError
    from workbench.compare.sensitivity import Target

    for bad in ("cosine>=2", "top1>=98", "top1_agreement>1.5"):
        with pytest.raises(UsageError, match="cannot be met"):
            Target.parse(bad)
    assert Target.parse("cosine>=0.999").value == 0.999 and Target.parse("snr_db>=40").value == 40


def test_run_time_error_is_one_line_without_ort_log(digits, tmp_path):
    """A model that fails at run time: ORT's own log line must not precede the error line."""
    m, _, _, _ = digits
    bad = tmp_path / "bad.onnx"
    # Validation does not run the model, so a channel count that breaks Conv is accepted by surgery.
    r = subprocess.run(CMD + ["surgery", str(m), "--set-shape", "image:4x3x8x8", "--out", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(CMD + ["run", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("workbench run: error: ONNX Runtime failed"), r.stderr


# ------------------------------------------------------------------------ failures keep earlier outputs
def test_failed_variant_keeps_earlier_outputs(capsys, digits, tmp_path):
    m, _, _, h = digits
    out = tmp_path / "b"
    rc, _, err = wb(capsys, "build", m, "--precision", "fp32,int8", "--out", out, "--no-progress")
    assert rc == 2 and "int8" in err and len(err.strip().splitlines()) == 1
    doc = strict_json((out / "build.json").read_text())
    assert [v["status"] for v in doc["variants"]] == ["ok", "failed"]
    assert (out / "digits_cnn-fp32.onnx").is_file() and not (out / "digits_cnn-int8.onnx").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # a rejected surgery edit writes nothing
    new = tmp_path / "edited.onnx"
    rc, _, err = wb(capsys, "surgery", m, "--cleanup", "--remove", "no-such-node", "--out", new)
    assert_user_error(rc, err, "no node named")
    assert not new.exists() and sha256(m) == h


# ------------------------------------------------------------------------ strict JSON with the documented keys
def test_json_outputs_are_strict_and_complete(capsys, digits, tmp_path):
    m, test, calib, h = digits
    rc, out, _ = wb(capsys, "inspect", m, "--json")  # dynamic batch: counted per sample (batch 1 assumed)
    info = strict_json(out)
    assert rc == 0 and info["flops_unknown_nodes"] == 0 and info["flops"] > 0
    assert info["per_sample"] and info["assumed_batch"] == {"image": "batch"}
    assert {"name", "hash", "nodes", "ops", "params", "inputs", "outputs", "macs", "flops", "warnings"} <= set(info)
    rc, out, _ = wb(capsys, "run", m, "--data", test, "--batch", "4", "--json")
    r = strict_json(out)
    assert r["inputs"]["image"]["shape"] == [4, 1, 8, 8] and r["outputs"][0]["shape"] == [4, 10]
    # fp32 vs fp32: SNR is infinite -> written as a string, not an Infinity literal
    rc, out, _ = wb(capsys, "compare", m, "--precision", "fp32", "--data", test, "--limit", "32", "--json")
    c = strict_json(out)
    assert rc == 0 and {"reference", "samples", "variants", "skipped"} <= set(c)
    assert c["variants"]["digits_cnn-fp32"]["outputs"]["logits"]["max_abs"] == 0
    rc, out, err = wb(capsys, "profile", m, "--precision", "fp32,int8", "--calib", calib, "--data", test,
                      "--batch", "8", "--iterations", "20", "--warmup", "2", "--layer-iterations", "3",
                      "--out", tmp_path / "p", "--no-progress", "--json")
    assert rc == 0, err
    entries = strict_json(out)
    assert [e["precision"] for e in entries] == ["fp32", "int8"]
    for e in entries:
        assert e["min_ms"] <= e["p50_ms"] <= e["p90_ms"] <= e["p99_ms"] <= e["max_ms"]
        assert e["batch"] == 8 and e["iterations"] == 20
        layers = __import__("pandas").read_csv(e["layers_csv"])
        assert abs(layers["share"].sum() - 1) < 1e-6 and (layers["time_ms"] >= 0).all()
        lat = strict_json(Path(e["latency_json"]).read_text())
        assert len(lat["times_ms"]) == 20
    assert strict_json((tmp_path / "p" / "profile.json").read_text())["entries"] == entries
    assert sha256(m) == h


# ------------------------------------------------------------------------ results make sense
def test_int8_accuracy_near_fp32(digits):
    from workbench import compare_outputs

    m, test, calib, _ = digits
    cmp = compare_outputs(m, ["fp16", "int8"], data=test, labels="label", calib=calib, progress=False)
    s = cmp.summary().set_index("precision")
    assert s.loc["fp32", "top1"] > 0.95
    assert abs(s.loc["int8", "top1"] - s.loc["fp32", "top1"]) <= 0.02
    assert abs(s.loc["fp16", "top1"] - s.loc["fp32", "top1"]) <= 0.005
    assert s.loc["int8", "cosine_min"] > 0.999 and s.loc["fp16", "snr_db_min"] > s.loc["int8", "snr_db_min"]


def test_fp16_with_every_node_kept_is_exact(digits):
    """Graph outputs of fp32-kept producers stay fp32 without an fp16 round trip."""
    import workbench as wb_
    from workbench.backends import get_backend
    from workbench.precision import make_variant
    from workbench.variant import Variant

    m_path, test, _, _ = digits
    m = wb_.load(m_path)
    names = [n.name for n in m.proto.graph.node]
    v = make_variant(m, "fp16", keep_nodes=names, progress=False)
    assert not [n for n in v.model.proto.graph.node if n.op_type == "Cast"]
    assert v.recipe["round_trip_casts_removed"]
    x = {"image": np.load(test)["image"][:64]}
    ort = get_backend("onnxruntime")
    ref = ort.build(Variant.of(m, "fp32")).run(x)["logits"]
    got = ort.build(v).run(x)["logits"]
    assert got.dtype == np.float32 and np.array_equal(ref, got)
    # the plain fp16 variant still lowers the convolutions and stays close
    v16 = make_variant(m, "fp16", progress=False)
    low = ort.build(v16).run(x)["logits"]
    assert 0 < np.abs(low - ref).max() < 0.05


@pytest.mark.rtx
def test_rtx_build_from_the_cli(capsys, digits, tmp_path):
    pytest.importorskip("tensorrt_rtx")
    m, _, _, h = digits
    out = tmp_path / "rtx"
    rc, _, err = wb(capsys, "build", m, "--backend", "tensorrt-rtx", "--precision", "fp32,fp16", "--shapes",
                    "image:1x1x8x8/8x1x8x8/32x1x8x8", "--out", out, "--no-progress", "--json")
    assert rc == 0, err
    doc = strict_json((out / "build.json").read_text())
    assert [v["status"] for v in doc["variants"]] == ["ok", "ok"]
    for v in doc["variants"]:
        assert (out / v["files"]["engine"]).stat().st_size == v["record"]["engine_bytes"] > 0
    rc, _, err = wb(capsys, "build", m, "--backend", "tensorrt-rtx", "--shapes", "foo:1x1x8x8", "--out", out,
                    "--no-progress")
    assert rc == 2 and "foo" in err
    assert sha256(m) == h


def test_huge_synthetic_shape_is_a_user_error(capsys, digits):
    m, _, _, _ = digits
    rc, _, err = wb(capsys, "run", m, "--shapes", "image:1000000000000x1x8x8")
    assert_user_error(rc, err, "not enough memory")


def test_json_writers_never_emit_nan_literals(tmp_path):
    from workbench.fsutil import atomic_write_json, dumps_json

    obj = {"a": float("nan"), "b": [float("inf"), -np.inf, np.float32(1.5)], "c": np.float64("nan")}
    assert strict_json(dumps_json(obj)) == {"a": None, "b": ["inf", "-inf", 1.5], "c": None}
    assert strict_json(atomic_write_json(tmp_path / "x.json", obj).read_text())["b"][0] == "inf"


def test_keep_op_types_typo_is_a_user_error(digits):
    from workbench import UsageError, load
    from workbench.precision import make_variant

    m = load(digits[0])
    with pytest.raises(UsageError, match="Conv"):
        make_variant(m, "fp16", keep_op_types=["conv"], progress=False)
    v = make_variant(m, "fp16", keep_op_types=(t for t in ["Gemm"]), progress=False)  # a generator is fine
    assert v.recipe["keep_op_types"] == ["Gemm"] and len(v.recipe["kept_high_precision"]) == 2


def test_inspect_text_says_totals_are_partial(capsys, digits, sample):
    m, _, _, _ = digits
    rc, out, _ = wb(capsys, "inspect", m)  # dynamic batch only: per sample, batch 1 assumed and said
    flops = next(ln for ln in out.splitlines() if ln.startswith("FLOPs"))
    assert rc == 0 and ">=" not in flops and "batch        1 assumed for image" in out
    # batch and sequence dynamic: the sequence stays unknown, so the totals are partial and say so
    rc, out, _ = wb(capsys, "inspect", sample("transformer_block.onnx"))
    flops = next(ln for ln in out.splitlines() if ln.startswith("FLOPs"))
    assert rc == 0 and flops.startswith("FLOPs        >= 0") and "16 Conv/ConvTranspose/Gemm/MatMul node(s)" in flops
    rc, out, _ = wb(capsys, "inspect", m, "--shapes", "image:1x1x8x8")
    flops = next(ln for ln in out.splitlines() if ln.startswith("FLOPs"))
    assert ">=" not in flops and "unknown" not in out


def test_profile_failure_keeps_finished_entries(capsys, digits, tmp_path):
    m, _, _, _ = digits
    out = tmp_path / "p"
    bad_calib = tmp_path / "few.npz"
    np.savez(bad_calib, image=np.zeros((2, 1, 8, 8), np.float32))  # too few samples: int8 fails after fp32
    rc, _, err = wb(capsys, "profile", m, "--precision", "fp32,int8", "--calib", bad_calib, "--min-calib-samples", "16",
                    "--iterations", "3",
                    "--warmup", "0", "--layer-iterations", "1", "--out", out, "--no-progress")
    assert_user_error(rc, err, "sample")
    doc = strict_json((out / "profile.json").read_text())
    assert [e["precision"] for e in doc["entries"]] == ["fp32"]
    assert Path(doc["entries"][0]["layers_csv"]).is_file()


def test_overlay_ignores_non_finite_values(digits, tmp_path):
    pytest.importorskip("anywidget")
    from workbench import UsageError
    from workbench.widgets.graph_view import GraphView

    view = GraphView(digits[0])
    nodes = [k for k in view.payload.name_to_id if not k.startswith(("input:", "output:"))]
    lg = view.set_overlay({nodes[0]: float("nan"), nodes[1]: 1.0, nodes[2]: float("inf"), nodes[3]: 3.0}, label="ms")
    assert (lg["lo"], lg["hi"]) == (1.0, 3.0)
    strict_json(json.dumps(view._view))  # what the browser receives: no Infinity / NaN literals
    page = view.to_html(tmp_path / "v.html")
    data = page.split('id="wb-graph-data">', 1)[1].split("</script>", 1)[0]
    assert strict_json(data)["graph"]["legend"]["hi"] == 3.0
    with pytest.raises(UsageError, match="finite"):
        view.set_overlay({nodes[1]: 1.0}, label="ms", thresholds=[0.5, float("inf")])


def test_external_data_of_the_source_is_never_overwritten(capsys, digits, tmp_path):
    import onnx

    d = tmp_path / "ext"
    d.mkdir()
    m = d / "m.onnx"
    onnx.save_model(onnx.load(str(digits[0])), str(m), save_as_external_data=True, location="m.data",
                    size_threshold=1024)
    data = d / "m.data"
    before = (sha256(m), sha256(data))
    for args in (["view", m, "--html", data], ["surgery", m, "--cleanup", "--out", data],
                 ["surgery", m, "--cleanup", "--out", d / "new.onnx", "--script", data]):
        rc, _, err = wb(capsys, *args)
        assert_user_error(rc, err, "refusing to overwrite", "external data")
    assert (sha256(m), sha256(data)) == before and sorted(p.name for p in d.iterdir()) == ["m.data", "m.onnx"]
    rc, _, err = wb(capsys, "surgery", m, "--cleanup", "--out", d / "new.onnx")
    assert rc == 0, err
    assert (sha256(m), sha256(data)) == before


def test_report_checks_outputs_and_calibration_before_running(capsys, digits, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    rc, _, err = wb(capsys, "report", str(digits[0]), "--precision", "fp32", "--out", str(blocker / "r.html"))
    assert_user_error(rc, err, "it is a file")
    rc, _, err = wb(capsys, "demo", "--out", str(blocker))
    assert_user_error(rc, err, "it is a file")
    rc, _, err = wb(capsys, "report", str(digits[0]), "--precision", "int8", "--out", str(tmp_path / "r.html"))
    assert_user_error(rc, err, "--calib")
    assert not (tmp_path / "r.html").exists()
