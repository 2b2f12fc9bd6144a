"""Repair float type clashes that a float16 conversion can leave at block-list boundaries.

onnxconverter-common inserts Casts only where it finds ``value_info`` for a tensor. It misses
(1) initializers shared by a blocked and a converted node (kept fp32, fed into an fp16 node),
(2) tensors without inferred types, (3) nodes whose output type is fixed by an attribute
(``Cast(to=FLOAT)``, ``ConstantOfShape``), whose fp32 outputs then meet fp16 tensors.

:func:`repair_float_types` walks the main graph in order with ONNX's per-node type inference, and
where a node's float input does not have the float type the node computes in (fp16 for converted
nodes, fp32 for blocked ones) and the op accepts that type, inserts a Cast. It then rewrites
``value_info`` to the inferred types and casts graph outputs back to their declared type.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)
_TYPE_STR = {TensorProto.FLOAT: "tensor(float)", TensorProto.FLOAT16: "tensor(float16)",
             TensorProto.BFLOAT16: "tensor(bfloat16)"}


def _elem(tp: onnx.TypeProto) -> int:
    return tp.tensor_type.elem_type if tp.HasField("tensor_type") else 0


def _schema(node: onnx.NodeProto, opsets: dict[str, int]):
    try:
        return onnx.defs.get_schema(node.op_type, opsets.get(node.domain or "", 1), node.domain or "")
    except Exception:
        return None


def _allowed(schema, index: int, low: int) -> tuple[str | None, bool]:
    """(type-constraint param of input ``index``, whether it allows ``low``)."""
    if schema is None or not schema.inputs:
        return None, False
    formal = schema.inputs[min(index, len(schema.inputs) - 1)]
    ts = formal.type_str
    for c in schema.type_constraints:
        if c.type_param_str == ts:
            return ts, _TYPE_STR[low] in c.allowed_type_strs
    return ts, ts == _TYPE_STR[low]


def _accepts(schema, node: onnx.NodeProto, types: dict, low: int) -> bool:
    """False when the node has float inputs and none of their type constraints allows ``low``."""
    if schema is None:
        return True
    float_inputs = [i for i, n in enumerate(node.input) if n in types and _elem(types[n]) in FLOATS]
    if not float_inputs:
        return True
    return any(_allowed(schema, i, low)[1] for i in float_inputs)


def repair_float_types(proto: onnx.ModelProto, blocked: set[str], *, low: int = TensorProto.FLOAT16,
                       declared_outputs: dict[str, int] | None = None,
                       fallback: list[str] | None = None, output_types: dict[str, int] | None = None) -> list[str]:
    """Insert Casts where float types clash (in place). Returns the names of the Casts added.

    ``blocked``: node names that compute in fp32; every other node computes in ``low`` where its op
    allows it (else in fp32: its name is appended to ``fallback``). ``declared_outputs``: graph output
    name → the type it must have. ``output_types``: element types of outputs ONNX's per-node inference
    cannot give (nodes holding subgraphs, kept fp32: their source types).
    """
    g = proto.graph
    opsets = {o.domain: o.version for o in proto.opset_import}
    types: dict[str, onnx.TypeProto] = {}
    for vi in list(g.input) + list(g.value_info):
        types[vi.name] = vi.type
    for init in g.initializer:
        types[init.name] = helper.make_tensor_type_proto(init.data_type, list(init.dims))
    added: list[str] = []
    new_nodes: list[onnx.NodeProto] = []
    cast_cache: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int, shape_tp: onnx.TypeProto | None) -> str:
        key = (name, to)
        if key not in cast_cache:
            out = f"{name}__wb_cast_{TensorProto.DataType.Name(to).lower()}"
            cname = f"{out}_node"
            new_nodes.append(helper.make_node("Cast", [name], [out], name=cname, to=to))
            added.append(cname)
            tp = onnx.TypeProto()
            if shape_tp is not None:
                tp.CopyFrom(shape_tp)
            tp.tensor_type.elem_type = to
            types[out] = tp
            cast_cache[key] = out
        return cast_cache[key]

    for node in g.node:
        schema = _schema(node, opsets)
        want = TensorProto.FLOAT if node.name in blocked else low
        if want == low and not _accepts(schema, node, types, low):
            want = TensorProto.FLOAT  # this op (at this opset) has no `low` kernel signature
            if fallback is not None:
                fallback.append(node.name)
        has_subgraph = any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)
        if node.op_type != "Cast" and (not has_subgraph or want == TensorProto.FLOAT):
            # Inputs sharing a type parameter must agree: cast those of the "wrong" float type.
            for i, name in enumerate(node.input):
                if not name or name not in types:
                    continue
                have = _elem(types[name])
                if have not in FLOATS or have == want:
                    continue
                param, ok = _allowed(schema, i, want)
                if ok:
                    node.input[i] = cast(name, want, types[name])
        # Infer this node's output types from its (now consistent) inputs.
        inferred = {}
        if schema is not None and not has_subgraph:
            try:
                in_types = {n: types[n] for n in node.input if n and n in types}
                init_data = {i.name: i for i in g.initializer if i.name in node.input}
                inferred = onnx.shape_inference.infer_node_outputs(schema, node, in_types, init_data)
            except Exception:
                inferred = {}
        for o in node.output:
            if o in inferred and _elem(inferred[o]):
                types[o] = inferred[o]
            elif output_types and o in output_types and output_types[o]:
                types[o] = helper.make_tensor_type_proto(output_types[o], None)
        new_nodes.append(node)

    # Initializers also listed as graph inputs (IR < 4 style) must declare the initializer's type.
    init_types = {i.name: i.data_type for i in g.initializer}
    for vi in g.input:
        if vi.name in init_types and vi.type.tensor_type.elem_type != init_types[vi.name]:
            vi.type.tensor_type.elem_type = init_types[vi.name]
    # value_info must agree with what the nodes produce.
    for vi in g.value_info:
        if vi.name in types and _elem(types[vi.name]) and _elem(types[vi.name]) != vi.type.tensor_type.elem_type:
            vi.type.tensor_type.elem_type = _elem(types[vi.name])
    known_vi = {vi.name for vi in g.value_info}
    for name, tp in types.items():
        if name.endswith(tuple(f"__wb_cast_{TensorProto.DataType.Name(t).lower()}" for t in FLOATS)) \
                and name not in known_vi:
            g.value_info.append(helper.make_value_info(name, tp))
    # Graph outputs keep their declared type: rename the producer's tensor and cast back.
    declared = declared_outputs or {o.name: o.type.tensor_type.elem_type for o in g.output}
    for o in g.output:
        have = _elem(types.get(o.name, onnx.TypeProto()))
        need = declared.get(o.name, o.type.tensor_type.elem_type)
        if have in FLOATS and need in FLOATS and have != need:
            inner = f"{o.name}__wb_uncast"
            for n in new_nodes:
                for j, x in enumerate(n.output):
                    if x == o.name:
                        n.output[j] = inner
                for j, x in enumerate(n.input):
                    if x == o.name:
                        n.input[j] = inner
            cname = f"{o.name}__wb_output_cast"
            new_nodes.append(helper.make_node("Cast", [inner], [o.name], name=cname, to=need))
            added.append(cname)
            o.type.tensor_type.elem_type = need
            tp = onnx.TypeProto()
            tp.CopyFrom(types[o.name])
            g.value_info.append(helper.make_value_info(inner, tp))
    del g.node[:]
    g.node.extend(_toposort(new_nodes, g))
    return added


def _toposort(nodes: list[onnx.NodeProto], g: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Stable topological order, O(n log n), outer-scope reads of subgraphs included (the Casts were
    appended where their inputs were already available, except output casts)."""
    from ..edit.topo import toposort_graph

    tmp = onnx.GraphProto()
    tmp.input.extend(g.input)
    tmp.initializer.extend([])  # initializers are never produced by nodes: no ordering constraint
    tmp.node.extend(nodes)
    toposort_graph(tmp, recurse=False)
    return list(tmp.node)


def _rename_reads(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    """Rename node inputs (in ``graph`` and every nested subgraph: outer-scope reads) and graph outputs."""
    from ..edit.topo import iter_graphs

    if not mapping:
        return
    for sg in iter_graphs(graph):
        for n in sg.node:
            for i, x in enumerate(n.input):
                if x in mapping:
                    n.input[i] = mapping[x]
        if sg is not graph:
            for o in sg.output:
                if o.name in mapping:
                    o.name = mapping[o.name]


def drop_round_trip_casts(proto: onnx.ModelProto, *, low: int = TensorProto.FLOAT16) -> list[str]:
    """Remove ``fp32 → low → fp32`` Cast pairs (in place); returns the names of the Casts removed.

    The converter casts the outputs of fp32-kept nodes down to ``low`` for their (presumed low
    precision) consumers; when the consumer is a Cast back to fp32 (a kept node, or a graph output
    that keeps its fp32 type), the pair only rounds the values. Readers of the second Cast's output
    (subgraph outer-scope reads included) read the fp32 tensor instead; a graph output keeps its name
    (the producer writes it directly, or through an Identity when the tensor is a graph input, an
    initializer, another graph output or read by a subgraph). One pass, O(nodes).
    """
    from ..edit.topo import outer_refs

    g = proto.graph
    types = {vi.name: _elem(vi.type) for vi in list(g.input) + list(g.value_info) + list(g.output)}
    types.update({i.name: i.data_type for i in g.initializer})
    outputs = {o.name for o in g.output}
    subgraph_reads: set[str] = set()
    for n in g.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            subgraph_reads |= outer_refs(n)

    def to_of(n: onnx.NodeProto) -> int | None:
        return next((a.i for a in n.attribute if a.name == "to"), None) if n.op_type == "Cast" else None

    producer = {o: n for n in g.node for o in n.output}
    n_consumers: dict[str, int] = {}
    for n in g.node:
        for x in set(n.input):
            n_consumers[x] = n_consumers.get(x, 0) + 1
    for x in subgraph_reads:
        n_consumers[x] = n_consumers.get(x, 0) + 1
    read_map: dict[str, str] = {}  # y (output of a removed fp32 Cast) -> t (the fp32 tensor)
    write_map: dict[str, str] = {}  # t -> graph output name y (the producer writes the output itself)
    removed_ids: set[int] = set()
    removed: list[str] = []
    identities: list[tuple[onnx.NodeProto, onnx.NodeProto]] = []  # (after node, Identity)
    removed_by_u: dict[str, int] = {}
    for b in g.node:
        if to_of(b) != TensorProto.FLOAT or not b.input:
            continue
        a = producer.get(b.input[0])
        if a is None or to_of(a) != low or types.get(a.input[0]) != TensorProto.FLOAT:
            continue
        t, y, u = a.input[0], b.output[0], b.input[0]
        if y in outputs:
            p = producer.get(t)
            if p is None or t in outputs or t in subgraph_reads or t in write_map:
                identities.append((a, helper.make_node("Identity", [t], [y], name=f"{b.name}__wb_identity")))
            else:
                write_map[t] = y
        else:
            read_map[y] = t
        removed_ids.add(id(b))
        removed.append(b.name)
        removed_by_u[u] = removed_by_u.get(u, 0) + 1
    if not removed:
        return removed
    drop_vi: set[str] = set(write_map)
    for u, count in removed_by_u.items():
        a = producer[u]
        if u not in outputs and count == n_consumers.get(u, 0):
            removed_ids.add(id(a))
            removed.append(a.name)
            drop_vi.add(u)
    # Readers of y read t; then t (written by its producer) is renamed to the graph output y.
    composed = {y: write_map.get(t, t) for y, t in read_map.items()}
    composed.update({t: y for t, y in write_map.items()})
    after: dict[int, list[onnx.NodeProto]] = {}
    for a, ident in identities:
        after.setdefault(id(a), []).append(ident)
    nodes: list[onnx.NodeProto] = []
    for n in g.node:
        if id(n) not in removed_ids:
            nodes.append(n)
        nodes.extend(after.get(id(n), []))
    for n in nodes:
        for i, x in enumerate(n.output):
            if x in write_map:
                n.output[i] = write_map[x]
    del g.node[:]
    g.node.extend(nodes)
    _rename_reads(g, composed)
    # Identity inputs were renamed too; an Identity t->y must keep reading t's final name.
    keep = [vi for vi in g.value_info if vi.name not in drop_vi]
    del g.value_info[:]
    g.value_info.extend(keep)
    return removed
