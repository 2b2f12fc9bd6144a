"""Fast behavioural tests for workbench.precision.base (mutation target `precision-base`, tools/mutate.py):
the precision registry, the one precision-list parser, keep-list checks, graph helpers and recipe records,
on small graphs built with onnx.helper and real onnx / ONNX Runtime checks."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import workbench.precision  # noqa: F401  (registers the built-in precisions)
from workbench.errors import UnsupportedError, UsageError, WorkbenchError
from workbench.precision.base import (REGISTRY, Recipe, Request, base_recipe, calibrated, check_keep_nodes,
                                      check_keep_op_types, drop_initializer_inputs, full_check, get_recipe,
                                      keeps_graph, name_unnamed_nodes, ort_session_check, parse_precisions,
                                      precision_names, register_precision, short, unregister_precision,
                                      upgrade_opset, variant_name, version_of)


class _Toy(Recipe):
    precision = "toy8"
    tool = "toolkit"
    summary = "a test precision"


@pytest.fixture
def toy():
    yield _Toy()
    unregister_precision("toy8")
    unregister_precision("Toy8")


def test_register_sets_facts_and_copies_maps(toy):
    unsupported, notes = {"tensorrt": "no toy kernels"}, {"onnxruntime": "slow"}
    r = register_precision(toy, kind="qdq", needs_calibration=True, color="#123456", aliases=("toy",),
                           unsupported_on=unsupported, notes_on=notes)
    notes["tensorrt"] = "later edit"
    assert r is toy and REGISTRY["toy8"] is toy and precision_names()[-1] == "toy8"
    assert (toy.kind, toy.needs_calibration, toy.color, toy.aliases) == ("qdq", True, "#123456", ("toy",))
    unsupported["onnxruntime"] = "later edit"  # the registry keeps its own copy
    assert toy.unsupported_on == {"tensorrt": "no toy kernels"} and toy.notes_on == {"onnxruntime": "slow"}
    assert get_recipe(" TOY8 ") is toy and calibrated(["toy8", "fp16"]) == ["toy8"]
    assert not keeps_graph("toy8")
    unregister_precision("toy8")
    assert "toy8" not in REGISTRY and get_recipe("toy8", missing_ok=True) is None
    unregister_precision("toy8")  # twice: no error


def test_register_refusals(toy):
    with pytest.raises(UsageError):
        register_precision(toy, colour="#000000")
    before = dict(REGISTRY)
    for bad in ("", "a,b", "Toy8", " toy8", None):
        t = _Toy()
        t.precision = bad
        with pytest.raises(UsageError):
            register_precision(t)
        assert REGISTRY == before
    with pytest.raises(UsageError):
        register_precision(toy, kind="float")
    assert "toy8" not in REGISTRY
    for kind in ("none", "cast", "qdq"):
        register_precision(_Toy(), kind=kind)
        assert REGISTRY["toy8"].kind == kind


def test_builtin_registry_order_and_lookup():
    assert precision_names()[:6] == ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")
    assert get_recipe("fp16") is REGISTRY["fp16"] and get_recipe("  Fp16\t") is REGISTRY["fp16"]
    with pytest.raises(UsageError):
        get_recipe("fp17")
    with pytest.raises(UsageError):
        get_recipe(16)
    assert get_recipe(16, missing_ok=True) is None
    assert keeps_graph("fp32") and keeps_graph("tf32") and not keeps_graph("fp16") and not keeps_graph("nope")
    assert calibrated(["fp32", "int8", "fp16", "fp8", "nope", 8, None]) == ["int8", "fp8"]
    assert calibrated([]) == []


def test_parse_precisions():
    assert parse_precisions("fp32, FP16,,fp32 ") == ["fp32", "fp16"]
    assert parse_precisions(["INT8", " fp8", "int8", ""]) == ["int8", "fp8"]
    assert parse_precisions(("bf16",)) == ["bf16"]
    assert parse_precisions(p for p in ["tf32"]) == ["tf32"]
    for bad in ("", " , ", [], "fp17", ["fp32", "fp17"], 16):
        with pytest.raises(UsageError):
            parse_precisions(bad)


def test_request_recipe_record_and_names():
    assert not Request().mixed and Request(keep_nodes=("a",)).mixed and Request(keep_op_types=("Softmax",)).mixed
    req = Request(keep_nodes=("n1",), keep_op_types=("Softmax",), keep_io_types=0,
                  opts={"a": (1, 2), "b": {3: {4, }}, "c": None, "d": 1.5, "e": object, "f": "s", "g": True})
    rec = base_recipe("onnx", req, extra_key=7)
    assert rec["tool"] == "onnx" and rec["tool_version"] == onnx.__version__
    assert rec["keep_nodes"] == ["n1"] and rec["keep_op_types"] == ["Softmax"] and rec["keep_io_types"] is False
    assert rec["options"] == {"a": [1, 2], "b": {"3": [4]}, "c": None, "d": 1.5, "e": repr(object), "f": "s",
                              "g": True}
    assert rec["extra_key"] == 7
    assert base_recipe("none", Request())["tool_version"] == ""
    assert base_recipe("none", Request())["keep_io_types"] is True
    assert version_of("no-such-distribution-xyz") == "not installed"

    class M:
        name = "net"
    assert variant_name(M(), "int8", False) == "net-int8" and variant_name(M(), "int8", True) == "net-int8-mixed"


def test_recipe_defaults():
    t = _Toy()
    assert t.default_keep() == [] and repr(t) == "<workbench recipe toy8 via toolkit>"
    assert t.describe() == {"precision": "toy8", "tool": "toolkit", "what": "a test precision",
                            "default_keep_op_types": []}
    assert REGISTRY["fp16"].describe()["default_keep_op_types"] == REGISTRY["fp16"].default_keep()


def _graph(names=("", "", "Relu_0"), ops=("Relu", "Relu", "Neg"), ir=8, opset=17, init_inputs=False):
    nodes, prev = [], "x"
    for i, (n, o) in enumerate(zip(names, ops)):
        nodes.append(h.make_node(o, [prev], [f"t{i}"], name=n))
        prev = f"t{i}"
    nodes.append(h.make_node("Add", [prev, "b"], ["y"], name="add"))
    inputs = [h.make_tensor_value_info("x", T.FLOAT, [2])]
    if init_inputs:
        inputs.append(h.make_tensor_value_info("b", T.FLOAT, [2]))
    g = h.make_graph(nodes, "g", inputs, [h.make_tensor_value_info("y", T.FLOAT, [2])],
                     initializer=[numpy_helper.from_array(np.ones(2, np.float32), "b")])
    return h.make_model(g, ir_version=ir, opset_imports=[h.make_opsetid("", opset)])


def test_name_unnamed_nodes_gives_unique_names():
    p = _graph()
    assert name_unnamed_nodes(p) == ["Relu_0_", "Relu_1"]  # Relu_0 is taken by the third node
    assert [n.name for n in p.graph.node] == ["Relu_0_", "Relu_1", "Relu_0", "add"]
    q = _graph(names=("", "Relu_0", "Relu_0_"))
    assert name_unnamed_nodes(q) == ["Relu_0__"]
    assert name_unnamed_nodes(q) == []  # all named now


def test_drop_initializer_inputs():
    p = _graph(ir=3, init_inputs=True)
    assert drop_initializer_inputs(p) == 1
    assert [i.name for i in p.graph.input] == ["x"] and p.ir_version == 4
    assert drop_initializer_inputs(p) == 0 and p.ir_version == 4
    q = _graph(ir=8, init_inputs=True)
    assert drop_initializer_inputs(q) == 1 and q.ir_version == 8
    r = _graph(ir=3)
    assert drop_initializer_inputs(r) == 0 and r.ir_version == 3 and len(r.graph.input) == 1


def test_short_error_text():
    assert short(ValueError("first\nsecond line\n")) == "ValueError: second line"
    assert short(KeyError()) == "KeyError: "
    long = short(RuntimeError("x" * 400))
    assert len(long) == 300 and long.endswith("...") and long.startswith("RuntimeError: xxx")
    assert short(RuntimeError("x" * 10), limit=13) == "RuntimeErr..."
    exact = "RuntimeError: " + "y" * 6
    assert short(RuntimeError("y" * 6), limit=len(exact)) == exact


def test_upgrade_opset():
    p = _graph(opset=11)
    out, rec = upgrade_opset(p, 13)
    assert rec == {"from": 11, "to": 13}
    assert next(o.version for o in out.opset_import if o.domain in ("", "ai.onnx")) == 13
    same, none = upgrade_opset(out, 13)
    assert same is out and none is None
    assert upgrade_opset(_graph(opset=17), 13)[1] is None
    ai = _graph(opset=11)
    ai.opset_import[0].domain = "ai.onnx"
    assert upgrade_opset(ai, 11)[1] is None and upgrade_opset(ai, 12)[1] == {"from": 11, "to": 12}
    broken = _graph(opset=11)
    broken.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(UnsupportedError):
        upgrade_opset(broken, 13)


def test_keep_list_checks_and_hints():
    p = _graph(names=("relu_a", "relu_b", "neg"))
    check_keep_nodes(p, ["relu_a", "add"])
    with pytest.raises(UsageError) as e:
        check_keep_nodes(p, ["relu_a", "relu_c"])
    assert e.value.hint.startswith("close matches: ") and "relu_a" in e.value.hint and "relu_b" in e.value.hint
    with pytest.raises(UsageError) as e:
        check_keep_nodes(p, ["zzzzzzzz"])
    assert e.value.hint == "the graph has 4 named nodes, e.g. ['relu_a', 'relu_b', 'neg', 'add']"
    assert check_keep_op_types(("Softmax", "Relu")) == ["Softmax", "Relu"]
    assert check_keep_op_types(["Relu", "Softmax", "Conv"], p) == ["Relu", "Softmax", "Conv"]  # ONNX ops
    for bad in ([""], [None], [3]):
        with pytest.raises(UsageError):
            check_keep_op_types(bad)
    with pytest.raises(UsageError) as e:
        check_keep_op_types(["relu"], p)
    assert e.value.hint == "close matches: ['Relu']"  # the model's own op types first
    with pytest.raises(UsageError) as e:
        check_keep_op_types(["Softmaxx"], p)
    assert e.value.hint.startswith("close matches: [") and "'Softmax'" in e.value.hint
    with pytest.raises(UsageError) as e:
        check_keep_op_types(["qqqqqqqqqqqq"], p)
    assert e.value.hint == "the model's op types: ['Add', 'Neg', 'Relu']"
    assert check_keep_op_types(["qqqqqqqqqqqq"]) == ["qqqqqqqqqqqq"]  # without a model only the type is checked


def test_graph_checks():
    good = _graph(names=("a", "b", "c"))
    full_check(good, "fp16")
    ort_session_check(good, "fp16")
    bad = _graph(names=("a", "b", "c"))
    bad.graph.node[-1].input[1] = "missing"
    with pytest.raises(WorkbenchError):
        full_check(bad, "fp16")
    with pytest.raises(WorkbenchError):
        ort_session_check(bad, "fp16")
    typed = _graph(names=("a", "b", "c"))
    typed.graph.output[0].type.tensor_type.elem_type = T.INT64  # wrong output type: only the full check sees it
    with pytest.raises(WorkbenchError):
        full_check(typed, "fp16")


def test_ort_session_check_is_quiet(capfd):
    """The check session logs errors only: ONNX Runtime's warnings (an unused initializer here) stay off stderr."""
    p = _graph(names=("a", "b", "c"))
    p.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), "unused"))
    capfd.readouterr()
    ort_session_check(p, "fp16")
    assert "unused" not in capfd.readouterr().err


def test_naming_continues_after_a_named_node_and_opset_zero():
    p = _graph(names=("a", "", ""))
    assert name_unnamed_nodes(p) == ["Relu_1", "Neg_2"] and all(n.name for n in p.graph.node)
    custom_only = _graph(names=("a", "b", "c"))
    del custom_only.opset_import[:]
    custom_only.opset_import.append(h.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedError) as e:
        upgrade_opset(custom_only, 13)  # no default-domain opset: read as opset 0
    assert "uses opset 0;" in str(e.value)


def test_hints_list_at_most_five():
    p = _graph(names=tuple(f"layer_{c}" for c in "abc"), ops=("Relu",) * 3)
    for i, c in enumerate("def"):
        p.graph.node.append(h.make_node("Identity", ["x"], [f"o{i}"], name=f"layer_{c}"))
    with pytest.raises(UsageError) as e:
        check_keep_nodes(p, ["layer_z"])
    assert e.value.hint.startswith("close matches: [") and e.value.hint.count("'layer_") == 5
    with pytest.raises(UsageError) as e:
        check_keep_nodes(p, ["qqqqqqqqqqqq"])
    assert e.value.hint == ("the graph has 7 named nodes, e.g. ['layer_a', 'layer_b', 'layer_c', 'add', 'layer_d']")
    reduces = ("ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceL1")
    g = h.make_graph([h.make_node(o, ["x"], [f"r{i}"], name=f"n{i}") for i, o in enumerate(reduces)], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [2])],
                     [h.make_tensor_value_info(f"r{i}", T.FLOAT, None) for i in range(6)])
    with pytest.raises(UsageError) as e:
        check_keep_op_types(["Reduce"], h.make_model(g))  # six of the model's own op types are close: five listed
    assert e.value.hint.count("'Reduce") == 5
    with pytest.raises(UsageError) as e:
        check_keep_op_types(["ReduceSumX"], _graph())  # none in the model: five ONNX op names
    assert e.value.hint.startswith("close matches: [") and e.value.hint.count("'") == 10
