"""Safety contract (#16), native logs as a library facility (``workbench.logs``).

The library's build and run entry points hold back what native libraries write to file descriptor 2
and attach it: to the build record (``BuildRecord.native_log``) on success, to the ``WorkbenchError``
(``error.native_log`` and a traceback note) on failure. The real native writer here is ONNX Runtime
with its process-wide default logger at VERBOSE (``set_default_logger_severity(0)``: what a user who
turns on ORT logging, or cuDNN on a GPU, produces): its C++ lines go to fd 2 from inside ORT. Each case
runs in a fresh interpreter, whose real stderr (fd 2) is checked to hold none of those lines.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench import logs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _models(d):
    ok = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "ok",
                           [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    # builds and starts, then fails at run time: 4 values cannot be reshaped to [3, -1]
    bad = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "bad",
                            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                            [numpy_helper.from_array(np.array([3, -1], np.int64), "shape")])
    for name, g in (("ok", ok), ("bad", bad)):
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(d / f"{name}.onnx"))


def _py(d, body: str, env_extra=None):
    env = {**os.environ, "PYTHONPATH": ROOT, **(env_extra or {})}
    code = "import json, onnxruntime\nonnxruntime.set_default_logger_severity(0)\n" + textwrap.dedent(body)
    r = subprocess.run([sys.executable, "-c", code], cwd=d, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def test_build_keeps_native_lines_in_the_record_not_on_stderr(tmp_path):
    _models(tmp_path)
    out, err = _py(tmp_path, """
        from workbench.builds import build_variants
        from workbench import logs
        bs = build_variants("ok.onnx", "fp32", "onnxruntime", progress=False)
        rec = bs.results[0].record
        print(json.dumps({"status": rec.status, "lines": rec.native_log, "last": logs.last(),
                          "json": rec.to_json()["native_log"]}))
    """)
    assert out["status"] == "ok"
    assert any("BFCArena" in ln for ln in out["lines"]), out["lines"][:5]
    assert out["json"] == out["lines"] and not any("\x1b[" in ln for ln in out["lines"])
    assert "[V:onnxruntime" not in err and "[I:onnxruntime" not in err, err[:1000]


def test_error_carries_the_native_log_and_a_note(tmp_path):
    _models(tmp_path)
    out, err = _py(tmp_path, """
        import traceback
        import workbench as wb
        try:
            wb.run_model("bad.onnx", shapes="x:1x4")
            print(json.dumps({"raised": False}))
        except wb.WorkbenchError as e:
            print(json.dumps({"raised": True, "type": type(e).__name__, "msg": str(e), "lines": list(e.native_log),
                              "notes": getattr(e, "__notes__", []),
                              "tb": "".join(traceback.format_exception(e))[-400:]}))
    """)
    assert out["raised"] and out["type"] == "RunError", out
    assert "native" not in out["msg"]  # the message itself is unchanged (the CLI prints it as its one line)
    assert any("BFCArena" in ln for ln in out["lines"]), out["lines"]  # ORT's own lines, stamps removed
    assert out["notes"] == [f"[{len(out['lines'])} native log lines captured: see the exception's .native_log]"]
    assert "native log lines captured" in out["tb"]  # shown under the traceback in a notebook
    assert "[V:onnxruntime" not in err and "[I:onnxruntime" not in err, err[:1000]


def test_show_lets_native_lines_through(tmp_path):
    _models(tmp_path)
    out, err = _py(tmp_path, """
        from workbench.builds import build_variants
        bs = build_variants("ok.onnx", "fp32", "onnxruntime", progress=False)
        print(json.dumps({"lines": bs.results[0].record.native_log}))
    """, {"WORKBENCH_NATIVE_LOG": "show"})
    assert out["lines"] == [] and "onnxruntime" in err


def test_nested_captures_and_fd2_restored(capfd):
    """In-process: nested captures see their own part, fd 2 is restored after, and an error gets the
    outer (longer) log."""
    from workbench.errors import DataError

    with logs.native_log() as outer:
        os.write(2, b"\x1b[31mfirst native line\x1b[0m\n")
        with pytest.raises(DataError) as ei:
            with logs.native_log() as inner:
                os.write(2, b"2026-11-29 12:00:00.000 [W:onnxruntime:, x.cc:1 F] second\n")
                raise DataError("bad")
        assert outer.so_far() == 2
    assert inner.lines == ["second"]
    assert outer.lines == ["first native line", "second"] and outer.count == 2
    assert list(ei.value.native_log) == ["second"]  # the inner capture attached what it saw
    os.write(2, b"after\n")
    captured = capfd.readouterr().err
    assert captured == "after\n"
    assert logs.last() == ["first native line", "second"]


def test_many_lines_are_bounded():
    with logs.native_log() as nl:
        os.write(2, b"".join(b"line %d\n" % i for i in range(5000)))
    assert nl.count == 5000 and len(nl.lines) == logs.MAX_LINES + 1
    assert nl.lines[0] == "line 0" and nl.lines[-1] == "line 4999" and "left out" in nl.lines[logs.MAX_LINES // 2]


def test_every_entry_point_captures():
    import importlib

    for spec in logs.ENTRY_POINTS:
        mod, name = spec.split(":")
        fn = getattr(importlib.import_module(mod), name)
        assert getattr(fn, "captures_native_log", False), f"{spec} does not run inside workbench.logs.native_log"


def test_measure_and_compare_keep_stderr_clean(tmp_path):
    _models(tmp_path)
    out, err = _py(tmp_path, """
        import numpy as np
        import workbench as wb
        from workbench.builds import build_engine
        _, eng = build_engine("ok.onnx", "fp32", "onnxruntime", progress=False)
        lat = wb.measure_latency(eng, {"x": np.ones((64, 4), np.float32)}, warmup=1, iterations=3)
        cmp = wb.compare_outputs("ok.onnx", "fp16", data=[{"x": np.ones((256, 4), np.float32)}], progress=False)
        print(json.dumps({"samples": cmp.samples, "last": wb.logs.last() if hasattr(wb, "logs") else None}))
    """)
    assert out["samples"] == 256
    assert "[V:onnxruntime" not in err and "[I:onnxruntime" not in err, err[:1000]


def _kernel_run(d, show: bool):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cells = [f"import sys; sys.path.insert(0, {ROOT!r})\n"
             "import onnxruntime; onnxruntime.set_default_logger_severity(0)\n"
             f"from workbench import logs; logs.show({show})",
             "from workbench.builds import build_variants\n"
             "bs = build_variants('ok.onnx', 'fp32', 'onnxruntime', progress=False)\n"
             "print('record lines:', len(bs.results[0].record.native_log))",
             "import workbench as wb\nwb.run_model('bad.onnx', shapes='x:1x4')"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(d)}})
    client.execute()
    streams = ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in nb.cells]
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    return streams, errors


@pytest.mark.notebook
def test_in_a_real_kernel_native_lines_stay_out_of_the_cells_and_the_terminal(tmp_path, capfd):
    """What a notebook user sees: a real Jupyter kernel (nbclient). The kernel inherits this test's fd 2
    (capfd), so its terminal output is checked too. With the capture: no ORT line in any cell or on the
    kernel's terminal, the build record holds them, the failing cell shows the RunError and the note.
    With show(True) the same calls put ORT's lines on the kernel's fd 2 (so the native writer is real).
    Not covered: ORT's pool threads log "pthread_setaffinity_np succeed" (VERBOSE) when they start, which
    can be after the call returned; those lines are outside any capture."""
    _models(tmp_path)
    capfd.readouterr()
    streams, errors = _kernel_run(tmp_path, show=False)
    terminal = capfd.readouterr().err
    assert "record lines:" in streams[1] and "record lines: 0" not in streams[1], streams[1][:500]
    assert not any("onnxruntime" in s or "BFCArena" in s for s in streams), [s[:300] for s in streams]
    assert "BFCArena" not in terminal, terminal[-1000:]
    assert len(errors) == 1 and errors[0]["ename"] == "RunError"
    assert any("native log lines captured" in line for line in errors[0]["traceback"]), errors[0]["traceback"][-3:]
    streams, errors = _kernel_run(tmp_path, show=True)
    terminal = capfd.readouterr().err
    assert "BFCArena" in terminal and "record lines: 0" in streams[1]
