"""``workbench surgery``: edits, one-line summary, --json diff summary, --script, exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort

import workbench as wb
from workbench.cli import main
from workbench.data import synthetic_inputs

from conftest import sha256


def _run(model: wb.Model, feeds):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.to_bytes(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def test_fold_cleanup_toposort_light_model(light, tmp_path, capsys):
    src = light("squeezenet")
    h0 = sha256(src)
    out = tmp_path / "sq.folded.onnx"
    rc = main(["surgery", str(src), "--fold-constants", "--cleanup", "--toposort", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("surgery: light_squeezenet.onnx 105 -> ")
    assert "(fold_constants, cleanup, toposort)" in lines[0]
    assert sha256(src) == h0
    a, b = wb.load(src), wb.load(out)
    assert len(b.graph.node) < len(a.graph.node)
    feeds = synthetic_inputs(a)
    np.testing.assert_allclose(_run(b, feeds)[0], _run(a, feeds)[0], rtol=1e-5, atol=1e-6)


def test_json_summary_and_script(sample, tmp_path, capsys):
    src = sample("digits_cnn.onnx")
    out, script = tmp_path / "d.onnx", tmp_path / "replay.py"
    rc = main(["surgery", str(src), "--set-shape", "image:4x1x8x8", "--remove", "/classifier/relu/Relu",
               "--cleanup", "--json", "--script", str(script), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    j = json.loads(captured.out)
    assert j["nodes_before"] == 12 and j["nodes_after"] == 11
    assert [e["op"] for e in j["edits"]] == ["set_input", "remove_node", "cleanup"]
    assert j["diff"]["removed node"] == 1 and j["diff"]["shape input"] == 1
    assert wb.load(out).hash == j["hash"]
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == j["hash"]


def test_extract(sample, tmp_path, capsys):
    src = sample("digits_cnn.onnx")
    m = wb.load(src)
    a = next(n for n in m.graph.node if n.name == "/features/pool/MaxPool").output[0]
    out = tmp_path / "sub.onnx"
    assert main(["surgery", str(src), "--extract", f"{a}:logits", "--out", str(out)]) == 0
    sub = wb.load(out)
    assert sub.input_names == [a] and sub.output_names == ["logits"]


def test_exit_codes(sample, tmp_path, capsys):
    src = sample("digits_cnn.onnx")
    h0 = sha256(src)
    out = tmp_path / "o.onnx"
    cases = [
        ["--set-shape", "image:1x1x8.5x8"],             # bad dims
        ["--set-shape", "1x1x8x8"],                     # no NAME:
        ["--extract", "a:b:c"],                         # bad extract syntax
        ["--remove", "no_such_node"],                   # unknown node
        ["--set-shape", "image:1x1x8"],                 # wrong rank: rejected by validation
        [],                                             # no edit
    ]
    for extra in cases:
        rc = main(["surgery", str(src), *extra, "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2, (extra, err)
        assert len(err.strip().splitlines()) == 1 and "error" in err, (extra, err)
        assert not out.exists()
    rc = main(["surgery", str(src), "--cleanup", "--out", str(src)])
    err = capsys.readouterr().err
    assert rc == 2 and "source model" in err and len(err.strip().splitlines()) == 1
    assert sha256(src) == h0
