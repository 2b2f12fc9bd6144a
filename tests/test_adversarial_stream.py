"""Safety contract (#16), data reading: streaming ``.npz`` batches and one open file per input.

* ``compare``, ``report`` (the flow) and calibration read ``.npz`` data one batch at a time
  (``data.NpzDataset`` over one ``fsutil.NpzReader``): the reader's largest single read is one batch, the
  Python heap (tracemalloc) stays far below the dataset's size, and the results equal those of the
  same data held whole in memory.
* An input file is opened once and checked on the open descriptor: a path swapped between the check
  and the read (a file replaced, a symlink redirected, a FIFO put in its place) does not change what is
  read (``fsutil._after_input_check`` runs exactly between the two; the tests swap the file there).
"""
from __future__ import annotations

import os
import tracemalloc

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench import fsutil
from workbench.data import Batches, NpzDataset, resolve_data
from workbench.errors import DataError

FEATURES = 256
CLASSES = 10


def _classifier(path, batch="N"):
    """x [N, 256] float32 -> logits [N, 10] (MatMul + Add + Relu: quantizable, fp16-convertible)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((FEATURES, CLASSES)).astype(np.float32) * 0.05, "w")
    b = numpy_helper.from_array(rng.standard_normal(CLASSES).astype(np.float32), "b")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["pre"]),
         helper.make_node("Relu", ["pre"], ["logits"])], "clf",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, CLASSES])], [w, b])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def _arrays(n, seed=1):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((n, FEATURES)).astype(np.float32),
            "label": rng.integers(0, CLASSES, n).astype(np.int64)}


@pytest.fixture(params=["stored", "compressed"])
def dataset(request, tmp_path):
    n = 16384  # 16 MiB of inputs
    arrays = _arrays(n)
    p = tmp_path / "data.npz"
    (np.savez if request.param == "stored" else np.savez_compressed)(p, **arrays)
    return _classifier(tmp_path / "clf.onnx"), p, arrays


# ---------------------------------------------------------------------------------------------- the reader
def test_reader_reads_one_batch_at_a_time_and_equals_the_whole(dataset):
    model_path, p, arrays = dataset
    m = wb.load(model_path)
    ds = NpzDataset(p, m, allow_extra=True)
    assert ds.reader.peak_read_rows == 0  # opening read headers only
    got = [b["x"] for b in ds.batches(32)]
    assert ds.reader.peak_read_rows == 32 and ds.reader.peak_read_bytes == 32 * FEATURES * 4
    assert len(got) == 16384 // 32
    np.testing.assert_array_equal(np.concatenate(got), arrays["x"])
    bl = ds.batch_list(100, limit=250)  # random access and slices read only what they name
    assert isinstance(bl, Batches) and len(bl) == 3 and bl.num_samples == 250
    np.testing.assert_array_equal(bl[2]["x"], arrays["x"][200:250])
    np.testing.assert_array_equal(bl[1:][0]["x"], arrays["x"][100:200])
    assert ds.reader.peak_read_rows == 100


def test_batch_axis_one_and_unbatched_inputs_stream(tmp_path):
    """A recurrent state [2, N, 4] (batch axis 1) and a scalar without a batch axis, stored and compressed."""
    g = helper.make_graph(
        [helper.make_node("Identity", ["state"], ["state_out"]), helper.make_node("Identity", ["x"], ["x_out"]),
         helper.make_node("Identity", ["sr"], ["sr_out"])], "st",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 4]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info(n, t, None) for n, t in
         (("state_out", TensorProto.FLOAT), ("x_out", TensorProto.FLOAT), ("sr_out", TensorProto.INT64))])
    mp = tmp_path / "st.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(mp))
    m = wb.load(mp)
    rng = np.random.default_rng(0)
    arrays = {"x": rng.standard_normal((50, 3)).astype(np.float32),
              "state": rng.standard_normal((2, 50, 4)).astype(np.float32), "sr": np.array(16000, np.int64)}
    for save in (np.savez, np.savez_compressed):
        p = tmp_path / f"{save.__name__}.npz"
        save(p, **arrays)
        ds = NpzDataset(p, m, batch_axis="state:1")
        batches = list(ds.batches(8))
        np.testing.assert_array_equal(np.concatenate([b["state"] for b in batches], axis=1), arrays["state"])
        np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), arrays["x"])
        assert all(b["sr"] == 16000 for b in batches)


# ---------------------------------------------------------------------------------------------- compare
def test_compare_streams_batches_and_equals_the_whole_dataset(dataset):
    model_path, p, arrays = dataset
    m = wb.load(model_path)
    whole = wb.compare_outputs(m, "fp16", data=NpzDataset(arrays, m, label_keys=["label"]), labels="label",
                               progress=False)
    ds = NpzDataset(p, m, allow_extra=True)
    tracemalloc.start()
    try:
        streamed = wb.compare_outputs(m, "fp16", data=ds, labels="label", progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # held at once: one batch of 32 samples (32 KiB), not the 16 MiB of inputs (the labels, one int64
    # per sample, are read whole: 128 KiB)
    assert ds.reader.peak_rows == {"x": 32, "label": 16384}
    assert peak < 4 << 20, f"compare held {peak / 2**20:.1f} MiB for a 16 MiB dataset"
    assert streamed.samples == whole.samples == 16384
    a = streamed.metrics.reset_index(drop=True)
    b = whole.metrics.reset_index(drop=True)
    assert a[["variant", "output", "metric"]].equals(b[["variant", "output", "metric"]])
    np.testing.assert_array_equal(a.value.astype(float).to_numpy(), b.value.astype(float).to_numpy())


def test_resolve_data_limit_reads_only_the_limit(dataset):
    model_path, p, arrays = dataset
    m = wb.load(model_path)
    ds = NpzDataset(p, m, allow_extra=True)
    batches, labels = resolve_data(m, ds, "label", limit=100)
    assert isinstance(batches, Batches) and batches.num_samples == 100 and len(labels) == 100
    assert ds.reader.peak_rows["x"] == 32  # the NaN check streamed the 100 samples in batches too
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), arrays["x"][:100])


def test_nan_is_found_by_the_streaming_check(tmp_path):
    mp = _classifier(tmp_path / "clf.onnx")
    a = _arrays(1000)
    a["x"][777, 5] = np.inf
    p = tmp_path / "nan.npz"
    np.savez_compressed(p, **a)
    with pytest.raises(DataError, match=r"1 NaN/Inf value\(s\) in samples 768\.\.799"):
        resolve_data(wb.load(mp), str(p), "label")
    batches, _ = resolve_data(wb.load(mp), str(p), "label", limit=700)  # the bad sample is not used
    assert batches.num_samples == 700


# ---------------------------------------------------------------------------------------------- report (flow)
def test_flow_keeps_streamed_batches_and_counts_without_reading(dataset):
    from workbench.flow import accuracy_stage, build_stage

    model_path, p, arrays = dataset
    m = wb.load(model_path)
    fr = build_stage(m, "fp32,fp16", "onnxruntime", data=str(p), labels="label", accuracy_limit=2048,
                     progress=False)
    assert isinstance(fr.batches, Batches)
    assert fr.config["accuracy_samples"] == 2048
    reader = fr.batches.dataset.reader
    assert reader.peak_rows["x"] == 32
    accuracy_stage(fr, layerwise=True, layerwise_limit=16, progress=False)
    assert reader.peak_rows["x"] == 32
    ref = wb.compare_outputs(m, "fp16", data=NpzDataset({"x": arrays["x"][:2048], "label": arrays["label"][:2048]},
                                                        m, label_keys=["label"]), labels="label", progress=False)
    got = fr.accuracy.set_index("variant")
    want = ref.summary().set_index("variant")
    name = next(v for v in want.index if "fp16" in v)
    assert got.loc[name, "top1"] == want.loc[name, "top1"]
    # the flow runs accuracy in runs of 8 samples (flow.ACCURACY_RUN_SAMPLES), compare_outputs in batches of
    # 32: the same float64 sums in another order
    assert got.loc[name, "cosine_min"] == pytest.approx(want.loc[name, "cosine_min"], rel=1e-12)


# ---------------------------------------------------------------------------------------------- calibration
def test_calibration_reads_one_batch_at_a_time_and_equals_in_memory(tmp_path):
    from workbench.precision.calibration import DEFAULT_CALIB_BATCH, prepare_calibration

    mp = _classifier(tmp_path / "clf.onnx")
    m = wb.load(mp)
    a = _arrays(600)
    p = tmp_path / "calib.npz"
    np.savez_compressed(p, **a)
    ds = NpzDataset(p, m, allow_extra=True)
    cset = prepare_calibration(m, ds, num_calib=500)
    assert isinstance(cset.batches, Batches) and cset.num_samples == 500
    assert ds.reader.peak_read_rows == DEFAULT_CALIB_BATCH  # the validation pass streamed
    streamed = wb.make_variant(m, "int8", calib=ds, num_calib=500, progress=False)
    assert ds.reader.peak_read_rows == DEFAULT_CALIB_BATCH  # so did the quantizer's reader
    held = wb.make_variant(m, "int8", progress=False, num_calib=500,
                           calib=[{"x": a["x"][i:i + DEFAULT_CALIB_BATCH]} for i in range(0, 600, DEFAULT_CALIB_BATCH)])
    assert streamed.model.hash == held.model.hash  # the same scales: the same quantized model


# ---------------------------------------------------------------------------------------------- TOCTOU
def _swap_after_check(monkeypatch, target, action):
    """Run ``action()`` once, right after ``target`` was opened and checked and before anything is read."""
    calls = []

    def hook(path, st):
        if os.path.abspath(path) == os.path.abspath(target) and not calls:
            calls.append(st)
            action()

    monkeypatch.setattr(fsutil, "_after_input_check", hook)
    return calls


def test_npz_replaced_between_check_and_read_reads_the_checked_file(tmp_path, monkeypatch):
    mp = _classifier(tmp_path / "clf.onnx")
    m = wb.load(mp)
    good, evil = _arrays(64, seed=1), _arrays(64, seed=2)
    p, other = tmp_path / "data.npz", tmp_path / "other.npz"
    np.savez(p, **good)
    np.savez(other, **evil)
    calls = _swap_after_check(monkeypatch, p, lambda: os.replace(other, p))
    ds = NpzDataset(p, m, allow_extra=True)
    assert calls, "the hook between check and read did not run"
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in ds.batches(16)]), good["x"])
    assert not np.array_equal(np.load(p)["x"], good["x"])  # the path now names the other file


def test_npz_symlink_redirected_between_check_and_read(tmp_path, monkeypatch):
    mp = _classifier(tmp_path / "clf.onnx")
    m = wb.load(mp)
    good = _arrays(64, seed=1)
    real = tmp_path / "real.npz"
    np.savez_compressed(real, **good)
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def redirect():
        tmp = tmp_path / "link.tmp"
        tmp.symlink_to(fifo)  # a FIFO: reading it by path would hang
        os.replace(tmp, link)

    calls = _swap_after_check(monkeypatch, link, redirect)
    batches, labels = resolve_data(m, str(link), "label")
    assert calls and os.readlink(link) == str(fifo)
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), good["x"])
    np.testing.assert_array_equal(labels, good["label"])


def test_npz_swapped_for_a_fifo_before_the_open_is_refused(tmp_path):
    """The check runs on the open descriptor: whatever the path names when it is opened is what is checked."""
    mp = _classifier(tmp_path / "clf.onnx")
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="FIFO"):
        NpzDataset(fifo, wb.load(mp))


def test_model_replaced_between_check_and_read_loads_the_checked_model(tmp_path, monkeypatch):
    a = _classifier(tmp_path / "a.onnx")
    g = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "other",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    b = tmp_path / "b.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(b))
    want = a.read_bytes()
    calls = _swap_after_check(monkeypatch, a, lambda: os.replace(b, a))
    m = wb.load(a)
    assert calls
    assert m.graph.name == "clf" and a.read_bytes() != want  # loaded the file that was checked
    # and the file that was read (not the one now at the path) is the protected input
    st = calls[0]
    assert fsutil._PROTECTED.get((st.st_dev, st.st_ino)) is not None


@pytest.mark.parametrize("where", ["header", "data"])
def test_damaged_deflate_stream_is_a_data_error(tmp_path, where):
    """A valid zip directory over a damaged deflate stream: zlib.error (header) or a CRC error (data) was
    an internal error (exit 1) before; it is a DataError at open or at the batch that reaches it."""
    import zipfile

    mp = _classifier(tmp_path / "clf.onnx")
    p = tmp_path / "bad.npz"
    np.savez_compressed(p, x=_arrays(4096)["x"])
    raw = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as z:
        info = z.infolist()[0]
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + (4 if where == "header" else 4000)
    raw[at:at + 64] = bytes(b ^ 0x5A for b in raw[at:at + 64])
    p.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="bad.npz member 'x'"):
        ds = NpzDataset(p, wb.load(mp))
        for _ in ds.batches(256):
            pass


def test_variant_cache_key_of_a_fifo_fails_fast(tmp_path):
    """The variant cache fingerprints calibration files: a FIFO given as calib must not hang the key."""
    import threading

    from workbench.variantcache import data_fingerprint

    fifo = tmp_path / "calib.npz"
    os.mkfifo(fifo)
    box = {}
    t = threading.Thread(target=lambda: box.update(r=_try(data_fingerprint, str(fifo))), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "fingerprinting a FIFO hung"
    assert isinstance(box["r"], DataError) and "FIFO" in str(box["r"])


def _try(fn, *a):
    try:
        return fn(*a)
    except Exception as e:  # noqa: BLE001 - returned to the test
        return e


def test_a_racing_thread_swapping_the_path_never_hangs_or_mixes(tmp_path):
    """Another thread keeps redirecting a symlink between a good .npz, a FIFO and another .npz while this
    thread opens and reads it: every read is one whole file (the good or the other), or a refusal naming
    the FIFO — never a hang (a FIFO opened for reading blocks) and never a mix of the two files."""
    import threading
    import time

    mp = _classifier(tmp_path / "clf.onnx")
    m = wb.load(mp)
    good, other = _arrays(64, seed=1), _arrays(64, seed=2)
    np.savez(tmp_path / "good.npz", **good)
    np.savez_compressed(tmp_path / "other.npz", **other)
    os.mkfifo(tmp_path / "fifo")
    link = tmp_path / "data.npz"
    link.symlink_to(tmp_path / "good.npz")
    stop = threading.Event()

    def flip():
        targets = [tmp_path / "fifo", tmp_path / "other.npz", tmp_path / "good.npz"]
        i = 0
        while not stop.is_set():
            tmp = tmp_path / f"l{i % 2}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(targets[i % 3])
            os.replace(tmp, link)
            i += 1

    t = threading.Thread(target=flip, daemon=True)
    t.start()
    seen = {"good": 0, "other": 0, "fifo": 0}
    deadline = time.monotonic() + 3
    try:
        while time.monotonic() < deadline:
            try:
                ds = NpzDataset(link, m, allow_extra=True)
            except DataError as e:
                assert "FIFO" in str(e), e
                seen["fifo"] += 1
                continue
            x = np.concatenate([b["x"] for b in ds.batches(16)])
            ds.close()
            if np.array_equal(x, good["x"]):
                seen["good"] += 1
            else:
                np.testing.assert_array_equal(x, other["x"])
                seen["other"] += 1
    finally:
        stop.set()
        t.join(5)
    assert sum(seen.values()) > 10, seen


def test_file_rewritten_in_place_is_refused_not_mixed(tmp_path):
    """A dataset stays open (e.g. a FlowResult's batches); np.savez over the same path rewrites the same
    inode. The next read refuses instead of reading new bytes at the old offsets."""
    import time

    mp = _classifier(tmp_path / "clf.onnx")
    m = wb.load(mp)
    p = tmp_path / "data.npz"
    np.savez(p, **_arrays(64, seed=1))
    ds = NpzDataset(p, m, allow_extra=True)
    first = ds.batch_list(16)[0]["x"]
    ino = p.stat().st_ino
    time.sleep(0.01)
    with open(p, "r+b") as f:  # in place: same inode, new bytes (what np.savez(p) over it does)
        f.write(open(tmp_path / "clf.onnx", "rb").read()[:64])
        f.truncate(p.stat().st_size + 7)
    assert p.stat().st_ino == ino
    with pytest.raises(DataError, match="changed while it was being read"):
        ds.batch_list(16)[1]
    assert first.shape == (16, FEATURES)
