"""The graph viewer's diff colours and the diff table (edit.diff.diff_models) come from one matching, so
they agree: renamed nodes are *renamed* (not removed + added), tensor renames alone change nothing."""
from __future__ import annotations

from onnx import TensorProto as T
from onnx import helper as h

import workbench
from workbench.edit.diff import diff_models
from workbench.graph import DIFF_COLORS, GraphPayload


def _model(nodes, out="y"):
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 4])],
                     [h.make_tensor_value_info(out, T.FLOAT, [1, 4])])
    return workbench.load(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]))


def test_payload_statuses_match_the_diff_table():
    a = _model([h.make_node("Relu", ["x"], ["t1"], name="relu"),
                h.make_node("Sigmoid", ["t1"], ["t2"], name="sig"),
                h.make_node("Add", ["t2", "t1"], ["t3"], name="add"),
                h.make_node("Neg", ["t3"], ["y"], name="gone")])
    b = _model([h.make_node("Relu", ["x"], ["t1"], name="relu_renamed"),   # node renamed
                h.make_node("Sigmoid", ["t1"], ["t2b"], name="sig"),         # output tensor renamed only
                h.make_node("Mul", ["t2b", "t1"], ["t3"], name="add"),       # op changed
                h.make_node("Abs", ["t3"], ["y"], name="new")])              # removed + added
    table = diff_models(a, b)
    nodes = table[table.kind == "node"]
    want = dict(zip(nodes.onnx_node, nodes.change))
    assert want == {"relu_renamed": "renamed", "add": "changed", "gone": "removed", "new": "added"}
    assert ("renamed", "tensor", "t2b") in set(zip(table.change, table.kind, table.tensor))

    p = GraphPayload.diff(a, b)
    status = {r.name: r.status for r in p.recs if r.kind == "op"}
    assert status == {**want, "sig": "same"}  # the same statuses, and nothing else changed
    assert p.node_colors[p.node_id("relu_renamed")] == DIFF_COLORS["renamed"]
    assert [r.name for r in p.recs if r.kind == "op"].index("gone") == 3  # a removed node sits where it was (after add)
    back = GraphPayload.diff(b, a)
    assert {r.name: r.status for r in back.recs if r.kind == "op"}["relu"] == "renamed"
