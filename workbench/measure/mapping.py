"""Mapping backend layers (ORT kernels, TensorRT layers) back to ONNX nodes.

Every per-layer row carries ``onnx_nodes`` (the raw ONNX node names the layer covers, in the variant's
graph) and ``onnx_node`` (one *canonical* node, so rows of different precisions and backends line up).

Rules (docs/profiling.md has them all, including how ORT kernel names and TensorRT layer names are
read):

1. **Names.** Unnamed nodes get ``<op_type>_<index>`` (index in their graph; ``<parent>/`` prefix in
   subgraphs), the rule the precision recipes use for the main graph
   (``workbench.precision.base.name_unnamed_nodes``), so a variant and its source agree.
2. **Subgraphs.** A node inside an If/Loop/Scan body is attributed to its top-level parent node.
3. **Precision plumbing.** ``Cast``, ``QuantizeLinear`` and ``DequantizeLinear`` nodes (added by the fp16
   converter, ``<tensor>_QuantizeLinear`` / ``<tensor>_DequantizeLinear`` from ORT quantization, ...)
   are attributed to a neighbour that is not one of these ops (following chains): a QuantizeLinear to
   the node that produced the tensor it quantizes; a DequantizeLinear or Cast to the first node that
   consumes its output; each falls back to the other direction (weights and graph inputs have no
   producer, graph outputs no consumer). The same rule applies to every variant (fp32 included), so
   fp32/fp16/int8 rows meet on the same canonical node.
4. **Fused layers are grouped**: the canonical node of a layer is its *anchor*, the first covered
   node (in graph order) that is not precision plumbing; the full list stays in ``onnx_nodes``.
   :func:`spread` turns grouped rows into one row per covered node, the time split evenly.
5. Layers that cover no ONNX node (TensorRT reformat copies of network inputs, ORT's inserted layout
   transposes without a mapped neighbour) get ``onnx_node = UNMAPPED``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import onnx

UNMAPPED = "<unmapped>"
_SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan"})
PLUMBING_OPS = frozenset({"Cast", "QuantizeLinear", "DequantizeLinear", "CastLike"})
#: ORT appends ``_token_<n>`` when a transformer makes a new node from an old one (Graph::GenerateNodeName).
_ORT_TOKEN = re.compile(r"(_token_\d+)+$")
#: ORT's NCHWc transformer names the node replacing a Conv/pool after its output tensor: ``<tensor>_nchwc``.
_ORT_NCHWC = re.compile(r"^(.*)_nchwc$")


def name_nodes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Name every unnamed node in place: ``<op_type>_<index>`` (index in its graph), prefixed with
    ``<parent>/`` inside If/Loop/Scan bodies; a clash with an existing name appends ``_``."""
    def walk(g: onnx.GraphProto, prefix: str):
        used = {n.name for n in g.node if n.name}
        for i, n in enumerate(g.node):
            if not n.name:
                name = f"{prefix}{n.op_type}_{i}"
                while name in used:
                    name += "_"
                n.name = name
                used.add(name)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g, f"{n.name}/")
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sub in a.graphs:
                        walk(sub, f"{n.name}/")
    walk(proto.graph, "")
    return proto


@dataclass
class GraphIndex:
    """Name-level facts of a (named) model: op types, order, parents, producers/consumers, canonical names."""

    op_type: dict[str, str] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)
    parent: dict[str, str] = field(default_factory=dict)  # subgraph node -> top-level ancestor
    producer: dict[str, str] = field(default_factory=dict)  # tensor -> node (main graph)
    consumers: dict[str, list[str]] = field(default_factory=dict)  # tensor -> nodes (main graph)
    inputs: dict[str, list[str]] = field(default_factory=dict)
    outputs: dict[str, list[str]] = field(default_factory=dict)
    graph_outputs: set[str] = field(default_factory=set)
    dynamic: set[str] = field(default_factory=set)  # main-graph nodes that depend on a graph input
    _canon: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, proto: onnx.ModelProto) -> "GraphIndex":
        """Index a model whose nodes are named (see :func:`name_nodes`)."""
        ix = cls()
        k = 0

        def walk(g: onnx.GraphProto, top: str | None):
            nonlocal k
            for n in g.node:
                ix.op_type[n.name] = n.op_type
                ix.order[n.name] = k
                k += 1
                owner = top or n.name
                if top is not None:
                    ix.parent[n.name] = top
                else:
                    ix.inputs[n.name] = list(n.input)
                    ix.outputs[n.name] = list(n.output)
                    for t in n.output:
                        if t:
                            ix.producer[t] = n.name
                    for t in n.input:
                        if t:
                            ix.consumers.setdefault(t, []).append(n.name)
                for a in n.attribute:
                    if a.type == onnx.AttributeProto.GRAPH:
                        walk(a.g, owner)
                    elif a.type == onnx.AttributeProto.GRAPHS:
                        for sub in a.graphs:
                            walk(sub, owner)

        walk(proto.graph, None)
        ix.graph_outputs = {o.name for o in proto.graph.output}
        inits = {i.name for i in proto.graph.initializer}
        live = {i.name for i in proto.graph.input if i.name not in inits}
        for n in proto.graph.node:  # nodes are topologically sorted in a valid ONNX graph
            if any(t in live for t in n.input) or n.op_type in _SUBGRAPH_OPS:
                ix.dynamic.add(n.name)
                live.update(t for t in n.output if t)
        return ix

    def __contains__(self, name: str) -> bool:
        return name in self.op_type

    def is_plumbing(self, name: str) -> bool:
        return self.op_type.get(name) in PLUMBING_OPS

    def canonical(self, name: str) -> str:
        """The canonical node of ``name`` (rules 2 and 3 of the module docstring)."""
        if name in self._canon:
            return self._canon[name]
        top = self.parent.get(name, name)
        out = top
        if self.is_plumbing(top):
            out = self._through_plumbing(top)
        self._canon[name] = out
        return out

    def _through_plumbing(self, start: str) -> str:
        """QuantizeLinear → the producer of its input (output quantization belongs to the node that
        made the tensor); DequantizeLinear and Cast → the first consumer that is not plumbing. Each
        falls back to the other direction (weights and graph inputs have no producer; graph outputs
        have no consumer)."""
        down, up = self._follow(start, downstream=True), self._follow(start, downstream=False)
        if self.op_type.get(start) == "QuantizeLinear":
            return up or down or start
        return down or up or start

    def _follow(self, start: str, *, downstream: bool) -> str | None:
        seen, frontier = {start}, [start]
        while frontier:  # breadth first
            nxt = []
            for n in frontier:
                if downstream:
                    cands = [c for t in self.outputs.get(n, []) for c in self.consumers.get(t, [])]
                else:
                    cands = [self.producer[t] for t in self.inputs.get(n, []) if t in self.producer]
                for c in cands:
                    if c in seen:
                        continue
                    if not self.is_plumbing(c):
                        return c
                    seen.add(c)
                    nxt.append(c)
            frontier = nxt
        return None

    def anchor(self, nodes: Sequence[str]) -> str:
        """Canonical node of a layer covering ``nodes``: the first non-plumbing node in graph order
        (after lifting subgraph nodes to their parent), else the canonical of the first node."""
        known = [n for n in nodes if n in self.op_type]
        if not known:
            return UNMAPPED
        lifted = sorted({self.parent.get(n, n) for n in known}, key=lambda n: self.order[n])
        for n in lifted:
            if not self.is_plumbing(n):
                return n
        return self.canonical(lifted[0])


# --------------------------------------------------------------------------------- ONNX Runtime
#: Prefixes ORT puts before names it derives: ``fused `` (FusedGemm/FusedConv/... made by a fusion) and
#: ``InsertedPrecisionFreeCast_`` (tensors behind the casts ORT inserts to run fp16 ops with fp32 kernels).
_ORT_PREFIXES = ("fused ", "InsertedPrecisionFreeCast_")


def strip_ort_suffix(kernel_name: str) -> str:
    """``Conv_3_token_12`` → ``Conv_3``; ``fused Gemm_1`` → ``Gemm_1``: ORT's ``GenerateNodeName``
    suffix on transformed nodes and the prefixes of :data:`_ORT_PREFIXES`."""
    name = _ORT_TOKEN.sub("", kernel_name)
    for p in _ORT_PREFIXES:
        if name.startswith(p):
            name = name[len(p):]
    return name


#: The ONNX op a fused ORT kernel is built around (walking back stops there).
_CORE = {"FusedConv": "Conv", "QLinearConv": "Conv", "ConvInteger": "Conv", "NhwcFusedConv": "Conv",
         "FusedGemm": "Gemm", "FusedMatMul": "MatMul", "MatMulInteger": "MatMul", "QLinearMatMul": "MatMul",
         "MatMulIntegerToFloat": "MatMul", "DynamicQuantizeMatMul": "MatMul", "QGemm": "Gemm",
         "QLinearAdd": "Add", "QLinearMul": "Mul", "QLinearAveragePool": "AveragePool",
         "QLinearGlobalAveragePool": "GlobalAveragePool", "QLinearConcat": "Concat", "QLinearSigmoid": "Sigmoid",
         "QLinearLeakyRelu": "LeakyRelu", "QLinearSoftmax": "Softmax"}
_CORE_ALT = {"Conv": {"Conv"}, "Gemm": {"Gemm", "MatMul"}, "MatMul": {"MatMul", "Gemm"}}


def ort_fused_nodes(outputs: Sequence[str], stop: Iterable[str], ix: GraphIndex, anchors: set[str],
                    op_type: str = "", own: str | None = None) -> list[str]:
    """ONNX nodes an ORT kernel covers, by tensor lineage in the variant graph.

    ORT fusions (Conv+BatchNorm+Relu → FusedConv, Q/DQ+Conv → QLinearConv, MatMul+Add → Gemm) write
    the output tensor of the last fused node. Start from the producers of ``outputs`` and walk back
    through nodes that depend on graph inputs (constant subgraphs are folded and run no kernel), are not
    ``anchors`` (nodes other kernels stand for) and are not behind ``stop`` tensors (what the kernel
    reads), until the kernel's core op (``Conv`` for ``FusedConv``/``QLinearConv``, ...); past the core
    only precision plumbing (DequantizeLinear of its inputs) is taken. ``own``: the node the kernel is
    named after (an anchor that is walked through).
    """
    core = _CORE.get(op_type, op_type)
    cores = _CORE_ALT.get(core, {core})
    stop = set(stop)
    covered: list[str] = []
    starts = {ix.producer[t] for t in outputs if t in ix.producer}
    frontier = [(n, False) for n in starts]
    seen: set[str] = set()
    while frontier:
        n, past_core = frontier.pop()
        if n in seen:
            continue
        seen.add(n)
        if n not in ix.dynamic or (n in anchors and n != own and n not in starts):
            continue
        if past_core and not ix.is_plumbing(n):
            continue
        covered.append(n)
        beyond = past_core or ix.op_type.get(n) in cores
        for t in ix.inputs.get(n, []):
            if t and t not in stop and t in ix.producer:
                frontier.append((ix.producer[t], beyond))
    return sorted(covered, key=lambda n: ix.order[n])


def ort_nchwc_sum(tensor: str, ix: GraphIndex, anchors: set[str]) -> list[str]:
    """Nodes an NCHWc Conv with a fused residual sum also covers: the Add/Sum consuming ``tensor`` and
    the activation after it (ORT's NCHWc transformer fuses Conv+Add(+Relu); the Conv keeps its name)."""
    out = []
    for c in ix.consumers.get(tensor, []):
        if ix.op_type.get(c) in ("Add", "Sum") and c not in anchors:
            out.append(c)
            for t in ix.outputs.get(c, []):
                nxt = ix.consumers.get(t, [])
                if len(nxt) == 1 and ix.op_type.get(nxt[0]) in ("Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid") \
                        and nxt[0] not in anchors:
                    out.append(nxt[0])
            break
    return out


def ort_nchwc_tensor(kernel_name: str) -> str | None:
    """``r2_nchwc`` → ``r2``: the original output tensor an NCHWc kernel stands for (None otherwise)."""
    m = _ORT_NCHWC.match(strip_ort_suffix(_ORT_TOKEN.sub("", kernel_name)))
    return m.group(1) if m else None


# ------------------------------------------------------------------------------------ TensorRT
_TRT_PROFILE_SUFFIX = re.compile(r"\s*\[profile \d+\]$")
_TRT_FOREIGN = re.compile(r"^\{?ForeignNode\[(.*)\]\}?$")
_TRT_REFORMAT = re.compile(r"^Reformatting CopyNode for (Input|Output) Tensor \d+ to (.*)$")
_TRT_NET_IO = re.compile(r"^Reformatting CopyNode for Network (Input|Output) (.*)$")
_TRT_META = re.compile(r"\[ONNX Layer: ([^\]|]*?)\s*(?:\|[^\]]*)?\]")


def strip_trt_profile_suffix(name: str) -> str:
    """``conv [profile 1]`` → ``conv``: TensorRT marks the layers of optimization profile N >= 1 with this
    suffix (TREx ``trex/parser.py`` ``import_graph_file``)."""
    return _TRT_PROFILE_SUFFIX.sub("", name)


def parse_trt_metadata(metadata: str | None) -> list[str]:
    """ONNX node names in a TensorRT layer's ``Metadata`` field.

    Format: each ONNX node that produced the layer adds ``[ONNX Layer: <name> | <function stack>...]``
    (onnx-tensorrt ``importerUtils.cpp`` ``processMetadata``, TensorRT >= 8.6); a fused layer joins the
    entries with the ASCII unit/record separators ``\\x1f``/``\\x1e`` (TREx ``trex/parser.py``
    ``fix_unicode`` replaces both with ``+``, so ``+`` is accepted as a separator too).
    """
    if not metadata:
        return []
    return list(dict.fromkeys(m.strip() for m in _TRT_META.findall(metadata) if m.strip()))


def split_trt_layer_name(name: str) -> tuple[list[str], str]:
    """(ONNX-ish names, kind) from a TensorRT layer name when no Metadata is available.

    Formats (as printed by trtexec ``--dumpLayerInfo``/``--dumpProfile`` and parsed by TREx):
    ``a + b + c`` (fused layers joined by `` + ``); ``PWN(a, PWN(b, c))`` (pointwise fusion);
    ``{ForeignNode[first...last]}`` (a Myelin region: only the first and last names are given);
    ``Reformatting CopyNode for Input Tensor 0 to <layer>`` (a copy attributed to the consumer layer);
    ``Reformatting CopyNode for Network Input <tensor>`` (no ONNX node); a `` [profile N]`` suffix marks
    the layers of optimization profile N (TREx ``import_graph_file``).
    kind: ``layer`` | ``fused`` | ``pointwise`` | ``foreign`` | ``reformat`` | ``network-io``.
    """
    name = _TRT_PROFILE_SUFFIX.sub("", name.strip())
    m = _TRT_NET_IO.match(name)
    if m:
        return [], "network-io"
    m = _TRT_REFORMAT.match(name)
    if m:
        inner, _ = split_trt_layer_name(m.group(2))
        return inner, "reformat"
    m = _TRT_FOREIGN.match(name)
    if m:
        return [p for p in m.group(1).split("...") if p], "foreign"
    if name.startswith("PWN("):
        return _split_pwn(name), "pointwise"
    parts = [p.strip() for p in name.split(" + ")]
    if len(parts) > 1:
        out: list[str] = []
        for p in parts:
            out.extend(split_trt_layer_name(p)[0])
        return out, "fused"
    return [name], "layer"


def _split_pwn(text: str) -> list[str]:
    """Leaf names of nested ``PWN(a, PWN(b, c))`` expressions (commas inside names are not split, nor is
    anything inside a name's own parentheses: ``PWN(f(a, b), c)`` → ``f(a, b)``, ``c``)."""
    out, buf, depth, inner = [], "", 0, 0
    i = 0
    while i < len(text):
        if text.startswith("PWN(", i):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
            depth += 1
            i += 4
            continue
        c = text[i]
        if c == "(":  # a parenthesis of the name itself
            inner += 1
            buf += c
        elif c == ")" and inner:
            inner -= 1
            buf += c
        elif c == ")" and depth:
            if buf.strip():
                out.append(buf.strip())
            buf = ""
            depth -= 1
        elif c == "," and depth and not inner and text[i + 1:i + 2] == " ":
            if buf.strip():
                out.append(buf.strip())
            buf = ""
        else:
            buf += c
        i += 1
    if buf.strip():
        out.append(buf.strip())
    return [s for s in out if s]


def trt_layer_nodes(name: str, metadata: str | None, ix: GraphIndex | None = None) -> tuple[list[str], str]:
    """ONNX nodes of one TensorRT layer: the Metadata entries when present (complete, also inside Myelin
    regions), else the names parsed from the layer name. With ``ix``, names not in the graph are dropped,
    and a ForeignNode region ``first...last`` is widened to every node between them in graph order."""
    kind = split_trt_layer_name(name)[1]
    nodes = parse_trt_metadata(metadata)
    if not nodes:
        nodes = split_trt_layer_name(name)[0]
        if ix is not None and kind == "foreign" and len(nodes) == 2 and all(n in ix for n in nodes):
            lo, hi = sorted(ix.order[n] for n in nodes)
            nodes = [n for n, k in sorted(ix.order.items(), key=lambda kv: kv[1]) if lo <= k <= hi
                     and n not in ix.parent]
    if ix is not None:
        nodes = [n for n in nodes if n in ix]
    return nodes, kind


def spread(df, ix: GraphIndex | None = None):
    """Grouped per-layer rows → one row per covered ONNX node, each layer's time split evenly over its
    ``onnx_nodes``; ``onnx_node`` becomes the covered node's canonical name (with ``ix``) or the node
    itself. For overlays on a graph view. Rows without nodes stay as they are."""
    import pandas as pd

    rows = []
    for r in df.to_dict("records"):
        nodes = list(r.get("onnx_nodes") or [])
        if not nodes:
            rows.append(r)
            continue
        k = len(nodes)
        for n in nodes:
            rows.append({**r, "onnx_nodes": [n], "onnx_node": ix.canonical(n) if ix is not None else n,
                         "time_ms": r["time_ms"] / k, "share": r["share"] / k})
    return pd.DataFrame(rows, columns=df.columns)
