"""Synthetic graphs of any size, for benchmarks, tests and trying the viewer on big models.

    from workbench.synthetic import chain_model
    m = chain_model(10_000, scoped=True)     # an onnx.ModelProto: 10k unary ops in a chain
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

OPS = ("Relu", "Sigmoid", "Neg", "Abs")


def chain_model(n: int, *, scoped: bool = False, blocks: int = 100, layers: int = 10) -> onnx.ModelProto:
    """``n`` unary ops in a chain (x [1,16] → y). ``scoped``: node names ``/block{i}/layer{j}/Op_k``
    (``blocks`` × ``layers`` name scopes), else flat names ``Op_k``."""
    nodes, prev = [], "x"
    per_block = max(1, n // blocks)
    per_layer = max(1, per_block // layers)
    for k in range(n):
        op = OPS[k % len(OPS)]
        out = f"t{k}" if k < n - 1 else "y"
        name = f"/block{k // per_block}/layer{(k % per_block) // per_layer}/{op}_{k}" if scoped else f"{op}_{k}"
        nodes.append(helper.make_node(op, [prev], [out], name=name))
        prev = out
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
