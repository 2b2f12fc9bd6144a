"""Graph algorithms on ``onnx.GraphProto`` that hold on real graphs: subgraphs (If/Loop/Scan bodies)
with outer-scope references, any depth, any size.

Everything here is iterative (no recursion limit) and linear or ``O(n log n)`` in the number of
nodes (including the nodes of subgraphs):

* :func:`outer_refs` — the names a node's subgraphs read from enclosing scopes (scoping follows the
  ONNX rules: a subgraph's inputs, initializers and node outputs shadow outer names).
* :func:`toposort_graph` — stable topological sort (Kahn's algorithm keyed by the original position, so
  an already sorted graph keeps its order); a node holding subgraphs depends on the producers of every
  outer name its subgraphs read; subgraphs are sorted too. A cycle is a :class:`GraphCycleError` naming
  nodes on it.
* :func:`is_sorted` — whether every node (and subgraph node) only reads names defined before it.
"""
from __future__ import annotations

import heapq
from typing import Iterator

import onnx

from ..errors import EditError

__all__ = ["GraphCycleError", "subgraphs_of", "outer_refs", "toposort_graph", "toposort_model", "is_sorted",
           "iter_graphs"]


class GraphCycleError(EditError):
    """The graph has a cycle (or reads a name nothing defines, in a way that cannot be ordered)."""


def subgraphs_of(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The subgraphs held by a node's attributes (If branches, Loop/Scan bodies)."""
    out: list[onnx.GraphProto] = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every nested subgraph, outer first (iterative)."""
    stack = [graph]
    while stack:
        g = stack.pop()
        yield g
        for n in g.node:
            stack.extend(subgraphs_of(n))


def _defined_in(g: onnx.GraphProto) -> set[str]:
    names = {i.name for i in g.input} | {i.name for i in g.initializer} | {i.name for i in g.sparse_initializer}
    for n in g.node:
        names.update(o for o in n.output if o)
    return names


def outer_refs(node: onnx.NodeProto) -> set[str]:
    """Names the subgraphs of ``node`` (at any depth) read from outside ``node``.

    Iterative: each subgraph is visited once with the set of names its enclosing subgraphs define
    (which shadow outer names)."""
    refs: set[str] = set()
    # (graph, names defined by the subgraphs enclosing it, up to but excluding `node`'s scope)
    stack: list[tuple[onnx.GraphProto, frozenset[str]]] = [(g, frozenset()) for g in subgraphs_of(node)]
    while stack:
        g, enclosing = stack.pop()
        local = _defined_in(g) | enclosing
        for n in g.node:
            for x in n.input:
                if x and x not in local:
                    refs.add(x)
            subs = subgraphs_of(n)
            if subs:
                frozen = frozenset(local)
                stack.extend((s, frozen) for s in subs)
        for o in g.output:
            if o.name and o.name not in local:
                refs.add(o.name)
    return refs


def _sort_one(g: onnx.GraphProto, outer_available: set[str] | None) -> bool:
    """Sort the nodes of one graph in place (stable Kahn). Returns whether the order changed.

    ``outer_available``: names visible from enclosing scopes (None for the main graph). A node input
    that nothing in this graph produces is treated as available (graph input, initializer, outer
    name, or a dangling name the checker reports)."""
    nodes = list(g.node)
    n = len(nodes)
    producer: dict[str, int] = {}
    for i, nd in enumerate(nodes):
        for o in nd.output:
            if o:
                producer.setdefault(o, i)
    indeg = [0] * n
    users: list[list[int]] = [[] for _ in range(n)]
    for i, nd in enumerate(nodes):
        deps = {x for x in nd.input if x}
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in nd.attribute):
            deps |= outer_refs(nd)
        seen: set[int] = set()
        for x in deps:
            p = producer.get(x)
            if p is None or p == i or p in seen:
                continue
            seen.add(p)
            users[p].append(i)
            indeg[i] += 1
    heap = [i for i in range(n) if indeg[i] == 0]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        i = heapq.heappop(heap)
        order.append(i)
        for j in users[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                heapq.heappush(heap, j)
    if len(order) != n:
        stuck = [nodes[i].name or (nodes[i].output[0] if nodes[i].output else nodes[i].op_type)
                 for i in range(n) if indeg[i] > 0]
        raise GraphCycleError(f"the graph {g.name or ''!r} has a cycle: {len(stuck)} node(s) wait on each other, "
                              f"e.g. {stuck[:5]}",
                              hint="a node reads (directly or through a subgraph) a tensor it helps produce")
    changed = order != list(range(n))
    if changed:
        del g.node[:]
        g.node.extend(nodes[i] for i in order)
    return changed


def toposort_graph(graph: onnx.GraphProto, *, recurse: bool = True) -> int:
    """Topologically sort ``graph`` in place (and its subgraphs when ``recurse``).

    Stable: among ready nodes the one that came first in the input goes first, so a sorted graph is
    left unchanged. Returns the number of graphs whose order changed. :class:`GraphCycleError` on a
    cycle."""
    changed = 0
    stack: list[onnx.GraphProto] = [graph]
    first = True
    while stack:
        g = stack.pop()
        changed += _sort_one(g, None if first else set())
        first = False
        if recurse:
            for nd in g.node:
                stack.extend(subgraphs_of(nd))
    return changed


def toposort_model(proto: onnx.ModelProto, *, recurse: bool = True) -> int:
    """:func:`toposort_graph` on ``proto.graph`` and on the bodies of its local functions."""
    changed = toposort_graph(proto.graph, recurse=recurse)
    for f in proto.functions:
        tmp = onnx.GraphProto()
        tmp.node.extend(f.node)
        if _sort_one(tmp, set()):
            del f.node[:]
            f.node.extend(tmp.node)
            changed += 1
    return changed


def is_sorted(graph: onnx.GraphProto) -> bool:
    """Whether every node of ``graph`` (and of its subgraphs) reads only names already defined
    (graph inputs, initializers, earlier node outputs, enclosing scopes) — including the outer-scope
    names its subgraphs read. Names nothing defines are ignored (the checker reports those)."""
    stack: list[tuple[onnx.GraphProto, frozenset[str]]] = [(graph, frozenset())]
    while stack:
        g, outer = stack.pop()
        all_local = _defined_in(g)
        avail = set(outer) | {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
        for nd in g.node:
            reads = set(nd.input)
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in nd.attribute):
                reads |= outer_refs(nd)
            for x in reads:
                if x and x not in avail and x in all_local:
                    return False
            avail.update(nd.output)
            subs = subgraphs_of(nd)
            if subs:
                frozen = frozenset(avail)
                stack.extend((s, frozen) for s in subs)
    return True
