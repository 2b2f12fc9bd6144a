"""Group names for graphs without name scopes: chunks are cut at stage boundaries (strided Conv /
pooling, upsampling) and named after them, else named by node range; never anonymous "#1 (200 items)"."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from workbench.graph import CHUNK, CHUNK_MAX, GraphPayload


def _cnn(stages: list[int], size: int = 64) -> onnx.ModelProto:
    """An unscoped CNN (empty node names, like Paddle exports): stages of 3x3 conv + relu pairs, each
    stage after the first starting with a stride-2 conv."""
    nodes, inits, x, c, hw = [], [], "x", 4, size
    k = 0
    for si, pairs in enumerate(stages):
        for j in range(pairs):
            stride = 2 if (si > 0 and j == 0) else 1
            w = f"w{k}"
            inits.append(numpy_helper.from_array(np.zeros((c, c, 3, 3), np.float32), w))
            nodes.append(helper.make_node("Conv", [x, w], [f"c{k}"], strides=[stride, stride], pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("Relu", [f"c{k}"], [f"r{k}"]))
            x = f"r{k}"
            k += 1
            hw = hw // stride
    g = helper.make_graph(nodes, "unscoped", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, size, size])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, c, hw, hw])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_unscoped_cnn_is_grouped_by_stage():
    p = GraphPayload.from_model(_cnn([60, 60, 60]))  # 360 nodes > CHUNK_MAX at the root
    assert 360 > CHUNK_MAX
    chunks = [g for g in p.groups.values() if g.kind == "chunk"]
    labels = [g.label for g in chunks]
    assert [lbl.split(" ·")[0] for lbl in labels] == ["stage 1", "stage 2", "stage 3"]
    assert labels[1].endswith("32×32") and labels[2].endswith("16×16")  # resolution after the stride
    assert [g.size for g in chunks] == [120, 120, 120]
    assert not any("items)" in lbl for lbl in labels)
    # each stage box starts with its strided conv
    first = [p.recs[min((v for t, v in g.children if t == "n"), key=lambda v: p.rank[v])] for g in chunks[1:]]
    for r in first:
        strides = next(a.ints for a in r.proto.attribute if a.name == "strides")
        assert r.op == "Conv" and list(strides) == [2, 2]


def test_long_stage_is_split_in_named_parts_and_no_stage_falls_back_to_ranges():
    p = GraphPayload.from_model(_cnn([30, 170]))  # stage 2 has 340 nodes: split in CHUNK-sized parts
    labels = [g.label for g in p.groups.values() if g.kind == "chunk"]
    assert labels[0] == "stage 1" or labels[0].startswith("stage 1 ·")
    assert any("(part 1/2)" in lbl for lbl in labels) and any("(part 2/2)" in lbl for lbl in labels)
    q = GraphPayload.from_model(_cnn([150]))  # no stride anywhere: node ranges
    labels = [g.label for g in q.groups.values() if g.kind == "chunk"]
    assert labels[0] == f"nodes 1–{CHUNK}" and labels[1].startswith(f"nodes {CHUNK + 1}–")
