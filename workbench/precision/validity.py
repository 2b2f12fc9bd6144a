"""Every recipe's output is a valid model, or the recipe fails: strict checks, repair by keeping nodes in fp32.

* :func:`strict_problems` — ``onnx.checker`` with ``full_check=True`` and strict shape/type inference
  (``check_type=True, strict_mode=True``); returns the problems as text (empty: valid).
* :func:`failing_nodes` — the main-graph nodes named by such a message (a node inside an If/Loop/Scan
  body maps to the node holding that body).
* :func:`hide_subgraphs` / :func:`restore_subgraphs` — keep If/Loop/Scan nodes (with their bodies)
  in fp32 through a float16 converter: the converter sees an opaque node whose extra inputs are the
  outer-scope names the bodies read, so it casts them to fp32 like any blocked node's input; the
  bodies are restored untouched and read the fp32 copies.
* :func:`shape_compute_nodes` — float nodes that only compute shapes, indices or sizes (a float
  ``Div``/``Floor`` between ``Shape`` and ``Reshape``): never cast (fp16 rounds 2049 to 2048).
* :func:`repair_loop` — convert, check; on failure keep the nodes the checker names in fp32 and
  convert again (bounded); never returns an invalid model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import onnx
from onnx import TensorProto

from ..edit.topo import outer_refs, subgraphs_of
from ..errors import WorkbenchError

OPAQUE_DOMAIN = "workbench.opaque"

#: ``(op_type, input index)`` positions that take a shape, index, size, axes or count (any dtype).
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2),
    "Slice": (1, 2, 3, 4), "Squeeze": (1,), "Unsqueeze": (1,), "Pad": (1, 3), "TopK": (1,), "OneHot": (1,),
    "Resize": (1, 2, 3), "Upsample": (1,), "Gather": (1,), "GatherElements": (1,), "GatherND": (1,),
    "ScatterElements": (1,), "ScatterND": (1,), "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,),
    "ReduceMin": (1,), "ReduceProd": (1,), "ReduceL2": (1,), "Split": (1,), "CumSum": (1,), "Trilu": (1,),
    "NonMaxSuppression": (2, 3, 4), "Compress": (1,), "Loop": (0, 1), "If": (0,), "Where": (0,),
    "RoiAlign": (2,),
}
#: ops whose float output is an index/shape value when their input is one.
_INT_SOURCES = ("Shape", "Size", "NonZero", "ArgMax", "ArgMin")


def strict_problems(proto: onnx.ModelProto) -> list[str]:
    """Problems found by the full checker and strict shape/type inference (empty list: valid)."""
    problems: list[str] = []
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # noqa: BLE001 - ValidationError, InferenceError
        problems.append(f"onnx.checker: {_one_line(e)}")
    try:
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:  # noqa: BLE001
        text = f"strict shape inference: {_one_line(e)}"
        if not problems or _one_line(e) not in problems[0]:
            problems.append(text)
    return problems


def _one_line(e: BaseException, limit: int = 600) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_NODE_NAME = re.compile(r"node name: ([^)]*)\)|of node: name: (\S+)|node ([^\s:]+) \(|Node \(([^)]+)\)")


def failing_nodes(message: str, proto: onnx.ModelProto, candidates: set[str] | None = None) -> list[str]:
    """Main-graph node names a checker/inference message points at (outermost first).

    A name found only inside a subgraph maps to the main-graph node that holds that subgraph. With
    ``candidates`` (the source model's node names), a node the recipe inserted (a Cast, a Q/DQ pair) maps
    to the nearest source nodes it connects to (its consumers first, then its producers).
    """
    names = [next(x for x in m if x) for m in _NODE_NAME.findall(message)]
    top = {n.name for n in proto.graph.node}
    holder: dict[str, str] = {}
    for n in proto.graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            stack = list(subgraphs_of(n))
            while stack:
                g = stack.pop()
                for sn in g.node:
                    holder.setdefault(sn.name, n.name)
                    stack.extend(subgraphs_of(sn))
    out: list[str] = []
    for name in names:
        name = name.strip()
        top_name = name if name in top else holder.get(name)
        if not top_name:
            continue
        found = [top_name] if candidates is None or top_name in candidates else _nearest(proto, top_name, candidates)
        for f in found:
            if f not in out:
                out.append(f)
    return out


def _nearest(proto: onnx.ModelProto, name: str, candidates: set[str], depth: int = 4) -> list[str]:
    """Source nodes reached from inserted node ``name`` through its outputs (then inputs), breadth first."""
    g = proto.graph
    by_name = {n.name: n for n in g.node}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    for forward in (True, False):
        frontier = [by_name[name]] if name in by_name else []
        seen = {name}
        for _ in range(depth):
            nxt: list[onnx.NodeProto] = []
            for n in frontier:
                if forward:
                    nxt.extend(c for o in n.output for c in consumers.get(o, []))
                else:
                    nxt.extend(producer[x] for x in n.input if x in producer)
            hits = sorted({n.name for n in nxt if n.name in candidates})
            if hits:
                return hits
            frontier = [n for n in nxt if n.name not in seen]
            seen.update(n.name for n in frontier)
    return []


# ---------------------------------------------------------------------------------------------- subgraphs
@dataclass
class HiddenNode:
    name: str
    op_type: str
    domain: str
    graph_attrs: list[onnx.AttributeProto]
    n_inputs: int
    outer: list[str]


def hide_subgraphs(proto: onnx.ModelProto, names: set[str] | None = None) -> list[HiddenNode]:
    """Turn every main-graph node holding subgraphs into an opaque node (in place), for a converter that
    would otherwise retype its bodies inconsistently. The outer-scope names the bodies read become extra
    inputs of the opaque node (so the converter casts them like any input of a kept node).
    ``names``: only these nodes (default: all)."""
    hidden: list[HiddenNode] = []
    for n in proto.graph.node:
        graph_attrs = [a for a in n.attribute if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)]
        if not graph_attrs or (names is not None and n.name not in names):
            continue
        outer = sorted(outer_refs(n))
        rec = HiddenNode(n.name, n.op_type, n.domain, [], len(n.input), outer)
        for a in graph_attrs:
            c = onnx.AttributeProto()
            c.CopyFrom(a)
            rec.graph_attrs.append(c)
        keep = [a for a in n.attribute if a.type not in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)]
        del n.attribute[:]
        n.attribute.extend(keep)
        n.input.extend(outer)
        n.op_type = f"Opaque{rec.op_type}"
        n.domain = OPAQUE_DOMAIN
        hidden.append(rec)
    if hidden and not any(o.domain == OPAQUE_DOMAIN for o in proto.opset_import):
        proto.opset_import.append(onnx.helper.make_opsetid(OPAQUE_DOMAIN, 1))
    return hidden


def restore_subgraphs(proto: onnx.ModelProto, hidden: list[HiddenNode]) -> None:
    """Undo :func:`hide_subgraphs` (in place): restore op types and bodies; where the converter renamed
    an outer-scope input (a Cast to fp32 in front of the kept node), the bodies read the new name."""
    by_name = {h.name: h for h in hidden}
    for n in proto.graph.node:
        h = by_name.get(n.name)
        if h is None or n.domain != OPAQUE_DOMAIN:
            continue
        extra = list(n.input[h.n_inputs:])
        rename = {old: new for old, new in zip(h.outer, extra) if old != new}
        del n.input[h.n_inputs:]
        n.op_type, n.domain = h.op_type, h.domain
        for a in h.graph_attrs:
            c = n.attribute.add()
            c.CopyFrom(a)
            if rename:
                for g in ([c.g] if c.type == onnx.AttributeProto.GRAPH else list(c.graphs)):
                    _rename_outer_reads(g, rename)
    keep = [o for o in proto.opset_import if o.domain != OPAQUE_DOMAIN]
    del proto.opset_import[:]
    proto.opset_import.extend(keep)


def _rename_outer_reads(g: onnx.GraphProto, rename: dict[str, str]) -> None:
    from ..edit.topo import iter_graphs
    for sg in iter_graphs(g):
        for sn in sg.node:
            for i, x in enumerate(sn.input):
                if x in rename:
                    sn.input[i] = rename[x]
        for o in sg.output:  # a body output that is an outer tensor itself
            if o.name in rename:
                ident = sg.node.add()
                ident.CopyFrom(onnx.helper.make_node("Identity", [rename[o.name]], [o.name + "__wb_out"],
                                                     name=o.name + "__wb_out_identity"))
                o.name = o.name + "__wb_out"


# ---------------------------------------------------------------------------------------------- shape math
def shape_compute_nodes(proto: onnx.ModelProto) -> dict[str, str]:
    """Main-graph nodes with float outputs whose values only feed shape/index/size inputs (or an integer
    Cast): node name → reason. Casting them to fp16 would round large indices (fp16 has 11 significant
    bits: 2049 → 2048) and overflow sizes over 65504."""
    g = proto.graph
    outputs = {o.name for o in g.output}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in g.node:
        for i, x in enumerate(n.input):
            consumers.setdefault(x, []).append((n, i))
    subgraph_reads: set[str] = set()
    for n in g.node:
        if subgraphs_of(n):
            subgraph_reads |= outer_refs(n)
    int_types = {TensorProto.INT64, TensorProto.INT32, TensorProto.INT16, TensorProto.INT8, TensorProto.UINT8,
                 TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64, TensorProto.BOOL}
    shape_only: dict[str, bool] = {}
    result: dict[str, str] = {}
    # Reverse topological order: a tensor is shape-only when every use is a shape input, an integer Cast,
    # or a node all of whose outputs are shape-only.
    for n in reversed(list(g.node)):
        if not n.output:
            continue
        outs_shape_only = True
        for o in n.output:
            if not o:
                continue
            if o in outputs or o in subgraph_reads:
                outs_shape_only = False
                break
            uses = consumers.get(o, [])
            if not uses:
                outs_shape_only = False
                break
            for c, i in uses:
                if i in SHAPE_INPUTS.get(c.op_type, ()):
                    continue
                if c.op_type == "Cast" and next((a.i for a in c.attribute if a.name == "to"), 0) in int_types:
                    continue
                if all(shape_only.get(co, False) for co in c.output if co) and any(c.output):
                    continue
                outs_shape_only = False
                break
            if not outs_shape_only:
                break
        for o in n.output:
            shape_only[o] = outs_shape_only
        if outs_shape_only and n.op_type not in _INT_SOURCES and n.op_type != "Cast":
            result[n.name] = "computes a shape/index/size value (float math between Shape and a shape input)"
        elif outs_shape_only and n.op_type == "Cast":
            result[n.name] = "casts a shape/index value"
    return result


# ---------------------------------------------------------------------------------------------- repair loop
@dataclass
class RepairLog:
    """What the repair loop did: rounds, nodes kept in fp32 and why, the problems each round saw."""

    rounds: int = 0
    kept: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"rounds": self.rounds, "kept": dict(self.kept), "problems": list(self.problems)}


def repair_loop(convert: Callable[[dict[str, str]], onnx.ModelProto], what: str, *,
                max_rounds: int = 12, candidates: set[str] | None = None) -> tuple[onnx.ModelProto, RepairLog]:
    """``convert(extra_keep)`` → a converted model; check it strictly; while it fails, add the nodes the
    checker names to ``extra_keep`` (node name → reason) and convert again.

    Returns the first valid model and the log. Raises :class:`WorkbenchError` (never returns an invalid
    model) when a failure names no node that can still be kept, or after ``max_rounds`` rounds.
    ``candidates``: node names that may be kept (default: any name found).
    """
    log = RepairLog()
    extra: dict[str, str] = {}
    while True:
        proto = convert(dict(extra))
        problems = strict_problems(proto)
        log.rounds += 1
        if not problems:
            log.kept = dict(extra)
            return proto, log
        text = " | ".join(problems)
        log.problems.append(text)
        names = [n for n in failing_nodes(text, proto, candidates) if n not in extra]
        if not names or log.rounds >= max_rounds:
            raise WorkbenchError(
                f"the {what} recipe could not produce a valid graph"
                + (f" (kept {sorted(extra)} in fp32 and still failed)" if extra else "") + f": {problems[0][:400]}",
                hint="keep the failing node in fp32 with keep_nodes=[...], or report the model")
        for n in names:
            extra[n] = f"the {what} graph failed the strict check here: {text[:300]}"
