"""What the graph viewer draws: an ONNX graph as nodes, edges and a group hierarchy, and its visible subset.

:class:`GraphPayload` is computed once per model and cached on the viewer. It holds

* one node per ONNX node (subgraph bodies included) plus pseudo nodes for the graph inputs/outputs,
* edges ``producer → consumer`` per tensor (a tensor used by an If/Loop body links its producer to the
  body node; a body output links to its If/Loop node),
* groups: ONNX name scopes (``/encoder/layer.0/attn/MatMul`` lies in ``/encoder``, ``/encoder/layer.0``,
  ``/encoder/layer.0/attn``), subgraph bodies (``<node>::then_branch``), and automatic chunks of
  ``CHUNK`` consecutive items in any group that has more than ``CHUNK_MAX`` direct children (a 10k
  node chain without scopes becomes 50 groups of 200).

:meth:`GraphPayload.visible` returns what to draw for a set of expanded groups: the nodes of expanded
groups, one box per collapsed group, and edges aggregated between them (count per pair). It is numpy
over arrays built once, so a 100k-node graph answers in milliseconds. Node details (attributes,
shapes, dtypes, initializer statistics) are computed on request, not up front.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import UsageError
from .model import Model, iter_graphs, load

#: a group with more direct children than this is split into chunks of CHUNK items (topological order).
CHUNK_MAX = 256
CHUNK = 200
#: default expansion stops when the visible item count would pass this.
DEFAULT_BUDGET = 800
#: initializer statistics are skipped for tensors larger than this many elements.
STATS_MAX_ELEMENTS = 64_000_000

KIND_OP, KIND_INPUT, KIND_OUTPUT = "op", "input", "output"
DIFF_COLORS = {"added": "#2ca02c", "removed": "#d62728", "changed": "#ff7f0e", "renamed": "#9467bd",
               "same": "#c7c7c7"}


@dataclass
class NodeRec:
    """One drawable node: an ONNX node, or a graph input/output (``kind`` input/output)."""

    name: str
    op: str
    kind: str = KIND_OP
    domain: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    group: str = ""  # direct parent group id ("" = root)
    link_inputs: list[str] = field(default_factory=list)  # extra producers (If/Loop body outputs)
    proto: onnx.NodeProto | None = None
    status: str | None = None  # diff status: added / removed / changed / same


@dataclass
class Group:
    id: str
    label: str
    parent: str | None
    kind: str  # root / scope / subgraph / chunk
    children: list[tuple[str, Any]] = field(default_factory=list)  # ("n", node index) | ("g", group id)
    size: int = 0  # op nodes below it (all depths)
    first: int = 0  # smallest node index below it (ordering)


def scope_parts(name: str) -> list[str]:
    """Name scopes of an ONNX node name: ``/encoder/layer.0/attn/MatMul`` → ``["encoder", "layer.0", "attn"]``."""
    if "/" not in name:
        return []
    parts = [p for p in name.split("/") if p]
    return parts[:-1] if len(parts) > 1 else []


def _dtype_name(elem_type: int) -> str:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name if elem_type else "?"
    except Exception:
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _type_info(vi: onnx.ValueInfoProto) -> tuple[str, list]:
    t = vi.type
    if t.HasField("tensor_type"):
        tt = t.tensor_type
        shape = None
        if tt.HasField("shape"):
            shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
        return _dtype_name(tt.elem_type), shape
    if t.HasField("sequence_type"):
        return "sequence", None
    return "?", None


def _attr_summary(a: onnx.AttributeProto, limit: int = 8) -> str:
    A = onnx.AttributeProto
    if a.type == A.FLOAT:
        return f"{a.f:g}"
    if a.type == A.INT:
        return str(a.i)
    if a.type == A.STRING:
        return repr(a.s.decode("utf-8", "replace"))[:80]
    if a.type == A.TENSOR:
        return f"tensor {_dtype_name(a.t.data_type)}{list(a.t.dims)}"
    if a.type == A.GRAPH:
        return f"subgraph ({len(a.g.node)} nodes)"
    if a.type == A.FLOATS:
        v = [f"{x:g}" for x in a.floats[:limit]]
        return "[" + ", ".join(v) + (", …" if len(a.floats) > limit else "") + "]"
    if a.type == A.INTS:
        v = [str(x) for x in a.ints[:limit]]
        return "[" + ", ".join(v) + (", …" if len(a.ints) > limit else "") + "]"
    if a.type == A.STRINGS:
        return "[" + ", ".join(repr(s.decode("utf-8", "replace")) for s in a.strings[:limit]) + "]"
    if a.type == A.GRAPHS:
        return f"{len(a.graphs)} subgraphs"
    return A.AttributeType.Name(a.type).lower()


def _node_signature(rec: NodeRec) -> tuple:
    attrs = ()
    if rec.proto is not None:
        attrs = tuple(sorted((a.name, _attr_summary(a, limit=10**6)) for a in rec.proto.attribute))
    return (rec.op, rec.domain, tuple(rec.inputs), tuple(rec.outputs), attrs)


def _records(proto: onnx.ModelProto) -> tuple[list[NodeRec], dict[str, list[str]]]:
    """Node records of a model, subgraph bodies right after their parent node; groups of subgraphs."""
    recs: list[NodeRec] = []
    subgraphs: dict[str, list[str]] = {}  # subgraph group id -> [parent group, label]
    used: set[str] = set()

    def unique(name: str, op: str) -> str:
        base = name or f"{op}#{len(recs)}"
        out, k = base, 1
        while out in used:
            k += 1
            out = f"{base}~{k}"
        used.add(out)
        return out

    def walk(graph: onnx.GraphProto, base: str) -> None:
        for node in graph.node:
            scope = scope_parts(node.name)
            gid = base + "".join("/" + s for s in scope)
            rec = NodeRec(name=unique(node.name, node.op_type), op=node.op_type, domain=node.domain,
                          inputs=list(node.input), outputs=list(node.output), group=gid, proto=node)
            recs.append(rec)
            for a in node.attribute:
                bodies = [a.g] if a.type == onnx.AttributeProto.GRAPH else (
                    list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else [])
                for k, body in enumerate(bodies):
                    sub = f"{gid}/{rec.name}::{a.name}" + (f"[{k}]" if len(bodies) > 1 else "")
                    subgraphs[sub] = [gid, f"{rec.name.rsplit('/', 1)[-1]} · {a.name}"]
                    rec.link_inputs += [o.name for o in body.output]
                    walk(body, sub)

    walk(proto.graph, "")
    return recs, subgraphs


class GraphPayload:
    """Nodes, edges and groups of one ONNX model (or of a diff of two), with visibility queries."""

    def __init__(self, recs: list[NodeRec], subgraphs: Mapping[str, list[str]] | None = None, *,
                 model: Model | None = None, title: str = "", types: Mapping[str, tuple] | None = None,
                 initializers: Mapping[str, onnx.TensorProto] | None = None):
        self.model = model
        self.title = title
        self.recs = recs
        self.types = dict(types or {})
        self.initializers = dict(initializers or {})
        self.name_to_id = {r.name: i for i, r in enumerate(recs)}
        self._build_edges()
        self._build_rank()
        self._build_groups(dict(subgraphs or {}))
        self._stats_cache: dict[str, dict] = {}
        self._ops_cache: dict[str, str] = {}
        self.overlay_node = np.full(len(recs), np.nan)
        self.overlay_notes: dict[int, str] = {}  # node -> text the details panel shows under the value
        self.overlay_group = np.full(len(self.group_ids), np.nan)
        self.node_colors: list[str | None] = [None] * len(recs)
        self.group_colors: list[str | None] = [None] * len(self.group_ids)
        self.legend: dict | None = None
        if any(r.status for r in recs):
            self._apply_diff_colors()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model(cls, model, *, infer_shapes: bool = True) -> "GraphPayload":
        """Payload of a model (path, bytes, ``onnx.ModelProto`` or ``workbench.Model``)."""
        m = as_model(model)
        recs, subgraphs = _records(m.proto)
        g = m.proto.graph
        inits = {t.name: t for t in g.initializer}
        for i in g.input:
            if i.name not in inits:
                recs.append(NodeRec(name=f"input:{i.name}", op="Input", kind=KIND_INPUT, outputs=[i.name]))
        for o in g.output:
            recs.append(NodeRec(name=f"output:{o.name}", op="Output", kind=KIND_OUTPUT, inputs=[o.name]))
        return cls(recs, subgraphs, model=m, title=m.name, types=_value_types(m.proto, infer_shapes),
                   initializers=inits)

    @classmethod
    def diff(cls, model_a, model_b, *, infer_shapes: bool = True) -> "GraphPayload":
        """One graph with both versions: B's nodes plus A's removed ones, each marked added / removed /
        changed / renamed / same.

        Main-graph nodes get the statuses of :func:`workbench.edit.diff.diff_models` (its
        :class:`~workbench.edit.diff.NodeChanges`: tensor renames followed, a node moved to a new name is
        *renamed*), so the diff table and the colours agree. Nodes inside If/Loop/Scan bodies are matched by
        name (unnamed ones by their first output) and are *changed* when op, attributes or tensor names differ.
        """
        from .edit.diff import NodeChanges

        pa, pb = cls.from_model(model_a, infer_shapes=infer_shapes), cls.from_model(model_b, infer_shapes=infer_shapes)
        ch = NodeChanges(pa.model.proto.graph, pb.model.proto.graph)
        main_a = {id(n) for n in pa.model.proto.graph.node}
        main_b = {id(n) for n in pb.model.proto.graph.node}
        removed_a = set(ch.removed)
        renamed_to = dict(ch.renamed)

        def key(r: NodeRec) -> str:
            if r.kind != KIND_OP:
                return r.name
            if r.proto is not None and r.proto.name:
                return "name:" + r.proto.name
            return "out:" + (r.outputs[0] if r.outputs else r.name)

        a_by_key = {key(r): r for r in pa.recs}
        b_keys = {key(r) for r in pb.recs}
        order: list[tuple[float, NodeRec]] = []
        b_pos = {}
        b_pos_main = {}
        for i, r in enumerate(pb.recs):
            if r.kind == KIND_OP and r.proto is not None and id(r.proto) in main_b:
                kb = ch.key_b(r.proto)
                status = ch.status[kb]
                b_pos_main[kb] = i
            else:
                ra = a_by_key.get(key(r))
                status = "added" if ra is None else ("same" if _node_signature(ra) == _node_signature(r) else "changed")
            r = _copy_rec(r, status=status)
            b_pos[key(r)] = i
            order.append((float(i), r))
        last = -1.0
        for j, r in enumerate(pa.recs):
            if r.kind == KIND_OP and r.proto is not None and id(r.proto) in main_a:
                ka = ch.key_a(r.proto)
                if ka not in removed_a:  # matched (same / changed / renamed): placed where B has it
                    last = float(b_pos_main.get(renamed_to.get(ka, ka), last))
                    continue
            else:
                k = key(r)
                if k in b_keys:
                    last = float(b_pos[k])
                    continue
            last += 1e-6
            order.append((last, _copy_rec(r, status="removed")))
        order.sort(key=lambda t: t[0])
        recs, seen = [], set()
        for _, r in order:
            name = r.name
            n = 1
            while name in seen:  # a removed node may share a display name with an added one
                n += 1
                name = f"{r.name}~{n}"
            seen.add(name)
            r.name = name
            recs.append(r)
        subgraphs = {**pa._subgraphs, **pb._subgraphs}
        types = {**pa.types, **pb.types}
        inits = {**pa.initializers, **pb.initializers}
        return cls(recs, subgraphs, model=pb.model, title=f"{pa.title} → {pb.title}", types=types, initializers=inits)

    def _build_groups(self, subgraphs: dict[str, list[str]]) -> None:
        self._subgraphs = subgraphs
        groups: dict[str, Group] = {"": Group("", self.title or "graph", None, "root")}

        def ensure(gid: str) -> Group:
            g = groups.get(gid)
            if g is not None:
                return g
            if gid in subgraphs:
                parent, label = subgraphs[gid]
                kind = "subgraph"
            else:
                parent, _, label = gid.rpartition("/")
                kind = "scope"
            pg = ensure(parent)
            g = Group(gid, label, parent, kind)
            groups[gid] = g
            pg.children.append(("g", gid))
            return g

        for i, r in enumerate(self.recs):
            ensure(r.group).children.append(("n", i))
        # sizes / first node, children in node order
        order = list(groups)  # parents are inserted before children

        rank = self.rank

        def first_of(item) -> int:
            return int(rank[item[1]]) if item[0] == "n" else groups[item[1]].first

        for gid in reversed(order):
            g = groups[gid]
            g.size = sum(1 for t, v in g.children if t == "n" and self.recs[v].kind == KIND_OP) + \
                sum(groups[v].size for t, v in g.children if t == "g")
            g.first = min((first_of(c) for c in g.children), default=0)
        for gid in order:
            self._chunk(groups, groups[gid], first_of)
        # parents before children, siblings in node order
        ordered: list[str] = []
        stack = [""]
        while stack:
            gid = stack.pop()
            ordered.append(gid)
            g = groups[gid]
            g.children.sort(key=first_of)
            stack.extend(reversed([v for t, v in g.children if t == "g"]))
        self.groups = groups
        self.group_ids = ordered
        self.group_index = {gid: k for k, gid in enumerate(ordered)}
        self.group_parent = np.array([self.group_index[groups[g].parent] if groups[g].parent is not None else -1
                                      for g in ordered], dtype=np.int64)
        self.node_group = np.zeros(len(self.recs), dtype=np.int64)
        for gid in ordered:
            k = self.group_index[gid]
            for t, v in groups[gid].children:
                if t == "n":
                    self.node_group[v] = k

    def _chunk(self, groups: dict[str, Group], g: Group, first_of) -> None:
        """Split a group with too many direct children into named chunks: at stage boundaries (a
        strided Conv / pooling, a Resize or ConvTranspose) when the graph has them, labelled
        ``stage k · HxW``; else consecutive runs labelled by their node range. The viewer shows each
        chunk's top op types under its label."""
        if len(g.children) <= CHUNK_MAX:
            return
        items = sorted(g.children, key=first_of)
        g.children = []
        for k, (label, part) in enumerate(self._segments(items), start=1):
            cid = f"{g.id}/#{k}"
            sub = Group(cid, label, g.id, "chunk", part)
            sub.size = sum(1 for t, v in part if t == "n" and self.recs[v].kind == KIND_OP) + \
                sum(groups[v].size for t, v in part if t == "g")
            sub.first = min(first_of(x) for x in part)
            for t, v in part:
                if t == "g":
                    groups[v].parent = cid
            groups[cid] = sub
            g.children.append(("g", cid))
        self._chunk(groups, g, first_of)  # many chunks: chunk the chunks

    def _stage_start(self, item) -> str | None:
        """Why ``item`` starts a new stage ("stride 2", "upsample"), or None."""
        t, v = item
        if t != "n":
            return None
        r = self.recs[v]
        if r.proto is None:
            return None
        if r.op in ("Resize", "Upsample", "ConvTranspose", "DepthToSpace"):
            return "upsample"
        if r.op in ("Conv", "MaxPool", "AveragePool", "QLinearConv", "ConvInteger", "SpaceToDepth"):
            for a in r.proto.attribute:
                if a.name == "strides" and any(x > 1 for x in a.ints):
                    return f"stride {max(a.ints)}"
        return None

    def _resolution(self, item) -> str:
        t, v = item
        if t != "n" or not self.recs[v].outputs:
            return ""
        shape = (self.types.get(self.recs[v].outputs[0]) or (None, None))[1]
        if shape and len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[2:]):
            return f" · {shape[2]}×{shape[3]}"
        return ""

    def _segments(self, items: list) -> list[tuple[str, list]]:
        """(label, items) runs of at most CHUNK items, cut at stage boundaries when there are any."""
        bounds = [i for i, it in enumerate(items) if i > 0 and self._stage_start(it)]
        cuts = [0]
        for b in bounds:  # a stage shorter than CHUNK // 8 items joins the previous one
            if b - cuts[-1] >= max(8, CHUNK // 8):
                cuts.append(b)
        out: list[tuple[str, list]] = []
        if len(cuts) > 1:
            cuts.append(len(items))
            for k in range(len(cuts) - 1):
                seg = items[cuts[k]:cuts[k + 1]]
                base = f"stage {k + 1}{self._resolution(seg[0]) if k else self._resolution(seg[-1])}"
                pieces = [seg[c:c + CHUNK] for c in range(0, len(seg), CHUNK)]
                for j, piece in enumerate(pieces):
                    out.append((base + (f" (part {j + 1}/{len(pieces)})" if len(pieces) > 1 else ""), piece))
            return out
        for c in range(0, len(items), CHUNK):
            part = items[c:c + CHUNK]
            out.append((f"nodes {c + 1}–{c + len(part)}", part))
        return out

    def _build_edges(self) -> None:
        producer: dict[str, int] = {}
        for i, r in enumerate(self.recs):
            for o in r.outputs:
                if o and o not in producer:
                    producer[o] = i
        src, dst, tensor = [], [], []
        self.tensor_names: list[str] = []
        tindex: dict[str, int] = {}
        for i, r in enumerate(self.recs):
            for name in list(r.inputs) + r.link_inputs:
                p = producer.get(name)
                if p is None or p == i:
                    continue
                if name not in tindex:
                    tindex[name] = len(self.tensor_names)
                    self.tensor_names.append(name)
                src.append(p)
                dst.append(i)
                tensor.append(tindex[name])
        self.producer = producer
        self.edge_src = np.array(src, dtype=np.int64)
        self.edge_dst = np.array(dst, dtype=np.int64)
        self.edge_tensor = np.array(tensor, dtype=np.int64)

    def _build_rank(self) -> None:
        """rank[node]: position when sorted by (depth, index); depth is the longest path from the
        inputs, with sources (weights, constants) placed just above their first consumer. Chunks
        follow this order, so a chunk holds a band of the graph with its constants."""
        N = len(self.recs)
        depth = np.zeros(N, dtype=np.int64)
        has_pred = np.zeros(N, dtype=bool)
        fwd = self.edge_src < self.edge_dst
        order = np.argsort(self.edge_dst[fwd], kind="stable")
        src, dst = self.edge_src[fwd][order].tolist(), self.edge_dst[fwd][order].tolist()
        d = depth.tolist()
        for a, b in zip(src, dst):
            if d[a] + 1 > d[b]:
                d[b] = d[a] + 1
        depth = np.array(d, dtype=np.int64)
        has_pred[self.edge_dst[fwd]] = True
        if len(src):
            first_use = np.full(N, np.iinfo(np.int64).max)
            np.minimum.at(first_use, self.edge_src[fwd], depth[self.edge_dst[fwd]])
            pull = ~has_pred & (first_use != np.iinfo(np.int64).max)
            depth[pull] = np.maximum(depth[pull], first_use[pull] - 1)
        self.depth = depth
        order = np.lexsort((np.arange(N), depth))
        self.rank = np.empty(N, dtype=np.int64)
        self.rank[order] = np.arange(N)

    # ------------------------------------------------------------------ facts
    @property
    def op_count(self) -> int:
        """Number of ONNX nodes (graph inputs/outputs excluded)."""
        return sum(1 for r in self.recs if r.kind == KIND_OP)

    def node_id(self, name: str) -> int:
        try:
            return self.name_to_id[name]
        except KeyError:
            raise UsageError(f"no node named {name!r} in {self.title!r}") from None

    def ancestors(self, node: int) -> list[str]:
        """Group ids containing a node, outermost first (root excluded)."""
        out = []
        k = int(self.node_group[node])
        while k > 0:
            out.append(self.group_ids[k])
            k = int(self.group_parent[k])
        return out[::-1]

    # ------------------------------------------------------------------ visibility
    def default_expanded(self, budget: int = DEFAULT_BUDGET) -> list[str]:
        """Groups to open first: breadth first, while the visible item count stays within ``budget``."""
        root = self.groups[""]
        visible = len(root.children)
        queue = [v for t, v in root.children if t == "g"]
        out = []
        while queue:
            nxt = []
            for gid in queue:
                g = self.groups[gid]
                if visible + len(g.children) - 1 <= budget:
                    out.append(gid)
                    visible += len(g.children) - 1
                    nxt += [v for t, v in g.children if t == "g"]
            queue = nxt
        return out

    def _reps(self, expanded: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """rep_group[g]: -1 if g is open (it and its ancestors expanded), else the visible box that holds it."""
        exp = {self.group_index[g] for g in expanded if g in self.group_index}
        exp.add(0)
        G = len(self.group_ids)
        rep = np.full(G, -1, dtype=np.int64)
        for k in range(1, G):  # parents come before children
            p = int(self.group_parent[k])
            if rep[p] != -1:
                rep[k] = rep[p]
            elif k not in exp:
                rep[k] = k
        N = len(self.recs)
        rg = rep[self.node_group]
        node_rep = np.where(rg == -1, np.arange(N), N + rg)
        return rep, node_rep

    def visible(self, expanded: Iterable[str]) -> dict:
        """What to draw: items (nodes of open groups + boxes of collapsed groups), open group frames, edges.

        Item ids: a node is its index; a group box is ``len(nodes) + group index``. Edges are
        ``[source, target, count, tensor name or None]`` with parallel edges between two items merged.
        """
        expanded = list(expanded)
        rep, node_rep = self._reps(expanded)
        N = len(self.recs)
        items: list[dict] = []
        frames: list[dict] = []
        for k, gid in enumerate(self.group_ids):
            g = self.groups[gid]
            if k > 0 and rep[k] == k:
                items.append(self._group_item(k))
            elif rep[k] == -1:
                if k > 0:
                    frames.append({"i": N + k, "id": gid, "l": g.label, "p": self._open_parent(k)})
                for t, v in g.children:
                    if t == "n":
                        items.append(self._node_item(v))
        edges = self._visible_edges(node_rep)
        return {"title": self.title, "n_nodes": self.op_count, "items": items, "frames": frames,
                "edges": edges, "expanded": [g for g in expanded if g in self.group_index]}

    def _open_parent(self, k: int) -> int:
        p = int(self.group_parent[k])
        return -1 if p <= 0 else len(self.recs) + p

    def _node_item(self, i: int) -> dict:
        r = self.recs[i]
        k = int(self.node_group[i])
        d = {"i": i, "n": r.name, "o": r.op, "k": r.kind, "p": len(self.recs) + k if k > 0 else -1}
        if self.node_colors[i]:
            d["c"] = self.node_colors[i]
        if not math.isnan(self.overlay_node[i]):
            d["v"] = float(self.overlay_node[i])
        if r.status:
            d["s"] = r.status
        return d

    def _group_item(self, k: int) -> dict:
        g = self.groups[self.group_ids[k]]
        d = {"i": len(self.recs) + k, "n": g.label, "id": g.id, "k": "group", "gk": g.kind, "size": g.size,
             "ops": self._top_ops(g), "p": self._open_parent(k)}
        if self.group_colors[k]:
            d["c"] = self.group_colors[k]
        if not math.isnan(self.overlay_group[k]):
            d["v"] = float(self.overlay_group[k])
        return d

    def _top_ops(self, g: Group, n: int = 3) -> str:
        s = self._ops_cache.get(g.id)
        if s is None:
            c: Counter = Counter()
            stack = [g]
            while stack:
                x = stack.pop()
                for t, v in x.children:
                    if t == "n":
                        c[self.recs[v].op] += 1
                    else:
                        stack.append(self.groups[v])
            # constants and graph inputs say nothing about what a group computes: list them last
            quiet = {"Constant", "Input", "Output"}
            ranked = sorted(c.items(), key=lambda kv: (kv[0] in quiet, -kv[1], kv[0]))
            s = ", ".join(f"{op}×{k}" for op, k in ranked[:n])
            self._ops_cache[g.id] = s
        return s

    def _visible_edges(self, node_rep: np.ndarray) -> list[list]:
        if len(self.edge_src) == 0:
            return []
        s = node_rep[self.edge_src]
        d = node_rep[self.edge_dst]
        keep = s != d
        s, d, t = s[keep], d[keep], self.edge_tensor[keep]
        M = len(self.recs) + len(self.group_ids)
        key = s * M + d
        uniq, first, counts = np.unique(key, return_index=True, return_counts=True)
        out = []
        N = len(self.recs)
        for u, f, c in zip(uniq.tolist(), first.tolist(), counts.tolist()):
            a, b = divmod(u, M)
            name = self.tensor_names[int(t[f])] if (c == 1 and a < N and b < N) else None
            out.append([a, b, c, name])
        return out

    # ------------------------------------------------------------------ search & details
    def search(self, query: str, limit: int = 50) -> list[dict]:
        """Nodes whose name contains ``query`` or whose op type equals it (case-insensitive)."""
        q = query.strip().lower()
        if not q:
            return []
        out = []
        for i, r in enumerate(self.recs):
            if q in r.name.lower() or q == r.op.lower():
                out.append({"i": i, "n": r.name, "o": r.op, "path": self.ancestors(i)})
                if len(out) >= limit:
                    break
        return out

    def details(self, node: int | str, *, stats: bool = True) -> dict:
        """Everything the details panel shows for one node (initializer statistics computed here, cached)."""
        i = self.node_id(node) if isinstance(node, str) else int(node)
        r = self.recs[i]
        consumers: dict[str, list[str]] = {}
        for e in self._out_edges(i):
            consumers.setdefault(self.tensor_names[int(self.edge_tensor[e])], []).append(self.recs[int(self.edge_dst[e])].name)

        def tensor(name: str, with_stats: bool) -> dict:
            dt, shape = self.types.get(name, ("?", None))
            d: dict[str, Any] = {"name": name, "dtype": dt, "shape": shape}
            p = self.producer.get(name)
            if p is not None:
                d["producer"] = self.recs[p].name
            if name in self.initializers:
                d["initializer"] = True
                if with_stats:
                    d["stats"] = self.initializer_stats(name)
            return d

        out = {"i": i, "name": r.name, "op": r.op, "domain": r.domain, "kind": r.kind,
               "scope": "/".join(self.groups[g].label for g in self.ancestors(i) if self.groups[g].kind != "chunk"),
               "groups": self.ancestors(i),
               "attributes": {a.name: _attr_summary(a) for a in (r.proto.attribute if r.proto is not None else [])},
               "inputs": [tensor(n, stats) for n in r.inputs if n],
               "outputs": [{**tensor(n, False), "consumers": consumers.get(n, [])} for n in r.outputs if n]}
        if r.status:
            out["status"] = r.status
        if not math.isnan(self.overlay_node[i]):
            out["overlay"] = {"label": (self.legend or {}).get("label", ""), "value": float(self.overlay_node[i])}
            if i in self.overlay_notes:
                out["overlay"]["note"] = self.overlay_notes[i]
        return out

    def _out_edges(self, i: int) -> np.ndarray:
        if not hasattr(self, "_by_src"):
            self._by_src = np.argsort(self.edge_src, kind="stable")
            self._src_sorted = self.edge_src[self._by_src]
        a, b = np.searchsorted(self._src_sorted, [i, i + 1])
        return self._by_src[a:b]

    def initializer_stats(self, name: str) -> dict:
        """min / max / mean / std / zero fraction of an initializer (cached; huge tensors skipped)."""
        if name in self._stats_cache:
            return self._stats_cache[name]
        t = self.initializers[name]
        numel = int(np.prod(t.dims)) if len(t.dims) else 1
        if numel > STATS_MAX_ELEMENTS:
            st: dict[str, Any] = {"numel": numel, "skipped": f"over {STATS_MAX_ELEMENTS:,} elements"}
        else:
            try:
                base = str(self.model.base_dir) if self.model is not None and self.model.base_dir else ""
                a = numpy_helper.to_array(t, base_dir=base)
                f = a.astype(np.float64, copy=False) if a.dtype.kind in "fiub" else None
                if f is None or f.size == 0:
                    st = {"numel": int(a.size)}
                else:
                    st = {"numel": int(f.size), "min": float(f.min()), "max": float(f.max()),
                          "mean": float(f.mean()), "std": float(f.std()), "zeros": float((f == 0).mean())}
            except Exception as e:  # unreadable data: say so in the panel rather than fail the view
                st = {"numel": numel, "error": f"{type(e).__name__}: {e}"}
        self._stats_cache[name] = st
        return st

    # ------------------------------------------------------------------ overlays
    def set_overlay(self, values: Mapping[str, float], *, label: str, thresholds=None,
                    colormap: str = "traffic", agg: str = "max", labels: Sequence[str] | None = None,
                    notes: Mapping[str, str] | None = None) -> dict:
        """Colour nodes by a value per node name; groups take ``agg`` (max / sum / mean) of their nodes.

        ``thresholds`` (sorted list) gives discrete bins, one colour each; without it, a gradient from
        the smallest to the largest value. ``labels``: the legend's text for each bin (len(thresholds) + 1;
        default: the bin's range). ``notes``: node name → text the details panel shows with the node's value
        (why it has that value). NaN / ±Inf values are ignored (no colour). Returns the legend.
        """
        from .colors import bin_colors, gradient_color, legend

        unknown = [k for k in values if k not in self.name_to_id]
        if values and len(unknown) == len(values):
            raise UsageError(f"overlay {label!r}: none of its {len(values)} node names is in the graph "
                             f"(e.g. {unknown[0]!r})", hint="keys must be ONNX node names")
        if agg not in ("max", "sum", "mean"):
            raise UsageError(f"agg must be max, sum or mean, not {agg!r}")
        v = np.full(len(self.recs), np.nan)
        for k, x in values.items():
            i = self.name_to_id.get(k)
            # NaN / ±Inf are no value: they have no place on a colour scale and are not valid JSON
            if i is not None and x is not None and math.isfinite(float(x)):
                v[i] = float(x)
        self.overlay_node = v
        self.overlay_notes = {self.name_to_id[k]: str(t) for k, t in (notes or {}).items()
                              if k in self.name_to_id and t}
        self.overlay_group = self._aggregate(v, agg)
        finite = v[~np.isnan(v)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if thresholds is not None:
            th = [float(t) for t in thresholds]
            if th != sorted(th) or not th or not all(math.isfinite(t) for t in th):
                raise UsageError(f"thresholds must be a non-empty ascending list of finite numbers, got {thresholds!r}")
            color = lambda x: bin_colors(x, th, colormap)  # noqa: E731
            if labels is not None and len(labels) != len(th) + 1:
                raise UsageError(f"labels needs one text per bin ({len(th) + 1}), got {len(labels)}")
        else:
            th = None
            color = lambda x: gradient_color(x, lo, hi, colormap)  # noqa: E731
        self.node_colors = [None if math.isnan(x) else color(x) for x in v.tolist()]
        self.group_colors = [None if math.isnan(x) else color(x) for x in self.overlay_group.tolist()]
        self.legend = legend(label, lo, hi, th, colormap, agg, list(labels) if labels is not None and th else None)
        return self.legend

    def clear_overlay(self) -> None:
        self.overlay_notes = {}
        self.overlay_node[:] = np.nan
        self.overlay_group[:] = np.nan
        self.node_colors = [None] * len(self.recs)
        self.group_colors = [None] * len(self.group_ids)
        self.legend = None
        if any(r.status for r in self.recs):
            self._apply_diff_colors()

    def _aggregate(self, v: np.ndarray, agg: str) -> np.ndarray:
        G = len(self.group_ids)
        out = np.full(G, np.nan)
        sums, cnt, mx = np.zeros(G), np.zeros(G), np.full(G, -np.inf)
        ok = ~np.isnan(v)
        idx = np.nonzero(ok)[0]
        g = self.node_group[idx].copy()
        vals = v[idx]
        while idx.size:  # push each value up through every ancestor
            np.add.at(sums, g, vals)
            np.add.at(cnt, g, 1)
            np.maximum.at(mx, g, vals)
            keep = self.group_parent[g] >= 0
            g, vals, idx = self.group_parent[g][keep], vals[keep], idx[keep]
        has = cnt > 0
        if agg == "sum":
            out[has] = sums[has]
        elif agg == "mean":
            out[has] = sums[has] / cnt[has]
        else:
            out[has] = mx[has]
        return out

    def _apply_diff_colors(self) -> None:
        self.node_colors = [DIFF_COLORS.get(r.status or "", None) for r in self.recs]
        # a collapsed group shows the "strongest" status inside it
        rank = {"same": 0, "renamed": 1, "changed": 2, "removed": 3, "added": 4}
        best = np.zeros(len(self.group_ids), dtype=np.int64)
        for i, r in enumerate(self.recs):
            k = int(self.node_group[i])
            s = rank.get(r.status or "same", 0)
            while k >= 0:
                if s > best[k]:
                    best[k] = s
                k = int(self.group_parent[k])
        inv = {v: k for k, v in rank.items()}
        self.group_colors = [DIFF_COLORS[inv[int(b)]] for b in best]
        self.legend = {"label": "diff", "kind": "categories",
                       "items": [{"label": k, "color": c} for k, c in DIFF_COLORS.items()]}

    # ------------------------------------------------------------------ everything, for the standalone page
    def full(self, *, stats: bool = True) -> dict:
        """The whole graph for the offline HTML page: every node with its details, every group, every edge."""
        N = len(self.recs)
        return {
            "title": self.title,
            "n_nodes": self.op_count,
            "nodes": [self._node_item(i) | {"g": int(self.node_group[i])} for i in range(N)],
            "groups": [{"id": gid, "l": self.groups[gid].label, "p": int(self.group_parent[k]),
                        "gk": self.groups[gid].kind, "size": self.groups[gid].size, "ops": self._top_ops(self.groups[gid]),
                        "nc": len(self.groups[gid].children),
                        **({"c": self.group_colors[k]} if self.group_colors[k] else {}),
                        **({"v": float(self.overlay_group[k])} if not math.isnan(self.overlay_group[k]) else {})}
                       for k, gid in enumerate(self.group_ids)],
            "edges": [self.edge_src.tolist(), self.edge_dst.tolist(), self.edge_tensor.tolist()],
            "tensors": self.tensor_names,
            "details": [self.details(i, stats=stats) for i in range(N)],
            "legend": self.legend,
        }


def as_model(model) -> Model:
    """A ``workbench.Model`` from a path, bytes, ``onnx.ModelProto``, ``Model`` or ``Variant`` (its model)."""
    inner = getattr(model, "model", None)
    if isinstance(inner, Model):
        return inner
    return load(model)


def _copy_rec(r: NodeRec, **kw) -> NodeRec:
    return NodeRec(**{**r.__dict__, **kw})


def _value_types(proto: onnx.ModelProto, infer: bool) -> dict[str, tuple]:
    """tensor name -> (dtype, shape) from shape inference (best effort) and initializers."""
    p = proto
    if infer:
        try:
            p = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False)
        except Exception:
            p = proto
    out: dict[str, tuple] = {}
    for g in iter_graphs(p.graph):
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            out[vi.name] = _type_info(vi)
        for t in g.initializer:
            out[t.name] = (_dtype_name(t.data_type), list(t.dims))
    return out
