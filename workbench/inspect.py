"""Model inspection: counts, parameters, IO, shape inference, FLOPs and bytes per node.

``inspect(model_or_path, shapes=None) -> Inspection``. Works on a proto whose external data is not
loaded (``workbench.Model`` keeps it that way): parameter counts come from tensor dims, never from data,
and shape inference runs on a light copy of the graph in which every large or external tensor is
replaced by a typed graph input, so weights are neither copied nor read.

FLOPs convention (see docs/inspect.md): one MAC = one multiply-accumulate, FLOPs = 2 x MACs, bias
additions are not counted. Only Conv, ConvTranspose, Gemm and MatMul are counted.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

import onnx

from .data import ShapeMap, TensorSpec, input_specs, output_specs, resolve_shapes
from .errors import ShapeSpecError
from .fsutil import json_safe
from .model import Model, ModelSource, iter_graphs, load

__all__ = ["Inspection", "inspect", "FLOP_OPS"]

#: Op types whose FLOPs are estimated.
FLOP_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

#: Tensors with more elements than this (or stored externally) are replaced by typed inputs for shape
#: inference: they are weights, not shape tensors that data propagation could use.
_LIGHT_MAX_ELEMENTS = 1024

_T = onnx.TensorProto


def _bits_table() -> dict[int, float]:
    bits = {"FLOAT": 32, "UINT8": 8, "INT8": 8, "UINT16": 16, "INT16": 16, "INT32": 32, "INT64": 64,
            "BOOL": 8, "FLOAT16": 16, "DOUBLE": 64, "UINT32": 32, "UINT64": 64, "COMPLEX64": 64,
            "COMPLEX128": 128, "BFLOAT16": 16, "FLOAT8E4M3FN": 8, "FLOAT8E4M3FNUZ": 8, "FLOAT8E5M2": 8,
            "FLOAT8E5M2FNUZ": 8, "FLOAT8E8M0": 8, "UINT4": 4, "INT4": 4, "FLOAT4E2M1": 4, "UINT2": 2, "INT2": 2}
    return {getattr(_T, k): v for k, v in bits.items() if hasattr(_T, k)}


_BITS = _bits_table()


def dtype_name(elem_type: int) -> str:
    """Lower-case ONNX element type name (``float``, ``float16``, ``int64``...)."""
    try:
        return _T.DataType.Name(elem_type).lower()
    except ValueError:
        return f"type{elem_type}"


def _nbytes(elem_type: int, shape) -> float:
    """Bytes of a tensor; NaN when the shape or element size is unknown."""
    bits = _BITS.get(elem_type)
    if bits is None or shape is None or any(not isinstance(d, int) for d in shape):
        return math.nan
    return math.prod(shape) * bits / 8


# ---------------------------------------------------------------------------------------------- result
@dataclass
class Inspection:
    """What :func:`inspect` found. Plain data; the ``*_frame`` methods build pandas DataFrames."""

    name: str
    hash: str | None
    ir_version: int
    producer_name: str
    producer_version: str
    opset: int
    opset_imports: dict[str, int]
    nodes: int
    ops: dict[str, int]
    subgraph_nodes: int
    subgraph_ops: dict[str, int]
    functions: int
    params: int
    params_by_dtype: dict[str, int]
    param_bytes: float
    param_bytes_by_dtype: dict[str, float]
    external_data: bool
    inputs: list[dict]
    outputs: list[dict]
    shapes: dict[str, list[int]]
    macs: float
    flops: float
    flops_unknown_nodes: int
    bytes: float
    shape_inference: bool
    warnings: list[str] = field(default_factory=list)
    #: inputs whose dynamic first dim was taken as 1 (no shapes given): name -> the symbolic dim
    assumed_batch: dict = field(default_factory=dict)
    # Per-node and per-tensor detail, kept compact; rows are built on demand from the model's graph.
    _graph: onnx.GraphProto | None = field(default=None, repr=False, compare=False)
    _table: dict = field(default_factory=dict, repr=False, compare=False)
    _node_macs: list = field(default_factory=list, repr=False, compare=False)
    _node_bytes: list = field(default_factory=list, repr=False, compare=False)

    @property
    def node_rows(self) -> list[dict]:
        """One dict per top-level node (see :meth:`nodes_frame` for the keys)."""
        rows = []
        shape = lambda t: None if t not in self._table or self._table[t][2] is None else list(self._table[t][2])  # noqa: E731
        for i, n in enumerate(self._graph.node if self._graph is not None else ()):
            rows.append({
                "index": i, "onnx_node": n.name, "op_type": n.op_type, "domain": n.domain or "ai.onnx",
                "scope": _scope(n.name), "inputs": list(n.input), "outputs": list(n.output),
                "output_shapes": [shape(o) for o in n.output],
                "macs": self._node_macs[i], "flops": 2 * self._node_macs[i], "bytes": self._node_bytes[i],
            })
        return rows

    @property
    def tensors(self) -> dict[str, dict]:
        """name -> {kind, dtype, shape, bytes} for every tensor whose type is known."""
        return {k: {"kind": kind, "dtype": dtype_name(et), "shape": None if shp is None else list(shp),
                    "bytes": _nbytes(et, shp)} for k, (kind, et, shp) in self._table.items()}

    # -------------------------------------------------------------- JSON
    def to_json(self, *, detail: bool = False) -> dict:
        """JSON-able dict (NaN becomes null). ``detail`` adds per-node rows and the tensor table."""
        d: dict[str, Any] = {
            "name": self.name, "hash": self.hash, "nodes": self.nodes, "ops": self.ops,
            "subgraph_nodes": self.subgraph_nodes, "subgraph_ops": self.subgraph_ops, "functions": self.functions,
            "params": self.params, "params_by_dtype": self.params_by_dtype, "param_bytes": self.param_bytes,
            "param_bytes_by_dtype": self.param_bytes_by_dtype, "external_data": self.external_data,
            "inputs": self.inputs, "outputs": self.outputs, "opset": self.opset, "opset_imports": self.opset_imports,
            "ir_version": self.ir_version, "producer_name": self.producer_name,
            "producer_version": self.producer_version, "shapes": self.shapes, "macs": self.macs, "flops": self.flops,
            "flops_unknown_nodes": self.flops_unknown_nodes, "flops_by_op": self.flops_by_op(), "bytes": self.bytes,
            "shape_inference": self.shape_inference, "warnings": self.warnings,
            "assumed_batch": self.assumed_batch, "per_sample": bool(self.assumed_batch),
        }
        if detail:
            d["node_list"] = self.node_rows
            d["tensors"] = [{"tensor": k, **v} for k, v in self.tensors.items()]
        return _json_clean(d)

    def flops_by_op(self) -> dict[str, float]:
        """Total FLOPs per counted op type (known nodes only)."""
        out: dict[str, float] = {}
        for n, macs in zip(self._graph.node if self._graph is not None else (), self._node_macs):
            if n.op_type in FLOP_OPS and not math.isnan(macs):
                out[n.op_type] = out.get(n.op_type, 0.0) + 2 * macs
        return out

    # -------------------------------------------------------------- frames
    def summary(self):
        """One row per fact: columns ``fact, value``."""
        pd = _pd()
        facts = [
            ("name", self.name), ("hash", self.hash), ("ir_version", self.ir_version),
            ("producer", f"{self.producer_name} {self.producer_version}".strip()), ("opset", self.opset),
            ("opset_imports", ", ".join(f"{k or 'ai.onnx'}:{v}" for k, v in self.opset_imports.items())),
            ("nodes", self.nodes), ("op_types", len(self.ops)), ("subgraph_nodes", self.subgraph_nodes),
            ("functions", self.functions), ("params", self.params), ("param_bytes", self.param_bytes),
            ("external_data", self.external_data),
            ("inputs", ", ".join(_io_text(s) for s in self.inputs)),
            ("outputs", ", ".join(_io_text(s) for s in self.outputs)),
            ("shapes", ", ".join(f"{k}:{'x'.join(map(str, v))}" for k, v in self.shapes.items())),
            ("batch", "1 assumed (dynamic: " + ", ".join(f"{k}[0]={v}" for k, v in self.assumed_batch.items()) + ")"
             if self.assumed_batch else "as given"),
            ("macs", self.macs), ("flops", self.flops), ("flops_unknown_nodes", self.flops_unknown_nodes),
            ("bytes", self.bytes), ("shape_inference", self.shape_inference),
            ("warnings", "; ".join(self.warnings)),
        ]
        return pd.DataFrame(facts, columns=["fact", "value"])

    def ops_frame(self):
        """Columns ``op_type, count, subgraph_count, flops`` sorted by count."""
        pd = _pd()
        fl = self.flops_by_op()
        names = sorted(set(self.ops) | set(self.subgraph_ops), key=lambda k: (-self.ops.get(k, 0), k))
        rows = [{"op_type": k, "count": self.ops.get(k, 0), "subgraph_count": self.subgraph_ops.get(k, 0),
                 "flops": fl.get(k, math.nan)} for k in names]
        return pd.DataFrame(rows, columns=["op_type", "count", "subgraph_count", "flops"])

    def params_frame(self):
        """Parameters by dtype: ``dtype, params, bytes``."""
        pd = _pd()
        rows = [{"dtype": k, "params": v, "bytes": self.param_bytes_by_dtype.get(k, math.nan)}
                for k, v in self.params_by_dtype.items()]
        return pd.DataFrame(rows, columns=["dtype", "params", "bytes"])

    def io_frame(self):
        """Graph inputs and outputs: ``kind, tensor, dtype, shape``."""
        pd = _pd()
        rows = [{"kind": "input", "tensor": s.get("name"), **s} for s in self.inputs] + \
            [{"kind": "output", "tensor": s.get("name"), **s} for s in self.outputs]
        return pd.DataFrame(rows, columns=["kind", "tensor", "dtype", "shape"])

    def nodes_frame(self):
        """One row per top-level node: ``index, onnx_node, op_type, domain, scope, inputs, outputs,
        output_shapes, macs, flops, bytes``."""
        pd = _pd()
        cols = ["index", "onnx_node", "op_type", "domain", "scope", "inputs", "outputs", "output_shapes",
                "macs", "flops", "bytes"]
        return pd.DataFrame(self.node_rows, columns=cols)

    def tensors_frame(self):
        """Every tensor with a known type: ``tensor, kind, dtype, shape, bytes``."""
        pd = _pd()
        rows = [{"tensor": k, **v} for k, v in self.tensors.items()]
        return pd.DataFrame(rows, columns=["tensor", "kind", "dtype", "shape", "bytes"])

    # -------------------------------------------------------------- display
    def text(self) -> str:
        """A readable multi-line summary (what ``workbench inspect`` prints)."""
        lines = [
            f"model        {self.name}  (hash {self.hash[:12] if self.hash else '-'})",
            f"producer     {self.producer_name} {self.producer_version}".rstrip(),
            f"ir / opset   ir_version {self.ir_version}, opset {self.opset}"
            + "".join(f", {k}:{v}" for k, v in self.opset_imports.items() if k not in ("", "ai.onnx")),
            f"nodes        {self.nodes} ({len(self.ops)} op types)"
            + (f", {self.subgraph_nodes} in subgraphs" if self.subgraph_nodes else ""),
            f"params       {self.params:,} ({_human_bytes(self.param_bytes)})"
            + (" external data" if self.external_data else ""),
        ]
        for s in self.inputs:
            lines.append(f"input        {_io_text(s)}")
        for s in self.outputs:
            lines.append(f"output       {_io_text(s)}")
        if self.shapes:
            lines.append("shapes       " + ", ".join(f"{k}:{'x'.join(map(str, v))}" for k, v in self.shapes.items()))
        if self.assumed_batch:
            lines.append("batch        1 assumed for " + ", ".join(f"{k} ({v} is dynamic)" for k, v in self.assumed_batch.items())
                         + ": FLOPs and bytes are per sample")
        # Totals cover the nodes with known shapes only: say so instead of printing a bare "0".
        unknown = self.flops_unknown_nodes
        if unknown:
            lines.append(f"FLOPs        >= {_human(self.flops)} ({_human(self.macs)} MACs over known nodes; "
                         f"{unknown} Conv/ConvTranspose/Gemm/MatMul node(s) with unknown shapes)")
        else:
            lines.append(f"FLOPs        {_human(self.flops)} ({_human(self.macs)} MACs; Conv/ConvTranspose/Gemm/MatMul)")
        unknown_bytes = sum(1 for r in self.node_rows if isinstance(r.get("bytes"), float) and math.isnan(r["bytes"]))
        if unknown_bytes:
            lines.append(f"bytes moved  >= {_human_bytes(self.bytes)} (sum over nodes of input+output tensors; "
                         f"{unknown_bytes} node(s) with unknown sizes)")
        else:
            lines.append(f"bytes moved  {_human_bytes(self.bytes)} (sum over nodes of input+output tensors)")
        top = sorted(self.ops.items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append("ops          " + ", ".join(f"{k} {v}" for k, v in top))
        for w in self.warnings:
            lines.append(f"warning      {w}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html
        s = self.summary()
        s["value"] = s["value"].map(lambda v: _human(v) if isinstance(v, float) else v)
        ops = self.ops_frame().head(15)
        return (f"<div><b>workbench.inspect: {html.escape(self.name)}</b>"
                f"<div style='display:flex;gap:2em;align-items:flex-start'>"
                f"{s.to_html(index=False)}{ops.to_html(index=False, na_rep='')}</div></div>")

    def __repr__(self) -> str:
        return (f"<workbench.Inspection {self.name!r} nodes={self.nodes} params={self.params} "
                f"flops={_human(self.flops)}>")


def _pd():
    import pandas as pd  # lazy: keeps `workbench inspect --json` start-up light

    return pd


def _io_text(s: dict) -> str:
    shape = "?" if s["shape"] is None else "[" + ", ".join("?" if d is None else str(d) for d in s["shape"]) + "]"
    return f"{s['name']} {s['dtype']}{shape}"


def human_number(v: float) -> str:
    """A number with a metric suffix for tables and reports (``1.2 G``)."""
    return _human(v)


def _human(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    for unit, f in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= f:
            return f"{v / f:.3g}{unit}"
    return f"{v:.3g}"


def _human_bytes(v: float) -> str:
    if v is None or math.isnan(v):
        return "n/a"
    for unit, f in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if v >= f:
            return f"{v / f:.3g} {unit}"
    return f"{v:.0f} B"


def _json_clean(o):
    # the JSON policy (workbench.fsutil.json_safe: NaN -> null, +-Inf -> "inf"/"-inf"), whole floats as ints
    if isinstance(o, float):
        if math.isnan(o) or math.isinf(o):
            return json_safe(o)
        return int(o) if o.is_integer() and abs(o) < 2**53 else o
    if isinstance(o, dict):
        return {k: _json_clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_clean(v) for v in o]
    return o


# ---------------------------------------------------------------------------------------------- counting
def _constant_tensors(node: onnx.NodeProto):
    """(elem_type, dims, tensor or None) of a Constant node's value, whichever attribute holds it."""
    for a in node.attribute:
        if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
            yield a.t.data_type, tuple(a.t.dims), a.t
        elif a.name == "sparse_value" and a.type == onnx.AttributeProto.SPARSE_TENSOR:
            yield a.sparse_tensor.values.data_type, tuple(a.sparse_tensor.values.dims), None
        elif a.name == "value_float":
            yield _T.FLOAT, (), None
        elif a.name == "value_floats":
            yield _T.FLOAT, (len(a.floats),), None
        elif a.name == "value_int":
            yield _T.INT64, (), None
        elif a.name == "value_ints":
            yield _T.INT64, (len(a.ints),), None
        elif a.name == "value_string":
            yield _T.STRING, (), None
        elif a.name == "value_strings":
            yield _T.STRING, (len(a.strings),), None


def _param_tensors(graph: onnx.GraphProto):
    """(elem_type, dims, tensor or None) of every parameter tensor in the graph and its subgraphs."""
    for g in iter_graphs(graph):
        for t in g.initializer:
            yield t.data_type, tuple(t.dims), t
        for sp in g.sparse_initializer:  # stored values only
            yield sp.values.data_type, tuple(sp.values.dims), None
        for n in g.node:
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                yield from _constant_tensors(n)


def _param_stats(graph: onnx.GraphProto):
    count, by_dtype, nbytes, bytes_by_dtype = 0, Counter(), 0.0, Counter()
    for et, dims, t in _param_tensors(graph):
        n = math.prod(dims)
        name = dtype_name(et)
        count += n
        by_dtype[name] += n
        if et == _T.STRING:
            b = float(sum(len(s) for s in t.string_data)) if t is not None else math.nan
        else:
            b = n * _BITS.get(et, math.nan) / 8
        nbytes += b
        bytes_by_dtype[name] += b
    return count, dict(by_dtype), nbytes, dict(bytes_by_dtype)


# ---------------------------------------------------------------------------------------------- shape inference
def _is_light(t: onnx.TensorProto) -> bool:
    external = t.HasField("data_location") and t.data_location == _T.EXTERNAL
    return not external and math.prod(t.dims) <= _LIGHT_MAX_ELEMENTS


def _typed_input(name: str, elem_type: int, dims) -> onnx.ValueInfoProto:
    return onnx.helper.make_tensor_value_info(name, elem_type, list(dims))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | 0x80 if n else low)
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (tag, length, payload)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


# Field numbers of onnx.proto (GraphProto / ModelProto).
_G_NODE, _G_NAME, _G_INIT, _G_INPUT, _G_OUTPUT, _G_SPARSE = 1, 2, 5, 11, 12, 15
_M_GRAPH = 7


def _light_model_bytes(proto: onnx.ModelProto, fixed: Mapping[str, tuple[int, ...]]) -> bytes:
    """The model serialized for shape inference without its weights, built from serialized pieces so
    no Python copy of the graph is made: large or external initializers and large Constant nodes become
    typed graph inputs (small shape tensors stay, so data propagation works); inputs named in ``fixed``
    get concrete dims; subgraphs stay as they are. Protobuf concatenation merges the pieces."""
    src = proto.graph
    parts: list[bytes] = [_field(_G_NAME, src.name.encode())]
    init_names = set()
    for t in src.initializer:
        init_names.add(t.name)
        if _is_light(t):
            parts.append(_field(_G_INIT, t.SerializeToString()))
        else:
            parts.append(_field(_G_INPUT, _typed_input(t.name, t.data_type, t.dims).SerializeToString()))
    for sp in src.sparse_initializer:
        parts.append(_field(_G_SPARSE, sp.SerializeToString()))
    for vi in src.input:
        if vi.name in init_names:
            continue  # IR < 4 lists initializers as inputs
        if vi.name in fixed and vi.type.HasField("tensor_type"):
            vi = _typed_input(vi.name, vi.type.tensor_type.elem_type, fixed[vi.name])
        parts.append(_field(_G_INPUT, vi.SerializeToString()))
    for n in src.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and len(n.output) == 1:
            t = next((a.t for a in n.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR), None)
            if t is not None and not _is_light(t):
                parts.append(_field(_G_INPUT, _typed_input(n.output[0], t.data_type, t.dims).SerializeToString()))
                continue
        parts.append(_field(_G_NODE, n.SerializeToString()))
    for vi in src.output:
        parts.append(_field(_G_OUTPUT, vi.SerializeToString()))
    head = onnx.ModelProto(ir_version=max(proto.ir_version, 4))  # inputs need not list initializers
    head.opset_import.extend(proto.opset_import)
    head.functions.extend(proto.functions)
    return head.SerializeToString() + _field(_M_GRAPH, b"".join(parts))


def _shape_of(tt) -> tuple | None:
    if not tt.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def _collect_value_infos(into: dict, vis, kind: str) -> None:
    for vi in vis:
        if vi.name not in into and vi.type.HasField("tensor_type"):
            tt = vi.type.tensor_type
            into[vi.name] = (kind, tt.elem_type, _shape_of(tt))


def _tensor_table(model: Model, inferred: onnx.ModelProto | None) -> dict[str, tuple]:
    """name -> (kind, elem_type, shape): model metadata first, inferred shapes fill the rest."""
    g = model.graph
    table: dict[str, tuple] = {}
    for t in g.initializer:
        table[t.name] = ("initializer", t.data_type, tuple(int(d) for d in t.dims))
    for n in g.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and n.output:
            for et, dims, _ in _constant_tensors(n):
                table[n.output[0]] = ("constant", et, tuple(int(d) for d in dims))
    if inferred is not None:  # its inputs carry the --shapes dims
        _collect_value_infos(table, inferred.graph.input, "input")
    _collect_value_infos(table, g.input, "input")
    if inferred is not None:  # inferred outputs may be concrete where the declared ones are symbolic
        _collect_value_infos(table, inferred.graph.output, "output")
    _collect_value_infos(table, g.output, "output")
    if inferred is not None:
        _collect_value_infos(table, inferred.graph.value_info, "intermediate")
    _collect_value_infos(table, g.value_info, "intermediate")
    return table


# ---------------------------------------------------------------------------------------------- FLOPs
def _concrete(shape) -> bool:
    return shape is not None and all(isinstance(d, int) and d >= 0 for d in shape)


def node_macs(node: onnx.NodeProto, shape_of) -> float:
    """Multiply-accumulates of a Conv/ConvTranspose/Gemm/MatMul node; NaN when a needed shape is
    unknown; 0.0 for other op types. ``shape_of(name)`` returns a tuple of dims or None."""
    op = node.op_type
    if op not in FLOP_OPS or node.domain not in ("", "ai.onnx"):
        return 0.0
    ins = [shape_of(n) if n else None for n in node.input]
    out = shape_of(node.output[0]) if node.output else None
    if op == "Conv":
        w = ins[1] if len(ins) > 1 else None
        if not (_concrete(w) and _concrete(out)) or len(w) < 2:
            return math.nan
        # out: [N, C_out, *spatial]; W: [C_out, C_in/group, *kernel]
        return float(math.prod(out) * math.prod(w[1:]))
    if op == "ConvTranspose":
        x, w = ins[0], (ins[1] if len(ins) > 1 else None)
        if not (_concrete(x) and _concrete(w)) or len(w) < 2:
            return math.nan
        # every input element is multiplied by a (C_out/group x kernel) slice of W[C_in, C_out/group, *k]
        return float(math.prod(x) * math.prod(w[1:]))
    if op == "Gemm":
        a = ins[0]
        if not (_concrete(a) and _concrete(out)) or len(a) != 2:
            return math.nan
        trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
        k = a[0] if trans_a else a[1]
        return float(math.prod(out) * k)
    # MatMul (numpy semantics, batched/broadcast): out [..., M, N], K = last dim of A
    a = ins[0]
    if not (_concrete(a) and _concrete(out)) or len(a) == 0:
        return math.nan
    return float(math.prod(out) * a[-1])


def _scope(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


# ---------------------------------------------------------------------------------------------- entry point
def inspect(model_or_path: ModelSource, *, shapes: ShapeMap | str | Mapping | None = None,
            hash: bool = True) -> Inspection:
    """Inspect a model (path, bytes, ``onnx.ModelProto`` or :class:`workbench.Model`).

    ``shapes`` (a :class:`ShapeMap`, a ``--shapes`` string or a mapping) fixes input dims before shape
    inference so symbolic shapes become concrete (the ``opt`` shape of a range is used). ``hash=False``
    skips the content hash, which for models with external data streams the data files.

    Example::

        info = workbench.inspect("model.onnx", shapes="input:1x3x224x224")
        info.flops, info.nodes_frame().sort_values("flops").tail()
    """
    model = load(model_or_path)
    proto, g = model.proto, model.graph
    warns: list[str] = []

    fixed: dict[str, tuple[int, ...]] = {}
    sm = ShapeMap.parse(shapes)
    if sm:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            resolved = resolve_shapes(model, sm)  # validates names, ranks and fixed dims
        fixed = {k: tuple(resolved[k]) for k in sm}
    for name, dims in fixed.items():
        if any(d == 0 for d in dims):
            raise ShapeSpecError(f"--shapes gives {name!r} a zero dim {list(dims)}; inspection needs dims >= 1")
    # A dynamic first (batch) dim with no shapes given: count per sample, i.e. batch 1, and say so.
    assumed: dict[str, str] = {}
    for spec in input_specs(model):
        if spec.name in fixed or not spec.shape or isinstance(spec.shape[0], int) and spec.shape[0] > 0:
            continue
        assumed[spec.name] = str(spec.shape[0]) if spec.shape[0] else "?"
        fixed[spec.name] = (1, *[d if (isinstance(d, int) and d > 0) or isinstance(d, str) else "?"
                                 for d in spec.shape[1:]])
    if assumed:
        names = ", ".join(f"{k}[0]={v}" for k, v in assumed.items())
        warns.append(f"dynamic batch dim ({names}): FLOPs, MACs and bytes are per sample (batch 1 assumed); "
                     "pass shapes=... (CLI --shapes) for another batch")

    # Strict first, so a failure is reported; then a lenient pass keeps whatever shapes it can infer.
    light = _light_model_bytes(proto, fixed)
    inferred, inferred_ok = None, False
    try:
        inferred = onnx.shape_inference.infer_shapes(light, check_type=False, strict_mode=True, data_prop=True)
        inferred_ok = True
    except Exception as e:  # inference errors vary by op; inspection goes on without them
        msg = str(e).strip().splitlines()
        warns.append(f"shape inference failed ({msg[-1] if msg else type(e).__name__}); shapes are partial")
        try:
            inferred = onnx.shape_inference.infer_shapes(light, check_type=False, strict_mode=False, data_prop=True)
        except Exception:
            inferred = None
    del light

    table = _tensor_table(model, inferred)
    del inferred

    def shape_of(name: str):
        t = table.get(name)
        return None if t is None else t[2]

    # ---- FLOPs and bytes per node
    node_macs_, node_bytes_ = [], []
    total_macs, unknown, total_bytes = 0.0, 0, 0.0
    for n in g.node:
        macs = node_macs(n, shape_of)
        if math.isnan(macs):
            unknown += 1
        else:
            total_macs += macs
        nb = 0.0
        for names in (n.input, n.output):
            for t in names:
                if t:
                    info = table.get(t)
                    nb += math.nan if info is None else _nbytes(info[1], info[2])
        if not math.isnan(nb):
            total_bytes += nb
        node_macs_.append(macs)
        node_bytes_.append(nb)
    if unknown:
        warns.append(f"{unknown} FLOP-counted node(s) have unknown shapes (flops NaN); give --shapes to fix dynamic dims")

    # ---- counts
    ops = dict(Counter(n.op_type for n in g.node))
    sub_ops: Counter = Counter()
    for sg in list(iter_graphs(g))[1:]:
        sub_ops.update(n.op_type for n in sg.node)
    params, params_by_dtype, pbytes, pbytes_by_dtype = _param_stats(g)

    opsets = {o.domain or "": int(o.version) for o in proto.opset_import}
    return Inspection(
        name=model.name, hash=model.hash if hash else None, ir_version=int(proto.ir_version),
        producer_name=proto.producer_name, producer_version=proto.producer_version, opset=model.opset,
        opset_imports=opsets, nodes=len(g.node), ops=ops, subgraph_nodes=sum(sub_ops.values()),
        subgraph_ops=dict(sub_ops), functions=len(proto.functions), params=params,
        params_by_dtype=params_by_dtype, param_bytes=pbytes, param_bytes_by_dtype=pbytes_by_dtype,
        external_data=model.has_external_data,
        inputs=[_spec_json(s) for s in input_specs(model)], outputs=[_spec_json(s) for s in output_specs(model)],
        shapes={k: list(v) for k, v in fixed.items() if k not in assumed}, assumed_batch=assumed,
        macs=total_macs, flops=2 * total_macs, flops_unknown_nodes=unknown, bytes=total_bytes,
        shape_inference=inferred_ok, warnings=warns,
        _graph=g, _table=table, _node_macs=node_macs_, _node_bytes=node_bytes_,
    )


def _spec_json(s: TensorSpec) -> dict:
    return s.to_json()
