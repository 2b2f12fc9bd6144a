"""Resolve control flow before a TensorRT-family build: freeze inputs to constants, fold, inline the taken If branch.

TensorRT's control-flow support is narrower than ONNX's (TensorRT-RTX 1.7 stops with the native assertion
``graphScope.cpp ... tScope.getType() != ScopeType::kUNDEFINED`` on the silero VAD graphs). Most If nodes in
exported models do not depend on data at all: TorchScript writes ``squeeze(dim)`` as ``If(shape[dim] == 1)``,
an RNN wrapper branches on ``state.shape[0]``, a VAD on its sample rate ``sr``. Once the profile fixes those
dims (min = opt = max) or the user fixes the value, the condition is a constant and the If can be replaced by
the branch it takes.

:func:`fold_control_flow` does that on a copy of the model, never the source:

1. ``freeze``: graph inputs replaced by constants of the given value (the engine then answers for that value
   only; recorded).
2. ``fixed_dims``: input dims the profile fixes are written into the input's type.
3. Repeat until nothing changes: shape inference, constant folding of the main graph (ONNX GraphSurgeon with
   ONNX Runtime, shapes folded), then every main-graph If whose condition is a constant is replaced by its taken
   branch: the branch's nodes and initializers move into the main graph, names that would collide are renamed
   (nested bodies reading them follow), each branch output is bound to the If's output by an Identity. A nested
   If that comes up into the main graph is handled in the next round.
4. The result must pass the full checker and strict shape inference, else :class:`EditError` (nothing returned
   half-done).

Returns ``(model, report)``; ``report`` says what was frozen, fixed and inlined and which If/Loop/Scan nodes
remain, each with the graph inputs its condition depends on (so an error can say which input to freeze).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import EditError, UsageError
from ..model import Model
from .topo import iter_graphs, outer_refs, subgraphs_of, toposort_model

CONTROL_FLOW = ("If", "Loop", "Scan")
#: never folded (a precision recipe put them there on purpose)
_KEEP_OPS = ("QuantizeLinear", "DequantizeLinear")


def control_flow_nodes(proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Main-graph If/Loop/Scan nodes."""
    return [n for n in proto.graph.node if n.op_type in CONTROL_FLOW]


def condition_inputs(proto: onnx.ModelProto, node: onnx.NodeProto) -> list[str]:
    """Graph inputs the first input of ``node`` (an If condition, a Loop trip count/condition) depends on,
    through the main graph (and the outer reads of any If/Loop on the way). ``"shape:NAME"``: only through a
    ``Shape``/``Size`` of it (its dims, not its values)."""
    producer = {o: n for n in proto.graph.node for o in n.output if o}
    inputs = {i.name for i in proto.graph.input}
    seen: set[tuple[str, bool]] = set()
    stack = [(x, False) for x in list(node.input)[:2 if node.op_type == "Loop" else 1] if x]
    found: set[str] = set()
    while stack:
        t, via_shape = stack.pop()
        if (t, via_shape) in seen:
            continue
        seen.add((t, via_shape))
        if t in inputs:
            found.add(f"shape:{t}" if via_shape else t)
            continue
        p = producer.get(t)
        if p is None:
            continue
        nxt = via_shape or p.op_type in ("Shape", "Size")
        if p.op_type == "If":  # which branch (so also the shape of its output) follows the condition's value
            stack.append((p.input[0], False))
        else:
            stack.extend((x, nxt) for x in p.input if x)
        if subgraphs_of(p):
            stack.extend((x, nxt) for x in outer_refs(p))
    # a value dependency makes the shape one redundant
    return sorted(f for f in found if not (f.startswith("shape:") and f[6:] in found))


def _freeze(proto: onnx.ModelProto, freeze: Mapping[str, Any]) -> dict[str, Any]:
    g = proto.graph
    by_name = {i.name: i for i in g.input}
    unknown = [k for k in freeze if k not in by_name]
    if unknown:
        from ..shapes import unknown_names_message

        raise UsageError(unknown_names_message("freeze", unknown, list(by_name)))
    done: dict[str, Any] = {}
    for name, value in freeze.items():
        vi = by_name[name]
        tt = vi.type.tensor_type
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        except Exception:  # noqa: BLE001
            raise UsageError(f"freeze: input {name!r} is not a tensor input") from None
        arr = np.asarray(value)
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim] if tt.HasField("shape") else None
        if dims is not None:
            if len(dims) == 0 and arr.size == 1:
                arr = arr.reshape(())
            if arr.ndim != len(dims) or any(d is not None and d != s for d, s in zip(dims, arr.shape)):
                raise UsageError(f"freeze: input {name!r} has shape {dims}; the value has shape {list(arr.shape)}")
        if np.issubdtype(dtype, np.integer) and not np.all(np.equal(np.mod(arr, 1), 0)):
            raise UsageError(f"freeze: input {name!r} is {dtype.name}; {value!r} is not an integer")
        arr = arr.astype(dtype)
        g.input.remove(vi)
        g.initializer.append(numpy_helper.from_array(arr, name))
        done[name] = arr.tolist()
    return done


def _fix_dims(proto: onnx.ModelProto, fixed_dims: Mapping[str, Mapping[int, int]]) -> dict[str, dict[int, int]]:
    done: dict[str, dict[int, int]] = {}
    for vi in proto.graph.input:
        want = fixed_dims.get(vi.name)
        if not want or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        for ax, val in want.items():
            ax = int(ax)
            if 0 <= ax < len(dims) and not dims[ax].HasField("dim_value"):
                dims[ax].ClearField("dim_param")
                dims[ax].dim_value = int(val)
                done.setdefault(vi.name, {})[ax] = int(val)
    return done


def _const_value(proto: onnx.ModelProto, name: str) -> np.ndarray | None:
    for i in proto.graph.initializer:
        if i.name == name:
            return numpy_helper.to_array(i)
    for n in proto.graph.node:
        if n.op_type == "Constant" and name in n.output:
            a = next((a for a in n.attribute if a.name == "value"), None)
            return numpy_helper.to_array(a.t) if a is not None else None
    return None


def _static_shapes(proto: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for vi in list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            out[vi.name] = tuple(d.dim_value for d in tt.shape.dim)
    for i in proto.graph.initializer:
        out[i.name] = tuple(i.dims)
    return out


def _fold_sizes(proto: onnx.ModelProto) -> int:
    """``Shape``/``Size`` of a tensor whose shape is fully static → a constant (in place). Covers the rank test
    TorchScript writes as ``Size(Shape(x))`` (a Shape output always has a static shape: [rank])."""
    shapes = _static_shapes(proto)
    n_done = 0
    for n in proto.graph.node:
        if n.op_type not in ("Size", "Shape") or not n.input or n.input[0] not in shapes:
            continue
        shp = shapes[n.input[0]]
        if n.op_type == "Size":
            value = np.array(int(np.prod(shp, dtype=np.int64)), np.int64)
        else:
            if any(a.name in ("start", "end") for a in n.attribute):
                continue
            value = np.array(shp, np.int64)
        out = n.output[0]
        del n.input[:]
        del n.attribute[:]
        n.op_type, n.domain = "Constant", ""
        n.attribute.append(onnx.helper.make_attribute("value", numpy_helper.from_array(value, out)))
        n_done += 1
    return n_done


def _fold(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Shape inference + GraphSurgeon constant folding (shapes folded) of the main graph only."""
    import onnx_graphsurgeon as gs

    toposort_model(proto)
    # stale value_info (symbolic dims written before dims were fixed) would win over what inference finds now
    del proto.graph.value_info[:]
    try:
        proto = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:  # noqa: BLE001 - fold without inferred shapes
        pass
    _fold_sizes(proto)
    graph = gs.import_onnx(proto)
    # Q/DQ of constant weights stay as they are: folding them would turn an int8 variant's weights back to fp32
    graph.fold_constants(fold_shapes=True, recurse_subgraphs=False, flatten_subgraphs=False, error_ok=True,
                         should_exclude_node=lambda n: n.op in _KEEP_OPS)
    graph.cleanup()
    out = gs.export_onnx(graph)
    toposort_model(out)
    return out


def _inline_if(proto: onnx.ModelProto, node: onnx.NodeProto, take_then: bool) -> str:
    """Replace main-graph If ``node`` by its taken branch (in place). Returns the branch name."""
    g = proto.graph
    attr = "then_branch" if take_then else "else_branch"
    branch = next(a.g for a in node.attribute if a.name == attr)
    taken: dict[str, str] = {}
    used: set[str] = {i.name for i in g.input} | {i.name for i in g.initializer} | {o for n in g.node for o in n.output}
    used |= {n.name for n in g.node}
    defined = [i.name for i in branch.initializer] + [o for n in branch.node for o in n.output if o]
    for name in defined:
        if name in used or name in taken.values():
            new, k = f"{name}__{node.name or 'If'}", 0
            while new in used:
                k += 1
                new = f"{name}__{node.name or 'If'}_{k}"
            taken[name] = new
        used.add(taken.get(name, name))

    def rename_reads(sub: onnx.GraphProto) -> None:
        # nested bodies read the renamed names unless they define the same name themselves
        for sg in iter_graphs(sub):
            local = {i.name for i in sg.input} | {i.name for i in sg.initializer} | {o for n in sg.node for o in n.output}
            for sn in sg.node:
                for i, x in enumerate(sn.input):
                    if x in taken and x not in local:
                        sn.input[i] = taken[x]
            for o in sg.output:
                if o.name in taken and o.name not in local:
                    o.name = taken[o.name]

    new_nodes: list[onnx.NodeProto] = []
    for bn in branch.node:
        c = onnx.NodeProto()
        c.CopyFrom(bn)
        for i, x in enumerate(c.input):
            c.input[i] = taken.get(x, x)
        for i, x in enumerate(c.output):
            c.output[i] = taken.get(x, x)
        if c.name in used:
            c.name = f"{c.name}__{node.name or 'If'}"
        used.add(c.name)
        for sg in subgraphs_of(c):
            rename_reads(sg)
        new_nodes.append(c)
    for init in branch.initializer:
        c = onnx.TensorProto()
        c.CopyFrom(init)
        c.name = taken.get(init.name, init.name)
        g.initializer.append(c)
    for bo, io in zip(branch.output, node.output):
        if io:
            new_nodes.append(onnx.helper.make_node("Identity", [taken.get(bo.name, bo.name)], [io],
                                                   name=f"{node.name or 'If'}/{attr}/{io}"))
    idx = list(g.node).index(node)
    nodes = list(g.node)
    nodes[idx:idx + 1] = new_nodes
    del g.node[:]
    g.node.extend(nodes)
    return attr


def fold_control_flow(model: Model, *, freeze: Mapping[str, Any] | None = None,
                      fixed_dims: Mapping[str, Mapping[int, int]] | None = None,
                      max_rounds: int = 16) -> tuple[Model, dict]:
    """Freeze inputs, fix dims, fold and inline constant-condition If nodes (see the module doc).

    Returns ``(model, report)``; ``model`` is ``model`` itself when nothing was inlined and nothing frozen.
    ``report``: ``frozen`` {input: value}, ``fixed_dims`` {input: {axis: size}}, ``inlined`` [{node, branch}],
    ``remaining`` [{node, op_type, depends_on}], ``rounds``."""
    from ..precision.validity import strict_problems

    proto = model.proto_with_data()
    report: dict[str, Any] = {"frozen": {}, "fixed_dims": {}, "inlined": [], "remaining": [], "rounds": 0}
    if not any(n.op_type in CONTROL_FLOW for n in proto.graph.node) and not freeze:
        return model, report
    report["frozen"] = _freeze(proto, freeze or {})
    report["fixed_dims"] = _fix_dims(proto, fixed_dims or {})
    for _ in range(max_rounds):
        report["rounds"] += 1
        ifs = [n for n in proto.graph.node if n.op_type == "If"]
        if not ifs:
            break
        try:
            proto = _fold(proto)
        except Exception as e:  # noqa: BLE001
            raise EditError(f"constant folding before inlining If branches failed: {' '.join(str(e).split())[:300]}") \
                from None
        changed = False
        for n in [n for n in proto.graph.node if n.op_type == "If"]:
            cond = _const_value(proto, n.input[0])
            if cond is None or cond.size != 1:
                continue
            branch = _inline_if(proto, n, bool(cond.reshape(())))
            report["inlined"].append({"node": n.name, "branch": branch})
            changed = True
        if not changed:
            break
        toposort_model(proto)
    if not report["inlined"] and not report["frozen"]:
        report["remaining"] = [{"node": n.name, "op_type": n.op_type, "depends_on": condition_inputs(proto, n)}
                               for n in control_flow_nodes(model.proto)]
        return model, report
    proto = _fold(proto)
    report["remaining"] = [{"node": n.name, "op_type": n.op_type, "depends_on": condition_inputs(proto, n)}
                           for n in control_flow_nodes(proto)]
    problems = strict_problems(proto)
    if problems:
        raise EditError(f"inlining If branches of {model.name!r} gave an invalid graph: {problems[0][:300]}",
                        hint="report the model; build without fold_control_flow")
    return model.derive(proto), report


__all__ = ["fold_control_flow", "control_flow_nodes", "condition_inputs", "CONTROL_FLOW"]
