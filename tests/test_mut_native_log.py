"""Native log capture and summary (workbench.measure.native_log).

Real native output: ONNX Runtime's own C++ logger writing to the process's stderr file descriptor (a session
on a model with unused initializers logs "Removing initializer ..." at warning level, coloured, with its
timestamp/severity prefix). Other lines are in the formats ORT, cuDNN and Python's warnings print them;
expected groups and counts are worked out by hand.
"""
from __future__ import annotations

import io
import os
import sys

import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from workbench.measure.native_log import KNOWN, NativeLog, capture_native_output, summarize, summary_text

CUDNN = ("2026-11-29 10:00:00.123456789 [W:onnxruntime:, conv.cc:123 UpdateState] [cudnn_frontend] Error: No "
         "execution plans support the graph.")


def _ort_session_with_unused_initializers(severity=2):
    g = h.make_graph([h.make_node("Relu", ["x"], ["y"], name="r")], "g", [h.make_tensor_value_info("x", T.FLOAT, [2])],
                     [h.make_tensor_value_info("y", T.FLOAT, [2])],
                     initializer=[h.make_tensor("unused_w", T.FLOAT, [2], [1, 2]),
                                  h.make_tensor("unused_b", T.FLOAT, [1], [3])])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=9)
    so = ort.SessionOptions()
    so.log_severity_level = severity
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def test_real_onnxruntime_warnings_are_captured_grouped_and_explained(capfd):
    with capture_native_output() as log:
        _ort_session_with_unused_initializers()
    assert capfd.readouterr().err == ""  # nothing reached the terminal
    assert log.text.count("Removing initializer") == 2 and "\x1b[" in log.text  # ORT's coloured raw lines
    items = log.summary()
    assert items == log.items and len(items) == 1
    g = items[0]
    # both lines are one message once the initializer name ('unused_b' / 'unused_w') is masked
    assert g["count"] == 2
    assert g["message"] == ("Removing initializer '…'. It is not used by any node and should be removed from the "
                            "model.")
    assert g["example"] in {f"Removing initializer '{n}'. It is not used by any node and should be removed from the "
                            "model." for n in ("unused_b", "unused_w")}
    assert g["fallback"] is False and g["meaning"].startswith("ONNX Runtime dropped an unused initializer")
    with capture_native_output() as quiet:
        _ort_session_with_unused_initializers(severity=3)
    assert quiet.text == "" and quiet.summary() == []


def test_capture_restores_the_descriptors_and_python_output_goes_to_the_log(capfd, monkeypatch):
    # sys.stdout / sys.stderr as in a plain process: buffered text files on descriptors 1 and 2
    out_f = io.TextIOWrapper(open(1, "wb", closefd=False), write_through=False)
    err_f = io.TextIOWrapper(open(2, "wb", closefd=False), write_through=False)
    monkeypatch.setattr(sys, "stdout", out_f)
    monkeypatch.setattr(sys, "stderr", err_f)
    out_f.write("pending before\n")  # still in Python's buffer: flushed to the terminal before the switch
    err_f.write("pending err before\n")
    with capture_native_output() as log:
        os.write(1, b"native out\n")
        os.write(2, b"native err\n")
        out_f.write("python out\n")  # buffered: flushed into the log on exit
        err_f.write("python err\n")
    os.write(1, b"after\n")
    monkeypatch.undo()
    out = capfd.readouterr()
    assert out.out == "pending before\nafter\n" and out.err == "pending err before\n"
    assert sorted(log.text.splitlines()) == sorted(["native out", "native err", "python out", "python err"])
    assert {i["message"] for i in log.items} == {"native out", "native err", "python out", "python err"}


def _is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_capture_survives_unflushable_python_streams_and_replaces_bad_bytes(monkeypatch, capfd):
    closed = io.TextIOWrapper(io.BytesIO())
    closed.close()  # flush() of a closed file raises ValueError: the capture must go on
    monkeypatch.setattr(sys, "stdout", closed)
    monkeypatch.setattr(sys, "stderr", closed)
    with capture_native_output() as log:
        os.write(2, b"\xff\xfe not utf-8\n")  # native libraries print whatever bytes they have
    monkeypatch.undo()
    assert log.text == "\ufffd\ufffd not utf-8\n"
    assert log.items[0]["message"] == "\ufffd\ufffd not utf-N"


def test_capture_of_only_some_descriptors_and_an_invalid_one(capfd):
    with capture_native_output(fds=(2,)) as log:
        os.write(1, b"to the terminal\n")
        os.write(2, b"to the log\n")
    assert log.text == "to the log\n"
    assert capfd.readouterr().out == "to the terminal\n"
    bad = next(n for n in range(900, 1000) if not _is_open(n))  # not open: dup fails, the capture goes on
    with capture_native_output(fds=(bad, 2)) as log2:
        os.write(2, b"still captured\n")
    assert log2.text == "still captured\n"


def test_capture_restores_on_error_and_bounds_the_text(capfd):
    with pytest.raises(RuntimeError):
        with capture_native_output() as log:
            os.write(2, b"before the error\n")
            raise RuntimeError("boom")
    os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n" and log.text == "before the error\n"
    with capture_native_output() as big:
        chunk = b"x" * (1 << 20)
        for _ in range(9):  # 9 MiB
            os.write(2, chunk)
    assert len(big.text) == 8 << 20  # 8 MiB read back at most


def test_summarize_groups_masked_messages_most_frequent_first():
    text = "\n".join([
        CUDNN, CUDNN.replace("123", "456"),
        "\x1b[0;93m" + CUDNN + "\x1b[m",
        "", "   ",
        "value 0x7ffe12ab and 3.25 and 'a' and \"b\"",
        "value 0xDEAD and 17 and 'other name' and \"c d\"",
        "zeta 1", "alpha 2",
    ])
    items = summarize(text)
    assert [(i["message"], i["count"]) for i in items] == [
        ("[cudnn_frontend] Error: No execution plans support the graph.", 3),
        ("value 0x… and N and '…' and \"…\"", 2),
        ("alpha N", 1), ("zeta N", 1)]  # equal counts: by message
    cud = items[0]
    assert cud["example"] == "[cudnn_frontend] Error: No execution plans support the graph."
    assert cud["fallback"] is True and "cudnn" in cud["meaning"].lower()
    assert items[1]["example"] == "value 0x7ffe12ab and 3.25 and 'a' and \"b\"" and items[1]["meaning"] == ""
    assert items[1]["fallback"] is None
    assert summarize("") == [] and summarize("\n\n") == []


def test_summarize_skips_python_warning_echo_lines_only():
    text = "\n".join([
        "/x/onnxconverter_common/float16.py:73: UserWarning: the float32 number 3.4e+38 will be truncated to 65504",
        "  warnings.warn(\"the float32 number {} will be truncated to {}\".format(pos_max, max_finite_val))",
        "  indented line after a normal line",
        "plain",
        "  indented after plain",
    ])
    items = {i["message"]: i for i in summarize(text)}
    assert set(items) == {"/x/onnxconverter_common/floatN.py:N: UserWarning: the floatN number Ne+N will be "
                          "truncated to N", "indented line after a normal line", "plain", "indented after plain"}
    w = items["/x/onnxconverter_common/floatN.py:N: UserWarning: the floatN number Ne+N will be truncated to N"]
    assert w["fallback"] is False and "fp16" in w["meaning"]


def test_an_indented_first_line_is_kept():
    assert [(i["message"], i["count"]) for i in summarize("  first line, indented\nsecond")] == [
        ("first line, indented", 1), ("second", 1)]


def test_long_lines_are_cut_for_the_key_and_the_example():
    line = "E" * 1000
    g = summarize(line + "\n" + line[:300] + "tail")[0]
    assert g["count"] == 2 and g["message"] == "E" * 300 and g["example"] == "E" * 500


@pytest.mark.parametrize("line,fallback,word", [
    (CUDNN, True, "cuDNN"),
    ("CUDNN: running in Fallback mode for conv", True, "FALLBACK heuristic"),
    ("Some nodes were not assigned to the preferred execution providers which may or may not have a negative impact",
     True, "CPU provider"),
    ("No registered plugin EP device found for 'CUDAExecutionProvider'", False, "plugin-EP"),
    ("Removing initializer 'w'. It is not used by any node and should be removed from the model.", False, "unused"),
    ("2 Memcpy nodes are added to the graph main_graph for CUDAExecutionProvider.", False, "Memcpy"),
    ("CUDA failure 700: an illegal memory access", False, "failed"),
    ("CUDNN failure 4: CUDNN_STATUS_INTERNAL_ERROR", False, "failed"),
    ("CUBLAS failure 13", False, "failed"),
    ("CUDA error cudaErrorNoDevice", False, "failed"),
    ("cudaErrorInvalidValue", False, "failed"),
    ("Could not load library libcudnn_cnn_infer.so.8", False, "did not load"),
    ("libcublasLt.so.12: cannot open shared object file: No such file or directory", False, "did not load"),
    ("Failed to load library libonnxruntime_providers_cuda.so", False, "did not load"),
])
def test_every_known_message_is_explained(line, fallback, word):
    g = summarize(line)[0]
    assert g["fallback"] is fallback and word in g["meaning"]
    assert len(KNOWN) == 9


def test_summary_text_lines_limit_and_fallback_prefix():
    items = summarize("\n".join([CUDNN] * 3 + ["plain " + "y" * 300] * 2 + [f"other{i}" for i in "abcd"]))
    text = summary_text(items)
    lines = text.splitlines()
    assert lines[0].startswith("3× [cudnn_frontend] Error: No execution plans support the graph. — FALLBACK: cuDNN")
    assert lines[1] == "2× plain " + "y" * 194  # the example cut at 200 characters, no meaning
    assert lines[2:] == ["1× othera", "1× otherb", "1× otherc", "1× otherd"]
    assert summary_text(items, limit=2).splitlines()[2:] == ["… 4 more distinct messages"]
    assert summary_text(items, limit=6).splitlines()[-1] == "1× otherd"
    assert "FALLBACK" not in summary_text(summarize("Removing initializer 'w'. It is not used by any node"))
    assert "— ONNX Runtime dropped" in summary_text(summarize("Removing initializer 'w'. It is not used by any node"))
    assert summary_text([]) == ""
    eleven = summarize("\n".join("m" + c for c in "abcdefghijk"))
    assert summary_text(eleven).splitlines()[-2:] == ["1× mj", "… 1 more distinct messages"]  # 10 by default


def test_native_log_defaults():
    log = NativeLog()
    assert log.text == "" and log.summary() == [] and log.items is not NativeLog().items
