"""workbench.model: loading, hashing, external data safety, read-only source, atomic saves."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

import workbench as wb
from workbench.errors import ExternalDataError, ModelLoadError, WorkbenchError
from workbench.inspect import inspect
from workbench.model import PROTOBUF_LIMIT


def _with_weights(src: Path) -> onnx.ModelProto:
    """The light model plus two real (non-ConstantOfShape) weights so external data has something to hold."""
    m = onnx.load(str(src))
    rng = np.random.default_rng(0)
    m.graph.initializer.extend([numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "extra_w"),
                                numpy_helper.from_array(rng.standard_normal(512).astype(np.float32), "extra_b")])
    return m


def _save_external(proto: onnx.ModelProto, folder: Path, location: str = "weights.bin") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    proto = onnx.ModelProto.FromString(proto.SerializeToString())  # save_model rewrites its argument
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=1024)
    return path


def _set_location(path: Path, location: str) -> None:
    """Rewrite every external location in the .onnx file (data file untouched)."""
    m = onnx.load(str(path), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    path.write_bytes(m.SerializeToString())


def _stat(p: Path):
    st = p.stat()
    return p.read_bytes(), st.st_mtime_ns


# ------------------------------------------------------------------------------------------- load + hash
def test_path_bytes_proto_give_same_hash(light):
    p = light("resnet50")
    a = wb.load(p)
    b = wb.load(p.read_bytes())
    c = wb.load(onnx.load(str(p)))
    assert a.hash == b.hash == c.hash
    assert len(a.hash) == 64 and a.short_hash == a.hash[:12]
    assert wb.load(p).hash == a.hash  # stable across loads
    assert wb.load(a) is a
    assert a.source == p and a.base_dir == p.parent and a.name == "light_resnet50"
    assert b.source is None and b.base_dir is None


def test_hash_differs_for_different_models(light):
    assert wb.load(light("resnet50")).hash != wb.load(light("densenet121")).hash


def test_load_proto_is_a_copy(light):
    proto = onnx.load(str(light("inception_v1")))
    m = wb.load(proto)
    proto.graph.node.pop()
    assert len(m.proto.graph.node) == len(proto.graph.node) + 1


def test_graph_facts(light):
    p = light("inception_v1")
    ref = onnx.load(str(p))
    m = wb.load(p)
    inits = {t.name for t in ref.graph.initializer}
    assert m.input_names == [i.name for i in ref.graph.input if i.name not in inits]
    assert m.output_names == [o.name for o in ref.graph.output]
    assert m.opset == ref.opset_import[0].version
    assert not m.has_external_data


# ------------------------------------------------------------------------------------------- bad files
def test_empty_file(tmp_path):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        wb.load(p)


def test_truncated_protobuf(light, tmp_path):
    data = light("resnet50").read_bytes()
    p = tmp_path / "half.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError):
        wb.load(p)


@pytest.mark.parametrize("text", ["hello, this is not a model\n", "ir_version: 8\ngraph { name: 'x' }\n",
                                  "{\"not\": \"onnx\"}\n"])
def test_text_file(tmp_path, text):
    p = tmp_path / "t.onnx"
    p.write_text(text)
    with pytest.raises(ModelLoadError):
        wb.load(p)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        wb.load(tmp_path / "nope.onnx")
    with pytest.raises(ModelLoadError, match="folder"):
        wb.load(tmp_path)
    with pytest.raises(ModelLoadError):
        wb.load(12345)


def test_bad_bytes_and_proto():
    with pytest.raises(ModelLoadError):
        wb.load(b"")
    with pytest.raises(ModelLoadError):
        wb.load(onnx.ModelProto())


# ------------------------------------------------------------------------------------------- external data
def test_external_data_next_to_model(light, tmp_path):
    proto = _with_weights(light("inception_v1"))
    path = _save_external(proto, tmp_path / "ext")
    m = wb.load(path)
    assert m.has_external_data
    assert [ef.location for ef in m.external_files] == ["weights.bin"]
    ext = [t for t in m.proto.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    assert {t.name for t in ext} == {"extra_w", "extra_b"}
    assert all(not t.raw_data for t in ext)  # data not loaded into memory
    full = m.proto_with_data()
    got = {t.name: numpy_helper.to_array(t) for t in full.graph.initializer}
    want = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    np.testing.assert_array_equal(got["extra_w"], want["extra_w"])
    assert all(t.data_location != TensorProto.EXTERNAL for t in full.graph.initializer)
    # still external in the model itself after proto_with_data
    assert all(not t.raw_data for t in m.proto.graph.initializer if t.name in ("extra_w", "extra_b"))
    # the hash covers the data file: change one weight byte, same .onnx, different hash
    h = m.hash
    data = bytearray((path.parent / "weights.bin").read_bytes())
    data[0] ^= 0xFF
    (path.parent / "weights.bin").write_bytes(bytes(data))
    assert wb.load(path).hash != h


def test_external_data_missing(light, tmp_path):
    path = _save_external(_with_weights(light("inception_v1")), tmp_path / "ext")
    (path.parent / "weights.bin").unlink()
    with pytest.raises(ExternalDataError, match="not found"):
        wb.load(path)


def test_external_data_truncated(light, tmp_path):
    path = _save_external(_with_weights(light("inception_v1")), tmp_path / "ext")
    d = path.parent / "weights.bin"
    d.write_bytes(d.read_bytes()[:100])
    with pytest.raises(ExternalDataError, match="truncated"):
        wb.load(path)


@pytest.mark.parametrize("location", ["../weights.bin", "sub/../../weights.bin", "..\\weights.bin"])
def test_external_location_with_dotdot(light, tmp_path, location):
    path = _save_external(_with_weights(light("inception_v1")), tmp_path / "ext")
    shutil.copy(path.parent / "weights.bin", tmp_path / "weights.bin")  # the target exists: still refused
    _set_location(path, location)
    with pytest.raises(ExternalDataError, match=r"\.\."):
        wb.load(path)


def test_external_location_absolute(light, tmp_path):
    path = _save_external(_with_weights(light("inception_v1")), tmp_path / "ext")
    _set_location(path, str((path.parent / "weights.bin").resolve()))  # exists, but absolute
    with pytest.raises(ExternalDataError, match="absolute"):
        wb.load(path)


def test_external_symlink_outside_folder(light, tmp_path):
    path = _save_external(_with_weights(light("inception_v1")), tmp_path / "ext")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.move(str(path.parent / "weights.bin"), outside / "weights.bin")
    (path.parent / "weights.bin").symlink_to(outside / "weights.bin")
    with pytest.raises(ExternalDataError, match="outside"):
        wb.load(path)


def test_external_symlink_inside_folder_is_fine(light, tmp_path):
    path = _save_external(_with_weights(light("inception_v1")), tmp_path / "ext")
    (path.parent / "real.bin").write_bytes((path.parent / "weights.bin").read_bytes())
    (path.parent / "weights.bin").unlink()
    (path.parent / "weights.bin").symlink_to("real.bin")
    assert wb.load(path).has_external_data


def test_external_data_from_bytes_is_refused(light, tmp_path):
    path = _save_external(_with_weights(light("inception_v1")), tmp_path / "ext")
    with pytest.raises(ExternalDataError, match="file path"):
        wb.load(path.read_bytes())


def test_large_model_path_never_reads_external_data(light, tmp_path):
    """The code path that keeps weights out of memory (see also the real >2 GB test below): after load
    the tensors are still EXTERNAL, and inspect() works with the data file moved away (so it cannot have
    read it). The hash does read it."""
    path = _save_external(_with_weights(light("inception_v1")), tmp_path / "ext")
    m = wb.load(path)
    assert m.proto.ByteSize() < path.stat().st_size + 1  # nothing was inlined
    (path.parent / "weights.bin").rename(tmp_path / "away.bin")
    info = inspect(m, hash=False)
    assert info.params == sum(int(np.prod(t.dims)) for t in m.proto.graph.initializer)
    assert all(t.data_location == TensorProto.EXTERNAL for t in m.proto.graph.initializer
               if t.name in ("extra_w", "extra_b"))
    with pytest.raises(OSError):
        m.hash  # noqa: B018


def test_file_over_protobuf_limit_is_refused_before_reading(tmp_path):
    p = tmp_path / "huge.onnx"
    with open(p, "wb") as f:  # sparse file: no disk use
        f.truncate(PROTOBUF_LIMIT + 1)
    with pytest.raises(ModelLoadError, match="2 GB"):
        wb.load(p)


# ------------------------------------------------------------------------------------------- read-only source + save
def test_source_unchanged_by_load_inspect_save(light, tmp_path):
    p = light("densenet121")
    before = _stat(p)
    m = wb.load(p)
    inspect(m)
    m.save(tmp_path / "out" / "copy.onnx")
    _ = m.hash
    assert _stat(p) == before
    assert wb.load(tmp_path / "out" / "copy.onnx").hash == m.hash


def test_source_with_external_data_unchanged(light, tmp_path):
    path = _save_external(_with_weights(light("inception_v1")), tmp_path / "ext")
    data = path.parent / "weights.bin"
    before = (_stat(path), _stat(data))
    m = wb.load(path)
    inspect(m)
    out = m.save(tmp_path / "out" / "m2.onnx")
    assert (_stat(path), _stat(data)) == before
    assert (tmp_path / "out" / "m2.onnx.data").exists()
    m2 = wb.load(out)
    a = {t.name: numpy_helper.to_array(t) for t in m.proto_with_data().graph.initializer}
    b = {t.name: numpy_helper.to_array(t) for t in m2.proto_with_data().graph.initializer}
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_save_refuses_source(light, tmp_path):
    p = light("resnet50")
    before = _stat(p)
    m = wb.load(p)
    with pytest.raises(WorkbenchError, match="source"):
        m.save(p)
    with pytest.raises(WorkbenchError, match="source"):
        m.save(tmp_path / "." / p.name)
    link = tmp_path / "link.onnx"
    link.symlink_to(p)
    with pytest.raises(WorkbenchError, match="source"):
        m.save(link)
    assert _stat(p) == before


def test_save_refuses_the_source_external_data_file(light, tmp_path):
    path = _save_external(_with_weights(light("inception_v1")), tmp_path / "ext")
    data = path.parent / "weights.bin"
    before = _stat(data)
    m = wb.load(path)
    with pytest.raises(WorkbenchError):
        m.save(data)
    # weights.onnx would write weights.onnx.data, not weights.bin: fine; but a model whose data file
    # would be named like the source's data file must be refused
    (path.parent / "x.onnx.data").write_bytes(data.read_bytes())
    _set_location(path, "x.onnx.data")
    m2 = wb.load(path)
    with pytest.raises(WorkbenchError):
        m2.save(path.parent / "x.onnx", external_data=True)
    assert _stat(data) == before


def test_save_is_atomic_and_leaves_no_temp_files(light, tmp_path):
    m = wb.load(light("inception_v1"))
    out = tmp_path / "out"
    m.save(out / "a.onnx")
    m.save(out / "b.onnx", external_data=True)
    assert sorted(os.listdir(out)) == ["a.onnx", "b.onnx"] + (["b.onnx.data"] if (out / "b.onnx.data").exists() else [])
    assert wb.load(out / "a.onnx").hash == m.hash
    assert inspect(out / "b.onnx").nodes == len(m.proto.graph.node)


def test_save_external_data_writes_data_file(light, tmp_path):
    m = wb.load(_with_weights(light("inception_v1")))
    out = m.save(tmp_path / "o" / "m.onnx", external_data=True)
    assert sorted(os.listdir(out.parent)) == ["m.onnx", "m.onnx.data"]
    m2 = wb.load(out)
    assert m2.has_external_data
    a = {t.name: numpy_helper.to_array(t) for t in m.proto.graph.initializer}
    b = {t.name: numpy_helper.to_array(t) for t in m2.proto_with_data().graph.initializer}
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_save_embedded_from_external(light, tmp_path):
    path = _save_external(_with_weights(light("inception_v1")), tmp_path / "ext")
    m = wb.load(path)
    out = m.save(tmp_path / "o" / "embedded.onnx", external_data=False)
    m2 = wb.load(out)
    assert not m2.has_external_data
    assert os.listdir(out.parent) == ["embedded.onnx"]


def test_failed_save_keeps_previous_file(light, tmp_path, monkeypatch):
    m = wb.load(light("inception_v1"))
    target = tmp_path / "o" / "m.onnx"
    target.parent.mkdir()
    target.write_bytes(b"previous")

    def boom(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        m.save(target)
    assert target.read_bytes() == b"previous"
    assert os.listdir(target.parent) == ["m.onnx"]


def test_failed_external_save_leaves_no_temp(light, tmp_path, monkeypatch):
    m = wb.load(_with_weights(light("inception_v1")))
    out = tmp_path / "o"
    out.mkdir()

    def boom(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(onnx, "save_model", boom)
    with pytest.raises(OSError):
        m.save(out / "m.onnx", external_data=True)
    assert os.listdir(out) == []


def test_path_for_runtime(light, tmp_path):
    p = light("inception_v1")
    m = wb.load(p)
    assert m.path_for_runtime() == p
    m2 = wb.load(p.read_bytes())
    rp = m2.path_for_runtime(tmp_path / "rt")
    assert rp.parent == tmp_path / "rt" and wb.load(rp).hash == m.hash


def test_derive_records_parent(light):
    m = wb.load(light("inception_v1"))
    d = m.derive(m.proto_with_data(), name="child")
    assert d.parent_hash == m.hash and d.name == "child" and d.hash == m.hash


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for the peak-memory check")
def test_real_model_over_2gb_is_loaded_inspected_and_hashed_without_a_copy(tmp_path):
    """A real > 2 GB model: 2.2 GB of weights in an external-data file (sparse, so no disk is used).
    Load, inspect and hash it in a child process whose peak memory must stay far below the data size."""
    import subprocess
    import sys

    from onnx import helper

    n = 550_000_000  # float32 elements: 2.2 GB of weights
    w = TensorProto()
    w.name, w.data_type = "w", TensorProto.FLOAT
    w.dims.extend([n, 1])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", str(4 * n))):
        e = w.external_data.add()
        e.key, e.value = k, v
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "big",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])], initializer=[w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    d = tmp_path / "big"
    d.mkdir()
    (d / "model.onnx").write_bytes(model.SerializeToString())
    with open(d / "weights.bin", "wb") as f:
        f.truncate(4 * n)  # sparse: reads back as zeros
    # Peak memory of the child's own address space: VmHWM in /proc/self/status. (ru_maxrss would carry
    # the parent's high-water mark across fork+exec, and pytest's process can be over 1 GB.)
    code = (
        "import re, sys, workbench as wb\n"
        "m = wb.load(sys.argv[1]); info = wb.inspect(m, shapes='x:1x550000000')\n"
        "hwm = int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))\n"
        "print(info.params, info.macs, m.hash, hwm // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(d / "model.onnx")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    params, macs, digest, peak_mib = out.stdout.split()
    assert int(params) == n and float(macs) == n  # MatMul 1×n by n×1 at batch 1
    assert len(digest) == 64
    print(f"2.2 GB model: peak RSS {peak_mib} MiB")
    assert int(peak_mib) < 600, f"peak RSS {peak_mib} MiB for a 2.2 GB model: the weights were copied into memory"
