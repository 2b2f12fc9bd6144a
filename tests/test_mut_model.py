"""Tests written against mutants of workbench/model.py that survived `make mutate` (issue 23).

Small graphs and external-data references are built here by hand, so each refusal is triggered by exactly one
rule (which rule refused is told by the error's wording): the ``..`` rule, absolute paths, resolving outside
the folder, missing files, bad offsets/lengths. Real files are written under pytest's tmp_path only.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench import model as M
from workbench.errors import ExternalDataError, ModelLoadError


def _graph(nodes, inits=(), inputs=("x",), outputs=("y",), name="g"):
    return helper.make_graph(nodes, name, [helper.make_tensor_value_info(i, TensorProto.FLOAT, [2]) for i in inputs],
                             [helper.make_tensor_value_info(o, TensorProto.FLOAT, [2]) for o in outputs], list(inits))


def _proto(graph, opset=17):
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


# ------------------------------------------------------------------------------------------ cycles
def test_graph_cycle_by_hand():
    ok = _graph([helper.make_node("Relu", ["a"], ["y"], name="second"),
                 helper.make_node("Relu", ["x"], ["a"], name="first")])  # listed out of order: not a cycle
    assert M.graph_cycle(ok) is None
    loop = _graph([helper.make_node("Add", ["x", "c"], ["a"], name="n1"),
                   helper.make_node("Relu", ["a"], ["b"], name="n2"),
                   helper.make_node("Relu", ["b"], ["c"], name="n3"),
                   helper.make_node("Relu", ["a"], ["y"], name="out")])
    assert M.graph_cycle(loop) == ["n1", "n2", "n3", "out"]
    unnamed = _graph([helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
                      helper.make_node("Relu", ["x"], ["y"])])
    assert M.graph_cycle(unnamed) == ["#0 Relu", "#1 Relu"]
    undefined = _graph([helper.make_node("Add", ["x", "nobody"], ["y"], name="n")])  # undefined, not cyclic
    assert M.graph_cycle(undefined) is None
    self_loop = _graph([helper.make_node("Add", ["x", "s"], ["s"], name="me"), helper.make_node("Relu", ["s"], ["y"], name="r")])
    assert M.graph_cycle(self_loop) == ["me", "r"]
    init = _graph([helper.make_node("Add", ["x", "w"], ["y"], name="n")],
                  [numpy_helper.from_array(np.ones(2, np.float32), "w")])
    assert M.graph_cycle(init) is None
    optional = _graph([helper.make_node("Clip", ["x", "", ""], ["y"], name="clip")])  # "" = omitted input
    assert M.graph_cycle(optional) is None
    many = _graph([helper.make_node("Relu", [f"t{(i + 1) % 7}"], [f"t{i}"], name=f"c{i}") for i in range(7)]
                  + [helper.make_node("Relu", ["x"], ["y"], name="free")])
    assert M.graph_cycle(many) == ["c0", "c1", "c2", "c3", "c4"]  # at most five names


def _if_node(then_nodes, outer_out="y"):
    then = helper.make_graph(then_nodes, "then", [], [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, [2])])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e_out"], name="e")], "else", [],
                              [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, [2])])
    return helper.make_node("If", ["cond"], [outer_out], name="if", then_branch=then, else_branch=other)


def test_graph_cycle_in_a_subgraph_and_outer_scope_names():
    fine = _graph([helper.make_node("Relu", ["x"], ["r"], name="r"),
                   _if_node([helper.make_node("Add", ["r", "x"], ["t_out"], name="uses_outer")])],
                  inputs=("x", "cond"))
    assert M.graph_cycle(fine) is None  # r and x come from the outer scope
    bad = _graph([_if_node([helper.make_node("Relu", ["u"], ["v"], name="s1"),
                            helper.make_node("Relu", ["v"], ["u"], name="s2"),
                            helper.make_node("Identity", ["x"], ["t_out"], name="s3")])], inputs=("x", "cond"))
    assert M.graph_cycle(bad) == ["s1", "s2"]
    assert len(list(M.iter_graphs(bad))) == 3


def test_iter_tensors_finds_every_kind():
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    sp = helper.make_sparse_tensor(numpy_helper.from_array(np.ones(1, np.float32), "spv"),
                                   numpy_helper.from_array(np.zeros(1, np.int64), "spi"), [2])
    g = _graph([helper.make_node("Constant", [], ["k"], name="k", value=numpy_helper.from_array(np.ones(1, np.float32), "kv")),
                _if_node([helper.make_node("Constant", [], ["t_out"], name="ik",
                                           value=numpy_helper.from_array(np.ones(2, np.float32), "inner"))])],
               [w], inputs=("x", "cond"))
    g.sparse_initializer.append(sp)
    names = [t.name for t in M.iter_tensors(g)]
    assert names == ["w", "spv", "spi", "kv", "inner"]


# ------------------------------------------------------------------------------------------ tensor data
def test_tensor_problem_by_hand():
    t = numpy_helper.from_array(np.ones((2, 3), np.float32), "t")
    assert M.tensor_problem(t) is None
    t.raw_data = t.raw_data[:-4]
    assert M.tensor_problem(t) == "holds 20 bytes but its shape [2, 3] needs 24"
    neg = TensorProto(name="n", data_type=TensorProto.FLOAT, dims=[2, -1])
    assert M.tensor_problem(neg) == "has a negative dimension [2, -1]"
    few = TensorProto(name="f", data_type=TensorProto.FLOAT, dims=[4], float_data=[1.0, 2.0, 3.0])
    assert M.tensor_problem(few) == "holds 3 values but its shape [4] needs 4"
    assert M.tensor_problem(helper.make_tensor("f", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])) is None
    assert M.tensor_problem(helper.make_tensor("e", TensorProto.FLOAT, [0], [])) is None
    i64 = TensorProto(name="i", data_type=TensorProto.INT64, dims=[2, 2], int64_data=[1, 2, 3])
    assert M.tensor_problem(i64) == "holds 3 values but its shape [2, 2] needs 4"
    c = TensorProto(name="c", data_type=TensorProto.COMPLEX64, dims=[2], float_data=[1, 2, 3, 4])  # 2 values
    assert M.tensor_problem(c) is None
    c1 = TensorProto(name="c", data_type=TensorProto.COMPLEX64, dims=[3], float_data=[1, 2, 3, 4])
    assert M.tensor_problem(c1) == "holds 2 values but its shape [3] needs 3"
    s = TensorProto(name="s", data_type=TensorProto.STRING, dims=[5], string_data=[b"a"])  # not counted
    assert M.tensor_problem(s) is None
    ext = TensorProto(name="x", data_type=TensorProto.FLOAT, dims=[4])
    ext.data_location = TensorProto.EXTERNAL
    assert M.tensor_problem(ext) is None
    unknown = TensorProto(name="u", data_type=999, dims=[1], raw_data=b"\0")
    assert M.tensor_problem(unknown) == "has an unknown element type 999"
    scalar = numpy_helper.from_array(np.array(1.5, np.float64), "s")
    assert M.tensor_problem(scalar) is None


def test_check_structure_names_the_initializer():
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    w.raw_data = b"\0" * 4
    m = M.load(_proto(_graph([helper.make_node("Add", ["x", "w"], ["y"], name="n")], [w])))
    with pytest.raises(ModelLoadError, match="initializer 'w' holds 4 bytes but its shape \\[2\\] needs 8"):
        m.check_structure()
    loop = _proto(_graph([helper.make_node("Relu", ["b"], ["a"], name="p"), helper.make_node("Relu", ["a"], ["b"], name="q"),
                          helper.make_node("Relu", ["x"], ["y"], name="r")]))
    with pytest.raises(ModelLoadError, match="dependency cycle \\(nodes p, q wait"):
        M.load(loop).check_structure()
    M.load(_proto(_graph([helper.make_node("Relu", ["x"], ["y"], name="r")]))).check_structure()


# ------------------------------------------------------------------------------------------ external data
def _ext_proto(location, *, offset=None, length=None, name="w"):
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[2])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", offset), ("length", length)):
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, str(v)
    return _proto(_graph([helper.make_node("Add", ["x", name], ["y"], name="n")], [t]))


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())  # 16 bytes
    (d / "sub" / "v.bin").write_bytes(b"\0" * 8)
    (tmp_path / "outside.bin").write_bytes(b"\0" * 8)
    return d


def test_external_data_accepted_locations(folder):
    files = M.check_external_data(_ext_proto("w.bin", offset=8, length=8), folder)
    assert files == [M.ExternalFile("w.bin", (folder / "w.bin").resolve())]
    assert M.check_external_data(_ext_proto("sub/v.bin"), folder)[0].path == (folder / "sub" / "v.bin").resolve()
    assert M.check_external_data(_ext_proto("./w.bin", offset="", length=16), folder)[0].location == "./w.bin"
    assert M.check_external_data(_ext_proto("w.bin", offset=16, length=0), folder)  # offset == size is the end
    assert M.check_external_data(_proto(_graph([helper.make_node("Relu", ["x"], ["y"])])), None) == []


def test_two_tensors_in_one_file_are_one_file(folder):
    p = _ext_proto("w.bin", offset=0, length=8)
    t2 = TensorProto(name="w2", data_type=TensorProto.FLOAT, dims=[2], data_location=TensorProto.EXTERNAL)
    for k, v in (("location", "w.bin"), ("offset", "8"), ("length", "8")):
        e = t2.external_data.add()
        e.key, e.value = k, v
    p.graph.initializer.append(t2)
    assert [f.location for f in M.check_external_data(p, folder)] == ["w.bin"]


@pytest.mark.parametrize("loc", ["../outside.bin", "sub/../w.bin", "sub\\..\\w.bin", "./../outside.bin"])
def test_dotdot_rule(folder, loc):
    with pytest.raises(ExternalDataError, match=r"escapes the model's folder \('\.\.'\)"):
        M.check_external_data(_ext_proto(loc), folder)


@pytest.mark.parametrize("loc", ["/etc/passwd", "\\\\server\\share\\w.bin", "C:w.bin", "c:\\w.bin"])
def test_absolute_rule(folder, loc):
    with pytest.raises(ExternalDataError, match="is an absolute path"):
        M.check_external_data(_ext_proto(loc), folder)


def test_names_with_dots_are_not_dotdot(folder):
    (folder / "..w.bin").write_bytes(b"\0" * 8)
    (folder / "a..b").mkdir()
    (folder / "a..b" / "w.bin").write_bytes(b"\0" * 8)
    assert M.check_external_data(_ext_proto("..w.bin"), folder)
    assert M.check_external_data(_ext_proto("a..b/w.bin"), folder)
    (folder / "w..").write_bytes(b"\0" * 8)
    assert M.check_external_data(_ext_proto("w.."), folder)


def test_symlink_out_of_the_folder_is_refused(folder):
    os.symlink(folder.parent / "outside.bin", folder / "link.bin")
    with pytest.raises(ExternalDataError, match="resolves to .*outside the model's folder"):
        M.check_external_data(_ext_proto("link.bin"), folder)
    os.symlink(folder / "w.bin", folder / "inner.bin")
    assert M.check_external_data(_ext_proto("inner.bin"), folder)[0].path == (folder / "w.bin").resolve()
    os.symlink(folder.parent, folder / "up")  # a folder link out: no '..' written, still outside
    with pytest.raises(ExternalDataError, match="resolves to .*outside the model's folder"):
        M.check_external_data(_ext_proto("up/outside.bin"), folder)


def test_external_data_refusals(folder):
    cases = [(_ext_proto(""), None, "is marked as external data but has no location"),
             (_ext_proto("w.bin"), None, "was given as bytes/proto"),
             (_ext_proto("nope.bin"), folder, "not found next to the model"),
             (_ext_proto("w.bin", offset=17), folder, "offset 17 lies past the end of 'w.bin' \\(16 bytes\\)"),
             (_ext_proto("w.bin", offset=8, length=9), folder, "is truncated \\(needs bytes 8..17, file has 16\\)"),
             (_ext_proto("w.bin", length=17), folder, "is truncated \\(needs bytes 0..17"),
             (_ext_proto("w.bin", offset=-1), folder, "offset -1 .* is negative"),
             (_ext_proto("w.bin", length="x12"), folder, "length 'x12' .* is not an integer"),
             (_ext_proto("w.bin", name=""), None, "tensor '<unnamed>'")]
    for proto, base, msg in cases:
        with pytest.raises(ExternalDataError, match=msg):
            M.check_external_data(proto, base)
    assert M.check_external_data(_ext_proto("w.bin", offset=0, length=16), folder)  # exactly the file


def test_nonneg_int_by_hand():
    assert M._nonneg_int({}, "offset", "t", "f") is None
    assert M._nonneg_int({"offset": ""}, "offset", "t", "f") is None
    assert M._nonneg_int({"offset": "0"}, "offset", "t", "f") == 0
    assert M._nonneg_int({"length": "42"}, "length", "t", "f") == 42
    with pytest.raises(ExternalDataError, match="length 'a' \\(file 'f'\\) is not an integer"):
        M._nonneg_int({"length": "a"}, "length", "t", "f")
    with pytest.raises(ExternalDataError, match="'" + "9" * 39 + "x'"):  # the text is cut at 40 characters
        M._nonneg_int({"offset": "9" * 39 + "x" + "tail"}, "offset", "t", "f")


# ------------------------------------------------------------------------------------------ parsing and facts
def test_parsed_checks():
    good = _proto(_graph([helper.make_node("Relu", ["x"], ["y"], name="r")]))
    M._check_parsed(good, "m")
    no_opset = onnx.ModelProto()
    no_opset.CopyFrom(good)
    del no_opset.opset_import[:]
    with pytest.raises(ModelLoadError, match="does not look like an ONNX model"):
        M._check_parsed(no_opset, "m")
    no_graph = onnx.ModelProto(ir_version=8)
    no_graph.opset_import.add().version = 17
    with pytest.raises(ModelLoadError, match="does not look like an ONNX model"):
        M._check_parsed(no_graph, "m")
    zero_ir = onnx.ModelProto()
    zero_ir.CopyFrom(good)
    zero_ir.ir_version = 0
    with pytest.raises(ModelLoadError, match="does not look like"):
        M._check_parsed(zero_ir, "m")
    bad_type = onnx.ModelProto()
    bad_type.CopyFrom(good)
    bad_type.graph.output[0].type.tensor_type.elem_type = 77
    with pytest.raises(ModelLoadError, match="'y' has an unknown element type 77"):
        M._check_parsed(bad_type, "m")
    with pytest.raises(ModelLoadError, match="is empty"):
        M._parse_bytes(b"", "f")
    with pytest.raises(ModelLoadError):
        M._parse_bytes(b"\xff\xff\xff", "f")
    assert M._parse_bytes(good.SerializeToString(), "f").graph.node[0].name == "r"


def test_model_facts_by_hand():
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    g = _graph([helper.make_node("Add", ["x", "w"], ["a"], name="n"), helper.make_node("Relu", ["a"], ["y"], name="r")],
               [w], inputs=("x", "w"), outputs=("y", "a"))
    p = helper.make_model(g, opset_imports=[helper.make_opsetid("com.microsoft", 1), helper.make_opsetid("", 13)])
    m = M.load(p, name="facts")
    assert m.input_names == ["x"] and m.output_names == ["y", "a"] and m.opset == 13
    assert m.graph is m.proto.graph and m.name == "facts" and not m.has_external_data
    assert M.load(helper.make_model(g, opset_imports=[helper.make_opsetid("ai.onnx", 11)])).opset == 11
    assert M.load(helper.make_model(g, opset_imports=[helper.make_opsetid("x.y", 3)])).opset == 0
    assert repr(m) == f"<workbench.Model 'facts' nodes=2 hash={m.short_hash}>" and len(m.short_hash) == 12
    assert m.short_hash == m.hash[:12] and len(m.hash) == 64
    m.require_inputs("running")
    no_in = M.load(_proto(_graph([helper.make_node("Constant", [], ["y"], name="k",
                                                   value=numpy_helper.from_array(np.ones(2, np.float32), "v"))],
                                 inputs=())))
    with pytest.raises(ModelLoadError, match="has no inputs: timing needs at least one input"):
        no_in.require_inputs("timing")
    assert M.load(m) is m
    with pytest.raises(ModelLoadError, match="cannot load a model from int"):
        M.load(3)


def test_hash_covers_external_bytes(folder):
    (folder / "m.onnx").write_bytes(_ext_proto("w.bin").SerializeToString())
    a = M.load(folder / "m.onnx")
    assert a.has_external_data and a.source == folder / "m.onnx" and a.base_dir == folder
    h1 = a.hash
    (folder / "w.bin").write_bytes(np.arange(4, 8, dtype=np.float32).tobytes())
    assert M.load(folder / "m.onnx").hash != h1  # same proto, other weights: another hash
    assert repr(a).endswith(f"source={str(folder / 'm.onnx')!r}>")


# ------------------------------------------------------------------------------------------ survivors of the first run
def test_graph_cycle_names_shadowing_inputs_and_initializers_are_not_cycles():
    """A node whose output reuses the name of a graph input / initializer / sparse initializer / outer value
    reads the given value, not its own output (the name is known before any node runs)."""
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    assert M.graph_cycle(_graph([helper.make_node("Add", ["x", "w"], ["w"], name="n"),
                                 helper.make_node("Relu", ["w"], ["y"], name="r")], [w])) is None
    assert M.graph_cycle(_graph([helper.make_node("Relu", ["x"], ["x"], name="n"),
                                 helper.make_node("Relu", ["x"], ["y"], name="r")])) is None
    sp = _graph([helper.make_node("Add", ["x", "s"], ["s"], name="n"), helper.make_node("Relu", ["s"], ["y"], name="r")])
    sp.sparse_initializer.append(helper.make_sparse_tensor(numpy_helper.from_array(np.ones(1, np.float32), "s"),
                                                           numpy_helper.from_array(np.zeros(1, np.int64), "si"), [2]))
    assert M.graph_cycle(sp) is None
    assert M.graph_cycle(_graph([helper.make_node("Relu", ["o"], ["o"], name="n")], inputs=()), frozenset({"o"})) is None
    assert M.graph_cycle(_graph([helper.make_node("Relu", ["o"], ["o"], name="n")], inputs=())) == ["n"]


def test_graph_cycle_counts_every_pending_input():
    """n_b waits on a (from a ready node) and on c (from the cycle): one ready input must not release it."""
    g = _graph([helper.make_node("Relu", ["x"], ["a"], name="n_a"),
                helper.make_node("Add", ["a", "c"], ["b"], name="n_b"),
                helper.make_node("Relu", ["b"], ["c"], name="n_c"),
                helper.make_node("Relu", ["a"], ["y"], name="out")])
    assert M.graph_cycle(g) == ["n_b", "n_c"]


def test_graph_cycle_one_looping_node_among_free_ones():
    g = _graph([helper.make_node("Relu", ["x"], ["y"], name="free"),
                helper.make_node("Add", ["x", "s"], ["s"], name="me")])
    assert M.graph_cycle(g) == ["me"]
    g3 = _graph([helper.make_node("Relu", ["x"], ["y"], name="f1"), helper.make_node("Relu", ["x"], ["z"], name="f2"),
                 helper.make_node("Add", ["x", "s"], ["s"], name="me")], outputs=("y", "z"))
    assert M.graph_cycle(g3) == ["me"]


def test_tensor_problem_more_storage_fields():
    assert M.tensor_problem(TensorProto(name="e", data_type=TensorProto.FLOAT, dims=[2], raw_data=b"")) == \
        "holds 0 bytes but its shape [2] needs 8"  # raw_data set (even empty) is the storage that counts
    assert M.tensor_problem(TensorProto(name="i", data_type=TensorProto.INT32, dims=[4], int32_data=[1, 2, 3])) == \
        "holds 3 values but its shape [4] needs 4"
    assert M.tensor_problem(TensorProto(name="d", data_type=TensorProto.DOUBLE, dims=[4], double_data=[1.0])) == \
        "holds 1 values but its shape [4] needs 4"
    assert M.tensor_problem(TensorProto(name="u", data_type=TensorProto.UINT64, dims=[2], uint64_data=[1])) == \
        "holds 1 values but its shape [2] needs 2"
    assert M.tensor_problem(TensorProto(name="c", data_type=TensorProto.COMPLEX128, dims=[3],
                                        double_data=[1, 2, 3, 4, 5, 6])) is None  # 3 complex values
    i4 = helper.make_tensor("i4", TensorProto.INT4, [4], [1, 2, 3, 4])  # two values per stored int32
    assert M.tensor_problem(i4) is None
    ext = TensorProto(name="x", data_type=TensorProto.FLOAT, dims=[4], float_data=[1.0, 2.0])
    ext.data_location = TensorProto.EXTERNAL
    assert M.tensor_problem(ext) is None  # the data lives in the file: what is inline is not judged


def test_check_structure_tolerates_type_mismatches_shape_inference_can_skip():
    """A type mismatch (float + int64) is left to the runtime's own error; only what onnx cannot shape-infer
    at all stops the check (type checking is off in that inference)."""
    w = numpy_helper.from_array(np.ones(2, np.int64), "w")
    m = M.load(_proto(_graph([helper.make_node("Add", ["x", "w"], ["y"], name="n")], [w])))
    m.check_structure()


def test_output_path_checks_name_what_would_be_overwritten(folder, tmp_path):
    from workbench.errors import OutputError

    src = folder / "m.onnx"
    src.write_bytes(_ext_proto("w.bin").SerializeToString())
    m = M.load(src)
    with pytest.raises(OutputError, match="refusing to overwrite the source model .* with an output \\("):
        m.check_output_path(src)
    with pytest.raises(OutputError, match="with the model \\("):
        m.save(src)
    (folder / "m.onnx.data").write_bytes(b"x")
    with pytest.raises(OutputError, match="refusing to overwrite .*w.bin with the report: it holds the source"):
        m.check_output_path(folder / "w.bin", what="the report")
    other = tmp_path / "other.onnx"
    other.write_bytes(b"old")
    assert m.check_output_path(other) == other  # an existing file that is not the source: allowed
    assert m.check_output_path(tmp_path / "new.onnx") == tmp_path / "new.onnx"
    from_bytes = M.load(_proto(_graph([helper.make_node("Relu", ["x"], ["y"], name="r")])))
    assert from_bytes.check_output_path(other) == other  # no source at all


def test_save_refuses_to_put_data_over_the_sources_data(folder, tmp_path):
    from workbench.errors import OutputError

    src = folder / "w.bin.onnx"  # saving as w.onnx would write w.onnx.data; name the data file like the source's
    src.write_bytes(_ext_proto("w.bin").SerializeToString())
    m = M.load(src)
    target = folder / "w.onnx"
    (folder / "w.onnx.data").symlink_to(folder / "w.bin")
    with pytest.raises(OutputError, match="with the model's external data"):
        m.save(target)


def test_save_with_external_data_stages_next_to_the_target(tmp_path, monkeypatch):
    import tempfile

    seen = []
    real = tempfile.TemporaryDirectory

    def spy(*a, **k):
        seen.append(k)
        return real(*a, **k)

    monkeypatch.setattr(tempfile, "TemporaryDirectory", spy)
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    m = M.load(_proto(_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [w])))
    out = m.save(tmp_path / "d" / "m.onnx", external_data=True)
    assert seen == [{"dir": out.parent, "prefix": ".wb-save-"}]  # same filesystem: the final rename is atomic
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx", "m.onnx.data"]


def test_path_for_runtime_of_an_in_memory_model(tmp_path):
    m = M.load(_proto(_graph([helper.make_node("Relu", ["x"], ["y"], name="r")])), name="mem")
    p = m.path_for_runtime()
    assert p.name == f"mem-{m.short_hash}.onnx" and p.exists() and M.load(p).hash == m.hash
    q = m.path_for_runtime(tmp_path / "work")
    assert q == tmp_path / "work" / f"mem-{m.short_hash}.onnx" and q.exists()


def test_graph_cycle_subgraph_reads_an_outer_value_it_also_names():
    """A subgraph node may reuse an outer value's name for its output; it reads the outer value (scope)."""
    g = _graph([helper.make_node("Relu", ["x"], ["r"], name="outer_r"),
                _if_node([helper.make_node("Relu", ["r"], ["r"], name="shadow"),
                          helper.make_node("Identity", ["r"], ["t_out"], name="ident")])],
               inputs=("x", "cond"))
    assert M.graph_cycle(g) is None


def test_graph_cycle_looks_into_graph_list_attributes_and_skips_others():
    cyclic = helper.make_graph([helper.make_node("Relu", ["u"], ["v"], name="g1"),
                                helper.make_node("Relu", ["v"], ["u"], name="g2")], "body", [],
                               [helper.make_tensor_value_info("v", TensorProto.FLOAT, [2])])
    node = helper.make_node("Custom", ["x"], ["y"], name="c", domain="my.domain", bodies=[cyclic], axis=1)
    assert {a.name: a.type for a in node.attribute}["bodies"] == onnx.AttributeProto.GRAPHS
    assert M.graph_cycle(_graph([node])) == ["g1", "g2"]
    plain = _graph([helper.make_node("Softmax", ["x"], ["y"], name="s", axis=-1)])  # a non-graph attribute
    assert M.graph_cycle(plain) is None
