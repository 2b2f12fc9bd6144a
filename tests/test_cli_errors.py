"""The CLI on bad input: exit 2, exactly one line on stderr, no traceback (unless --debug)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "workbench"
CMD = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "workbench.cli"]


def cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # warnings must not leak as extra stderr lines
    return subprocess.run(CMD + [str(a) for a in args], capture_output=True, text=True, timeout=120, env=env)


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip("\n").splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def _external(light, tmp_path) -> Path:
    m = onnx.load(str(light("inception_v1")))
    m.graph.initializer.append(numpy_helper.from_array(np.ones((64, 64), np.float32), "extra_w"))
    d = tmp_path / "ext"
    d.mkdir()
    onnx.save_model(m, str(d / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=1024)
    return d / "m.onnx"


def _bad_model(kind: str, light, tmp_path) -> Path:
    p = tmp_path / f"{kind}.onnx"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "truncated":
        data = light("resnet50").read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        p.write_text("this is a text file, not a model\n")
    elif kind == "missing":
        return tmp_path / "does-not-exist.onnx"
    elif kind == "missing-external":
        p = _external(light, tmp_path)
        (p.parent / "m.data").unlink()
    elif kind == "traversal":
        p = _external(light, tmp_path)
        (tmp_path / "m.data").write_bytes((p.parent / "m.data").read_bytes())
        m = onnx.load(str(p), load_external_data=False)
        for t in m.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = "../m.data"
        p.write_bytes(m.SerializeToString())
    return p


@pytest.mark.parametrize("command", ["inspect", "run"])
@pytest.mark.parametrize("kind, needle", [("empty", "empty"), ("truncated", "not a valid ONNX"),
                                          ("text", "ONNX"), ("missing", "not found"),
                                          ("missing-external", "not found"), ("traversal", "..")])
def test_bad_model_files(light, tmp_path, command, kind, needle):
    r = cli(command, _bad_model(kind, light, tmp_path))
    assert_one_line_error(r, f"workbench {command}: error:", needle)
    assert r.stdout == ""


def test_debug_shows_traceback(light, tmp_path):
    r = cli("--debug", "inspect", _bad_model("empty", light, tmp_path))
    assert r.returncode == 2 and "Traceback" in r.stderr and "ModelLoadError" in r.stderr
    r = cli("inspect", _bad_model("empty", light, tmp_path), "--debug")
    assert r.returncode == 2 and "Traceback" in r.stderr


@pytest.mark.parametrize("arrays, needle", [
    ({"wrong_name": np.zeros((1, 3, 224, 224), np.float32)}, "no array for model input"),
    ({"data_0": np.zeros((1, 3, 100, 224), np.float32)}, "dim 2 must be 224"),
    ({"data_0": np.zeros((1, 3, 224), np.float32)}, "rank"),
    ({"data_0": np.zeros((1, 3, 224, 224), np.int64)}, "dtype int64"),
    ({"data_0": np.full((1, 3, 224, 224), "x")}, "dtype <U1"),
])
def test_bad_npz(light, tmp_path, arrays, needle):
    model = light("squeezenet")
    npz = tmp_path / "bad.npz"
    np.savez(npz, **arrays)
    assert_one_line_error(cli("run", model, "--data", npz), needle)


def test_object_npz_and_not_npz(light, tmp_path):
    model = light("squeezenet")
    npz = tmp_path / "obj.npz"
    np.savez(npz, data_0=np.array([{"a": 1}], dtype=object))
    assert_one_line_error(cli("run", model, "--data", npz), "refusing to unpickle")
    txt = tmp_path / "t.npz"
    txt.write_text("nope")
    assert_one_line_error(cli("run", model, "--data", txt), "not a readable")


@pytest.mark.parametrize("args, needle", [
    (["inspect", "{m}", "--bogus"], "unrecognized arguments"),
    (["run", "{m}", "--batch", "0"], "positive integer"),
    (["run", "{m}", "--shapes", "data_0:1x3"], "rank"),
    (["inspect", "{m}", "--shapes", "data_0:1xZ"], "bad dims"),
    (["nosuchcommand"], "invalid choice"),
])
def test_usage_errors(light, args, needle):
    m = light("squeezenet")
    r = cli(*[a.replace("{m}", str(m)) for a in args])
    assert_one_line_error(r, needle)


def test_success_exits_zero(light):
    m = light("squeezenet")
    r = cli("inspect", m, "--json")
    assert r.returncode == 0 and r.stderr == ""
    assert json.loads(r.stdout)["nodes"] > 0
    r = cli("run", m, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["outputs"][0]["nan"] == 0


def test_run_sample_npz_with_labels(sample):
    model, npz = sample("digits_cnn.onnx"), sample("digits_test.npz")
    r = cli("run", model, "--data", npz, "--batch", "8", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["inputs"]["image"]["shape"] == [8, 1, 8, 8]
    assert out["outputs"][0]["name"] == "logits" and out["outputs"][0]["shape"] == [8, 10]
