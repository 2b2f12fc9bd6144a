"""Structural diff of two models as a tidy DataFrame.

Columns: ``change`` (added / removed / changed / renamed / shape), ``kind`` (node / tensor / input /
output / initializer), ``name`` (the name in the newer model, or the older one for removals),
``before``, ``after`` (short text descriptions; empty where not applicable).

Nodes are matched by name; unnamed nodes by their op type and output tensors. A tensor counts as
renamed when a matched node (or graph input/output position) produces it under a new name that the
other model does not use.
"""
from __future__ import annotations

import hashlib
from collections import Counter

from typing import TYPE_CHECKING

import onnx

from ..model import Model

if TYPE_CHECKING:
    import pandas as pd

#: ``onnx_node`` names the node of a ``kind == "node"`` row, ``tensor`` the tensor of every other row (an
#: input, output, initializer or intermediate tensor); the other of the two is None.
COLUMNS = ["change", "kind", "onnx_node", "tensor", "before", "after"]


def _type_str(vi: onnx.ValueInfoProto) -> str | None:
    t = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        return None
    dt = onnx.TensorProto.DataType.Name(t.elem_type).lower() if t.elem_type else "?"
    if not t.HasField("shape"):
        return f"{dt}[?]"
    dims = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
    return f"{dt}[{','.join(dims)}]"


def _attr_str(node: onnx.NodeProto) -> str:
    parts = []
    for a in sorted(node.attribute, key=lambda a: a.name):
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode(errors="replace")
        elif isinstance(v, onnx.TensorProto):
            v = f"tensor{list(v.dims)}"
        elif isinstance(v, onnx.GraphProto):
            v = f"graph({len(v.node)} nodes)"
        parts.append(f"{a.name}={v}")
    return ", ".join(parts)


def _node_str(node: onnx.NodeProto, ren: dict[str, str] | None = None) -> str:
    r = ren or {}
    ins = ", ".join(r.get(i, i) for i in node.input)
    outs = ", ".join(r.get(o, o) for o in node.output)
    attrs = _attr_str(node)
    dom = f"{node.domain}::" if node.domain else ""
    return f"{dom}{node.op_type}({ins}{'; ' + attrs if attrs else ''}) -> {outs}"


def _key(node: onnx.NodeProto, ren: dict[str, str] | None = None) -> str:
    if node.name:
        return "name:" + node.name
    r = ren or {}
    return f"anon:{node.op_type}:{','.join(r.get(o, o) for o in node.output)}"


def _init_digest(t: onnx.TensorProto) -> str:
    return f"{onnx.TensorProto.DataType.Name(t.data_type).lower()}{list(t.dims)} sha1:" + \
        hashlib.sha1(t.SerializeToString(deterministic=True)).hexdigest()[:10]


def _tensor_names(g: onnx.GraphProto) -> set[str]:
    names = {i.name for i in g.input} | {i.name for i in g.initializer}
    for n in g.node:
        names.update(o for o in n.output if o)
    return names


def _tensor_renames(ga: onnx.GraphProto, gb: onnx.GraphProto) -> dict[str, str]:
    """old name -> new name, from matched nodes' outputs and graph input/output positions."""
    ta, tb = _tensor_names(ga), _tensor_names(gb)
    ren: dict[str, str] = {}

    def consider(old: str, new: str) -> None:
        if old and new and old != new and old not in tb and new not in ta and old not in ren:
            ren[old] = new

    named_b = {n.name: n for n in gb.node if n.name}
    for na in ga.node:
        nb = named_b.get(na.name) if na.name else None
        if nb is not None and nb.op_type == na.op_type and len(nb.output) == len(na.output):
            for o, p in zip(na.output, nb.output):
                consider(o, p)
    for seq_a, seq_b in ((ga.input, gb.input), (ga.output, gb.output)):
        if len(seq_a) == len(seq_b):
            for va, vb in zip(seq_a, seq_b):
                consider(va.name, vb.name)
    # Unnamed nodes: same op, same (renamed) inputs, one output each.
    by_sig = {}
    for nb in gb.node:
        if not nb.name:
            by_sig.setdefault((nb.op_type, tuple(nb.input)), []).append(nb)
    for na in ga.node:
        if na.name:
            continue
        cands = by_sig.get((na.op_type, tuple(ren.get(i, i) for i in na.input)), [])
        if len(cands) == 1 and len(cands[0].output) == len(na.output):
            for o, p in zip(na.output, cands[0].output):
                consider(o, p)
    return ren


class NodeChanges:
    """How the nodes of graph ``a`` map to those of graph ``b`` (the one matching behind :func:`diff_models`
    and the graph viewer's diff colours, so the table and the colours agree).

    ``renames``: tensor renames (old -> new). ``status``: for each node of ``b`` (by :meth:`key_b`) one of
    ``same``, ``changed``, ``renamed`` (same op, inputs, outputs, attributes under another name), ``added``.
    ``removed``: keys (:meth:`key_a`) of ``a``'s nodes that are gone. ``renamed``: ``[(key_a, key_b)]``.
    """

    def __init__(self, ga: onnx.GraphProto, gb: onnx.GraphProto):
        ren = self.renames = _tensor_renames(ga, gb)
        self.nodes_a = {_key(n, ren): n for n in ga.node}
        self.nodes_b = {_key(n): n for n in gb.node}
        only_a = [k for k in self.nodes_a if k not in self.nodes_b]
        only_b = [k for k in self.nodes_b if k not in self.nodes_a]
        sig_b: dict[tuple, list[str]] = {}
        for k in only_b:
            n = self.nodes_b[k]
            sig_b.setdefault((n.op_type, tuple(n.input), tuple(n.output), _attr_str(n)), []).append(k)
        self.renamed: list[tuple[str, str]] = []
        for k in only_a:
            n = self.nodes_a[k]
            cands = sig_b.get((n.op_type, tuple(ren.get(i, i) for i in n.input),
                               tuple(ren.get(o, o) for o in n.output), _attr_str(n)), [])
            if cands:
                self.renamed.append((k, cands.pop(0)))
        renamed_a = {a for a, _ in self.renamed}
        renamed_b = {b for _, b in self.renamed}
        self.removed = [k for k in only_a if k not in renamed_a]
        self.added = [k for k in only_b if k not in renamed_b]
        self.changed = [k for k, na in self.nodes_a.items()
                        if k in self.nodes_b and _node_str(na, ren) != _node_str(self.nodes_b[k])]
        changed = set(self.changed)
        self.status = {k: ("renamed" if k in renamed_b else "added" if k in only_b else
                           "changed" if k in changed else "same") for k in self.nodes_b}

    def key_a(self, node: onnx.NodeProto) -> str:
        return _key(node, self.renames)

    def key_b(self, node: onnx.NodeProto) -> str:
        return _key(node)


def diff_models(a: Model, b: Model) -> pd.DataFrame:
    """What changed from ``a`` to ``b``: one row per added/removed/changed/renamed node or tensor
    (columns :data:`COLUMNS`)."""
    ga, gb = a.graph, b.graph
    rows: list[dict] = []
    ch = NodeChanges(ga, gb)
    ren = ch.renames
    for old, new in ren.items():
        rows.append({"change": "renamed", "kind": "tensor", "onnx_node": None, "tensor": new, "before": old, "after": new})
    nodes_a, nodes_b = ch.nodes_a, ch.nodes_b
    for ka, kb in ch.renamed:
        rows.append({"change": "renamed", "kind": "node", "tensor": None, "onnx_node": nodes_b[kb].name,
                     "before": nodes_a[ka].name, "after": nodes_b[kb].name})
    for k in ch.removed:
        n = nodes_a[k]
        rows.append({"change": "removed", "kind": "node", "tensor": None, "onnx_node": n.name or (n.output[0] if n.output else ""),
                     "before": _node_str(n), "after": ""})
    for k in ch.added:
        n = nodes_b[k]
        rows.append({"change": "added", "kind": "node", "tensor": None, "onnx_node": n.name or (n.output[0] if n.output else ""),
                     "before": "", "after": _node_str(n)})
    for k in ch.changed:
        na, nb = nodes_a[k], nodes_b[k]
        rows.append({"change": "changed", "kind": "node", "tensor": None, "onnx_node": nb.name or nb.output[0],
                     "before": _node_str(na), "after": _node_str(nb)})

    for kind, seq_a, seq_b in (("input", ga.input, gb.input), ("output", ga.output, gb.output)):
        ta = {ren.get(v.name, v.name): v for v in seq_a}
        tb = {v.name: v for v in seq_b}
        for name in ta:
            if name not in tb:
                rows.append({"change": "removed", "kind": kind, "onnx_node": None, "tensor": name, "before": _type_str(ta[name]) or "", "after": ""})
        for name in tb:
            if name not in ta:
                rows.append({"change": "added", "kind": kind, "onnx_node": None, "tensor": name, "before": "", "after": _type_str(tb[name]) or ""})
            else:
                sa, sb = _type_str(ta[name]), _type_str(tb[name])
                if sa != sb:
                    rows.append({"change": "shape", "kind": kind, "onnx_node": None, "tensor": name, "before": sa or "", "after": sb or ""})
    via = {ren.get(v.name, v.name): _type_str(v) for v in ga.value_info}
    vib = {v.name: _type_str(v) for v in gb.value_info}
    for name in sorted(set(via) & set(vib)):
        if via[name] and vib[name] and via[name] != vib[name]:
            rows.append({"change": "shape", "kind": "tensor", "onnx_node": None, "tensor": name, "before": via[name], "after": vib[name]})

    ia = {ren.get(t.name, t.name): t for t in ga.initializer}
    ib = {t.name: t for t in gb.initializer}
    for name in ia:
        if name not in ib:
            rows.append({"change": "removed", "kind": "initializer", "onnx_node": None, "tensor": name, "before": _init_digest(ia[name]), "after": ""})
    for name, t in ib.items():
        if name not in ia:
            rows.append({"change": "added", "kind": "initializer", "onnx_node": None, "tensor": name, "before": "", "after": _init_digest(t)})
        else:
            da, db = _init_digest(ia[name]), _init_digest(t)
            if da != db:
                rows.append({"change": "changed", "kind": "initializer", "onnx_node": None, "tensor": name, "before": da, "after": db})
    import pandas as pd  # loaded on first use: `import workbench` and `inspect` do without it

    return pd.DataFrame(rows, columns=COLUMNS)


def summarize(diff: pd.DataFrame) -> dict[str, int]:
    """Counts by ``"<change> <kind>"``, e.g. ``{"removed node": 3, "renamed tensor": 1}``."""
    return dict(Counter(f"{c} {k}" for c, k in zip(diff["change"], diff["kind"])))
